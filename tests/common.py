"""Paths and environment shared by the test modules (imported by conftest.py and the tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The CC0 assets (Spot, Bob, the light probe) ship in the repository's data/ folder.
DATA = REPO / "data"
SPOT_OBJ = DATA / "meshes" / "spot" / "spot.obj"
BOB_OBJ = DATA / "meshes" / "bob" / "bob_tri.obj"
PROBE_HDR = DATA / "envmaps" / "mud_road_puresky_1k.hdr"
# nvdiffrec's quartet grids are NVIDIA's files and are not shipped: the comparisons against them
# read ../shared/data/tets beside the checkout (DMTREC_SHARED_DATA overrides) and skip without it.
SHARED_DATA = Path(os.environ.get("DMTREC_SHARED_DATA", REPO.parent / "shared" / "data"))
CONFIGS = REPO / "experiments" / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"
TINY = CONFIGS / "tests" / "tiny_spot.yaml"
# What every test process (and the `dmtrec` subprocesses the tests start) runs with: wandb quiet
# and offline, data from the repository.
QUIET_ENV = {"WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_MODE": "offline", "DMTREC_DATA": str(DATA)}


def tiny_fit_args(data: Path, output_root: Path, *extra: str) -> list:
    """``dmtrec fit`` arguments of the tiny Spot run (quickstart + tiny_spot overlay) on the
    NeRF-synthetic folder ``data``, writing under ``output_root``; ``extra`` overrides follow."""
    return ["fit", "-c", str(QUICKSTART), "-c", str(TINY), "--data.nerf_synthetic.path", str(data),
            "--run.output_root", str(output_root), *extra]  # fmt: skip


# ``python -m dmtrec.cli`` in a subprocess: the tests' interpreter and this checkout's code.
DMTREC_CLI = [sys.executable, "-m", "dmtrec.cli"]


def subprocess_env(**extra: str) -> dict:
    """The environment for a ``dmtrec`` subprocess: this one without the parent's wandb service
    (a child attached to it would be killed with it), plus :data:`QUIET_ENV` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(QUIET_ENV, **extra)
    return env


def image_views(views, folder, split: str = "train", **kwargs):
    """``views`` (NeRFSyntheticViews, NeRDViews or ColmapViews) of ``folder``: the keyword
    arguments of the kind's data section (downscale, holdout, ...) go into it, the rest to ``views``."""
    import dataclasses
    import typing

    section = typing.get_type_hints(views.__init__)["data"]
    names = {f.name for f in dataclasses.fields(section)}
    options = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
    return views(section(path=str(folder), **options), split, **kwargs)
