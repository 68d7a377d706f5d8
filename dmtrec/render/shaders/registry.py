"""Shading models by name, and user models from files (``path/to/file.py:ClassName``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Dict, Type

from .base import ShadingModel
from .lambert_vc import LambertVC
from .matcap import Matcap
from .pbr import PBR
from .simple_lit import SimpleLit
from .toon import Toon
from .unlit import Unlit

BUILTINS: Dict[str, Type[ShadingModel]] = {cls.name: cls for cls in (PBR, Unlit, SimpleLit, LambertVC, Matcap, Toon)}
GAME_MODELS = ("unlit", "simple_lit", "lambert_vc", "matcap", "toon")
"""The built-ins a bake fits to the PBR look (PBR itself is the reference)."""


def load_shader(spec: str, **kwargs) -> ShadingModel:
    """A built-in model by name, or ``FILE.py:ClassName`` from a user's file, instantiated with
    ``kwargs``. A user model is checked on a random G-buffer (:func:`~.check.validate`).

    Raises:
        ValueError / FileNotFoundError: one line naming the file and the problem.
    """
    if spec in BUILTINS:
        return BUILTINS[spec](**kwargs)
    path_text, sep, class_name = spec.rpartition(":")
    if not sep or not path_text.endswith(".py") or not class_name:
        raise ValueError(f"{spec}: not a shading model; name a built-in ({', '.join(BUILTINS)}) or FILE.py:ClassName")
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shading model file not found")
    module_name = f"dmtrec_user_shader_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ValueError(
            f"{path}: could not be imported ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"{path}: defines no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, ShadingModel)):
        raise ValueError(f"{path}: {class_name} is not a ShadingModel subclass")
    try:
        model = cls(**kwargs)
    except Exception as exc:
        raise ValueError(
            f"{path}: {class_name}() failed ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from None
    model.source = str(path)
    if not model.params:
        raise ValueError(f"{path}: {class_name} declares no params")
    from .check import validate

    validate(model)
    return model
