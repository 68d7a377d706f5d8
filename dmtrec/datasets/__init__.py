"""Datasets: NeRF-synthetic, NeRD (LLFF) and COLMAP folders, reference-mesh views and the LightningDataModule.

* :mod:`.samples`: the sample/batch contract, seeded backgrounds, ``collate_views``.
* :mod:`.base`: ``ImageViews``, the decoding/caching/sample base of the image-folder datasets, and
  the helpers they share (``load_rgba``, frame selection, holdout, ``axes_focus``).
* :mod:`.nerf_synthetic`: ``transforms_*.json`` folders, checked up front (``NeRFSyntheticViews``).
* :mod:`.nerd`: LLFF folders (``poses_bounds.npy``, ``images/``, ``masks/``) of NeRD captures (``NeRDViews``).
* :mod:`.colmap`: COLMAP captures (``ColmapViews``), on :mod:`dmtrec.io.colmap_model` (the sparse
  model's reader and writer), :mod:`.colmap_normalize` (the scene into the tet grid) and
  :mod:`.colmap_undistort` (lens distortion and the undistorted-photo cache).
* :mod:`.reference_mesh`: the one asset and probe loader (OBJ or GLB; ``load_asset``,
  ``load_probe``), ``ReferenceRender`` (cameras and rendering of reference views) and renders
  of a mesh under an HDR probe (``ReferenceMeshViews``); the cameras come from
  :mod:`dmtrec.render.camera_distributions`.
* :mod:`.config`: the typed ``data:`` sections, one dataclass per kind, and the upgrade of the
  flat form of earlier releases.
* :mod:`.datamodule`: ``ReconDataModule`` for LightningCLI.
* :mod:`.make_dataset`: rendering a mesh into a NeRF-synthetic folder or a COLMAP capture
  (``dmtrec make-dataset``); not re-exported here, so that ``dmtrec.datasets.make_dataset`` stays
  the module.
* :mod:`.inspect`, :mod:`.sfm`: ``dmtrec inspect-data`` drawings and ``dmtrec poses`` (pycolmap).
* :mod:`.errors`: ``DatasetError``, the one-line error every bad input raises (a ``ValueError``).
"""

from .config import ColmapData, NeRDData, NeRFSyntheticData, ReferenceMeshData, SharedData
from .datamodule import KINDS, ReconDataModule, train_from_world
from .errors import DatasetError
from .nerd import NeRDViews
from .nerf_synthetic import NeRFSyntheticViews
from .reference_mesh import ReferenceMeshViews, ReferenceRender, load_asset, load_probe, load_reference_scene

__all__ = [
    "KINDS",
    "ColmapData",
    "DatasetError",
    "NeRDData",
    "NeRDViews",
    "NeRFSyntheticData",
    "NeRFSyntheticViews",
    "ReconDataModule",
    "ReferenceMeshData",
    "ReferenceMeshViews",
    "ReferenceRender",
    "SharedData",
    "load_asset",
    "load_probe",
    "load_reference_scene",
    "train_from_world",
]
