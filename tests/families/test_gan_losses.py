"""The GAN loss zoo against its formulas on hand-computed outputs; penalties, BEGAN, labels."""

from __future__ import annotations

import math

import pytest
import torch

from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError
from climgen.families.gan import losses as L
from climgen.families.gan.constraints import (
    ReferenceCovariance,
    covariance_loss,
    spectral_loss,
)
from climgen.metrics import log_spectral_distance, rapsd

R, F = 2.0, -1.0  # real and fake discriminator outputs used throughout


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_registry_lists_exactly_the_eight_losses():
    assert L.available_gan_losses() == [
        "minimax",
        "non-saturating",
        "wgan",
        "wgan-gp",
        "lsgan",
        "dragan",
        "began",
        "hinge",
    ]
    with pytest.raises(ClimgenInputError, match="wgan-gp"):
        L.get_gan_loss("wgan_gp")


# (name, expected d_loss(R, F), expected g_loss(F)) from the papers' formulas.
FORMULAS = [
    ("minimax", -math.log(sig(R)) - math.log(1 - sig(F)), math.log(1 - sig(F))),
    ("non-saturating", -math.log(sig(R)) - math.log(1 - sig(F)), -math.log(sig(F))),
    ("wgan", F - R, -F),
    ("wgan-gp", F - R, -F),
    ("lsgan", 0.5 * (R - 1) ** 2 + 0.5 * F**2, 0.5 * (F - 1) ** 2),
    ("dragan", -math.log(sig(R)) - math.log(1 - sig(F)), -math.log(sig(F))),
    ("hinge", max(0, 1 - R) + max(0, 1 + F), -F),
]


@pytest.mark.parametrize("name, d_expected, g_expected", FORMULAS)
def test_loss_matches_formula(name, d_expected, g_expected):
    spec = L.GAN_LOSSES[name]
    assert float(spec.d_loss(t(R), t(F))) == pytest.approx(d_expected, rel=1e-12)
    assert float(spec.g_loss(t(F))) == pytest.approx(g_expected, rel=1e-12)


def test_began_losses_match_formula():
    # real_out = L(x), fake_out = L(G(z)); L_D = L(x) − k L(G(z)), L_G = L(G(z)).
    spec = L.GAN_LOSSES["began"]
    assert float(spec.d_loss(t(0.3), t(0.5), k=0.2)) == pytest.approx(0.3 - 0.2 * 0.5)
    assert float(spec.g_loss(t(0.5))) == pytest.approx(0.5)
    x, rec = (
        torch.zeros(2, 1, 2, 2, dtype=torch.float64),
        torch.ones(2, 1, 2, 2, dtype=torch.float64),
    )
    rec[1] = -3.0
    assert L.reconstruction_error(x, rec).tolist() == [1.0, 3.0]


def test_classifier_losses_are_stable_for_huge_logits():
    big = t(1e4)
    assert torch.isfinite(L.minimax_discriminator_loss(big, -big))
    assert float(L.minimax_discriminator_loss(big, -big)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.nonsaturating_generator_loss(-big)) == pytest.approx(1e4)


def test_reductions():
    r, f = t(2.0, 0.5), t(-1.0, 0.3)
    per_sample = L.hinge_discriminator_loss(r, f, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.0 + 0.0, 0.5 + 1.3])
    assert float(L.hinge_discriminator_loss(r, f, reduction="sum")) == pytest.approx(1.8)
    assert float(L.hinge_discriminator_loss(r, f)) == pytest.approx(0.9)
    with pytest.raises(ClimgenInputError, match="reduction"):
        L.wasserstein_generator_loss(f, reduction="avg")


