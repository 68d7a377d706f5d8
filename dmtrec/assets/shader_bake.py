"""Fit a game shading model's textures and constants to an asset's PBR look under a probe.

``dmtrec bake --shader NAME_OR_FILE``: the model (:mod:`dmtrec.render.shaders`) renders the
asset's own mesh and UVs through ``render_mesh(shader=...)``; its declared values start from
their initial values (``kd``: the asset's base colour resampled; ``radiance``: the PBR radiance
point-sampled per texel, the unlit bake's start; numbers: as declared) and are fitted by Adam so
that the renders match the PBR references over the training views (the loss of
:func:`~dmtrec.assets.unlit_bake.fit_unlit`), each value clamped to its declared range after
every step. Scores on held-out views compare the start and the fit (PSNR, SSIM, and FLIP when
``flip_evaluator`` is installed).

The start is what a game tool makes without fitting: the artist's base colour as the model's
albedo with its constants at their declared defaults, or (unlit) the point-sampled radiance, as
Blender's "Combined" bake. Onto another mesh (``onto``: a level of detail, a reconstruction)
every texel of its UV layout starts from the closest source point. ``fixed`` values keep their
start (e.g. the artist's albedo, only the shader's constants tuned).

Export (:func:`write_shader_bake`): one PNG per texture (colours as sRGB, other values as
stored; tables scaled into [0, 1] with the scale in ``material.json``), ``material.json`` with
the constants, the textures' files and ranges and the probe's main light and ambient SH (the
GLSL uniforms), and the model's GLSL and HLSL twins (``common.*`` + the model's) as ``<name>.glsl`` / ``<name>.hlsl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.geometry.closest_point import closest_points
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.io.obj import write_obj
from dmtrec.render.bake import _dilate
from dmtrec.render.camera import Cameras
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.render_mesh import render_mesh
from dmtrec.render.shaders import ShaderMaterial, ShadingModel
from dmtrec.render.shaders.export import write_twins
from dmtrec.render.shaders.sh import probe_lighting

from .unlit_bake import (
    display,
    fit_to_views,
    image_scores,
    premultiplied,
    shade_points,
    uv_layout,
    with_render_frame,
)


def flip_available() -> bool:
    try:
        import flip_evaluator  # noqa: F401
    except ImportError:
        return False
    return True


def initial_values(
    model: ShadingModel,
    source: Mesh,
    material: TexturedMaterial,
    light: EnvironmentLight,
    texture_res: int,
    rasterizer,
    onto: Optional[Mesh] = None,
) -> Dict[str, Tensor]:
    """``[T, T, C]`` starts of the model's textures declared to start from the source (``kd`` or
    ``radiance``); the others take their declared numbers in :class:`ShaderMaterial`.

    On the source itself ``kd`` is its base colour texture resampled to ``T``. On another mesh
    (``onto``, with UVs and normals) every texel of its UV layout takes the values of the closest
    source point: its base colour, or its point-sampled radiance."""
    out: Dict[str, Tensor] = {}
    wanted = {param.init for param in model.params if isinstance(param.init, str)}
    starts: Dict[str, Tensor] = {}
    if onto is None and "kd" in wanted:
        kd = material.kd.data[0, ..., :3].permute(2, 0, 1)[None]
        value = F.interpolate(kd, (texture_res, texture_res), mode="bilinear", antialias=True, align_corners=False)
        starts["kd"] = value[0].permute(1, 2, 0)
    if wanted - set(starts):
        if onto is None:
            points, covered = uv_layout(source, texture_res, rasterizer)
        else:
            texel_points, covered = uv_layout(onto, texture_res, rasterizer)
            points, _ = closest_points(
                texel_points.interpolate(onto.v_pos, onto.t_pos_idx), source.v_pos, source.t_pos_idx
            )
        for init in sorted(wanted - set(starts)):
            values = torch.zeros(texture_res, texture_res, 3, device=source.device)
            if init == "kd":
                uv = points.interpolate(source.v_tex, source.t_tex_idx).reshape(1, -1, 1, 2).contiguous()
                values[covered] = material.kd.sample(uv, None, rasterizer).reshape(-1, material.kd.channels)[:, :3]
            else:
                values[covered] = shade_points(source, material, light, points, rasterizer)
            starts[init] = _dilate(values, covered, 16)
    for param in model.params:
        if not isinstance(param.init, str):
            continue
        value = starts[param.init]
        value = value.mean(-1, keepdim=True) if param.channels == 1 else value[..., : param.channels]
        lower, upper = value.new_tensor(param.lower), value.new_tensor(param.upper)
        out[param.name] = torch.maximum(torch.minimum(value, upper), lower).contiguous()
    return out


def render_shader(mesh: Mesh, values: ShaderMaterial, light, cameras: Cameras, rasterizer) -> Tensor:
    """Premultiplied (over black) renders ``[B, H, W, 4]`` of ``mesh`` by ``values.model``."""
    return render_mesh(mesh, values, light, cameras, rasterizer, smoothness=False, shader=values.model)["shaded"]


def fit_shader(
    mesh: Mesh,
    values: ShaderMaterial,
    light,
    cameras: Cameras,
    references: Tensor,
    rasterizer,
    fixed: Sequence[str] = (),
    **fit,
):
    """Optimise ``values`` in place so that the model's renders match ``references [B, H, W, 4]``
    (straight alpha): :func:`~dmtrec.assets.unlit_bake.fit_to_views` (Adam, the learning rate
    decaying by 10x; ``fit``: its ``steps``, ``lr``, ``batch``, ``loss``, ``seed``), the values
    clamped to their declared ranges after each step, except the declared values named in
    ``fixed`` (e.g. ``("albedo",)``: an artist's texture kept, only the shader's constants tuned).
    Returns the loss per step."""
    declared = {param.name for param in values.model.params}
    unknown = sorted(set(fixed) - declared)
    if unknown:
        raise ValueError(
            f"{values.model.describe()}: fixed names no parameters {unknown}; it declares {sorted(declared)}"
        )
    params = [
        p
        for name, p in values.named_parameters()
        if not name.startswith("normal.") and name.split(".")[1] not in set(fixed)
    ]

    def render(views: Cameras) -> Tensor:
        return render_shader(mesh, values, light, views, rasterizer)

    return fit_to_views(params, render, cameras, references, values.clamp_, **fit)


@dataclass
class ShaderBakeResult:
    """The model's start and fitted values, held-out scores (``initial``, ``fitted``), renders
    of the held-out views, the loss per step and timings."""

    model: ShadingModel
    mesh: Mesh
    start: ShaderMaterial
    fitted: ShaderMaterial
    light: EnvironmentLight
    scores: Dict[str, Dict[str, float]] = field(default_factory=dict)
    renders: Dict[str, Tensor] = field(default_factory=dict)
    losses: List[float] = field(default_factory=list)
    seconds: Dict[str, float] = field(default_factory=dict)


def _scores(render: Tensor, references: Tensor) -> Dict[str, float]:
    scores = image_scores(render, references)
    scores["flip"] = None
    if flip_available():  # NVIDIA's FLIP (lower is better), sRGB images over black
        import flip_evaluator

        values = []
        for pred, ref in zip(display(render[..., :3]), display(premultiplied(references))):
            error, mean, _ = flip_evaluator.evaluate(ref.cpu().numpy(), pred.cpu().numpy(), "LDR")
            values.append(float(mean))
        scores["flip"] = sum(values) / len(values)
    return scores


def bake_shader(
    source: Mesh,
    material: TexturedMaterial,
    light: EnvironmentLight,
    model: ShadingModel,
    cameras: Cameras,
    references: Tensor,
    held_out: Cameras,
    held_out_references: Tensor,
    rasterizer,
    texture_res: int = 256,
    onto: Optional[Mesh] = None,
    fixed: Sequence[str] = (),
    **fit,
) -> ShaderBakeResult:
    """Start, fit and score ``model`` on ``source`` (with UVs, normals and tangents where its
    material has a normal map, which the model's G-buffer keeps), or on ``onto`` (another mesh
    over the same surface with its own UVs, e.g. a level of detail: the source's normal map,
    which lives in the source's UVs, is not carried over); see the module notes.
    ``fixed``, ``fit``: :func:`fit_shader`'s (values kept at their start; ``steps``, ``lr``, ...)."""
    seconds: Dict[str, float] = {}
    start_time = time.perf_counter()
    if onto is not None:
        onto = with_render_frame(onto)
    values = initial_values(model, source, material, light, texture_res, rasterizer, onto)
    normal = material.normal if onto is None else None
    mesh = source if onto is None else onto

    def make(initial: Dict[str, Tensor]) -> ShaderMaterial:
        made = ShaderMaterial(model, dict(initial), texture_res, normal, device=source.device)
        made.requires_grad_(False)
        return made

    start = make(values)
    seconds["start"] = time.perf_counter() - start_time
    fitted = make(values)
    start_time = time.perf_counter()
    losses = fit_shader(mesh, fitted, light, cameras, references, rasterizer, fixed, **fit)
    seconds["fit"] = time.perf_counter() - start_time
    result = ShaderBakeResult(model, mesh, start, fitted, light, losses=losses, seconds=seconds)
    with torch.no_grad():
        for name, made in (("initial", start), ("fitted", fitted)):
            render = torch.cat(
                [
                    render_shader(mesh, made, light, held_out[i : i + 8], rasterizer)
                    for i in range(0, held_out.batch_size, 8)
                ]
            )
            result.renders[name] = render
            result.scores[name] = _scores(render, held_out_references)
    return result


def write_shader_bake(folder: Path, result: ShaderBakeResult, texture_names: Optional[Dict[str, str]] = None) -> None:
    """Write the fitted textures (PNG), ``material.json``, the GLSL and HLSL twins and ``mesh.obj`` into ``folder``."""
    folder = Path(folder)
    model, values = result.model, result.fitted.to_tensors()
    lighting = probe_lighting(result.light)
    textures, constants = {}, {}
    for param in model.params:
        value = values[param.name]
        if param.kind == "constant":
            constants[param.name] = [round(float(v), 6) for v in value]
            continue
        scale = max(1.0, float(max(param.upper)))
        image = (value / scale).clamp(0.0, 1.0)
        image = linear_to_srgb(image) if param.color else image
        file = f"{param.name}.png"
        write_png(folder / file, image)
        textures[param.name] = {
            "file": file,
            "kind": param.kind,
            "encoding": "srgb" if param.color else "linear",
            "scale": scale,
            "range": [list(param.lower), list(param.upper)],
        }
    twins = write_twins(model, folder)
    colour = next((values[p.name] for p in model.params if p.kind == "texture" and p.channels == 3), None)
    write_obj(folder, result.mesh, None if colour is None else {"kd": colour}, name="mesh")
    document = {
        "model": model.name,
        "source": model.source or None,
        "glsl": twins["glsl"],
        "hlsl": twins["hlsl"],
        "constants": constants,
        "textures": textures,
        "light": {
            "main_dir": lighting.main_dir.tolist(),
            "main_color": lighting.main_color.tolist(),
            "ambient_sh": lighting.ambient_sh.tolist(),
        },
    }
    (folder / "material.json").write_text(json.dumps(document, indent=2) + "\n")
