"""At fit start, the dataset as ``dmtrec inspect-data`` draws it (cameras, points or object box,
the tet grid's cube; a contact sheet of training images and masks), saved in the run folder and
logged to wandb, so a bad normalisation or a flipped pose shows before hours of training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from dmtrec.core.atomic import atomic_path
from dmtrec.datasets.inspect import contact_sheet, dataset_contents, overview_notes, sample_images, scene_overview

log = logging.getLogger(__name__)

FOLDER = "inspect"
SHEET_IMAGES = 4


def write_inspection(datamodule, grid_scale: float, out_dir: Path) -> dict[str, Path]:
    """Draw the training split of a set-up ``datamodule`` into ``out_dir/inspect/``; returns the PNG paths."""
    train = datamodule.train_dataset
    contents = dataset_contents(train, grid_scale)
    paths = {
        "cameras": Path(out_dir) / FOLDER / "cameras.png",
        "contact_sheet": Path(out_dir) / FOLDER / "contact_sheet.png",
    }
    with atomic_path(paths["cameras"]) as tmp:
        scene_overview(contents).save(tmp)
    images, names = sample_images(train, SHEET_IMAGES)
    with atomic_path(paths["contact_sheet"]) as tmp:
        contact_sheet(images, names).save(tmp)
    for note in overview_notes(contents):
        log.warning("inspect-data: %s", note)
    return paths


class LogInspection(pl.Callback):
    """On a wandb-logged fit's start (rank 0, first start only): :func:`write_inspection` into the
    run folder and log both images under ``data/``."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if trainer.global_rank != 0 or not loggers or trainer.datamodule is None or pl_module.iteration > 0:
            return
        trainer.datamodule.setup("fit")
        scale = getattr(getattr(pl_module, "dmtet_cfg", None), "scale", 2.0)
        paths = write_inspection(trainer.datamodule, scale, self.out_dir)
        for logger in loggers:
            logger.log_image(key="data/cameras", images=[str(paths["cameras"])])
            logger.log_image(key="data/contact_sheet", images=[str(paths["contact_sheet"])])
