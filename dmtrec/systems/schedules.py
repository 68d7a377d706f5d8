"""Learning-rate and regularizer schedules of nvdiffrec's training loop.

All take the iteration *within the current pass* (each pass restarts its schedules, as
nvdiffrec runs two separate optimisation loops).
"""

from __future__ import annotations


def lr_factor(iteration: int, warmup_iters: int = 0, decay: float = 2e-4) -> float:
    """Multiplier on each parameter group's base learning rate.

    Linear warm-up over ``warmup_iters``, then ``10 ** (-decay * (iteration - warmup_iters))``:
    nvdiffrec's exponential fall-off (decay 2e-4 divides the rate by 10 every 5,000 iterations).
    """
    if iteration < warmup_iters:
        return iteration / warmup_iters
    return 10.0 ** (-decay * (iteration - warmup_iters))


def sdf_reg_weight(progress: float, start: float = 0.2, end: float = 0.01, ramp: float = 0.25) -> float:
    """SDF sign regularizer weight: linear from ``start`` to ``end`` over the first ``ramp``
    fraction of pass 1, then constant (nvdiffrec: 0.2 -> 0.01 over the first quarter)."""
    t = min(1.0, progress / ramp) if ramp > 0 else 1.0
    return start - (start - end) * t


def ramp_up(iteration: int, ramp_iters: int) -> float:
    """``min(1, iteration / ramp_iters)``: nvdiffrec fades in the material smoothness term over
    its first 500 iterations."""
    return 1.0 if ramp_iters <= 0 else min(1.0, iteration / ramp_iters)


def laplace_weight(progress: float, scale: float) -> float:
    """Laplacian regularizer weight in pass 2: ``scale * (1 - progress)`` (nvdiffrec)."""
    return scale * max(0.0, 1.0 - progress)
