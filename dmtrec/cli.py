"""The ``dmtrec`` command.

* ``dmtrec fit | validate | test -c experiment.yaml [...]``: LightningCLI (YAML with
  class_path/init_args, ``-c`` repeated to override, ``--print_config``, dotted overrides such as
  ``--model.iters_dmtet 100``). A ``run:`` section names the run and its output folder
  (:class:`dmtrec.systems.run.RunConfig`); wandb logs offline unless ``run.wandb: online``.
  The logger, the checkpoint callback and ``default_root_dir`` come from ``run:`` (a
  ``trainer.logger`` in a config is replaced). Resume a killed run with the same command plus
  ``--ckpt_path last``; a fit of an existing run without it refuses (``--run.overwrite true``
  starts it again), and a run folder has one writer (``run.lock``, :func:`dmtrec.systems.run.start_fit`).
* ``dmtrec export --ckpt C --out D``: write mesh/textures/GLB/probe of a checkpoint.
* ``dmtrec make-dataset --mesh M --probe P --views N --res R --out D``: render a reference mesh
  into a NeRF-synthetic folder.
* ``dmtrec eval RUN_DIR [--data D] [--reference MESH] [--ckpt C] [--out DIR]``: render a run's test
  views; write image metrics, per-view images, a comparison grid and the geometry report
  (``RUN_DIR/eval/`` by default) and log them to the run's offline wandb run.
  ``dmtrec eval --mesh M --ref R``: geometry report of a mesh file against a reference.

Paths in configs may use ``${DMTREC_DATA}`` (default: the repository's ``data/``) and other
environment variables; they are expanded before parsing.
"""

from __future__ import annotations

import argparse
import logging
import os
import string
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, List, Optional

import yaml
from jsonargparse import ActionConfigFile
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from dmtrec import commands
from dmtrec.core.atomic import atomic_path
from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.systems.callbacks import FinalizeRun
from dmtrec.systems.checkpoints import SafeCheckpointIO
from dmtrec.systems.inspect_log import LogInspection
from dmtrec.systems.pipeline import NonFiniteLossError, ReconstructionSystem
from dmtrec.systems.progress import PipelineProgressBar
from dmtrec.systems.run import (
    RunConfig,
    deterministic_on_cpu,
    deterministic_restored,
    finish_wandb,
    ignore_manual_checkpoint_warning,
    resolve_run,
    run_checkpoint,
    run_logger,
    start_fit,
)

LIGHTNING_COMMANDS = ("fit", "validate", "test")
OTHER_COMMANDS = tuple(commands.COMMANDS)
# The CC0 assets the quickstart and tests need ship in the repository's data/ folder.
DEFAULT_DATA = str(Path(__file__).resolve().parents[1] / "data")


def _usage() -> str:
    lines = [
        "usage: dmtrec <command> [options]",
        "",
        "commands:",
        "  fit           train: dmtrec fit -c experiments/configs/quickstart.yaml [--ckpt_path last]",
        "  validate      evaluate a checkpoint on the validation views (-c CONFIG --ckpt_path CKPT)",
        "  test          evaluate a checkpoint on the test views (-c CONFIG --ckpt_path CKPT)",
    ]
    for name in commands.COMMANDS:
        lines.append(f"  {name:<13} {commands.load(name).HELP}")
    return "\n".join(lines + ["", "`dmtrec <command> --help` lists a command's options.", ""])


class CommandError(Exception):
    """A user error reported as one line by :func:`main`."""


def _expand_config_files(argv: List[str], scratch: Path) -> List[str]:
    """Expand environment variables (``${DMTREC_DATA}`` defaults to the repository's data/) in the
    ``-c/--config`` files, writing the expanded copies under ``scratch``."""
    env = dict(os.environ)
    env.setdefault("DMTREC_DATA", DEFAULT_DATA)
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg in ("-c", "--config") and i + 1 < len(argv):
            value, i = argv[i + 1], i + 1
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value is None:
            out.append(arg)
        else:
            path = Path(value)
            if not path.is_file():
                raise CommandError(f"{value}: config file not found")
            text = path.read_text()
            expanded = _expand(text, env)
            _check_yaml(value, expanded)
            if expanded != text:
                scratch.mkdir(parents=True, exist_ok=True)
                copy = scratch / f"{len(out)}_{path.name}"
                copy.write_text(expanded)
                value = str(copy)
            out += ["--config", value]
        i += 1
    return out


def _check_yaml(name: str, text: str) -> None:
    """Parse a config file here so that a syntax error names the file, line and column
    (jsonargparse reports ``<unicode string>``)."""

    try:
        yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise CommandError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"{name}: YAML error: {' '.join(str(exc).split())}") from None


def _expand(text: str, env: dict) -> str:

    class _Template(string.Template):
        idpattern = r"[A-Z_][A-Z0-9_]*"

    return _Template(text).safe_substitute(env)


def _first_config_name(argv: List[str]) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


class _Session:
    """What :func:`_run_lightning` must undo after the CLI ran: the fit's run-folder claim."""

    start = None


