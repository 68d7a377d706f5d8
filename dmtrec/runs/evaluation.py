"""Evaluate a finished (or interrupted) run folder on its held-out test views.

:func:`evaluate_run` reads ``RUN_DIR/config.yaml`` (the resolved config ``dmtrec fit`` saved) and a
checkpoint, rebuilds the datamodule, renders every test view with the checkpoint's system, scores
each view with :func:`dmtrec.metrics.image.image_metrics` (nvdiffrec's convention: sRGB, clamped,
over the evaluation background; means are means of per-view values), compares the surface with a
reference mesh when one is known, and writes into the output folder::

    metrics.json        test_<metric> means, geometry_<key>, per_view list, provenance
    views/NNN_reference.png, views/NNN_render.png   sRGB, one pair per test view
    grid.png            reference | render | kd | ks | normal for the first views

A wandb table (one row per view: index, PSNR, SSIM, the two images) goes to the run's own wandb
id, offline: evaluation never touches the network.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import yaml
from torch import Tensor

from dmtrec.core.atomic import atomic_folder, write_json
from dmtrec.core.output_folder import check_output_folder
from dmtrec.datasets.config import TOP_LEVEL, upgrade_data_config
from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.geometry import Mesh
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.io.mesh_files import read_mesh
from dmtrec.metrics.geometry import geometry_report
from dmtrec.metrics.image import composite, image_metrics, load_lpips
from dmtrec.systems.grids import image_grid, save_grid
from dmtrec.systems.pipeline import ReconstructionSystem

from .checkpoints import load_module

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
DEFAULT_CKPT = Path("checkpoints") / "last.ckpt"
DEFAULT_OUT = "eval"
METRICS_NAME = "metrics.json"
GRID_NAME = "grid.png"
VIEWS_FOLDER = "views"
WANDB_TABLE_KEY = "eval/test_views"
# Buffers the comparison grid shows (dmtrec.systems.grids.image_grid's columns after the reference).
GRID_BUFFERS = ("shaded", "kd", "ks", "normal")


@dataclass
class _Views:
    """Per-view results gathered while rendering the test split."""

    per_view: List[Dict[str, Any]] = field(default_factory=list)
    grid_refs: List[Tensor] = field(default_factory=list)
    grid_buffers: Dict[str, List[Tensor]] = field(default_factory=dict)
    grid_count: int = 0


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def read_run_config(run_dir: Path) -> Dict[str, Any]:
    """The resolved config of ``run_dir`` as a dict; one-line errors for a missing folder or file."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME} (not a dmtrec fit run folder?)")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise ValueError(f"{path}: no data section")
    return config


def build_datamodule(config: Dict[str, Any], config_path: Path, data_path: Optional[str] = None):
    """The run's :class:`ReconDataModule`, set up; ``data_path`` replaces the dataset folder. A
    run's ``config.yaml`` of an earlier release (flat ``data:``) is read in the typed form."""
    try:
        data = upgrade_data_config(dict(config["data"]))
    except ValueError as exc:
        raise ValueError(f"{config_path}: data.{exc}") from None
    kind = data.get("kind", "nerf_synthetic")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise ValueError(f"{config_path}: data.{unknown[0]} is not an option of this dmtrec version's datamodule")
    section = dict(data.get(kind) or {})
    if data_path is not None:
        section["path"] = str(data_path)
    for key in ("path", "mesh", "probe"):
        if section.get(key) and not Path(section[key]).exists():
            hint = " (pass --data DIR)" if key == "path" else ""
            raise FileNotFoundError(f"{section[key]}: data.{kind}.{key} of {config_path} not found{hint}")
    # Evaluation reads each test view once: keeping every split's decoded images in memory or
    # pre-rendering the training pool would only cost memory and time.
    section.update({"preload": False} if kind != "reference_mesh" else {"prerender": False})
    datamodule = ReconDataModule(**{**data, kind: section})
    datamodule.setup("test")
    return datamodule


