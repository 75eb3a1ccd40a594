"""Diffusion samplers on a Gaussian target with the exact denoiser / noise predictor.

For x_0 ~ N(0, s² I) everything is analytic: with x = x_0 + σ n the exact denoiser is
D(x; σ) = x s² / (s² + σ²), and with x_t = √ᾱ x_0 + √(1−ᾱ) ε the exact noise predictor is
ε̂(x_t, t) = √(1−ᾱ) x_t / (ᾱ s² + 1 − ᾱ). A correct sampler driven by them must return
samples of variance s² (up to its discretisation error, which must shrink at its order).
"""

from __future__ import annotations

import math

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.families.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DDPMSchedule,
    Diffusion,
    DPMSolver2MSampler,
    EDMSchedule,
    HeunSampler,
    denoiser_from_noise_predictor,
    noise_predictor_from_denoiser,
)

SHAPE = (10000, 1, 2, 2)  # 40,000 independent values: sample variance to ±0.7% (1 s.e.)
F64 = dict(dtype=torch.float64)


# Tiny models: intra-op threads only add contention (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def exact_denoiser(s: float):
    def denoise(x, sigma):
        sigma = sigma.view(-1, 1, 1, 1).to(x)
        return x * s**2 / (s**2 + sigma**2)

    return denoise


def exact_noise_predictor(s: float, schedule: DDPMSchedule):
    def predict_noise(x_t, t):
        a = schedule.alpha_bar(t).view(-1, 1, 1, 1).to(x_t)
        return (1 - a).sqrt() * x_t / (a * s**2 + 1 - a)

    return predict_noise


def counting(model):
    calls = []

    def wrapped(x, level):
        calls.append(1)
        return model(x, level)

    return wrapped, calls


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_heun_recovers_gaussian_variance(s):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), **F64)
    sampler = HeunSampler(EDMSchedule(), steps=64)
    x = sampler(exact_denoiser(s), SHAPE, noise=noise, **F64)
    assert abs(x.mean().item()) < 4 * s / math.sqrt(x.numel())
    assert x.var().item() / s**2 == pytest.approx(1.0, abs=0.025)


@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_heun_default_is_few_step_and_second_order(s):
    # On a Gaussian the probability-flow ODE is linear, so the sampler maps the initial noise
    # to c_N · noise; the exact map is c = s σ_max / √(s² + σ_max²) (x_T = σ_max · noise,
    # x(σ) ∝ √(s² + σ²) along the flow). Compare c_N² / c² − 1.
    schedule = EDMSchedule()
    noise = torch.ones(2, 1, 3, 3, **F64)
    exact = s * schedule.sigma_max / math.sqrt(s**2 + schedule.sigma_max**2)

    def variance_error(steps):
        model, calls = counting(exact_denoiser(s))
        sampler = HeunSampler(schedule, steps)
        x = sampler(model, noise.shape, noise=noise, **F64)
        assert len(calls) == sampler.num_evaluations() == 2 * steps - 1
        torch.testing.assert_close(x, x.flatten()[0].expand_as(x))  # the same factor everywhere
        return (x.flatten()[0].item() / exact) ** 2 - 1

    default = HeunSampler(schedule)
    assert default.num_evaluations() <= 20
    # Heun's discretisation bias at ≤ 20 evaluations is large on the paper's σ grid (ρ = 7,
    # σ ∈ [0.002, 80]): it over-disperses by ~30–50 % here (docs/families.md, Diffusion).
    e10 = variance_error(default.steps)
    assert 0 < e10 < 0.6
    errors = [variance_error(n) for n in (16, 32, 64)]
    assert errors[-1] < 0.01
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.0 < coarse / fine < 5.0  # second order: halving the step quarters the error


@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_dpm_solver_2m_is_second_order_at_one_call_a_step(s):
    # The same exact map as for Heun: the flow takes x_T = σ_max · noise to c · noise.
    schedule = EDMSchedule()
    noise = torch.ones(2, 1, 3, 3, **F64)
    exact = s * schedule.sigma_max / math.sqrt(s**2 + schedule.sigma_max**2)

    def variance_error(sampler):
        model, calls = counting(exact_denoiser(s))
        x = sampler(model, noise.shape, noise=noise, **F64)
        assert len(calls) == sampler.num_evaluations()
        return (x.flatten()[0].item() / exact) ** 2 - 1

    assert DPMSolver2MSampler(schedule, 32).num_evaluations() == 32  # one call a step
    errors = [abs(variance_error(DPMSolver2MSampler(schedule, n))) for n in (32, 64, 128)]
    assert errors[-1] < 0.01
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.0 < coarse / fine < 5.0  # second order: halving the step quarters the error
    # At the default 15 calls it is closer than Heun with as many calls (8 steps, 15 calls).
    dpm, heun = DPMSolver2MSampler(schedule), HeunSampler(schedule, 8)
    assert dpm.num_evaluations() == heun.num_evaluations() == 15
    assert abs(variance_error(dpm)) < abs(variance_error(heun))


