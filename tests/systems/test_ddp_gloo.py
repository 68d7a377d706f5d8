"""``dmtrec_ddp``'s collectives (dmtrec/runs/ddp.py, dmtrec/systems/distributed.py) on two gloo processes, without
a trainer: the same calls GradientAveragingDDP makes on NCCL, with tensors on the CPU.

* ``configure_ddp``: every rank starts from rank 0's parameters and buffers, and ranks > 0
  reseed (seed + rank) so that their per-step randomness differs;
* the pass switch (``ReconstructionSystem._start_mesh_pass``): rank 0 alone bakes
  (``compute_on_rank_zero``), every rank receives its mesh and textures, detached and on the CPU;
* ``post_backward`` after the switch: the gradients of the parameters the module holds *then*
  are averaged (one buffer per dtype), pass 1's dropped parameters and frozen ones are not.

What stays GPU-only: NCCL itself, and the device of the buffers (built on the parameters'
device, which NCCL requires to be the rank's CUDA device).
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning_fabric.plugins.environments import LightningEnvironment

from dmtrec.geometry import Mesh
from dmtrec.runs.ddp import GradientAveragingDDP
from dmtrec.systems.distributed import compute_on_rank_zero

pytestmark = pytest.mark.slow  # two spawned processes each: 20-25 s on the shared 2-core machine


class _Module(pl.LightningModule):
    """Pass-1 stand-in: a parameter and a buffer whose values differ per rank."""

    def __init__(self, rank: int):
        super().__init__()
        self.geometry = torch.nn.ParameterDict({"sdf": torch.nn.Parameter(torch.full((4,), float(rank + 1)))})
        self.register_buffer("step", torch.tensor([10 * (rank + 1)]))


def _strategy(rank: int, module: pl.LightningModule) -> GradientAveragingDDP:
    strategy = GradientAveragingDDP(cluster_environment=LightningEnvironment())
    strategy.cluster_environment.set_global_rank(rank)
    strategy.cluster_environment.set_world_size(2)
    strategy.connect(module)
    return strategy


def _run(target, tmp_path) -> None:
    mp.spawn(target, args=(str(tmp_path / "init"),), nprocs=2)


def _configure_on_rank(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        module = _Module(rank)
        strategy = _strategy(rank, module)
        assert strategy.global_rank == rank
        torch.manual_seed(7)
        strategy.configure_ddp()
        assert torch.equal(module.geometry["sdf"].data, torch.full((4,), 1.0))  # rank 0's
        assert torch.equal(module.step, torch.tensor([10]))
        assert torch.initial_seed() == 7 + rank
    finally:
        dist.destroy_process_group()


def test_configure_ddp_starts_every_rank_from_rank_zero(tmp_path):
    _run(_configure_on_rank, tmp_path)


def _bake(rank: int):
    """Rank 0's bake: a mesh and textures still attached to the autograd graph."""
    assert rank == 0, "only rank 0 bakes"
    weight = torch.tensor(2.0, requires_grad=True)
    v_pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * weight
    mesh = Mesh(v_pos=v_pos, t_pos_idx=torch.tensor([[0, 1, 2]]))
    return mesh, {"kd": torch.full((2, 2, 3), 0.25) * weight, "ks": torch.zeros(2, 2, 3, dtype=torch.float64)}


def _pass_switch_on_rank(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        module = _Module(rank)
        strategy = _strategy(rank, module)
        old = module.geometry["sdf"]
        old.grad = torch.full((4,), float(rank))  # a stale pass-1 gradient, rank-local

        mesh, textures = compute_on_rank_zero(strategy, _bake, rank)
        assert isinstance(mesh, Mesh) and torch.equal(mesh.v_pos, torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]]))
        assert torch.equal(mesh.t_pos_idx, torch.tensor([[0, 1, 2]]))
        assert not mesh.v_pos.requires_grad and not textures["kd"].requires_grad
        assert torch.equal(textures["kd"], torch.full((2, 2, 3), 0.5)) and textures["ks"].dtype == torch.float64

        # Pass 2 as the pipeline enters it: new modules, one float64 parameter, one frozen.
        module.geometry = torch.nn.ParameterDict({"v_pos": torch.nn.Parameter(mesh.v_pos.clone())})
        module.material = torch.nn.ParameterDict(
            {
                "kd": torch.nn.Parameter(textures["kd"].clone()),
                "ks": torch.nn.Parameter(textures["ks"].clone()),
                "locked": torch.nn.Parameter(torch.zeros(2), requires_grad=False),
            }
        )
        module.geometry["v_pos"].grad = torch.full((3, 3), float(rank + 1))
        module.material["ks"].grad = torch.full((2, 2, 3), 0.1 * (rank + 1), dtype=torch.float64)
        if rank == 1:
            module.material["kd"].grad = torch.full((2, 2, 3), 4.0)
        module.material["locked"].grad = torch.full((2,), float(rank))  # not averaged: not trained

        strategy.post_backward(torch.tensor(0.0))
        assert torch.equal(module.geometry["v_pos"].grad, torch.full((3, 3), 1.5))
        assert torch.equal(module.material["kd"].grad, torch.full((2, 2, 3), 2.0))  # rank 0 counts as zero
        expected_ks = (torch.full((2, 2, 3), 0.1, dtype=torch.float64) + 0.2) / 2  # float64 all the way
        assert module.material["ks"].grad.dtype == torch.float64
        torch.testing.assert_close(module.material["ks"].grad, expected_ks, rtol=0, atol=1e-15)
        assert torch.equal(module.material["locked"].grad, torch.full((2,), float(rank)))
        assert torch.equal(old.grad, torch.full((4,), float(rank)))  # pass 1's parameter is gone from the module
    finally:
        dist.destroy_process_group()


def test_pass_switch_broadcasts_rank_zeros_bake_and_averages_the_new_parameters(tmp_path):
    _run(_pass_switch_on_rank, tmp_path)
