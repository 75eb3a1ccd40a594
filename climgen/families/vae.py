"""Autoencoder, variational autoencoder (β-VAE, conditional VAE) and latent-space helpers.

All three share the convolutional :class:`~climgen.nn.Encoder` / :class:`~climgen.nn.Decoder`
(any grid size, circular padding on periodic axes) and differ only in the bottleneck and loss:

- :class:`Autoencoder` ("ae"): deterministic code ``z = enc(x)``, loss ``mean (x − dec(z))²``.
  A plain AE has no prior, so to *sample* it we fit one: a Gaussian with the mean and
  covariance of the training codes (exponential moving averages tracked during training), and
  decode draws from it.
- :class:`VAE` ("vae"): amortised posterior ``q(z|x) = N(μ(x), diag σ²(x))``, prior
  ``p(z) = N(0, I)``, Gaussian likelihood ``p(x|z) = N(dec(z), s²)`` with a fixed or learned
  per-channel scale ``s``; loss = negative ELBO with a β weight on the KL (β-VAE) and optional
  linear KL warm-up.
- :class:`ConditionalVAE` ("cvae"): ``q(z|x, c)``, ``p(x|z, c)`` with a condition map ``c``
  (B, Cc, H, W) given as ``batch["cond"]``; prior ``N(0, I)``.

Helpers: :func:`gaussian_kl`; the latent-space helpers :func:`lerp`, :func:`slerp`,
:func:`interpolate`, :func:`latent_arithmetic` live in :mod:`climgen.families.latent`.

References
----------
Kingma & Welling (2014), *Auto-encoding variational Bayes*, ICLR.
Higgins et al. (2017), *β-VAE: learning basic visual concepts with a constrained variational
framework*, ICLR.
Sohn, Lee & Yan (2015), *Learning structured output representation using deep conditional
generative models*, NeurIPS.
Bowman et al. (2016), *Generating sentences from a continuous space*, CoNLL (KL warm-up).
Rybkin, Daniilidis & Levine (2021), *Simple and effective VAE training with calibrated
decoders*, ICML (learned likelihood scale).
White (2016), *Sampling generative networks*, arXiv:1609.04468 (spherical interpolation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import Decoder, Encoder

from .base import FamilyModule, check_grid_options, register_family
from .latent import interpolate, latent_arithmetic, lerp, slerp

__all__ = [
    "Autoencoder",
    "VAE",
    "ConditionalVAE",
    "gaussian_kl",
    "lerp",
    "slerp",
    "interpolate",
    "latent_arithmetic",
]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per sample, summed over the last dimension (nats).

    .. math::
        \\mathrm{KL} = \\tfrac12 \\sum_j
        \\left(\\mu_j^2 + \\sigma_j^2 - \\log\\sigma_j^2 - 1\\right)

    Kingma & Welling (2014), appendix B. ``logvar`` is log σ².
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


def _masked_mean(
    values: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ w·values / Σ w, Σ w) with w the mask broadcast to ``values`` (1 = valid)."""
    if mask is None:
        return values.mean(), torch.tensor(float(values.numel()), device=values.device)
    weight = mask.to(values.dtype).expand_as(values)
    total = weight.sum().clamp_min(1.0)
    return (values * weight).sum() / total, total