def test_dpm_solver_2m_recovers_gaussian_variance_through_the_family():
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), **F64)
    x = DPMSolver2MSampler(EDMSchedule(), steps=64)(exact_denoiser(2.0), SHAPE, noise=noise, **F64)
    assert x.var().item() / 4.0 == pytest.approx(1.0, abs=0.025)
    family = Diffusion(
        channels=1, shape=(8, 8), base_channels=8, channel_mults=(1,), sampler="dpm2m"
    )
    out = family.sample(3, generator=torch.Generator().manual_seed(0), steps=4)
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(ClimgenInputError, match="steps"):
        DPMSolver2MSampler(EDMSchedule(), steps=0)


def test_heun_with_churn_recovers_variance():
    s = 1.0
    x = HeunSampler(EDMSchedule(), steps=64, churn=10.0)(
        exact_denoiser(s), SHAPE, generator=torch.Generator().manual_seed(1), **F64
    )
    assert x.var().item() / s**2 == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("kind, s", [("cosine", 0.5), ("cosine", 2.0), ("linear", 1.0)])
def test_ddpm_ancestral_recovers_gaussian_variance(kind, s):
    schedule = DDPMSchedule(1000, kind)
    model, calls = counting(exact_noise_predictor(s, schedule))
    x = DDPMSampler(schedule)(model, SHAPE, generator=torch.Generator().manual_seed(2), **F64)
    assert len(calls) == 1000
    assert abs(x.mean().item()) < 4 * s / math.sqrt(x.numel())
    assert x.var().item() / s**2 == pytest.approx(1.0, abs=0.035)


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_ddim_recovers_gaussian_variance_and_converges_at_first_order(s):
    schedule = DDPMSchedule(1000, "cosine")
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), **F64)
    model = exact_noise_predictor(s, schedule)
    ratios = {
        n: DDIMSampler(schedule, n, eta=0.0)(model, SHAPE, noise=noise, **F64).var().item() / s**2
        for n in (20, 40, 1000)
    }
    assert ratios[1000] == pytest.approx(1.0, abs=0.025)
    # First order: the bias (an under-dispersion) halves when the steps double.
    e20, e40 = ratios[1000] - ratios[20], ratios[1000] - ratios[40]
    assert e20 > 0 and 1.6 < e20 / e40 < 2.4


def test_ddim_explicit_subsequence_and_eta():
    schedule = DDPMSchedule(100, "cosine")
    model, calls = counting(exact_noise_predictor(1.0, schedule))
    noise = torch.randn(4, 1, 3, 3, **F64)
    DDIMSampler(schedule, [99, 50, 10, 0])(model, noise.shape, noise=noise, **F64)
    assert len(calls) == 4
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    a = DDIMSampler(schedule, 10, eta=1.0)(model, noise.shape, noise=noise, generator=g1, **F64)
    b = DDIMSampler(schedule, 10, eta=1.0)(model, noise.shape, noise=noise, generator=g2, **F64)
    assert not torch.equal(a, b)  # η > 0 draws fresh noise
    with pytest.raises(ClimgenInputError, match="sampling steps"):
        DDIMSampler(schedule, [100, 0])(model, noise.shape, noise=noise, **F64)


def test_ddim_eta0_is_deterministic_with_a_network():
    torch.manual_seed(0)
    model = Diffusion(1, (8, 12), formulation="ddpm", base_channels=8, channel_mults=(1, 2))
    for p in model.parameters():  # leave the zero initialisation: a non-trivial network
        torch.nn.init.normal_(p, std=0.05)
    noise = torch.randn(3, 1, 8, 12)
    a = model.sample(3, sampler="ddim", steps=5, noise=noise)
    b = model.sample(3, sampler="ddim", steps=5, noise=noise)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = model.sample(3, torch.Generator().manual_seed(7), sampler="ddim", steps=5)
    d = model.sample(3, torch.Generator().manual_seed(7), sampler="ddim", steps=5)
    e = model.sample(3, torch.Generator().manual_seed(8), sampler="ddim", steps=5)
    torch.testing.assert_close(c, d, rtol=0, atol=0)
    assert not torch.equal(c, e)


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_formulation_conversions_are_exact_for_exact_models(s):
    schedule = DDPMSchedule(1000, "linear")
    x = torch.randn(6, 1, 3, 3, **F64)
    # ε-model → denoiser at σ on the schedule's grid (no interpolation error there).
    t = torch.tensor([0, 10, 100, 500, 900, 999])
    sigma = schedule.sigmas[t]
    denoise = denoiser_from_noise_predictor(exact_noise_predictor(s, schedule), schedule)
    torch.testing.assert_close(denoise(x, sigma), exact_denoiser(s)(x, sigma))
    # denoiser → ε-model at integer steps.
    predict = noise_predictor_from_denoiser(exact_denoiser(s), schedule)
    torch.testing.assert_close(predict(x, t), exact_noise_predictor(s, schedule)(x, t))
    # Fractional steps between grid points interpolate log σ: exact σ back at the grid.
    torch.testing.assert_close(schedule.timestep_of_sigma(sigma), t.to(torch.float64))
