"""Config files on the command line, shared by ``dmtrec fit`` and the commands that take them
(``CONFIG_FILES = True``, e.g. ``lod``): ``-c/--config`` files with environment variables
expanded (``${DMTREC_DATA}`` defaults to the repository's ``data/``), YAML syntax errors reported
as one line naming the file, line and column."""

from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path
from types import ModuleType
from typing import List, Optional

import yaml
from jsonargparse import ActionConfigFile
from pytorch_lightning.cli import LightningArgumentParser

from dmtrec.datasets.config import typed_option, upgrade_data_config

# The CC0 assets the quickstart and tests need ship in the repository's data/ folder.
DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "data")


class CommandError(Exception):
    """A user error reported as one line by :func:`dmtrec.cli.main`."""


def expand_config_files(argv: List[str], scratch: Path) -> List[str]:
    """Expand environment variables (``${DMTREC_DATA}`` defaults to the repository's data/) in the
    ``-c/--config`` files, writing the expanded copies under ``scratch``."""
    env = dict(os.environ)
    env.setdefault("DMTREC_DATA", DEFAULT_DATA)
    out, i, kind = [], 0, _DEFAULT_KIND
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg in ("-c", "--config") and i + 1 < len(argv):
            value, i = argv[i + 1], i + 1
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value is None:
            kind = _kind_override(arg, argv[i + 1] if i + 1 < len(argv) else None, kind)
            out += _typed_data_override(arg, kind)
        else:
            path = Path(value)
            if not path.is_file():
                raise CommandError(f"{value}: config file not found")
            text = path.read_text()
            expanded = _expand(text, env)
            config = _check_yaml(value, expanded)
            kind, expanded = _typed_data_section(value, config, kind, expanded)
            if expanded != text:
                scratch.mkdir(parents=True, exist_ok=True)
                copy = scratch / f"{len(out)}_{path.name}"
                copy.write_text(expanded)
                value = str(copy)
            out += ["--config", value]
        i += 1
    return out


# Data kinds before typed configs defaulted to nerf_synthetic (ReconDataModule's default kind).
_DEFAULT_KIND = "nerf_synthetic"


def _typed_data_section(name: str, config, kind: str, text: str):
    """``(kind, text)``: the data kind the config file sets (else ``kind``, from earlier files), and
    its text with a flat ``data:`` section of earlier releases in the typed form (one deprecation
    line, :func:`dmtrec.datasets.config.upgrade_data_config`)."""
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        return kind, text
    kind = data.get("kind", kind)
    if not any(typed_option(kind, key) for key in data):
        return kind, text
    try:
        upgraded = upgrade_data_config({"kind": kind, **data})
    except ValueError as exc:
        raise CommandError(f"{name}: data.{exc}") from None
    if "kind" not in data:  # the kind came from an earlier file: keep this file an overlay
        upgraded.pop("kind")
    return kind, yaml.safe_dump({**config, "data": upgraded}, sort_keys=False)


def _kind_override(arg: str, following: Optional[str], kind: str) -> str:
    if arg == "--data.kind" and following:
        return following
    return arg.split("=", 1)[1] if arg.startswith("--data.kind=") else kind


def _typed_data_override(arg: str, kind: str) -> List[str]:
    """A flat ``--data.X`` override of earlier releases as its typed name (``--data.path`` ->
    ``--data.nerf_synthetic.path``), with the same deprecation line as a flat config file."""
    if not arg.startswith("--data."):
        return [arg]
    option, sep, value = arg[len("--data.") :].partition("=")
    typed = typed_option(kind, option)
    if typed is None:
        return [arg]
    upgrade_data_config({"kind": kind, option: _FLAT_PLACEHOLDER})  # the deprecation line, once
    return [f"--data.{typed}{sep}{value}"]


# Stands for an override's value in the deprecation line (the value is parsed by the CLI later).
_FLAT_PLACEHOLDER = "..."


def _check_yaml(name: str, text: str):
    """Parse a config file here so that a syntax error names the file, line and column
    (jsonargparse reports ``<unicode string>``); returns the parsed YAML."""

    try:
        return yaml.safe_load(text)
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


def first_config_name(argv: List[str]) -> Optional[str]:
    """The first ``-c/--config`` file named in ``argv`` (it names the run by default), or None."""
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def parse_with_config_files(command: str, module: ModuleType, argv: List[str]):
    """The options of ``module`` (a command with ``CONFIG_FILES``), parsed as ``fit``'s are: LightningCLI's
    parser (``-c/--config`` repeated to override, ``--print_config``), ``${DMTREC_DATA}`` and other
    environment variables expanded, YAML syntax errors reported as one line naming the file."""
    with tempfile.TemporaryDirectory(prefix="dmtrec-cfg-") as scratch:
        expanded = expand_config_files(argv, Path(scratch))
        parser = LightningArgumentParser(prog=f"dmtrec {command}", description=module.HELP)
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config file (repeat to override)")
        module.add_arguments(parser)
        return parser.parse_args(expanded)
