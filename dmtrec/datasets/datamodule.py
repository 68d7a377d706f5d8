"""``ReconDataModule``: the training, validation and test views of one experiment.

Configured from YAML through LightningCLI (``data:`` section), e.g.::

    data:
      kind: nerf_synthetic          # or nerd, colmap, reference_mesh
      path: data/generated/spot     # NeRF-synthetic folder (nerd: LLFF folder with poses_bounds.npy;
                                    # colmap: images/, sparse/0/, masks/)
      downscale: 2
      batch_size: 4
      seed: 0

    data:
      kind: reference_mesh
      mesh: ../shared/data/meshes/spot/spot.obj
      probe: ../shared/data/envmaps/mud_road_puresky_1k.hdr
      resolution: [128, 128]
      views: 4000                   # fresh random views per epoch

Batches follow :func:`dmtrec.datasets.samples.collate_views`. Everything is checked in
:meth:`ReconDataModule.setup` (or earlier with :meth:`ReconDataModule.check`), so a broken
dataset stops the run before training with one :class:`DatasetError` line.
"""

from __future__ import annotations

import logging
from typing import Dict, Literal, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dmtrec.core.mesh import Mesh

from .base import ImageViews
from .colmap import ColmapViews
from .nerd import NeRDViews
from .nerf_synthetic import Z_UP_TO_Y_UP, NeRFSyntheticViews
from .reference_mesh import ReferenceMeshViews, ReferenceRender, load_reference_scene
from .samples import DrawSampler, RedrawnBackgrounds, as_resolution, check_background, collate_views

log = logging.getLogger(__name__)

KINDS = ("nerf_synthetic", "nerd", "colmap", "reference_mesh")
IMAGE_KINDS = ("nerf_synthetic", "nerd", "colmap")
SPLITS = ("train", "val", "test")


def train_from_world(kind: str, world_up: str) -> Tensor:
    """``[4, 4]``: a dataset's world frame to the frame training runs in. Z-up NeRF-synthetic
    scenes (``world_up: z``) train Y-up, as nvdiffrec; every other dataset trains in its own frame."""
    if kind == "nerf_synthetic" and world_up == "z":
        return Z_UP_TO_Y_UP.clone()
    return torch.eye(4)


