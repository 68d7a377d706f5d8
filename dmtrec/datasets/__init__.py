"""Datasets: NeRF-synthetic, NeRD (LLFF) and COLMAP folders, reference-mesh views and the LightningDataModule.

* :mod:`.samples`: the sample/batch contract, seeded backgrounds, ``collate_views``.
* :mod:`.nerf_synthetic`: ``transforms_*.json`` folders, checked up front (``NeRFSyntheticViews``),
  and ``ImageViews``, the decoding/caching/sample base of the image-folder datasets.
* :mod:`.nerd`: LLFF folders (``poses_bounds.npy``, ``images/``, ``masks/``) of NeRD captures (``NeRDViews``).
* :mod:`.colmap`: COLMAP captures (sparse model readers, undistortion, normalisation; ``ColmapViews``).
* :mod:`.reference_mesh`, :mod:`.reference_cameras`: renders of a mesh under an HDR probe.
* :mod:`.datamodule`: ``ReconDataModule`` for LightningCLI.
* :mod:`.make_dataset`: rendering a mesh into a NeRF-synthetic folder (``dmtrec make-dataset``); not
  re-exported here, so that ``dmtrec.datasets.make_dataset`` stays the module.
* :mod:`.errors`: ``DatasetError``, the one-line error every bad input raises.
"""

from .datamodule import KINDS, ReconDataModule, train_from_world
from .errors import DatasetError
from .nerd import NeRDViews
from .nerf_synthetic import NeRFSyntheticViews
from .reference_mesh import ReferenceMeshViews, load_reference_scene

__all__ = [
    "KINDS",
    "DatasetError",
    "NeRDViews",
    "NeRFSyntheticViews",
    "ReconDataModule",
    "ReferenceMeshViews",
    "load_reference_scene",
    "train_from_world",
]
