"""``dmtrec view RUN_DIR``: look at a run's exported asset in a browser, as an engine shows it.

Serves a page (``view_page/``) that loads ``RUN_DIR/mesh.glb`` with three.js's glTF loader and
standard PBR material, lit by ``RUN_DIR/probe.hdr`` (image-based lighting), from the run's test
cameras or a free orbit. It prints the URL and serves until interrupted; it opens no browser.
three.js comes from ``tools/viewer`` of the checkout (``npm ci --prefix tools/viewer``) or
``--three DIR``. The cross-render harness (``experiments/crossrender``) captures the same page.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import mimetypes
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from dmtrec.io.gltf import read_glb
from dmtrec.runs.evaluation import build_datamodule, read_run_config
from dmtrec.runs.outputs import GLB_NAME, PROBE_NAME

log = logging.getLogger(__name__)

HELP = "serve a page that shows RUN_DIR/mesh.glb under its probe.hdr with three.js (prints the URL)"
PAGE = Path(__file__).with_name("view_page")
THREE_DEFAULT = Path(__file__).resolve().parents[2] / "tools" / "viewer" / "node_modules" / "three"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder of `dmtrec fit` or `dmtrec export` (mesh.glb, probe.hdr)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--three", help="three.js package folder (default tools/viewer/node_modules/three)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="test views at this multiple of the run's resolution (default 1)"
    )


def main(args: argparse.Namespace) -> int:
    server = make_server(Path(args.run_dir), args.host, args.port, find_three(args.three), scale=args.scale)
    host, port = server.server_address[:2]
    print(f"dmtrec view: http://{host}:{port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def find_three(path: Optional[str] = None) -> Path:
    """The three.js package folder: ``path``, ``$DMTREC_THREE`` or the checkout's tools/viewer."""
    folder = Path(path or os.environ.get("DMTREC_THREE") or THREE_DEFAULT)
    if not (folder / "build" / "three.module.js").is_file():
        raise FileNotFoundError(
            f"{folder}: three.js not found (run `npm ci --prefix tools/viewer` in the checkout, or pass --three DIR)"
        )
    return folder


def test_cameras(run_dir: Path, scale: float = 1.0) -> List[Dict]:
    """The run's test cameras for the page: camera-to-world (column-major, as three.js reads it),
    vertical fov in degrees, clip planes and size; empty (with a warning) where the run's config
    cannot rebuild its test split (e.g. the dataset is elsewhere now)."""
    try:
        config = read_run_config(run_dir)
        dataset = build_datamodule(config, run_dir / "config.yaml").test_dataset
        samples = [dataset[i] for i in range(len(dataset))]
    except Exception as exc:  # the page still works with a free orbit
        log.warning("%s: no test cameras (%s: %s); the page offers a free orbit only", run_dir, type(exc).__name__, exc)
        return []
    return [camera_json(s["c2w"].cpu().numpy(), s["proj"].cpu().numpy(), s["img"].shape[:2], scale) for s in samples]


def camera_json(c2w: np.ndarray, proj: np.ndarray, resolution, scale: float = 1.0) -> Dict:
    """One camera as the page reads it, from dmtrec's ``c2w`` and OpenGL ``proj`` ``[4, 4]``."""
    p22, p23 = float(proj[2, 2]), float(proj[2, 3])
    return {
        "c2w_column_major": np.asarray(c2w, dtype=np.float64).T.reshape(-1).tolist(),
        "fovy_deg": math.degrees(2.0 * math.atan(1.0 / abs(float(proj[1, 1])))),
        "near": p23 / (p22 - 1.0),
        "far": p23 / (p22 + 1.0),
        "height": int(round(resolution[0] * scale)),
        "width": int(round(resolution[1] * scale)),
    }


def make_server(
    run_dir: Path,
    host: str,
    port: int,
    three: Path,
    scale: float = 1.0,
    cameras: Optional[List[Dict]] = None,
    on_capture: Optional[Callable[[str, bytes], None]] = None,
) -> ThreadingHTTPServer:
    """An HTTP server for the page (not yet serving: call ``serve_forever``).

    Args:
        run_dir: folder with ``mesh.glb`` and ``probe.hdr``.
        cameras: the views to offer (default :func:`test_cameras` of the run).
        on_capture: called with (name, body) for each ``POST /capture/<name>`` of the page's
            capture mode (``?capture=1``); without it such posts are refused.
    """
    for name in (GLB_NAME, PROBE_NAME):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name}: missing (run `dmtrec export` to write the run's outputs)")
    mesh, _ = read_glb(run_dir / GLB_NAME)
    info = {
        "name": run_dir.resolve().name,
        "triangles": mesh.num_faces,
        "cameras": test_cameras(run_dir, scale) if cameras is None else cameras,
    }
    roots = {"/three/": three, "/run/": run_dir}
    files = {"/": PAGE / "index.html", "/index.html": PAGE / "index.html", "/viewer.js": PAGE / "viewer.js"}
    files["/capture.js"] = PAGE / "capture.js"
    files["/info.json"] = json.dumps(info).encode()
    return static_server(host, port, files, roots, on_capture)


def static_server(
    host: str,
    port: int,
    files: Dict[str, Union[Path, bytes]],
    roots: Dict[str, Path],
    on_capture: Optional[Callable[[str, bytes], None]] = None,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) of ``files`` (URL path -> file or bytes; ``.json`` paths
    served as JSON) and of the folders ``roots`` (URL prefix -> folder, no ``../`` escapes);
    ``POST /capture/<name>`` calls ``on_capture(name, body)`` (refused without it)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: the page loads dozens of modules
            log.debug(fmt, *args)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            target = files.get(path)
            if isinstance(target, bytes):
                kind = "application/json" if path.endswith(".json") else "application/octet-stream"
                return self._send(200, target, kind)
            for prefix, root in roots.items():
                if target is None and path.startswith(prefix):
                    candidate = (root / path[len(prefix) :]).resolve()
                    if candidate.is_relative_to(root.resolve()):  # no ../ escapes
                        target = candidate
            if target is None or not target.is_file():
                return self._send(404, b"not found", "text/plain")
            kind = "text/javascript" if target.suffix == ".js" else mimetypes.guess_type(target.name)[0]
            self._send(200, target.read_bytes(), kind or "application/octet-stream")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if on_capture is None or not self.path.startswith("/capture/"):
                return self._send(403, b"capture is off", "text/plain")
            on_capture(self.path[len("/capture/") :], body)
            self._send(200, b"ok", "text/plain")

        def _send(self, code: int, body: bytes, kind: str):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    """Run ``server`` in a daemon thread (for the harness and tests); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
