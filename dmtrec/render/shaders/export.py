"""The shader sources an engine programmer takes away with a bake: each twin behind its common part.

:func:`write_twins` writes a model's GLSL twin (``common.glsl`` + ``<name>.glsl``) and, where the
built-in has one, its HLSL twin (``common.hlsl`` + ``<name>.hlsl``; same uniforms, inputs in a
``DmtrecFragment`` struct, ``float3 shade(DmtrecFragment f)``) into an output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from .base import ShadingModel, read_glsl


def twin_sources(model: ShadingModel) -> Dict[str, str]:
    """``{"glsl": text, "hlsl": text}`` with the common part first; languages without a twin left out."""
    out = {}
    for language, source in (("glsl", model.glsl_source()), ("hlsl", model.hlsl_source())):
        if source is not None:
            out[language] = read_glsl(f"common.{language}") + "\n" + source
    return out


def write_twins(model: ShadingModel, folder: Path) -> Dict[str, Optional[str]]:
    """Write ``<model>.glsl`` / ``<model>.hlsl`` into ``folder``; the file names by language (None
    for a language without a twin, e.g. a user model), as ``material.json`` records them."""
    written: Dict[str, Optional[str]] = {"glsl": None, "hlsl": None}
    for language, text in twin_sources(model).items():
        written[language] = f"{model.name}.{language}"
        (Path(folder) / written[language]).write_text(text)
    return written
