"""Datasets: NeRF-synthetic folders, reference-mesh views and the LightningDataModule.

* :mod:`.samples`: the sample/batch contract, seeded backgrounds, ``collate_views``.
* :mod:`.nerf_synthetic`: ``transforms_*.json`` folders, checked up front (``NeRFSyntheticViews``).
* :mod:`.reference_mesh`, :mod:`.reference_cameras`: renders of a mesh under an HDR probe.
* :mod:`.datamodule`: ``ReconDataModule`` for LightningCLI.
* :mod:`.make_dataset`: ``dmtrec make-dataset``.
* :mod:`.errors`: ``DatasetError``, the one-line error every bad input raises.
"""
