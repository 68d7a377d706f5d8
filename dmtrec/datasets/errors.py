"""The one exception every dataset problem is reported with."""

from __future__ import annotations

import os
from typing import Union


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent.

    The message is one line, ``"<file>: <problem>"``, so that a run fails before training
    with something a user can act on rather than a stack trace from deep inside torch.
    """

    def __init__(self, path: Union[str, os.PathLike], problem: str):
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause's message held
        super().__init__(f"{self.path}: {self.problem}")
