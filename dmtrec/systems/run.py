"""The run folder: where a run writes everything, and the identity that lets it resume.

A run is named by ``run.name`` (default: the stem of the first ``-c`` config file). Its folder
``<run.output_root>/<name>`` holds ``config.yaml``, ``checkpoints/``, the wandb offline run,
validation grids and the exported mesh. The wandb run id is derived from the folder once and
stored in it (``wandb_id``), so a restart with ``--ckpt_path last`` logs into the same wandb run
and finds the same ``last.ckpt``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class RunConfig:
    """Top-level ``run:`` section of an experiment config.

    Args:
        name: run name; the output folder is ``output_root/name``. Default: the first config
            file's stem, or "dmtrec".
        output_root: parent folder of run folders (relative paths are relative to the
            current directory).
        wandb: "offline" (default: nothing leaves the machine; `wandb sync` later),
            "online" or "disabled" (no wandb at all; a CSV log instead).
        project: wandb project name.
        checkpoint_every: save ``checkpoints/last.ckpt`` every this many iterations.
        export_frame: frame of the exported ``mesh/mesh.obj``: "dataset" (default: the input
            cameras' world frame, so the mesh overlays them) or "training" (the Y-up frame a
            Z-up NeRF-synthetic scene is turned into). ``mesh.glb`` is Y-up as glTF requires.
    """

    name: Optional[str] = None
    output_root: str = "outputs"
    wandb: str = "offline"
    project: str = "dmtrec"
    checkpoint_every: int = 100
    export_frame: str = "dataset"


@dataclass
class RunPaths:
    """Resolved identity and folders of one run."""

    name: str
    root: Path
    wandb_id: str

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


def resolve_run(config: RunConfig, config_file: Optional[str] = None) -> RunPaths:
    """Resolve the run folder and wandb id (creating the folder and its ``wandb_id`` file).

    Raises:
        ValueError: unknown ``run.wandb`` mode or a run name that is empty after cleaning.
    """
    if config.wandb not in WANDB_MODES:
        raise ValueError(f"run.wandb: unknown mode {config.wandb!r}; choose one of {', '.join(WANDB_MODES)}")
    name = config.name or (Path(config_file).stem if config_file else "dmtrec")
    root = Path(config.output_root).expanduser() / _slug(name)
    root.mkdir(parents=True, exist_ok=True)
    id_file = root / "wandb_id"
    if id_file.is_file():
        wandb_id = id_file.read_text().strip()
    else:
        digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
        wandb_id = f"{_slug(name)[:40]}-{digest}"
        tmp = id_file.with_name(id_file.name + ".tmp")
        tmp.write_text(wandb_id + "\n")
        os.replace(tmp, id_file)
    return RunPaths(name=name, root=root, wandb_id=wandb_id)
