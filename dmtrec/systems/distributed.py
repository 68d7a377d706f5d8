"""Multi-process data parallelism for the two-pass pipeline.

Lightning's DDP wraps the module in ``DistributedDataParallel`` once, at fit start, and
reduces the gradients of the parameters it saw then. The pipeline replaces its geometry and
material modules (and the optimizer) at the pass switch, so that wrapper would keep reducing
pass 1's parameters. :class:`GradientAveragingDDP` therefore leaves the module unwrapped and
averages the gradient of every parameter that has one after each backward; whatever modules
the system holds at that moment are covered. Parameters start equal on every rank (broadcast
from rank 0 at fit start) and stay equal because every rank then takes the same optimizer step.

Everything else is Lightning's DDP: process launch, the distributed sampler that splits the
training views across ranks, ``barrier``/``broadcast``/``reduce``, checkpoints written by rank 0.

Use it with ``--trainer.strategy dmtrec_ddp --trainer.devices N`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch import Tensor, nn

from dmtrec.geometry import Mesh

STRATEGY_NAME = "dmtrec_ddp"


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def average_gradients(module: nn.Module) -> None:
    """All-reduce (mean) the gradients of every parameter of ``module`` that requires one.

    A parameter without a gradient on some rank (its view did not reach it) counts as zero
    there, as in one process's batch; one that has none on any rank keeps ``grad = None`` (Adam
    skips it, as in one process). The gradients travel in one flat buffer per dtype, followed by
    one has-gradient flag per parameter. All ranks hold the same parameters in the same order:
    they run the same pipeline stage on identical modules.
    """
    world = _world_size()
    if world == 1:
        return
    by_dtype: Dict[torch.dtype, List[nn.Parameter]] = {}
    for p in module.parameters():
        if p.requires_grad:
            by_dtype.setdefault(p.dtype, []).append(p)
    for params in by_dtype.values():
        pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        flags = torch.tensor(
            [float(p.grad is not None) for p in params], dtype=params[0].dtype, device=params[0].device
        )
        flat = torch.cat(pieces + [flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        present = flat[-len(params) :].tolist()
        offset = 0
        for p, share in zip(params, present):
            mean = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if share == 0.0:
                p.grad = None
            elif p.grad is None:
                p.grad = mean.clone()
            else:
                p.grad.copy_(mean)


def broadcast_module_state(module: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s values."""
    if _world_size() == 1:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src)


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


class GradientAveragingDDP(DDPStrategy):
    """DDP without the ``DistributedDataParallel`` wrapper: gradients are averaged across ranks
    after every backward (:func:`average_gradients`), over the parameters the module holds then.

    Averaging after each backward is exact under gradient accumulation too: the all-reduce is
    linear and the already-averaged part is the same on every rank.
    """

    def configure_ddp(self) -> None:
        assert isinstance(self.model, pl.LightningModule)
        broadcast_module_state(self.model)
        # Every rank was seeded alike (identical initialisation); from here on the per-step
        # randomness (the kd smoothness jitter) should differ between ranks' views, as it does
        # between the views of one process's batch. Rank 0 keeps the one-process stream.
        if self.global_rank > 0:
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def pre_backward(self, closure_loss: Tensor) -> None:
        """Nothing to prepare: there is no DistributedDataParallel reducer (DDPStrategy's hook
        would look for one)."""

    def post_backward(self, closure_loss: Tensor) -> None:
        if self.lightning_module is not None:
            average_gradients(self.lightning_module)


def register() -> None:
    """Make ``trainer.strategy: dmtrec_ddp`` resolvable (idempotent)."""
    if STRATEGY_NAME not in StrategyRegistry:
        StrategyRegistry.register(
            STRATEGY_NAME,
            GradientAveragingDDP,
            description="DDP that averages gradients of the parameters held at each step "
            "(survives the pipeline's module swap at the pass switch)",
            start_method="popen",
        )


register()
