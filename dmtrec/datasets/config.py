"""Typed ``data:`` configuration: one dataclass per data kind, and the flat form's upgrade.

A config names its kind and gives that kind's section; the options every kind shares stay at
the top of ``data:`` (:class:`dmtrec.datasets.datamodule.ReconDataModule`)::

    data:
      kind: reference_mesh
      reference_mesh: {mesh: spot.obj, probe: sky.hdr, probe_res: 128, rasterizer: torch}
      resolution: [96, 96]
      batch_size: 2

so that ``dmtrec fit --print_config`` shows only the options that apply. The flat form of
earlier releases (``data: {kind: reference_mesh, mesh: ..., probe: ..., render_rasterizer: ...}``)
still loads for one release: :func:`upgrade_flat_data` turns it into the typed form and logs,
once, a one-line deprecation message that shows it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Literal, Optional, Tuple, Union

from .reference_mesh import ReferenceRender

log = logging.getLogger(__name__)

KINDS = ("nerf_synthetic", "nerd", "colmap", "reference_mesh")


@dataclass(kw_only=True)
class ImageData:
    """What every kind of image folder takes.

    Attributes:
        path: the dataset folder.
        downscale: shrink images by this integer factor (or set the shared ``resolution``).
        preload: keep decoded images in memory.
    """

    path: str
    downscale: int = 1
    preload: bool = True


@dataclass(kw_only=True)
class NeRFSyntheticData(ImageData):
    """``kind: nerf_synthetic``: ``transforms_{train,val,test}.json`` and RGBA images.

    Attributes:
        require_alpha: images without alpha are an error (else opaque).
        world_up: ``"z"`` turns Blender's Z-up scenes Y-up, as nvdiffrec does.
    """

    require_alpha: bool = True
    world_up: Literal["y", "z"] = "y"


@dataclass(kw_only=True)
class NeRDData(ImageData):
    """``kind: nerd``: an LLFF folder (``poses_bounds.npy``, ``images/``, ``masks/``).

    Attributes:
        holdout: 0 (every split holds all frames: nvdiffrec evaluates on its training views) or
            k >= 2 (every k-th frame is held out of training for val and test).
    """

    holdout: int = 0


@dataclass(kw_only=True)
class ColmapData(ImageData):
    """``kind: colmap``: ``images/``, ``sparse/0/``, optional ``masks/`` (:mod:`dmtrec.datasets.colmap`).

    Attributes:
        holdout: as :class:`NeRDData`.
        require_alpha: photos with neither alpha nor a mask file are an error (else opaque).
        center, radius: the object's sphere in the model's units, overriding the estimate from
            the cameras' look-at point and the sparse points; the scene is scaled so that this
            sphere is the unit sphere of the tet grid.
    """

    holdout: int = 0
    require_alpha: bool = True
    center: Optional[Tuple[float, float, float]] = None
    radius: Optional[float] = None


@dataclass(kw_only=True)
class ReferenceMeshData(ReferenceRender):
    """``kind: reference_mesh``: renders of ``mesh`` under ``probe``, with the cameras and
    rendering of :class:`~dmtrec.datasets.reference_mesh.ReferenceRender`.

    Attributes:
        mesh: reference OBJ (with its MTL and textures) or GLB.
        probe: HDR environment probe (lat-long ``.hdr``).
        train_resolution: ``(H, W)`` of the training renders only (default the shared
            ``resolution``); validation and test keep ``resolution``. Training at a lower
            resolution than the test buys iterations on a CPU (``spot_cpu.yaml``).
        train_resolution_mesh: ``(H, W)`` of the training renders of pass 2 (the mesh pass;
            default: as pass 1), switched to through ``ReconDataModule.use_pass``. Not with
            ``prerender``.
        prerender: render every split once at setup and reuse the renders (training then
            cycles through a fixed pool of ``views`` random views); ``views * H * W * 16`` bytes.
    """

    mesh: str
    probe: str
    train_resolution: Optional[Tuple[int, int]] = None
    train_resolution_mesh: Optional[Tuple[int, int]] = None
    prerender: bool = False


SECTIONS = {
    "nerf_synthetic": NeRFSyntheticData,
    "nerd": NeRDData,
    "colmap": ColmapData,
    "reference_mesh": ReferenceMeshData,
}
DataSection = Union[NeRFSyntheticData, NeRDData, ColmapData, ReferenceMeshData]


@dataclass
class SharedData:
    """The shared options every kind takes that are rarely changed (``data.shared``).

    Attributes:
        seed: seeds backgrounds, reference cameras and the training shuffle.
        background_train, background_val: ``white``, ``black``, ``random`` (one colour per
            image) or ``noise`` (one per pixel); ``background_val`` also serves the test split.
            Training backgrounds are drawn afresh every time a view is drawn (nvdiffrec trains
            every iteration over new per-pixel noise, ``noise`` here, the default; its
            ``background`` setting is the validation one, ``white``).
        num_workers: DataLoader worker processes (0: load in the main process).
        near, far: clip planes.
    """

    seed: int = 0
    background_train: str = "noise"
    background_val: str = "white"
    num_workers: int = 0
    near: float = 0.1
    far: float = 1000.0


# Flat names of earlier releases that were renamed inside their section.
_RENAMED = {"render_rasterizer": "rasterizer", "render_device": "device"}
# Flat options the old datamodule ignored for kinds they do not apply to.
_IGNORED_ELSEWHERE = ("preload", "prerender")
_warned = False


def section_of(kind: str, value: Union[None, Dict[str, Any], DataSection]) -> DataSection:
    """``value`` (a dataclass or its dict, as YAML gives it) as the typed section of ``kind``."""
    if kind not in SECTIONS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(value, SECTIONS[kind]):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"{kind}: expected the options of kind {kind}, got {type(value).__name__}")
    missing = [f.name for f in _required(SECTIONS[kind]) if f.name not in value]
    if missing:
        raise ValueError(f"{kind}.{missing[0]}: required for kind {kind}")
    try:
        return SECTIONS[kind](**value)
    except TypeError:
        unknown = sorted(set(value) - {f.name for f in fields(SECTIONS[kind])})
        raise ValueError(f"{kind}.{unknown[0]}: not an option of kind {kind}") from None


def shared_of(value: Union[None, Dict[str, Any], SharedData]) -> SharedData:
    """``value`` (a :class:`SharedData` or its dict) as a :class:`SharedData`."""
    if isinstance(value, SharedData):
        return value
    try:
        return SharedData(**(value or {}))
    except TypeError:
        unknown = sorted(set(value) - {f.name for f in fields(SharedData)})
        raise ValueError(f"shared.{unknown[0]}: not a shared data option") from None


def _required(cls) -> list:
    from dataclasses import MISSING

    return [f for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]


TOP_LEVEL = ("kind", *KINDS, "resolution", "views", "val_views", "test_views", "batch_size", "val_batch_size", "shared")
"""The keys of a typed ``data:`` section (``ReconDataModule``'s parameters)."""


def upgrade_data_config(data: Dict[str, Any]) -> Dict[str, Any]:
    """A ``data:`` config section in the typed form: returned as is when it is typed, upgraded by
    :func:`upgrade_flat_data` (one deprecation line) when it holds flat options of earlier releases."""
    flat = {key: value for key, value in data.items() if key not in TOP_LEVEL}
    if not flat:
        return dict(data)
    top = {key: value for key, value in data.items() if key in TOP_LEVEL}
    return upgrade_flat_data(data.get("kind", "nerf_synthetic"), flat, top)


def upgrade_flat_data(kind: str, flat: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """The typed form of an earlier release's flat ``data:`` options.

    Args:
        kind: the data kind.
        flat: the flat options that are neither top-level nor sections now (``path``, ``mesh``,
            ``render_rasterizer``, ``seed``, ...).
        top: the options given in the typed form (kept; a flat option overrides its section's).

    Returns:
        ``top`` with ``flat`` moved into ``top[kind]`` and ``top["shared"]``. Logs one line,
        once per process, showing the typed form.
    """
    if kind not in SECTIONS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    shared_names = {f.name for f in fields(SharedData)}
    section_names = {f.name for f in fields(SECTIONS[kind])}
    section = dict(_as_dict(top.get(kind)))
    shared = dict(_as_dict(top.get("shared")))
    for name, value in flat.items():
        target = _RENAMED.get(name, name)
        if name in shared_names:
            shared[name] = value
        elif target in section_names and (name not in _RENAMED or kind == "reference_mesh"):
            section[target] = value
        elif name in _IGNORED_ELSEWHERE or _is_old_default(name, value):
            continue
        elif any(target in {f.name for f in fields(cls)} for cls in SECTIONS.values()):
            raise ValueError(f"{name}: applies to another kind than {kind}")
        else:
            raise ValueError(f"{name}: not a data option")
    upgraded = {**top, "kind": kind, kind: section}
    if shared:
        upgraded["shared"] = shared
    _warn_once(kind, upgraded)
    return upgraded


# The flat form's defaults of every section option: options left at them said nothing, whatever the kind.
FLAT_DEFAULTS = {
    "path": None,
    "mesh": None,
    "probe": None,
    "env_scale": 1.0,
    "probe_res": 512,
    "train_resolution": None,
    "train_resolution_mesh": None,
    "downscale": 1,
    "holdout": 0,
    "cam_radius": 3.0,
    "fovy": 45.0,
    "translation_jitter": 0.25,
    "spp": 1,
    "require_alpha": True,
    "world_up": "y",
    "render_device": None,
    "render_rasterizer": "auto",
    "center": None,
    "radius": None,
    "preload": True,
    "prerender": False,
}
# Section option -> its flat name.
FLAT_NAMES = {new: old for old, new in _RENAMED.items()}


def _is_old_default(name: str, value: Any) -> bool:
    return name in FLAT_DEFAULTS and value == FLAT_DEFAULTS[name]


def _as_dict(value: Any) -> Dict[str, Any]:
    if value is None:
        return {}
    return asdict(value) if hasattr(value, "__dataclass_fields__") else dict(value)


def _warn_once(kind: str, upgraded: Dict[str, Any]) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    shown = {key: upgraded[key] for key in ("kind", kind, "shared") if key in upgraded}
    log.warning(
        "data: the flat options of earlier releases are deprecated and will be removed in the next release; "
        "write data: %s (dmtrec fit --print_config shows the whole section)",
        json.dumps(shown, default=str),
    )


def typed_option(kind: str, name: str) -> Optional[str]:
    """Where an earlier release's flat ``data.<name>`` lives now, relative to ``data``
    (``reference_mesh.rasterizer`` for ``render_rasterizer`` of kind reference_mesh,
    ``shared.seed``); None for the options that kept their place (:data:`TOP_LEVEL`) or that do not
    apply to ``kind``."""
    if name in TOP_LEVEL or kind not in SECTIONS:
        return None
    if name in {f.name for f in fields(SharedData)}:
        return f"shared.{name}"
    target = _RENAMED.get(name, name)
    if target in {f.name for f in fields(SECTIONS[kind])} and (name not in _RENAMED or kind == "reference_mesh"):
        return f"{kind}.{target}"
    return None
