"""``ReconDataModule``: the training, validation and test views of one experiment.

Configured from YAML through LightningCLI (``data:`` section): the kind, that kind's section
(:mod:`dmtrec.datasets.config`) and the options every kind shares, e.g.::

    data:
      kind: nerf_synthetic          # or nerd, colmap, reference_mesh
      nerf_synthetic:               # nerd: an LLFF folder with poses_bounds.npy;
        path: data/generated/spot   # colmap: images/, sparse/0/, masks/
        downscale: 2
      batch_size: 4
      shared: {seed: 0}

    data:
      kind: reference_mesh
      reference_mesh:
        mesh: ../shared/data/meshes/spot/spot.obj
        probe: ../shared/data/envmaps/mud_road_puresky_1k.hdr
        rasterizer: torch
      resolution: [128, 128]
      views: 4000                   # fresh random views per epoch

Batches follow :func:`dmtrec.datasets.samples.collate_views`. Everything is checked in
:meth:`ReconDataModule.setup` (or earlier with :meth:`ReconDataModule.check`), so a broken
dataset stops the run before training with one :class:`DatasetError` line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Dict, Literal, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dmtrec.core.mesh import Mesh

from .base import ImageViews
from .colmap import ColmapViews
from .config import (
    FLAT_DEFAULTS,
    FLAT_NAMES,
    KINDS,
    ColmapData,
    DataSection,
    NeRDData,
    NeRFSyntheticData,
    ReferenceMeshData,
    SharedData,
    section_of,
    shared_of,
    upgrade_flat_data,
)
from .nerd import NeRDViews
from .nerf_synthetic import Z_UP_TO_Y_UP, NeRFSyntheticViews
from .reference_mesh import ReferenceMeshViews, load_reference_scene
from .samples import DrawSampler, RedrawnBackgrounds, as_resolution, check_background, collate_views

log = logging.getLogger(__name__)

IMAGE_KINDS = ("nerf_synthetic", "nerd", "colmap")
SPLITS = ("train", "val", "test")


def train_from_world(kind: str, world_up: str) -> Tensor:
    """``[4, 4]``: a dataset's world frame to the frame training runs in. Z-up NeRF-synthetic
    scenes (``world_up: z``) train Y-up, as nvdiffrec; every other dataset trains in its own frame."""
    if kind == "nerf_synthetic" and world_up == "z":
        return Z_UP_TO_Y_UP.clone()
    return torch.eye(4)


def config_train_from_world(data: Dict[str, Any]) -> Tensor:
    """:func:`train_from_world` of a run's ``data:`` config section, typed or flat (earlier releases)."""
    kind = data.get("kind", "nerf_synthetic")
    section = data.get(kind) if isinstance(data.get(kind), dict) else {}
    return train_from_world(kind, section.get("world_up", data.get("world_up", "y")))


def flat_options(kind: str, source: DataSection, shared: SharedData, top: Dict[str, Any]) -> Dict[str, Any]:
    """Every data option under its flat name (``path``, ``mesh``, ``render_rasterizer``, ...): the
    kind's section over the flat defaults, then ``shared`` and the top-level options ``top``."""
    options: Dict[str, Any] = {"kind": kind, **FLAT_DEFAULTS}
    for name, value in asdict(source).items():
        options[FLAT_NAMES.get(name, name)] = value
    options.update(asdict(shared))
    options.update(top)
    return options


