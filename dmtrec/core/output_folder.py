"""The output-folder rule every command that writes a folder follows (fit, lod, bake, eval, export,
make-dataset, poses):

1. every option and the target are checked before any work (:func:`check_output_folder`);
2. an existing non-empty target is refused unless the user said to replace it (``--overwrite``,
   ``--run.overwrite true``); an existing *file* where a folder is expected is one line;
3. results appear only when complete: the folder is written under a temporary name beside the
   target and renamed onto it at the end (:func:`dmtrec.core.atomic.atomic_folder`), so a failure
   leaves the previous contents untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

from .types import PathLike


class OutputFolderError(ValueError):
    """The output folder cannot be used as asked; the message is one line naming it."""


def check_output_folder(
    path: PathLike, overwrite: bool = False, option: str = "--out", flag: str = "--overwrite"
) -> Path:
    """``path`` as a :class:`Path`, checked to be usable as a new output folder.

    Args:
        path: the folder the command will publish.
        overwrite: an existing non-empty folder may be replaced.
        option: the option that named ``path``, for the message.
        flag: the option that allows replacing, for the message.

    Raises:
        OutputFolderError: ``path`` (or a folder above it) is a file, ``path`` is a non-empty
            folder and ``overwrite`` is false, or the nearest existing folder is not writable.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputFolderError(f"{option} {path}: is a file, not a folder; choose another name")
        if not overwrite and any(path.iterdir()):
            raise OutputFolderError(
                f"{option} {path}: folder exists and is not empty; choose another folder or pass {flag} to replace it"
            )
        parent = path.parent
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise OutputFolderError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{option} {path}: cannot write in {parent} (permission denied)")
    return path
