"""The GAN family: generator + discriminator + a loss from the zoo, driven by the one trainer.

``GAN(channels, shape, loss="wgan-gp", generator="dcgan")`` holds a generator
(:class:`DCGANGenerator` or :class:`StyleGenerator`), a discriminator
(:class:`DCGANDiscriminator`, or BEGAN's :class:`AutoencoderDiscriminator`) and the loss of
:data:`GAN_LOSSES`. One ``training_step`` is ``n_critic`` discriminator updates on the batch
followed by one generator update (each through ``ctx.step``), or, with ``optimizer="cgd"``,
one joint competitive update through ``ctx.game_step``. The generator loss may add the
covariance constraint of Wu et al. (2020) and a spectral loss (:mod:`.constraints`).

References: Goodfellow et al. (2014); Radford et al. (2016); Heusel et al. (2017), *GANs
trained by a two time-scale update rule* (TTUR: lr_d > lr_g); Gulrajani et al. (2017);
Wu et al. (2020), J. Comput. Phys. 406, 109209.

Example
-------
>>> gan = GAN(channels=1, shape=(16, 32), loss="hinge", base_channels=8, latent_dim=8)
>>> gan.sample(2, generator=torch.Generator().manual_seed(0)).shape
torch.Size([2, 1, 16, 32])
"""

from __future__ import annotations

import torch

from climgen.errors import ClimgenInputError
from climgen.families.base import FamilyModule, OptimizerSpec, register_family
from climgen.families.latent import lerp, slerp

from .constraints import covariance_loss, spectral_loss
from .losses import (
    BEGANEquilibrium,
    add_instance_noise,
    annealed_sigma,
    clip_weights_,
    dragan_penalty,
    flip_labels,
    get_gan_loss,
    gradient_penalty,
    reconstruction_error,
)
from .nets import AutoencoderDiscriminator, DCGANDiscriminator, DCGANGenerator, StyleGenerator

__all__ = ["GAN", "slerp", "GENERATORS", "GAN_OPTIMIZERS"]

GENERATORS = ("dcgan", "style")
GAN_OPTIMIZERS = ("adam", "rmsprop", "optimistic-adam", "extragradient", "cgd")


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ClimgenInputError(
            f"GAN option {name}={value!r} is not valid; choose one of {', '.join(map(str, valid))}"
        )


