"""Latent-space helpers of the autoencoder families (:mod:`climgen.families.vae`): straight and
spherical paths between codes, decoded interpolation and latent arithmetic.

References
----------
White (2016), *Sampling generative networks*, arXiv:1609.04468 (spherical interpolation).
Radford, Metz & Chintala (2016), *Unsupervised representation learning with deep convolutional
GANs*, ICLR (vector arithmetic on codes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from climgen.errors import ClimgenInputError

if TYPE_CHECKING:
    from .vae import _LatentFamily

__all__ = ["lerp", "slerp", "interpolate", "latent_arithmetic"]


def lerp(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Linear interpolation ``(1 − t) z0 + t z1``.

    ``t`` is a number or a 1-D tensor of T values; in the latter case the result has a
    leading dimension T.
    """
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    if t.ndim == 1:
        t = t.view(-1, *([1] * z0.ndim))
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dimension (White 2016).

    .. math::  \\mathrm{slerp}(z_0, z_1; t) = \\frac{\\sin((1-t)\\theta)}{\\sin\\theta} z_0
               + \\frac{\\sin(t\\theta)}{\\sin\\theta} z_1,
               \\qquad \\cos\\theta = \\frac{z_0 \\cdot z_1}{\\lVert z_0\\rVert \\lVert z_1\\rVert}

    The path follows the great circle, so for ``‖z0‖ = ‖z1‖`` every point has that norm: codes
    stay in the shell where a high-dimensional Gaussian prior puts its mass, unlike the
    straight line, which cuts through the low-norm interior. Falls back to :func:`lerp` for
    (anti)parallel codes. ``t``: a number or a 1-D tensor of T values (leading dim T).
    """
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    if t.ndim == 1:
        t = t.view(-1, *([1] * z0.ndim))
    cos = (
        torch.nn.functional.normalize(z0, dim=-1, eps=eps)
        * torch.nn.functional.normalize(z1, dim=-1, eps=eps)
    ).sum(-1, keepdim=True)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(theta)
    degenerate = sin.abs() < 1e-6
    safe_sin = torch.where(degenerate, torch.ones_like(sin), sin)
    w0 = torch.where(degenerate, 1 - t, torch.sin((1 - t) * theta) / safe_sin)
    w1 = torch.where(degenerate, t, torch.sin(t * theta) / safe_sin)
    return w0 * z0 + w1 * z1


@torch.no_grad()
def interpolate(
    model: _LatentFamily,
    x0: torch.Tensor,
    x1: torch.Tensor,
    steps: int = 8,
    mode: str = "slerp",
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode the latent path between the codes of ``x0`` and ``x1``.

    ``x0``, ``x1``: (C, H, W) or (B, C, H, W). Returns (steps, C, H, W) or (steps, B, C, H, W);
    the first and last entries are the reconstructions of x0 and x1. ``mode``: "slerp" or "lerp".
    """
    if mode not in ("slerp", "lerp"):
        raise ClimgenInputError(f"unknown interpolation mode {mode!r}; choose slerp or lerp")
    single = x0.ndim == 3
    if single:
        x0, x1 = x0[None], x1[None]
    z0, z1 = model.encode(x0, cond), model.encode(x1, cond)
    t = torch.linspace(0.0, 1.0, steps)
    path = (slerp if mode == "slerp" else lerp)(z0, z1, t)  # (steps, B, latent)
    b = z0.shape[0]
    dec_cond = None if cond is None else cond.expand(b, -1, -1, -1).repeat(steps, 1, 1, 1)
    out = model.decode(path.reshape(steps * b, -1), dec_cond)
    out = out.reshape(steps, b, *out.shape[1:])
    return out[:, 0] if single else out


@torch.no_grad()
def latent_arithmetic(
    model: _LatentFamily,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """``dec(enc(a) − enc(b) + enc(c))``: "a is to b as ? is to c" in latent space.

    ``a``, ``b``, ``c``: (B, C, H, W) (or B = 1, broadcast). E.g. a = mean El Niño field,
    b = mean neutral field, c = a neutral state → an El Niño-like version of c. Reference:
    Radford, Metz & Chintala (2016), *Unsupervised representation learning with deep
    convolutional GANs*, ICLR (vector arithmetic on codes).
    """
    return model.decode(model.encode(a, cond) - model.encode(b, cond) + model.encode(c, cond), cond)
