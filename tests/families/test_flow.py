"""Normalizing flow: exact inverse, log-det = brute-force Jacobian, exact likelihood, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError
from climgen.families.base import build_family
from climgen.families.flow import Flow, num_scales
from climgen.families.flow_couplings import (
    ActNorm,
    Coupling,
    InvertibleConv1x1,
    VariationalDequantizer,
    coupling_mask,
    logistic_mixture_logit_cdf,
    squeeze,
    unsqueeze,
)

COUPLING_KINDS = ["affine", "logistic-mixture"]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: thread synchronisation costs more than it saves on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _perturb(module: torch.nn.Module, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """Move a freshly built flow away from the identity: random coupling outputs and ActNorm."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, Coupling):
                last = m.net[-1]
                last.weight.copy_(std * torch.randn(last.weight.shape, generator=gen))
                last.bias.copy_(std * torch.randn(last.bias.shape, generator=gen))
            elif isinstance(m, ActNorm):
                m.loc.copy_(0.3 * torch.randn(m.loc.shape, generator=gen))
                m.log_scale.copy_(0.3 * torch.randn(m.log_scale.shape, generator=gen))
                m.initialized.fill_(1)
    return module


def _brute_force_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of fn at a single input x (1, C, H, W), from the full autograd Jacobian."""
    jac = jacobian(lambda v: fn(v.view_as(x)).reshape(-1), x.reshape(-1), vectorize=True)
    return torch.linalg.slogdet(jac)[1]


def _tiny_flow(coupling="affine", shape=(4, 4), channels=1, **options) -> Flow:
    torch.manual_seed(0)
    options = {"levels": 2, "steps_per_level": 2, "hidden_channels": 8, **options}
    flow = Flow(channels, shape, periodic=(False, True), coupling=coupling, **options)
    return _perturb(flow).double().eval()


@pytest.mark.parametrize(
    "shape, expected", [((16, 32), 3), ((12, 20), 2), ((15, 32), 0), ((64, 256), 3), ((2, 4), 1)]
)
def test_number_of_scales_follows_the_factors_of_two(shape, expected):
    assert num_scales(shape, levels=3) == expected


def test_squeeze_is_a_permutation_with_inverse():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    y = squeeze(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)
    assert torch.equal(unsqueeze(y), x)
    # each output channel holds one sub-lattice of one input channel
    assert torch.equal(y[:, 0], x[:, 0, 0::2, 0::2])
    assert torch.equal(y[:, 3], x[:, 0, 1::2, 1::2])


@pytest.mark.parametrize("coupling", COUPLING_KINDS)
@pytest.mark.parametrize("shape, channels", [((16, 32), 1), ((6, 10), 2), ((5, 6), 1)])
def test_flow_inverts_float32_and_float64(coupling, shape, channels):
    flow = _tiny_flow(coupling, shape, channels, levels=3)
    x = torch.randn(3, channels, *shape, dtype=torch.float64)
    z, _ = flow(x)
    assert z.shape == x.shape
    torch.testing.assert_close(flow.inverse(z), x, rtol=0, atol=1e-10)
    flow32, x32 = flow.float(), x.float()
    torch.testing.assert_close(flow32.inverse(flow32(x32)[0]), x32, rtol=0, atol=1e-4)


def _layers(channels=4, shape=(3, 4)):
    torch.manual_seed(1)
    mask = coupling_mask(channels, shape, "channel", flip=False)
    board = coupling_mask(channels, shape, "checkerboard", flip=True)
    return {
        "actnorm": ActNorm(channels),
        "invconv-random": InvertibleConv1x1(channels, init="random"),
        "affine-channel": Coupling(mask, 8, transform="affine"),
        "affine-checkerboard": Coupling(board, 8, transform="affine", periodic=(True, True)),
        "logistic-mixture": Coupling(mask, 8, transform="logistic-mixture", components=3),
    }


@pytest.mark.parametrize("name", list(_layers()))
def test_layer_logdet_matches_brute_force_jacobian(name):
    layer = _perturb(_layers()[name], seed=2, std=0.3).double().eval()
    if isinstance(layer, InvertibleConv1x1):
        with torch.no_grad():  # make L and U non-trivial as well
            layer.lower.add_(0.2 * torch.randn_like(layer.lower))
            layer.upper.add_(0.2 * torch.randn_like(layer.upper))
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64)
    y, logdet = layer(x)
    expected = _brute_force_logdet(lambda v: layer(v)[0], x)
    torch.testing.assert_close(logdet[0], expected, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(layer.inverse(y), x, rtol=0, atol=1e-9)


@pytest.mark.parametrize("coupling", COUPLING_KINDS)
@pytest.mark.parametrize("shape, channels", [((4, 4), 1), ((4, 4), 2), ((3, 4), 1)])
def test_flow_logdet_matches_brute_force_jacobian(coupling, shape, channels):
    flow = _tiny_flow(coupling, shape, channels)
    x = torch.randn(1, channels, *shape, dtype=torch.float64)
    _, logdet = flow(x)
    expected = _brute_force_logdet(lambda v: flow(v)[0], x)
    torch.testing.assert_close(logdet[0], expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("coupling", COUPLING_KINDS)
def test_identity_flow_gives_the_standard_normal_density(coupling):
    torch.manual_seed(0)
    flow = Flow(
        2,
        (8, 12),
        coupling=coupling,
        levels=3,
        steps_per_level=2,
        hidden_channels=8,
        actnorm_data_init=False,
        invconv_init="identity",
    ).double()
    x = torch.randn(5, 2, 8, 12, dtype=torch.float64)
    d = x[0].numel()
    analytic = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(dim=(1, 2, 3))
    for mode in (flow.train, flow.eval):  # no ActNorm data init when it is switched off
        mode()
        torch.testing.assert_close(flow.log_prob(x), analytic, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(
        flow.bits_per_dim(x), -analytic / (d * math.log(2)), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(flow.inverse(x), x, rtol=0, atol=1e-12)


def test_logistic_mixture_cdf_is_monotone_and_invertible():
    from climgen.families.flow_couplings import _invert_logit_cdf

    gen = torch.Generator().manual_seed(0)
    k = 5
    logits, means, log_scales = (
        torch.randn(7, k, generator=gen, dtype=torch.float64) for _ in "abc"
    )
    means, log_scales = 3 * means, log_scales - 1
    x = torch.linspace(-30, 30, 4001, dtype=torch.float64)[:, None].expand(-1, 7)
    u, log_pdf = logistic_mixture_logit_cdf(x, logits, means, log_scales)
    assert (u.diff(dim=0) > 0).all(), "σ⁻¹(F) must be strictly increasing"
    # the log-pdf is the derivative of the CDF F = σ(σ⁻¹(F))
    x_grad = x.clone().requires_grad_(True)
    cdf = torch.sigmoid(logistic_mixture_logit_cdf(x_grad, logits, means, log_scales)[0])
    (pdf,) = torch.autograd.grad(cdf.sum(), x_grad)
    torch.testing.assert_close(log_pdf.exp(), pdf, rtol=1e-9, atol=1e-14)
    targets = torch.randn(200, 7, generator=gen, dtype=torch.float64) * 5
    x_back = _invert_logit_cdf(targets, logits, means, log_scales)
    u_back, _ = logistic_mixture_logit_cdf(x_back, logits, means, log_scales)
    torch.testing.assert_close(u_back, targets, rtol=0, atol=1e-9)


def test_variational_dequantizer_log_density_matches_jacobian():
    torch.manual_seed(0)
    deq = _perturb(VariationalDequantizer(1, (4, 4), 8, steps=2), seed=3, std=0.3).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    eps = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    u, log_q = deq.transform(eps, x)
    assert ((u > 0) & (u < 1)).all()
    log_det = _brute_force_logdet(lambda e: deq.transform(e, x)[0], eps)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum()
    torch.testing.assert_close(log_q[0], normal - log_det, rtol=1e-8, atol=1e-8)


def test_uniform_dequantization_bounds_the_exact_bin_probability():
    # Identity flow ⇒ p = N(0, I); the exact log-probability of x's bin is
    # Σ log(Φ(x + Δ/2) − Φ(x − Δ/2)), and the dequantised estimate is a lower bound (Jensen).
    delta = 0.5
    flow = Flow(
        1,
        (4, 4),
        levels=1,
        steps_per_level=1,
        hidden_channels=4,
        actnorm_data_init=False,
        invconv_init="identity",
        dequantization="uniform",
        bin_width=delta,
    ).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.round(torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64) / delta) * delta
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = torch.log(normal.cdf(x + delta / 2) - normal.cdf(x - delta / 2)).sum()
    with torch.no_grad():
        draws = flow.dequantized_log_prob(x.expand(400, -1, -1, -1), generator=gen)
    mean, se = draws.mean(), draws.std() / math.sqrt(len(draws))
    assert mean <= exact + 3 * se
    assert exact - mean < 0.02 * x.numel()  # the gap KL(q ‖ p_bin) is small for small Δ


class _AdamContext:
    """Minimal StepContext (the conftest one is function-scoped; this fixture is per module)."""

    def __init__(self, family):
        spec = family.optimizer_groups()["main"]
        self.optimizer = torch.optim.Adam(spec.params, lr=spec.lr, betas=spec.betas)

    def step(self, loss, group):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


@pytest.fixture(scope="module")
def trained():
    """A tiny flow trained 150 steps on smooth periodic GRFs (k⁻³), with its loss history."""
    fields = make_grf(64, 16, 16, slope=-3.0, seed=0, dtype=np.float32)
    data = torch.from_numpy(fields / fields.std())[:, None]
    torch.manual_seed(0)
    flow = Flow(
        1, (16, 16), periodic=(True, True), levels=2, steps_per_level=2, hidden_channels=16, lr=3e-3
    )
    ctx, picker, history = _AdamContext(flow), torch.Generator().manual_seed(0), []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flow.train()
        for step in range(150):
            batch = {"x": data[torch.randint(0, len(data), (16,), generator=picker)]}
            history.append({k: float(v) for k, v in flow.training_step(batch, step, ctx).items()})
    finally:
        torch.set_num_threads(threads)
    return flow.eval(), data, history


def test_training_lowers_bpd_below_the_white_noise_baseline(trained):
    flow, data, history = trained
    bpd = [h["bpd"] for h in history]
    assert all(h["loss"] == h["bpd"] for h in history)
    assert sum(bpd[-10:]) / 10 < sum(bpd[:10]) / 10 - 0.5
    # i.i.d. Gaussian with the data's variance: bpd = ½ log₂(2πe σ²); a smooth field has less
    # entropy, so a flow that learned its correlations must beat this.
    white = 0.5 * math.log2(2 * math.pi * math.e * float(data.var()))
    with torch.no_grad():
        assert float(flow.bits_per_dim(data).mean()) < white - 0.5


def test_temperature_below_one_shrinks_samples(trained):
    flow = trained[0]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    full = flow.sample(32, generator=gen())
    cold = flow.sample(32, generator=gen(), temperature=0.5)
    assert full.shape == (32, 1, 16, 16) and torch.isfinite(full).all()
    assert cold.std() < 0.8 * full.std()


def test_state_dict_round_trip_reproduces_log_prob(trained, tmp_path):
    from safetensors.torch import load_model, save_model

    flow, data, _ = trained
    path = tmp_path / "flow.safetensors"
    save_model(flow, str(path), force_contiguous=True)
    reloaded = build_family("flow", **flow.config)
    load_model(reloaded, str(path))
    x = data[:8]
    with torch.no_grad():
        expected = flow.log_prob(x)
        torch.testing.assert_close(reloaded.eval().log_prob(x), expected, rtol=0, atol=0)
        # the ActNorm "initialized" flags came along: training mode must not re-initialise
        torch.testing.assert_close(reloaded.train().log_prob(x), expected, rtol=0, atol=0)


def test_variational_dequantization_trains(trainer):
    torch.manual_seed(0)
    delta = 0.25
    data = torch.round(torch.randn(32, 1, 8, 8).cumsum(-1) / 3 / delta) * delta
    flow = Flow(
        1,
        (8, 8),
        levels=2,
        steps_per_level=1,
        hidden_channels=8,
        coupling="logistic-mixture",
        dequantization="variational",
        bin_width=delta,
    )
    history = trainer(flow, data, 40, batch_size=8)
    bpd = [h["bpd"] for h in history]
    assert all(math.isfinite(b) for b in bpd)
    assert sum(bpd[-5:]) < sum(bpd[:5])


def test_bad_inputs_name_the_fault():
    with pytest.raises(ClimgenInputError, match="coupling"):
        Flow(1, (8, 8), coupling="spline")
    with pytest.raises(ClimgenInputError, match="bin_width"):
        Flow(1, (8, 8), dequantization="uniform")
    flow = Flow(1, (8, 8), hidden_channels=4)
    with pytest.raises(ClimgenInputError, match=r"\(B, 1, 8, 8\)"):
        flow.log_prob(torch.zeros(2, 1, 8, 9))
    mask = torch.ones(2, 1, 8, 8)
    mask[0, 0, 0, 0] = 0
    with pytest.raises(ClimgenInputError, match="mask"):
        flow.training_step({"x": torch.zeros(2, 1, 8, 8), "mask": mask}, 0, None)
