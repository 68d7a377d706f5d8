"""Path-traced ground truth with Mitsuba 3: the same mesh, material, probe and cameras as the
rasterizer's reference renders, with what split-sum shading leaves out (shadows,
interreflections, the true GGX lobe).

Mitsuba (PyPI ``mitsuba``, optional extra ``dmtrec[pathtrace]``) is imported lazily; its
``scalar_rgb`` variant runs on any CPU without LLVM or a GPU.

How dmtrec's PBR material maps onto Mitsuba's ``principled`` BSDF:

* exact: base colour = ``kd`` (linear RGB texture), roughness = ``ks.G`` (both square it into
  GGX's alpha), metallic = ``ks.B``, dielectric F0 = 0.04 (``specular`` 0.5), the probe as an
  ``envmap`` emitter in dmtrec's lat-long orientation, pinhole cameras (c2w, fovy);
* approximate: the tangent-space normal map (Mitsuba's ``normalmap`` builds its frame from the
  UV parameterisation like dmtrec's tangents, but not with identical smoothing); kd's alpha
  channel is ignored (opaque);
* not mapped: ``ks.R`` (nvdiffrec's occlusion *amount*): a path tracer computes occlusion
  itself, so the channel has no counterpart (reference scenes clear it anyway).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.geometry.normals import compute_normals
from dmtrec.io.image import read_hdr

# Mitsuba's envmap looks up (-x, y, -z) of dmtrec's lat-long convention: a half turn about +y
# (measured by rendering a direction-encoding probe; see tests/render/test_pathtrace.py).
_ENV_TO_WORLD = np.diag([-1.0, 1.0, -1.0, 1.0])
# Mitsuba's camera looks down its +z with +x to the left; dmtrec's (OpenGL) down -z with +x right.
_GL_TO_MITSUBA_CAMERA = np.diag([-1.0, 1.0, -1.0, 1.0])


def _mitsuba():
    try:
        import mitsuba as mi
    except ImportError as exc:
        raise RuntimeError("path tracing needs Mitsuba 3: pip install 'dmtrec[pathtrace]' (or mitsuba)") from exc
    if mi.variant() is None:
        mi.set_variant("scalar_rgb")
    # Mitsuba renders on Dr.Jit's own thread pool, every core by default: hold it to torch's thread
    # count (dmtrec's thread policy, or OMP_NUM_THREADS), so a one-thread job stays one thread.
    import drjit

    drjit.set_thread_count(torch.get_num_threads())
    return mi


def _unwelded(mesh: Mesh) -> Dict[str, np.ndarray]:
    """Per-corner vertex arrays (dmtrec meshes index positions, normals and UVs separately)."""
    if mesh.v_nrm is None:
        mesh = compute_normals(mesh)
    corners = {"positions": mesh.v_pos[mesh.t_pos_idx.long()], "normals": mesh.v_nrm[mesh.t_nrm_idx.long()]}
    if mesh.v_tex is not None and mesh.t_tex_idx is not None:
        uv = mesh.v_tex[mesh.t_tex_idx.long()].clone()
        # dmtrec samples textures with v = 0 at the first row (nvdiffrast); Mitsuba at the last.
        uv[..., 1] = 1.0 - uv[..., 1]
        corners["texcoords"] = uv
    return {k: v.detach().reshape(-1, v.shape[-1]).cpu().double().numpy() for k, v in corners.items()}


def _mitsuba_mesh(mi, mesh: Mesh, bsdf):
    arrays = _unwelded(mesh)
    count = arrays["positions"].shape[0]
    has_uv = "texcoords" in arrays
    props = mi.Properties()
    props["mesh_bsdf"] = bsdf
    shape = mi.Mesh("dmtrec", count, count // 3, has_vertex_normals=True, has_vertex_texcoords=has_uv, props=props)
    params = mi.traverse(shape)
    params["vertex_positions"] = arrays["positions"].ravel().tolist()
    params["vertex_normals"] = arrays["normals"].ravel().tolist()
    if has_uv:
        params["vertex_texcoords"] = arrays["texcoords"].ravel().tolist()
    params["faces"] = np.arange(count, dtype=np.uint32).tolist()
    params.update()
    return shape


def _bitmap_texture(mi, image: Tensor) -> dict:
    array = np.ascontiguousarray(image.detach().cpu().float().numpy())
    return {"type": "bitmap", "bitmap": mi.Bitmap(array), "raw": True, "filter_type": "bilinear"}


def principled_bsdf(mi, textures: Dict[str, Tensor]) -> dict:
    """Mitsuba's principled BSDF for dmtrec textures (module docstring for what maps how)."""
    kd, ks = textures["kd"][..., :3], textures["ks"]
    bsdf = {
        "type": "principled",
        "base_color": _bitmap_texture(mi, kd),
        "roughness": _bitmap_texture(mi, ks[..., 1:2]),
        "metallic": _bitmap_texture(mi, ks[..., 2:3]),
        "specular": 0.5,
    }
    normal = textures.get("normal")
    if normal is not None:
        encoded = normal[..., :3] * 0.5 + 0.5  # Mitsuba decodes 2 t - 1
        bsdf = {"type": "normalmap", "normalmap": _bitmap_texture(mi, encoded), "bsdf": bsdf}
    return bsdf


