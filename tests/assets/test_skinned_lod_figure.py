"""`dmtrec lod` on the skinned figure (19 joints, 6 closed parts): its levels validate (Khronos
glTF Validator, 0 errors / 0 warnings) and, where Chromium exists, three.js skins a level like
dmtrec does (experiments/crossrender/skinning.py)."""

import sys

import pytest
from common import PROBE_HDR, REPO

pytest.importorskip("fast_simplification", reason="lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="the closest-surface lookup needs scipy")
pytestmark = pytest.mark.slow  # a two-level lod run of the figure: about 25 s of CPU


@pytest.fixture(scope="module")
def figure_lods(tmp_path_factory):
    from dmtrec import cli
    from dmtrec.assets.procedural_skinned import write_skinned_asset

    root = tmp_path_factory.mktemp("figure_lod")
    asset = write_skinned_asset(root / "figure.glb", "figure", texture_res=32, detail=10)
    out = root / "out"
    argv = ["lod", "--mesh", str(asset), "--probe", str(PROBE_HDR), "--levels", "0.1", "0.04", "--out", str(out),
            "--iterations", "2", "--res", "48", "--min-res", "32", "--spp", "1", "--texture-res", "32",
            "--heldout-views", "1", "--poses", "3", "--animation", "walk", "--probe-res", "32"]  # fmt: skip
    assert cli.main(argv) == 0
    return out


def test_skinned_figure_levels_validate(figure_lods):
    from node_tools import validate_glb

    for name in ("lods.glb", "lod0.glb", "lod1.glb"):
        issues = validate_glb(figure_lods / name)["issues"]
        messages = [(m["code"], m.get("pointer")) for m in issues["messages"] if m["severity"] <= 1]
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, (name, messages[:5])


def test_three_js_skins_a_figure_level_like_dmtrec(figure_lods):
    from node_tools import chromium_and_three

    chromium = chromium_and_three()
    sys.path.insert(0, str(REPO / "experiments" / "crossrender"))
    from skinning import compare

    result = compare(figure_lods / "lod1.glb", "walk", [0.13, 0.61], chromium, timeout=120)
    assert max(result["max_abs_error"]) <= 1e-4 and min(result["max_displacement_from_bind"]) > 0.3
