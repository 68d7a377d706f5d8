"""The finite-difference check of shading models' derivatives (dmtrec.render.shaders.check),
the toon ramp's surrogate step, and `dmtrec shader-check`."""

import textwrap

import pytest
import torch

from dmtrec.cli import main
from dmtrec.render.shaders import BUILTINS, surrogate_forward
from dmtrec.render.shaders.check import DerivativeError, check_all, check_model
from dmtrec.render.shaders.toon import SurrogateStep, Toon


def test_every_builtin_passes_the_check():
    for name, report in check_all().items():
        assert set(report.errors) == {p.name for p in BUILTINS[name]().params}
        assert report.ok, report.table()


class _DoubledStep(SurrogateStep):
    """A planted wrong derivative: twice the surrogate."""

    @staticmethod
    def backward(ctx, grad):
        return 2.0 * SurrogateStep.backward(ctx, grad)[0], None


class _WrongToon(Toon):
    def step(self, x):
        return _DoubledStep.apply(x, self.width)


def test_a_planted_wrong_surrogate_fails_loudly():
    report = check_model(_WrongToon())
    # Only the parameters the step differentiates are wrong: the thresholds and the rim cut
    # (and the levels and colours, which multiply the step's value, stay right).
    assert set(report.failed) == {"thresholds", "rim_cut"}, report.table()
    assert report.failed["thresholds"] > 0.1
    with pytest.raises(DerivativeError, match="thresholds"):
        report.raise_if_failed()


def test_the_surrogate_is_the_derivative_of_the_smoothed_step_not_of_the_step():
    x = torch.linspace(-0.3, 0.3, 61, dtype=torch.float64, requires_grad=True)
    hard = SurrogateStep.apply(x, 0.05)
    assert set(hard.detach().tolist()) == {0.0, 1.0}  # the forward is the step
    (grad,) = torch.autograd.grad(hard.sum(), x)
    with surrogate_forward():
        smooth = SurrogateStep.apply(x, 0.05)
    expected = torch.autograd.grad(torch.sigmoid(x / 0.05).sum(), x)[0]
    assert torch.allclose(grad, expected) and float(grad.max()) == pytest.approx(1 / (4 * 0.05))
    assert torch.allclose(smooth, torch.sigmoid(x / 0.05))
    # Plain autograd through the step gives the thresholds nothing to learn from.
    plain = Toon(surrogate=False)
    thresholds = torch.zeros(2, requires_grad=True)
    levels = torch.tensor([0.1, 0.5, 1.0], requires_grad=True)
    plain.ramp(x.detach()[:, None], thresholds, levels).sum().backward()
    assert thresholds.grad is None and float(levels.grad.abs().sum()) > 0
    thresholds.grad = None
    Toon().ramp(x.detach()[:, None], thresholds, levels).sum().backward()
    assert float(thresholds.grad.abs().min()) > 0  # while the surrogate gives them one


_USER_MODELS = textwrap.dedent(
    """
    import torch
    from dmtrec.render.shaders import Param, ShadingModel


    class _Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3.0 * x * x


    class _WrongCube(_Cube):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2.0 * x * x  # planted: should be 3 x^2


    class Cubed(ShadingModel):
        needs_light = False
        params = (Param("albedo", "texture", 3, 0.0, 1.0, 0.5),)
        cube = _Cube

        def shade(self, g, p):
            return self.cube.apply(p["albedo"])


    class WrongCubed(Cubed):
        cube = _WrongCube
    """
)


def test_shader_check_command_passes_a_right_and_fails_a_wrong_user_derivative(tmp_path, capsys):
    path = tmp_path / "cubed.py"
    path.write_text(_USER_MODELS)
    assert main(["shader-check", f"{path}:Cubed"]) == 0
    assert "albedo" in capsys.readouterr().out
    assert main(["shader-check", f"{path}:WrongCubed"]) == 1
    captured = capsys.readouterr()
    assert "WRONG" in captured.out
    assert captured.err.strip().splitlines() == [
        f"dmtrec shader-check: error: {path}: derivative disagrees with finite differences for albedo "
        + captured.err.split("for albedo ")[1].strip()
    ]


def test_shader_check_command_checks_every_builtin(capsys):
    assert main(["shader-check", "all", "--gbuffers", "1"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}:" in out for name in BUILTINS)


def _fit_thresholds(model, steps=150):
    """Fit the toon thresholds (only) to renders of the same model with other thresholds, on a
    random G-buffer; returns the (start, fitted, target) thresholds."""
    from dmtrec.render.shaders.check import random_gbuffer, random_values

    gbuffer = random_gbuffer(512, seed=3, dtype=torch.float32)
    values = random_values(model, gbuffer, seed=3)
    target = torch.tensor([-0.3, 0.4])
    with torch.no_grad():
        reference = model.shade(gbuffer, {**values, "thresholds": target})
    thresholds = torch.tensor([0.1, 0.7], requires_grad=True)
    optimizer = torch.optim.Adam([thresholds], lr=0.01)
    for _ in range(steps):
        loss = ((model.shade(gbuffer, {**values, "thresholds": thresholds}) - reference) ** 2).mean()
        if not loss.requires_grad:  # plain autograd: the step cuts the thresholds out of the graph
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return thresholds.detach(), target


def test_the_surrogate_is_what_lets_the_thresholds_converge():
    fitted, target = _fit_thresholds(Toon(surrogate=True))
    assert torch.allclose(fitted, target, atol=0.03), fitted
    stuck, _ = _fit_thresholds(Toon(surrogate=False))
    assert torch.equal(stuck, torch.tensor([0.1, 0.7]))  # plain autograd: no gradient, no move