class ReconDataModule(pl.LightningDataModule):
    """Views of a NeRF-synthetic or NeRD (LLFF) folder, or renders of a reference mesh.

    Args:
        kind: ``"nerf_synthetic"`` (reads ``path``), ``"nerd"`` (reads the LLFF folder ``path``:
            ``poses_bounds.npy``, ``images/``, ``masks/``), ``"colmap"`` (a COLMAP capture ``path``:
            ``images/``, ``sparse/0/``, optional ``masks/``; see :mod:`dmtrec.datasets.colmap`) or
            ``"reference_mesh"`` (renders
            ``mesh`` under ``probe``).
        path: NeRF-synthetic or NeRD dataset folder.
        mesh: reference OBJ (with its MTL and textures).
        probe: HDR environment probe (lat-long ``.hdr``) lighting the reference mesh.
        env_scale: multiplies the probe's radiance.
        probe_res: cube-map face size of the probe's light (nvdiffrec: 512; 64-128 keeps
            CPU runs quick, since prefiltering it dominates setup).
        resolution: ``(H, W)`` working resolution. Reference mesh: render size (default
            512 x 512, nvdiffrec's). NeRF-synthetic: resize target keeping the images' aspect
            (default: image size / ``downscale``). NeRD, COLMAP: resize target (default: image size /
            ``downscale``).
        train_resolution: reference mesh: ``(H, W)`` of the training renders only (default
            ``resolution``); validation and test keep ``resolution``. Training at a lower
            resolution than the test buys iterations on a CPU (``spot_cpu.yaml``).
        train_resolution_mesh: reference mesh: ``(H, W)`` of the training renders of pass 2 (the
            mesh pass; default: as pass 1). The system switches to it through :meth:`use_pass`
            when pass 2 starts, so that a CPU run can shape the surface cheaply at a low
            resolution and refine mesh and textures at a higher one. Not with ``prerender``.
        downscale: NeRF-synthetic, NeRD, COLMAP: shrink images by this integer factor.
        views: training samples per epoch. NeRF-synthetic, NeRD, COLMAP: frames repeat cyclically
            (default one per frame); reference mesh: a fresh random camera per sample (default 1000).
        val_views, test_views: NeRF-synthetic, NeRD, COLMAP: evenly spaced subset of the split's frames
            (default all); reference mesh: cameras on a fixed orbit (default 8).
        holdout: NeRD, COLMAP: 0 (every split holds all frames: nvdiffrec evaluates on its training
            views) or k >= 2 (every k-th frame is held out of training for val and test).
        background_train, background_val: ``white``, ``black``, ``random`` (one colour per
            image) or ``noise`` (one per pixel); ``background_val`` also serves the test split.
            Training backgrounds are drawn afresh every time a view is drawn (nvdiffrec trains
            every iteration over new per-pixel noise, ``noise`` here, the default; its
            ``background`` setting is the validation one, ``white``).
        batch_size: training batch size; validation and test use ``val_batch_size``.
        num_workers: DataLoader worker processes (0: load in the main process).
        seed: seeds backgrounds, reference cameras and the training shuffle.
        near, far: clip planes.
        cam_radius, fovy, translation_jitter: reference-mesh cameras (distance to the
            origin, vertical fov in degrees, uniform jitter of the object in each axis).
        spp: reference mesh: supersampling per axis for the reference renders.
        require_alpha: NeRF-synthetic, COLMAP: images without alpha (COLMAP: nor a mask file)
            are an error (else opaque).
        center, radius: COLMAP: the object's sphere in the model's units, overriding the
            estimate from the cameras' look-at point and the sparse points; the scene is scaled
            so that this sphere is the unit sphere of the tet grid.
        preload: NeRF-synthetic, NeRD, COLMAP: keep decoded images in memory.
        world_up: NeRF-synthetic: ``"z"`` turns Blender's Z-up scenes Y-up, as nvdiffrec does.
        render_device: reference mesh: device to render on (default CUDA if available).
        render_rasterizer: reference mesh: rasterizer backend of the reference renders (``auto``,
            ``nvdiffrast``, ``torch``); not called ``rasterizer`` because Lightning merges the
            datamodule's and the model's hyper-parameters and refuses equal names with different values.
        prerender: reference mesh: render every split once in :meth:`setup` and reuse the
            renders (training then cycles through a fixed pool of ``views`` random views,
            instead of rendering each sample when it is drawn); ``views * H * W * 16`` bytes.
    """

    def __init__(
        self,
        kind: Literal["nerf_synthetic", "nerd", "colmap", "reference_mesh"] = "nerf_synthetic",
        path: Optional[str] = None,
        mesh: Optional[str] = None,
        probe: Optional[str] = None,
        env_scale: float = 1.0,
        probe_res: int = 512,
        resolution: Optional[Tuple[int, int]] = None,
        train_resolution: Optional[Tuple[int, int]] = None,
        train_resolution_mesh: Optional[Tuple[int, int]] = None,
        downscale: int = 1,
        views: Optional[int] = None,
        val_views: Optional[int] = None,
        test_views: Optional[int] = None,
        holdout: int = 0,
        background_train: str = "noise",
        background_val: str = "white",
        batch_size: int = 1,
        val_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        near: float = 0.1,
        far: float = 1000.0,
        cam_radius: float = 3.0,
        fovy: float = 45.0,
        translation_jitter: float = 0.25,
        spp: int = 1,
        require_alpha: bool = True,
        preload: bool = True,
        world_up: Literal["y", "z"] = "y",
        render_device: Optional[str] = None,
        render_rasterizer: str = "auto",
        prerender: bool = False,
        center: Optional[Tuple[float, float, float]] = None,
        radius: Optional[float] = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind in IMAGE_KINDS and not path:
            raise ValueError(f"path: a dataset folder is required for kind {kind}")
        if kind == "reference_mesh":
            missing = [name for name, value in (("mesh", mesh), ("probe", probe)) if not value]
            if missing:
                raise ValueError(f"{missing[0]}: required for kind reference_mesh")
            if downscale != 1:
                raise ValueError("downscale: applies to nerf_synthetic images; set resolution for reference_mesh")
        else:
            for name, value in (
                ("train_resolution", train_resolution),
                ("train_resolution_mesh", train_resolution_mesh),
            ):
                if value is not None:
                    raise ValueError(f"{name}: applies to kind reference_mesh, got kind {kind}")
        if train_resolution_mesh is not None and prerender:
            raise ValueError("train_resolution_mesh: cannot change the resolution of prerendered views (prerender)")
        if holdout and kind not in ("nerd", "colmap"):
            raise ValueError(
                "holdout: applies to kinds nerd and colmap (NeRF-synthetic and reference meshes have their own "
                "splits), "
                f"got kind {kind}"
            )
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size), ("spp", spp)):
            if value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        for name, value in (("views", views), ("val_views", val_views), ("test_views", test_views)):
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers: must be >= 0, got {num_workers}")
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {seed}")
        if not 0.0 < near < far:
            raise ValueError(f"near, far: need 0 < near < far, got near={near}, far={far}")
        check_background(background_train, "background_train")
        check_background(background_val, "background_val")
        self.resolution = as_resolution(resolution, "resolution") if resolution is not None else None
        self.train_resolution = (
            as_resolution(train_resolution, "train_resolution") if train_resolution is not None else None
        )
        self.train_resolution_mesh = (
            as_resolution(train_resolution_mesh, "train_resolution_mesh") if train_resolution_mesh is not None else None
        )
        self.datasets: Dict[str, Dataset] = {}

    def check(self) -> None:
        """Build and check every split now (idempotent); raises :class:`DatasetError` on bad data."""
        if self.datasets:
            return
        h = self.hparams
        if h.kind in IMAGE_KINDS:
            self.datasets = {split: self._image_views(split) for split in SPLITS}
        else:
            render = ReferenceRender(
                fovy=h.fovy,
                cam_radius=h.cam_radius,
                translation_jitter=h.translation_jitter,
                spp=h.spp,
                env_scale=h.env_scale,
                probe_res=h.probe_res,
                rasterizer=h.render_rasterizer,
                device=h.render_device,
            )
            if torch.device(render.render_device).type == "cuda" and h.num_workers > 0:
                raise ValueError("num_workers: must be 0 when reference views render on CUDA (render_device)")
            scene = load_reference_scene(h.mesh, h.probe, render)
            counts = {"train": h.views or 1000, "val": h.val_views or 8, "test": h.test_views or 8}
            self.datasets = {
                split: ReferenceMeshViews(
                    scene,
                    split,
                    views=counts[split],
                    resolution=self._train_resolution(1) if split == "train" else self.resolution or (512, 512),
                    background=h.background_train if split == "train" else h.background_val,
                    seed=h.seed,
                    render=render,
                    near=h.near,
                    far=h.far,
                )
                for split in SPLITS
            }
            if h.prerender:
                for dataset in self.datasets.values():
                    dataset.prerender()

    def use_pass(self, pass_number: int) -> None:
        """Training renders for pass ``pass_number`` (1: DMTet, 2: mesh) from now on: pass 2 at
        ``train_resolution_mesh`` when set. The training views render each sample when it is
        drawn, so the next batch has the new size."""
        train = self.datasets.get("train")
        if self.train_resolution_mesh is None or not isinstance(train, ReferenceMeshViews):
            return
        resolution = self._train_resolution(pass_number)
        if tuple(train.resolution) != tuple(resolution):
            log.info("training renders of pass %d: %d x %d", pass_number, *resolution)
        train.resolution = resolution

    def _train_resolution(self, pass_number: int) -> Tuple[int, int]:
        """``(H, W)`` of pass ``pass_number``'s training renders of a reference mesh."""
        if pass_number == 2 and self.train_resolution_mesh is not None:
            return self.train_resolution_mesh
        return self.train_resolution or self.resolution or (512, 512)

    def _image_views(self, split: str) -> ImageViews:
        h = self.hparams
        common = dict(
            downscale=h.downscale,
            resolution=self.resolution,
            background=h.background_train if split == "train" else h.background_val,
            seed=h.seed,
            length=h.views if split == "train" else None,
            max_frames={"train": None, "val": h.val_views, "test": h.test_views}[split],
            near=h.near,
            far=h.far,
            preload=h.preload,
        )
        if h.kind == "nerd":
            return NeRDViews(h.path, split, holdout=h.holdout, **common)
        if h.kind == "colmap":
            return ColmapViews(
                h.path,
                split,
                holdout=h.holdout,
                require_alpha=h.require_alpha,
                center=h.center,
                radius=h.radius,
                **common,
            )
        return NeRFSyntheticViews(h.path, split, require_alpha=h.require_alpha, world_up=h.world_up, **common)

    def setup(self, stage: Optional[str] = None) -> None:
        # Every split, whatever the stage: a broken test split should stop a run before
        # hours of training, not after.
        self.check()

    @property
    def reference_mesh(self) -> Optional[Mesh]:
        """The mesh the views were rendered from (kind ``reference_mesh``, after setup), for
        geometry metrics; None for image datasets."""
        train = self.datasets.get("train")
        return train.scene.mesh if isinstance(train, ReferenceMeshViews) else None

    @property
    def train_from_world(self) -> Tensor:
        """``[4, 4]``: the dataset's world frame to the frame training runs in (:func:`train_from_world`)."""
        return train_from_world(self.hparams.kind, self.hparams.world_up)

    @property
    def train_dataset(self) -> Dataset:
        return self._dataset("train")

    @property
    def val_dataset(self) -> Dataset:
        return self._dataset("val")

    @property
    def test_dataset(self) -> Dataset:
        return self._dataset("test")

    def _dataset(self, split: str) -> Dataset:
        if not self.datasets:
            raise RuntimeError("ReconDataModule: call setup() or check() before using the datasets")
        return self.datasets[split]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        views = RedrawnBackgrounds(self._dataset("train"), h.background_train, h.seed)
        return self._loader(views, h.batch_size, sampler=DrawSampler(len(views), h.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), self.hparams.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), self.hparams.val_batch_size)

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Optional[DrawSampler] = None) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            # Samples are deterministic per draw; the sampler seeds the order.
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=collate_views,
            drop_last=False,
        )
