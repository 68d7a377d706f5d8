"""Shader cross-render: a ``dmtrec bake --shader`` output rendered by its exported GLSL in three.js
and by dmtrec's torch shading model, from the same cameras; PSNR per view and per model.

Both sides read the bake folder only: ``mesh.obj``, ``material.json`` (constants, texture files
and encodings, the probe's main light and ambient SH), the texture PNGs and ``<model>.glsl``.

* three.js (``shader_page.js`` in headless Chromium): a ``ShaderMaterial`` whose fragment shader
  is the exported GLSL file's text unchanged, followed by ``void main() { gl_FragColor =
  vec4(shade(), 1.0); }``; a vertex shader that fills the GLSL's varyings (world position and
  normal, UVs, vertex colour); the textures as the engine would load them (sRGB PNGs decoded
  by the GPU, mipmaps, repeat wrap; look-up tables bilinear, clamped); the uniforms from
  ``material.json``. Linear float pixels come back from a render target.
* dmtrec: the same PNGs read back (sRGB decoded, times their ``scale``) into a
  :class:`~dmtrec.render.shaders.ShaderMaterial` of the model, ``render_mesh(shader=model)``
  under the bake's probe (``--probe-res`` must be the bake's: the main light and SH derived
  from it are checked against ``material.json``).

``--language hlsl`` renders the HLSL twin instead (the bake folder's ``<model>.hlsl``, or the
package's twin as ``dmtrec.render.shaders.export.write_twins`` writes it): compiled to SPIR-V by
``glslangValidator -D`` (Debian ``glslang-tools``) and translated to GLSL ES 3.00 by
``spirv-cross``; the only edits are mechanical (:func:`plain_uniforms`): the ``$Globals``
uniform block becomes plain uniforms of the same names, the combined samplers take the
texture's name, highp floats. ``uWorldToView`` is then set from the rows an engine uploads for
the HLSL's ``row_major float3x3`` (the camera's axes), which checks that documented layout.

With ``--vertex-colors`` (default for ``lambert_vc``) both get the same smooth per-vertex
colours, so that the vertex colour input is exercised. Cameras: ``--views`` views of the
sphere around the mesh (``dmtrec bake``'s held-out distribution with ``--seed``).

    python experiments/crossrender/shaders.py outputs/spot_toon [outputs/spot_matcap ...] --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import HERE, Captures, compare_renders, dmtrec_cameras, find_chromium, float_rgba, page_files, run_page  # noqa: E402,I001

from dmtrec.assets.unlit_bake import with_render_frame  # noqa: E402
from dmtrec.assets.views import view_cameras  # noqa: E402
from dmtrec.commands.view import camera_json, find_three, serve_in_background, static_server  # noqa: E402
from dmtrec.datasets.reference_mesh import load_probe  # noqa: E402
from dmtrec.io.image import read_image, srgb_to_linear  # noqa: E402
from dmtrec.io.obj import read_obj  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.render.render_mesh import render_mesh  # noqa: E402
from dmtrec.render.shaders import ShaderMaterial, load_shader  # noqa: E402
from dmtrec.render.shaders.export import twin_sources  # noqa: E402
from dmtrec.render.shaders.sh import probe_lighting  # noqa: E402

REPO = HERE.parents[1]
LIGHT_TOLERANCE = 1e-4


def read_bake(folder: Path):
    """``(model, values, document)``: the shading model, its values by name (``[H, W, C]`` linear
    textures and tables as the PNGs hold them, ``[C]`` constants) and ``material.json``."""
    document = json.loads((folder / "material.json").read_text())
    kwargs = {"bands": len(document["constants"]["levels"])} if document["model"] == "toon" else {}
    model = load_shader(document["model"], **kwargs)
    values = {name: torch.tensor(value) for name, value in document["constants"].items()}
    for name, texture in document["textures"].items():
        image = torch.from_numpy(read_image(folder / texture["file"]))
        image = srgb_to_linear(image) if texture["encoding"] == "srgb" else image
        channels = next(p.channels for p in model.params if p.name == name)
        values[name] = image[..., :channels] * texture["scale"]
    return model, values, document


def vertex_colors(v_pos: torch.Tensor) -> torch.Tensor:
    """``[V, 3]`` smooth colours in [0.35, 1] of positions ``[V, 3]`` (their normalised coordinates)."""
    low, high = v_pos.min(0).values, v_pos.max(0).values
    return 0.35 + 0.65 * (v_pos - low) / (high - low).clamp_min(1e-9)


def corner_buffer(mesh, colors: torch.Tensor) -> bytes:
    """Float32 ``[F * 3, 11]`` per triangle corner: position, normal, uv (OBJ convention), colour."""
    parts = [
        mesh.v_pos[mesh.t_pos_idx],
        mesh.v_nrm[mesh.t_nrm_idx],
        mesh.v_tex[mesh.t_tex_idx],
        colors[mesh.t_pos_idx],
    ]
    return torch.cat(parts, -1).reshape(-1, 11).float().numpy().astype(np.float32).tobytes()


HLSL_MAIN = "\nfloat4 main(DmtrecFragment f) : SV_Target { return float4(shade(f), 1.0); }\n"


def hlsl_to_glsl(hlsl: str) -> str:
    """GLSL ES 3.00 of an HLSL twin (with an entry point appended): glslangValidator, spirv-cross,
    :func:`plain_uniforms`."""
    with tempfile.TemporaryDirectory() as tmp:
        source, spirv = Path(tmp) / "shader.hlsl", Path(tmp) / "shader.spv"
        source.write_text(hlsl + HLSL_MAIN)
        for command in (
            ["glslangValidator", "-D", "-S", "frag", "-e", "main", "-V", "-o", str(spirv), str(source)],
            ["spirv-cross", str(spirv), "--version", "300", "--es", "--output", str(Path(tmp) / "shader.frag")],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if done.returncode:
                raise SystemExit(f"{command[0]} failed: {(done.stdout + done.stderr).strip()[-2000:]}")
        return plain_uniforms((Path(tmp) / "shader.frag").read_text())


def plain_uniforms(glsl: str) -> str:
    """spirv-cross's GLSL with its uniform block as plain uniforms (three.js sets those by name),
    ``SPIRV_Cross_Combined<tex><tex>_sampler`` as ``<tex>``, no ``#version`` line, highp floats."""
    block = re.search(r"layout\(std140\) uniform \w+\s*\{(.*?)\}\s*(\w+);", glsl, re.S)
    if block:
        members = [line.strip() for line in block.group(1).splitlines() if line.strip()]
        uniforms = "\n".join(f"uniform {member}" for member in members)
        glsl = glsl[: block.start()] + uniforms + glsl[block.end() :]
        glsl = glsl.replace(f"{block.group(2)}.", "")
    glsl = re.sub(r"SPIRV_Cross_Combined(\w+?)\1_sampler", r"\1", glsl)
    glsl = glsl.replace("precision mediump float;", "precision highp float;")
    return re.sub(r"^#version .*\n", "", glsl)


