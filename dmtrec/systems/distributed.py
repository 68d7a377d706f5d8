"""The model's side of multi-process training: work done once, on rank 0, and handed to every rank
(the pass-1 bake). The strategy that averages the gradients is :mod:`dmtrec.runs.ddp`
(``--trainer.strategy dmtrec_ddp``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytorch_lightning as pl
from torch import Tensor

from dmtrec.geometry import Mesh


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    if isinstance(obj, Mesh):  # detached like the other tensors, so no rank receives a graph
        return Mesh(**{f.name: _to_cpu(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    return obj


def compute_on_rank_zero(strategy: pl.strategies.Strategy, compute: Callable[..., Any], *args: Any) -> Any:
    """``compute(*args)`` run on rank 0 only, its result (tensors moved to the CPU, which any
    backend can pickle) handed to every rank. Other ranks wait in the broadcast."""
    result = _to_cpu(compute(*args)) if strategy.global_rank == 0 else None
    return strategy.broadcast(result, src=0)
