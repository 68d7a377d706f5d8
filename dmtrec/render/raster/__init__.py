"""Rasterization with nvdiffrast's primitives: ``rasterize``, ``interpolate``, ``texture``,
``antialias``.

Two backends share :class:`~dmtrec.render.raster.base.Rasterizer`'s contract:

* ``"nvdiffrast"``: NVIDIA's CUDA implementation (optional extra ``dmtrec[cuda]``,
  non-commercial licence), imported lazily.
* ``"torch"``: pure PyTorch, any device, same values and gradients.

``get_rasterizer("auto")`` picks nvdiffrast where CUDA and the compiled plugin work and
torch otherwise, and logs its choice.
"""

from .base import BOUNDARY_MODES, FILTER_MODES, Rasterizer
from .select import get_rasterizer, nvdiffrast_available

__all__ = ["Rasterizer", "get_rasterizer", "nvdiffrast_available", "FILTER_MODES", "BOUNDARY_MODES"]
