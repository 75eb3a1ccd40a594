"""The GAN loss zoo: functions of discriminator outputs, penalties, BEGAN control, label tricks.

Conventions (as in torchgan's functional losses): ``real_out`` = D(x) on data, ``fake_out``
= D(G(z)) on generated fields, both shaped (B,) (logits for the classifier losses, critic
values for WGAN/hinge, per-sample reconstruction errors for BEGAN). Every loss is to be
*minimised* by its player and takes ``reduction`` ∈ {"mean", "sum", "none"}; with "none"
the discriminator loss is the per-sample sum of its real and fake terms (batches of equal
size). A loss never calls ``optimizer.step()``.

:data:`GAN_LOSSES` maps each name of :func:`available_gan_losses` to a :class:`GANLoss`
bundling ``d_loss(real_out, fake_out)``, ``g_loss(fake_out)`` and what else the loss needs
(a gradient penalty, weight clipping, an autoencoder discriminator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError

__all__ = [
    "minimax_discriminator_loss",
    "minimax_generator_loss",
    "nonsaturating_generator_loss",
    "wasserstein_discriminator_loss",
    "wasserstein_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "began_discriminator_loss",
    "began_generator_loss",
    "reconstruction_error",
    "gradient_penalty",
    "dragan_penalty",
    "clip_weights_",
    "BEGANEquilibrium",
    "flip_labels",
    "add_instance_noise",
    "annealed_sigma",
    "GANLoss",
    "GAN_LOSSES",
    "available_gan_losses",
    "get_gan_loss",
]

REDUCTIONS = ("mean", "sum", "none")


def _reduce(t: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return t.mean()
    if reduction == "sum":
        return t.sum()
    if reduction == "none":
        return t
    raise ClimgenInputError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _two_terms(real_term, fake_term, reduction):
    if reduction == "none":
        if real_term.shape != fake_term.shape:
            raise ClimgenInputError(
                "reduction='none' needs real and fake batches of equal shape, got "
                f"{tuple(real_term.shape)} and {tuple(fake_term.shape)}"
            )
        return real_term + fake_term
    return _reduce(real_term, reduction) + _reduce(fake_term, reduction)


def _bce_logits(logits: torch.Tensor, target) -> torch.Tensor:
    # −[t log σ(l) + (1−t) log(1−σ(l))] = t·softplus(−l) + (1−t)·softplus(l): stable for all l.
    return target * F.softplus(-logits) + (1.0 - target) * F.softplus(logits)


def minimax_discriminator_loss(
    real_out, fake_out, *, real_target=1.0, fake_target=0.0, reduction: str = "mean"
):
    """Discriminator loss of the original GAN (Goodfellow et al. 2014), on logits.

    .. math::
        L_D = -\\mathbb E_x[\\log σ(D(x))] - \\mathbb E_z[\\log(1 - σ(D(G(z))))]

    computed as binary cross-entropy with logits (softplus form, stable). ``real_target``
    = 1 − ε gives one-sided label smoothing (Salimans et al. 2016); targets may be tensors.
    """
    return _two_terms(
        _bce_logits(real_out, real_target), _bce_logits(fake_out, fake_target), reduction
    )


def minimax_generator_loss(fake_out, *, reduction: str = "mean"):
    """Generator loss of the minimax game (saturates when D wins early).

    .. math:: L_G = \\mathbb E_z[\\log(1 - σ(D(G(z))))] = -\\mathbb E_z[\\mathrm{softplus}(D(G(z)))]
    """
    return _reduce(-F.softplus(fake_out), reduction)


def nonsaturating_generator_loss(fake_out, *, reduction: str = "mean"):
    """Non-saturating generator loss (Goodfellow et al. 2014, §3).

    .. math:: L_G = -\\mathbb E_z[\\log σ(D(G(z)))] = \\mathbb E_z[\\mathrm{softplus}(-D(G(z)))]
    """
    return _reduce(F.softplus(-fake_out), reduction)


def wasserstein_discriminator_loss(real_out, fake_out, *, reduction: str = "mean"):
    """Critic loss of WGAN (Arjovsky et al. 2017): minus the Kantorovich–Rubinstein estimate.

    .. math:: L_D = \\mathbb E_z[D(G(z))] - \\mathbb E_x[D(x)]
    """
    return _two_terms(-real_out, fake_out, reduction)


def wasserstein_generator_loss(fake_out, *, reduction: str = "mean"):
    """Generator loss of WGAN: :math:`L_G = -\\mathbb E_z[D(G(z))]`."""
    return _reduce(-fake_out, reduction)


def least_squares_discriminator_loss(
    real_out, fake_out, *, real_target=1.0, fake_target=0.0, reduction: str = "mean"
):
    """LSGAN discriminator loss (Mao et al. 2017) with the 0–1 coding a = 0, b = 1.

    .. math:: L_D = \\tfrac12 \\mathbb E_x[(D(x) - b)^2] + \\tfrac12 \\mathbb E_z[(D(G(z)) - a)^2]

    ``real_target`` is b (1 − ε for one-sided smoothing), ``fake_target`` is a.
    """
    return _two_terms(
        0.5 * (real_out - real_target) ** 2, 0.5 * (fake_out - fake_target) ** 2, reduction
    )


def least_squares_generator_loss(fake_out, *, target: float = 1.0, reduction: str = "mean"):
    """LSGAN generator loss: :math:`L_G = \\tfrac12 \\mathbb E_z[(D(G(z)) - c)^2]`, c = 1."""
    return _reduce(0.5 * (fake_out - target) ** 2, reduction)


def hinge_discriminator_loss(real_out, fake_out, *, reduction: str = "mean"):
    """Hinge loss of the discriminator (Lim & Ye 2017; Miyato et al. 2018).

    .. math:: L_D = \\mathbb E_x[\\max(0, 1 - D(x))] + \\mathbb E_z[\\max(0, 1 + D(G(z)))]
    """
    return _two_terms(F.relu(1.0 - real_out), F.relu(1.0 + fake_out), reduction)


def hinge_generator_loss(fake_out, *, reduction: str = "mean"):
    """Hinge generator loss: :math:`L_G = -\\mathbb E_z[D(G(z))]`."""
    return _reduce(-fake_out, reduction)


def reconstruction_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """BEGAN's per-sample autoencoder loss :math:`L(v) = \\overline{|v - D(v)|}` (pixel-wise L1
    mean over channels and grid), shape (B,)."""
    return (x - reconstruction).abs().flatten(1).mean(1)


def began_discriminator_loss(real_out, fake_out, *, k=0.0, reduction: str = "mean"):
    """BEGAN discriminator loss (Berthelot et al. 2017, eq. 4) on reconstruction errors.

    .. math:: L_D = L(x) - k_t\\, L(G(z))

    ``real_out`` = L(x), ``fake_out`` = L(G(z)) from :func:`reconstruction_error`; ``k`` is
    the equilibrium variable k_t of :class:`BEGANEquilibrium` (treated as a constant).
    """
    k = k.detach() if isinstance(k, torch.Tensor) else k
    return _two_terms(real_out, -k * fake_out, reduction)


def began_generator_loss(fake_out, *, reduction: str = "mean"):
    """BEGAN generator loss: :math:`L_G = L(G(z))` (reconstruction error of generated fields)."""
    return _reduce(fake_out, reduction)


class BEGANEquilibrium(nn.Module):
    """BEGAN's proportional control of k_t and its convergence measure (Berthelot et al. 2017).

    .. math::
        k_{t+1} = \\mathrm{clip}\\big(k_t + λ_k(γ L(x) - L(G(z))),\\; 0,\\; 1\\big), \\qquad
        M = L(x) + |γ L(x) - L(G(z))|

    γ = E[L(G(z))]/E[L(x)] at equilibrium is the diversity ratio (lower: sharper, less
    diverse). ``k`` is a buffer, so it is saved and restored with the model's state dict.
    """

    def __init__(self, gamma: float = 0.5, lambda_k: float = 1e-3, k0: float = 0.0):
        super().__init__()
        if not 0.0 <= k0 <= 1.0:
            raise ClimgenInputError(f"BEGAN k0 must lie in [0, 1], got {k0}")
        self.gamma, self.lambda_k = float(gamma), float(lambda_k)
        self.register_buffer("k", torch.tensor(float(k0)))

    @torch.no_grad()
    def update(self, real_error, fake_error) -> torch.Tensor:
        """Advance k_t with batch-mean L(x), L(G(z)); return the convergence measure M."""
        real_error = torch.as_tensor(real_error, dtype=self.k.dtype).detach().mean()
        fake_error = torch.as_tensor(fake_error, dtype=self.k.dtype).detach().mean()
        balance = self.gamma * real_error - fake_error
        self.k.copy_((self.k + self.lambda_k * balance).clamp(0.0, 1.0))
        return real_error + balance.abs()


def _input_gradient_norm(critic: Callable, points: torch.Tensor) -> torch.Tensor:
    points = points.detach().requires_grad_(True)
    out = critic(points)
    (grad,) = torch.autograd.grad(out.sum(), points, create_graph=True)
    # The tiny constant keeps the square root differentiable where a gradient vanishes.
    return torch.sqrt(grad.flatten(1).square().sum(1) + 1e-12)


def _uniform(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def gradient_penalty(
    critic: Callable,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017, eq. 3).

    .. math::
        λ\\, \\mathbb E_{\\hat x}\\big[(\\lVert ∇_{\\hat x} D(\\hat x) \\rVert_2 - 1)^2\\big],\\;
        \\hat x = ε x + (1 - ε) \\tilde x,\\; ε \\sim U[0, 1] \\text{ per sample}

    with x real and x̃ generated (detached) fields; the norm is over all non-batch dims.
    Differentiable w.r.t. the critic's parameters (double back-propagation). λ = ``weight``.
    """
    if real.shape != fake.shape:
        raise ClimgenInputError(
            f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ"
        )
    eps = _uniform((real.shape[0],) + (1,) * (real.ndim - 1), real, generator)
    points = eps * real.detach() + (1 - eps) * fake.detach()
    return weight * _reduce((_input_gradient_norm(critic, points) - 1.0) ** 2, reduction)