def test_label_smoothing_changes_the_real_target():
    eps = 0.1
    smoothed = float(L.minimax_discriminator_loss(t(R), t(F), real_target=1 - eps))
    expected = -(1 - eps) * math.log(sig(R)) - eps * math.log(1 - sig(R)) - math.log(1 - sig(F))
    assert smoothed == pytest.approx(expected, rel=1e-12)
    # The smoothed loss is minimised at D(x) = logit(1 − ε), not at +∞.
    r = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([r], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        L.minimax_discriminator_loss(r, t(F), real_target=1 - eps).backward()
        opt.step()
    assert sig(float(r.detach())) == pytest.approx(1 - eps, abs=1e-4)
    ls = float(L.least_squares_discriminator_loss(t(R), t(F), real_target=1 - eps))
    assert ls == pytest.approx(0.5 * (R - 1 + eps) ** 2 + 0.5 * F**2)


def test_label_flip_swaps_pairs_with_probability_p():
    real, fake = torch.zeros(20000), torch.ones(20000)
    r, f = L.flip_labels(real, fake, 0.2, generator=torch.Generator().manual_seed(0))
    assert float(r.mean()) == pytest.approx(0.2, abs=0.015)
    assert torch.equal(r + f, torch.ones(20000))  # pairs swapped, never duplicated
    assert L.flip_labels(real, fake, 0.0)[0] is real


def test_instance_noise_and_annealing():
    assert L.annealed_sigma(0.4, 0, 100) == 0.4
    assert L.annealed_sigma(0.4, 50, 100) == pytest.approx(0.2)
    assert L.annealed_sigma(0.4, 200, 100) == 0.0
    x = torch.zeros(100_000)
    noisy = L.add_instance_noise(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert float(noisy.std()) == pytest.approx(0.3, rel=0.02)
    assert L.add_instance_noise(x, 0.0) is x


class LinearCritic(torch.nn.Module):
    """D(x) = ⟨w, x⟩: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1)


def _unit(shape, scale=1.0):
    w = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return scale * w / w.norm()


@pytest.mark.parametrize("penalty", ["gradient", "dragan"])
def test_penalty_vanishes_for_unit_gradient_norm_critic(penalty):
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(8, 2, 4, 4, dtype=torch.float64, generator=gen)
    fake = torch.randn(8, 2, 4, 4, dtype=torch.float64, generator=gen)

    def run(critic):
        if penalty == "gradient":
            return L.gradient_penalty(critic, real, fake, weight=10.0, generator=gen).detach()
        return L.dragan_penalty(critic, real, weight=10.0, generator=gen).detach()

    assert float(run(LinearCritic(_unit((2, 4, 4))))) == pytest.approx(0.0, abs=1e-8)
    # ‖∇D‖ = 2 everywhere → λ (2 − 1)² = 10; ‖∇D‖ = 0.5 → 10 · 0.25.
    assert float(run(LinearCritic(_unit((2, 4, 4), 2.0)))) == pytest.approx(10.0, rel=1e-8)
    assert float(run(LinearCritic(_unit((2, 4, 4), 0.5)))) == pytest.approx(2.5, rel=1e-8)


def test_gradient_penalty_is_differentiable_in_critic_parameters():
    critic = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )
    real, fake = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    gp = L.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    assert float(gp.detach()) > 0
    gp.backward()
    # (the last bias does not change ∇_x D, so it gets no gradient)
    for p in (critic[1].weight, critic[1].bias, critic[3].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_weight_clipping():
    net = torch.nn.Linear(4, 4)
    with torch.no_grad():
        net.weight.mul_(100)
    L.clip_weights_(net, 0.01)
    assert all(float(p.detach().abs().max()) <= 0.01 for p in net.parameters())


def test_began_k_update_follows_formula_and_stays_in_unit_interval():
    eq = L.BEGANEquilibrium(gamma=0.5, lambda_k=0.1, k0=0.3)
    m = eq.update(t(0.4, 0.6), t(0.1, 0.1))  # L(x) = 0.5, L(G(z)) = 0.1
    balance = 0.5 * 0.5 - 0.1
    assert float(eq.k) == pytest.approx(0.3 + 0.1 * balance)
    assert float(m) == pytest.approx(0.5 + abs(balance))
    for _ in range(100):
        eq.update(t(1.0), t(0.0))  # pushes k up
    assert float(eq.k) == 1.0
    for _ in range(100):
        eq.update(t(0.0), t(1.0))  # pushes k down
    assert float(eq.k) == 0.0
    assert "k" in eq.state_dict()


# --- statistical constraints (constraints.py) ---------------------------------------------------


def _batch(n=32, d=(1, 4, 4), seed=0):
    return torch.randn(n, *d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_covariance_loss_zero_for_identical_batches_and_positive_otherwise():
    x = _batch()
    assert float(covariance_loss(x, x)) == pytest.approx(0.0, abs=1e-10)
    assert float(covariance_loss(x + 3.0, x)) == pytest.approx(0.0, abs=1e-10)  # mean-free
    assert float(covariance_loss(2.0 * x, x)) == pytest.approx(9.0, rel=1e-10)  # (4−1)²
    assert float(covariance_loss(_batch(seed=1), x)) > 0


def test_covariance_loss_equals_explicit_frobenius_norm():
    fake, real = _batch(20, (2, 3, 3), 1), _batch(30, (2, 3, 3), 2)
    sf = torch.cov(fake.flatten(1).T)
    sr = torch.cov(real.flatten(1).T)
    expected = ((sf - sr) ** 2).sum() / (sr**2).sum()
    assert float(covariance_loss(fake, real)) == pytest.approx(float(expected), rel=1e-10)
    ref = ReferenceCovariance(real)
    assert float(ref(fake)) == pytest.approx(float(expected), rel=1e-10)


def test_unbiased_covariance_loss_is_centred_on_zero_for_the_same_distribution():
    biased, unbiased = [], []
    for seed in range(200):
        a, b = _batch(16, (1, 4, 4), 2 * seed), _batch(16, (1, 4, 4), 2 * seed + 1)
        biased.append(float(covariance_loss(a, b)))
        unbiased.append(float(covariance_loss(a, b, unbiased=True)))
    u = torch.tensor(unbiased)
    assert min(biased) > 0.3  # sampling noise of 16-sample covariances in 16 dims
    assert abs(float(u.mean())) < 3 * float(u.std()) / len(u) ** 0.5


def test_covariance_patch_and_gradients():
    fake = _batch(8, (1, 8, 8), 1).requires_grad_(True)
    real = _batch(8, (1, 8, 8), 2)
    full = covariance_loss(fake, real, patch_size=8)
    assert float(full.detach()) == pytest.approx(float(covariance_loss(fake, real).detach()))
    loss = covariance_loss(fake, real, patch_size=3, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    with pytest.raises(ClimgenInputError, match="patch_size"):
        covariance_loss(fake, real, patch_size=9)


def test_spectral_loss_uses_the_metric_definitions_and_has_finite_gradients():
    real = torch.from_numpy(make_grf(8, 32, 64, slope=-3, seed=0))[:, None]
    fake = torch.randn(8, 1, 32, 64, dtype=torch.float64, requires_grad=True)
    loss = spectral_loss(fake, real, dy=1.0, dx=0.5)
    _, pf = rapsd(fake.detach(), 1.0, 0.5)
    _, pr = rapsd(real, 1.0, 0.5)
    assert float(loss.detach()) == pytest.approx(
        float(log_spectral_distance(pf.mean(0), pr.mean(0)))
    )
    assert float(loss.detach()) > 0.5  # white noise vs a k^-3 field: decades apart
    loss.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = fake - 10.0 * fake.grad / fake.grad.norm()
    assert float(spectral_loss(stepped, real, 1.0, 0.5)) < float(loss.detach())
