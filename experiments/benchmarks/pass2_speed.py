"""Pass-2 step time with and without the per-mesh topology cache (issue 28), in one run.

A pass-2 step is what ``ReconstructionSystem.training_step`` computes in the mesh stage: the
geometry (``MeshGeometry.mesh()``: smooth normals and MikkTSpace tangents), the render of a
batch, the image loss, the Laplacian regulariser, and the backward pass (the optimizer step
is left out: it does not depend on the cache). The system is built from a config's ``model``
section and enters pass 2 on Spot's mesh (its own UVs, which have seams) with textures at the
middle of their ranges, so pass 1 and the bake are not run; the targets are random images
(the step's cost does not depend on them). "before" rebuilds everything that depends only on
the faces every step (``dmtrec.geometry.topology_cache(False)``), "after" reuses it; the two are
timed alternately (median of each) so that a changing machine load hits both alike. "floor" is
a step whose geometry costs nothing at all (normals and tangents held from the first step), the
bound on what any pass-2 geometry speed-up can give ("max ratio" = before / floor). The
antialias edge structure is reused in all three, as it was before issue 28.

    OMP_NUM_THREADS=1 python experiments/benchmarks/pass2_speed.py
    OMP_NUM_THREADS=1 python experiments/benchmarks/pass2_speed.py --configs quickstart --steps 20 --profile
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.core.mesh import Mesh  # noqa: E402
from dmtrec.geometry import topology_cache  # noqa: E402
from dmtrec.io.mesh_files import read_mesh  # noqa: E402
from dmtrec.render.camera import Cameras  # noqa: E402
from dmtrec.render.camera_distributions import orbit_view_c2w  # noqa: E402
from dmtrec.systems.pipeline import ReconstructionSystem  # noqa: E402


def _split_edges(values: torch.Tensor, faces: torch.Tensor) -> tuple:
    """Midpoint subdivision of one attribute: ``(values with edge midpoints appended, [4F, 3] faces)``."""
    corners = [faces[:, k] for k in range(3)]
    lo = torch.stack([torch.minimum(corners[k], corners[(k + 1) % 3]) for k in range(3)], 1)
    hi = torch.stack([torch.maximum(corners[k], corners[(k + 1) % 3]) for k in range(3)], 1)
    keys, edge = torch.unique(lo * values.shape[0] + hi, return_inverse=True)
    a, b = keys // values.shape[0], keys % values.shape[0]
    mid = edge + values.shape[0]  # [F, 3]: midpoint of edge (k, k+1)
    out = torch.cat([values, 0.5 * (values[a] + values[b])])
    m01, m12, m20 = mid[:, 0], mid[:, 1], mid[:, 2]
    new = torch.cat(
        [
            torch.stack([corners[0], m01, m20], 1),
            torch.stack([m01, corners[1], m12], 1),
            torch.stack([m20, m12, corners[2]], 1),
            torch.stack([m01, m12, m20], 1),
        ]
    )
    return out, new


def subdivide(mesh: Mesh, times: int) -> Mesh:
    """``mesh`` with every triangle split into 4, ``times`` times (positions and UVs alike, so
    the UV seams stay where they were)."""
    for _ in range(times):
        v_pos, t_pos = _split_edges(mesh.v_pos, mesh.t_pos_idx)
        v_tex, t_tex = _split_edges(mesh.v_tex, mesh.t_tex_idx)
        mesh = Mesh(v_pos=v_pos, t_pos_idx=t_pos, v_tex=v_tex, t_tex_idx=t_tex)
    return mesh


def build(config: str, mesh: Mesh) -> tuple:
    """The config's system in pass 2 on ``mesh``, and one training batch ``[B, H, W, .]``."""
    cfg = yaml.safe_load((REPO / "experiments" / "configs" / f"{config}.yaml").read_text())
    model = {k: v for k, v in cfg["model"].items() if k not in ("reference_mesh",)}
    system = ReconstructionSystem(**model)
    system._enter_mesh_stage(mesh, system.material_cfg.complete_textures({}))
    batch_size, (height, width) = cfg["data"]["batch_size"], cfg["data"]["resolution"]
    c2w = orbit_view_c2w(batch_size, 2.5)
    cams = Cameras.from_fov(c2w, math.radians(45.0), (height, width))
    generator = torch.Generator().manual_seed(0)
    batch = {
        "c2w": cams.c2w,
        "proj": cams.proj,
        "img": torch.rand(batch_size, height, width, 4, generator=generator),
        "background": torch.rand(batch_size, height, width, 3, generator=generator),
    }
    return system, batch


def step(system: ReconstructionSystem, batch: dict) -> float:
    """Seconds of one forward + backward of the pass-2 loss."""
    start = time.perf_counter()
    terms, _ = system.loss_terms(batch)
    sum(terms.values()).backward()
    elapsed = time.perf_counter() - start
    for p in system.parameters():
        p.grad = None
    return elapsed


def _geometry_free(system: ReconstructionSystem, batch: dict, steps: int) -> float:
    """Median ms of a step whose geometry costs nothing (normals and tangents computed once and
    held, positions still learning through the render): the floor that no pass-2 geometry
    speed-up can go below."""
    held = system.geometry.mesh()
    held = held.copy(v_pos=system.geometry.v_pos, v_nrm=held.v_nrm.detach(), v_tng=held.v_tng.detach())
    system.geometry.mesh = lambda: held
    try:
        step(system, batch)
        return statistics.median(step(system, batch) for _ in range(steps)) * 1e3
    finally:
        del system.geometry.mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["quickstart", "spot_cpu"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--mesh", default=str(REPO / "data" / "meshes" / "spot" / "spot.obj"))
    parser.add_argument("--subdivide", type=int, default=0, help="split each triangle into 4 this many times")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table of one step per variant")
    args = parser.parse_args()
    mesh = subdivide(read_mesh(args.mesh)[0], args.subdivide)
    print(
        f"mesh: {args.mesh} ({mesh.num_faces} triangles), torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'config':<12} {'res':>9} {'batch':>5} {'before ms':>10} {'after ms':>10} {'ratio':>6}"
        f" {'floor ms':>9} {'max ratio':>9}"
    )
    for config in args.configs:
        system, batch = build(config, mesh)
        times = {False: [], True: []}
        for cached in (False, True):  # warm-up (and the cache's one build)
            with topology_cache(cached):
                step(system, batch), step(system, batch)
        for _ in range(args.steps):
            for cached in (False, True):
                with topology_cache(cached):
                    times[cached].append(step(system, batch))
        floor = _geometry_free(system, batch, args.steps)
        before, after = (statistics.median(times[c]) * 1e3 for c in (False, True))
        res = "x".join(str(s) for s in batch["img"].shape[1:3])
        print(
            f"{config:<12} {res:>9} {batch['img'].shape[0]:>5} {before:>10.1f} {after:>10.1f} {before / after:>6.2f}"
            f" {floor:>9.1f} {before / floor:>9.2f}"
        )
        if args.profile:
            for cached in (False, True):
                with topology_cache(cached), torch.profiler.profile() as prof:
                    step(system, batch)
                print(f"--- {config}, cache {'on' if cached else 'off'}")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
