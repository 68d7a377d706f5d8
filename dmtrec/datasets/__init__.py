"""Datasets: NeRF-synthetic folders, reference-mesh views and the LightningDataModule."""
