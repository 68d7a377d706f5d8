"""Core types at the bottom of dmtrec's layers: the :class:`Mesh`, ``PathLike``, atomic file writes, the
output-folder rule and the user cache folder. Imported by every package; imports no other dmtrec package."""

from .atomic import atomic_folder, atomic_path, write_bytes_atomic, write_json, write_text_atomic
from .cache import cache_dir
from .mesh import Mesh
from .output_folder import OutputFolderError, check_output_folder
from .types import PathLike

__all__ = [
    "Mesh",
    "OutputFolderError",
    "PathLike",
    "atomic_folder",
    "atomic_path",
    "cache_dir",
    "check_output_folder",
    "write_bytes_atomic",
    "write_json",
    "write_text_atomic",
]