@register_family("gan")
class GAN(FamilyModule):
    """Generative adversarial network for gridded fields (C, H, W).

    Parameters
    ----------
    channels, shape, periodic : field channels, grid (H, W), periodicity of (y, x).
    generator : "dcgan" or "style" (StyleGAN2-like: mapping net, modulated convolutions).
    loss : one of :func:`available_gan_losses` ("wgan-gp" default).
    latent_dim, base_channels : latent size and the narrowest conv width.
    n_critic : discriminator updates per generator update (default 5 for "wgan"/"wgan-gp",
        1 otherwise). The same real batch is used for all of them.
    lr_g, lr_d : learning rates (TTUR, Heusel et al. 2017: the critic learns faster).
    optimizer : "adam", "rmsprop", "optimistic-adam", "extragradient" (per player) or "cgd"
        (one joint "game" group, learning rate ``lr_g``; ``n_critic`` is then ignored).
        Adam betas are (0.0, 0.9) for "wgan-gp" (Gulrajani et al.), (0.5, 0.999) otherwise.
    spectral_norm : spectral normalisation of every discriminator weight (Miyato 2018).
    label_smoothing : one-sided smoothing ε, real target 1 − ε (minimax, non-saturating,
        lsgan, dragan only).
    label_flip : probability p of swapping the real/fake labels of each sample pair.
    instance_noise, instance_noise_steps : N(0, σ_t²) added to every discriminator input,
        σ_t decaying linearly from ``instance_noise`` to 0 over ``instance_noise_steps``.
    gp_weight : λ of the WGAN-GP / DRAGAN penalties. ``clip_value``: WGAN weight clipping c.
    began_gamma, began_lambda_k : BEGAN's diversity ratio γ and k_t gain λ_k.
    covariance_weight : weight of the Wu et al. (2020) covariance term in the generator loss
        (``covariance_patch``: compute it on a random p×p window instead of the full field).
    spectral_weight, spectral_spacing : weight of the spectral loss and the grid spacings
        (dy, dx) of its wavenumbers.
    """

    name = "gan"
    ema_attr = "generator"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        generator: str = "dcgan",
        loss: str = "wgan-gp",
        latent_dim: int = 64,
        base_channels: int = 32,
        n_critic: int | None = None,
        lr_g: float = 1e-4,
        lr_d: float = 4e-4,
        optimizer: str = "adam",
        spectral_norm: bool = False,
        label_smoothing: float = 0.0,
        label_flip: float = 0.0,
        instance_noise: float = 0.0,
        instance_noise_steps: int = 10_000,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
        began_gamma: float = 0.5,
        began_lambda_k: float = 1e-3,
        covariance_weight: float = 0.0,
        covariance_patch: int | None = None,
        spectral_weight: float = 0.0,
        spectral_spacing: tuple[float, float] = (1.0, 1.0),
    ):
        super().__init__()
        _choice("generator", generator, GENERATORS)
        self.loss_spec = get_gan_loss(loss)
        _choice("optimizer", optimizer, GAN_OPTIMIZERS)
        shape = tuple(int(s) for s in shape)
        periodic = tuple(bool(p) for p in periodic)
        if len(shape) != 2 or len(periodic) != 2:
            raise ClimgenInputError(
                f"GAN: shape and periodic need 2 entries (y, x), got {shape} and {periodic}"
            )
        for opt_name, value in (("label_smoothing", label_smoothing), ("label_flip", label_flip)):
            if not 0.0 <= value < 1.0:
                raise ClimgenInputError(f"GAN option {opt_name} must lie in [0, 1), got {value}")
        if label_smoothing and not self.loss_spec.uses_targets:
            raise ClimgenInputError(
                f"GAN option label_smoothing applies to the losses with labels (minimax, "
                f"non-saturating, lsgan, dragan), not to loss={loss!r}"
            )
        if n_critic is None:
            n_critic = self.loss_spec.n_critic
        if int(n_critic) < 1:
            raise ClimgenInputError(f"GAN option n_critic must be ≥ 1, got {n_critic}")
        self.record_config(locals())
        self.latent_dim, self.shape, self.periodic = int(latent_dim), shape, periodic
        gen_cls = DCGANGenerator if generator == "dcgan" else StyleGenerator
        self.generator = gen_cls(latent_dim, channels, shape, periodic, base_channels)
        if self.loss_spec.autoencoder:
            self.discriminator = AutoencoderDiscriminator(
                channels,
                shape,
                periodic,
                base_channels,
                code_dim=latent_dim,
                spectral_norm=spectral_norm,
            )
            self.equilibrium = BEGANEquilibrium(began_gamma, began_lambda_k)
        else:
            self.discriminator = DCGANDiscriminator(
                channels, shape, periodic, base_channels, spectral_norm=spectral_norm
            )

    # --- trainer contract -------------------------------------------------------------------

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        g_params, d_params = (
            list(self.generator.parameters()),
            list(self.discriminator.parameters()),
        )
        if c["optimizer"] == "cgd":
            return {
                "game": OptimizerSpec(
                    g_params + d_params,
                    lr=c["lr_g"],
                    kind="cgd",
                    extra={"min_params": g_params, "max_params": d_params},
                )
            }
        return self.adversarial_groups(
            [self.generator],
            [self.discriminator],
            lr=c["lr_g"],
            lr_d=c["lr_d"],
            loss=c["loss"],
            kind=c["optimizer"],
        )

    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        real = batch["x"]
        if self.config["optimizer"] == "cgd":
            return self._game_step(real, step, ctx)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(self.config["n_critic"]):
            fake = self._generate(real.shape[0], real.device, ctx).detach()
            d_total, logs = self._discriminator_loss(real, fake, step, ctx)
            ctx.step(d_total, "discriminator")
            self._after_discriminator_update()
        self.discriminator.requires_grad_(False)  # no critic weight gradients in the G step
        try:
            fake = self._generate(real.shape[0], real.device, ctx)
            g_total, g_logs = self._generator_loss(real, fake, step, ctx)
            ctx.step(g_total, "generator")
        finally:
            self.discriminator.requires_grad_(True)
        return {**logs, **g_logs}

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, truncation: float = 1.0
    ) -> torch.Tensor:
        """``n`` generated fields (n, C, H, W) in normalised units (generator in eval mode)."""
        return self.generate(self._latent(n, generator), generator=generator, truncation=truncation)

    # --- helpers for users --------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self, z: torch.Tensor, *, generator: torch.Generator | None = None, **style_options
    ) -> torch.Tensor:
        """G(z) in eval mode; ``style_options`` (mix_z, mix_layer, truncation) for "style"."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            z = z.to(self._device())
            if isinstance(self.generator, StyleGenerator):
                return self.generator(z, generator=generator, **style_options)
            if (
                style_options.get("mix_z") is not None
                or style_options.get("truncation", 1.0) != 1.0
            ):
                raise ClimgenInputError("style mixing and truncation need generator='style'")
            return self.generator(z)
        finally:
            self.generator.train(was_training)

    def interpolate(
        self,
        z0: torch.Tensor,
        z1: torch.Tensor,
        steps: int = 8,
        *,
        method: str = "slerp",
        generator: torch.Generator | None = None,
    ):
        """Fields along a latent path z0 → z1 (``steps`` points, ends included): (steps, C, H, W).

        ``method="slerp"`` (spherical, keeps the Gaussian latent's norm) or ``"linear"``.
        For the style generator pass a seeded ``generator`` to fix the noise inputs.
        """
        _choice("method", method, ("slerp", "linear"))
        t = torch.linspace(0.0, 1.0, int(steps), dtype=z0.dtype, device=z0.device)
        zs = (slerp if method == "slerp" else lerp)(z0, z1, t)
        return self.generate(zs, generator=generator)

    def latent_arithmetic(
        self,
        z_a: torch.Tensor,
        z_b: torch.Tensor,
        z_c: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """G(z_a − z_b + z_c) (Radford et al. 2016, §6.3; pass batch means of z for robustness)."""
        return self.generate((z_a - z_b + z_c).reshape(-1, self.latent_dim), generator=generator)

    def style_mix(
        self,
        z_coarse: torch.Tensor,
        z_fine: torch.Tensor,
        layer: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Style mixing: layers < ``layer`` take w(z_coarse), the rest w(z_fine) (style only)."""
        if not isinstance(self.generator, StyleGenerator):
            raise ClimgenInputError("style_mix needs GAN(generator='style')")
        return self.generate(
            z_coarse, generator=generator, mix_z=z_fine.to(self._device()), mix_layer=layer
        )

    # --- internals ----------------------------------------------------------------------------

    def _device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def _latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self._device()
        src = generator.device if generator is not None else device
        return torch.randn(n, self.latent_dim, generator=generator, device=src).to(device)

    def _generate(self, n: int, device, ctx) -> torch.Tensor:
        with ctx.autocast():
            return self.generator(torch.randn(n, self.latent_dim, device=device)).float()

    def _d_out(self, x: torch.Tensor, ctx) -> torch.Tensor:
        with ctx.autocast():
            out = self.discriminator(x)
        out = out.float()
        return reconstruction_error(x, out) if self.loss_spec.autoencoder else out

    def _noisy(self, x: torch.Tensor, step: int) -> torch.Tensor:
        c = self.config
        return add_instance_noise(
            x, annealed_sigma(c["instance_noise"], step, c["instance_noise_steps"])
        )

    def _discriminator_loss(self, real, fake, step, ctx):
        c, spec = self.config, self.loss_spec
        real_out = self._d_out(self._noisy(real, step), ctx)
        fake_out = self._d_out(self._noisy(fake, step), ctx)
        logs = {}
        if spec.autoencoder:
            logs["convergence"] = self.equilibrium.update(real_out, fake_out)
            kw = {"k": self.equilibrium.k}
            logs["k_t"] = self.equilibrium.k.detach().clone()
        else:
            kw = {"real_target": 1.0 - c["label_smoothing"]} if spec.uses_targets else {}
        real_out, fake_out = flip_labels(real_out, fake_out, c["label_flip"])
        d_loss = spec.d_loss(real_out, fake_out, **kw)
        total = d_loss
        if spec.penalty == "gradient":
            penalty = gradient_penalty(self.discriminator, real, fake, weight=c["gp_weight"])
            logs["gradient_penalty"] = penalty.detach()
            total = total + penalty
        elif spec.penalty == "dragan":
            penalty = dragan_penalty(self.discriminator, real, weight=c["gp_weight"])
            logs["dragan_penalty"] = penalty.detach()
            total = total + penalty
        logs["d_loss"] = d_loss.detach()
        return total, logs

    def _after_discriminator_update(self) -> None:
        if self.loss_spec.weight_clipping:
            clip_weights_(self.discriminator, self.config["clip_value"])

    def _generator_loss(self, real, fake, step, ctx):
        c = self.config
        g_loss = self.loss_spec.g_loss(self._d_out(self._noisy(fake, step), ctx))
        total, logs = g_loss, {"g_loss": g_loss.detach()}
        if c["covariance_weight"] > 0:
            cov = covariance_loss(fake, real, patch_size=c["covariance_patch"])
            logs["covariance"] = cov.detach()
            total = total + c["covariance_weight"] * cov
        if c["spectral_weight"] > 0:
            spec_loss = spectral_loss(fake, real, *c["spectral_spacing"])
            logs["spectral"] = spec_loss.detach()
            total = total + c["spectral_weight"] * spec_loss
        return total, logs

    def _game_step(self, real, step, ctx):
        # One joint update: the critic's loss keeps its graph through G (fake not detached),
        # so CGD sees the mixed second derivatives of both players' losses.
        fake = self._generate(real.shape[0], real.device, ctx)
        d_total, logs = self._discriminator_loss(real, fake, step, ctx)
        g_total, g_logs = self._generator_loss(real, fake, step, ctx)
        ctx.game_step("game", g_total, -d_total)
        self._after_discriminator_update()
        return {**logs, **g_logs}
