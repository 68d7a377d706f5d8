"""Pass-2 step time with and without the per-mesh topology cache (issue 28), in one run.

A pass-2 step is what ``ReconstructionSystem.training_step`` computes in the mesh stage: the
geometry (``MeshGeometry.mesh()``: smooth normals and MikkTSpace tangents), the render of a
batch, the image loss, the Laplacian regulariser, and the backward pass (the optimizer step
is left out: it does not depend on the cache). The system is built from a config's ``model``
section and enters pass 2 on Spot's mesh (its own UVs, which have seams) with textures at the
middle of their ranges, so pass 1 and the bake are not run; the targets are random images
(the step's cost does not depend on them). Three variants, timed alternately (median of each) so
that a changing machine load hits them alike: "before" runs the geometry code of the commit
before this work (``--base``: normals, tangents and Laplacian rebuilt from the faces every
step), "no cache" today's code with ``dmtrec.geometry.topology_cache(False)``, "after" today's
code (topology reused); ratio = before / after. "floor" is a step whose geometry costs nothing
at all (normals and tangents held from the first step), the bound on what any pass-2 geometry
speed-up can give ("max ratio" = before / floor). The antialias edge structure is reused in
all of them, as it was before. ``--subdivide N`` splits each triangle into 4, N times (Spot has
5,856 triangles; pass-2 meshes of the issue had 11,900 and 82,000).

    OMP_NUM_THREADS=1 python experiments/benchmarks/pass2_speed.py
    OMP_NUM_THREADS=1 python experiments/benchmarks/pass2_speed.py --configs quickstart --steps 20 --profile

``--before DIR`` instead times whole training steps (as ``training_step`` takes them: loss, backward,
Adam, the texture and light clamps, so the light's mips and the textures' pyramids are rebuilt
from changed values every step) of the code in DIR (e.g. ``git archive <commit> dmtrec | tar -x -C
DIR``) against this checkout's: each version builds the system in its own process and the two
take steps alternately, so that the machine's load hits them alike; process CPU time and wall
time per step, medians. Both must give the same loss at every step (checked: the steps are the
same computation).

    OMP_NUM_THREADS=1 python experiments/benchmarks/pass2_speed.py --before /tmp/before --steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
CODE = Path(sys.argv[sys.argv.index("--child") + 2]) if "--child" in sys.argv else REPO
sys.path.insert(0, str(CODE))  # a --child times the code it was given

from dmtrec.core.mesh import Mesh  # noqa: E402
from dmtrec.io.mesh_files import read_mesh  # noqa: E402
from dmtrec.render.camera import Cameras  # noqa: E402
from dmtrec.render.camera_distributions import orbit_view_c2w  # noqa: E402
from dmtrec.systems import pipeline  # noqa: E402
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


def _config_classes() -> dict:
    """The model sections' config classes of the code being timed, by section name."""
    return {
        "dmtet": pipeline.DMTetConfig,
        "material": pipeline.MaterialConfig,
        "light": pipeline.LightConfig,
        "optim": pipeline.OptimConfig,
        "mesh_pass": pipeline.MeshPassConfig,
    }


def build(config: str, mesh: Mesh) -> tuple:
    """The config's system in pass 2 on ``mesh``, and one training batch ``[B, H, W, .]``."""
    cfg = yaml.safe_load((REPO / "experiments" / "configs" / f"{config}.yaml").read_text())
    model = {k: v for k, v in cfg["model"].items() if k not in ("reference_mesh",)}
    for section, cls in _config_classes().items():  # older code (a --before child) lacks newer keys
        if isinstance(model.get(section), dict):
            known = {f.name for f in dataclasses.fields(cls)}
            model[section] = {k: v for k, v in model[section].items() if k in known}
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


render_mesh = importlib.import_module("dmtrec.render.render_mesh")  # the module (the package exports the function)

BASE = "d3d144c"
"""The commit before issue 28's pass-2 work: "before" runs its geometry code."""


