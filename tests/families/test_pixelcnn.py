"""PixelCNN: raster causality, no blind spot, normalised likelihoods, exact sampling, training."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from climgen.errors import ClimgenInputError
from climgen.families import available_families, build_family
from climgen.families.pixelcnn import (
    MaskedConv2d,
    PixelCNN,
    discretized_logistic_mixture_bin_log_probs,
    discretized_logistic_mixture_log_prob,
    gaussian_mixture_log_prob,
)

TINY = dict(hidden_channels=8, n_layers=3, kernel_size=3, mixtures=3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registered_and_rebuilt_from_its_json_config():
    assert "pixelcnn" in available_families()
    model = build_family("pixelcnn", channels=2, shape=(6, 7), output="gaussian-mixture", **TINY)
    assert isinstance(model, PixelCNN)
    config = json.loads(json.dumps(model.config))
    rebuilt = build_family("pixelcnn", **config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 6, 7)
    torch.testing.assert_close(rebuilt.log_prob(x), model.log_prob(x))


# --- causality: the key property --------------------------------------------------------------
def _input_gradients(model: PixelCNN, x: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
    """|d (all parameters of channel c at (i, j)) / d x|, shape (C, H, W)."""
    x = x.clone().requires_grad_(True)
    out = model.net(x)
    per_channel = out.shape[1] // model.channels
    out[0, c * per_channel : (c + 1) * per_channel, i, j].pow(2).sum().backward()
    return x.grad[0].abs()


@pytest.mark.parametrize("periodic_x", [False, True])
def test_output_sees_exactly_the_raster_past_without_blind_spot(periodic_x):
    torch.manual_seed(0)
    channels, h, w = 2, 6, 7
    model = PixelCNN(channels, (h, w), periodic=(False, periodic_x), **TINY).double()
    x = torch.randn(1, channels, h, w, dtype=torch.float64)
    order = torch.arange(h * w).view(h, w)  # raster index of each pixel
    for i, j, c in itertools.product(range(h), range(w), range(channels)):
        grad = _input_gradients(model, x, i, j, c)
        future = order > order[i, j]
        assert (grad[:, future] == 0).all(), f"({i},{j},c={c}) sees later pixels"
        assert (grad[c:, i, j] == 0).all(), f"({i},{j},c={c}) sees channels ≥ c at its pixel"
        if c > 0:
            assert (grad[:c, i, j] > 0).all(), f"({i},{j},c={c}) ignores earlier channels"
        if j > 0:
            assert grad[:, i, j - 1].min() > 0, f"({i},{j}) ignores its left neighbour"
        if i > 0:
            assert grad[:, i - 1, j].min() > 0, f"({i},{j}) ignores the pixel above"
        if i > 0 and j + 1 < w:  # the pixel a masked 3×3 stack cannot see
            assert grad[:, i - 1, j + 1].min() > 0, f"({i},{j}) has a blind spot up-right"
        if i > 0 and j == w - 1:  # 6 columns away: only reachable by wrapping
            assert (grad[:, i - 1, 0].min() > 0) == periodic_x


def test_stacked_masked_convolutions_have_the_blind_spot_the_gated_net_avoids():
    torch.manual_seed(0)
    stack = torch.nn.Sequential(
        MaskedConv2d(1, 4, 3, "A"),
        torch.nn.Tanh(),
        *[m for _ in range(3) for m in (MaskedConv2d(4, 4, 3, "B"), torch.nn.Tanh())],
    ).double()
    x = torch.randn(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    stack(x)[0, :, 4, 2].pow(2).sum().backward()
    grad = x.grad[0, 0].abs()
    assert grad[4, 2] == 0 and (grad[4, 3:] == 0).all() and (grad[5] == 0).all()
    assert grad[3, 3] > 0 and grad[4, 1] > 0
    assert grad[3, 4] == 0 and grad[3, 5] == 0  # up-right wedge: earlier in raster order, unseen


def test_mask_types_hide_or_show_the_centre_by_channel_group():
    a = MaskedConv2d(2, 4, 3, "A", data_channels=2)
    b = MaskedConv2d(2, 4, 3, "B", data_channels=2)
    # output groups: channels 0-1 → data channel 0, 2-3 → data channel 1
    expected_a = torch.tensor([[0, 0], [0, 0], [1, 0], [1, 0]], dtype=torch.float32)
    torch.testing.assert_close(a.mask[:, :, 1, 1], expected_a)
    torch.testing.assert_close(b.mask[:, :, 1, 1], torch.tensor([[1.0, 0], [1, 0], [1, 1], [1, 1]]))
    for m in (a, b):
        assert (m.mask[:, :, 0] == 1).all() and (m.mask[:, :, 1, 0] == 1).all()
        assert (m.mask[:, :, 2] == 0).all() and (m.mask[:, :, 1, 2] == 0).all()
    with pytest.raises(ClimgenInputError, match="data_channels"):
        MaskedConv2d(3, 4, 3, "B", data_channels=2)


def test_cropping_to_the_receptive_field_leaves_the_output_unchanged():
    torch.manual_seed(1)
    model = PixelCNN(1, (12, 5), **TINY)
    x = torch.randn(2, 1, 12, 5)
    full = model.net(x)
    rows = model.receptive_field_rows
    for i in range(12):
        top = max(0, i - rows)
        torch.testing.assert_close(model.net(x[:, :, top : i + 1])[:, :, -1], full[:, :, i])


# --- output distributions ---------------------------------------------------------------------
def test_discretised_logistic_bin_probabilities_sum_to_one():
    gen = torch.Generator().manual_seed(0)
    shape = (50, 4)
    logit_pi = 3 * torch.randn(shape, generator=gen, dtype=torch.float64)
    mu = 8 * torch.rand(shape, generator=gen, dtype=torch.float64) - 4  # some beyond ±5
    mu[0] = torch.tensor([-9.0, 9.0, 0.0, 4.99])
    log_s = 10 * torch.rand(shape, generator=gen, dtype=torch.float64) - 7.5  # s ∈ (e^-7.5, e^2.5)
    for bins, value_range in ((256, (-5.0, 5.0)), (7, (-1.0, 2.0))):
        log_p = discretized_logistic_mixture_bin_log_probs(logit_pi, mu, log_s, bins, value_range)
        assert log_p.shape == (50, bins)
        torch.testing.assert_close(
            log_p.exp().sum(-1), torch.ones(50, dtype=torch.float64), rtol=0, atol=1e-10
        )


def test_discretised_logistic_matches_scipy_and_clamps_to_the_edge_bins():
    lo, hi, bins = -1.0, 2.0, 6  # width 0.5, edges -1, -0.5, ..., 2
    logit_pi = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
    mu = torch.tensor([[0.2, 1.1]], dtype=torch.float64)
    log_s = torch.log(torch.tensor([[0.3, 0.7]], dtype=torch.float64))
    pi = torch.softmax(logit_pi, -1)[0].numpy()
    edges = np.r_[-np.inf, np.linspace(lo, hi, bins + 1)[1:-1], np.inf]
    cdf = sum(p * stats.logistic.cdf(edges, m, s) for p, m, s in zip(pi, [0.2, 1.1], [0.3, 0.7]))
    expected = np.log(np.diff(cdf))
    got = discretized_logistic_mixture_bin_log_probs(logit_pi, mu, log_s, bins, (lo, hi))[0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    x = torch.tensor([-7.0, -0.9, 0.1, 0.6, 1.99, 2.0, 30.0], dtype=torch.float64)
    bin_of_x = [0, 0, 2, 3, 5, 5, 5]
    value = discretized_logistic_mixture_log_prob(
        x, logit_pi.expand(7, 2), mu.expand(7, 2), log_s.expand(7, 2), bins, (lo, hi)
    )
    np.testing.assert_allclose(value.numpy(), expected[bin_of_x], rtol=1e-10)


def test_gaussian_mixture_nll_matches_scipy():
    weights, means, sigmas = [0.2, 0.5, 0.3], [-1.0, 0.5, 2.0], [0.4, 1.3, 0.8]
    x = np.array([-2.0, -0.7, 0.0, 1.1, 3.5])
    expected = np.log(sum(w * stats.norm.pdf(x, m, s) for w, m, s in zip(weights, means, sigmas)))
    params = [
        torch.tensor(np.log(weights)).expand(5, 3),
        torch.tensor(means).expand(5, 3),
        torch.tensor(np.log(sigmas)).expand(5, 3),
    ]
    got = gaussian_mixture_log_prob(torch.tensor(x), *params)
    np.testing.assert_allclose(-got.numpy(), -expected, rtol=1e-12)


@pytest.mark.parametrize("channels, shape", [(2, (2, 2)), (1, (2, 3))])
def test_the_autoregressive_model_sums_to_one_over_all_fields(channels, shape):
    """Σ over every discretised field of P(field) = 1: fails if any conditional leaks."""
    torch.manual_seed(2)
    bins, value_range = 3, (-1.5, 1.5)
    model = PixelCNN(channels, shape, bins=bins, value_range=value_range, **TINY).double()
    centres = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    dims = channels * math.prod(shape)
    fields = torch.cartesian_prod(*[centres] * dims).view(-1, channels, *shape)
    with torch.no_grad():
        log_p = model.log_prob(fields) + dims * math.log(model.bin_width)
    torch.testing.assert_close(
        torch.logsumexp(log_p, 0), torch.tensor(0.0, dtype=torch.float64), rtol=0, atol=1e-9
    )


# --- sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("output", ["logistic-mixture", "gaussian-mixture"])
def test_sampling_is_finite_and_reproducible(output):
    torch.manual_seed(3)
    model = PixelCNN(1, (8, 8), output=output, **TINY).eval()
    a = model.sample(2, generator=torch.Generator().manual_seed(5))
    b = model.sample(2, generator=torch.Generator().manual_seed(5))
    c = model.sample(2, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, 1, 8, 8) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    if output == "logistic-mixture":
        assert a.min() >= -5 and a.max() <= 5


@pytest.mark.parametrize("output", ["logistic-mixture", "gaussian-mixture"])
def test_samples_follow_the_model_distribution(output):
    """A 1×1 field has no context: its samples must pass a KS test against the model's CDF."""
    torch.manual_seed(4)
    model = PixelCNN(1, (1, 1), output=output, bins=32, value_range=(-3, 3), **TINY).double()
    with torch.no_grad():
        # Random biases make the (context-free) mixture non-trivial.
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
        samples = model.sample(3000, generator=torch.Generator().manual_seed(0))[:, 0, 0, 0]
        logit_pi, mu, log_s = (
            p[0, 0, 0, 0] for p in model.distribution_params(samples[:1, None, None, None])
        )
    pi = torch.softmax(logit_pi, -1).numpy()
    mu, scale = mu.numpy(), log_s.exp().numpy()
    if output == "gaussian-mixture":

        def cdf(x):
            return sum(p * stats.norm.cdf(x, m, s) for p, m, s in zip(pi, mu, scale))
    else:
        probs = (
            discretized_logistic_mixture_bin_log_probs(
                *(torch.from_numpy(v) for v in (np.log(pi), mu, np.log(scale))), 32, (-3, 3)
            )
            .exp()
            .numpy()
        )
        below = np.r_[0.0, np.cumsum(probs)]

        def cdf(x):
            pos = np.clip((np.asarray(x) + 3) / model.bin_width, 0, 32)
            k = np.minimum(pos.astype(int), 31)
            return below[k] + probs[k] * (pos - k)

    assert stats.kstest(samples.numpy(), cdf).pvalue > 0.01


