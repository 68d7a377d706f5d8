"""The ``dmtrec`` command: finds the command module and runs it.

``dmtrec fit | validate | test`` run :mod:`dmtrec.commands.fit`; every other command is a module
of :mod:`dmtrec.commands` (``dmtrec --help`` lists them, ``dmtrec <command> --help`` their
options). A user error ends the command with one line, ``dmtrec <command>: error: ...``
(``DMTREC_DEBUG=1`` shows the traceback instead). Importing this module first applies
:mod:`dmtrec.threads`' policy (every usable core; sleeping OpenMP waits beside running jobs) unless
``OMP_NUM_THREADS`` or ``DMTREC_THREADS`` is set or torch is already loaded.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from dmtrec.threads import apply_thread_policy

# Before torch loads (the imports below load it): libgomp reads its settings once. Nothing
# changes when torch is already loaded (dmtrec.cli imported by a program that uses torch).
THREADS = apply_thread_policy()

from dmtrec import commands  # noqa: E402
from dmtrec.commands import fit  # noqa: E402
from dmtrec.commands.config_files import CommandError, parse_with_config_files  # noqa: E402
from dmtrec.systems.pipeline import NonFiniteLossError  # noqa: E402

LIGHTNING_COMMANDS = fit.COMMANDS
OTHER_COMMANDS = tuple(commands.COMMANDS)


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


def _run_other(command: str, argv: List[str]) -> int:
    module = commands.load(command)
    if getattr(module, "CONFIG_FILES", False):
        return module.main(parse_with_config_files(command, module, argv)) or 0
    parser = argparse.ArgumentParser(prog=f"dmtrec {command}", description=module.HELP)
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv)) or 0


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
    if THREADS.chosen:
        logging.getLogger("dmtrec.threads").info("threads: %s", THREADS.reason)

    try:
        if command in LIGHTNING_COMMANDS:
            return fit.main(argv)
        return _run_other(command, rest)
    except (CommandError, NonFiniteLossError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("DMTREC_DEBUG"):
            raise
        print(f"dmtrec {command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
