"""A stand-in for ``nvdiffrast.torch`` on the CPU: it checks every argument against nvdiffrast's
documented contract, records the call, and computes the result with dmtrec's torch backend.

It lets the CPU suite run the code that only ever meets the real nvdiffrast on a GPU
(``dmtrec/render/raster/nvdiffrast_backend.py`` and everything that renders through it). The
contract, from nvdiffrast 0.3.x (NVlabs/nvdiffrast, ``nvdiffrast/torch/ops.py`` docstrings and
asserts, and the ``NVDR_CHECK_*`` lines of ``torch_rasterize.cpp`` / ``torch_texture.cpp``):

* every op: "All input tensors must be contiguous and reside in GPU memory" (the stub: on one
  device, and for ``rasterize`` on the context's device: "GL context must reside on the same
  device as input tensors"); float tensors float32 (``NVDR_CHECK_F32``), ``tri`` int32
  (``NVDR_CHECK_I32``) of shape ``[>0, 3]`` ("tri must have shape [>0, 3]");
* ``RasterizeCudaContext(device=None)``: a context per CUDA device;
* ``rasterize(glctx, pos, tri, resolution, ranges=None, grad_db=True)``: ``glctx`` a context,
  ``grad_db is True or grad_db is False``, ``pos`` ``[>0, >0, 4]`` (instanced mode; dmtrec never
  uses range mode), resolution two ints ``> 0`` (a C++ ``std::tuple<int, int>``), ``pos``
  aligned to float4 ("pos input tensor not aligned to float4", in the gradient op);
* ``interpolate(attr, rast, tri, rast_db=None, diff_attrs=None)``: ``attr`` ``[V, A]`` or
  ``[B, V, A]`` (batch 1 broadcasts), ``rast`` ``[B, H, W, 4]``, ``diff_attrs`` None, ``'all'``
  or a 1-D list of ints, and then ``rast_db`` a tensor; without ``diff_attrs`` the second output
  is an empty ``[B, H, W, 0]`` tensor;
* ``texture(tex, uv, uv_da, mip_level_bias, mip, filter_mode, boundary_mode, max_mip_level)``:
  ``tex`` ``[>0, >0, >0, >0]`` or, with ``boundary_mode='cube'`` only, ``[>0, 6, S, S, >0]``;
  ``uv`` ``[B, H, W, 2]`` (``3`` for cube maps), ``tex`` batch 1 or B ("minibatch size mismatch
  between inputs tex, uv"); ``uv_da`` ``[B, H, W, 4]`` (``6`` for cube maps); ``mip_level_bias``
  ``[B, H, W]``; mipmap filter modes need ``uv_da`` or ``mip_level_bias``; ``mip`` the wrapper
  from ``texture_construct_mip`` of a texture of this size and mode ("mip does not match
  texture size") or a list of tensors; ``max_mip_level`` None or an int >= 0; filter and
  boundary modes from nvdiffrast's lists; alignment: ``uv`` float2 (2D), ``uv_da`` float4 (2D)
  or float2 (cube), ``tex`` float4 when its channels divide by 4, float2 when even;
* ``texture_construct_mip(tex, max_mip_level=None, cube_mode=False)``: ``cube_mode is True or
  cube_mode is False``;
* ``antialias(color, rast, pos, tri, topology_hash=None, pos_gradient_boost=1.0)``: ``color``
  ``[B, H, W, C]`` of ``rast``'s size, ``pos`` ``[B, V, 4]`` or ``[V, 4]``, ``topology_hash``
  None or a ``TopologyHashWrapper`` (from ``antialias_construct_topology_hash``).

A breach raises :class:`ContractError` naming the op and the rule.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from dmtrec.render.raster.torch_backend import TorchRasterizer

FILTER_MODES = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARY_MODES = ("cube", "wrap", "clamp", "zero")


class ContractError(AssertionError):
    """An argument nvdiffrast would refuse (an assert in ops.py or an NVDR_CHECK in its C++)."""


def _require(ok: bool, op: str, rule: str) -> None:
    if not ok:
        raise ContractError(f"nvdiffrast.{op}: {rule}")


def _tensor(op: str, name: str, t: Any, dtype: torch.dtype, dims: tuple, device: Optional[torch.device]) -> Tensor:
    _require(isinstance(t, Tensor), op, f"{name} must be a tensor, got {type(t).__name__}")
    _require(t.dtype == dtype, op, f"{name} must be {dtype}, got {t.dtype}")
    _require(t.is_contiguous(), op, f"{name} must be contiguous (shape {list(t.shape)}, strides {t.stride()})")
    _require(t.dim() in dims, op, f"{name} must have {' or '.join(map(str, dims))} dimensions, got {list(t.shape)}")
    _require(all(s > 0 for s in t.shape), op, f"{name} must have no empty dimension, got {list(t.shape)}")
    _require(device is None or t.device == device, op, f"{name} is on {t.device}, the others on {device}")
    return t


def _aligned(op: str, name: str, t: Tensor, floats: int) -> None:
    _require(t.data_ptr() % (4 * floats) == 0, op, f"{name} input tensor not aligned to float{floats}")


def _tri(op: str, tri: Any, device: Optional[torch.device]) -> None:
    _tensor(op, "tri", tri, torch.int32, (2,), device)
    _require(tri.shape[1] == 3, op, f"tri must have shape [>0, 3], got {list(tri.shape)}")


class StubNvdiffrast(types.ModuleType):
    """``nvdiffrast.torch`` as far as dmtrec uses it. ``calls`` lists ``(op, details)`` per call;
    ``contexts`` the ``RasterizeCudaContext`` objects made; ``plugin_error`` (when set) is what
    ``_get_plugin()`` raises, as a plugin that does not compile."""

    def __init__(self) -> None:
        super().__init__("nvdiffrast.torch")
        self.calls: List[tuple] = []
        self.contexts: List[Any] = []
        self.plugin_error: Optional[BaseException] = None
        stub = self

        class RasterizeCudaContext:
            def __init__(self, device=None):
                self.device = torch.device(device) if device is not None else torch.device("cuda")
                stub.contexts.append(self)

        class TextureMipWrapper:
            def __init__(self, inner, texture_size, cube_mode):
                self.inner, self.texture_size, self.cube_mode = inner, texture_size, cube_mode

        class TopologyHashWrapper:
            def __init__(self, inner, triangles):
                self.inner, self.triangles = inner, triangles

        self.RasterizeCudaContext = RasterizeCudaContext
        self.TextureMipWrapper = TextureMipWrapper
        self.TopologyHashWrapper = TopologyHashWrapper

    # ------------------------------------------------------------------ plumbing

    def _get_plugin(self):
        if self.plugin_error is not None:
            raise self.plugin_error
        return self

    def ops(self) -> List[str]:
        return [op for op, _ in self.calls]

    def details(self, op: str) -> List[Dict[str, Any]]:
        return [d for o, d in self.calls if o == op]

    # ------------------------------------------------------------------ ops

    def rasterize(self, glctx, pos, tri, resolution, ranges=None, grad_db=True):
        op = "rasterize"
        _require(isinstance(glctx, self.RasterizeCudaContext), op, "glctx must be a RasterizeCudaContext")
        _require(grad_db is True or grad_db is False, op, f"grad_db must be a bool, got {grad_db!r}")
        _require(ranges is None, op, "dmtrec uses instanced mode only (ranges=None)")
        _tensor(op, "pos", pos, torch.float32, (3,), glctx.device)
        _require(pos.shape[2] == 4, op, f"instance mode - pos must have shape [>0, >0, 4], got {list(pos.shape)}")
        _aligned(op, "pos", pos, 4)
        _tri(op, tri, glctx.device)
        resolution = tuple(resolution)
        _require(
            len(resolution) == 2 and all(type(r) is int and r > 0 for r in resolution),
            op,
            f"resolution must be two ints [>0, >0], got {resolution!r}",
        )
        self.calls.append((op, dict(batch=pos.shape[0], resolution=resolution, grad_db=grad_db)))
        return TorchRasterizer(pos.device).rasterize(pos, tri, resolution, grad_db=grad_db)

    def interpolate(self, attr, rast, tri, rast_db=None, diff_attrs=None):
        op = "interpolate"
        if diff_attrs is not None and diff_attrs != "all":
            _require(
                isinstance(diff_attrs, (list, tuple)) and all(type(i) is int for i in diff_attrs),
                op,
                f"diff_attrs must be None, 'all' or a 1-D list of ints, got {diff_attrs!r}",
            )
        _tensor(op, "rast", rast, torch.float32, (4,), None)
        _require(rast.shape[3] == 4, op, f"rast must have shape [B, H, W, 4], got {list(rast.shape)}")
        _tensor(op, "attr", attr, torch.float32, (2, 3), rast.device)
        _require(attr.dim() == 2 or attr.shape[0] in (1, rast.shape[0]), op, "attr's minibatch must be 1 or rast's")
        _tri(op, tri, rast.device)
        if diff_attrs:
            _tensor(op, "rast_db", rast_db, torch.float32, (4,), rast.device)
            _require(rast_db.shape == rast.shape, op, "rast_db must have rast's shape")
        self.calls.append((op, dict(diff_attrs=diff_attrs, attr_dims=attr.dim())))
        out, da = TorchRasterizer(rast.device).interpolate(attr, rast, tri, rast_db if diff_attrs else None, diff_attrs)
        return out, da if diff_attrs else out.new_empty(*rast.shape[:3], 0)

    def texture_construct_mip(self, tex, max_mip_level=None, cube_mode=False):
        op = "texture_construct_mip"
        _require(cube_mode is True or cube_mode is False, op, f"cube_mode must be a bool, got {cube_mode!r}")
        self._max_mip_level(op, max_mip_level)
        self._texture_shape(op, tex, cube_mode)
        self.calls.append((op, dict(cube_mode=cube_mode, max_mip_level=max_mip_level)))
        inner = TorchRasterizer(tex.device).construct_mip(tex, max_mip_level=max_mip_level, cube_mode=cube_mode)
        return self.TextureMipWrapper(inner, tuple(tex.shape), cube_mode)

    def texture(
        self,
        tex,
        uv,
        uv_da=None,
        mip_level_bias=None,
        mip=None,
        filter_mode="auto",
        boundary_mode="wrap",
        max_mip_level=None,
    ):
        op = "texture"
        _require(filter_mode in FILTER_MODES, op, f"filter_mode unsupported: {filter_mode!r}")
        _require(boundary_mode in BOUNDARY_MODES, op, f"boundary_mode unsupported: {boundary_mode!r}")
        self._max_mip_level(op, max_mip_level)
        cube = boundary_mode == "cube"
        self._texture_shape(op, tex, cube)
        _tensor(op, "uv", uv, torch.float32, (4,), tex.device)
        _require(uv.shape[3] == (3 if cube else 2), op, f"uv must have shape [>0, >0, >0, {3 if cube else 2}]")
        _require(tex.shape[0] in (1, uv.shape[0]), op, "minibatch size mismatch between inputs tex, uv")
        channels = tex.shape[-1]
        if not cube:
            _aligned(op, "uv", uv, 2)
        if channels % 4 == 0:
            _aligned(op, "tex", tex, 4)
        elif channels % 2 == 0:
            _aligned(op, "tex", tex, 2)
        if uv_da is not None:
            _tensor(op, "uv_da", uv_da, torch.float32, (4,), tex.device)
            _require(
                tuple(uv_da.shape) == (*uv.shape[:3], 6 if cube else 4),
                op,
                f"uv_da must have shape [minibatch_size, height, width, {6 if cube else 4}], got {list(uv_da.shape)}",
            )
            _aligned(op, "uv_da", uv_da, 2 if cube else 4)
        if mip_level_bias is not None:
            _tensor(op, "mip_level_bias", mip_level_bias, torch.float32, (3,), tex.device)
            _require(tuple(mip_level_bias.shape) == tuple(uv.shape[:3]), op, "mip_level_bias must be [B, H, W]")
        mode = filter_mode
        if mode == "auto":
            mode = "linear-mipmap-linear" if uv_da is not None or mip_level_bias is not None else "linear"
        if "mipmap" in mode:
            _require(uv_da is not None or mip_level_bias is not None, op, f"{mode} needs uv_da or mip_level_bias")
        inner_mip = mip
        if isinstance(mip, self.TextureMipWrapper):
            _require(
                mip.texture_size == tuple(tex.shape) and mip.cube_mode == cube, op, "mip does not match texture size"
            )
            inner_mip = mip.inner
        elif mip is not None:
            _require(isinstance(mip, list), op, f"mip must be a TextureMipWrapper or a list, got {type(mip).__name__}")
            for level in mip:
                _tensor(op, "mip level", level, torch.float32, (tex.dim(),), tex.device)
        self.calls.append((op, dict(filter_mode=mode, boundary_mode=boundary_mode, mip=type(mip).__name__)))
        modes = dict(filter_mode=filter_mode, boundary_mode=boundary_mode, max_mip_level=max_mip_level)
        torch_backend = TorchRasterizer(tex.device)
        return torch_backend.texture(tex, uv, uv_da=uv_da, mip_level_bias=mip_level_bias, mip=inner_mip, **modes)

    def antialias_construct_topology_hash(self, tri):
        op = "antialias_construct_topology_hash"
        _tri(op, tri, None)
        self.calls.append((op, dict(triangles=tri.shape[0])))
        return self.TopologyHashWrapper(TorchRasterizer(tri.device).construct_topology_hash(tri), tri.shape[0])

    def antialias(self, color, rast, pos, tri, topology_hash=None, pos_gradient_boost=1.0):
        op = "antialias"
        _tensor(op, "rast", rast, torch.float32, (4,), None)
        _tensor(op, "color", color, torch.float32, (4,), rast.device)
        _require(color.shape[:3] == rast.shape[:3], op, "color must have rast's [B, H, W]")
        _tensor(op, "pos", pos, torch.float32, (2, 3), rast.device)
        _require(pos.shape[-1] == 4 and (pos.dim() == 2 or pos.shape[0] == rast.shape[0]), op, "pos shape")
        _tri(op, tri, rast.device)
        inner = None
        if topology_hash is not None:
            _require(
                isinstance(topology_hash, self.TopologyHashWrapper),
                op,
                f"topology_hash must be a TopologyHashWrapper, got {type(topology_hash).__name__}",
            )
            _require(topology_hash.triangles == tri.shape[0], op, "topology_hash was built for another tri")
            inner = topology_hash.inner
        _require(isinstance(pos_gradient_boost, float), op, "pos_gradient_boost must be a float")
        self.calls.append((op, dict(topology_hash=topology_hash is not None, pos_gradient_boost=pos_gradient_boost)))
        return TorchRasterizer(rast.device).antialias(color, rast, pos, tri, inner, pos_gradient_boost)

    # ------------------------------------------------------------------ shared checks

    @staticmethod
    def _max_mip_level(op: str, level) -> None:
        _require(level is None or (int(level) == level and level >= 0), op, f"invalid max_mip_level {level!r}")

    @staticmethod
    def _texture_shape(op: str, tex, cube: bool) -> None:
        if cube:
            _tensor(op, "tex", tex, torch.float32, (5,), None)
            _require(tex.shape[1] == 6, op, "tex must have shape[>0, 6, >0, >0, >0] in cube map mode")
            _require(tex.shape[2] == tex.shape[3], op, "texture shape must be square in cube map mode")
        else:
            _tensor(op, "tex", tex, torch.float32, (4,), None)


def install(monkeypatch) -> StubNvdiffrast:
    """Put a fresh stub in ``sys.modules`` as ``nvdiffrast.torch`` (undone by ``monkeypatch``)."""
    stub = StubNvdiffrast()
    package = types.ModuleType("nvdiffrast")
    package.__path__ = []  # a package, so that `import nvdiffrast.torch` resolves
    package.torch = stub
    monkeypatch.setitem(sys.modules, "nvdiffrast", package)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", stub)
    return stub
