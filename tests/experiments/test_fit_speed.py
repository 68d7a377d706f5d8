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
