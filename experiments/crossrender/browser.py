"""What the cross-render harnesses share: headless Chromium on a page that posts results back,
float pixel captures, dmtrec cameras of the page's camera records, image comparison.

A harness serves a page (``dmtrec.commands.view.static_server``: files, folders, and
``POST /capture/<name>`` handed to :class:`Captures`), points Chromium at it (:func:`run_page`)
and waits for the page's ``done`` post (or its ``error`` post, raised here with the page's
message). Chromium runs headless with SwiftShader WebGL (no GPU) and a fresh profile; the
background-networking flags keep it from opening connections the closed network refuses.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.metrics.image import image_metrics, psnr
from dmtrec.render.camera import Cameras, perspective

HERE = Path(__file__).resolve().parent
PAGE_HTML = HERE / "page.html"
"""A bare page with three.js's import map that runs ``/page.js`` (each harness maps its own)."""


def page_files(script: str) -> Dict[str, Path]:
    """The served files of a harness page running ``script`` (a file of this folder), with the
    ``/capture.js`` module it shares with the page ``dmtrec view`` serves."""
    from dmtrec.commands.view import PAGE

    return {"/": PAGE_HTML, "/page.js": HERE / script, "/capture.js": PAGE / "capture.js"}


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # WebGL without a GPU: Chromium's software rasterizer (SwiftShader through ANGLE).
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def find_chromium() -> Optional[str]:
    """The Chromium executable (``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Captures:
    """The page's posts by name; ``done`` (or ``error``, whose body is the message) ends the run."""

    def __init__(self):
        self.posts: Dict[str, bytes] = {}
        self.error: Optional[str] = None
        self.done = threading.Event()

    def __call__(self, name: str, body: bytes) -> None:
        if name == "error":
            self.error = body.decode("utf-8", "replace")
            self.done.set()
        elif name == "done":
            self.done.set()
        else:
            self.posts[name] = body


def run_page(url: str, captures: Captures, chromium: str, timeout: float = 300.0) -> Captures:
    """Open ``url`` in headless Chromium until the page posts ``done``; raises RuntimeError on the
    page's ``error`` post or after ``timeout`` seconds (with Chromium's last stderr lines)."""
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            finished = captures.done.wait(timeout)
        finally:
            process.terminate()
            try:
                _, stderr = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
    if captures.error is not None:
        raise RuntimeError(f"the page failed: {captures.error}")
    if not finished:
        tail = " | ".join(stderr.decode("utf-8", "replace").strip().splitlines()[-5:])
        raise RuntimeError(f"the page did not finish within {timeout:.0f} s ({len(captures.posts)} posts); {tail}")
    return captures


def float_rgba(body: bytes, height: int, width: int) -> torch.Tensor:
    """``[H, W, 4]`` of a posted ``readRenderTargetPixels`` float buffer, rows top to bottom."""
    pixels = np.frombuffer(body, dtype=np.float32).reshape(height, width, 4)
    return torch.from_numpy(pixels[::-1].copy())  # readPixels starts at the bottom row


def dmtrec_cameras(cameras: List[dict]) -> Cameras:
    """dmtrec :class:`Cameras` of the page's camera records (``dmtrec.commands.view.camera_json``)."""
    c2w = torch.tensor([c["c2w_column_major"] for c in cameras], dtype=torch.float32).reshape(-1, 4, 4)
    c2w = c2w.transpose(1, 2)
    first = cameras[0]
    proj = torch.stack(
        [perspective(np.radians(c["fovy_deg"]), c["width"] / c["height"], c["near"], c["far"]) for c in cameras]
    )
    return Cameras(c2w=c2w, proj=proj, resolution=(first["height"], first["width"]))


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    """Premultiplied (over black) linear RGBA -> linear RGB over white."""
    return rgba[..., :3] + (1.0 - rgba[..., 3:4].clamp(0, 1))


def compare_renders(three: torch.Tensor, ours: torch.Tensor, out: Path, diff_gain: float = 4.0) -> dict:
    """Scores of ``[B, H, W, 4]`` linear premultiplied renders, three.js against dmtrec, and the
    per-view PNGs (three.js, dmtrec, |difference| x ``diff_gain``) and ``strip.png`` in ``out``.

    Returns PSNR/SSIM per view in sRGB over white (as ``dmtrec eval``), PSNR over the pixels
    either renderer covers (the white background inflates whole-image PSNR) and over the interior
    (covered by both, away from silhouettes), with the interior's largest linear difference.
    """
    metrics = image_metrics(over_white(three), over_white(ours))
    covered = (three[..., 3:4] > 0) | (ours[..., 3:4] > 0)
    a, b = linear_to_srgb(over_white(three)).clamp(0, 1), linear_to_srgb(over_white(ours)).clamp(0, 1)
    # Interior: fully covered in both (dmtrec's analytic antialiasing blends silhouette pixels with
    # the background, the capture does not antialias), where the shading alone differs.
    interior = (three[..., 3:4] >= 0.999) & (ours[..., 3:4] >= 0.999)

    def masked_psnr(mask: torch.Tensor) -> list:
        return [
            float(psnr(a[i][mask[i, ..., 0]][None, :, None], b[i][mask[i, ..., 0]][None, :, None]))
            for i in range(len(a))
        ]

    masked, inner = masked_psnr(covered), masked_psnr(interior)
    out.mkdir(parents=True, exist_ok=True)
    strips = []
    for i in range(three.shape[0]):
        diff = ((a[i] - b[i]).abs() * diff_gain).clamp(0, 1)
        write_png(out / f"view{i:02d}_three.png", a[i])
        write_png(out / f"view{i:02d}_dmtrec.png", b[i])
        write_png(out / f"view{i:02d}_diff.png", diff)
        strips.append(torch.cat([a[i], b[i], diff], 1))
    write_png(out / "strip.png", torch.cat(strips, 0))
    return {
        "resolution": list(three.shape[1:3]),
        "psnr": [float(x) for x in metrics["psnr"]],
        "ssim": [float(x) for x in metrics["ssim"]],
        "psnr_covered": masked,
        "mean_psnr": float(metrics["psnr"].mean()),
        "mean_ssim": float(metrics["ssim"].mean()),
        "mean_psnr_covered": float(np.mean(masked)),
        "psnr_interior": inner,
        "mean_psnr_interior": float(np.mean(inner)),
        "max_abs_interior_linear": float((three - ours)[..., :3][interior.expand(-1, -1, -1, 3)].abs().max()),
    }
