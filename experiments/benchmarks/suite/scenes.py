"""The validation suite's scenes (issue 31): objects of known topology, rendered path-traced
into Z-up NeRF-synthetic folders by ``make_suite.py``, fitted by ``quality.py --suite``.

Each scene names its object (a mesh in ``data/`` or a procedural shape of
:mod:`dmtrec.assets.procedural_shapes`), the probe's scale, its true genus and component count,
what it stresses, and its part: ``tuning`` (presets may be tuned on it) or ``held_out`` (only
reported: a preset tuned on the tuning part must not be tuned here too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

REPO = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("DMTREC_DATA", REPO / "data"))
PROBE = DATA / "envmaps/mud_road_puresky_1k.hdr"
PARTS = ("tuning", "held_out")


@dataclass(frozen=True)
class Scene:
    """``source``: ``data:<path under data/>`` or ``shape:<name in SHAPES>``."""

    source: str
    genus: int
    components: int
    part: str
    stresses: str
    env_scale: float = 1.0


SCENES: Dict[str, Scene] = {
    "spot": Scene("data:meshes/spot/spot.obj", 0, 1, "tuning", "texture, thin ears and horns"),
    "torus": Scene("shape:torus", 1, 1, "tuning", "genus 1, glossy dielectric (roughness 0.12)", 1.5),
    "double_torus": Scene("shape:double_torus", 2, 1, "tuning", "genus 2, metal (roughness 0.3)", 1.5),
    "cup": Scene("shape:cup", 0, 1, "tuning", "deep concavity (a well 1.25 deep, 0.96 wide)", 1.5),
    "fins": Scene("shape:fins", 0, 1, "tuning", "twelve thin fins (0.08 thick, 2 cells of a 64-grid)", 1.5),
    "bob": Scene("data:meshes/bob/bob_tri.obj", 1, 1, "held_out", "texture, genus 1 (the ring)", 2.0),
    "mug": Scene("shape:mug", 1, 1, "held_out", "thin handle (tube 0.12), concavity, glossy", 1.5),
    "button": Scene("shape:button", 2, 1, "held_out", "genus 2 through a flat disk, metal (gold)", 1.5),
    "pebble": Scene("shape:pebble", 0, 1, "held_out", "high-frequency texture (64 x 32 checks, stripes)", 1.5),
}
"""The suite, tuning part first."""
