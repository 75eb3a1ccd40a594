"""The super-resolution family: regression SR (L1/L2) and SRGAN, driven by the one trainer.

``SuperResolution(channels, shape, periodic, factor=4)`` holds an :class:`SRResNet`
generator G. Batches are ``{"x": fine (B, C, H, W), "cond": coarse (B, C, H/f, W/f),
"static": optional (B, S, H, W)}`` in normalised units.

- ``adversarial=None`` (method "regression"): one update of the content loss
  L1 = mean|G(c) − x| or L2 = mean (G(c) − x)² per step (group "main").
- ``adversarial="<gan loss>"`` (method "srgan"): a conditional critic
  D(x, up(c)) (:class:`climgen.families.gan.DCGANDiscriminator` on the fine field
  concatenated with the nearest-up-sampled coarse field, so it judges realism *given* the
  coarse state) trained with a loss of the zoo (:data:`climgen.families.gan.GAN_LOSSES`,
  e.g. "non-saturating" as in Ledig et al., "hinge", "wgan-gp", "lsgan"), and the generator
  loss ``content + adversarial_weight · g_loss + spectral_weight · L_spec`` with
  :func:`climgen.families.gan.spectral_loss` (log-spectral distance of batch-mean
  :func:`climgen.metrics.rapsd`). The first ``warmup_steps`` steps update G on the content
  loss alone (the pre-trained SRResNet initialisation of Ledig et al.). ``noise_channels``
  Gaussian noise maps on the coarse and on the fine grid make G stochastic, so
  :meth:`predict` with different generators gives ensemble members.
- ``constraint="additive"`` puts the additive conservation layer (Harder et al. 2023) after
  G during training and prediction; it is exact in normalised units because normalisation is
  affine per variable. ``row_weights`` are the fine-grid latitude weights (cos φ) of the block
  means (None: uniform).

``sample(n)`` needs a coarse condition: super-resolution has no unconditional sampler, so
``sample(n, cond=c)`` returns n members for one coarse field (or the batch's members).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from climgen.errors import ClimgenInputError
from climgen.families.base import FamilyModule, OptimizerSpec, register_family
from climgen.families.gan.constraints import spectral_loss
from climgen.families.gan.losses import clip_weights_, get_gan_loss, gradient_penalty
from climgen.families.gan.nets import DCGANDiscriminator

from .conserve import block_upsample, conserve_additive
from .nets import SRResNet

__all__ = ["SuperResolution", "CONTENT_LOSSES"]

CONTENT_LOSSES = ("l1", "l2")
_CONSTRAINTS = ("none", "additive")


@register_family("superres")
class SuperResolution(FamilyModule):
    """Regression / adversarial super-resolution of gridded fields by an integer factor.

    Parameters
    ----------
    channels, shape, periodic : field channels, *fine* grid (H, W), periodicity of (y, x).
    factor : up-sampling factor f (H and W divisible by f).
    static_channels : number of static high-resolution input fields in ``batch["static"]``.
    context_channels : extra coarse input channels after the field's own ``channels`` in
        ``cond`` (e.g. the coarse fields of neighbouring times: multi-frame super-resolution);
        the skip connection, the conservation layer and the critic use only the first
        ``channels``.
    base_channels, n_blocks, fine_blocks : width and depth of :class:`SRResNet`.
    content_loss : "l1" or "l2".
    adversarial : None (regression) or a GAN loss name: "non-saturating", "minimax",
        "hinge", "lsgan", "wgan", "wgan-gp" (BEGAN's autoencoder critic and DRAGAN are not
        offered here).
    adversarial_weight, spectral_weight : weights of the adversarial and spectral terms.
    spectral_spacing : grid spacings (dy, dx) of the spectral loss's wavenumbers.
    noise_channels : Gaussian noise maps fed on the coarse and on the fine grid (0: a
        deterministic generator).
    warmup_steps : content-only generator steps before the adversarial game starts.
    disc_channels : narrowest width of the critic.
    lr, lr_d : learning rates of G and D. ``gp_weight`` / ``clip_value`` for WGAN-GP / WGAN.
    constraint : "none" or "additive" (hard conservation layer inside the model).
    row_weights : fine-grid row weights for the constraint's block means (list of H floats).
    """

    name = "superres"
    ema_attr = "generator"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        factor: int = 4,
        static_channels: int = 0,
        context_channels: int = 0,
        base_channels: int = 32,
        n_blocks: int = 8,
        fine_blocks: int = 1,
        content_loss: str = "l1",
        adversarial: str | None = None,
        adversarial_weight: float = 1e-2,
        spectral_weight: float = 0.0,
        spectral_spacing: tuple[float, float] = (1.0, 1.0),
        noise_channels: int = 0,
        warmup_steps: int = 0,
        disc_channels: int = 16,
        lr: float = 2e-4,
        lr_d: float = 2e-4,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        constraint: str = "none",
        row_weights: list[float] | None = None,
    ):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        periodic = tuple(bool(p) for p in periodic)
        factor = int(factor)
        if len(shape) != 2 or len(periodic) != 2:
            raise ClimgenInputError(
                f"superres: shape and periodic need 2 entries (y, x), got {shape}, {periodic}"
            )
        if factor < 2 or shape[0] % factor or shape[1] % factor:
            raise ClimgenInputError(
                f"superres: the fine grid {shape} must be divisible by factor {factor} (≥ 2)"
            )
        if content_loss not in CONTENT_LOSSES:
            raise ClimgenInputError(
                f"superres: content_loss={content_loss!r}; choose one of {CONTENT_LOSSES}"
            )
        if constraint not in _CONSTRAINTS:
            raise ClimgenInputError(
                f"superres: constraint={constraint!r}; choose one of {_CONSTRAINTS}"
            )
        self.loss_spec = None
        if adversarial is not None:
            self.loss_spec = get_gan_loss(adversarial)
            if self.loss_spec.autoencoder or self.loss_spec.penalty == "dragan":
                raise ClimgenInputError(
                    f"superres: adversarial={adversarial!r} is not supported for "
                    "super-resolution; use non-saturating, minimax, hinge, lsgan, wgan or wgan-gp"
                )
        if row_weights is not None and len(row_weights) != shape[0]:
            raise ClimgenInputError(
                f"superres: row_weights has {len(row_weights)} entries, the fine grid "
                f"{shape[0]} rows"
            )
        self.record_config(locals())
        self.shape, self.periodic, self.factor, self.lr = shape, periodic, factor, float(lr)
        self.channels, self.static_channels = int(channels), int(static_channels)
        self.noise_channels = int(noise_channels)
        self.context_channels = int(context_channels)
        self.generator = SRResNet(
            channels,
            factor,
            periodic,
            base_channels=base_channels,
            n_blocks=n_blocks,
            fine_blocks=fine_blocks,
            coarse_extra=context_channels + noise_channels,
            fine_extra=static_channels + noise_channels,
        )
        self.discriminator = None
        if self.loss_spec is not None:
            self.discriminator = DCGANDiscriminator(
                2 * channels, shape, periodic, disc_channels, spectral_norm=False
            )
        weights = torch.as_tensor(
            row_weights if row_weights is not None else [], dtype=torch.float32
        )
        self.register_buffer("row_weights", weights, persistent=False)

    # --- trainer contract -------------------------------------------------------------------

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        if self.discriminator is None:
            return super().optimizer_groups()
        return self.adversarial_groups(
            [self.generator],
            [self.discriminator],
            lr=c["lr"],
            lr_d=c["lr_d"],
            loss=c["adversarial"],
        )

    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        real, cond = batch["x"], self._cond(batch)
        static = batch.get("static")
        if self.discriminator is None or step < self.config["warmup_steps"]:
            with ctx.autocast():
                fake = self.predict(cond, static).float()
            content = self._content(fake, real)
            ctx.step(content, "main" if self.discriminator is None else "generator")
            return {"content": content.detach()}
        logs: dict[str, torch.Tensor] = {}
        spec, c = self.loss_spec, self.config
        n_critic = spec.n_critic if spec.penalty == "gradient" or spec.weight_clipping else 1
        for _ in range(n_critic):
            with torch.no_grad(), ctx.autocast():
                fake = self.predict(cond, static).float()
            d_loss = spec.d_loss(self._critic(real, cond, ctx), self._critic(fake, cond, ctx))
            total = d_loss
            if spec.penalty == "gradient":
                up = block_upsample(cond[:, : self.channels], self.factor)
                penalty = gradient_penalty(
                    lambda v, up=up: self.discriminator(torch.cat([v, up], 1)),
                    real,
                    fake,
                    weight=c["gp_weight"],
                )
                logs["gradient_penalty"] = penalty.detach()
                total = total + penalty
            ctx.step(total, "discriminator")
            if spec.weight_clipping:
                clip_weights_(self.discriminator, c["clip_value"])
            logs["d_loss"] = d_loss.detach()
        self.discriminator.requires_grad_(False)
        try:
            with ctx.autocast():
                fake = self.predict(cond, static).float()
            content = self._content(fake, real)
            g_adv = spec.g_loss(self._critic(fake, cond, ctx))
            total = content + c["adversarial_weight"] * g_adv
            if c["spectral_weight"] > 0:
                spec_loss = spectral_loss(fake, real, *c["spectral_spacing"])
                logs["spectral"] = spec_loss.detach()
                total = total + c["spectral_weight"] * spec_loss
            ctx.step(total, "generator")
        finally:
            self.discriminator.requires_grad_(True)
        logs.update(content=content.detach(), g_loss=g_adv.detach())
        return logs

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        cond: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` fine fields for the coarse ``cond`` ((C, h, w) or (1, C, h, w): n members
        of one field; (n, C, h, w): one member each). Super-resolution is conditional, so
        ``cond`` is required."""
        if cond is None:
            raise ClimgenInputError(
                "the superres family draws fine fields for a coarse input: call "
                "sample(n, cond=coarse) or use Downscaler(...).downscale(ds_coarse)"
            )
        cond = cond[None] if cond.ndim == 3 else cond
        if cond.shape[0] == 1 and n > 1:
            cond = cond.expand(n, -1, -1, -1)
            static = static.expand(n, -1, -1, -1) if static is not None else None
        if cond.shape[0] != n:
            raise ClimgenInputError(f"sample: cond has {cond.shape[0]} fields but n={n}")
        was = self.generator.training
        self.generator.eval()
        try:
            return self.predict(cond, static, generator=generator)
        finally:
            self.generator.train(was)

    # --- prediction ------------------------------------------------------------------------

    def inputs(
        self,
        cond: torch.Tensor,
        static: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The generator's (coarse, fine) inputs: coarse field + noise, static + noise."""
        b, _, h, w = cond.shape
        big = (h * self.factor, w * self.factor)
        coarse, fine = [cond], []
        if self.static_channels:
            if static is None or tuple(static.shape[1:]) != (self.static_channels, *big):
                got = None if static is None else tuple(static.shape)
                raise ClimgenInputError(
                    f"superres: expected static inputs (B, {self.static_channels}, {big[0]}, "
                    f"{big[1]}), got {got}"
                )
            fine.append(static.to(cond.dtype).expand(b, -1, -1, -1))
        if self.noise_channels:
            coarse.append(_noise((b, self.noise_channels, h, w), cond, generator))
            fine.append(_noise((b, self.noise_channels, *big), cond, generator))
        return torch.cat(coarse, 1), (torch.cat(fine, 1) if fine else None)

    def forward_inputs(self, coarse_in: torch.Tensor, fine_in: torch.Tensor | None):
        """G on prepared inputs (see :meth:`inputs`), with the constraint layer if any.

        Tiled inference runs ``self.generator`` on tiles and applies the (block-local)
        constraint once on the whole field, which gives the same result.
        """
        out = self.generator(coarse_in, fine_in)
        if self.config["constraint"] == "additive":
            weights = self.row_weights if self.row_weights.numel() else None
            out = conserve_additive(out, coarse_in[:, : self.channels], self.factor, weights)
        return out

    def predict(
        self,
        cond: torch.Tensor,
        static: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fine fields (B, C, H, W) for coarse ``cond`` (B, C + context_channels, h, w),
        normalised units."""
        want = self.channels + self.context_channels
        if cond.ndim != 4 or cond.shape[1] != want:
            raise ClimgenInputError(
                f"superres: expected a coarse input (B, {want}, h, w), got {tuple(cond.shape)}"
            )
        return self.forward_inputs(*self.inputs(cond, static, generator))

    # --- internals -------------------------------------------------------------------------

    def _cond(self, batch: dict) -> torch.Tensor:
        if "cond" not in batch:
            raise ClimgenInputError(
                "superres batches need 'cond' (the coarse field) besides 'x' (the fine field)"
            )
        return batch["cond"]

    def _content(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.config["content_loss"] == "l1":
            return F.l1_loss(fake, real)
        return F.mse_loss(fake, real)

    def _critic(self, x: torch.Tensor, cond: torch.Tensor, ctx) -> torch.Tensor:
        with ctx.autocast():
            up = block_upsample(cond[:, : self.channels], self.factor)
            out = self.discriminator(torch.cat([x, up], 1))
        return out.float()


def _noise(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
