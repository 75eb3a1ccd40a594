"""Diffusion family: forward process, EDM preconditioning, objectives, U-Net, guidance, training."""

from __future__ import annotations

import math

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.families.base import build_family
from climgen.families.diffusion import (
    DDPMSchedule,
    Diffusion,
    EDMLoss,
    EDMSchedule,
    EpsilonLoss,
    UNet,
    cosine_betas,
    guided,
    linear_betas,
)

# Tiny models: intra-op threads only add contention; every test starts from the same seed, so
# the weights of the models it builds do not depend on test order (fixtures in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread", "seeded_torch")


# --- schedules -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_forward_process_matches_closed_form(kind):
    schedule = DDPMSchedule(1000, kind)
    x0 = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = 20000
    for step in (0, 100, 500, 900, 999):
        t = torch.full((n,), step)
        noise = torch.randn(
            n, 2, 3, 3, generator=torch.Generator().manual_seed(step), dtype=x0.dtype
        )
        x_t = schedule.add_noise(x0.expand(n, -1, -1, -1), noise, t)
        a = schedule.alphas_cumprod[step].item()
        se = math.sqrt((1 - a) / n)
        assert (x_t.mean(0) - math.sqrt(a) * x0[0]).abs().max() < 5 * se
        # Variance 1 − ᾱ_t per value (relative s.e. √(2/n) ≈ 1 %).
        torch.testing.assert_close(x_t.var(0), torch.full_like(x0[0], 1 - a), rtol=0.05, atol=1e-12)


def test_beta_schedules_follow_the_papers():
    t = torch.arange(1000, dtype=torch.float64)
    s = 0.008
    f = (
        torch.cos(((t + 1) / 1000 + s) / (1 + s) * math.pi / 2) ** 2
        / math.cos(s / (1 + s) * math.pi / 2) ** 2
    )
    cosine = DDPMSchedule(1000, "cosine")
    # ᾱ_t = f(t)/f(0) (Nichol & Dhariwal eq. 17) wherever the β clip at 0.999 is not active.
    unclipped = cosine.betas < 0.999
    torch.testing.assert_close(cosine.alphas_cumprod[unclipped], f[unclipped], rtol=1e-9, atol=0)
    assert unclipped[:-1].all()
    linear = linear_betas(1000)
    assert linear[0].item() == pytest.approx(1e-4) and linear[-1].item() == pytest.approx(0.02)
    assert linear_betas(250)[-1].item() == pytest.approx(0.08)  # scaled by 1000/T
    assert (cosine_betas(50) > 0).all() and (torch.diff(cosine.alphas_cumprod) < 0).all()
    torch.testing.assert_close(
        cosine.sigmas, ((1 - cosine.alphas_cumprod) / cosine.alphas_cumprod).sqrt()
    )


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_sampling_timesteps(kind):
    schedule = DDPMSchedule(1000, kind)
    full = schedule.timesteps()
    assert full.tolist() == list(range(999, -1, -1))
    t = schedule.timesteps(20, max_sigma=80.0)
    assert len(t) == 20 and t[-1] == 0 and (torch.diff(t) < 0).all()
    # Starts at the noisiest step with σ_t ≤ 80: the next step is above it.
    assert schedule.sigmas[t[0]] <= 80.0 < schedule.sigmas[t[0] + 1]
    with pytest.raises(ClimgenInputError, match="sampling steps"):
        schedule.timesteps(0)


