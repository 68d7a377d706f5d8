"""The ``dmtrec`` commands: one module each. ``fit | validate | test`` are LightningCLI's
(:mod:`dmtrec.commands.fit`); :mod:`dmtrec.commands.config_files` reads the ``-c`` config files
of ``fit`` and of the commands with ``CONFIG_FILES``.

Every other command module defines

* ``HELP``: one line for ``dmtrec --help``;
* ``add_arguments(parser: argparse.ArgumentParser) -> None``: its options;
* ``main(args: argparse.Namespace) -> int``: runs it; user errors raise ``ValueError`` (or
  ``FileNotFoundError``) with one line naming the file and the problem, which the CLI prints as
  ``dmtrec <command>: error: <line>``.

:data:`COMMANDS` maps command names to module names; :mod:`dmtrec.cli` imports a command's module
only when that command runs, so optional dependencies of one command never slow down another.
Commands sit on top of the library packages and below the CLI: they import library code, the
library never imports them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command name -> module under dmtrec.commands (in the order `dmtrec --help` lists them)
COMMANDS = {
    "export": "export",
    "make-dataset": "make_dataset",
    "eval": "eval",
    "lod": "lod",
    "bake": "bake",
    "batch": "batch",
    "shader-check": "shader_check",
    "poses": "poses",
    "inspect-data": "inspect_data",
    "view": "view",
}


def load(name: str) -> ModuleType:
    """The module of command ``name`` (a key of :data:`COMMANDS`)."""
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")
