"""Configuration sections of :class:`~dmtrec.systems.pipeline.ReconstructionSystem`, and the
modules each section builds (:meth:`DMTetConfig.build`, :meth:`LightConfig.build`, the
materials of :class:`MaterialConfig`).

Defaults are nvdiffrec's (``train.py`` FLAGS and its spot/bob/NeRF-synthetic configs) unless
a comment says otherwise; each section is a ``model.init_args.<section>`` block in YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from dmtrec.geometry.dmtet import DMTetGeometry
from dmtrec.geometry.flexicubes import FlexiCubesGeometry
from dmtrec.geometry.sdf_morphology import MORPHOLOGY
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial, VolumetricMaterial

PASSES = ("both", "dmtet", "mesh")
GEOMETRIES = ("dmtet", "flexicubes")  # pass-1 surface representations (``model.geometry``)
TEXTURE_KEYS = ("kd", "ks", "normal")  # the pass-2 material's maps
_VOLUMETRIC_SIZES = (
    "n_levels",
    "features_per_level",
    "log2_table_size",
    "base_resolution",
    "finest_resolution",
    "mlp_width",
)


def _check(section: str, rules: Dict[str, Any]) -> None:
    """Raise one ValueError naming the option for the first rule broken.

    ``rules`` maps an option to ``(value, kind)`` with kind ``"positive"`` (> 0, finite),
    ``"non-negative"`` (>= 0, finite) or ``"optional positive"`` (None or > 0). Checked when a
    section is built, i.e. before a run folder, grid or dataset exists: a zero resolution
    otherwise ends in a ZeroDivisionError deep inside the grid code.
    """
    for name, (value, kind) in rules.items():
        if value is None and kind.startswith("optional"):
            continue
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        if not bad:
            bad = value < 0 if kind == "non-negative" else value <= 0
        if bad:
            need = ">= 0" if kind == "non-negative" else "> 0"
            raise ValueError(f"model.{section}.{name}: must be a finite number {need}, got {value!r}")


@dataclass
class DMTetConfig:
    """Pass 1 geometry: DMTet or FlexiCubes (``model.geometry``).

    Args:
        resolution: tet grid resolution (nvdiffrec's 32/64/128), generated and cached ...
            (FlexiCubes: cells per side of the voxel grid, nvdiffrec's ``bob_flexi`` 48) ...
        grid_file: ... or read from an nvdiffrec ``.npz`` grid of that resolution (DMTet only).
        scale: edge length of the cube the grid spans (nvdiffrec ``mesh_scale``).
        init: SDF initialisation, "random" (nvdiffrec) or "sphere".
        seed: seed of the random SDF initialisation.
        sdf_reg: SDF sign regularizer weight at the start of pass 1 (nvdiffrec 0.2) ...
        sdf_reg_end: ... decaying linearly to this (0.01) ...
        sdf_reg_ramp: ... over this fraction of pass 1 (0.25).
        offset_bound: largest vertex offset, in world units; None is nvdiffrec's ``1 / resolution``
            whatever ``scale`` is (FlexiCubes: half a cell, ``scale / (2 resolution)``).
        min_component_fraction: at the end of pass 1, drop vertex-connected pieces with fewer
            faces than this fraction of the largest piece's before unwrapping and baking (floaters);
            0 keeps everything (nvdiffrec).
        fill_hidden_views: at the end of pass 1 (the surface that is baked, exported and scored),
            grid vertices outside the surface that none of this many cameras spread around the
            grid sees are set inside: pockets and tunnels within the shell, which no image
            constrains, would otherwise stay as interior sheets joined to the shell by handles;
            0 keeps them (nvdiffrec).
        close_filled: then close the inside set of that surface's SDF by this many rings of grid
            edges (after the filling, if any; the learned SDF is left alone): a tunnel through the
            shell narrow enough that only a few cameras see through it, which filling keeps and
            each adds a handle, is closed once the interior sheets are gone. 0: no closing (nvdiffrec).
        dev_reg: FlexiCubes only: weight of its L_dev regularizer (nvdiffrec 0.25).
        weight_lr: FlexiCubes only: learning-rate factor of the per-cube weights (α, β, γ) against
            ``optim.lr_geometry`` (nvdiffrec 1: one rate for everything; 0 freezes them uniform).
        weight_reg: FlexiCubes only: weight of the mean absolute unconstrained α, β (the
            reference example's ``0.1 * |weight[:, :20]|.mean()``, which pulls them to uniform);
            nvdiffrec 0.
        morphology: at the end of pass 1, before extracting the surface to bake: ``"close"``
            (fill tunnels and gaps about two grid edges wide), ``"open"`` (cut bridges that thin),
            ``"close_open"``, or ``"none"`` (nvdiffrec); see :mod:`dmtrec.geometry.sdf_morphology`.
        morphology_steps: rings of grid edges each dilation / erosion spans.
        morphology_every: also apply ``morphology`` during pass 1, before every this many
            iterations (0: only before the bake). Opening the SDF idempotently, repeating it is
            safe on resume; the fit regrows what the images need between two clean-ups.
        carve_silhouettes: in every pass-1 step, grid vertices that a training view of the batch
            sees as background (:func:`dmtrec.render.carving.background_points`) are marked, and
            every vertex marked so far is set outside before the step's render: the surface stays
            within the views' visual hull, so membranes over through-holes and webs between thin
            parts, which no silhouette edge pulls away, do not form (nvdiffrec: off). The marks
            are not checkpointed; after a resume they build up again from the batches.
        carve_margin: pixels the training silhouettes grow by before carving (points of the
            object within a pixel of its outline are kept).
    """

    resolution: int = 64
    grid_file: Optional[str] = None
    scale: float = 2.1
    init: str = "random"
    seed: int = 0
    sdf_reg: float = 0.2
    sdf_reg_end: float = 0.01
    sdf_reg_ramp: float = 0.25
    offset_bound: Optional[float] = None
    min_component_fraction: float = 0.0
    fill_hidden_views: int = 0
    close_filled: int = 0
    dev_reg: float = 0.25
    weight_lr: float = 1.0
    weight_reg: float = 0.0
    morphology: str = "none"
    morphology_steps: int = 1
    morphology_every: int = 0
    carve_silhouettes: bool = False
    carve_margin: int = 1

    def __post_init__(self) -> None:
        _check(
            "dmtet",
            {
                "resolution": (self.resolution, "positive"),
                "scale": (self.scale, "positive"),
                "sdf_reg": (self.sdf_reg, "non-negative"),
                "sdf_reg_end": (self.sdf_reg_end, "non-negative"),
                "sdf_reg_ramp": (self.sdf_reg_ramp, "non-negative"),
                "dev_reg": (self.dev_reg, "non-negative"),
                "weight_lr": (self.weight_lr, "non-negative"),
                "weight_reg": (self.weight_reg, "non-negative"),
                "fill_hidden_views": (self.fill_hidden_views, "non-negative"),
                "close_filled": (self.close_filled, "non-negative"),
                "morphology_steps": (self.morphology_steps, "positive"),
                "morphology_every": (self.morphology_every, "non-negative"),
                "carve_margin": (self.carve_margin, "non-negative"),
            },
        )
        if self.morphology not in MORPHOLOGY:
            raise ValueError(f"model.dmtet.morphology: must be one of {', '.join(MORPHOLOGY)}, got {self.morphology!r}")

    def build(self, geometry: str = "dmtet"):
        """The pass-1 module of ``model.geometry``: DMTet (SDF + offsets on the configured tet
        grid) or FlexiCubes (SDF, offsets and per-cube weights on a voxel grid)."""
        if geometry == "flexicubes":
            if self.grid_file:
                raise ValueError("model.dmtet.grid_file: a tet grid file does not apply to model.geometry 'flexicubes'")
            geo = FlexiCubesGeometry(
                resolution=self.resolution,
                scale=self.scale,
                init=self.init,
                seed=self.seed,
                offset_bound=self.offset_bound,
            )
            # Frozen weights (weight_lr 0) get no gradient at all: no backward or Adam work for them.
            geo.weights.requires_grad_(self.weight_lr > 0)
            return geo
        return DMTetGeometry(
            resolution=self.resolution,
            scale=self.scale,
            grid_file=self.grid_file,
            init=self.init,
            seed=self.seed,
            offset_bound=self.offset_bound,
        )


@dataclass
class MaterialConfig:
    """Material ranges, the volumetric texture of pass 1 and the 2D textures of pass 2.

    Args:
        kd_min, kd_max: per-channel range of the diffuse albedo (RGB).
        ks_min, ks_max: range of ks = (occlusion, roughness, metallic); nvdiffrec keeps
            roughness >= 0.08.
        normal_map: learn a tangent-space normal perturbation.
        texture_res: side of the baked 2D textures of pass 2.
        smoothness: weight of the kd smoothness term (jittered lookups; nvdiffrec 0.03) ...
        smoothness_ramp: ... faded in over this many iterations of each pass (500; the
            occlusion term's ramp too).
        occlusion_reg: weight of nvdiffrec's occlusion prior ``mean(ks.occlusion * alpha)``
            (0.001), so that the occlusion channel does not absorb darkening the light or kd
            should explain.
        volumetric: extra keyword arguments of the volumetric material (hash-grid levels,
            table size, MLP width, ...), passed through unchanged.
    """

    kd_min: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    kd_max: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    ks_min: List[float] = field(default_factory=lambda: [0.0, 0.08, 0.0])
    ks_max: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    normal_map: bool = True
    texture_res: int = 1024
    smoothness: float = 0.03
    smoothness_ramp: int = 500
    occlusion_reg: float = 0.001
    volumetric: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(
            "material",
            {
                "texture_res": (self.texture_res, "positive"),
                "smoothness": (self.smoothness, "non-negative"),
                "smoothness_ramp": (self.smoothness_ramp, "non-negative"),
            },
        )
        # Grid sizes of the hash grid and the MLP (the others pass through to VolumetricMaterial).
        kinds = {name: "positive" for name in _VOLUMETRIC_SIZES} | {"mlp_hidden_layers": "non-negative"}
        _check("material.volumetric", {k: (v, kinds[k]) for k, v in self.volumetric.items() if k in kinds})

    def volumetric_material(self, geometry) -> VolumetricMaterial:
        """The pass-1 volumetric (hash-grid + MLP) material over the pass-1 grid's bounding box."""
        lo, hi = geometry.grid_aabb()  # the grid's box (nvdiffrec getAABB), not the current surface's
        return VolumetricMaterial(
            aabb=torch.stack([lo, hi]),
            kd_range=(self.kd_min, self.kd_max),
            ks_range=(self.ks_min, self.ks_max),
            perturb_normals=self.normal_map,
            **self.volumetric,
        )

    def complete_textures(self, textures: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Fill missing kd / ks / normal maps ``[R, R, C]`` of an input mesh: kd the middle of
        its range; ks occlusion 0, roughness the middle of its range, metallic 0 (nvdiffrec reads
        a mesh without ks as ks = 0, clamped into the range, and clears occlusion), each clamped
        into the configured range; the unperturbed normal (0, 0, 1)."""
        res = self.texture_res
        out = dict(textures)
        if "kd" not in out:
            out["kd"] = (0.5 * (torch.tensor(self.kd_min) + torch.tensor(self.kd_max))).expand(res, res, 3).clone()
        if "ks" not in out:
            ks_min, ks_max = torch.tensor(self.ks_min), torch.tensor(self.ks_max)
            ks = torch.stack([torch.tensor(0.0), 0.5 * (ks_min[1] + ks_max[1]), torch.tensor(0.0)])
            out["ks"] = torch.minimum(torch.maximum(ks, ks_min), ks_max).expand(res, res, 3).clone()
        if "normal" not in out and self.normal_map:
            out["normal"] = torch.tensor([0.0, 0.0, 1.0]).expand(res, res, 3).clone()
        return out

    def textured_material(self, textures: Dict[str, Tensor]) -> TexturedMaterial:
        """The pass-2 material: learnable 2D ``textures`` clamped to the configured ranges."""
        normal = textures.get("normal") if self.normal_map else None
        return TexturedMaterial.from_tensors(
            kd=textures["kd"],
            ks=textures["ks"],
            normal=normal,
            kd_range=(self.kd_min, self.kd_max),
            ks_range=(self.ks_min, self.ks_max),
        )

    def textured_material_like_state(self, state_dict: Dict[str, Tensor], prefix: str) -> TexturedMaterial:
        """A pass-2 material with the texture shapes of a saved one (values come from
        ``load_state_dict``)."""
        # TexturedMaterial keeps each map as a Texture2D whose texels are the parameter "<key>.data".
        textures = {
            key: torch.zeros(state_dict[f"{prefix}{key}.data"].shape[-3:])
            for key in TEXTURE_KEYS
            if f"{prefix}{key}.data" in state_dict
        }
        return self.textured_material(self.complete_textures(textures))


@dataclass
class LightConfig:
    """Environment light.

    Args:
        init: "random" (texels uniform in [0.25, 0.75)), "constant" (0.5 everywhere, what
            nvdiffrec's training starts from), or a path to an HDR probe (``.hdr``).
        base_res: cube-map face resolution, a power of two >= 32 (nvdiffrec 512; small on CPU).
        scale: multiplier on the initial radiance.
        optimize: learn the light (False keeps it fixed, e.g. for a known probe; its split-sum
            mips are then built once, not every step).
        reg: weight of nvdiffrec's light regularizer (0.005).
        lock: keep the light fixed in pass 2 only (nvdiffrec ``lock_light``).
        camera_space: the light turns with the camera, i.e. lookups use camera-space directions
            (nvdiffrec ``camera_space_light``, for objects turning on a stand under fixed lamps).
    """

    init: str = "random"
    base_res: int = 64
    scale: float = 1.0
    optimize: bool = True
    reg: float = 0.005
    lock: bool = False
    camera_space: bool = False

    def __post_init__(self) -> None:
        _check(
            "light",
            {
                "base_res": (self.base_res, "positive"),
                "scale": (self.scale, "positive"),
                "reg": (self.reg, "non-negative"),
            },
        )

    def build(self) -> EnvironmentLight:
        """The environment light: from an HDR probe file, constant, or random (nvdiffrec)."""
        if self.init == "random":
            return EnvironmentLight.random(base_res=self.base_res, scale=0.5 * self.scale, bias=0.25 * self.scale)
        if self.init == "constant":
            return EnvironmentLight.constant(0.5 * self.scale, base_res=self.base_res)
        path = Path(self.init)
        if path.suffix.lower() != ".hdr":
            raise ValueError(f"model.light.init: expected 'random', 'constant' or a .hdr probe file, got {self.init!r}")
        return EnvironmentLight.from_hdr(path, base_res=self.base_res, scale=self.scale)


@dataclass
class OptimConfig:
    """Per-group Adam learning rates per pass and their schedule (restarted at each pass).

    Args:
        lr_geometry: SDF/offsets in pass 1 (nvdiffrec ``learning_rate[0]``: pass 1's rate).
        lr_material: volumetric texture in pass 1 (also ``learning_rate[0]`` in nvdiffrec).
        lr_mesh_geometry: vertex positions in pass 2; None uses ``lr_geometry`` (nvdiffrec
            ``learning_rate[1]``: pass 2's rate, e.g. 0.01 for NeRF-synthetic, 0.003 for spot).
        lr_mesh_material: 2D textures in pass 2; None uses ``lr_material`` (also ``learning_rate[1]``).
        lr_light: environment light in both passes; None uses the material rate of the pass
            (nvdiffrec puts the light in the material optimizer).
        warmup_dmtet: linear warm-up length in pass 1 (nvdiffrec: none) ...
        warmup_mesh: ... and in pass 2 (nvdiffrec: 100 iterations, so that the first steps on a
            freshly baked mesh do not throw its vertices around).
        decay: exponential decay rate, lr factor ``10 ** (-decay * iteration)`` (nvdiffrec 2e-4).
        grad_scale_light: gradient multiplier of the light (nvdiffrec 64: ``lgt.base.grad *= 64``) ...
        grad_scale_hashgrid: ... and of the hash-grid table (nvdiffrec 16: its MLP's backward
            hook multiplies the gradient reaching the encoding by 128, ``train.py`` divides the
            table's by 8; the MLP's own weights are unscaled). Adam is invariant to a gradient
            scale ``s`` except through ``eps``: scaling by ``s`` is exactly Adam with ``eps / s``,
            which is how they are applied (the per-texel light gradients, ~1e-8 at 512^2, are
            otherwise the size of ``eps`` and take much smaller steps). 1 turns a scale off.
    """

    lr_geometry: float = 0.03
    lr_material: float = 0.03
    lr_mesh_geometry: Optional[float] = None
    lr_mesh_material: Optional[float] = None
    lr_light: Optional[float] = None
    warmup_dmtet: int = 0
    warmup_mesh: int = 100
    decay: float = 2e-4
    grad_scale_light: float = 64.0
    grad_scale_hashgrid: float = 16.0

    def __post_init__(self) -> None:
        _check(
            "optim",
            {
                "lr_geometry": (self.lr_geometry, "positive"),
                "lr_material": (self.lr_material, "positive"),
                "lr_mesh_geometry": (self.lr_mesh_geometry, "optional positive"),
                "lr_mesh_material": (self.lr_mesh_material, "optional positive"),
                "lr_light": (self.lr_light, "optional positive"),
                "warmup_dmtet": (self.warmup_dmtet, "non-negative"),
                "warmup_mesh": (self.warmup_mesh, "non-negative"),
                "decay": (self.decay, "non-negative"),
            },
        )


@dataclass
class MeshPassConfig:
    """Pass 2 (fixed topology).

    Args:
        init_mesh: mesh file to refine when running pass 2 alone (``passes: mesh``); its UVs
            and textures are used when present, otherwise it is unwrapped and the textures
            start from the middle of their ranges.
        laplace: "relative" (penalise the Laplacian of the displacement from the pass-2
            start, nvdiffrec's default) or "absolute".
        laplace_scale: Laplacian weight at the start of pass 2, decaying linearly to 0 (10000).
        lock_pos: keep vertex positions fixed (optimize textures and light only).
        lock_material: keep the textures fixed. With ``lock_pos`` only the light learns: the
            probe of a known, textured asset is estimated from its photos.
        keep_textures: start from ``init_mesh``'s own textures (default); false starts every
            texture from the middle of its range, as when the materials are unknown (nvdiffrec's
            known-geometry material experiment).
    """

    init_mesh: Optional[str] = None
    laplace: str = "relative"
    laplace_scale: float = 10000.0
    lock_pos: bool = False
    lock_material: bool = False
    keep_textures: bool = True

    def __post_init__(self) -> None:
        _check("mesh_pass", {"laplace_scale": (self.laplace_scale, "non-negative")})