def dragan_penalty(
    critic: Callable,
    real: torch.Tensor,
    *,
    weight: float = 10.0,
    perturbation: float = 0.5,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """DRAGAN gradient penalty around the data (Kodali et al. 2017, *On convergence and
    stability of GANs*).

    .. math::
        λ\\, \\mathbb E\\big[(\\lVert ∇_{\\hat x} D(\\hat x) \\rVert_2 - 1)^2\\big], \\qquad
        \\hat x = x + α δ,\\; δ = c\\, \\mathrm{std}(x)\\, u,\\; u \\sim U[0,1)^d,\\; α \\sim U[0,1]

    i.e. the penalty acts in a neighbourhood of the real samples only (the authors'
    reference implementation's perturbation, c = ``perturbation``). λ = ``weight``.
    """
    real = real.detach()
    delta = perturbation * real.std() * _uniform(real.shape, real, generator)
    alpha = _uniform((real.shape[0],) + (1,) * (real.ndim - 1), real, generator)
    points = real + alpha * delta
    return weight * _reduce((_input_gradient_norm(critic, points) - 1.0) ** 2, reduction)


@torch.no_grad()
def clip_weights_(module: nn.Module, clip_value: float = 0.01) -> None:
    """WGAN weight clipping (Arjovsky et al. 2017): every parameter clamped to [−c, c] in place."""
    for p in module.parameters():
        p.clamp_(-clip_value, clip_value)


def flip_labels(
    real_out: torch.Tensor,
    fake_out: torch.Tensor,
    p: float,
    *,
    generator: torch.Generator | None = None,
):
    """Label flipping with probability ``p``: swap the real and fake outputs of random pairs.

    For a discriminator loss that is a sum of a real term and a fake term per sample, giving
    sample i's real output the fake label and vice versa is the same as exchanging
    ``real_out[i]`` and ``fake_out[i]``; so this works for every loss in the zoo.
    """
    if p <= 0:
        return real_out, fake_out
    if real_out.shape != fake_out.shape:
        raise ClimgenInputError("label flipping needs real and fake batches of equal size")
    flip = _uniform(real_out.shape, real_out, generator) < p
    return torch.where(flip, fake_out, real_out), torch.where(flip, real_out, fake_out)


def annealed_sigma(sigma: float, step: int, anneal_steps: int) -> float:
    """Instance-noise level σ_t = σ · max(0, 1 − t/T), linear decay to 0 over T steps."""
    if anneal_steps <= 0:
        return float(sigma)
    return float(sigma) * max(0.0, 1.0 - step / anneal_steps)


def add_instance_noise(
    x: torch.Tensor, sigma: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Instance noise x + σ n, n ~ N(0, 1), applied to both real and generated inputs of D
    (Sønderby et al. 2017; Arjovsky & Bottou 2017): overlaps the two distributions' supports."""
    if sigma <= 0:
        return x
    device = generator.device if generator is not None else x.device
    n = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return x + sigma * n


@dataclass(frozen=True)
class GANLoss:
    """One entry of the loss zoo.

    ``d_loss(real_out, fake_out, **kw)`` and ``g_loss(fake_out, **kw)`` are the pure loss
    functions; ``penalty`` is None, "gradient" (WGAN-GP) or "dragan"; ``weight_clipping``
    marks WGAN; ``uses_targets`` marks losses that take ``real_target`` (label smoothing);
    ``autoencoder`` marks BEGAN (discriminator outputs are reconstruction errors, ``d_loss``
    takes ``k``). ``n_critic`` is the customary number of critic updates per generator update.
    """

    name: str
    d_loss: Callable[..., torch.Tensor]
    g_loss: Callable[..., torch.Tensor]
    reference: str
    penalty: str | None = None
    weight_clipping: bool = False
    uses_targets: bool = False
    autoencoder: bool = False
    n_critic: int = 1


GAN_LOSSES: dict[str, GANLoss] = {
    "minimax": GANLoss(
        "minimax",
        minimax_discriminator_loss,
        minimax_generator_loss,
        "Goodfellow et al. 2014",
        uses_targets=True,
    ),
    "non-saturating": GANLoss(
        "non-saturating",
        minimax_discriminator_loss,
        nonsaturating_generator_loss,
        "Goodfellow et al. 2014",
        uses_targets=True,
    ),
    "wgan": GANLoss(
        "wgan",
        wasserstein_discriminator_loss,
        wasserstein_generator_loss,
        "Arjovsky et al. 2017",
        weight_clipping=True,
        n_critic=5,
    ),
    "wgan-gp": GANLoss(
        "wgan-gp",
        wasserstein_discriminator_loss,
        wasserstein_generator_loss,
        "Gulrajani et al. 2017",
        penalty="gradient",
        n_critic=5,
    ),
    "lsgan": GANLoss(
        "lsgan",
        least_squares_discriminator_loss,
        least_squares_generator_loss,
        "Mao et al. 2017",
        uses_targets=True,
    ),
    "dragan": GANLoss(
        "dragan",
        minimax_discriminator_loss,
        nonsaturating_generator_loss,
        "Kodali et al. 2017",
        penalty="dragan",
        uses_targets=True,
    ),
    "began": GANLoss(
        "began",
        began_discriminator_loss,
        began_generator_loss,
        "Berthelot et al. 2017",
        autoencoder=True,
    ),
    "hinge": GANLoss(
        "hinge", hinge_discriminator_loss, hinge_generator_loss, "Lim & Ye 2017; Miyato et al. 2018"
    ),
}


def available_gan_losses() -> list[str]:
    """Names accepted as ``GAN(loss=...)``, in the order of the zoo."""
    return list(GAN_LOSSES)


def get_gan_loss(name: str) -> GANLoss:
    """The :class:`GANLoss` called ``name``; unknown names list the valid ones."""
    try:
        return GAN_LOSSES[name]
    except (KeyError, TypeError):
        raise ClimgenInputError(
            f"unknown GAN loss {name!r}; choose one of {', '.join(GAN_LOSSES)}"
        ) from None
