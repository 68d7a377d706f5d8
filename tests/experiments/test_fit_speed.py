"""experiments/benchmarks/fit_speed.py: its --quickstart preset is the quickstart config's settings."""

import importlib.util

import yaml
from common import CONFIGS, REPO


def _fit_speed():
    spec = importlib.util.spec_from_file_location("fit_speed", REPO / "experiments" / "benchmarks" / "fit_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_preset_matches_the_quickstart_config():
    preset = _fit_speed().QUICKSTART
    cfg = yaml.safe_load((CONFIGS / "quickstart.yaml").read_text())
    model, data = cfg["model"], cfg["data"]
    assert preset == {
        "device": cfg["trainer"]["accelerator"],
        "rasterizer": model["rasterizer"],
        "res": data["resolution"][0],
        "batch": data["batch_size"],
        "grid": model["dmtet"]["resolution"],
        "init": model["dmtet"]["init"],
        "texture_res": model["material"]["texture_res"],
        "light_res": model["light"]["base_res"],
        "light_init": model["light"]["init"],
        "hash_table": model["material"]["volumetric"]["log2_table_size"],
        "hash_levels": model["material"]["volumetric"]["n_levels"],
        "background": data["shared"]["background_train"],
    }
    assert data["resolution"][0] == data["resolution"][1]


def test_quickstart_flag_applies_the_preset():
    fit_speed = _fit_speed()
    args = fit_speed.build_parser().parse_args(["--quickstart", "--res", "512", "--data", str(REPO / "data")])
    fit_speed.check_args(args)
    assert {k: getattr(args, k) for k in fit_speed.QUICKSTART} == fit_speed.QUICKSTART


def test_trend_lines_give_each_spans_median_cost_and_triangles():
    from types import SimpleNamespace

    # 2 warm-up steps, then 6 timed ones in 3 spans of 2; the last step (beyond --iters) is not timed.
    cpu = [9.0, 9.0, 0.1, 0.3, 0.2, 0.2, 0.5, 0.7, 9.0]
    tri = [1, 1, 1000, 1000, 2000, 2000, 4000, 6000, 1]
    timer = SimpleNamespace(cpu_seconds={"dmtet": cpu}, triangle_log={"dmtet": tri})
    lines = _fit_speed().trend_lines(timer, warmup=2, iters=6, spans=3)
    assert len(lines) == 4
    # medians by hand: (0.1, 0.3) -> 0.2 s over 1000 triangles = 200 ms per 1k; (0.2, 0.2) over 2000
    # -> 100; (0.5, 0.7) -> 0.6 over 5000 -> 120
    for line, (first, last, seconds, triangles, per_k) in zip(
        lines[1:],
        [(2, 3, "0.200", "1000", "200.0"), (4, 5, "0.200", "2000", "100.0"), (6, 7, "0.600", "5000", "120.0")],
    ):
        fields = line.split()
        assert fields[0] == f"{first}-{last}" and fields[1] == seconds and fields[3] == triangles and fields[5] == per_k