# --- training ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("output", ["logistic-mixture", "gaussian-mixture"])
def test_training_lowers_bits_per_dim(output, trainer):
    from climgen.data.samples import make_grf

    fields = make_grf(64, 8, 8, slope=-3.0, seed=0, dtype=np.float32)
    data = torch.from_numpy(fields / fields.std())[:, None]
    model = PixelCNN(1, (8, 8), output=output, lr=3e-3, **TINY)
    with torch.no_grad():
        before = float(model.bits_per_dim(data).mean())
    # 60 steps: both drops were ≥ 0.56 bits/dim at seeds 0, 1, 2 (0.67–1.05 at 150)
    history = trainer(model, data, 60)
    with torch.no_grad():
        after = float(model.bits_per_dim(data).mean())
    assert all(h["loss"] == h["bpd"] for h in history)
    first = sum(h["bpd"] for h in history[:10]) / 10
    last = sum(h["bpd"] for h in history[-10:]) / 10
    assert last < first - 0.2 and after < before - 0.2


def test_mask_restricts_the_loss_to_valid_values():
    torch.manual_seed(5)
    model = PixelCNN(1, (6, 7), **TINY)
    x = torch.randn(3, 1, 6, 7)
    full = model.loss(x)["bpd"]
    torch.testing.assert_close(model.loss(x, mask=torch.ones(3, 1, 6, 7))["bpd"], full)
    torch.testing.assert_close(full, model.bits_per_dim(x).mean())
    mask = torch.zeros(3, 1, 6, 7)
    mask[:, :, 2, 3] = 1
    per_value = -model.value_log_prob(x)[:, 0, 2, 3] / math.log(2)
    torch.testing.assert_close(model.loss(x, mask=mask)["bpd"], per_value.mean())


def test_any_grid_size_and_values_outside_the_bin_range():
    model = PixelCNN(3, (5, 9), **TINY)
    x = 20 * torch.randn(2, 3, 5, 9)
    assert torch.isfinite(model.log_prob(x)).all()
    assert model.net(x).shape == (2, 3 * 3 * TINY["mixtures"], 5, 9)


@pytest.mark.parametrize(
    "options, culprit",
    [
        ({"output": "categorical"}, "output"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"bins": 1}, "bins"),
        ({"value_range": (1.0, -1.0)}, "value_range"),
        ({"mixtures": 0}, "mixtures"),
    ],
)
def test_bad_options_are_named(options, culprit):
    with pytest.raises(ClimgenInputError, match=culprit):
        PixelCNN(1, (8, 8), **options)
    with pytest.raises(ClimgenInputError, match="batch"):
        PixelCNN(1, (8, 8), **TINY).training_step({"x": torch.zeros(2, 1, 8, 9)}, 0, None)
