"""The device decisions that take another branch where CUDA is present, run on the CPU with
``torch.cuda.is_available`` faked (nothing here touches a CUDA tensor): the default render device
of reference-mesh datasets and ``make-dataset``, the worker rule for CUDA rendering, the
pipeline's rasterizer following the module to its device, and the determinism switch that
only CPU runs get."""

from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.accelerators import CPUAccelerator

from dmtrec.datasets import datamodule, make_dataset
from dmtrec.datasets.reference_mesh import ReferenceRender
from dmtrec.render.raster.torch_backend import TorchRasterizer
from dmtrec.runs.trainer import deterministic_on_cpu, deterministic_restored
from dmtrec.systems import pipeline


class _Loaded(Exception):
    """Raised by the fake scene loader once it has recorded the device it was asked for."""


def _record_device(monkeypatch, module) -> list:
    devices = []

    def load(*args, device=None, **kwargs):
        render = next((a for a in args if hasattr(a, "render_device")), None)
        devices.append(device if render is None else render.render_device)
        raise _Loaded

    monkeypatch.setattr(module, "load_reference_scene", load)
    return devices


@pytest.mark.parametrize("cuda", [True, False], ids=["cuda-present", "no-cuda"])
def test_reference_views_render_on_cuda_by_default_where_present(cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    devices = _record_device(monkeypatch, datamodule)
    dm = datamodule.ReconDataModule(kind="reference_mesh", mesh="m.obj", probe="p.hdr")
    with pytest.raises(_Loaded):
        dm.setup("fit")
    assert devices == ["cuda" if cuda else "cpu"]


def test_workers_are_refused_when_the_default_device_is_cuda(monkeypatch):
    """CUDA cannot be initialised again in forked DataLoader workers: with CUDA present and no
    render_device, workers are refused before anything loads; without CUDA they are fine."""
    devices = _record_device(monkeypatch, datamodule)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="^num_workers: must be 0 when reference views render on CUDA"):
        datamodule.ReconDataModule(kind="reference_mesh", mesh="m.obj", probe="p.hdr", num_workers=2).setup("fit")
    assert devices == []
    with pytest.raises(_Loaded):  # an explicit CPU render device keeps the workers
        datamodule.ReconDataModule(
            kind="reference_mesh", mesh="m.obj", probe="p.hdr", num_workers=2, render_device="cpu"
        ).setup("fit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(_Loaded):
        datamodule.ReconDataModule(kind="reference_mesh", mesh="m.obj", probe="p.hdr", num_workers=2).setup("fit")
    assert devices == ["cpu", "cpu"]


@pytest.mark.parametrize("cuda", [True, False], ids=["cuda-present", "no-cuda"])
def test_make_dataset_renders_on_cuda_by_default_where_present(cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    devices = _record_device(monkeypatch, make_dataset)
    for device in (None, "cpu"):
        render = ReferenceRender(probe_res=32, device=device)
        with pytest.raises(_Loaded):
            make_dataset._scene("m.obj", "p.hdr", render, renderer="raster", constant_ks=None, seed=0)
    assert devices == ["cuda" if cuda else "cpu", "cpu"]


def test_the_pipelines_rasterizer_follows_the_module_to_its_device():
    """Lightning moves the module to the GPU after it is built: the rasterizer made on the CPU
    (e.g. by a sanity render) must be replaced by one on the new device, once."""
    system = SimpleNamespace(_rasterizer=None, rasterizer_backend="torch", device=torch.device("cpu"))
    on_cpu = pipeline.ReconstructionSystem.rasterizer.fget(system)
    assert isinstance(on_cpu, TorchRasterizer) and on_cpu.device == torch.device("cpu")
    assert pipeline.ReconstructionSystem.rasterizer.fget(system) is on_cpu
    system.device = torch.device("cuda", 0)
    on_gpu = pipeline.ReconstructionSystem.rasterizer.fget(system)
    assert on_gpu is not on_cpu and on_gpu.device == torch.device("cuda", 0)
    assert pipeline.ReconstructionSystem.rasterizer.fget(system) is on_gpu


@pytest.mark.parametrize("configured", [None, False, True])
def test_only_cpu_runs_are_made_deterministic(configured):
    """On the CPU (trainer.deterministic unset) dmtrec turns torch's deterministic algorithms on;
    on a GPU accelerator, or when the user set trainer.deterministic, it leaves them as they are."""
    with deterministic_restored():
        for accelerator, expect_on in ((CPUAccelerator(), configured is None), (object(), False)):
            torch.use_deterministic_algorithms(False)
            deterministic_on_cpu(SimpleNamespace(accelerator=accelerator), configured)
            assert torch.are_deterministic_algorithms_enabled() == expect_on, (type(accelerator).__name__, configured)