class _LatentFamily(FamilyModule):
    """Encoder/decoder pair, batch checks and the parts of the family contract all three share.

    The decoder is the EMA module: the only network sampling uses.
    """

    name = "latent"
    ema_attr = "decoder"

    def __init__(self, config: dict, encoder_features: int, cond_channels: int = 0):
        super().__init__()
        channels, shape, latent_dim = config["channels"], config["shape"], config["latent_dim"]
        check_grid_options(channels, shape, config["periodic"])
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ClimgenInputError(
                f"option 'latent_dim' must be a positive int, got {latent_dim!r}"
            )
        config["shape"] = [int(s) for s in shape]
        config["periodic"] = [bool(p) for p in config["periodic"]]
        self.config = config
        self.channels, self.shape = channels, tuple(config["shape"])
        self.latent_dim, self.lr = latent_dim, float(config["lr"])
        self.cond_channels = cond_channels
        net = dict(
            base_channels=config["base_channels"],
            max_channels=config["max_channels"],
            min_bottleneck=config["min_bottleneck"],
            periodic=tuple(config["periodic"]),
            norm=config["norm"],
            activation=config["activation"],
        )
        self.encoder = Encoder(channels + cond_channels, self.shape, encoder_features, **net)
        self.decoder = Decoder(
            channels,
            self.shape,
            latent_dim,
            upsample=config["upsample"],
            cond_channels=cond_channels,
            **net,
        )

    # --- family contract -------------------------------------------------------------------
    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        """Compute :meth:`loss` on ``batch``, update group "main", return detached losses."""
        x = self._check_field(batch.get("x"), "batch['x']")
        cond = self._check_cond(batch.get("cond"), x.shape[0]) if self.cond_channels else None
        with ctx.autocast():
            losses = self.loss(x, step=step, mask=batch.get("mask"), cond=cond)
        ctx.step(losses["loss"], "main")
        return {k: v.detach() for k, v in losses.items()}

    # --- encoder / decoder -----------------------------------------------------------------
    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Latent code (B, latent_dim) of fields (B, C, H, W): the posterior mean for VAEs."""
        return self._encoder_output(x, cond)[..., : self.latent_dim]

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Fields (B, C, H, W) from codes (B, latent_dim) (the likelihood mean for VAEs)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ClimgenInputError(
                f"latent codes must have shape (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        cond = self._check_cond(cond, z.shape[0]) if self.cond_channels else None
        return self.decoder(z, cond)

    def reconstruct(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``decode(encode(x))``: the deterministic reconstruction."""
        return self.decode(self.encode(x, cond), cond)

    # --- internals -------------------------------------------------------------------------
    def _encoder_output(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self._check_field(x, "x")
        if self.cond_channels:
            x = torch.cat([x, self._check_cond(cond, x.shape[0]).to(x.dtype)], dim=1)
        return self.encoder(x)

    def _check_cond(self, cond, n: int) -> torch.Tensor:
        expected = (self.cond_channels, *self.shape)
        if (
            not isinstance(cond, torch.Tensor)
            or cond.ndim != 4
            or tuple(cond.shape[1:]) != expected
        ):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else cond
            raise ClimgenInputError(
                f"family {self.name!r} needs a condition 'cond' of shape "
                f"(B, {', '.join(map(str, expected))}), got {got}"
            )
        if cond.shape[0] == 1 and n > 1:
            cond = cond.expand(n, -1, -1, -1)
        if cond.shape[0] != n:
            raise ClimgenInputError(
                f"condition 'cond' has batch size {cond.shape[0]}, expected 1 or {n}"
            )
        return cond

    def _standard_normal(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        # Draw on the generator's device, then move: a CPU-seeded generator gives the same
        # codes whatever device the model lives on.
        ref = next(self.parameters())
        device = generator.device if generator is not None else ref.device
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=ref.dtype)
        return eps.to(ref.device)


@register_family("ae")
class Autoencoder(_LatentFamily):
    """Deterministic convolutional autoencoder with an L2 reconstruction loss.

    Loss (per data value, mask-weighted when ``batch["mask"]`` is given):

    .. math::  \\mathcal L = \\frac{1}{CHW} \\lVert x - \\mathrm{dec}(\\mathrm{enc}(x)) \\rVert_2^2

    **Sampling.** An AE defines no distribution over codes. During training we track
    exponential moving averages of the code mean ``m = E[z]`` and second moment
    ``S = E[z zᵀ]`` (momentum ``max(prior_momentum, 1/(k+1))`` at update k, so early updates
    are plain running means); ``sample`` decodes ``z = m + U Λ^{1/2} ε``, ε ~ N(0, I), where
    ``U Λ Uᵀ`` is the eigendecomposition of ``Σ = S − m mᵀ``: Gaussian codes matching the
    empirical code mean and covariance (an "ex-post density estimate", Ghosh et al. 2020, *From
    variational to deterministic autoencoders*, ICLR). The statistics are buffers, so they are
    saved with the weights.

    Example
    -------
    >>> ae = Autoencoder(1, (30, 40), latent_dim=8, base_channels=8)
    >>> ae.reconstruct(torch.randn(2, 1, 30, 40)).shape
    torch.Size([2, 1, 30, 40])
    """

    name = "ae"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        latent_dim: int = 64,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        norm: str = "group",
        activation: str = "silu",
        upsample: str = "nearest",
        lr: float = 1e-3,
        prior_momentum: float = 0.01,
    ):
        config = self.record_config(locals())
        super().__init__(config, encoder_features=latent_dim)
        self.prior_momentum = float(prior_momentum)
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_second_moment", torch.eye(latent_dim))
        self.register_buffer("latent_updates", torch.zeros((), dtype=torch.long))

    def loss(
        self,
        x: torch.Tensor,
        *,
        step: int = 0,
        mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss", "recon"}: mean squared reconstruction error; updates the code statistics."""
        z = self.encode(x)
        if self.training:
            self._update_latent_stats(z.detach().float())
        recon, _ = _masked_mean((self.decoder(z).float() - x.float()).pow(2), mask)
        return {"loss": recon, "recon": recon}

    @torch.no_grad()
    def _update_latent_stats(self, z: torch.Tensor) -> None:
        k = int(self.latent_updates)
        m = max(self.prior_momentum, 1.0 / (k + 1))
        self.latent_mean.lerp_(z.mean(0).to(self.latent_mean), m)
        second = (z.T @ z / z.shape[0]).to(self.latent_second_moment)
        self.latent_second_moment.lerp_(second, m)
        self.latent_updates += 1

    def latent_covariance(self) -> torch.Tensor:
        """Σ = S − m mᵀ of the tracked code statistics (identity before any training)."""
        cov = self.latent_second_moment - torch.outer(self.latent_mean, self.latent_mean)
        return 0.5 * (cov + cov.T)

    @torch.no_grad()
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes z = m + U Λ^{1/2} ε with the tracked code mean m and covariance UΛUᵀ."""
        eps = self._standard_normal(n, generator)
        evals, evecs = torch.linalg.eigh(self.latent_covariance().double())
        root = (evecs * evals.clamp_min(0).sqrt()).to(eps.dtype)
        return self.latent_mean.to(eps.dtype) + eps @ root.T

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` Gaussian codes with the tracked code mean and covariance → (n, C, H, W)."""
        return self.decoder(self.sample_latent(n, generator))


@register_family("vae")
class VAE(_LatentFamily):
    """Variational autoencoder (Kingma & Welling 2014); β-VAE with ``beta ≠ 1`` (Higgins 2017).

    Encoder: ``q(z|x) = N(μ(x), diag σ²(x))``; the reparameterisation ``z = μ + σ ⊙ ε``,
    ε ~ N(0, I), makes the sampled code differentiable in the encoder's weights. Decoder:
    ``p(x|z) = N(dec(z), diag s²)`` with ``s`` fixed (``likelihood_scale=float``) or learned per
    channel (``likelihood_scale="learned"``, the calibrated decoder of Rybkin et al. 2021).
    Prior ``p(z) = N(0, I)``. The loss is the negative ELBO with a β weight on the KL,

    .. math::
        \\mathcal L = \\underbrace{\\sum_i \\Big[\\frac{(x_i - \\hat x_i)^2}{2 s^2} + \\log s
        + \\tfrac12\\log 2\\pi\\Big]}_{\\text{recon}}
        + \\beta_t \\underbrace{\\tfrac12 \\sum_j
        (\\mu_j^2 + \\sigma_j^2 - \\log\\sigma_j^2 - 1)}_{\\text{kl}},

    both terms divided by the number of data values C·H·W (nats per value; this rescales the
    ELBO without changing its optimum), so ``loss = recon + β_t·kl`` exactly as reported.
    ``β_t = β · min(1, step / kl_warmup_steps)`` (linear KL warm-up, Bowman et al. 2016) or
    ``β`` when ``kl_warmup_steps == 0``. ``sample`` decodes prior draws and returns the
    likelihood mean ``dec(z)`` (no pixel noise).

    Example
    -------
    >>> vae = VAE(1, (48, 96), latent_dim=8, base_channels=8, beta=4.0)
    >>> vae.sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1, 48, 96])
    """

    name = "vae"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        latent_dim: int = 64,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        norm: str = "group",
        activation: str = "silu",
        upsample: str = "nearest",
        lr: float = 1e-3,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        likelihood_scale: float | str = "learned",
    ):
        config = self.record_config(locals())
        self._init_vae(config, cond_channels=0)

    def _init_vae(self, config: dict, cond_channels: int) -> None:
        super().__init__(
            config, encoder_features=2 * config["latent_dim"], cond_channels=cond_channels
        )
        self.beta = float(config["beta"])
        self.kl_warmup_steps = int(config["kl_warmup_steps"])
        if self.beta < 0 or self.kl_warmup_steps < 0:
            raise ClimgenInputError(
                f"options 'beta' and 'kl_warmup_steps' must be ≥ 0, got {self.beta}, "
                f"{self.kl_warmup_steps}"
            )
        scale = config["likelihood_scale"]
        if scale == "learned":
            self.log_scale = nn.Parameter(torch.zeros(self.channels))
        elif isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0:
            self.register_buffer("log_scale", torch.full((self.channels,), math.log(scale)))
        else:
            raise ClimgenInputError(
                f"option 'likelihood_scale' must be 'learned' or a positive number, got {scale!r}"
            )

    def posterior(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z | x[, c]), each (B, latent_dim)."""
        mu, logvar = self._encoder_output(x, cond).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)  # keeps exp(logvar) finite early in training

    def beta_at(self, step: int) -> float:
        """KL weight β_t after linear warm-up."""
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup_steps)

    def loss(
        self,
        x: torch.Tensor,
        *,
        step: int = 0,
        mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss", "recon", "kl"} in nats per data value; ``loss = recon + β_t·kl``."""
        mu, logvar = self.posterior(x, cond)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        x_hat = self.decoder(z, cond).float()
        log_s = self.log_scale.float().view(1, -1, 1, 1)
        nll = 0.5 * ((x.float() - x_hat) * torch.exp(-log_s)).pow(2) + log_s + 0.5 * _LOG_2PI
        recon, n_values = _masked_mean(nll, mask)
        kl = gaussian_kl(mu.float(), logvar.float()).sum() / n_values
        return {"loss": recon + self.beta_at(step) * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` prior draws z ~ N(0, I), shape (n, latent_dim)."""
        return self._standard_normal(n, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` prior draws z ~ N(0, I) → likelihood means (n, C, H, W)."""
        return self.decoder(self.sample_latent(n, generator))


@register_family("cvae")
class ConditionalVAE(VAE):
    """Conditional VAE (Sohn et al. 2015): ``q(z | x, c)``, ``p(x | z, c)``, prior N(0, I).

    The condition ``c`` (B, Cc, H, W) — e.g. a coarse field, a forcing map, a land mask — comes
    as ``batch["cond"]``. It is concatenated to the encoder input and, area-averaged to each
    resolution, to the decoder's features at every level. Loss as :class:`VAE` with both
    distributions conditioned on c. ``sample(n, cond=c)`` decodes prior draws given c (a batch
    of 1 is broadcast to n).

    Example
    -------
    >>> cvae = ConditionalVAE(1, (16, 32), cond_channels=2, latent_dim=4, base_channels=8)
    >>> cvae.sample(5, cond=torch.randn(1, 2, 16, 32)).shape
    torch.Size([5, 1, 16, 32])
    """

    name = "cvae"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        cond_channels: int = 1,
        latent_dim: int = 64,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        norm: str = "group",
        activation: str = "silu",
        upsample: str = "nearest",
        lr: float = 1e-3,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        likelihood_scale: float | str = "learned",
    ):
        if not isinstance(cond_channels, int) or cond_channels < 1:
            raise ClimgenInputError(
                f"option 'cond_channels' must be a positive int, got {cond_channels!r}"
            )
        config = self.record_config(locals())
        self._init_vae(config, cond_channels=cond_channels)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode ``n`` prior draws given ``cond`` (1 or n, Cc, H, W) → (n, C, H, W)."""
        cond = self._check_cond(cond, n)
        return self.decoder(self._standard_normal(n, generator), cond.to(self.log_scale.device))
