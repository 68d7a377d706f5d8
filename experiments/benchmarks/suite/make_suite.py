"""Generate the validation suite's datasets: each scene of ``scenes.py`` path-traced with
``dmtrec make-dataset --renderer pathtrace --world-up z`` (Mitsuba 3 on the CPU) into a Z-up
NeRF-synthetic folder, with ``scene.json`` beside the images recording the true genus and
components, the part (tuning / held out) and the reference mesh in the training frame.

Training views are nvdiffrec's random ones (uniformly random object rotations, so lower-hemisphere
views included); validation and test views orbit at 23 degrees elevation. Folders are cached:
an existing complete one is reused (``--overwrite`` remakes it).

    python experiments/benchmarks/suite/make_suite.py                    # all scenes, 128^2
    python experiments/benchmarks/suite/make_suite.py --scenes torus --res 256 --spp 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2]))

from scenes import DATA, PROBE, REPO, SCENES  # noqa: E402

DEFAULTS = {"res": 128, "views": 80, "spp": 32, "test_views": 8}


def scene_mesh(name: str, root: Path) -> Path:
    """The scene's mesh file: shipped in ``data/``, or a procedural shape written under ``root/meshes``."""
    kind, _, where = SCENES[name].source.partition(":")
    if kind == "data":
        return DATA / where
    from dmtrec.assets.procedural_shapes import write_shape

    path = root / "meshes" / where / f"{where}.obj"
    return path if path.is_file() else write_shape(where, path.parent)


def dataset_folder(name: str, root: Path, res: int, views: int, spp: int) -> Path:
    return root / f"{name}_r{res}_v{views}_spp{spp}"


def make_scene(
    name: str,
    root: Path,
    res: int = DEFAULTS["res"],
    views: int = DEFAULTS["views"],
    spp: int = DEFAULTS["spp"],
    test_views: int = DEFAULTS["test_views"],
    overwrite: bool = False,
) -> Path:
    """The scene's dataset folder under ``root``, made unless it is there; returns its path."""
    from dmtrec.cli import main

    scene = SCENES[name]
    out = dataset_folder(name, root, res, views, spp)
    if (out / "scene.json").is_file() and not overwrite:
        return out
    mesh = scene_mesh(name, root)
    argv = ["make-dataset", "--mesh", str(mesh), "--probe", str(PROBE), "--out", str(out), "--overwrite"]
    argv += ["--res", str(res), "--views", str(views), "--val-views", "4", "--test-views", str(test_views)]
    argv += ["--renderer", "pathtrace", "--spp", str(spp), "--world-up", "z", "--env-scale", str(scene.env_scale)]
    argv += ["--device", "cpu", "--rasterizer", "torch", "--probe-res", "64"]
    start = time.perf_counter()
    if main(argv) != 0:
        raise RuntimeError(f"make-dataset failed for {name}")
    record = {
        "scene": name,
        "genus": scene.genus,
        "components": scene.components,
        "part": scene.part,
        "stresses": scene.stresses,
        "reference_mesh": str(mesh.resolve()),  # the training frame (world_up z turns the poses back into it)
        "world_up": "z",
        "seconds": round(time.perf_counter() - start, 1),
        "resolution": res,
        "spp": spp,
        "load": os.getloadavg()[1],
    }
    (out / "scene.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    parser.add_argument(
        "--out", default=str(REPO / "outputs" / "suite" / "datasets"), help="datasets folder (quality.py --suite's)"
    )
    parser.add_argument("--res", type=int, default=DEFAULTS["res"])
    parser.add_argument("--views", type=int, default=DEFAULTS["views"], help="training views")
    parser.add_argument("--spp", type=int, default=DEFAULTS["spp"], help="path-tracing samples per pixel")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for name in args.scenes:
        start = time.perf_counter()
        folder = make_scene(name, Path(args.out), args.res, args.views, args.spp, overwrite=args.overwrite)
        print(f"{name}: {folder} ({time.perf_counter() - start:.0f} s, load {os.getloadavg()[1]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
