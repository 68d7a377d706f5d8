"""``dmtrec view``: the server hands the page, the run's files and the cameras; cameras round-trip."""

import json
import math
import urllib.error
import urllib.request

import pytest
import torch

from dmtrec.commands.view import camera_json, find_three, make_server, serve_in_background
from dmtrec.geometry import Mesh
from dmtrec.render.camera import Cameras, look_at
from dmtrec.render.light import EnvironmentLight
from dmtrec.runs.outputs import write_outputs


def test_camera_json_recovers_the_projection():
    c2w = look_at(torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(3))
    cams = Cameras.from_fov(c2w, math.radians(40.0), (96, 128), near=0.2, far=50.0)
    view = camera_json(cams.c2w[0].numpy(), cams.proj[0].numpy(), cams.resolution, scale=2.0)
    assert view["fovy_deg"] == pytest.approx(40.0, abs=1e-4)
    assert view["near"] == pytest.approx(0.2, rel=1e-4) and view["far"] == pytest.approx(50.0, rel=1e-3)
    assert (view["height"], view["width"]) == (192, 256)
    # three.js reads matrices column-major: element 12..14 is the translation (the eye).
    assert view["c2w_column_major"][12:15] == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)


def test_server_serves_page_run_files_and_captures(tmp_path):
    mesh = Mesh(
        torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]),
        torch.tensor([[0, 1, 2]]),
        v_tex=torch.tensor([[0.0, 0], [1, 0], [0, 1]]),
        t_tex_idx=torch.tensor([[0, 1, 2]]),
    )
    run = tmp_path / "run"
    write_outputs(run, mesh, {"kd": torch.rand(4, 4, 3)}, EnvironmentLight.constant(0.5, base_res=32))
    three = tmp_path / "three"
    (three / "build").mkdir(parents=True)
    (three / "build" / "three.module.js").write_text("export const REVISION = 'stub';\n")
    assert find_three(str(three)) == three
    with pytest.raises(FileNotFoundError, match="npm ci --prefix tools/viewer"):
        find_three(str(tmp_path / "nowhere"))
    posted = {}
    server = make_server(run, "127.0.0.1", 0, three, cameras=[], on_capture=posted.__setitem__)
    serve_in_background(server)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        info = json.loads(urllib.request.urlopen(f"{base}/info.json").read())
        assert info == {"name": "run", "triangles": 1, "cameras": []}
        assert b"importmap" in urllib.request.urlopen(f"{base}/").read()
        assert b"GLTFLoader" in urllib.request.urlopen(f"{base}/viewer.js").read()
        assert urllib.request.urlopen(f"{base}/run/mesh.glb").read() == (run / "mesh.glb").read_bytes()
        assert b"stub" in urllib.request.urlopen(f"{base}/three/build/three.module.js").read()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{base}/run/../../etc/passwd")
        urllib.request.urlopen(urllib.request.Request(f"{base}/capture/0", data=b"\x01\x02", method="POST"))
        assert posted == {"0": b"\x01\x02"}
    finally:
        server.shutdown()
        server.server_close()


def test_missing_outputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mesh.glb: missing"):
        make_server(tmp_path, "127.0.0.1", 0, tmp_path)
