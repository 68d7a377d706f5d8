"""``dmtrec export --ckpt C --out D``: write the mesh, textures, GLB and probe of any checkpoint
(mid-pass-1 checkpoints are extracted, unwrapped and baked first)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict

import torch
import yaml

from dmtrec.core.atomic import atomic_folder
from dmtrec.core.output_folder import check_output_folder
from dmtrec.datasets.datamodule import config_train_from_world
from dmtrec.runs.checkpoints import load_module
from dmtrec.runs.outputs import EXPORT_FRAMES, write_outputs
from dmtrec.systems.pipeline import ReconstructionSystem

log = logging.getLogger(__name__)

HELP = "write mesh, textures, GLB and probe of a checkpoint (--ckpt CKPT --out DIR)"


def run_train_from_world(ckpt_path: Path) -> torch.Tensor:
    """``[4, 4]`` dataset -> training frame of the run a checkpoint belongs to, from the run's
    ``config.yaml`` (``RUN/checkpoints/X.ckpt`` -> ``RUN/config.yaml``); identity without one."""
    config_path = ckpt_path.parent.parent / "config.yaml"
    if not config_path.is_file():
        return torch.eye(4)
    data = (yaml.safe_load(config_path.read_text()) or {}).get("data") or {}
    return config_train_from_world(data)


def export_checkpoint(
    ckpt_path: Path, out_dir: Path, device: str = "cpu", frame: str = "dataset", overwrite: bool = False
) -> Dict[str, Path]:
    """Write the outputs of a checkpoint's current state (no metrics) into ``out_dir``; the OBJ
    in the dataset's frame (``frame="dataset"``) or the training frame."""
    ckpt_path = Path(ckpt_path)
    out_dir = check_output_folder(out_dir, overwrite)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    system = load_module(ReconstructionSystem, ckpt_path, map_location=device)
    system.to(device)
    mesh, textures = system.bake_mesh()
    obj_transform = torch.linalg.inv(run_train_from_world(ckpt_path)) if frame == "dataset" else None
    # The whole folder appears at once, complete (dmtrec.core.output_folder).
    with atomic_folder(out_dir) as tmp:
        written = write_outputs(tmp, mesh, textures, system.light, obj_transform=obj_transform)
    paths = {kind: out_dir / path.relative_to(tmp) for kind, path in written.items()}
    log.info("exported %s (pass %d, iteration %d) to %s", ckpt_path, system.pass_number, system.iteration, out_dir)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint to export, e.g. outputs/<run>/checkpoints/last.ckpt")
    parser.add_argument("--out", required=True, help="output folder (mesh/, mesh.glb, probe.hdr)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    parser.add_argument("--device", default="cpu", help="torch device for extraction and baking (default cpu)")
    parser.add_argument(
        "--frame",
        choices=EXPORT_FRAMES,
        default="dataset",
        help="frame of mesh/mesh.obj: the dataset's (default; read from the run's config.yaml) or the training "
        "frame; mesh.glb is Y-up as glTF requires",
    )


def main(args: argparse.Namespace) -> int:
    paths = export_checkpoint(Path(args.ckpt), Path(args.out), args.device, frame=args.frame, overwrite=args.overwrite)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
