"""Where a level's held-out error is: its outlines against its interior, and the judge's own sampling.

For the torus at 5 % (the level ``dmtrec lod`` starts from: QEM, xatlas, transferred textures) and
MeshLab's texture-preserving decimation at the same budget, on the benchmark's held-out views
(same seed, resolution and 2 x 2 samples as ``lod.py``'s judge, which this leaves as it is):

* the share of the squared sRGB error within a pixel of either outline (partly covered in either
  image, or covered in one only, grown by one pixel), and the PSNR with that band or the interior
  made perfect;
* the PSNR of level and reference both rendered with 8 x 8 samples (a converged comparison);
* the original itself against the reference: with 8 x 8 samples, and with the camera moved
  sideways by a fraction of a pixel (how much the judge rewards sub-pixel alignment).

    python experiments/benchmarks/lod_error_map.py              # torus at 5 %, about 3 CPU minutes
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.assets.lod import LodScene, LodSettings, decimate, level_resolution, load_lod_inputs  # noqa: E402
from dmtrec.assets.lod_transfer import transfer_textures  # noqa: E402
from dmtrec.assets.procedural import write_procedural_asset  # noqa: E402
from dmtrec.assets.views import fit_radius  # noqa: E402
from dmtrec.geometry.uv_unwrap import uv_unwrap  # noqa: E402
from dmtrec.io.image import linear_to_srgb  # noqa: E402
from dmtrec.render.camera import Cameras  # noqa: E402
from dmtrec.render.material import TexturedMaterial  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.render.render_mesh import render_mesh  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meshlab_anchor import MeshlabError, meshlab_decimate  # noqa: E402

PROBE = REPO / "data" / "envmaps" / "mud_road_puresky_1k.hdr"


def _db(mse: torch.Tensor) -> float:
    return float(-10.0 * torch.log10(mse))


def _srgb_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` squared sRGB error of two renders over white (colour channels averaged)."""
    return ((linear_to_srgb(a[..., :3].clamp(0, 1)) - linear_to_srgb(b[..., :3].clamp(0, 1))) ** 2).mean(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--out", default="outputs/bench_lod_error_map")
    parser.add_argument("--no-meshlab", dest="meshlab", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = LodSettings()
    path = write_procedural_asset(Path(args.out) / "torus_asset")
    mesh, material, light, _, _ = load_lod_inputs(path, PROBE, settings)
    rasterizer = get_rasterizer("auto", mesh.device)
    scene = LodScene(mesh, material, light, rasterizer, settings)
    budget = int(math.floor(args.fraction * mesh.num_faces))
    res = level_resolution(args.fraction, settings, 0)
    cams, _ = scene.views(res)["heldout"]
    white = torch.ones(cams.batch_size, res, res, 3)

    def render(m, mat, spp=settings.spp, cameras=cams):
        with torch.no_grad():
            return render_mesh(m, mat, light, cameras, rasterizer, background=white, spp=spp, smoothness=False)[
                "shaded"
            ]

    ref, ref8 = render(mesh, material), render(mesh, material, 8)
    start = uv_unwrap(decimate(mesh, budget), texture_res=settings.texture_res).mesh
    textures = transfer_textures(mesh, material, start, settings.texture_res, rasterizer)
    levels = {"start": (start, TexturedMaterial.from_tensors(**textures))}
    if args.meshlab:
        try:
            levels["MeshLab"] = (meshlab_decimate(path, budget)[0], material)
        except MeshlabError as exc:
            print(f"MeshLab: {exc}")
    print(f"torus {args.fraction:.0%}: {budget} triangles at {res} px, {cams.batch_size} held-out views")
    for name, (level, level_material) in levels.items():
        pred = render(level, level_material)
        err = _srgb_error(pred, ref)
        ra, pa = ref[..., 3], pred[..., 3]
        edge = ((ra > 0) & (ra < 1)) | ((pa > 0) & (pa < 1)) | ((ra > 0.5) != (pa > 0.5))
        edge = torch.nn.functional.max_pool2d(edge.float()[:, None], 3, 1, 1)[:, 0] > 0
        inside = (ra >= 1) & ~edge
        print(
            f"{name}: PSNR {_db(err.mean()):.2f} dB; outline band {int(edge.sum())} px holds "
            f"{float(err[edge].sum() / err.sum()):.1%} of the squared error ({int(inside.sum())} px inside); "
            f"perfect interior {_db((err * ~inside).mean()):.2f} dB, perfect band {_db((err * ~edge).mean()):.2f} dB; "
            f"both at 8 x 8 samples {_db(_srgb_error(render(level, level_material, 8), ref8).mean()):.2f} dB"
        )
    print(f"original at 8 x 8 samples against the reference: {_db(_srgb_error(ref8, ref).mean()):.2f} dB")
    pixel = 2 * fit_radius(mesh, settings.fovy) * math.tan(math.radians(settings.fovy) / 2) / res
    for shift in (0.1, 0.25, 0.5):
        c2w = cams.c2w.clone()
        c2w[:, :3, 3] += shift * pixel * c2w[:, :3, 0]
        moved = render(mesh, material, cameras=Cameras(c2w, cams.proj, cams.resolution))
        print(f"original, camera moved {shift} px sideways: {_db(_srgb_error(moved, ref).mean()):.2f} dB")


if __name__ == "__main__":
    main()