def check_light(document: dict, light) -> float:
    """Largest difference between ``material.json``'s light and the one dmtrec derives from ``light``."""
    lighting = probe_lighting(light)
    pairs = [(lighting.main_dir, "main_dir"), (lighting.main_color, "main_color"), (lighting.ambient_sh, "ambient_sh")]
    return max(float((t - torch.tensor(document["light"][k])).abs().max()) for t, k in pairs)


def render_torch(model, values, mesh, light, cameras, colors) -> torch.Tensor:
    """``[B, H, W, 4]`` premultiplied linear renders of the model by dmtrec (over black)."""
    material = ShaderMaterial(model, dict(values), texture_res=1)
    rasterizer = get_rasterizer("torch", "cpu")
    with torch.no_grad():
        return torch.cat(
            [
                render_mesh(mesh, material, light, cameras[i], rasterizer, shader=model, vertex_color=colors)["shaded"]
                for i in range(cameras.batch_size)
            ]
        )


def capture(folder: Path, scene: dict, corners: bytes, chromium: str, timeout: float, translated=None) -> list:
    """``[H, W, 4]`` linear float renders of three.js, one per camera of ``scene``; ``translated``:
    the GLSL ES 3.00 of an HLSL twin (:func:`hlsl_to_glsl`) to render instead of the GLSL twin."""
    captures = Captures()
    files = {**page_files("shader_page.js"), "/scene.json": json.dumps(scene).encode(), "/mesh.bin": corners}
    if translated is not None:
        files["/translated.frag"] = translated.encode()
    server = static_server("127.0.0.1", 0, files, {"/three/": find_three(), "/asset/": folder}, captures)
    serve_in_background(server)
    try:
        run_page(f"http://127.0.0.1:{server.server_address[1]}/", captures, chromium, timeout)
    finally:
        server.shutdown()
    return [float_rgba(captures.posts[str(i)], cam["height"], cam["width"]) for i, cam in enumerate(scene["cameras"])]


