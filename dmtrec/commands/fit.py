"""``dmtrec fit | validate | test -c experiment.yaml [...]``: LightningCLI over
:class:`~dmtrec.systems.pipeline.ReconstructionSystem` and
:class:`~dmtrec.datasets.datamodule.ReconDataModule`.

YAML with class_path/init_args, ``-c`` repeated to override, ``--print_config``, dotted overrides
such as ``--model.iters_dmtet 100``; ``${DMTREC_DATA}`` and other environment variables in the
config files are expanded before parsing (:mod:`dmtrec.commands.config_files`). A ``run:``
section names the run and its output folder (:class:`dmtrec.runs.folder.RunConfig`); wandb logs
offline unless ``run.wandb: online``. The logger, the checkpoint callback and
``default_root_dir`` come from ``run:`` (a ``trainer.logger`` in a config is replaced). Resume a
killed run with the same command plus ``--ckpt_path last``; a fit of an existing run without it
refuses (``--run.overwrite true`` starts it again), and a run folder has one writer
(``run.lock``). The run folder and the Trainer are :class:`dmtrec.runs.trainer.RunSession`'s,
as ``dmtrec lod``'s are; the resolved config is saved as ``<run folder>/config.yaml``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, List, Optional

from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from dmtrec.core.atomic import atomic_path
from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.runs.callbacks import FinalizeRun, TrainingPassToData
from dmtrec.runs.folder import RunConfig
from dmtrec.runs.inspection import LogInspection
from dmtrec.runs.trainer import RunSession, deterministic_restored, ignore_manual_checkpoint_warning
from dmtrec.systems.pipeline import ReconstructionSystem

from .config_files import expand_config_files, first_config_name

COMMANDS = ("fit", "validate", "test")


class RunFolderConfig(SaveConfigCallback):
    """Save the resolved config as ``<run folder>/config.yaml`` whichever logger runs (the
    CSV logger's log_dir is a subfolder), written atomically on rank 0."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        with atomic_path(Path(trainer.default_root_dir) / self.config_filename) as tmp:
            self.parser.save(self.config, str(tmp), skip_none=False, overwrite=True, multifile=self.multifile)


class DmtrecCLI(LightningCLI):
    """LightningCLI plus the ``run:`` section: output folder, wandb and checkpoints (``session``'s)."""

    def __init__(self, *args: Any, session: RunSession, config_name: Optional[str], **kwargs: Any):
        self.session, self.config_name = session, config_name
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(RunConfig, "run")
        parser.set_defaults({"trainer.max_epochs": -1, "trainer.num_sanity_val_steps": 0})

    def _open_run(self, config) -> RunConfig:
        # After the model and data are built (their checks ran), before any file is written.
        run = RunConfig(**dict(config["run"]))
        if self.subcommand != "fit":
            self.session.resolve(run, self.config_name)
        else:
            ckpt_path = self.session.start(run, self.config_name, config.get("ckpt_path"))
            self.config_init[self.subcommand]["ckpt_path"] = ckpt_path
        return run

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config[self.subcommand] if self.subcommand else self.config
        run = self._open_run(config)
        trainer_config = self._get(self.config_init, "trainer", default={})
        configured = trainer_config.get("callbacks") or []
        plugins = trainer_config.get("plugins") or []
        callbacks = [
            FinalizeRun(
                self.session.paths.root,
                export_frame=run.export_frame,
                datamodule=self.datamodule,
                run_name=self.session.paths.name,
            ),
            LogInspection(self.session.paths.root),
            TrainingPassToData(self.datamodule),
        ]
        return self.session.trainer(
            run,
            make=super().instantiate_trainer,
            callbacks=(configured if isinstance(configured, list) else [configured]) + callbacks,
            plugins=plugins if isinstance(plugins, list) else [plugins],
            progress_bar=trainer_config.get("enable_progress_bar", True) is not False,
            deterministic=trainer_config.get("deterministic"),
            **kwargs,
        )


def main(argv: List[str]) -> int:
    """Run ``dmtrec <fit|validate|test> ...`` (``argv`` starts with the subcommand)."""
    # main() always hands LightningCLI its arguments explicitly (after expanding the config
    # files), which LightningCLI flags as a possible mistake when sys.argv is also set.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    ignore_manual_checkpoint_warning()

    # trainer.deterministic (deterministic_on_cpu) is process-wide: restored afterwards.
    with tempfile.TemporaryDirectory(prefix="dmtrec-cfg-") as scratch, deterministic_restored():
        config_name = first_config_name(argv)
        expanded = expand_config_files(argv, Path(scratch))
        with RunSession() as session:
            DmtrecCLI(
                ReconstructionSystem,
                ReconDataModule,
                args=expanded,
                session=session,
                config_name=config_name,
                save_config_callback=RunFolderConfig,
                save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
                auto_configure_optimizers=False,
                seed_everything_default=0,
            )
    return 0
