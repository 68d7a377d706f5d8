"""Shading models as plug-ins: the interface, the built-ins, user models, derivative checks.

See :mod:`.base` for the interface (:class:`ShadingModel`, :class:`Param`, :class:`GBuffer`,
:class:`ShaderMaterial`), :mod:`.sh` for the probe's SH ambient and main light, and
:mod:`.check` for the finite-difference check of a model's derivatives. Each built-in has a
GLSL twin (``<name>.glsl`` in this package), the game models an HLSL twin (``<name>.hlsl``);
:mod:`.export` writes them for an engine.
"""

from .base import GBuffer, Lighting, Param, ShaderMaterial, ShadingModel, shade_checked, surrogate_forward
from .registry import BUILTINS, GAME_MODELS, load_shader

__all__ = [
    "BUILTINS",
    "GAME_MODELS",
    "GBuffer",
    "Lighting",
    "Param",
    "ShaderMaterial",
    "ShadingModel",
    "load_shader",
    "shade_checked",
    "surrogate_forward",
]
