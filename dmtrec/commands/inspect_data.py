"""``dmtrec inspect-data DATA``: pictures of a dataset's cameras, points, object and tet grid, and a
contact sheet of images with masks, to catch a bad normalisation or a flipped pose before training
(:mod:`dmtrec.datasets.inspect`)."""

from __future__ import annotations

import argparse
import os
import string
from pathlib import Path

import yaml

import dmtrec
from dmtrec.core.atomic import atomic_path
from dmtrec.datasets.datamodule import KINDS, ReconDataModule
from dmtrec.datasets.inspect import (
    contact_sheet,
    dataset_contents,
    detect_kind,
    overview_notes,
    sample_images,
    scene_overview,
)

HELP = "draw a dataset's cameras, points and tet grid, and a contact sheet of its images (DATA: folder or config)"
DEFAULT_SCALE = 2.1  # DMTetConfig.scale


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Draw the training cameras (frusta; red: each image's top edge), the sparse points or the object's box, "
        "and the tet grid's cube from two viewpoints, plus a contact sheet of images with their masks."
    )
    parser.add_argument("data", help="dataset folder (kind detected from its files) or a fit config (YAML)")
    parser.add_argument("--kind", choices=KINDS, default=None, help="data kind of a folder (default: detected)")
    parser.add_argument(
        "--scale", type=float, default=None, help="tet grid edge (default: the config's model.dmtet.scale, else 2.1)"
    )
    parser.add_argument("--images", type=int, default=6, help="images on the contact sheet (default 6)")
    parser.add_argument("--out", default="inspect", help="folder for cameras.png and contact_sheet.png")


def _from_config(path: Path):
    """``(data section, dmtet scale or None)`` of a LightningCLI YAML config, environment variables expanded."""
    env = {**os.environ}
    env.setdefault("DMTREC_DATA", str(Path(dmtrec.__file__).resolve().parents[1] / "data"))
    try:
        config = yaml.safe_load(string.Template(path.read_text()).safe_substitute(env)) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    data = config.get("data") or {}
    data = data.get("init_args", data)
    model = config.get("model") or {}
    model = model.get("init_args", model)
    scale = (model.get("dmtet") or {}).get("scale")
    if not data:
        raise ValueError(f"{path}: no data: section")
    return data, scale


def main(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if data.is_file():
        options, scale = _from_config(data)
    elif data.is_dir():
        kind = args.kind or detect_kind(data)
        if kind is None:
            raise ValueError(
                f"{data}: no transforms_*.json, poses_bounds.npy or COLMAP model found; pass --kind or a config"
            )
        options, scale = {"kind": kind, kind: {"path": str(data)}}, None
    else:
        raise FileNotFoundError(f"{data}: dataset folder or config not found")
    scale = args.scale or scale or DEFAULT_SCALE
    module = ReconDataModule(**options)
    module.check()
    train = module.train_dataset
    contents = dataset_contents(train, scale)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "cameras.png") as tmp:
        scene_overview(contents).save(tmp)
    images, names = sample_images(train, args.images)
    with atomic_path(out / "contact_sheet.png") as tmp:
        contact_sheet(images, names).save(tmp)
    print(
        f"dmtrec inspect-data: {contents.cameras.batch_size} training cameras, {len(contents.points)} points, "
        f"tet grid edge {scale}; wrote {out / 'cameras.png'} and {out / 'contact_sheet.png'}"
    )
    for note in overview_notes(contents):
        print(f"  check: {note}")
    return 0
