"""Diffusion training objectives as objects built from a model and a noise schedule.

Both losses take a clean batch ``x0`` (B, C, H, W) and an optional per-pixel ``weight``
(B or 1, 1 or C, H, W), e.g. a validity mask (1 = observed). The loss is the weighted mean
``Σ w·ℓ / Σ w`` of the per-value loss ℓ, so masked (gap-filling) training ignores the
missing values instead of learning to denoise them.

References
----------
Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*, NeurIPS (eq. 14).
Karras, Aittala, Aila & Laine (2022), *Elucidating the design space of diffusion-based
generative models*, NeurIPS (eq. 2, 8; Table 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from climgen.errors import ClimgenInputError

from .schedules import DDPMSchedule, EDMSchedule

__all__ = ["weighted_mean", "EpsilonLoss", "EDMLoss"]


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ w·v / Σ w`` with ``weight`` broadcast to ``values`` (plain mean without weight)."""
    if weight is None:
        return values.mean()
    try:
        w = weight.to(values.dtype).expand_as(values)
    except RuntimeError as exc:
        raise ClimgenInputError(
            f"loss weight/mask of shape {tuple(weight.shape)} does not broadcast to the "
            f"batch of shape {tuple(values.shape)}"
        ) from exc
    return (w * values).sum() / w.sum().clamp_min(torch.finfo(values.dtype).tiny)


def _normal_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class EpsilonLoss:
    """DDPM "simple" loss: predict the noise that was added (Ho et al. 2020, eq. 14).

    .. math::
        \\mathcal L = \\mathbb E_{t \\sim U\\{0..T-1\\},\\ \\varepsilon \\sim N(0, I)}
        \\big\\lVert \\varepsilon - \\varepsilon_\\theta(\\sqrt{\\bar\\alpha_t}\\,x_0
        + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon,\\ t) \\big\\rVert^2

    averaged over values (weighted by ``weight``). ``model(x_t, t, **model_kwargs)`` →
    ε̂ (B, C, H, W), t (B,) float steps.
    """

    def __init__(self, model: Callable, schedule: DDPMSchedule):
        self.model, self.schedule = model, schedule

    def __call__(
        self,
        x0: torch.Tensor,
        *,
        weight: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **model_kwargs,
    ) -> torch.Tensor:
        """Scalar loss for the batch ``x0``; ``model_kwargs`` go to the model (cond, …)."""
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(
            0, self.schedule.num_steps, (x0.shape[0],), generator=generator, device=gen_device
        ).to(x0.device)
        noise = _normal_like(x0, generator)
        x_t = self.schedule.add_noise(x0, noise, t)
        predicted = self.model(x_t, t.to(x0.dtype), **model_kwargs)
        return weighted_mean((predicted.float() - noise.float()) ** 2, weight)


class EDMLoss:
    """EDM denoising score-matching loss (Karras et al. 2022, eq. 2 and Table 1).

    .. math::
        \\mathcal L = \\mathbb E_{\\ln\\sigma \\sim N(P_{mean}, P_{std}^2),\\ n \\sim N(0, I)}
        \\Big[\\lambda(\\sigma)\\,\\big\\lVert D_\\theta(x_0 + \\sigma n;\\ \\sigma) - x_0
        \\big\\rVert^2\\Big], \\qquad \\lambda(\\sigma) = \\frac{\\sigma^2 + \\sigma_d^2}
        {(\\sigma\\,\\sigma_d)^2}

    averaged over values (weighted by ``weight``). λ(σ) = 1/c_out(σ)², so with the EDM
    preconditioning this is an unweighted regression of the network F on a unit-variance
    target, and an untrained network (F ≡ 0) on data of variance σ_d² scores exactly 1.
    ``model(x, sigma, **model_kwargs)`` → D(x; σ) (B, C, H, W), σ (B,).
    """

    def __init__(self, model: Callable, schedule: EDMSchedule):
        self.model, self.schedule = model, schedule

    def __call__(
        self,
        x0: torch.Tensor,
        *,
        weight: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **model_kwargs,
    ) -> torch.Tensor:
        """Scalar loss for the batch ``x0``; ``model_kwargs`` go to the model (cond, …)."""
        sigma = self.schedule.sample_training_sigma(
            x0.shape[0], generator=generator, device=x0.device, dtype=x0.dtype
        )
        col = sigma.view(-1, *([1] * (x0.ndim - 1)))
        denoised = self.model(x0 + col * _normal_like(x0, generator), sigma, **model_kwargs)
        per_value = self.schedule.loss_weight(col) * (denoised.float() - x0.float()) ** 2
        return weighted_mean(per_value, weight)
