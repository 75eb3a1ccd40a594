"""What samplers call: a denoiser D(x; σ) or a noise predictor ε(x_t, t), and the maps between.

Samplers need only a callable, so exact analytic models (tests) and networks are interchangeable:

- ``Denoiser``: ``denoise(x, sigma) → x̂_0``, x (B, C, H, W), σ (B,) > 0 (variance-exploding
  view, x = x_0 + σ n). Used by the EDM Heun sampler.
- ``NoisePredictor``: ``predict_noise(x_t, t) → ε̂``, x_t (B, C, H, W), t (B,) float steps in
  [0, T−1] (variance-preserving view). Used by the DDPM and DDIM samplers.

:class:`PreconditionedDenoiser` wraps a network F into the EDM denoiser
``D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ))`` (Karras et al. 2022, eq. 7);
:class:`NetworkNoisePredictor` uses a network as ε_θ(x_t, t) directly (Ho et al. 2020).
:func:`denoiser_from_noise_predictor` and :func:`noise_predictor_from_denoiser` convert with
``x_t / √ᾱ_t = x_0 + σ_t ε``, σ_t = √((1 − ᾱ_t)/ᾱ_t), so every sampler works with either
training formulation. :func:`guided` applies classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .schedules import DDPMSchedule, Preconditioner

__all__ = [
    "Denoiser",
    "NoisePredictor",
    "PreconditionedDenoiser",
    "NetworkNoisePredictor",
    "denoiser_from_noise_predictor",
    "noise_predictor_from_denoiser",
    "guided",
]


@runtime_checkable
class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x̂_0 = E[x_0 | x] for x (B, C, H, W) at noise levels σ (B,)."""


@runtime_checkable
class NoisePredictor(Protocol):
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂ = E[ε | x_t] for x_t (B, C, H, W) at (possibly fractional) steps t (B,)."""


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


class PreconditionedDenoiser:
    """EDM denoiser ``D(x; σ, c) = c_skip x + c_out F(c_in x, c_noise, c)`` around network F.

    ``network(x, noise_level, cond=None, cond_keep=None)`` is a :class:`~.unet.UNet`-like
    module; ``cond``/``cond_keep`` are passed through (classifier-free guidance). A plain
    callable, not a module: the network's weights stay registered in one place only.
    """

    def __init__(self, network: nn.Module, preconditioner: Preconditioner):
        self.network = network
        self.preconditioner = preconditioner

    def __call__(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.preconditioner.precondition(sigma)
        f = self.network(_col(c_in, x) * x, c_noise, cond=cond, cond_keep=cond_keep)
        return _col(c_skip, x) * x + _col(c_out, x) * f.to(x.dtype)


class NetworkNoisePredictor:
    """ε_θ(x_t, t, c) = network(x_t, t, c): the DDPM parameterisation (Ho et al. 2020)."""

    def __init__(self, network: nn.Module):
        self.network = network

    def __call__(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        return self.network(x_t, t, cond=cond, cond_keep=cond_keep).to(x_t.dtype)


def denoiser_from_noise_predictor(
    predict_noise: Callable, schedule: DDPMSchedule
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """D(x; σ) = x − σ ε̂(√ᾱ x, t(σ)) with ᾱ = 1/(1 + σ²) and t(σ) the fractional step."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        t = schedule.timestep_of_sigma(sigma).to(x.device, x.dtype)
        scale = _col((1 + sigma**2).rsqrt(), x)
        return x - _col(sigma, x) * predict_noise(scale * x, t)

    return denoise


def noise_predictor_from_denoiser(
    denoise: Callable, schedule: DDPMSchedule
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """ε̂(x_t, t) = (x̃ − D(x̃; σ_t)) / σ_t with x̃ = x_t / √ᾱ_t, σ_t = √((1 − ᾱ_t)/ᾱ_t).

    ``t`` must be integer steps here (the DDPM/DDIM samplers only use those).
    """

    def predict_noise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t).expand(x_t.shape[0])
        sigma = schedule.sigmas[t.long().cpu()]
        x = x_t / _col(schedule.alpha_bar(t).sqrt(), x_t)
        return (x - denoise(x, sigma.to(x_t.device, x_t.dtype))) / _col(sigma, x_t)

    return predict_noise


def guided(
    model: Callable, cond: torch.Tensor | None, guidance: float = 1.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Classifier-free guidance (Ho & Salimans 2022) as a two-argument model for the samplers.

    ``model(x, level, cond=..., cond_keep=...)`` is a conditional denoiser or noise predictor
    trained with condition dropout. Returns ``m(x, level)`` =

    .. math::  m_\\varnothing + w\\,(m_c - m_\\varnothing)

    with m_c the conditional and m_∅ the null-condition output. w = 1 is the plain
    conditional model (one evaluation), w = 0 the unconditional one, w > 1 sharpens towards
    the condition. Without ``cond`` the model is evaluated with the null condition.
    """
    w = float(guidance)

    def model_fn(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        if cond is None or w == 0.0:
            return model(x, level, cond=None)
        c = cond.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1)
        conditional = model(x, level, cond=c)
        if w == 1.0:
            return conditional
        unconditional = model(x, level, cond=None)
        return unconditional + w * (conditional - unconditional)

    return model_fn