def test_edm_preconditioning_matches_the_paper():
    sd = 0.7
    schedule = EDMSchedule(sigma_data=sd)
    sigma = torch.tensor([0.002, 0.1, 0.7, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = schedule.precondition(sigma)
    # Karras et al. (2022), Table 1.
    torch.testing.assert_close(c_skip, sd**2 / (sigma**2 + sd**2))
    torch.testing.assert_close(c_out, sigma * sd / (sd**2 + sigma**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c_noise, 0.25 * sigma.log())
    # What they are designed for (appendix B.6): unit-variance network input and target, and
    # λ(σ) = 1 / c_out² so every noise level contributes equally.
    torch.testing.assert_close(c_in**2 * (sd**2 + sigma**2), torch.ones_like(sigma))
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones_like(sigma))
    torch.testing.assert_close(schedule.loss_weight(sigma) * c_out**2, torch.ones_like(sigma))


def test_edm_sigma_discretisation_and_training_distribution():
    schedule = EDMSchedule(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    sig = schedule.sigmas(10)
    assert sig.shape == (11,) and sig[-1] == 0
    assert sig[0].item() == pytest.approx(80.0) and sig[-2].item() == pytest.approx(0.002)
    assert (torch.diff(sig) < 0).all()
    # Eq. 5: σ_i^{1/ρ} is linear in i.
    root = sig[:-1] ** (1 / 7)
    torch.testing.assert_close(torch.diff(root), torch.diff(root)[:1].expand(9))
    log_sigma = schedule.sample_training_sigma(
        40000, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.03)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.03)


# --- objectives ----------------------------------------------------------------------------
def test_epsilon_loss_is_zero_for_the_exact_predictor():
    schedule = DDPMSchedule(100, "cosine")
    target = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x0 = target.expand(64, -1, -1, -1)  # data = a single known field: ε is recoverable

    def exact(x_t, t):
        a = schedule.alpha_bar(t).view(-1, 1, 1, 1).to(x_t)
        return (x_t - a.sqrt() * target) / (1 - a).sqrt()

    g = torch.Generator().manual_seed(1)
    assert EpsilonLoss(exact, schedule)(x0, generator=g).item() < 1e-8
    zero = EpsilonLoss(lambda x_t, t: torch.zeros_like(x_t), schedule)(x0, generator=g)
    assert zero.item() == pytest.approx(1.0, abs=0.15)  # E ε² = 1
    # The weight/mask: errors confined to masked-out values do not count.
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :2] = 0

    def wrong_where_masked(x_t, t):
        return exact(x_t, t) + 5 * (1 - mask)

    loss = EpsilonLoss(wrong_where_masked, schedule)
    assert loss(x0, generator=g).item() > 1
    assert loss(x0, weight=mask, generator=g).item() < 1e-8
    with pytest.raises(ClimgenInputError, match="does not broadcast"):
        loss(x0, weight=torch.ones(3, 4, 4))


def test_edm_loss_exact_and_untrained_denoisers():
    sd = 1.0
    schedule = EDMSchedule(sigma_data=sd)
    target = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    exact = EDMLoss(lambda x, sigma: target.expand_as(x), schedule)
    assert exact(target.expand(64, -1, -1, -1), generator=g).item() < 1e-10
    # An untrained preconditioned network (F ≡ 0, D = c_skip x) scores E λ c_out² = 1 on data
    # of variance σ_d², whatever σ is drawn.
    x0 = sd * torch.randn(4096, 1, 4, 4, generator=g, dtype=torch.float64)

    def untrained(x, sigma):
        return schedule.precondition(sigma)[0].view(-1, 1, 1, 1) * x

    assert EDMLoss(untrained, schedule)(x0, generator=g).item() == pytest.approx(1.0, abs=0.05)


# --- U-Net ---------------------------------------------------------------------------------
def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    # Undo the zero initialisation of output layers so every path matters.
    torch.manual_seed(0)
    for p in net.parameters():
        if p.ndim > 1:
            torch.nn.init.normal_(p, std=0.5 / math.sqrt(p[0].numel()))
    return net


@pytest.mark.parametrize("shape", [(13, 27), (7, 9), (16, 32)])
def test_unet_any_grid(shape):
    net = UNet(2, 2, base_channels=8, channel_mults=(1, 2, 2))
    x = torch.randn(2, 2, *shape)
    assert (net(x, torch.rand(2)) == 0).all()  # zero-initialised output
    out = _randomised(net)(x, torch.rand(2))
    assert out.shape == x.shape and out.abs().mean() > 0


@pytest.mark.parametrize("periodic, shift", [((True, True), (4, 8)), ((False, True), (0, 12))])
def test_unet_commutes_with_rolls_along_periodic_axes(periodic, shift):
    # Three levels halve the grid twice: shifts by multiples of 4 are exact symmetries, and the
    # attention (at every level, no positional embedding) is permutation equivariant.
    net = _randomised(
        UNet(
            1,
            1,
            base_channels=8,
            channel_mults=(1, 2, 2),
            attention_levels=(0, 1, 2),
            periodic=periodic,
        )
    ).double()
    x = torch.randn(2, 1, 12, 16, dtype=torch.float64)
    level = torch.tensor([0.3, -0.5], dtype=torch.float64)
    rolled = net(torch.roll(x, shift, dims=(-2, -1)), level)
    torch.testing.assert_close(rolled, torch.roll(net(x, level), shift, dims=(-2, -1)))
    if not periodic[0]:  # walls in y: a roll along y is not a symmetry
        moved = net(torch.roll(x, 4, dims=-2), level)
        assert not torch.allclose(moved, torch.roll(net(x, level), 4, dims=-2), atol=1e-6)


def test_classifier_free_guidance():
    net = _randomised(UNet(1, 1, base_channels=8, channel_mults=(1, 2), cond_channels=2))
    x, level = torch.randn(3, 1, 8, 12), torch.rand(3)
    cond = torch.randn(3, 2, 8, 12)

    def model(x, level, cond=None):
        return net(x, level, cond=cond)

    conditional, null = net(x, level, cond=cond), net(x, level)
    torch.testing.assert_close(guided(model, cond, 1.0)(x, level), conditional)
    torch.testing.assert_close(guided(model, cond, 0.0)(x, level), null)
    torch.testing.assert_close(
        guided(model, cond, 3.0)(x, level), null + 3.0 * (conditional - null)
    )
    # Condition dropout: dropped samples get exactly the null condition, which differs from a
    # zero condition (the indicator channel).
    keep = torch.tensor([1.0, 0.0, 1.0])
    dropped = net(x, level, cond=cond, cond_keep=keep)
    torch.testing.assert_close(dropped[1], null[1])
    torch.testing.assert_close(dropped[[0, 2]], conditional[[0, 2]])
    assert not torch.allclose(net(x, level, cond=torch.zeros_like(cond)), null)


# --- the family ----------------------------------------------------------------------------
TINY = dict(base_channels=8, channel_mults=(1, 2), lr=2e-3)


def test_family_registration_config_and_errors():
    model = build_family("diffusion", channels=1, shape=(8, 12), **TINY)
    assert isinstance(model, Diffusion) and model.name == "diffusion"
    rebuilt = build_family("diffusion", **model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert model.ema_module() is model.unet
    assert set(model.optimizer_groups()) == {"main"}
    with pytest.raises(ClimgenInputError, match="formulation"):
        Diffusion(1, (8, 12), formulation="vp")
    with pytest.raises(ClimgenInputError, match="sampler"):
        Diffusion(1, (8, 12), sampler="euler")
    with pytest.raises(ClimgenInputError, match="attention_levels"):
        Diffusion(1, (8, 12), channel_mults=(1, 2), attention_levels=(3,))
    with pytest.raises(ClimgenInputError, match="cond"):
        model.sample(2, cond=torch.zeros(2, 1, 8, 12))
    with pytest.raises(ClimgenInputError, match=r"batch\['x'\]"):
        model.training_step({"x": torch.zeros(2, 1, 8, 8)}, 0, None)


def test_churn_and_eta_passed_to_sample_override_the_options():
    """``sample(churn=c)`` is the family built with ``churn=c`` (``eta`` likewise for DDIM);
    ``None`` keeps the option."""
    plain = build_family("diffusion", channels=1, shape=(8, 12), **TINY)
    churned = build_family("diffusion", **{**plain.config, "churn": 4.0})
    churned.load_state_dict(plain.state_dict())
    noise = torch.randn(2, 1, 8, 12, generator=torch.Generator().manual_seed(1))

    def draw(model, **kw):
        return model.sample(2, torch.Generator().manual_seed(0), steps=3, noise=noise, **kw)

    assert torch.equal(draw(plain, churn=4.0), draw(churned))
    assert torch.equal(draw(churned, churn=0.0), draw(plain))
    assert not torch.equal(draw(plain), draw(churned))
    stochastic = build_family("diffusion", **{**plain.config, "ddim_eta": 1.0})
    stochastic.load_state_dict(plain.state_dict())
    assert torch.equal(draw(plain, sampler="ddim", eta=1.0), draw(stochastic, sampler="ddim"))
    assert not torch.equal(draw(plain, sampler="ddim"), draw(stochastic, sampler="ddim"))


@pytest.mark.slow
@pytest.mark.parametrize("formulation", ["edm", "ddpm"])
def test_tiny_diffusion_learns(formulation, tiny_grf, trainer):
    model = Diffusion(1, (16, 16), periodic=(True, True), formulation=formulation, **TINY)
    val = tiny_grf[:32]

    def val_loss():
        with torch.no_grad():
            return model.loss(val, generator=torch.Generator().manual_seed(0)).item()

    before = val_loss()
    # 60 steps: after/before was 0.65–0.67 (edm) and 0.34–0.35 (ddpm) at seeds 0, 1, 2, and
    # the last 20 losses averaged 0.45–0.84 of the first 20 (0.63 and 0.32 after 100 steps)
    history = trainer(model, tiny_grf, 60, batch_size=16)
    after = val_loss()
    assert before == pytest.approx(1.0, abs=0.25)  # untrained: unit loss by construction
    assert after < 0.8 * before
    losses = [h["loss"] for h in history]
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    for sampler in ("heun", "ddim", "ddpm"):
        x = model.sample(3, torch.Generator().manual_seed(0), sampler=sampler, steps=4)
        assert x.shape == (3, 1, 16, 16) and torch.isfinite(x).all()


def test_conditional_family_trains_with_masks_and_samples(tiny_grf, trainer):
    model = Diffusion(1, (16, 16), cond_channels=1, cond_dropout=0.2, guidance=2.0, **TINY)
    cond = tiny_grf.roll(1, dims=0)
    history = trainer(model, tiny_grf, 5, batch_size=8, cond=cond)
    assert all(math.isfinite(h["loss"]) for h in history)
    mask = torch.ones(4, 1, 16, 16)
    mask[..., :8] = 0
    out = model.training_step({"x": tiny_grf[:4], "mask": mask, "cond": cond[:4]}, 0, _NoStep())
    assert set(out) == {"loss"} and not out["loss"].requires_grad
    g = torch.Generator().manual_seed(0)
    a = model.sample(2, g, cond=cond[:1], steps=3)
    b = model.sample(2, torch.Generator().manual_seed(0), cond=cond[:1], steps=3, guidance=1.0)
    assert a.shape == b.shape == (2, 1, 16, 16)
    assert not torch.equal(a, b)  # guidance 2 ≠ plain conditional


class _NoStep:
    device = torch.device("cpu")

    def step(self, loss, group):
        assert group == "main" and loss.requires_grad

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()


def test_blocked_attention_equals_full_attention():
    from climgen.families.diffusion.unet import SelfAttention2d

    torch.manual_seed(0)
    att = SelfAttention2d(32)
    torch.nn.init.normal_(att.proj.weight)  # the zero-initialised output would hide any error
    x = torch.randn(2, 32, 6, 10)
    full = att(x)
    att.query_block = 7  # 60 cells in 9 blocks, the last one short
    torch.testing.assert_close(att(x), full, rtol=1e-5, atol=1e-6)