def _base_module(name: str, path: str, rev: str):
    """``path`` as it was at ``rev``, imported as a module named ``name``."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True, capture_output=True, text=True)
    module = types.ModuleType(name)
    exec(compile(source.stdout, f"{rev}:{path}", "exec"), module.__dict__)
    return module


@contextlib.contextmanager
def base_geometry(rev: str):
    """Pass 2's geometry code of ``rev``: normals, tangents and the Laplacian rebuilt from the
    faces every step, gathers by advanced indexing, index tensors converted every render (the
    antialias edge structure was cached there too, and stays cached)."""
    from dmtrec.geometry import mesh_geometry, topology_cache

    normals = _base_module("base_normals", "dmtrec/geometry/normals.py", rev)
    regularizers = _base_module("base_regularizers", "dmtrec/geometry/regularizers.py", rev)
    patches = [
        (mesh_geometry, "compute_normals", normals.compute_normals),
        (mesh_geometry, "compute_tangents", normals.compute_tangents),
        (render_mesh, "face_normals", normals.face_normals),
        (render_mesh, "_int32", lambda index: index.int()),
        (pipeline, "laplacian_loss", regularizers.laplacian_loss),
    ]
    saved = [(module, attr, getattr(module, attr)) for module, attr, _ in patches]
    try:
        for module, attr, value in patches:
            setattr(module, attr, value)
        with topology_cache(False):
            yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


def training_step(system: ReconstructionSystem, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    """One training step as ``ReconstructionSystem.training_step`` takes it, without Lightning;
    returns its loss."""
    terms, _ = system.loss_terms(batch)
    total = torch.stack(list(terms.values())).sum()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    with torch.no_grad():
        system.material.clamp_()
        if system.light_trainable:
            system.light.clamp_(min=0.0)
    return float(total.detach())


def child_main(spec: dict) -> None:
    """Build the system on the mesh, then answer each "step" line on stdin with the step's loss,
    process CPU seconds and wall seconds."""
    torch.manual_seed(0)
    mesh = subdivide(read_mesh(spec["mesh"])[0], spec["subdivide"])
    system, batch = build(spec["config"], mesh)
    optimizer = system._make_optimizer()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        torch.manual_seed(1)  # the smoothness jitter: the same draw in both versions
        cpu, wall = time.process_time(), time.perf_counter()
        loss = training_step(system, optimizer, batch)
        print(f"{loss!r} {time.process_time() - cpu} {time.perf_counter() - wall}", flush=True)


def compare_versions(args: argparse.Namespace) -> None:
    """--before: whole training steps of two code versions, alternately, in two processes."""
    versions = {"before": args.before.resolve(), "after": REPO}
    print(
        f"whole training steps, {args.steps} per version after 3 warm-up, alternating; torch threads "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'config':<12} {'before ms':>10} {'after ms':>9} {'ratio':>6}   (process CPU; wall: before / after ms)")
    for config in args.configs:
        procs = {}
        for name, code in versions.items():
            spec = {"config": config, "mesh": args.mesh, "subdivide": args.subdivide}
            cmd = [sys.executable, __file__, "--child", json.dumps(spec), str(code)]
            env = dict(os.environ, PYTHONPATH=str(code))
            procs[name] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            if procs[name].stdout.readline().strip() != "ready":
                raise SystemExit(f"pass2_speed: the {name} process ({code}) did not start")
        times = {name: [] for name in versions}
        for i in range(3 + args.steps):
            losses = {}
            for name, proc in procs.items():
                proc.stdin.write("step\n")
                proc.stdin.flush()
                loss, cpu, wall = proc.stdout.readline().split()
                losses[name] = loss
                if i >= 3:
                    times[name].append((float(cpu), float(wall)))
            if len(set(losses.values())) != 1:
                print(f"  step {i}: the versions' losses differ: {losses}")
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
        cpu = {name: statistics.median(t[0] for t in ts) * 1e3 for name, ts in times.items()}
        wall = {name: statistics.median(t[1] for t in ts) * 1e3 for name, ts in times.items()}
        print(
            f"{config:<12} {cpu['before']:>10.1f} {cpu['after']:>9.1f} {cpu['before'] / cpu['after']:>6.2f}"
            f"   (wall {wall['before']:.1f} / {wall['after']:.1f}, ratio {wall['before'] / wall['after']:.2f})"
        )
    print(f"load after: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["quickstart", "spot_cpu"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--mesh", default=str(REPO / "data" / "meshes" / "spot" / "spot.obj"))
    parser.add_argument("--subdivide", type=int, default=0, help="split each triangle into 4 this many times")
    parser.add_argument("--base", default=BASE, help="the commit whose geometry code 'before' runs")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table of one step per variant")
    parser.add_argument(
        "--before", type=Path, help="time whole training steps of the code in this folder against this one"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.before:
        compare_versions(args)
        return
    from dmtrec.geometry import topology_cache  # not in code before issue 28, which a --child may time

    mesh = subdivide(read_mesh(args.mesh)[0], args.subdivide)
    print(
        f"mesh: {args.mesh} ({mesh.num_faces} triangles), torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f}"
    )
    variants = {
        "before": lambda: base_geometry(args.base),
        "no cache": lambda: topology_cache(False),
        "after": contextlib.nullcontext,
    }
    print(
        f"{'config':<12} {'res':>9} {'batch':>5} "
        + " ".join(f"{name + ' ms':>11}" for name in variants)
        + f" {'ratio':>6} {'floor ms':>9} {'max ratio':>9}"
    )
    for config in args.configs:
        system, batch = build(config, mesh)
        times = {name: [] for name in variants}
        for variant in variants.values():  # warm-up (and the cache's one build)
            with variant():
                step(system, batch), step(system, batch)
        for _ in range(args.steps):
            for name, variant in variants.items():
                with variant():
                    times[name].append(step(system, batch))
        floor = _geometry_free(system, batch, args.steps)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        res = "x".join(str(s) for s in batch["img"].shape[1:3])
        print(
            f"{config:<12} {res:>9} {batch['img'].shape[0]:>5} "
            + " ".join(f"{value:>11.1f}" for value in ms.values())
            + f" {ms['before'] / ms['after']:>6.2f} {floor:>9.1f} {ms['before'] / floor:>9.2f}"
        )
        if args.profile:
            for name, variant in variants.items():
                with variant(), torch.profiler.profile() as prof:
                    step(system, batch)
                print(f"--- {config}, {name}")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
