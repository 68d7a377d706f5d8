"""The Node tools of ``tools/gltf`` (Khronos glTF Validator, reference MikkTSpace) for the tests.

:func:`gltf_tools` installs them once per session with ``npm ci --prefix tools/gltf`` (the
versions pinned in its package-lock.json) when node and npm exist, and skips the calling test
with the reason otherwise (no node, or no registry reachable). :func:`chromium_and_three` does
the same for the cross-render harnesses (``experiments/crossrender``): Chromium must already be
installed, three.js comes from ``npm ci --prefix tools/viewer``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from common import REPO

TOOLS = REPO / "tools" / "gltf"
_state: dict = {}


def gltf_tools() -> Path:
    """``tools/gltf`` with its ``node_modules`` installed, or ``pytest.skip`` with the reason."""
    if "error" not in _state:
        _state["error"] = _install()
    if _state["error"]:
        pytest.skip(_state["error"])
    return TOOLS


def _install() -> str:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    return _npm_ci(TOOLS, ("gltf-validator/package.json", "mikktspace/package.json"))


def _npm_ci(folder: Path, needed: tuple) -> str:
    """``npm ci --prefix folder`` unless ``node_modules`` holds every ``needed`` file; the error, or ""."""
    if all((folder / "node_modules" / name).is_file() for name in needed):
        return ""
    if shutil.which("npm") is None:
        return f"npm is not installed (npm ci --prefix {folder.relative_to(REPO)})"
    done = subprocess.run(
        ["npm", "ci", "--prefix", str(folder), "--no-audit", "--no-fund"], capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        return f"npm ci --prefix {folder.relative_to(REPO)} failed: {done.stderr.strip()[-300:]}"
    return ""


def run_node(script: str, *args: str, stdin: str = "") -> str:
    """Run ``tools/gltf/<script>`` with node; its stdout (raises on a non-zero exit)."""
    tools = gltf_tools()
    done = subprocess.run(
        ["node", str(tools / script), *args], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode:
        raise RuntimeError(f"node {script} failed: {done.stderr.strip()[-1000:]}")
    return done.stdout


def validate_glb(path: Path) -> dict:
    """The Khronos glTF Validator's report (``issues.numErrors``, ``numWarnings``, ``messages``)."""
    return json.loads(run_node("validate.cjs", str(path)))


VIEWER = REPO / "tools" / "viewer"
_browser: dict = {}


def chromium_and_three() -> str:
    """The Chromium executable, with three.js installed in ``tools/viewer`` (``npm ci``, once per
    session), or ``pytest.skip`` with the reason: CI has node but no Chromium, and no test
    installs a browser."""
    if "error" not in _browser:
        _browser["error"] = _install_three()
    if _browser["error"]:
        pytest.skip(_browser["error"])
    return _browser["chromium"]


def _install_three() -> str:
    names = ("chromium", "chromium-browser", "google-chrome")
    chromium = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if chromium is None:
        return "chromium is not installed (apt-get install chromium)"
    _browser["chromium"] = chromium
    return _npm_ci(VIEWER, ("three/build/three.module.js",))
