"""Two-player optimisers on the bilinear game min_x max_y xᵀy, where plain gradient play fails."""

from __future__ import annotations

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.families.base import OptimizerSpec
from climgen.train.two_player import (
    TWO_PLAYER_OPTIMIZERS,
    CompetitiveGradientDescent,
    ExtraAdam,
    OptimisticAdam,
)

X0, Y0 = [1.0, -0.5], [0.5, 1.0]
START = torch.tensor(X0 + Y0).norm().item()


def play(make_optimizer, steps: int) -> float:
    """Simultaneous play of f(x, y) = xᵀy (x minimises, y maximises); return ‖(x, y)‖."""
    x = torch.nn.Parameter(torch.tensor(X0, dtype=torch.float64))
    y = torch.nn.Parameter(torch.tensor(Y0, dtype=torch.float64))
    opt_x, opt_y = make_optimizer([x]), make_optimizer([y])
    for _ in range(steps):
        gx, gy = torch.autograd.grad((x * y).sum(), [x, y])
        x.grad, y.grad = gx, -gy  # y ascends
        opt_x.step()
        opt_y.step()
    return torch.cat([x, y]).norm().item()


def test_simultaneous_gradient_descent_ascent_diverges():
    assert play(lambda p: torch.optim.SGD(p, lr=0.05), 1000) > 2 * START


def test_plain_adam_stalls_on_a_cycle():
    assert play(lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.0, 0.9)), 1000) > 0.05 * START


@pytest.mark.parametrize("cls", [OptimisticAdam, ExtraAdam])
def test_optimistic_and_extragradient_adam_converge(cls):
    # ExtraAdam: two calls per extragradient step.
    steps = 1000 if cls is OptimisticAdam else 2000
    assert play(lambda p: cls(p, lr=0.01, betas=(0.0, 0.9)), steps) < 0.03 * START


def test_extra_adam_alternates_extrapolation_and_update():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = ExtraAdam([p], lr=0.1, betas=(0.0, 0.9))
    p.grad = torch.tensor([1.0])
    opt.step()  # extrapolation: moves to θ − η
    assert opt.extrapolated and float(p.detach()) == pytest.approx(0.9)
    p.grad = torch.tensor([-1.0])  # gradient at the extrapolated point
    opt.step()  # update from the anchor θ = 1 with that gradient
    assert not opt.extrapolated
    assert float(p.detach()) > 1.0
    state = opt.state_dict()
    assert state["param_groups"][0]["extrapolated"] is False


def test_competitive_gradient_descent_converges_where_gda_diverges():
    x = torch.nn.Parameter(torch.tensor(X0, dtype=torch.float64))
    y = torch.nn.Parameter(torch.tensor(Y0, dtype=torch.float64))
    opt = CompetitiveGradientDescent([x], [y], lr=0.2)
    for _ in range(100):
        f = (x * y).sum()
        opt.step(f, f)
    assert torch.cat([x, y]).norm().item() < 0.2 * START
    assert play(lambda p: torch.optim.SGD(p, lr=0.2), 100) > START


def test_cgd_step_matches_closed_form_on_bilinear_game():
    # f = g = x·y (scalars): Δx = −η(y + ηx)/(1 + η²), Δy = η(x + Δx).
    eta, x0, y0 = 0.3, 0.7, -0.4
    x = torch.nn.Parameter(torch.tensor([x0], dtype=torch.float64))
    y = torch.nn.Parameter(torch.tensor([y0], dtype=torch.float64))
    f = (x * y).sum()
    CompetitiveGradientDescent([x], [y], lr=eta).step(f, f)
    dx = -eta * (y0 + eta * x0) / (1 + eta**2)
    assert float(x.detach()) == pytest.approx(x0 + dx, rel=1e-10)
    assert float(y.detach()) == pytest.approx(y0 + eta * (x0 + dx), rel=1e-10)


def test_factories_build_from_optimizer_specs():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    assert isinstance(
        TWO_PLAYER_OPTIMIZERS["optimistic-adam"](
            OptimizerSpec([a], lr=1e-3, kind="optimistic-adam")
        ),
        OptimisticAdam,
    )
    assert isinstance(
        TWO_PLAYER_OPTIMIZERS["extragradient"](OptimizerSpec([a], kind="x")), ExtraAdam
    )
    cgd = TWO_PLAYER_OPTIMIZERS["cgd"](
        OptimizerSpec([a, b], lr=0.1, kind="cgd", extra={"min_params": [a], "max_params": [b]})
    )
    assert isinstance(cgd, CompetitiveGradientDescent)
    with pytest.raises(ClimgenInputError, match="min_params"):
        TWO_PLAYER_OPTIMIZERS["cgd"](OptimizerSpec([a, b], kind="cgd"))