class ReconDataModule(pl.LightningDataModule):
    """Views of a NeRF-synthetic, NeRD (LLFF) or COLMAP folder, or renders of a reference mesh.

    Args:
        kind: ``"nerf_synthetic"``, ``"nerd"``, ``"colmap"`` or ``"reference_mesh"``; the section
            of that name holds the kind's options, the other sections stay unset.
        nerf_synthetic, nerd, colmap, reference_mesh: the kind's options
            (:mod:`dmtrec.datasets.config`; a dict is turned into its dataclass).
        resolution: ``(H, W)`` working resolution. Reference mesh: render size (default
            512 x 512, nvdiffrec's). NeRF-synthetic: resize target keeping the images' aspect
            (default: image size / ``downscale``). NeRD, COLMAP: resize target (default: image
            size / ``downscale``).
        views: training samples per epoch. Image folders: frames repeat cyclically (default one
            per frame); reference mesh: a fresh random camera per sample (default 1000).
        val_views, test_views: image folders: evenly spaced subset of the split's frames
            (default all); reference mesh: cameras on a fixed orbit (default 8).
        batch_size: training batch size; validation and test use ``val_batch_size``.
        val_batch_size: validation and test batch size.
        shared: seed, backgrounds, workers and clip planes (:class:`~dmtrec.datasets.config.SharedData`).
        **flat: the flat options of earlier releases (``path``, ``mesh``, ``render_rasterizer``,
            ``seed``, ...), deprecated: moved into their section with a one-line message
            (:func:`~dmtrec.datasets.config.upgrade_flat_data`).

    ``hparams`` hold every option under its flat name (``path``, ``mesh``, ``render_rasterizer``,
    ...), as earlier releases saved them: checkpoint and run readers see one stable layout, and
    Lightning, which merges the datamodule's and the model's hyper-parameters and refuses equal
    names with different values, sees no name of the model's (``rasterizer`` is one).
    """

    def __init__(
        self,
        kind: Literal["nerf_synthetic", "nerd", "colmap", "reference_mesh"] = "nerf_synthetic",
        nerf_synthetic: Optional[NeRFSyntheticData] = None,
        nerd: Optional[NeRDData] = None,
        colmap: Optional[ColmapData] = None,
        reference_mesh: Optional[ReferenceMeshData] = None,
        resolution: Optional[Tuple[int, int]] = None,
        views: Optional[int] = None,
        val_views: Optional[int] = None,
        test_views: Optional[int] = None,
        batch_size: int = 1,
        val_batch_size: int = 1,
        shared: Optional[SharedData] = None,
        **flat: Any,
    ):
        super().__init__()
        sections = {"nerf_synthetic": nerf_synthetic, "nerd": nerd, "colmap": colmap, "reference_mesh": reference_mesh}
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        if flat:
            upgraded = upgrade_flat_data(kind, flat, {**sections, "shared": shared})
            sections[kind], shared = upgraded[kind], upgraded.get("shared")
        for other, value in sections.items():
            if other != kind and value is not None:
                raise ValueError(f"{other}: options of kind {other} given, but kind is {kind}")
        self.source: DataSection = section_of(kind, sections[kind])
        self.shared = shared_of(shared)
        self.save_hyperparameters(
            flat_options(
                kind,
                self.source,
                self.shared,
                dict(
                    resolution=resolution,
                    views=views,
                    val_views=val_views,
                    test_views=test_views,
                    batch_size=batch_size,
                    val_batch_size=val_batch_size,
                ),
            )
        )
        self._check_options()
        self.resolution = as_resolution(resolution, "resolution") if resolution is not None else None
        train_resolution = self.hparams.train_resolution
        train_resolution_mesh = self.hparams.train_resolution_mesh
        self.train_resolution = (
            as_resolution(train_resolution, "train_resolution") if train_resolution is not None else None
        )
        self.train_resolution_mesh = (
            as_resolution(train_resolution_mesh, "train_resolution_mesh") if train_resolution_mesh is not None else None
        )
        self.datasets: Dict[str, Dataset] = {}

    def _check_options(self) -> None:
        """ValueError naming the option where one is out of range (each kind's section holds only its own options)."""
        h = self.hparams
        if h.train_resolution_mesh is not None and h.prerender:
            raise ValueError("train_resolution_mesh: cannot change the resolution of prerendered views (prerender)")
        for name, value in (("batch_size", h.batch_size), ("val_batch_size", h.val_batch_size), ("spp", h.spp)):
            if value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        for name, value in (("views", h.views), ("val_views", h.val_views), ("test_views", h.test_views)):
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        if h.num_workers < 0:
            raise ValueError(f"num_workers: must be >= 0, got {h.num_workers}")
        if h.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {h.seed}")
        if not 0.0 < h.near < h.far:
            raise ValueError(f"near, far: need 0 < near < far, got near={h.near}, far={h.far}")
        check_background(h.background_train, "background_train")
        check_background(h.background_val, "background_val")

    def check(self) -> None:
        """Build and check every split now (idempotent); raises :class:`DatasetError` on bad data."""
        if self.datasets:
            return
        h = self.hparams
        if h.kind in IMAGE_KINDS:
            self.datasets = {split: self._image_views(split) for split in SPLITS}
        else:
            render = self.source  # a ReferenceMeshData is the ReferenceRender of its views
            if torch.device(render.render_device).type == "cuda" and h.num_workers > 0:
                raise ValueError("num_workers: must be 0 when reference views render on CUDA (reference_mesh.device)")
            scene = load_reference_scene(render.mesh, render.probe, render)
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
            resolution=self.resolution,
            background=h.background_train if split == "train" else h.background_val,
            seed=h.seed,
            length=h.views if split == "train" else None,
            max_frames={"train": None, "val": h.val_views, "test": h.test_views}[split],
            near=h.near,
            far=h.far,
        )
        views = {"nerf_synthetic": NeRFSyntheticViews, "nerd": NeRDViews, "colmap": ColmapViews}[h.kind]
        return views(self.source, split, **common)

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
