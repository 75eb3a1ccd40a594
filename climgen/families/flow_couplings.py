"""Invertible layers of the normalizing flow: squeeze, ActNorm, 1×1 conv, couplings, dequantiser.

Every layer maps ``x → (y, log|det ∂y/∂x|)`` with the log-determinant per sample (shape (B,),
nats) and has an exact ``inverse(y)``. Fields are (B, C, H, W); coupling networks are built
from :class:`~climgen.nn.PeriodicConv2d`, so periodic axes are padded circularly.

- :func:`squeeze` / :func:`unsqueeze`: space-to-depth (B, C, H, W) ↔ (B, 4C, H/2, W/2), a
  permutation (log-det 0). The coarse grid of a periodic axis is still periodic.
- :class:`ActNorm`: per-channel ``y = (x + b)·exp(s)``, log-det ``H·W·Σ_c s_c``; data-dependent
  initialisation on the first training batch (zero mean, unit variance per channel), with an
  ``initialized`` buffer so that save/load keeps it (Kingma & Dhariwal 2018).
- :class:`InvertibleConv1x1`: ``y = W x`` per pixel with ``W = P L (U + diag(sign·exp(log_s)))``
  (LU-decomposed, Kingma & Dhariwal 2018), log-det ``H·W·Σ log_s``.
- :class:`Coupling`: a masked coupling ``y = m⊙x + (1−m)⊙f(x; θ(m⊙x))``; ``m`` keeps half the
  channels or a checkerboard. ``f`` is affine with a tanh-bounded log-scale (RealNVP, Dinh et
  al. 2017) or the logistic-mixture CDF of Flow++ (Ho et al. 2019),
  ``f(x) = σ⁻¹(Σ_k π_k σ((x − μ_k)/s_k))·exp(a) + b``, inverted by bisection.
  The last layer of ``θ`` starts at zero, so every coupling starts as the identity.
- :class:`VariationalDequantizer`: the Flow++ dequantisation noise ``u = σ(g(ε; x)) ∈ (0, 1)``,
  ``ε ~ N(0, I)``, ``g`` a small flow of couplings conditioned on the data x; returns u and
  ``log q(u | x)``.

References
----------
Dinh, Sohl-Dickstein & Bengio (2017), *Density estimation using Real NVP*, ICLR.
Kingma & Dhariwal (2018), *Glow: generative flow with invertible 1×1 convolutions*, NeurIPS.
Ho, Chen, Srinivas, Duan & Abbeel (2019), *Flow++: improving flow-based generative models with
variational dequantization and architecture design*, ICML.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import ConvBlock, PeriodicConv2d

__all__ = [
    "squeeze",
    "unsqueeze",
    "ActNorm",
    "InvertibleConv1x1",
    "Coupling",
    "coupling_mask",
    "logistic_mixture_logit_cdf",
    "VariationalDequantizer",
    "COUPLINGS",
]

COUPLINGS = ("affine", "logistic-mixture")
_LOG_2PI = math.log(2 * math.pi)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space-to-depth: (B, C, H, W) → (B, 4C, H/2, W/2); H and W must be even."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Depth-to-space, the inverse of :func:`squeeze`: (B, 4C, h, w) → (B, C, 2h, 2w)."""
    b, c4, h, w = x.shape
    x = x.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + loc)·exp(log_scale)``; log-det ``H·W·Σ_c log_scale_c``.

    With ``data_init=True`` the first forward pass in training mode sets ``loc = −mean`` and
    ``log_scale = −log std`` of that batch per channel, so the output starts with zero mean and
    unit variance; the ``initialized`` buffer records this (saved in the state dict). Until
    then (or with ``data_init=False``) the layer is the identity.
    """

    def __init__(self, channels: int, data_init: bool = True):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer(
            "initialized", torch.tensor([0 if data_init else 1], dtype=torch.uint8)
        )

    @torch.no_grad()
    def _data_init(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._data_init(x)
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return (x + self.loc) * self.log_scale.exp(), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class InvertibleConv1x1(nn.Module):
    """Invertible 1×1 convolution, LU-decomposed (Kingma & Dhariwal 2018, §3.2).

    ``W = P L (U + diag(sign_s ⊙ exp(log_s)))`` with P a fixed permutation, L unit lower
    triangular, U strictly upper triangular; log-det ``H·W·Σ log_s`` costs O(C) instead of the
    O(C³) of ``log|det W|``. ``init="random"`` starts from a random rotation (Glow),
    ``init="identity"`` from ``W = I``.
    """

    def __init__(self, channels: int, init: str = "random"):
        super().__init__()
        if init == "random":
            q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
            p, lower, upper = torch.linalg.lu(q)
        elif init == "identity":
            p = lower = torch.eye(channels, dtype=torch.float64)
            upper = torch.eye(channels, dtype=torch.float64)
        else:
            raise ClimgenInputError(
                f"unknown option invconv_init={init!r}; choose 'random' or 'identity'"
            )
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> torch.Tensor:
        """The (C, C) matrix W."""
        eye = torch.eye(self.perm.shape[0], dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.einsum("ij,bjhw->bihw", self.weight(), x)
        logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight()), y)


def coupling_mask(channels: int, shape: tuple[int, int], kind: str, flip: bool) -> torch.Tensor:
    """Binary mask (1, C, H, W): 1 marks the values a coupling keeps (and conditions on).

    ``kind="channel"``: the first ⌊C/2⌋ channels; ``"checkerboard"``: cells with i + j even.
    ``flip`` swaps the two halves (alternate couplings update the other half).
    """
    if kind == "channel":
        mask = (torch.arange(channels) < channels // 2).float().view(1, -1, 1, 1)
        mask = mask.expand(1, channels, *shape)
    elif kind == "checkerboard":
        i, j = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
        mask = ((i + j) % 2 == 0).float().expand(1, channels, *shape)
    else:
        raise ValueError(f"unknown coupling mask {kind!r}")
    return (1 - mask if flip else mask).contiguous()


def logistic_mixture_logit_cdf(
    x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(σ⁻¹(F(x)), log F'(x))`` of the logistic mixture ``F(x) = Σ_k π_k σ((x − μ_k)/s_k)``.

    ``x``: (...); ``logits``, ``means``, ``log_scales``: (..., K) with ``π = softmax(logits)``,
    ``s = exp(log_scales)``. Computed in log space: ``σ⁻¹(F) = log F − log(1 − F)`` with
    ``log F = logsumexp_k(log π_k + log σ(z_k))`` and ``log(1 − F)`` with ``σ(−z_k)``, so the
    tails do not saturate.
    """
    log_pi = torch.log_softmax(logits, dim=-1)
    z = (x.unsqueeze(-1) - means) * torch.exp(-log_scales)
    log_cdf = torch.logsumexp(log_pi + F.logsigmoid(z), dim=-1)
    log_sf = torch.logsumexp(log_pi + F.logsigmoid(-z), dim=-1)
    log_pdf = torch.logsumexp(log_pi + F.logsigmoid(z) + F.logsigmoid(-z) - log_scales, dim=-1)
    return log_cdf - log_sf, log_pdf


