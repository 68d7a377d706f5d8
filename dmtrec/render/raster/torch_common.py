"""Small pieces the torch rasterizer ops share: the triangle-id encoding of ``rast`` and a
value/gradient splice."""

from __future__ import annotations

import torch
from torch import Tensor

# nvdiffrast stores ``triangle_id + 1`` in a float channel: as its float value up to 2**24, and
# above that as the float whose bit pattern is 0x4a800000 + id. Since 0x4a800000 + 2**24 is the
# bit pattern of 16777216.0, larger ids continue one float step per id and never round together.
_EXACT_LIMIT = 1 << 24
_BITS_OFFSET = 0x4A800000


def tri_id_to_float(ids: Tensor) -> Tensor:
    """int ``triangle_id + 1`` (0 = empty) -> float32 as nvdiffrast writes it into ``rast[..., 3]``."""
    ids = ids.to(torch.int32)
    above = (ids.to(torch.int64) + _BITS_OFFSET).clamp(max=2**31 - 1).to(torch.int32).view(torch.float32)
    return torch.where(ids <= _EXACT_LIMIT, ids.to(torch.float32), above)


def float_to_tri_id(value: Tensor) -> Tensor:
    """Inverse of :func:`tri_id_to_float`: ``rast[..., 3]`` -> int64 ``triangle_id + 1``."""
    value = value.to(torch.float32)
    bits = value.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(value <= float(_EXACT_LIMIT), value.to(torch.int64), bits - _BITS_OFFSET)


class _ValueWithGradOf(torch.autograd.Function):
    """Forward returns ``value``; backward sends the incoming gradient to ``surrogate``."""

    @staticmethod
    def forward(ctx, value: Tensor, surrogate: Tensor) -> Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, grad


def value_with_grad_of(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` in the forward pass, differentiated as ``surrogate`` in the backward pass.

    nvdiffrast's backward kernels differentiate slightly different expressions than their forward
    kernels evaluate (an epsilon in a denominator, no clamp); this reproduces both exactly.
    """
    if not surrogate.requires_grad:
        return value
    return _ValueWithGradOf.apply(value.detach(), surrogate)


# Samples per chunk in the per-pixel custom autograd Functions: their temporaries (a few dozen
# vectors of this length) stay in the CPU's caches instead of streaming through main memory.
CHUNK = 1 << 16
