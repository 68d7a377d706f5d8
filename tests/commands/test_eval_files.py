import argparse
import json

from dmtrec.commands import eval as eval_command
from dmtrec.commands.eval import add_arguments, main
from dmtrec.geometry import Mesh


def test_eval_command_writes_the_geometry_report(icosphere, monkeypatch, tmp_path):
    v, f = icosphere(2)
    meshes = {"pred.obj": Mesh(v * 1.1, f), "ref.obj": Mesh(v, f)}
    monkeypatch.setattr(eval_command, "read_mesh", lambda path: (meshes[str(path)], None))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "eval" / "geometry.json"
    args = parser.parse_args(
        [
            "--mesh",
            "pred.obj",
            "--ref",
            "ref.obj",
            "--out",
            str(out),
            "--samples",
            "500",
            "--normalize",
            "none",
            "--thresholds",
            "0.05",
            "0.4",
        ]
    )
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["mesh"] == "pred.obj" and report["n_samples"] == 500 and report["normalize"] == "none"
    assert report["f_score@0.05"] == 0.0 and report["f_score@0.4"] == 1.0  # spheres 0.1 apart, samples ~0.1 apart
    assert report["pred_genus"] == 0 and report["ref_watertight"] is True
