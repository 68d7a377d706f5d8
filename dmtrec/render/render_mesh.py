"""``render_mesh``: rasterize a mesh, evaluate its material, shade it under an environment light.

The pipeline (nvdiffrec's ``render.render_mesh`` with one layer): clip-space transform,
rasterization, interpolation of world positions, normals, tangents and UVs (with pixel
derivatives for mip mapping), material lookup, shading-normal preparation (normal map, two-sided
flip, bending towards the geometric normal), split-sum shading, compositing over the background
and analytic antialiasing of the silhouettes. Only covered pixels are shaded: fragments are
packed into ``[1, N, 1, C]`` tensors, which the rasterizer's ops take like any image.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtrec.geometry.normals import compute_normals, compute_tangents, face_normals
from dmtrec.geometry.topology import cached

from . import bsdf as bsdf_lib
from .camera import Cameras
from .light import EnvironmentLight
from .material import Material, MaterialSample

BSDF_MODES = ("pbr", "diffuse", "white", "kd", "ks", "normal", "unlit")
"""``pbr``: full split-sum shading; ``diffuse``: diffuse only (kd as albedo); ``white``: diffuse
only with a white albedo (geometry under the light); ``kd`` / ``ks``: the material channels;
``normal``: the world-space shading normal mapped to ``(n + 1) / 2``; ``unlit``: the colour is
kd, or the interpolated per-vertex colour when one is given (baked assets for devices without
PBR shading, judged by the same rasterizer)."""


def render_mesh(
    mesh,
    material: Optional[Material],
    light: Optional[EnvironmentLight],
    cameras: Cameras,
    rasterizer,
    background: Optional[Tensor] = None,
    bsdf: str = "pbr",
    num_layers: int = 1,
    spp: int = 1,
    smoothness: bool = True,
    vertex_color: Optional[Tensor] = None,
    shader=None,
) -> Dict[str, Tensor]:
    """Render ``mesh`` with ``material`` under ``light`` from each camera.

    Args:
        mesh: :class:`dmtrec.geometry.Mesh`; vertex normals are computed when missing, tangents
            (from UVs) when the material perturbs normals; may be empty.
        material: a :class:`~dmtrec.render.material.Material`; may be None with ``vertex_color``
            (then kd and ks read as 0).
        light: the environment light (unused, may be None, for the ``kd``/``ks``/``normal``/``unlit`` modes).
            Its mips are (re)built here when needed (:meth:`EnvironmentLight.ensure_mips`).
        cameras: ``B`` cameras; their ``resolution`` is the output size ``(H, W)``.
        rasterizer: a :class:`~dmtrec.render.raster.Rasterizer`.
        background: ``[B, H, W, 3]`` (or ``[1, H, W, 3]``) linear colour behind the mesh; None is black.
        bsdf: one of :data:`BSDF_MODES`.
        num_layers: depth-peeled layers; only 1 is supported (the rasterizer contract has no peeler).
        spp: supersampling factor: render at ``spp`` times the resolution, then box-filter down.
        smoothness: compute ``kd_grad`` (doubles the kd lookups); zeros otherwise.
        vertex_color: ``[V, 3]`` linear colours per position vertex (``mesh.v_pos``), interpolated
            across triangles; only for ``bsdf="unlit"``, where they replace kd, or a ``shader``
            (its G-buffer's vertex colour).
        shader: a :class:`~dmtrec.render.shaders.ShadingModel` that computes the colour instead
            of ``bsdf`` (which is then ignored); ``material`` a
            :class:`~dmtrec.render.shaders.ShaderMaterial` of it, or (for the built-in ``pbr``
            and ``unlit`` models, which read ``kd`` and ``ks``) any material.

    Returns:
        A dict of ``[B, H, W, C]`` float32 buffers:

        * ``"shaded"`` ``[..., 4]``: linear HDR colour composited over the background, and the
          antialiased coverage alpha;
        * ``"alpha"`` ``[..., 1]``: that alpha (coverage times kd's alpha channel, antialiased);
        * ``"mask"`` ``[..., 1]``: hard coverage (1 where a triangle covers the pixel centre);
        * ``"kd"``, ``"ks"`` ``[..., 3]``: material channels (ks = occlusion, roughness, metallic);
        * ``"normal"`` ``[..., 3]``: world-space shading normal;
        * ``"depth"`` ``[..., 1]``: camera-space depth (distance along the viewing axis);
        * ``"kd_grad"`` ``[..., 1]``: kd change under a small lookup jitter; its mean (times a
          weight) is nvdiffrec's material smoothness regularizer.

        All but ``"shaded"``, ``"alpha"`` and ``"mask"`` are multiplied by the hard coverage times
        kd's alpha (so they are 0 where nothing is drawn), as nvdiffrec composites them.
        An empty mesh gives the background with alpha 0, zero buffers, and outputs that still
        depend (with zero gradient) on the mesh, material and light parameters, so a loss
        built from them can be backpropagated.
    """
    if bsdf not in BSDF_MODES:
        raise ValueError(f"render_mesh: unknown bsdf {bsdf!r}; choose one of {', '.join(BSDF_MODES)}")
    if num_layers != 1:
        raise NotImplementedError(
            "render_mesh: depth peeling (num_layers > 1) needs a peeling rasterize in the "
            "rasterizer contract (nvdiffrast's DepthPeeler), which it does not offer yet"
        )
    if int(spp) != spp or spp < 1:
        raise ValueError(f"render_mesh: spp must be a positive integer, got {spp!r}")
    vertex_ok = bsdf == "unlit" or shader is not None
    if vertex_color is not None and (not vertex_ok or tuple(vertex_color.shape) != (mesh.v_pos.shape[0], 3)):
        raise ValueError(
            f"render_mesh: vertex_color must be [V={mesh.v_pos.shape[0]}, 3] with bsdf 'unlit', got "
            f"{tuple(vertex_color.shape)} with {bsdf!r}"
        )
    if material is None and vertex_color is None:
        raise ValueError("render_mesh: a material is needed unless vertex colours are given")
    needs_light = bsdf in ("pbr", "diffuse", "white") if shader is None else shader.needs_light
    if needs_light and light is None:
        raise ValueError(f"render_mesh: {bsdf if shader is None else shader.name!r} needs a light")
    batch, (height, width) = cameras.batch_size, cameras.resolution
    device = mesh.v_pos.device
    background = _check_background(background, batch, height, width, device)
    full = (height * spp, width * spp)
    if spp > 1:
        background = background.repeat_interleave(spp, 1).repeat_interleave(spp, 2)

    buffers = None
    if not mesh.is_empty:
        if needs_light:
            light.ensure_mips(rasterizer)
        mesh = _with_shading_frame(mesh, material, shader is not None and shader.uses_tangents)
        buffers = _render_layer(
            mesh, material, light, cameras, rasterizer, background, bsdf, full, smoothness, vertex_color, shader
        )
    if buffers is None:  # empty mesh, or nothing in view
        buffers = _empty_buffers(mesh, material, light, background, vertex_color)
    if spp > 1:
        buffers = {key: _box_down(value, spp) for key, value in buffers.items()}
    return buffers


def _check_background(background: Optional[Tensor], batch: int, height: int, width: int, device) -> Tensor:
    if background is None:
        return torch.zeros(batch, height, width, 3, device=device)
    if (
        background.dim() != 4
        or background.shape[0] not in (1, batch)
        or tuple(background.shape[1:]) != (height, width, 3)
    ):
        raise ValueError(
            f"render_mesh: background must be [{batch}, {height}, {width}, 3] (or batch 1), "
            f"got {tuple(background.shape)}"
        )
    return background.to(device=device, dtype=torch.float32).expand(batch, -1, -1, -1)


def _with_shading_frame(mesh, material: Optional[Material], shader_tangents: bool = False):
    """The mesh with vertex normals, and tangents where the material (or the shader) needs them."""
    if mesh.v_nrm is None or mesh.t_nrm_idx is None:
        mesh = compute_normals(mesh)
    if shader_tangents and mesh.v_tex is not None and (mesh.v_tng is None or mesh.t_tng_idx is None):
        mesh = compute_tangents(mesh)
    if material is None:
        return mesh
    if material.perturbs_normals and (mesh.v_tng is None or mesh.t_tng_idx is None):
        if mesh.v_tex is None or mesh.t_tex_idx is None:
            raise ValueError(
                "render_mesh: the material perturbs normals, which needs tangents, and the mesh has "
                "neither tangents (v_tng) nor UVs (v_tex) to derive them from"
            )
        mesh = compute_tangents(mesh)
    if material.uses_uv and (mesh.v_tex is None or mesh.t_tex_idx is None):
        raise ValueError("render_mesh: the material is textured but the mesh has no UVs (v_tex / t_tex_idx)")
    return mesh


def _render_layer(
    mesh,
    material: Material,
    light,
    cameras: Cameras,
    rasterizer,
    background: Tensor,
    bsdf: str,
    resolution,
    smoothness: bool,
    vertex_color: Optional[Tensor] = None,
    shader=None,
) -> Optional[Dict[str, Tensor]]:
    """Buffers at ``resolution``, or None when no pixel is covered."""
    clip = cameras.project(mesh.v_pos)
    tri = _int32(mesh.t_pos_idx)
    rast, rast_db = rasterizer.rasterize(clip, tri, resolution)

    # Pack the covered pixels into a [1, N, 1, C] "image".
    covered = rast[..., 3].reshape(-1) > 0
    sel = covered.nonzero().squeeze(1)
    n = sel.numel()
    if n == 0:
        return None

    def pack(image: Tensor) -> Tensor:
        return image.reshape(-1, image.shape[-1])[sel].reshape(1, n, 1, -1)

    frag, frag_db = pack(rast), pack(rast_db)
    pixel_batch = sel // (resolution[0] * resolution[1])
    pos, _ = rasterizer.interpolate(mesh.v_pos, frag, tri)
    smooth_normal, _ = rasterizer.interpolate(mesh.v_nrm, frag, _int32(mesh.t_nrm_idx))
    geometric_normal = face_normals(mesh.v_pos, mesh.t_pos_idx)[frag[..., 3].long() - 1]
    tangent = None
    if (material is not None and material.perturbs_normals) or (shader is not None and mesh.v_tng is not None):
        tangent, _ = rasterizer.interpolate(mesh.v_tng, frag, _int32(mesh.t_tng_idx))
    uv = uv_da = None
    if material is not None and material.uses_uv:
        uv, uv_da = rasterizer.interpolate(mesh.v_tex, frag, _int32(mesh.t_tex_idx), rast_db=frag_db, diff_attrs="all")

    if material is not None:
        sample = material.sample(pos, uv, uv_da, rasterizer, smoothness=smoothness)
    else:  # vertex colours only: no material channels
        sample = MaterialSample(kd=torch.zeros_like(pos), ks=torch.zeros_like(pos))
    view_pos = cameras.campos[pixel_batch].reshape(1, n, 1, 3)
    normal = bsdf_lib.prepare_shading_normal(
        pos, view_pos, smooth_normal, geometric_normal, sample.perturbation, tangent, two_sided=True
    )
    kd, ks = sample.kd, sample.ks
    if shader is not None:
        colors = None if vertex_color is None else rasterizer.interpolate(vertex_color, frag, tri)[0]
        c2w = cameras.c2w[pixel_batch, :3, :3].reshape(1, n, 1, 3, 3)
        color = _shade(
            shader, sample, pos, normal, geometric_normal, view_pos, tangent, uv, light, rasterizer, c2w, colors
        )
    elif bsdf == "pbr":
        color = light.shade(pos, normal, kd, ks, view_pos, rasterizer, specular=True)
    elif bsdf == "diffuse":
        color = light.shade(pos, normal, kd, ks, view_pos, rasterizer, specular=False)
    elif bsdf == "white":
        color = light.shade(
            pos, normal, torch.ones_like(kd), torch.zeros_like(ks), view_pos, rasterizer, specular=False
        )
    elif bsdf == "kd":
        color = kd
    elif bsdf == "ks":
        color = ks
    elif bsdf == "unlit":
        color = kd if vertex_color is None else rasterizer.interpolate(vertex_color, frag, tri)[0]
    else:
        color = (normal + 1.0) * 0.5
    alpha = sample.alpha if sample.alpha is not None else torch.ones_like(kd[..., :1])
    forward = -cameras.c2w[pixel_batch, :3, 2].reshape(1, n, 1, 3)
    depth = bsdf_lib.dot(pos - view_pos, forward)
    kd_grad = sample.kd_grad if sample.kd_grad is not None else torch.zeros_like(alpha)

    def unpack(values: Tensor) -> Tensor:
        flat = torch.zeros(covered.numel(), values.shape[-1], device=values.device, dtype=values.dtype)
        return flat.index_put((sel,), values.reshape(n, -1)).reshape(rast.shape[:3] + (-1,))

    alpha_img = unpack(alpha)
    shaded = torch.lerp(
        torch.cat([background, torch.zeros_like(background[..., :1])], -1),
        torch.cat([unpack(color), torch.ones_like(alpha_img)], -1),
        alpha_img,
    )
    shaded = rasterizer.antialias(shaded.contiguous(), rast, clip, tri, topology_hash=_topology_hash(rasterizer, mesh))
    return {
        "shaded": shaded,
        "alpha": shaded[..., 3:4],
        "mask": (rast[..., 3:4] > 0).to(shaded.dtype),
        "kd": unpack(kd * alpha),
        "ks": unpack(ks * alpha),
        "normal": unpack(normal * alpha),
        "depth": unpack(depth * alpha),
        "kd_grad": unpack(kd_grad * alpha),
    }


def _shade(shader, sample, pos, normal, geometric_normal, view_pos, tangent, uv, light, rasterizer, c2w, vertex_color):
    """``[1, N, 1, 3]`` colour of the packed fragments by a shading model (see :mod:`.shaders`)."""
    from .shaders.base import GBuffer, ShaderSample, shade_checked
    from .shaders.sh import probe_lighting

    bitangent = None
    if tangent is not None:  # the mesh's tangent frame, orthonormalised against the shading normal
        # [..., 4] tangents (glTF's, read from a GLB) carry the bitangent sign in w, as perturb_normal reads it.
        sign = 1.0 if tangent.shape[-1] == 3 else torch.where(tangent[..., 3:4] < 0, -1.0, 1.0)
        tangent = tangent[..., :3]
        tangent = bsdf_lib.safe_normalize(tangent - normal * bsdf_lib.dot(tangent, normal))
        bitangent = torch.linalg.cross(normal, tangent, dim=-1) * sign
    gbuffer = GBuffer(
        pos=pos,
        normal=normal,
        geometric_normal=geometric_normal,
        view_pos=view_pos,
        view_dir=bsdf_lib.safe_normalize(view_pos - pos),
        world_to_view=c2w.transpose(-1, -2),
        uv=uv,
        tangent=tangent,
        bitangent=bitangent,
        vertex_color=vertex_color,
        light=probe_lighting(light) if shader.needs_light else None,
        rasterizer=rasterizer,
    )
    params = sample.params if isinstance(sample, ShaderSample) else {"kd": sample.kd, "ks": sample.ks}
    return shade_checked(shader, gbuffer, params)


def _topology_hash(rasterizer, mesh):
    """The antialias edge structure of ``mesh.t_pos_idx``, built once per face tensor (and
    rasterizer kind) while it is unchanged: fixed-topology meshes (pass 2, the reference scene
    of a dataset) render many times. None when the backend builds none."""
    faces = mesh.t_pos_idx
    build = lambda: rasterizer.construct_topology_hash(_int32(faces))  # noqa: E731
    return cached("antialias_topology", (faces,), build, extra=type(rasterizer), always=True)


def _int32(index: Tensor) -> Tensor:
    """``index`` as int32 (the rasterizer's index type), converted once per index tensor."""
    return cached("int32", (index,), index.int)


def _empty_buffers(
    mesh, material: Optional[Material], light, background: Tensor, vertex_color: Optional[Tensor] = None
) -> Dict[str, Tensor]:
    # Zero that depends on every parameter, so that losses on these buffers still backpropagate.
    params = [mesh.v_pos] + ([] if material is None else list(material.parameters()))
    params += ([] if light is None else list(light.parameters())) + ([] if vertex_color is None else [vertex_color])
    anchor = sum(p.sum() for p in params if p.is_floating_point()) * 0.0
    zeros = torch.zeros_like(background[..., :1]) + anchor
    shaded = torch.cat([background + anchor, zeros], -1)
    return {
        "shaded": shaded,
        "alpha": zeros,
        "mask": zeros,
        "kd": zeros.expand(-1, -1, -1, 3),
        "ks": zeros.expand(-1, -1, -1, 3),
        "normal": zeros.expand(-1, -1, -1, 3),
        "depth": zeros,
        "kd_grad": zeros,
    }


def _box_down(image: Tensor, factor: int) -> Tensor:
    return F.avg_pool2d(image.permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1).contiguous()
