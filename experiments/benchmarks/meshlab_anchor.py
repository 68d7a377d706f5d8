"""MeshLab's texture-preserving quadric edge collapse as the lod benchmark's anchor.

``pymeshlab``'s ``meshing_decimation_quadric_edge_collapse_with_texture`` (Garland & Heckbert
with the UV coordinates in the quadric; extra ``benchmark``) decimates the original OBJ to a
triangle budget and keeps its per-wedge UVs, so the original's textures apply unchanged: the
decimator artists already use. It runs here in a time-limited child process
(:func:`dmtrec.core.child_process.run_python`), because it can hang on meshes whose seam vertices
are duplicated. A pass may stop above the target when every remaining collapse would fold a face
or cross a seam badly; passes repeat (at most :data:`PASSES`) until the count is within the budget
or stops falling.

The result is read back with dmtrec's own OBJ reader (the same UV convention as the original's)
and rendered with the original's material by the benchmark's renderer.

    python experiments/benchmarks/meshlab_anchor.py IN.obj OUT.obj TARGET   # the child's side
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.core.child_process import ChildRunError, run_python  # noqa: E402
from dmtrec.core.mesh import Mesh  # noqa: E402
from dmtrec.io.obj import read_obj  # noqa: E402

PASSES = 6
TIMEOUT_S = 300.0


class MeshlabError(ChildRunError):
    """MeshLab's decimation timed out, crashed, failed or was not installed."""


def meshlab_decimate(obj_path, target: int, timeout_s: float = TIMEOUT_S) -> tuple[Mesh, dict]:
    """``obj_path`` (an OBJ with UVs) decimated by MeshLab to at most about ``target`` triangles.

    Returns the mesh (positions, per-wedge UVs; read by :func:`dmtrec.io.obj.read_obj`) and
    ``{"triangles": ..., "passes": [count after each pass]}``. Raises :class:`MeshlabError`.
    """
    with tempfile.TemporaryDirectory(prefix="dmtrec_meshlab_") as folder:
        out = Path(folder) / "decimated.obj"
        proc = run_python(
            Path(__file__), [Path(obj_path).resolve(), out, int(target)], timeout_s, "MeshLab", MeshlabError
        )
        info = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        mesh, _ = read_obj(out)
    if mesh.v_tex is None:
        raise MeshlabError("MeshLab's result has no UVs")
    info["triangles"] = int(mesh.num_faces)
    return mesh, info


def _child(src: str, dst: str, target: int) -> None:
    import pymeshlab  # lazy: optional dependency (extra "benchmark")

    ms = pymeshlab.MeshSet()
    ms.load_new_mesh(src)
    if not ms.current_mesh().has_wedge_tex_coord():
        raise SystemExit(f"{src}: no per-wedge UVs (texture coordinates) for MeshLab")
    counts = []
    for _ in range(PASSES):
        before = ms.current_mesh().face_number()
        ms.meshing_decimation_quadric_edge_collapse_with_texture(targetfacenum=target)
        counts.append(ms.current_mesh().face_number())
        if counts[-1] <= target or counts[-1] >= before:
            break
    ms.save_current_mesh(
        dst, save_wedge_texcoord=True, save_vertex_normal=False, save_wedge_normal=False, save_textures=False
    )
    # The geometry only: the caller renders with the original's material, and MeshLab's MTL names
    # textures it did not write.
    lines = Path(dst).read_text().splitlines()
    Path(dst).write_text("\n".join(line for line in lines if not line.startswith(("mtllib", "usemtl"))) + "\n")
    print(json.dumps({"passes": counts}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
