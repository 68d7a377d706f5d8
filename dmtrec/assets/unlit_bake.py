"""Bake an asset's PBR look under a probe into an unlit texture or per-vertex colours.

Three bakes of the same look, judged by the renderer's ``unlit`` mode against PBR renders:

* **point-sampled** (what game tools do): every texel / vertex gets the PBR radiance of the
  source surface point it corresponds to, seen from along that point's shading normal;
* **optimised**: the texels (through their mip pyramid) or vertex colours whose unlit renders
  best match the PBR renders over the chosen views, by gradient descent from the point sample
  (L2 in linear space, or L1 of log1p: :func:`dmtrec.metrics.image_losses.masked_pixel_loss`).
  For vertex colours this differs from the point sample because colours are interpolated
  across triangles;
* **closed forms**, checks of the optimiser, from vector-Jacobian products of the (linear)
  unlit render ``A``: for a texture on the source itself, each texel's observed radiance
  averaged over all views, weighted by its footprint (the weight the renderer's filtered lookup
  gives it in each pixel), ``x = A^T (w y) / A^T w``; and for any target the least-squares
  optimum, by conjugate gradients on ``A^T W A x = A^T W y`` from that mean.

Targets onto another mesh (``onto``, e.g. a level of detail) find, for every texel or vertex,
the closest point on the source surface (:func:`dmtrec.geometry.closest_point.closest_points`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.geometry.closest_point import SurfacePoints, closest_points
from dmtrec.geometry.normals import compute_normals, compute_tangents, face_normals
from dmtrec.io.image import linear_to_srgb
from dmtrec.metrics.image import psnr, ssim
from dmtrec.metrics.image_losses import masked_pixel_loss
from dmtrec.render import bsdf as bsdf_lib
from dmtrec.render.bake import _dilate
from dmtrec.render.camera import Cameras
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import Texture2D, TexturedMaterial
from dmtrec.render.render_mesh import render_mesh

from .views import mesh_bounds

TARGETS = ("texture", "vertex")

OVERLAP_TOLERANCE = 0.05
"""``onto`` meshes whose median vertex lies farther than this fraction of the source's bounding
radius from the source surface are rejected as not overlapping it."""


# ---------------------------------------------------------------------------- correspondences


def check_overlap(source: Mesh, target: Mesh, name: str) -> float:
    """Median distance of ``target``'s vertices to ``source`` relative to its bounding radius;
    ValueError ``"<name>: ..."`` when above :data:`OVERLAP_TOLERANCE`."""
    _, radius = mesh_bounds(source)
    _, dist = closest_points(target.v_pos, source.v_pos, source.t_pos_idx)
    relative = float(dist.median()) / max(radius, 1e-12)
    if relative > OVERLAP_TOLERANCE:
        raise ValueError(
            f"{name}: mesh does not overlap the source mesh (median distance {relative:.0%} of its radius; "
            "same units and placement?)"
        )
    return relative


@torch.no_grad()
def shade_points(
    mesh: Mesh, material: TexturedMaterial, light: EnvironmentLight, points: SurfacePoints, rasterizer
) -> Tensor:
    """PBR radiance ``[N, 3]`` of surface points seen from along their shading normal (the point sample).

    ``mesh`` needs normals (and tangents with a normal map) and UVs when the material is textured.
    """
    n = points.face.shape[0]

    def column(x: Tensor) -> Tensor:
        return x.reshape(1, n, 1, -1).contiguous()

    pos = column(points.interpolate(mesh.v_pos, mesh.t_pos_idx))
    smooth = column(bsdf_lib.safe_normalize(points.interpolate(mesh.v_nrm, mesh.t_nrm_idx)))
    geometric = column(face_normals(mesh.v_pos, mesh.t_pos_idx)[points.face])
    uv = column(points.interpolate(mesh.v_tex, mesh.t_tex_idx))
    sample = material.sample(pos, uv, None, rasterizer)
    tangent = None
    if sample.perturbation is not None:
        tangent = column(points.interpolate(mesh.v_tng, mesh.t_tng_idx))
    # Seen from along the normal: build the shading normal with the viewer there, then shade.
    view = pos + smooth
    normal = bsdf_lib.prepare_shading_normal(pos, view, smooth, geometric, sample.perturbation, tangent)
    light.ensure_mips(rasterizer)
    return light.shade(pos, normal, sample.kd, sample.ks, pos + normal, rasterizer).reshape(n, 3)


def uv_layout(mesh: Mesh, resolution: int, rasterizer) -> Tuple[SurfacePoints, Tensor]:
    """The surface point of every covered texel of ``mesh``'s UV layout and the covered mask
    ``[T, T]`` (image rows: row 0 is v = 1, as textures are stored)."""
    uv = mesh.v_tex.to(torch.float32)
    clip = torch.cat([uv * 2.0 - 1.0, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], -1)
    rast, _ = rasterizer.rasterize(clip[None], mesh.t_tex_idx.int(), (resolution, resolution))
    rast = rast[0].flip(0)  # rasterized row 0 is v = 0, the bottom of the image
    covered = rast[..., 3] > 0
    u, v = rast[..., 0][covered], rast[..., 1][covered]
    face = rast[..., 3][covered].long() - 1
    # The rasterizer's (u, v) weigh corners 0 and 1 (interpolate: u a0 + v a1 + (1 - u - v) a2).
    return SurfacePoints(face, torch.stack([u, v, 1 - u - v], -1)), covered


def with_render_frame(mesh: Mesh, material: Optional[TexturedMaterial] = None) -> Mesh:
    """``mesh`` with normals, and tangents when ``material`` has a normal map (what shading needs)."""
    if mesh.v_nrm is None:
        mesh = compute_normals(mesh)
    if material is not None and material.perturbs_normals and mesh.v_tng is None:
        mesh = compute_tangents(mesh)
    return mesh


# ---------------------------------------------------------------------------- unlit assets


def unlit_material(texture: Tensor) -> TexturedMaterial:
    """An unlit material around a learnable ``[T, T, 3]`` colour texture (values kept in [0, 1],
    what an 8-bit texture stores); ks is a constant placeholder the unlit mode ignores."""
    kd = Texture2D(texture, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    ks = Texture2D(torch.zeros(1, 1, 3, device=texture.device))
    ks.requires_grad_(False)
    return TexturedMaterial(kd, ks)


def render_unlit(mesh: Mesh, baked, cameras: Cameras, rasterizer) -> Tensor:
    """Premultiplied (over black) unlit renders ``[B, H, W, 4]`` of ``mesh`` with ``baked``: an
    unlit :class:`TexturedMaterial` or vertex colours ``[V, 3]``."""
    if isinstance(baked, Tensor):
        out = render_mesh(mesh, None, None, cameras, rasterizer, bsdf="unlit", smoothness=False, vertex_color=baked)
    else:
        out = render_mesh(mesh, baked, None, cameras, rasterizer, bsdf="unlit", smoothness=False)
    return out["shaded"]


def premultiplied(rgba: Tensor) -> Tensor:
    """Straight-alpha ``[..., 4]`` -> premultiplied RGB over black ``[..., 3]``."""
    return rgba[..., :3] * rgba[..., 3:]


def fit_unlit(mesh: Mesh, baked, cameras: Cameras, references: Tensor, rasterizer, **options) -> List[float]:
    """:func:`unlit_view_fit` run to its end (``options``: its steps, lr, batch, loss, seed, prior,
    prior_weight); returns the loss per step."""
    return unlit_view_fit(mesh, baked, cameras, references, rasterizer, **options).run()


def unlit_view_fit(
    mesh: Mesh,
    baked,
    cameras: Cameras,
    references: Tensor,
    rasterizer,
    steps: int = 200,
    lr: float = 0.02,
    batch: int = 8,
    loss: str = "l2",
    seed: int = 0,
    prior: Optional[Tensor] = None,
    prior_weight: float = 0.0,
) -> "ViewFit":
    """Optimise ``baked`` (an unlit material or a vertex-colour tensor, in place) so that its
    unlit renders match ``references [B, H, W, 4]`` (straight alpha) under ``cameras``.

    Adam over ``batch`` views per step, its learning rate decaying by 10x over the run; values
    clamped to [0, 1] after each step. Pixels count where the reference is covered.

    ``prior`` (e.g. the point sample, shaped like the values) with ``prior_weight`` ``λ`` adds
    ``λ |x - prior|^2`` to the sum of squared pixel errors over all views: each texel or vertex
    counts as ``λ`` pixels observing its prior, which holds back the ones few pixels see from
    fitting the view-dependent light of the few views that see them.

    Returns:
        The :class:`ViewFit` to step (``dmtrec bake`` steps it under a Trainer) or run.
    """
    params = [baked] if isinstance(baked, Tensor) else [baked.kd.data]
    # The prior term is normalised like masked_pixel_loss: by the (mean per view) covered pixel count.
    pixels = float((references[..., 3] > 0).sum()) * 3.0 or 1.0

    def penalty() -> Optional[Tensor]:
        if prior is None or prior_weight <= 0:
            return None
        return prior_weight * ((params[0].reshape(prior.shape) - prior) ** 2).sum() / pixels

    @torch.no_grad()
    def project() -> None:
        for p in params:
            p.clamp_(0.0, 1.0)

    def render(views: Cameras) -> Tensor:
        return render_unlit(mesh, baked, views, rasterizer)

    return ViewFit(params, render, cameras, references, project, penalty, steps, lr, batch, loss, seed)


def fit_to_views(*args, **kwargs) -> List[float]:
    """Adam on ``params`` so that ``render(cameras) [B, H, W, 3+]`` (premultiplied over black)
    matches ``references [B, H, W, 4]`` (straight alpha) where they are covered: ``batch`` views
    per step in shuffled epochs, the learning rate decaying by 10x over the run, ``penalty()``
    (if not None) added to the loss and ``project()`` after each step. Returns the loss per step.
    Arguments: :class:`ViewFit`'s (``params, render, cameras, references, project, penalty=None,
    steps=200, lr=0.02, batch=8, loss="l2", seed=0``); this is :class:`ViewFit` in one go.
    """
    return ViewFit(*args, **kwargs).run()


class ViewFit:
    """One step at a time of :func:`fit_to_views` (same arguments), resumable: :meth:`state_dict`
    holds the view order drawn so far and the generator's state, the optimizer holds its own.

    :meth:`step` takes the optimizer (Adam over ``params`` at ``lr``; a Trainer's wrapped one
    counts its steps), sets its learning rate for the step (``lr * 0.1 ** (i / steps)``, what a
    ``LambdaLR`` stepped after each step gives), and returns the step's loss.
    """

    def __init__(
        self,
        params: List[Tensor],
        render: Callable[[Cameras], Tensor],
        cameras: Cameras,
        references: Tensor,
        project: Callable[[], None],
        penalty: Optional[Callable[[], Optional[Tensor]]] = None,
        steps: int = 200,
        lr: float = 0.02,
        batch: int = 8,
        loss: str = "l2",
        seed: int = 0,
    ):
        self.params, self.render, self.cameras, self.references = params, render, cameras, references
        self.project, self.penalty, self.steps, self.lr, self.batch, self.loss = (
            project,
            penalty,
            steps,
            lr,
            batch,
            loss,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.order: List[int] = []
        self.iteration = 0
        for p in params:
            p.requires_grad_(True)

    def step(self, optimizer) -> float:
        if len(self.order) < self.batch:
            self.order += torch.randperm(self.cameras.batch_size, generator=self.generator).tolist()
        views, self.order = self.order[: self.batch], self.order[self.batch :]
        for group in getattr(optimizer, "optimizer", optimizer).param_groups:
            group["lr"] = self.lr * 0.1 ** (self.iteration / max(self.steps, 1))
        ref = self.references[views]
        pred = self.render(self.cameras[views])[..., :3]
        value = masked_pixel_loss(pred, premultiplied(ref), (ref[..., 3:] > 0).to(pred.dtype), self.loss)
        extra = None if self.penalty is None else self.penalty()
        if extra is not None:
            value = value + extra
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        self.project()
        self.iteration += 1
        return float(value.detach())

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.params, lr=self.lr)

    def run(self) -> List[float]:
        """Every remaining step; the loss per step."""
        optimizer = self.make_optimizer()
        history = [self.step(optimizer) for _ in range(self.iteration, self.steps)]
        self.done()
        return history

    def done(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def state_dict(self) -> Dict[str, object]:
        return {"order": list(self.order), "generator": self.generator.get_state(), "iteration": self.iteration}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.order, self.iteration = list(state["order"]), int(state["iteration"])
        self.generator.set_state(state["generator"])


class _UnlitOperator:
    """The unlit render of a texture ``[T, T, 3]`` or of vertex colours ``[V, 3]`` as a linear
    map ``A`` (bilinear lookups through the mip pyramid or barycentric interpolation, then
    antialiasing), with the products the closed forms need, over all views: ``A^T W y``,
    ``A^T W 1`` and ``A^T W A x`` (``y`` the premultiplied references, ``W`` their coverage),
    each a vector-Jacobian product of renders."""

    def __init__(self, mesh: Mesh, shape: Tuple[int, ...], cameras: Cameras, references: Tensor, rasterizer, chunk):
        self.mesh, self.cameras, self.references, self.rasterizer, self.chunk = (
            mesh,
            cameras,
            references,
            rasterizer,
            chunk,
        )
        zeros = torch.zeros(shape, device=mesh.device)
        if len(shape) == 3:  # a texture
            self.baked = unlit_material(zeros)
            self.baked.kd.min = self.baked.kd.max = None  # the map must stay linear: no clamping
            self.values = self.baked.kd.data
        else:
            self.baked = self.values = zeros

    def _adjoint(self, x: Tensor, weights) -> Tensor:
        """``sum over views of A^T weights(A x, y, W)``, shaped like ``x``."""
        with torch.no_grad():
            self.values.copy_(x.reshape(self.values.shape))
        self.values.requires_grad_(True)
        out = torch.zeros_like(self.values)
        for start in range(0, self.cameras.batch_size, self.chunk):
            ref = self.references[start : start + self.chunk]
            mask = (ref[..., 3:] > 0).to(ref.dtype)
            pred = render_unlit(self.mesh, self.baked, self.cameras[start : start + self.chunk], self.rasterizer)
            pred = pred[..., :3]
            out += torch.autograd.grad((pred * weights(pred.detach(), premultiplied(ref), mask)).sum(), self.values)[0]
        self.values.requires_grad_(False)
        return out.reshape(x.shape)

    def rhs(self, like: Tensor) -> Tensor:
        return self._adjoint(torch.zeros_like(like), lambda pred, y, w: y * w)

    def footprint(self, like: Tensor) -> Tensor:
        return self._adjoint(torch.zeros_like(like), lambda pred, y, w: w.expand_as(pred))

    def normal(self, x: Tensor) -> Tensor:
        return self._adjoint(x, lambda pred, y, w: pred * w)


def _closed_form(
    op: _UnlitOperator, like: Tensor, iterations: int, prior: Optional[Tensor] = None, prior_weight: float = 0.0
) -> Tuple[Tensor, Tensor, list]:
    """Footprint mean, refined by ``iterations`` of footprint-preconditioned CG on the normal
    equations ``(A^T W A + λ) x = A^T W y + λ prior``: ``(values like like, observed mask,
    relative residuals)``."""
    rhs, footprint = op.rhs(like), op.footprint(like)
    observed = footprint[..., 0] > 1e-8
    normal = op.normal
    if prior is not None and prior_weight > 0:
        rhs, footprint = rhs + prior_weight * prior.reshape(like.shape), footprint + prior_weight

        def normal(x: Tensor) -> Tensor:
            return op.normal(x) + prior_weight * x

    inverse = torch.where(footprint > 1e-8, 1.0 / footprint.clamp_min(1e-8), torch.zeros_like(footprint))
    x = rhs * inverse
    residuals = []
    if iterations > 0:
        r = rhs - normal(x)
        z = r * inverse
        p, rz = z.clone(), float((r * z).sum())
        norm = float(rhs.norm()) or 1.0
        for _ in range(iterations):
            ap = normal(p)
            alpha = rz / max(float((p * ap).sum()), 1e-30)
            x, r = x + alpha * p, r - alpha * ap
            residuals.append(float(r.norm()) / norm)
            z = r * inverse
            rz, rz_old = float((r * z).sum()), rz
            p = z + (rz / max(rz_old, 1e-30)) * p
    return x, observed, residuals


def closed_form_texture(
    mesh: Mesh,
    resolution: int,
    cameras: Cameras,
    references: Tensor,
    rasterizer,
    iterations: int = 0,
    chunk: int = 8,
    dilation: int = 16,
    prior: Optional[Tensor] = None,
    prior_weight: float = 0.0,
) -> Tuple[Tensor, Dict[str, object]]:
    """The per-texel optimum of the unlit texture over the views, ``[T, T, 3]`` in [0, 1].

    ``iterations = 0``: the footprint-weighted mean of each texel's observed radiance,
    ``A^T W y / A^T W 1``; it is the least-squares optimum when every pixel sees one texel, and a
    slightly blurred one when bilinear and mip lookups spread pixels over several. ``iterations
    > 0``: that mean refined by conjugate gradients on the normal equations ``A^T W A x = A^T W y``,
    preconditioned by the footprint, towards the exact least-squares optimum. Texels no view sees
    are filled from their neighbours. ``prior``, ``prior_weight``: as :func:`fit_unlit`'s.

    Returns:
        ``(texture, info)``; info holds the ``observed`` texel mask ``[T, T]`` and the relative
        residual of the normal equations per iteration.
    """
    like = torch.zeros(resolution, resolution, 3, device=mesh.device)
    op = _UnlitOperator(mesh, tuple(like.shape), cameras, references, rasterizer, chunk)
    x, observed, residuals = _closed_form(op, like, iterations, prior, prior_weight)
    texture = _dilate(x, observed, dilation).clamp(0.0, 1.0)
    return texture, {"observed": observed, "residuals": residuals}


def closed_form_vertex_colors(
    mesh: Mesh,
    cameras: Cameras,
    references: Tensor,
    rasterizer,
    iterations: int = 30,
    fallback: Optional[Tensor] = None,
    chunk: int = 8,
    prior_weight: float = 0.0,
) -> Tuple[Tensor, Dict[str, object]]:
    """The least-squares vertex colours ``[V, 3]`` in [0, 1] (footprint mean refined by CG, as
    :func:`closed_form_texture`); vertices no view sees keep ``fallback`` (default 0), which is
    also the prior that ``prior_weight`` pulls towards."""
    like = torch.zeros(mesh.num_vertices, 3, device=mesh.device)
    op = _UnlitOperator(mesh, tuple(like.shape), cameras, references, rasterizer, chunk)
    x, observed, residuals = _closed_form(op, like, iterations, fallback, prior_weight)
    if fallback is not None:
        x = torch.where(observed[:, None], x, fallback)
    return x.clamp(0.0, 1.0), {"observed": observed, "residuals": residuals}


# ---------------------------------------------------------------------------- metrics


def display(linear_rgb: Tensor) -> Tensor:
    """Linear RGB -> sRGB in [0, 1], what the metrics compare (as nvdiffrec's validation)."""
    return linear_to_srgb(linear_rgb.clamp(0.0, 1.0))


def image_scores(pred: Tensor, references: Tensor) -> Dict[str, float]:
    """Scores of premultiplied unlit renders ``pred [B, H, W, 4]`` (over black) against
    straight-alpha PBR ``references [B, H, W, 4]``, means over views:

    * ``psnr`` (dB), ``ssim``: whole images over black in sRGB, as nvdiffrec's validation;
    * ``psnr_linear``: whole images in linear radiance (clamped to [0, 1]), what the L2 fit minimises;
    * ``psnr_interior``: sRGB PSNR over the pixels both fully cover, the colour alone without
      the silhouette differences of a mesh baked onto another.
    """
    linear = premultiplied(references)
    a, b = display(pred[..., :3]), display(linear)
    inside = ((pred[..., 3:] >= 0.999) & (references[..., 3:] >= 0.999)).to(a.dtype)
    mse = (((a - b) ** 2) * inside).sum((1, 2, 3)) / (inside.sum((1, 2, 3)) * 3).clamp_min(1.0)
    return {
        "psnr": float(psnr(a, b).mean()),
        "ssim": float(ssim(a, b).mean()),
        "psnr_linear": float(psnr(pred[..., :3].clamp(0, 1), linear.clamp(0, 1)).mean()),
        "psnr_interior": float((-10.0 * torch.log10(mse.clamp_min(1e-10))).mean()),
    }


# ---------------------------------------------------------------------------- the bake


@dataclass
class BakeResult:
    """What :func:`bake_unlit` made: the target mesh (with UVs for textures), the bakes
    (``[T, T, 3]`` textures or ``[V, 3]`` vertex colours, linear), held-out scores, timings.

    ``kept`` names the bake :attr:`final` is: the better of the point sample and the optimised
    bake on the validation views (``selection`` holds their PSNRs), or "optimised" without any."""

    target: str
    mesh: Mesh
    point: Tensor
    optimised: Tensor
    closed_form: Optional[Tensor] = None
    least_squares: Optional[Tensor] = None
    scores: Dict[str, Dict[str, float]] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    losses: List[float] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)
    renders: Dict[str, Tensor] = field(default_factory=dict)
    kept: str = "optimised"
    selection: Optional[Dict[str, float]] = None

    @property
    def final(self) -> Tensor:
        return self.point if self.kept == "point_sampled" else self.optimised


