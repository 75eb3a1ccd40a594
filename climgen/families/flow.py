"""Multiscale normalizing flow for fields (RealNVP / Glow, with the Flow++ options).

:class:`Flow` ("flow") is a bijection ``z = f(x)`` between a field x (C, H, W) and a latent z
of the same shape with prior ``N(0, I)``, so the likelihood is exact (change of variables):

.. math::
    \\log p(x) = \\log \\mathcal N(f(x); 0, I) + \\log\\left|\\det \\frac{\\partial f}{\\partial x}
    \\right|.

Architecture (Kingma & Dhariwal 2018, fig. 2): ``L`` scales, each a :func:`squeeze`
(space-to-depth), ``K`` steps of :class:`ActNorm` → :class:`InvertibleConv1x1` →
:class:`Coupling`, then (except at the last scale) a *factor-out*: half the channels leave as
latents and the rest go on to the next, coarser scale. Coupling networks use periodic padding
on periodic axes (the squeezed grid of a periodic axis is still periodic).

Any (H, W): squeezing needs even sizes, so the number of scales is
``L = min(levels, d)`` with ``d`` the largest integer such that ``2^d`` divides both H and W.
Nothing is padded or cropped (padding would break the bijection). If H or W is odd (``d = 0``)
there is one scale without squeeze whose couplings use a checkerboard mask, which works on any
grid and any channel count.

Likelihood in bits per dimension, ``D = C·H·W``:

- ``dequantization="none"`` (default): climgen fields are continuous (normalised floats), so
  no dequantisation is needed and ``bpd = −log p(x) / (D ln 2)`` with p a *density*; it can
  be negative and it depends on the normalisation (a rescaling x → a·x shifts it by
  ``−log₂ a``).
- for quantised data with bin width Δ (``bin_width``), ``"uniform"`` trains on
  ``x̃ = x + Δ(u − ½)``, ``u ~ U(0, 1)^D`` and ``"variational"`` on ``u ~ q(u | x)`` from a
  small conditional flow (Flow++, Ho et al. 2019). Both give the lower bound
  ``log P(x) ≥ E_q[log p(x̃) − log q(u | x)] + D log Δ`` on the probability of x's bin, and
  ``bpd = −bound / (D ln 2)`` (one Monte Carlo draw per call, an upper bound on the true bpd).

Training loss = mean bpd, logged as "loss" and "bpd". The flow runs in full precision (no
autocast): log-determinants and inverses lose too much in half precision.

References
----------
Dinh, Sohl-Dickstein & Bengio (2017), *Density estimation using Real NVP*, ICLR.
Kingma & Dhariwal (2018), *Glow: generative flow with invertible 1×1 convolutions*, NeurIPS.
Ho, Chen, Srinivas, Duan & Abbeel (2019), *Flow++: improving flow-based generative models with
variational dequantization and architecture design*, ICML.
Theis, van den Oord & Bethge (2016), *A note on the evaluation of generative models*, ICLR
(dequantisation and bits/dim).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from climgen.errors import ClimgenInputError

from .base import FamilyModule, check_grid_options, register_family
from .flow_couplings import (
    COUPLINGS,
    ActNorm,
    Coupling,
    InvertibleConv1x1,
    VariationalDequantizer,
    coupling_mask,
    squeeze,
    unsqueeze,
)

__all__ = ["Flow", "FlowStep", "num_scales"]

_LOG_2PI = math.log(2 * math.pi)
DEQUANTIZATIONS = ("none", "uniform", "variational")


def num_scales(shape: tuple[int, int], levels: int) -> int:
    """Number of squeezes: ``min(levels, d)``, ``2^d`` the largest power of 2 dividing H and W."""
    h, w = shape
    d = 0
    while h % 2 == 0 and w % 2 == 0 and d < levels:
        h, w, d = h // 2, w // 2, d + 1
    return d


class FlowStep(nn.Module):
    """One Glow step: ActNorm → invertible 1×1 conv → coupling; log-dets add up."""

    def __init__(self, actnorm: ActNorm, invconv: InvertibleConv1x1, coupling: Coupling):
        super().__init__()
        self.actnorm, self.invconv, self.coupling = actnorm, invconv, coupling

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = 0
        for layer in (self.actnorm, self.invconv, self.coupling):
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in (self.coupling, self.invconv, self.actnorm):
            y = layer.inverse(y)
        return y


@register_family("flow")
class Flow(FamilyModule):
    """RealNVP/Glow multiscale flow with exact likelihood; Flow++ couplings and dequantisation.

    Parameters
    ----------
    channels, shape, periodic : field channels C, grid (H, W), periodicity of (y, x).
    levels : at most this many squeeze/factor-out scales (fewer when H or W has fewer factors
        of 2; see the module docstring).
    steps_per_level : K flow steps per scale.
    hidden_channels : width of the coupling networks.
    coupling : "affine" (tanh-bounded log-scale, ``scale_bound``) or "logistic-mixture"
        (Flow++ CDF coupling with ``mixture_components`` logistics).
    actnorm_data_init : initialise ActNorm from the first training batch (Glow).
    invconv_init : "random" (random rotation, Glow) or "identity".
    dequantization, bin_width, dequant_steps : "none" | "uniform" | "variational"; the
        quantisation step Δ of the data; couplings in the variational dequantiser.
    lr : Adam learning rate of the single optimiser group "main".

    With ``actnorm_data_init=False, invconv_init="identity"`` the initial flow is the identity
    map (couplings start at the identity), so ``log p(x) = log N(x; 0, I)``.

    Example
    -------
    >>> flow = Flow(1, (16, 32), periodic=(False, True), levels=2, hidden_channels=16)
    >>> x = flow.sample(4, generator=torch.Generator().manual_seed(0), temperature=0.7)
    >>> flow.bits_per_dim(x).shape
    torch.Size([4])
    """

    name = "flow"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        levels: int = 3,
        steps_per_level: int = 4,
        hidden_channels: int = 64,
        coupling: str = "affine",
        mixture_components: int = 4,
        scale_bound: float = 2.0,
        actnorm_data_init: bool = True,
        invconv_init: str = "random",
        dequantization: str = "none",
        bin_width: float | None = None,
        dequant_steps: int = 2,
        lr: float = 1e-3,
    ):
        super().__init__()
        check_grid_options(channels, shape, periodic)
        for opt, value in (("levels", levels), ("steps_per_level", steps_per_level)):
            if not isinstance(value, int) or value < 1:
                raise ClimgenInputError(f"option {opt!r} must be a positive int, got {value!r}")
        if coupling not in COUPLINGS:
            raise ClimgenInputError(
                f"unknown option coupling={coupling!r}; choose one of {', '.join(COUPLINGS)}"
            )
        if dequantization not in DEQUANTIZATIONS:
            raise ClimgenInputError(
                f"unknown option dequantization={dequantization!r}; choose one of "
                f"{', '.join(DEQUANTIZATIONS)}"
            )
        if dequantization != "none" and not (bin_width and bin_width > 0):
            raise ClimgenInputError(
                f"option 'bin_width' must be the data's positive quantisation step when "
                f"dequantization={dequantization!r}, got {bin_width!r}"
            )
        shape, periodic = [int(s) for s in shape], [bool(p) for p in periodic]
        self.record_config(locals())
        self.channels, self.shape, self.lr = channels, tuple(shape), float(lr)
        self.dequantization, self.bin_width = dequantization, bin_width
        n_squeeze = num_scales(self.shape, levels)
        self.squeezes = [True] * n_squeeze or [False]
        self.scales = nn.ModuleList()
        c, (h, w) = channels, self.shape
        for i, squeezed in enumerate(self.squeezes):
            if squeezed:
                c, h, w = 4 * c, h // 2, w // 2
            kind = "channel" if c >= 2 else "checkerboard"
            self.scales.append(
                nn.ModuleList(
                    FlowStep(
                        ActNorm(c, data_init=actnorm_data_init),
                        InvertibleConv1x1(c, init=invconv_init),
                        Coupling(
                            coupling_mask(c, (h, w), kind, flip=k % 2 == 1),
                            hidden_channels,
                            transform=coupling,
                            components=mixture_components,
                            periodic=tuple(periodic),
                            scale_bound=scale_bound,
                        ),
                    )
                    for k in range(steps_per_level)
                )
            )
            if i < len(self.squeezes) - 1:
                c -= c // 2  # factor-out: the first ⌊c/2⌋ channels leave as latents
        self.dequantizer = (
            VariationalDequantizer(
                channels, self.shape, hidden_channels, steps=dequant_steps, periodic=periodic
            )
            if dequantization == "variational"
            else None
        )

    # --- the bijection ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log|det ∂z/∂x|)``: latent (B, C, H, W) and log-det per sample (B,), nats."""
        x = self._check_field(x, "x")
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        factored, h = [], x
        for i, (squeezed, steps) in enumerate(zip(self.squeezes, self.scales)):
            h = squeeze(h) if squeezed else h
            for step in steps:
                h, ld = step(h)
                logdet = logdet + ld
            if i < len(self.scales) - 1:
                z_i, h = h.split([h.shape[1] // 2, h.shape[1] - h.shape[1] // 2], dim=1)
                factored.append(z_i)
        return self._merge(h, factored), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Field x = f⁻¹(z) of latents z (B, C, H, W)."""
        z = self._check_field(z, "z")
        factored, h = [], z
        for i, squeezed in enumerate(self.squeezes):
            h = squeeze(h) if squeezed else h
            if i < len(self.scales) - 1:
                z_i, h = h.split([h.shape[1] // 2, h.shape[1] - h.shape[1] // 2], dim=1)
                factored.append(z_i)
        for i in reversed(range(len(self.scales))):
            if i < len(self.scales) - 1:
                h = torch.cat([factored[i], h], dim=1)
            for step in reversed(self.scales[i]):
                h = step.inverse(h)
            h = unsqueeze(h) if self.squeezes[i] else h
        return h

    def _merge(self, h: torch.Tensor, factored: list[torch.Tensor]) -> torch.Tensor:
        # Undo the squeezes on the latents so that z has the shape of x.
        for i in reversed(range(len(self.scales))):
            if i < len(self.scales) - 1:
                h = torch.cat([factored[i], h], dim=1)
            h = unsqueeze(h) if self.squeezes[i] else h
        return h

    # --- likelihood ------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density ``log N(f(x); 0, I) + log|det ∂f/∂x|`` per sample (B,), nats."""
        z, logdet = self(x)
        return -0.5 * (z.pow(2) + _LOG_2PI).sum(dim=(1, 2, 3)) + logdet

    def dequantized_log_prob(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Log-likelihood per sample (B,) as stated by the ``dequantization`` option.

        "none": :meth:`log_prob`. "uniform" / "variational": one-draw lower bound
        ``log p(x + Δ(u − ½)) − log q(u | x) + D log Δ`` on the log probability of x's bin
        (``log q = 0`` for uniform u).
        """
        x = self._check_field(x, "x")
        if self.dequantization == "none":
            return self.log_prob(x)
        if self.dequantization == "uniform":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            log_q = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        else:
            u, log_q = self.dequantizer(x, generator)
        d = x[0].numel()
        x_tilde = x + self.bin_width * (u - 0.5)
        return self.log_prob(x_tilde) - log_q + d * math.log(self.bin_width)

    def bits_per_dim(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``−log p(x) / (D ln 2)`` per sample (B,), D = C·H·W, with the dequantisation option."""
        return -self.dequantized_log_prob(x, generator) / (x[0].numel() * math.log(2))

    # --- family contract -------------------------------------------------------------------
    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        """Loss = mean bits/dim of ``batch["x"]``; update group "main"; log "loss" and "bpd"."""
        x = self._check_field(batch.get("x"), "batch['x']")
        mask = batch.get("mask")
        if mask is not None and not bool((mask != 0).all()):
            raise ClimgenInputError(
                "family 'flow' needs complete fields: batch['mask'] marks missing values, and "
                "a flow's likelihood cannot marginalise them; fill the gaps or use another family"
            )
        loss = self.bits_per_dim(x).mean()
        ctx.step(loss, "main")
        return {"loss": loss.detach(), "bpd": loss.detach()}

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """``n`` fields ``f⁻¹(T·ε)``, ``ε ~ N(0, I)``; temperature ``T < 1`` trades diversity
        for typicality (Kingma & Dhariwal 2018, §5)."""
        ref = next(self.parameters())
        # Draw on the generator's device, then move: the same seed gives the same fields
        # whatever device the model lives on.
        device = generator.device if generator is not None else ref.device
        eps = torch.randn(
            n, self.channels, *self.shape, generator=generator, device=device, dtype=ref.dtype
        )
        return self.inverse(temperature * eps.to(ref.device))
