"""FLIP (NVIDIA's perceptual image difference, ``flip-evaluator``) of rendered views, when installed.

Shared by the static and the skinned ``dmtrec lod`` reports (:mod:`dmtrec.systems.lod`,
:mod:`dmtrec.assets.skinned_lod`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from torch import Tensor

from dmtrec.io.image import linear_to_srgb


def flip_score(pred: Tensor, ref: Tensor) -> Optional[float]:
    """Mean LDR FLIP (``flip-evaluator``) over views of linear ``[B, H, W, 3]`` images (sRGB-encoded first);
    None when ``flip-evaluator`` is not installed."""
    try:
        import flip_evaluator  # lazy: optional dependency (extra "lod")
    except ImportError:
        return None
    scores = []
    for p, r in zip(linear_to_srgb(pred.clamp(0, 1)), linear_to_srgb(ref.clamp(0, 1))):
        _, mean, _ = flip_evaluator.evaluate(
            np.ascontiguousarray(r.numpy(), dtype=np.float32),
            np.ascontiguousarray(p.numpy(), dtype=np.float32),
            "LDR",
            applyMagma=False,
        )
        scores.append(float(mean))
    return float(np.mean(scores))