def _build_cli(argv: List[str], config_name: Optional[str], session: Optional[_Session] = None):

    session = session or _Session()

    class RunFolderConfig(SaveConfigCallback):
        """Save the resolved config as ``<run folder>/config.yaml`` whichever logger runs (the
        CSV logger's log_dir is a subfolder), written atomically on rank 0."""

        def save_config(self, trainer, pl_module, stage: str) -> None:
            with atomic_path(Path(trainer.default_root_dir) / self.config_filename) as tmp:
                self.parser.save(self.config, str(tmp), skip_none=False, overwrite=True, multifile=self.multifile)

    class DmtrecCLI(LightningCLI):
        """LightningCLI plus the ``run:`` section: output folder, wandb and checkpoints."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_class_arguments(RunConfig, "run")
            parser.set_defaults({"trainer.max_epochs": -1, "trainer.num_sanity_val_steps": 0})

        def _open_run(self) -> None:
            # After the model and data are built (their checks ran), before any file is written.
            config = self.config[self.subcommand] if self.subcommand else self.config
            run_config = RunConfig(**dict(config["run"]))
            if self.subcommand != "fit":
                self.run_paths = resolve_run(run_config, config_name)
                return
            session.start = start_fit(run_config, config_name, config.get("ckpt_path"))
            self.run_paths = session.start.paths
            self.config_init[self.subcommand]["ckpt_path"] = session.start.ckpt_path

        def instantiate_trainer(self, **kwargs: Any):
            self._open_run()
            config = self.config[self.subcommand] if self.subcommand else self.config
            run, paths = config["run"], self.run_paths
            logger = run_logger(paths, run["wandb"], run["project"])
            checkpoint = run_checkpoint(paths, run["checkpoint_every"])
            configured = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
            configured = configured if isinstance(configured, list) else [configured]
            kwargs["callbacks"] = configured + [
                checkpoint,
                FinalizeRun(paths.root, export_frame=run["export_frame"]),
                LogInspection(paths.root),
            ]
            if self._get(self.config_init, "trainer", default={}).get("enable_progress_bar", True) is not False:
                kwargs["callbacks"].append(PipelineProgressBar())
            if session.start is not None:
                kwargs["callbacks"].append(session.start)
            # Crash-safe checkpoint files, weights-only loading (dmtrec.systems.checkpoints).
            plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
            kwargs["plugins"] = (plugins if isinstance(plugins, list) else [plugins]) + [SafeCheckpointIO()]
            trainer = super().instantiate_trainer(logger=logger, default_root_dir=str(paths.root), **kwargs)
            deterministic_on_cpu(trainer, self._get(self.config_init, "trainer", default={}).get("deterministic"))
            return trainer

    return DmtrecCLI(
        ReconstructionSystem,
        ReconDataModule,
        args=argv,
        save_config_callback=RunFolderConfig,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        auto_configure_optimizers=False,
        seed_everything_default=0,
    )


def _run_lightning(argv: List[str]) -> int:

    # main() always hands LightningCLI its arguments explicitly (after expanding the config
    # files), which LightningCLI flags as a possible mistake when sys.argv is also set.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    ignore_manual_checkpoint_warning()

    # trainer.deterministic (deterministic_on_cpu) is process-wide: restored afterwards.
    with tempfile.TemporaryDirectory(prefix="dmtrec-cfg-") as scratch, deterministic_restored():
        config_name = _first_config_name(argv)
        expanded = _expand_config_files(argv, Path(scratch))
        failed = True
        session = _Session()
        try:
            _build_cli(expanded, config_name, session)
            failed = False
        finally:
            finish_wandb(failed)
            if session.start is not None:
                session.start.finish(failed)
    return 0


def _run_other(command: str, argv: List[str]) -> int:
    module = commands.load(command)
    if getattr(module, "CONFIG_FILES", False):
        return _run_configurable(command, module, argv)
    parser = argparse.ArgumentParser(prog=f"dmtrec {command}", description=module.HELP)
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv)) or 0


def _run_configurable(command: str, module, argv: List[str]) -> int:
    """A command whose options may come from YAML config files too, parsed as ``fit``'s are: LightningCLI's
    parser (``-c/--config`` repeated to override, ``--print_config``), ``${DMTREC_DATA}`` and other
    environment variables expanded, YAML syntax errors reported as one line naming the file."""
    with tempfile.TemporaryDirectory(prefix="dmtrec-cfg-") as scratch:
        expanded = _expand_config_files(argv, Path(scratch))
        parser = LightningArgumentParser(prog=f"dmtrec {command}", description=module.HELP)
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config file (repeat to override)")
        module.add_arguments(parser)
        args = parser.parse_args(expanded)
    return module.main(args) or 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in LIGHTNING_COMMANDS + OTHER_COMMANDS:
        print(f"dmtrec: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    # force: bind to the current stderr on every call (main() may run several times in a process).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)

    try:
        if command in LIGHTNING_COMMANDS:
            return _run_lightning(argv)
        return _run_other(command, rest)
    except (CommandError, NonFiniteLossError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("DMTREC_DEBUG"):
            raise
        print(f"dmtrec {command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
