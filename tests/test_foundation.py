import numpy as np
import pytest
import torch

from dmtrec.io.image import ImageReadError, linear_to_srgb, read_hdr, read_image, srgb_to_linear, write_hdr, write_png
from dmtrec.render.raster import get_rasterizer


def test_import_without_nvdiffrast_and_auto_picks_torch_on_cpu():
    r = get_rasterizer("auto", device="cpu")
    assert r.name == "torch"


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown rasterizer backend"):
        get_rasterizer("opengl")


def test_nvdiffrast_on_cpu_machine_says_why():
    if torch.cuda.is_available():
        pytest.skip("CUDA machine")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_rasterizer("nvdiffrast")


def test_srgb_roundtrip_and_known_values():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-6)
    assert abs(srgb_to_linear(torch.tensor(0.5)).item() - 0.21404) < 1e-4


def test_png_roundtrip(tmp_path):
    img = np.random.default_rng(0).random((5, 7, 4)).astype(np.float32)
    write_png(tmp_path / "a.png", img)
    back = read_image(tmp_path / "a.png")
    assert back.shape == (5, 7, 4)
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-6


def test_hdr_roundtrip_relative_precision(tmp_path):
    img = np.exp(np.random.default_rng(1).normal(size=(9, 11, 3))).astype(np.float32)
    write_hdr(tmp_path / "a.hdr", img)
    back = read_hdr(tmp_path / "a.hdr")
    # RGBE keeps 8 mantissa bits of the brightest channel.
    assert np.all(np.abs(back - img) <= img.max(-1, keepdims=True) / 128)


def test_shared_probe_reads(shared_data):
    img = read_hdr(shared_data / "envmaps" / "mud_road_puresky_1k.hdr")
    assert img.shape == (512, 1024, 3) and img.dtype == np.float32 and np.isfinite(img).all() and img.min() > 0


def test_bad_images_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: image file not found"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="bad.png: not a readable image"):
        read_image(bad)
    badhdr = tmp_path / "bad.hdr"
    badhdr.write_bytes(b"#?RADIANCE\n\n-Y 4 +X 4\n\x01\x02")
    with pytest.raises(ImageReadError, match="bad.hdr: truncated"):
        read_hdr(badhdr)
