"""The run folder of an asset command (``dmtrec lod``, ``dmtrec bake``): ``--out DIR`` is the run
folder, as a fit's, and rerunning the same command on it resumes it.

:func:`check_out` runs before any input is read (a folder that holds files must be this command's
run, resumed or, with ``--run.overwrite``, replaced: never a user's folder taken over).
:func:`open_run` compares the command's resolved configuration with the one saved in
``DIR/config.yaml`` (the same: resume from ``checkpoints/last.ckpt``; another one: refused unless
``run.overwrite``), opens the folder with :class:`~dmtrec.runs.trainer.RunSession` and yields a
function that trains a system to its end under the session's Trainer (progress bar, wandb
logger, checkpoints every ``run.checkpoint_every`` steps). The system gives ``finished`` and
``progress_label`` (what the interruption message names).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import pytorch_lightning as pl
import yaml

from dmtrec.core.atomic import write_text_atomic
from dmtrec.core.output_folder import check_output_folder

from .callbacks import save_final_checkpoint
from .folder import RunConfig, RunFolderError
from .trainer import RunSession, deterministic_restored

RUN_FIELDS = ("wandb", "project", "checkpoint_every", "overwrite")
"""The fit's ``run:`` options that apply to an asset command (the folder itself is ``--out``)."""


def run_from_args(args) -> RunConfig:
    """The :class:`RunConfig` of parsed ``--run.*`` options (:data:`RUN_FIELDS`)."""
    return RunConfig(**{name: getattr(args.run, name) for name in RUN_FIELDS})


def check_out(out: Path, run: RunConfig, flag: str = "--run.overwrite true") -> None:
    """``--out``: a folder; when it holds files, they are a run's (resumed or, with
    ``--run.overwrite``, replaced), never a user's folder taken over (the refusal names ``flag``)."""
    if (out / "config.yaml").is_file():
        check_output_folder(out, overwrite=True)  # a run's folder: resumed or refused by open_run
    else:
        check_output_folder(out, run.overwrite, flag=flag)


def _changed(previous: dict, config: dict) -> list:
    """Keys whose values differ, one level into nested sections (``settings.iterations``)."""
    changed = []
    for key in sorted(set(previous) | set(config)):
        old, new = previous.get(key), config.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += [f"{key}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        else:
            changed.append(key)
    return changed


def resume_or_refuse(out: Path, config: dict, run: RunConfig, command: str) -> Optional[str]:
    """``"last"`` when ``out`` holds an unfinished or finished run of the same config (resume it),
    None for a new run; a run of another config is refused unless ``run.overwrite``."""
    saved = out / "config.yaml"
    if run.overwrite or not saved.is_file():
        return None
    previous = yaml.safe_load(saved.read_text()) or {}
    if previous != config:
        raise RunFolderError(
            f"{out}: holds a {command} run of another configuration ({', '.join(_changed(previous, config))} "
            "differ); rerun it with the same options to resume, or start again with --run.overwrite true"
        )
    return "last"


@contextmanager
def open_run(out: Path, run: RunConfig, config: dict, command: str) -> Iterator[Callable[..., pl.Trainer]]:
    """Open (or resume) the run folder ``out`` of ``command`` with the resolved ``config``; yields
    ``fit(system, callbacks=(), accelerator="cpu")``, which trains ``system`` to its end and saves
    its final checkpoint (a resume of a finished run is then a no-op). A run that stops early
    raises ValueError naming where it stopped; the folder keeps its checkpoint."""
    ckpt_path = resume_or_refuse(out, config, run, command)
    run = RunConfig(**{**asdict(run), "name": out.name, "output_root": str(out.parent)})
    with RunSession() as session:
        ckpt_path = session.start(run, None, ckpt_path)
        write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))

        def fit(system: pl.LightningModule, callbacks: Sequence[pl.Callback] = (), accelerator: str = "cpu"):
            trainer = session.trainer(
                run,
                callbacks=callbacks,
                accelerator=accelerator,
                devices=1,
                max_epochs=-1,
                num_sanity_val_steps=0,
                enable_model_summary=False,
                log_every_n_steps=1,
            )
            with deterministic_restored():  # deterministic_on_cpu's switch is process-wide
                trainer.fit(system, ckpt_path=ckpt_path)
            if not system.finished:
                raise ValueError(f"{out}: interrupted at {system.progress_label}; run the same command again to resume")
            save_final_checkpoint(trainer)
            return trainer

        yield fit