def as_baked(target: str, values: Tensor):
    """Bake values as :func:`render_unlit` takes them: an unlit material (texture) or a copy (vertex colours)."""
    return unlit_material(values) if target == "texture" else values.clone()


def point_sample(
    source: Mesh,
    material: TexturedMaterial,
    light: EnvironmentLight,
    target_mesh: Optional[Mesh],
    target: str,
    rasterizer,
    texture_res: int = 256,
) -> Tuple[Mesh, Tensor]:
    """``(mesh, point)``: the mesh baked onto (``source`` when ``target_mesh`` is None, with its
    render frame) and the point-sampled bake (:func:`bake_unlit`'s arguments)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")
    same = target_mesh is None
    mesh = source if same else with_render_frame(target_mesh)
    if target == "texture":
        if same:  # every texel is its own surface point
            points, covered = uv_layout(mesh, texture_res, rasterizer)
        else:
            texel_points, covered = uv_layout(mesh, texture_res, rasterizer)
            query = texel_points.interpolate(mesh.v_pos, mesh.t_pos_idx)
            points, _ = closest_points(query, source.v_pos, source.t_pos_idx)
        values = torch.zeros(texture_res, texture_res, 3, device=source.device)
        values[covered] = shade_points(source, material, light, points, rasterizer)
        return mesh, _dilate(values, covered, 16).clamp(0.0, 1.0)
    points, _ = closest_points(mesh.v_pos, source.v_pos, source.t_pos_idx)
    return mesh, shade_points(source, material, light, points, rasterizer).clamp(0.0, 1.0)


def bake_unlit(
    source: Mesh,
    material: TexturedMaterial,
    light: EnvironmentLight,
    target_mesh: Optional[Mesh],
    target: str,
    cameras: Cameras,
    references: Tensor,
    held_out: Cameras,
    held_out_references: Tensor,
    rasterizer,
    texture_res: int = 256,
    steps: int = 200,
    lr: float = 0.02,
    batch: int = 8,
    loss: str = "l2",
    seed: int = 0,
    closed_form: bool = True,
    cg_iterations: int = 30,
    prior_weight: float = 0.0,
    validation: Optional[Tuple[Cameras, Tensor]] = None,
) -> BakeResult:
    """Point-sample, then optimise, an unlit bake of ``source`` with ``material`` under ``light``.

    Args:
        source: the PBR asset's mesh (with normals / tangents as :func:`with_render_frame` gives).
        target_mesh: the mesh to bake onto; None bakes onto ``source`` itself. For ``texture``
            it needs UVs (``v_tex``), for ``vertex`` none.
        target: ``"texture"`` or ``"vertex"``.
        cameras, references: training views and their PBR renders ``[B, H, W, 4]`` (straight alpha).
        held_out, held_out_references: the views the scores are measured on.
        closed_form: also compute the closed forms that check the optimiser: the least-squares
            optimum (``cg_iterations`` of CG on the normal equations) and, for a texture on the
            source itself, the footprint-weighted mean; and every bake's training-view PSNR.
        prior_weight: pull towards the point sample (see :func:`fit_unlit`), for the optimiser and
            the least-squares check alike.
        validation: ``(cameras, references)`` that choose between the point sample and the
            optimised bake (:func:`finish_bake`); None keeps the optimised one.
    """
    start = time.perf_counter()
    mesh, point = point_sample(source, material, light, target_mesh, target, rasterizer, texture_res)
    seconds = {"point_sample": time.perf_counter() - start}
    start = time.perf_counter()
    baked = as_baked(target, point)
    losses = fit_unlit(
        mesh, baked, cameras, references, rasterizer,
        steps=steps, lr=lr, batch=batch, loss=loss, seed=seed, prior=point, prior_weight=prior_weight,
    )  # fmt: skip
    optimised = (baked.kd.data[0] if target == "texture" else baked).detach().clone()
    seconds["optimise"] = time.perf_counter() - start
    result = BakeResult(target, mesh, point, optimised, seconds=seconds, losses=losses)
    return finish_bake(
        result, target_mesh is None, cameras, references, held_out, held_out_references, rasterizer, texture_res,
        batch, closed_form, cg_iterations, prior_weight, validation,
    )  # fmt: skip


def finish_bake(
    result: BakeResult,
    on_source: bool,
    cameras: Cameras,
    references: Tensor,
    held_out: Cameras,
    held_out_references: Tensor,
    rasterizer,
    texture_res: int,
    batch: int = 8,
    closed_form: bool = False,
    cg_iterations: int = 30,
    prior_weight: float = 0.0,
    validation: Optional[Tuple[Cameras, Tensor]] = None,
) -> BakeResult:
    """After the optimisation: the closed-form checks (``closed_form``, :func:`bake_unlit`), the
    held-out scores of every bake, and the bake kept: the better of the point sample and the
    optimised bake by sRGB PSNR on the ``validation`` views (ties keep the optimised one).

    The validation views are not the held-out views the report scores: choosing on those would
    make the reported score of the kept bake a maximum of two noisy estimates."""
    target, mesh, point, seconds = result.target, result.mesh, result.point, result.seconds
    if closed_form:
        start = time.perf_counter()
        if target == "texture":
            if on_source:  # the footprint mean is a per-texel optimum only on the source's own surface
                result.closed_form, _ = closed_form_texture(mesh, texture_res, cameras, references, rasterizer)
            result.least_squares, info = closed_form_texture(
                mesh,
                texture_res,
                cameras,
                references,
                rasterizer,
                iterations=cg_iterations,
                prior=point,
                prior_weight=prior_weight,
            )
        else:
            result.least_squares, info = closed_form_vertex_colors(
                mesh, cameras, references, rasterizer, cg_iterations, fallback=point, prior_weight=prior_weight
            )
        seconds["closed_form"] = time.perf_counter() - start
        result.info["cg_residuals"] = info["residuals"]
    start = time.perf_counter()
    with torch.no_grad():
        bakes = {"point_sampled": point, "optimised": result.optimised}
        if result.closed_form is not None:
            bakes["closed_form"] = result.closed_form
        if result.least_squares is not None:
            bakes["least_squares"] = result.least_squares
        for name, values in bakes.items():
            render = render_unlit(mesh, as_baked(target, values), held_out, rasterizer)
            result.scores[name] = image_scores(render, held_out_references)
            result.renders[name] = render
            if closed_form:  # the optimiser's check: does it reach the optimum of the views it fits?
                result.scores[name]["train_psnr"] = _batched_psnr(
                    mesh, as_baked(target, values), cameras, references, rasterizer, batch
                )
        if validation is not None:
            result.selection = {
                name: _batched_psnr(mesh, as_baked(target, bakes[name]), *validation, rasterizer, batch)
                for name in ("point_sampled", "optimised")
            }
            if result.selection["point_sampled"] > result.selection["optimised"]:
                result.kept = "point_sampled"
    seconds["evaluate"] = time.perf_counter() - start
    result.info["clipped_fraction"] = float((result.optimised >= 1.0).float().mean())
    return result


def _batched_psnr(mesh: Mesh, baked, cameras: Cameras, references: Tensor, rasterizer, batch: int) -> float:
    """sRGB PSNR (:func:`image_scores`) of ``baked`` over ``cameras``, rendered ``batch`` views at a time."""
    renders = torch.cat(
        [render_unlit(mesh, baked, cameras[i : i + batch], rasterizer) for i in range(0, cameras.batch_size, batch)]
    )
    return image_scores(renders, references)["psnr"]


def view_averaged_ceiling(
    source: Mesh,
    cameras: Cameras,
    references: Tensor,
    held_out: Cameras,
    held_out_references: Tensor,
    rasterizer,
    texture_res: int = 512,
    iterations: int = 30,
) -> Dict[str, float]:
    """Scores of the source's own view-averaged radiance (the closed-form texture over its UVs)
    against the PBR renders on held-out views: the view-dependent look any unlit bake loses."""
    texture, _ = closed_form_texture(source, texture_res, cameras, references, rasterizer, iterations=iterations)
    with torch.no_grad():
        render = render_unlit(source, unlit_material(texture), held_out, rasterizer)
    return image_scores(render, held_out_references)
