"""Core types at the bottom of dmtrec's layers: the :class:`Mesh`, ``PathLike``, atomic file writes and the
user cache folder. Imported by every package; imports no other dmtrec package."""

from .atomic import atomic_folder, atomic_path, write_bytes_atomic, write_json, write_text_atomic
from .cache import cache_dir
from .mesh import Mesh
from .types import PathLike

__all__ = [
    "Mesh",
    "PathLike",
    "atomic_folder",
    "atomic_path",
    "cache_dir",
    "write_bytes_atomic",
    "write_json",
    "write_text_atomic",
]
