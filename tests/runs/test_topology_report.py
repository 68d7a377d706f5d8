"""The run's topology report: components, genus, a loop summary per handle for metrics.json, and
one picture per loop in inspect/ with the loop drawn where it projects."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from dmtrec.assets.procedural import displaced_torus
from dmtrec.assets.procedural_shapes import pebble
from dmtrec.core.mesh import Mesh
from dmtrec.runs.topology_report import PANEL, draw_handle_loops, topology_report


def _two_tori() -> Mesh:
    big = displaced_torus(40, 20, amplitude=0.0)
    small = displaced_torus(24, 12, major=0.5, minor=0.2, amplitude=0.0)
    return Mesh(
        torch.cat([big.v_pos, small.v_pos + torch.tensor([3.0, 0.0, 0.0])]),
        torch.cat([big.t_pos_idx, small.t_pos_idx + big.v_pos.shape[0]]),
    )


def test_report_and_pictures_of_two_tori(tmp_path):
    mesh = _two_tori()
    report, components = topology_report(mesh)
    assert (report["components"], report["genus"], report["component_genus"]) == (2, 2, [1, 1])
    assert report["watertight"] and report["handle_loops_skipped"] == []
    assert [loop["component"] for loop in report["handle_loops"]] == [0, 0, 1, 1]
    json.dumps(report)  # JSON-ready
    # the small torus's loops sit around x = 3: its tube (length 2 pi 0.2 as a 12-gon) first
    small = report["handle_loops"][2]
    assert abs(small["centroid"][0] - 3.0) < 0.5
    assert abs(small["length"] - 2 * 12 * 0.2 * np.sin(np.pi / 12)) < 1e-4
    paths = draw_handle_loops(mesh, components, tmp_path)
    assert [p.name for p in paths] == [f"handle_loop_{n}.png" for n in range(4)]
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert image.shape[:2] == (PANEL + 18, 2 * PANEL)
        red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
        # the loop is drawn in both panels (whole mesh left, close-up right)
        assert red[:, :PANEL].sum() > 5 and red[:, PANEL:].sum() > 20


def test_genus_zero_has_no_loops_and_no_pictures(tmp_path):
    mesh = pebble(32, 16)
    report, components = topology_report(mesh)
    assert (report["components"], report["genus"], report["handle_loops"]) == (1, 0, [])
    assert draw_handle_loops(mesh, components, tmp_path) == []
    assert not (tmp_path / "inspect").exists()
