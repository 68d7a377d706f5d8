"""The fit-start inspection images: what `dmtrec inspect-data` draws, for the run's own data."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dmtrec.datasets import ReconDataModule
from dmtrec.runs.inspection import write_inspection


def test_write_inspection_draws_the_training_split(spot_dataset, tmp_path):
    data = spot_dataset(views=8, res=32, val_views=1, test_views=2, probe_res=32)
    module = ReconDataModule(nerf_synthetic={"path": str(data)})
    module.setup("fit")
    paths = write_inspection(module, grid_scale=2.4, out_dir=tmp_path)
    for path in paths.values():
        image = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        assert image.shape[0] > 64 and image.shape[1] > 64 and image.std() > 1.0  # a drawing, not a blank
    assert sorted(p.name for p in (tmp_path / "inspect").iterdir()) == ["cameras.png", "contact_sheet.png"]