def score_test_views(
    system,
    loader,
    lpips_fn=None,
    on_batch: Optional[Callable[[Dict[str, Any], Dict[str, Tensor], List[dict]], None]] = None,
) -> List[Dict[str, Any]]:
    """Render every batch of ``loader`` with ``system`` and score each view with
    :func:`dmtrec.metrics.image.image_metrics` (nvdiffrec's convention).

    Returns one row per view, ``{"index", "psnr", "ssim", ...}`` (a non-finite value is None);
    ``on_batch(batch, buffers, rows)`` sees each batch with its render buffers and new rows.
    """
    per_view: List[Dict[str, Any]] = []
    for batch in loader:
        batch = {k: v.to(system.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        with torch.no_grad():
            _, buffers = system.render(batch)
        metrics = image_metrics(
            buffers["shaded"][..., :3], batch["img"], background=batch["background"], lpips_fn=lpips_fn
        )
        rows = [
            {"index": len(per_view) + b, **{k: _finite_or_none(float(v[b])) for k, v in metrics.items()}}
            for b in range(batch["img"].shape[0])
        ]
        per_view += rows
        if on_batch is not None:
            on_batch(batch, buffers, rows)
    return per_view


def mean_metrics(per_view: List[Dict[str, Any]]) -> Dict[str, Any]:
    """``{"test_<metric>": mean over views}`` of :func:`score_test_views`'s rows."""
    if not per_view:
        return {}
    keys = [k for k in per_view[0] if k != "index"]
    means = {}
    for key in keys:
        values = [row[key] for row in per_view]
        # A None is an infinite PSNR (a view rendered exactly): the mean is infinite too.
        means[f"test_{key}"] = None if any(v is None for v in values) else sum(values) / len(values)
    return means


def reference_surface(
    reference: Optional[str], system, data_mesh: Optional[Mesh]
) -> Tuple[Optional[Mesh], Optional[str]]:
    """The reference surface and where it came from: ``reference`` (a file), the model's
    ``reference_mesh``, or ``data_mesh`` (the mesh a reference-mesh datamodule renders, its
    ``reference_mesh``); ``(None, None)`` for image datasets without one."""
    for path in (reference, system.reference_mesh_path):
        if path:
            return read_reference(path), str(path)
    return (data_mesh, "datamodule") if data_mesh is not None else (None, None)


def read_reference(path: str) -> Mesh:
    """A reference mesh file with triangles; every failure is one line naming the file."""
    mesh = read_mesh(path)[0]
    if mesh.is_empty:
        raise ValueError(f"{path}: the reference mesh has no triangles")
    return mesh


def _render_test_views(system, loader, lpips_fn, views_dir: Path, grid_views: int) -> _Views:
    views = _Views()

    def keep(batch: Dict[str, Any], buffers: Dict[str, Tensor], rows: List[dict]) -> None:
        reference = composite(batch["img"], batch["background"], "img")
        ref_srgb, render_srgb = linear_to_srgb(reference).cpu(), linear_to_srgb(buffers["shaded"][..., :3]).cpu()
        for b, row in enumerate(rows):
            for kind, img in (("reference", ref_srgb[b]), ("render", render_srgb[b])):
                write_png(views_dir / f"{row['index']:03d}_{kind}.png", img)
        take = min(grid_views - views.grid_count, reference.shape[0])
        if take > 0:
            views.grid_refs.append(reference[:take].cpu())
            for key in GRID_BUFFERS:
                if buffers.get(key) is not None:
                    views.grid_buffers.setdefault(key, []).append(buffers[key][:take].detach().cpu())
            views.grid_count += take

    views.per_view = score_test_views(system, loader, lpips_fn, keep)
    return views


def _log_wandb(
    run_dir: Path, config: Dict[str, Any], out_dir: Path, per_view: List[dict], summary: Dict[str, Any]
) -> None:
    """Log the per-view table and the grid into the run's wandb id, offline."""
    import wandb

    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    if run_id is None:
        log.warning("%s missing: the evaluation table goes to a new wandb run", id_file)
    run_cfg = config.get("run") or {}
    run = wandb.init(
        project=run_cfg.get("project", "dmtrec"),
        id=run_id,
        name=run_cfg.get("name"),
        dir=str(run_dir),
        mode="offline",
        resume="allow",
        job_type="eval",
        reinit="finish_previous",
    )
    failed = True
    try:
        table = wandb.Table(columns=["index", "psnr", "ssim", "reference", "render"])
        for row in per_view:
            images = [
                wandb.Image(str(out_dir / VIEWS_FOLDER / f"{row['index']:03d}_{kind}.png"))
                for kind in ("reference", "render")
            ]
            table.add_data(row["index"], row["psnr"], row["ssim"], *images)
        run.log({WANDB_TABLE_KEY: table, "eval/grid": wandb.Image(str(out_dir / GRID_NAME))})
        run.summary.update({f"eval/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        failed = False
    finally:
        run.finish(exit_code=1 if failed else 0)


def evaluate_run(
    run_dir: Path,
    data: Optional[str] = None,
    reference: Optional[str] = None,
    ckpt: Optional[Path] = None,
    out: Optional[Path] = None,
    samples: Optional[int] = None,
    device: str = "cpu",
    grid_views: int = 8,
    wandb_mode: str = "offline",
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Render ``run_dir``'s test split with its checkpoint and write the evaluation (module docstring).

    Args:
        run_dir: a ``dmtrec fit`` run folder (``config.yaml``, ``checkpoints/last.ckpt``).
        data: replaces the config's ``data.path`` (a dataset moved since the fit).
        reference: reference mesh file for the geometry report (default: the model's
            ``reference_mesh``, else the reference-mesh datamodule's mesh, else none).
        ckpt: checkpoint (default ``run_dir/checkpoints/last.ckpt``).
        out: output folder (default ``run_dir/eval``, replaced by each evaluation); an existing
            non-empty ``out`` is refused unless ``overwrite``.
        samples: surface samples per mesh for the geometry report (default: the model's
            ``metric_samples``, what the fit reported with).
        device: torch device for rendering and metrics.
        grid_views: views (rows) in ``grid.png``.
        wandb_mode: ``"offline"`` or ``"disabled"``.

    Returns:
        The dict written to ``metrics.json``.
    """
    if wandb_mode not in ("offline", "disabled"):
        raise ValueError(f"--wandb: must be offline or disabled (evaluation never goes online), got {wandb_mode!r}")
    if grid_views < 1:
        raise ValueError(f"--grid-views: must be >= 1, got {grid_views}")
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    ckpt = Path(ckpt) if ckpt is not None else run_dir / DEFAULT_CKPT
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint not found (pass --ckpt)")
    # The default folder is the run's own, replaced by every evaluation; a folder the user names
    # follows the output rule (dmtrec.core.output_folder).
    out = check_output_folder(out, overwrite) if out is not None else run_dir / DEFAULT_OUT
    datamodule = build_datamodule(config, run_dir / CONFIG_NAME, data)
    if len(datamodule.test_dataset) == 0:
        raise ValueError(f"{run_dir / CONFIG_NAME}: the test split has no views")

    system = load_module(ReconstructionSystem, ckpt, map_location=device)
    system.to(device).eval()
    # Read once, before the rendering: a bad file stops the evaluation with nothing written.
    surface = reference_surface(reference, system, datamodule.reference_mesh)
    lpips_fn = load_lpips(device=device)
    # Views, grid and metrics are published together, or the previous evaluation stays as it was.
    with atomic_folder(out) as staging:
        metrics = _evaluate_into(staging, system, datamodule, lpips_fn, grid_views, surface, samples)
        metrics.update(run_dir=str(run_dir), checkpoint=str(ckpt))
        write_json(staging / METRICS_NAME, metrics)
    log.info("evaluation of %s (%d test views) written to %s", run_dir, len(metrics["per_view"]), out)
    if wandb_mode == "offline":
        _log_wandb(run_dir, config, out, metrics["per_view"], {k: v for k, v in metrics.items() if k != "per_view"})
    return metrics


def _evaluate_into(out: Path, system, datamodule, lpips_fn, grid_views: int, surface, samples) -> Dict[str, Any]:
    """Render the test views into ``out`` (views, grid) and return the metrics; ``surface`` is
    :func:`reference_surface`'s ``(mesh, source)``."""
    (out / VIEWS_FOLDER).mkdir()
    views = _render_test_views(system, datamodule.test_dataloader(), lpips_fn, out / VIEWS_FOLDER, grid_views)
    grid = image_grid(
        torch.cat(views.grid_refs), {k: torch.cat(v) for k, v in views.grid_buffers.items()}, max_views=grid_views
    )
    save_grid(out / GRID_NAME, grid)

    metrics: Dict[str, Any] = {
        "stage": system.stage,
        "iteration": system.iteration,
        "data_path": datamodule.hparams.path,
        "test_views": len(views.per_view),
        **mean_metrics(views.per_view),
        "per_view": views.per_view,
    }
    ref_mesh, ref_source = surface
    if ref_mesh is not None:
        with torch.no_grad():
            surface = system.geometry.mesh()
        pred = Mesh(v_pos=surface.v_pos.detach(), t_pos_idx=surface.t_pos_idx)
        report = geometry_report(pred, ref_mesh.to(pred.device), n_samples=samples or system.metric_samples)
        metrics["reference"] = ref_source
        metrics.update({f"geometry_{k}": _finite_or_none(v) for k, v in report.items()})
    return metrics
