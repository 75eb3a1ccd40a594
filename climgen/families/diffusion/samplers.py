"""Samplers: ancestral DDPM, DDIM, the EDM Heun sampler and DPM-Solver++(2M), each a short
explicit loop.

A sampler is built from a schedule and its settings, and called with a model and a shape:
``sampler(model, shape, generator=None, noise=None)`` → x_0 (shape). The model is a plain
callable (:mod:`.denoisers`): a noise predictor ``ε̂(x_t, t)`` for :class:`DDPMSampler` and
:class:`DDIMSampler`, a denoiser ``D(x; σ)`` for :class:`HeunSampler` and
:class:`DPMSolver2MSampler`. ``noise`` fixes the
initial x_T draw (unit normal); later draws come from ``generator`` (drawn on its device, then
moved, so a CPU generator gives the same samples on any device). ``num_evaluations(steps)``
is the number of model calls.

References
----------
Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*, NeurIPS (Alg. 2).
Nichol & Dhariwal (2021), *Improved DDPM*, ICML (respacing to fewer steps).
Song, Meng & Ermon (2021), *Denoising diffusion implicit models*, ICLR (eq. 12, 16).
Karras, Aittala, Aila & Laine (2022), *Elucidating the design space of diffusion-based
generative models*, NeurIPS (Alg. 1 and 2).
Lu, Zhou, Bao, Chen, Li & Zhu (2022), *DPM-Solver++: fast solver for guided sampling of
diffusion probabilistic models*, arXiv:2211.01095 (Alg. 2, multistep second order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from climgen.errors import ClimgenInputError

from .schedules import DDPMSchedule, SigmaSchedule

__all__ = ["SAMPLERS", "DDPMSampler", "DDIMSampler", "HeunSampler", "DPMSolver2MSampler"]

SAMPLERS = ("heun", "dpm2m", "ddim", "ddpm")


def _normal(shape, generator, device, dtype) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _initial(shape, noise, generator, device, dtype) -> torch.Tensor:
    if noise is None:
        return _normal(shape, generator, device, dtype)
    if tuple(noise.shape) != tuple(shape):
        raise ClimgenInputError(
            f"initial noise has shape {tuple(noise.shape)}, expected {tuple(shape)}"
        )
    return noise.to(device, dtype)


def _steps_of(schedule: DDPMSchedule, steps: int | Sequence[int] | None) -> torch.Tensor:
    """Descending integer steps: all T, ``steps`` evenly spaced, or an explicit subsequence."""
    if steps is None or isinstance(steps, int):
        return schedule.timesteps(steps)
    ts = torch.as_tensor(list(steps), dtype=torch.long).unique().flip(0)
    if ts.numel() == 0 or ts[0] >= schedule.num_steps or ts[-1] < 0:
        raise ClimgenInputError(
            f"sampling steps must lie in [0, {schedule.num_steps - 1}], got {list(steps)}"
        )
    return ts


class DDPMSampler:
    """Ancestral sampling of p(x_{t−1} | x_t) (Ho et al. 2020, Alg. 2), on all T or fewer steps.

    On a subsequence τ_S > … > τ_1 the process is respaced (Nichol & Dhariwal 2021): with
    ᾱ = ᾱ_{τ_i}, ᾱ' = ᾱ_{τ_{i−1}} (1 after the last) and β = 1 − ᾱ/ᾱ',

    .. math::
        x' = \\frac{1}{\\sqrt{1-\\beta}}\\Big(x - \\frac{\\beta}{\\sqrt{1-\\bar\\alpha}}
        \\hat\\varepsilon(x, \\tau_i)\\Big) + \\sigma z,\\qquad
        \\sigma^2 = \\beta\\ (\\text{"large"}) \\text{ or }
        \\tilde\\beta = \\frac{1-\\bar\\alpha'}{1-\\bar\\alpha}\\beta\\ (\\text{"posterior"}).

    No noise is added on the last step. ``steps``: None (all T), an int or explicit steps.
    """

    def __init__(
        self,
        schedule: DDPMSchedule,
        steps: int | Sequence[int] | None = None,
        variance: str = "posterior",
    ):
        if variance not in ("posterior", "large"):
            raise ClimgenInputError(f"unknown DDPM variance {variance!r}; posterior or large")
        self.schedule, self.steps, self.variance = schedule, steps, variance

    def num_evaluations(self) -> int:
        return len(_steps_of(self.schedule, self.steps))

    @torch.no_grad()
    def __call__(
        self,
        predict_noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        ts = _steps_of(self.schedule, self.steps)
        abar = self.schedule.alphas_cumprod[ts].tolist() + [1.0]
        # 1. Start from pure noise x_T ~ N(0, I).
        x = _initial(shape, noise, generator, device, dtype)
        for i, t in enumerate(ts.tolist()):
            a, a_prev = abar[i], abar[i + 1]
            beta = 1 - a / a_prev
            # 2. Predict the noise in x_t.
            eps = predict_noise(x, torch.full((shape[0],), float(t), device=device, dtype=dtype))
            # 3. Mean of p(x_{t'} | x_t): remove the predicted noise of this step.
            x = (x - beta / math.sqrt(1 - a) * eps) / math.sqrt(1 - beta)
            # 4. Add fresh noise, except on the final step.
            if i < len(ts) - 1:
                var = beta if self.variance == "large" else (1 - a_prev) / (1 - a) * beta
                x = x + math.sqrt(var) * _normal(shape, generator, device, dtype)
        return x


class DDIMSampler:
    """DDIM (Song et al. 2021, eq. 12): any subsequence of steps; η = 0 is deterministic.

    With ᾱ = ᾱ_{τ_i}, ᾱ' = ᾱ_{τ_{i−1}} (1 after the last step):

    .. math::
        \\hat x_0 = \\frac{x - \\sqrt{1-\\bar\\alpha}\\,\\hat\\varepsilon}{\\sqrt{\\bar\\alpha}},
        \\quad x' = \\sqrt{\\bar\\alpha'}\\,\\hat x_0
        + \\sqrt{1-\\bar\\alpha'-\\sigma^2}\\,\\hat\\varepsilon + \\sigma z,\\quad
        \\sigma = \\eta\\sqrt{\\frac{1-\\bar\\alpha'}{1-\\bar\\alpha}}
        \\sqrt{1-\\frac{\\bar\\alpha}{\\bar\\alpha'}}

    η = 0: the deterministic probability-flow-like map; η = 1: ancestral DDPM (eq. 16).
    """

    def __init__(
        self, schedule: DDPMSchedule, steps: int | Sequence[int] | None = 50, eta: float = 0.0
    ):
        if eta < 0:
            raise ClimgenInputError(f"DDIM eta must be ≥ 0, got {eta}")
        self.schedule, self.steps, self.eta = schedule, steps, float(eta)

    def num_evaluations(self) -> int:
        return len(_steps_of(self.schedule, self.steps))

    @torch.no_grad()
    def __call__(
        self,
        predict_noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        ts = _steps_of(self.schedule, self.steps)
        abar = self.schedule.alphas_cumprod[ts].tolist() + [1.0]
        # 1. Start from pure noise x_T ~ N(0, I).
        x = _initial(shape, noise, generator, device, dtype)
        for i, t in enumerate(ts.tolist()):
            a, a_prev = abar[i], abar[i + 1]
            # 2. Predict the noise and the clean field it implies.
            eps = predict_noise(x, torch.full((shape[0],), float(t), device=device, dtype=dtype))
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            # 3. Step to ᾱ': re-noise x̂_0 along the predicted noise direction.
            sigma = self.eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            # 4. Stochastic part (η > 0 only).
            if sigma > 0:
                x = x + sigma * _normal(shape, generator, device, dtype)
        return x


class _SigmaLevelSampler:
    """Shared call of the samplers of a denoiser D(x; σ) on ``schedule.sigmas(steps)``: the
    start x_0 ~ N(0, σ_max² I), then ``_solve(denoise_at, x, sigmas, draw)`` with
    ``denoise_at(x, σ)`` (a float σ for the whole batch) and ``draw()`` (a unit normal draw)."""

    schedule: SigmaSchedule
    steps: int

    @torch.no_grad()
    def __call__(
        self,
        denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        sigmas = self.schedule.sigmas(self.steps).tolist()
        n = shape[0]

        def denoise_at(x, s):
            return denoise(x, torch.full((n,), s, device=device, dtype=dtype))

        def draw():
            return _normal(shape, generator, device, dtype)

        x = _initial(shape, noise, generator, device, dtype) * sigmas[0]
        return self._solve(denoise_at, x, sigmas, draw)


class HeunSampler(_SigmaLevelSampler):
    """EDM sampler (Karras et al. 2022, Alg. 2; Alg. 1 when ``churn = 0``).

    Integrates the probability-flow ODE ``dx/dσ = (x − D(x; σ)) / σ`` from σ_0 = σ_max to 0
    with Heun's 2nd-order method on the levels of ``schedule.sigmas(steps)`` (ρ = 7 spacing):
    N steps cost 2N − 1 denoiser calls (the last step is Euler), so the default 10 steps use
    19. With ``churn > 0`` each step with ``s_tmin ≤ σ_i ≤ s_tmax`` first raises the noise
    to σ̂ = σ_i (1 + γ), γ = min(churn/N, √2 − 1), adding N(0, (σ̂² − σ_i²) s_noise²) noise.
    """

    def __init__(
        self,
        schedule: SigmaSchedule,
        steps: int = 10,
        *,
        churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
    ):
        if steps < 1 or churn < 0:
            raise ClimgenInputError(f"Heun needs steps ≥ 1 and churn ≥ 0, got {steps}, {churn}")
        self.schedule, self.steps = schedule, int(steps)
        self.churn, self.s_tmin, self.s_tmax, self.s_noise = churn, s_tmin, s_tmax, s_noise

    def num_evaluations(self) -> int:
        return 2 * self.steps - 1

    def _solve(self, denoise_at, x, sigmas, draw):
        def d_of(x, s):  # ODE slope dx/dσ = (x − D(x; σ)) / σ
            return (x - denoise_at(x, s)) / s

        # 1. x starts at x_0 ~ N(0, σ_max² I).
        for i in range(self.steps):
            s_cur, s_next = sigmas[i], sigmas[i + 1]
            # 2. Churn: temporarily raise the noise level to σ̂ (Alg. 2, lines 4–6).
            gamma = 0.0
            if self.churn > 0 and self.s_tmin <= s_cur <= self.s_tmax:
                gamma = min(self.churn / self.steps, math.sqrt(2) - 1)
            s_hat = s_cur * (1 + gamma)
            if gamma > 0:
                x = x + math.sqrt(s_hat**2 - s_cur**2) * self.s_noise * draw()
            # 3. Euler step from σ̂ to σ_{i+1}.
            slope = d_of(x, s_hat)
            x_next = x + (s_next - s_hat) * slope
            # 4. Heun correction: average with the slope at the end point (not at σ = 0).
            if s_next > 0:
                x_next = x + (s_next - s_hat) * 0.5 * (slope + d_of(x_next, s_next))
            x = x_next
        return x


class DPMSolver2MSampler(_SigmaLevelSampler):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on the EDM σ levels: one denoiser call a step.

    With x = x_0 + σ n (α = 1) and λ = −log σ, the exact solution of the probability-flow
    ODE from σ_i to σ_{i+1} is x_{i+1} = (σ_{i+1}/σ_i) x_i + (1 − σ_{i+1}/σ_i) D̄, where D̄
    is the denoiser's average over the step (weights e^λ). The first step and the last
    (σ_{i+1} = 0, where x = D̄) take D̄ = D_i (first order); the others extrapolate linearly
    in λ from the previous call, D̄ = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1}, r = h_{i−1}/h_i,
    h_i = λ_{i+1} − λ_i: second order with N calls for N steps, against Heun's 2N − 1.
    """

    def __init__(self, schedule: SigmaSchedule, steps: int = 15):
        if steps < 1:
            raise ClimgenInputError(f"DPM-Solver++(2M) needs steps ≥ 1, got {steps}")
        self.schedule, self.steps = schedule, int(steps)

    def num_evaluations(self) -> int:
        return self.steps

    def _solve(self, denoise_at, x, sigmas, draw):
        previous, h_previous = None, None
        for i in range(self.steps):
            s_cur, s_next = sigmas[i], sigmas[i + 1]
            d = denoise_at(x, s_cur)
            if s_next == 0:  # the last level: the denoised field itself
                return d
            h = math.log(s_cur / s_next)
            d_bar = d
            if previous is not None:
                r = h_previous / h
                d_bar = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * previous
            x = (s_next / s_cur) * x + (1 - s_next / s_cur) * d_bar
            previous, h_previous = d, h
        return x