def pathtrace(
    mesh: Mesh,
    textures: Dict[str, Tensor],
    probe: Tensor,
    c2w: Tensor,
    fovy: float,
    resolution: Sequence[int],
    spp: int = 64,
    max_depth: int = 8,
    seed: int = 0,
    env_scale: float = 1.0,
) -> Tensor:
    """Path-trace ``mesh`` under the lat-long ``probe`` from each camera.

    Args:
        mesh: triangle mesh (UVs needed for textures larger than one texel).
        textures: ``{"kd": [H, W, 3|4] linear, "ks": [H, W, 3] ORM, "normal": [H, W, 3] in [-1, 1]}``.
        probe: ``[Hp, Wp, 3]`` linear lat-long radiance (dmtrec's convention, :mod:`.cubemap`).
        c2w: ``[B, 4, 4]`` camera-to-world (NeRF-synthetic / OpenGL convention).
        fovy: vertical field of view in radians.
        resolution: ``(H, W)``.
        spp: samples per pixel; max_depth: longest path (8 bounces cover interreflection).
        seed: sampler seed (camera ``b`` uses ``seed + b``).
        env_scale: multiplies the probe.

    Returns:
        ``[B, H, W, 4]`` float32: linear RGB with straight alpha (pixel coverage), on the CPU.
    """
    mi = _mitsuba()
    height, width = int(resolution[0]), int(resolution[1])
    scene_dict = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": int(max_depth), "hide_emitters": True},
        "emitter": {
            "type": "envmap",
            "bitmap": mi.Bitmap(np.ascontiguousarray((probe[..., :3] * env_scale).detach().cpu().float().numpy())),
            "to_world": mi.ScalarTransform4f(_ENV_TO_WORLD.tolist()),
        },
        "object": _mitsuba_mesh(mi, mesh, mi.load_dict(principled_bsdf(mi, textures))),
    }
    scene = mi.load_dict(scene_dict)
    images = []
    for b, matrix in enumerate(c2w.detach().cpu().double().numpy()):
        sensor = mi.load_dict(
            {
                "type": "perspective",
                "fov": math.degrees(fovy),
                "fov_axis": "y",
                "near_clip": 0.01,
                "far_clip": 1000.0,
                "to_world": mi.ScalarTransform4f((matrix @ _GL_TO_MITSUBA_CAMERA).tolist()),
                "film": {
                    "type": "hdrfilm",
                    "width": width,
                    "height": height,
                    "pixel_format": "rgba",
                    "rfilter": {"type": "box"},
                },
                "sampler": {"type": "independent", "sample_count": int(spp), "seed": int(seed) + b},
            }
        )
        rgba = torch.from_numpy(np.array(mi.render(scene, sensor=sensor), dtype=np.float32))
        alpha = rgba[..., 3:4].clamp(0.0, 1.0)
        # hdrfilm develops premultiplied colour; the dataset contract is straight alpha.
        rgb = torch.where(alpha > 0, rgba[..., :3] / alpha.clamp_min(1e-6), torch.zeros_like(rgba[..., :3]))
        images.append(torch.cat([rgb, alpha], dim=-1))
    return torch.stack(images)


def fovy_of(proj: Tensor) -> float:
    """Vertical field of view (radians) of a :func:`dmtrec.render.camera.perspective` matrix."""
    return 2.0 * math.atan(1.0 / abs(float(proj[1, 1])))


def probe_latlong(path, device: Optional[torch.device] = None) -> Tensor:
    """The probe file as ``[H, W, 3]`` linear lat-long radiance."""
    return torch.from_numpy(read_hdr(path)).to(device)