def _invert_logit_cdf(u, logits, means, log_scales, bisections: int = 24, newtons: int = 4):
    # Solve σ⁻¹(F(x)) = u. Since σ(min_k z_k) ≤ F ≤ σ(max_k z_k), the root lies in
    # [min_k(μ_k + s_k u), max_k(μ_k + s_k u)]: an exact bracket. Bisection narrows it by 2^24,
    # then Newton steps (derivative F'/(F(1 − F)), kept inside the bracket) reach round-off.
    ends = means + torch.exp(log_scales) * u.unsqueeze(-1)
    lo, hi = ends.min(-1).values, ends.max(-1).values
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        above = logistic_mixture_logit_cdf(mid, logits, means, log_scales)[0] > u
        hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
    x = 0.5 * (lo + hi)
    for _ in range(newtons):
        value, log_pdf = logistic_mixture_logit_cdf(x, logits, means, log_scales)
        slope = torch.exp(log_pdf + F.softplus(value) + F.softplus(-value))
        x = torch.minimum(torch.maximum(x - (value - u) / slope, lo), hi)
    return x


class Coupling(nn.Module):
    """Masked coupling ``y = m⊙x + (1−m)⊙f(x; θ)``, ``θ = net(m⊙x [, cond])``.

    ``transform="affine"``: ``f(x) = x·exp(ŝ) + t`` with ``ŝ = B·tanh(s/B)`` (bound
    ``B = scale_bound``), log-det ``Σ (1−m)·ŝ``. ``transform="logistic-mixture"``:
    ``f(x) = σ⁻¹(F(x))·exp(â) + b`` with F a K-component logistic mixture CDF (Flow++), log-det
    ``Σ (1−m)·(log F'(x) − log F(x) − log(1 − F(x)) + â)``; with all parameters zero,
    F = σ and f is the identity. ``net``: 3×3 conv → act → 1×1 conv → act → zero-initialised
    3×3 conv, all periodic-padded; ``cond_channels`` extra inputs (the dequantiser's context).
    """

    def __init__(
        self,
        mask: torch.Tensor,
        hidden_channels: int,
        *,
        transform: str = "affine",
        components: int = 4,
        periodic: tuple[bool, bool] = (False, True),
        cond_channels: int = 0,
        scale_bound: float = 2.0,
    ):
        super().__init__()
        if transform not in COUPLINGS:
            raise ClimgenInputError(
                f"unknown option coupling={transform!r}; choose one of {', '.join(COUPLINGS)}"
            )
        channels = mask.shape[1]
        self.transform, self.components, self.scale_bound = transform, components, scale_bound
        self.params_per_value = 2 if transform == "affine" else 3 * components + 2
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            ConvBlock(channels + cond_channels, hidden_channels, 3, periodic=periodic, norm="none"),
            ConvBlock(hidden_channels, hidden_channels, 1, periodic=periodic, norm="none"),
            PeriodicConv2d(hidden_channels, channels * self.params_per_value, 3, periodic=periodic),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, kept: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = kept if cond is None else torch.cat([kept, cond.to(kept.dtype)], dim=1)
        b, c, hh, ww = kept.shape
        # (B, C, H, W, P): the parameters of each value's transform on the last axis.
        return self.net(h).view(b, c, self.params_per_value, hh, ww).permute(0, 1, 3, 4, 2)

    def _bounded(self, raw: torch.Tensor) -> torch.Tensor:
        return self.scale_bound * torch.tanh(raw / self.scale_bound)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.mask.to(x.dtype)
        p = self._params(x * keep, cond)
        if self.transform == "affine":
            log_scale = self._bounded(p[..., 0])
            y, elem_logdet = x * log_scale.exp() + p[..., 1], log_scale
        else:
            k = self.components
            logit_cdf, log_pdf = logistic_mixture_logit_cdf(
                x, p[..., :k], p[..., k : 2 * k], p[..., 2 * k : 3 * k].clamp_min(-7.0)
            )
            log_a = self._bounded(p[..., 3 * k])
            y = logit_cdf * log_a.exp() + p[..., 3 * k + 1]
            # d σ⁻¹(F)/dx = F'/(F(1 − F)) and log F + log(1 − F) = −softplus(u) − softplus(−u).
            elem_logdet = log_pdf + F.softplus(logit_cdf) + F.softplus(-logit_cdf) + log_a
        y = torch.where(keep.bool(), x, y)
        return y, ((1 - keep) * elem_logdet).sum(dim=(1, 2, 3))

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        keep = self.mask.to(y.dtype)
        p = self._params(y * keep, cond)
        if self.transform == "affine":
            x = (y - p[..., 1]) * torch.exp(-self._bounded(p[..., 0]))
        else:
            k = self.components
            u = (y - p[..., 3 * k + 1]) * torch.exp(-self._bounded(p[..., 3 * k]))
            x = _invert_logit_cdf(
                u, p[..., :k], p[..., k : 2 * k], p[..., 2 * k : 3 * k].clamp_min(-7.0)
            )
        return torch.where(keep.bool(), y, x)


