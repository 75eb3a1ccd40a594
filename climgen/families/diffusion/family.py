"""The diffusion family: a U-Net denoiser, a training objective and a sampler, by name.

``Diffusion(channels, shape, formulation="edm", sampler="heun")`` trains a :class:`~.unet.UNet`
either as the preconditioned EDM denoiser with :class:`~.losses.EDMLoss` (default) or as the
DDPM noise predictor with :class:`~.losses.EpsilonLoss`, and samples with any of the three
samplers (the :mod:`.denoisers` conversions make each sampler work with either formulation).

Example
-------
>>> model = Diffusion(1, (16, 32), base_channels=8, channel_mults=(1, 2))
>>> model.sample(2, generator=torch.Generator().manual_seed(0), steps=3).shape
torch.Size([2, 1, 16, 32])
"""

from __future__ import annotations

import torch

from climgen.errors import ClimgenInputError
from climgen.families.base import FamilyModule, check_grid_options, register_family

from .denoisers import (
    NetworkNoisePredictor,
    PreconditionedDenoiser,
    denoiser_from_noise_predictor,
    guided,
    noise_predictor_from_denoiser,
)
from .losses import EDMLoss, EpsilonLoss
from .samplers import SAMPLERS, DDIMSampler, DDPMSampler, DPMSolver2MSampler, HeunSampler
from .schedules import DDPMSchedule, EDMSchedule
from .unet import UNet

__all__ = ["Diffusion", "FORMULATIONS"]

FORMULATIONS = ("edm", "ddpm")
# heun: 19 evaluations; dpm2m: 15
DEFAULT_SAMPLE_STEPS = {"heun": 10, "dpm2m": 15, "ddim": 20, "ddpm": None}


def _choice(option: str, value, valid) -> None:
    if value not in valid:
        raise ClimgenInputError(
            f"option {option!r} must be one of {', '.join(map(repr, valid))}, got {value!r}"
        )


