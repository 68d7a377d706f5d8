"""experiments/benchmarks/geometry.py: the pass-1 convergence measure read from a run's CSV log."""

import importlib.util
import math

from common import REPO


def _geometry():
    spec = importlib.util.spec_from_file_location("geometry_bench", REPO / "experiments" / "benchmarks" / "geometry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_log(run_dir, rows):
    (run_dir / "csv").mkdir(parents=True)
    lines = ["epoch,step,train/image_alpha,train/image_color,train/iteration,val/psnr"]
    lines += [f"0,{it - 1},{alpha},{color},{it}," for it, alpha, color in rows]
    lines.append("0,250,,,,25.0")  # a validation row: no training terms, skipped
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_loss_fall_compares_the_last_window_with_the_one_before(tmp_path):
    # pass 1 of 300 iterations, logged every 50: windows (100, 200] and (200, 300]; steps after
    # pass 1 (pass 2) and before the first window are ignored.
    rows = [(50, 9.0, 9.0), (150, 0.3, 0.5), (200, 0.2, 0.2), (250, 0.2, 0.1), (300, 0.1, 0.2), (350, 5.0, 5.0)]
    _write_log(tmp_path, rows)
    before = ((0.3 + 0.5) + (0.2 + 0.2)) / 2  # 0.6
    last = ((0.2 + 0.1) + (0.1 + 0.2)) / 2  # 0.3
    assert math.isclose(_geometry().pass1_loss_fall(tmp_path, 300), 1 - last / before)


def test_loss_fall_is_nan_without_a_log_or_for_a_short_pass(tmp_path):
    geometry = _geometry()
    assert math.isnan(geometry.pass1_loss_fall(tmp_path, 300))
    _write_log(tmp_path, [(50, 1.0, 1.0), (150, 1.0, 1.0)])
    assert math.isnan(geometry.pass1_loss_fall(tmp_path, 150))
