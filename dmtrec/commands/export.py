"""``dmtrec export --ckpt C --out D``: write the mesh, textures, GLB and probe of any checkpoint
(mid-pass-1 checkpoints are extracted, unwrapped and baked first)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict

from dmtrec.systems.checkpoints import load_module
from dmtrec.systems.outputs import write_outputs
from dmtrec.systems.pipeline import ReconstructionSystem

log = logging.getLogger(__name__)

HELP = "write mesh, textures, GLB and probe of a checkpoint (--ckpt CKPT --out DIR)"


def export_checkpoint(ckpt_path: Path, out_dir: Path, device: str = "cpu") -> Dict[str, Path]:
    """Write the outputs of a checkpoint's current state (no metrics) into ``out_dir``."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    system = load_module(ReconstructionSystem, ckpt_path, map_location=device)
    system.to(device)
    mesh, textures = system.bake_mesh()
    paths = write_outputs(Path(out_dir), mesh, textures, system.light)
    log.info("exported %s (pass %d, iteration %d) to %s", ckpt_path, system.pass_number, system.iteration, out_dir)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint to export, e.g. outputs/<run>/checkpoints/last.ckpt")
    parser.add_argument("--out", required=True, help="output folder (mesh/, mesh.glb, probe.hdr)")
    parser.add_argument("--device", default="cpu", help="torch device for extraction and baking (default cpu)")


def main(args: argparse.Namespace) -> int:
    paths = export_checkpoint(Path(args.ckpt), Path(args.out), args.device)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
