"""Type aliases shared by every package."""

from __future__ import annotations

import os
from typing import Union

# A file or folder name as users pass it: a string or any ``os.PathLike``.
PathLike = Union[str, os.PathLike]