@register_family("diffusion")
class Diffusion(FamilyModule):
    """Score-based diffusion model for fields (DDPM, Ho et al. 2020; EDM, Karras et al. 2022).

    Training (one group "main", logged key ``loss``):

    - ``formulation="edm"``: ``D(x; σ) = c_skip x + c_out F(c_in x, ¼ ln σ)`` and the loss
      ``E λ(σ)‖D(x_0 + σn; σ) − x_0‖²`` with ln σ ~ N(p_mean, p_std²). The loss starts at ≈ 1
      (fields normalised to ``sigma_data``) and falls as the network learns to denoise.
    - ``formulation="ddpm"``: ``ε_θ(x_t, t)`` on the ``beta_schedule`` of ``num_steps`` steps and
      the loss ``E‖ε − ε_θ(x_t, t)‖²`` (starts at ≈ 1 too).

    ``batch["mask"]`` (1 = valid) weights the loss per value. With ``cond_channels > 0``,
    ``batch["cond"]`` (B, Cc, H, W) is concatenated to the network input and replaced by the
    null condition with probability ``cond_dropout`` (classifier-free guidance training).

    Sampling: ``sampler`` "heun" (EDM Alg. 2; ``sample_steps`` N → 2N − 1 evaluations, default
    10 → 19), "dpm2m" (DPM-Solver++(2M) on the same σ levels; N steps → N evaluations, default
    15), "ddim" (η = ``ddim_eta``, default 20 steps) or "ddpm" (ancestral, default all
    ``num_steps``); the discrete samplers start at the last step with σ_t ≤ ``sigma_max``.
    ``guidance`` w mixes conditional and null outputs: m_∅ + w (m_c − m_∅).

    ``ema_module()`` is the U-Net: sample with EMA weights (decay ~0.999) for best results.
    """

    name = "diffusion"
    ema_attr = "unet"  # the only network; EMA weights matter a lot for samples

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        formulation: str = "edm",
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] | None = None,
        dropout: float = 0.0,
        num_steps: int = 1000,
        beta_schedule: str = "cosine",
        sampler: str = "heun",
        sample_steps: int | None = None,
        ddim_eta: float = 0.0,
        churn: float = 0.0,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_data: float = 1.0,
        cond_channels: int = 0,
        cond_dropout: float = 0.1,
        guidance: float = 1.0,
        lr: float = 2e-4,
    ):
        super().__init__()
        check_grid_options(channels, shape, periodic)
        _choice("formulation", formulation, FORMULATIONS)
        _choice("sampler", sampler, SAMPLERS)
        if not 0 <= cond_dropout < 1:
            raise ClimgenInputError(f"option 'cond_dropout' must be in [0, 1), got {cond_dropout}")
        if not isinstance(cond_channels, int) or cond_channels < 0:
            raise ClimgenInputError(
                f"option 'cond_channels' must be an int ≥ 0, got {cond_channels!r}"
            )
        self.record_config(locals())
        self.channels, self.shape = channels, tuple(self.config["shape"])
        self.formulation, self.lr = formulation, float(lr)
        self.cond_channels, self.cond_dropout = cond_channels, float(cond_dropout)
        self.unet = UNet(
            channels,
            channels,
            base_channels=base_channels,
            channel_mults=tuple(channel_mults),
            num_res_blocks=num_res_blocks,
            attention_levels=None if attention_levels is None else tuple(attention_levels),
            periodic=tuple(self.config["periodic"]),
            cond_channels=cond_channels,
            dropout=dropout,
        )
        self.ddpm_schedule = DDPMSchedule(num_steps, beta_schedule)
        if formulation == "edm":
            self.edm_schedule = EDMSchedule(
                sigma_min, sigma_max, rho, sigma_data=sigma_data, p_mean=p_mean, p_std=p_std
            )
            self.denoiser = PreconditionedDenoiser(self.unet, self.edm_schedule)
            self.objective = EDMLoss(self.denoiser, self.edm_schedule)
        else:
            # Heun on an ε-model: stay within the noise levels the schedule trained on.
            table = self.ddpm_schedule.sigmas
            self.edm_schedule = EDMSchedule(
                max(sigma_min, float(table[0])), min(sigma_max, float(table[-1])), rho
            )
            self.noise_predictor = NetworkNoisePredictor(self.unet)
            self.objective = EpsilonLoss(self.noise_predictor, self.ddpm_schedule)

    # --- family contract -------------------------------------------------------------------
    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        """Loss on ``batch`` (``x``, optional ``mask``, ``cond``), one update of group "main"."""
        x = self._check_field(batch.get("x"))
        kwargs = {}
        if self.cond_channels:
            cond = self._check_cond(batch.get("cond"), x.shape[0])
            keep = (torch.rand(x.shape[0], device=x.device) >= self.cond_dropout).to(x.dtype)
            kwargs = dict(cond=cond.to(x.device, x.dtype), cond_keep=keep)
        with ctx.autocast():
            loss = self.loss(x, mask=batch.get("mask"), **kwargs)
        ctx.step(loss, "main")
        return {"loss": loss.detach()}

    def loss(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **model_kwargs,
    ) -> torch.Tensor:
        """The training objective on clean fields ``x`` (mask-weighted), a scalar tensor."""
        return self.objective(x, weight=mask, generator=generator, **model_kwargs)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        cond: torch.Tensor | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        noise: torch.Tensor | None = None,
        churn: float | None = None,
        eta: float | None = None,
    ) -> torch.Tensor:
        """``n`` fields (n, C, H, W) in normalised units.

        ``cond`` (1 or n, Cc, H, W) conditions the samples (None: unconditional / null
        condition); ``sampler``, ``steps``, ``guidance``, ``churn`` (Heun) and ``eta`` (DDIM)
        override the options; ``noise`` (n, C, H, W) fixes the initial draw.
        """
        sampler = sampler or self.config["sampler"]
        _choice("sampler", sampler, SAMPLERS)
        if cond is not None:
            cond = self._check_cond(cond, n)
        w = self.config["guidance"] if guidance is None else guidance
        if steps is None:
            steps = self.config["sample_steps"] or DEFAULT_SAMPLE_STEPS[sampler]
        ref = next(self.unet.parameters())
        run = dict(generator=generator, noise=noise, device=ref.device, dtype=ref.dtype)
        shape = (n, self.channels, *self.shape)
        if sampler == "heun":
            churn = self.config["churn"] if churn is None else churn
            return HeunSampler(self.edm_schedule, steps, churn=churn)(
                self.denoise_fn(cond, w), shape, **run
            )
        if sampler == "dpm2m":
            return DPMSolver2MSampler(self.edm_schedule, steps)(
                self.denoise_fn(cond, w), shape, **run
            )
        # Start the discrete samplers at σ_t ≤ sigma_max (see DDPMSchedule.timesteps).
        steps = self.ddpm_schedule.timesteps(steps, max_sigma=self.config["sigma_max"]).tolist()
        if sampler == "ddim":
            eta = self.config["ddim_eta"] if eta is None else eta
            make = DDIMSampler(self.ddpm_schedule, steps, eta=eta)
        else:
            make = DDPMSampler(self.ddpm_schedule, steps)
        return make(self.noise_fn(cond, w), shape, **run)

    # --- models for the samplers -----------------------------------------------------------
    def denoise_fn(self, cond: torch.Tensor | None = None, guidance: float = 1.0):
        """``D(x, σ)`` (classifier-free guided) for :class:`~.samplers.HeunSampler`."""
        if self.formulation == "edm":
            return guided(self.denoiser, cond, guidance)
        return denoiser_from_noise_predictor(
            guided(self.noise_predictor, cond, guidance), self.ddpm_schedule
        )

    def noise_fn(self, cond: torch.Tensor | None = None, guidance: float = 1.0):
        """``ε̂(x_t, t)`` (classifier-free guided) for the DDPM and DDIM samplers."""
        if self.formulation == "ddpm":
            return guided(self.noise_predictor, cond, guidance)
        return noise_predictor_from_denoiser(
            guided(self.denoiser, cond, guidance), self.ddpm_schedule
        )

    # --- checks ----------------------------------------------------------------------------
    def _check_cond(self, cond, n: int) -> torch.Tensor:
        expected = (self.cond_channels, *self.shape)
        if self.cond_channels == 0:
            raise ClimgenInputError(
                "family 'diffusion' was built with cond_channels=0 but got a condition 'cond'"
            )
        if (
            not isinstance(cond, torch.Tensor)
            or cond.ndim != 4
            or tuple(cond.shape[1:]) != expected
            or cond.shape[0] not in (1, n)
        ):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else cond
            raise ClimgenInputError(
                f"family 'diffusion' needs a condition 'cond' of shape (1 or {n}, "
                f"{', '.join(map(str, expected))}), got {got}"
            )
        return cond.expand(n, -1, -1, -1)