def cross_render(folder: Path, out: Path, args) -> dict:
    model, values, document = read_bake(folder)
    report = json.loads((folder / "report.json").read_text())
    mesh, _ = read_obj(folder / "mesh.obj")
    mesh = with_render_frame(mesh)
    probe = Path(report["probe"])
    light = load_probe(probe if probe.is_absolute() or probe.is_file() else REPO / probe, args.probe_res)
    light_error = check_light(document, light)
    if light_error > LIGHT_TOLERANCE:
        raise SystemExit(
            f"{folder}: material.json's light is {light_error:.2g} off the probe's (pass the bake's --probe-res)"
        )
    use_colors = args.vertex_colors if args.vertex_colors is not None else model.name == "lambert_vc"
    colors = vertex_colors(mesh.v_pos) if use_colors else torch.ones_like(mesh.v_pos)
    cameras = view_cameras("sphere", args.views, mesh, args.fovy, args.res, args.seed)
    records = [
        camera_json(cameras.c2w[i].numpy(), cameras.proj[i].numpy(), (args.res, args.res))
        for i in range(cameras.batch_size)
    ]
    for record, c2w in zip(records, cameras.c2w):
        record["world_to_view_column_major"] = c2w[:3, :3].reshape(-1).tolist()  # (R^T) column-major = R row-major
        record["world_to_view_rows"] = c2w[:3, :3].T.reshape(-1).tolist()  # rows of R^T: the camera's axes
    scene = {
        "glsl": document["glsl"],
        "textures": document["textures"],
        "constants": document["constants"],
        "light": document["light"],
        "use_vertex_color": bool(use_colors) and model.name == "unlit",
        "cameras": records,
        "translated": args.language == "hlsl",
    }
    translated = None
    if args.language == "hlsl":
        exported = folder / f"{model.name}.hlsl"
        translated = hlsl_to_glsl(exported.read_text() if exported.is_file() else twin_sources(model)["hlsl"])
        (out / model.name).mkdir(parents=True, exist_ok=True)
        (out / model.name / "translated.frag").write_text(translated)
    start = time.time()
    three = torch.stack(capture(folder, scene, corner_buffer(mesh, colors), args.chromium, args.timeout, translated))
    seconds = time.time() - start
    ours = render_torch(model, values, mesh, light, dmtrec_cameras(records), colors if use_colors else None)
    scores = compare_renders(three, ours, out / model.name, args.diff_gain)
    return {
        "model": model.name,
        "language": args.language,
        "bake": str(folder),
        "vertex_colors": bool(use_colors),
        "light_max_diff": light_error,
        **scores,
        "three_capture_s": round(seconds, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bakes", type=Path, nargs="+", help="output folders of `dmtrec bake --shader NAME`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--res", type=int, default=192)
    parser.add_argument("--fovy", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=1, help="view seed (the bake's held-out views: its --seed + 1)")
    parser.add_argument("--probe-res", type=int, default=128, help="the bake's --probe-res")
    parser.add_argument(
        "--vertex-colors", action=argparse.BooleanOptionalAction, default=None, help="default: lambert_vc only"
    )
    parser.add_argument("--language", choices=("glsl", "hlsl"), default="glsl", help="which twin three.js renders")
    parser.add_argument("--diff-gain", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--chromium", default=find_chromium() or "chromium")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = [cross_render(folder, args.out, args) for folder in args.bakes]
    summary = {"rows": rows, "threads": torch.get_num_threads(), "loadavg": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shaders.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("| model | mean PSNR | mean SSIM | PSNR over object pixels | PSNR interior | worst view |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['model']} | {row['mean_psnr']:.1f} dB | {row['mean_ssim']:.4f} | "
            f"{row['mean_psnr_covered']:.1f} dB | {row['mean_psnr_interior']:.1f} dB | {min(row['psnr']):.1f} dB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