class VariationalDequantizer(nn.Module):
    """Flow++ variational dequantisation noise ``u ~ q(u | x)`` on (0, 1)^D.

    ``ε ~ N(0, I)`` → ``steps`` checkerboard couplings conditioned on features of x →
    ``u = σ(h)``, so

    .. math::
        \\log q(u \\mid x) = \\log \\mathcal N(\\varepsilon; 0, I)
        - \\sum_\\text{couplings} \\log|\\det|
        - \\sum_i \\log\\big(\\sigma(h_i)(1 - \\sigma(h_i))\\big).
    """

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        hidden_channels: int,
        *,
        steps: int = 2,
        periodic: tuple[bool, bool] = (False, True),
    ):
        super().__init__()
        self.context = nn.Sequential(
            ConvBlock(channels, hidden_channels, 3, periodic=periodic, norm="none"),
            ConvBlock(hidden_channels, hidden_channels, 3, periodic=periodic, norm="none"),
        )
        self.couplings = nn.ModuleList(
            Coupling(
                coupling_mask(channels, shape, "checkerboard", flip=i % 2 == 1),
                hidden_channels,
                periodic=periodic,
                cond_channels=hidden_channels,
            )
            for i in range(steps)
        )

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, log q(u | x))``: noise (B, C, H, W) in (0, 1) and its log density (B,)."""
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.transform(eps, x)

    def transform(self, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, log q(u | x))`` for given standard-normal draws ``eps`` (B, C, H, W)."""
        log_q = -0.5 * (eps.pow(2) + _LOG_2PI).sum(dim=(1, 2, 3))
        context, h = self.context(x), eps
        for coupling in self.couplings:
            h, logdet = coupling(h, context)
            log_q = log_q - logdet
        log_q = log_q - (F.logsigmoid(h) + F.logsigmoid(-h)).sum(dim=(1, 2, 3))
        return torch.sigmoid(h), log_q
