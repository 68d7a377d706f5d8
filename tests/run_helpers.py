"""Helpers of the run tests of ``dmtrec lod`` and ``dmtrec bake``: a command run with its stderr
kept, and a Trainer callback that stops a run as a crash would (each module's ``iteration``
counts its finished steps)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest
import pytorch_lightning as pl
import yaml

from dmtrec import cli


def cli_with_stderr(argv: List[str], err_file: Path) -> Tuple[int, str]:
    """``(exit code, stderr text)`` of ``dmtrec argv`` run in this process (stderr into ``err_file``)."""
    with pytest.MonkeyPatch.context() as mp:
        with err_file.open("w") as err:
            mp.setattr("sys.stderr", err)
            code = cli.main(argv)
    return code, err_file.read_text()


class Crash(RuntimeError):
    pass


class Interrupt(pl.Callback):
    """Stops the run as a crash would, when step ``at`` is about to run."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.iteration == self.at:
            raise Crash(f"stopped before step {self.at}")


def flag_run(command: str, asset: Path, probe: Path, flags: List[str], folder: Path) -> Tuple[Path, str]:
    """``(out, stderr)`` of ``dmtrec command`` on ``asset`` with ``flags`` (checkpoints every 2
    steps), an uninterrupted run given as command-line flags, into ``folder/out``."""
    out = folder / "out"
    argv = [command, "--mesh", str(asset), "--probe", str(probe), "--out", str(out), *flags]
    code, text = cli_with_stderr(argv + ["--run.checkpoint_every", "2"], folder / "stderr.txt")
    assert code == 0, text[-3000:]
    return out, text


def config_file_run(command: str, options: dict, asset: Path, probe: Path, folder: Path, capsys) -> Tuple[Path, Path]:
    """``(out, config file)`` of ``dmtrec command -c FILE``, FILE holding ``options`` with the
    asset, the probe (through ``${DMTREC_DATA}``) and ``folder/out``."""
    out, path = folder / "out", folder / f"{command}.yaml"
    config = {**options, "mesh": str(asset), "probe": "${DMTREC_DATA}/envmaps/" + probe.name, "out": str(out)}
    path.write_text(yaml.safe_dump(config))
    assert cli.main([command, "-c", str(path)]) == 0, capsys.readouterr().err[-3000:]
    capsys.readouterr()
    return out, path


def printed_config(command: str, argv: List[str], capsys) -> dict:
    """What ``dmtrec command ARGV --print_config`` prints, parsed."""
    with pytest.raises(SystemExit):
        cli.main([command, *argv, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)
