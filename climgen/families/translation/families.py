"""Domain translation families: pix2pix (paired), CycleGAN and Augmented CycleGAN (unpaired).

Batches are ``{"x": domain-A fields (B, C, H, W), "y": domain-B fields (B, C, H, W)}`` in
normalised units; for pix2pix ``y[i]`` is the partner of ``x[i]``, for CycleGAN ``y`` is drawn
independently of ``x``.

- :class:`Pix2Pix` (Isola et al. 2017, "Image-to-image translation with conditional
  adversarial networks"): a U-Net generator G: A → B and a conditional PatchGAN critic
  D(a, b). The generator minimises ``l1_weight · mean|G(a) − b| + g_loss(D(a, G(a)))``, the
  critic ``d_loss(D(a, b), D(a, G(a)))``, with any GAN loss of the zoo
  (:data:`climgen.families.gan.GAN_LOSSES`; default "lsgan").
- :class:`CycleGAN` (Zhu et al. 2017, "Unpaired image-to-image translation using
  cycle-consistent adversarial networks"): generators G_AB, G_BA and critics D_A, D_B. The
  generators minimise ``g_loss(D_B(G_AB(a))) + g_loss(D_A(G_BA(b))) + λ_cyc · L_cyc +
  λ_id · L_id`` with :func:`cycle_consistency_loss` and :func:`identity_loss`, optionally
  plus spectral (``spectral_weight``) and covariance (``covariance_weight``,
  :func:`cycle_covariance_loss`) terms that pull each translated batch's statistics onto the
  other domain's batch.
- :class:`AugmentedCycleGAN` (Almahairi et al. 2018): CycleGAN with latent codes, many B fields
  per A field.

The networks are in :mod:`climgen.families.translation.nets`, the losses in
:mod:`climgen.families.translation.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from climgen.errors import ClimgenInputError
from climgen.families.base import FamilyModule, OptimizerSpec, check_grid_options, register_family
from climgen.families.gan.constraints import spectral_loss
from climgen.families.gan.losses import clip_weights_, gradient_penalty

from .losses import cycle_covariance_loss, identity_loss, patch_scores, translation_gan_loss
from .nets import LatentEncoder, PatchDiscriminator, UNetGenerator, latent_critic

__all__ = ["Pix2Pix", "CycleGAN", "AugmentedCycleGAN"]


def _check_pair(batch: dict, channels: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if "x" not in batch or "y" not in batch:
        raise ClimgenInputError(
            f"{name} batches need 'x' (domain A) and 'y' (domain B), got keys {sorted(batch)}"
        )
    a, b = batch["x"], batch["y"]
    if a.ndim != 4 or a.shape[1] != channels or b.shape[1:] != a.shape[1:]:
        raise ClimgenInputError(
            f"{name}: expected 'x' and 'y' of shape (B, {channels}, H, W), got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


class _TranslationBase(FamilyModule):
    """Shared constructor checks, critic update and ``sample`` of the translation families.

    The generator A → B (``ema_attr``) is the EMA module.
    """

    name = "translation"
    ema_attr = "g_ab"

    def _init_common(self, channels, shape, periodic, gan_loss):
        check_grid_options(channels, shape, periodic)
        self.channels = int(channels)
        self.shape = tuple(int(s) for s in shape)
        self.periodic = tuple(bool(p) for p in periodic)
        self.loss_spec = translation_gan_loss(gan_loss, self.name)

    def _critic_update(self, critic, real, fake, ctx, logs, key) -> None:
        spec, c = self.loss_spec, self.config
        d_loss = spec.d_loss(patch_scores(critic, real, ctx), patch_scores(critic, fake, ctx))
        total = d_loss
        if spec.penalty == "gradient":
            penalty = gradient_penalty(
                lambda v: critic(v).flatten(1).mean(1), real, fake, weight=c["gp_weight"]
            )
            logs[f"{key}_gradient_penalty"] = penalty.detach()
            total = total + penalty
        ctx.step(total, "discriminator")
        if spec.weight_clipping:
            clip_weights_(critic, c["clip_value"])
        logs[key] = d_loss.detach()

    def _optimizer_groups(self, generators, critics) -> dict[str, OptimizerSpec]:
        c = self.config
        return self.adversarial_groups(
            generators, critics, lr=c["lr"], lr_d=c["lr_d"], loss=c["gan_loss"]
        )

    def translate(self, a: torch.Tensor) -> torch.Tensor:
        """Domain-B fields for domain-A fields ``a`` (B, C, H, W), normalised units."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Translations of ``cond`` ((n, C, H, W) domain-A fields). Translation is conditional:
        there is no unconditional sampler, so ``cond`` is required."""
        if cond is None:
            raise ClimgenInputError(
                f"the {self.name} family translates given fields: call sample(n, cond=fields_a) "
                "or use Translator(...).translate(ds_a)"
            )
        cond = cond[None] if cond.ndim == 3 else cond
        if cond.shape[0] != n:
            raise ClimgenInputError(f"sample: cond has {cond.shape[0]} fields but n={n}")
        was = self.training
        self.eval()
        try:
            return self.translate(cond)
        finally:
            self.train(was)


@register_family("pix2pix")
class Pix2Pix(_TranslationBase):
    """Paired translation A → B: U-Net G, conditional PatchGAN D(a, b), L1 + adversarial loss.

    Parameters
    ----------
    channels, shape, periodic : field channels, grid (H, W), periodicity of (y, x).
    base_channels, depth : width and number of stride-2 levels of :class:`UNetGenerator`.
    disc_channels, disc_layers : width and stride-2 layers of :class:`PatchDiscriminator`
        (receptive field :func:`patch_receptive_field` (disc_layers)).
    gan_loss : one of :data:`TRANSLATION_GAN_LOSSES` (default "lsgan", as in CycleGAN).
    l1_weight : λ of the L1 term (Isola et al. use 100).
    spectral_norm : spectral normalisation of the critic's convs.
    lr, lr_d : learning rates of G and D; ``gp_weight`` / ``clip_value`` for WGAN-GP / WGAN.
    """

    name = "pix2pix"
    ema_attr = "generator"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        base_channels: int = 16,
        depth: int = 2,
        disc_channels: int = 16,
        disc_layers: int = 2,
        gan_loss: str = "lsgan",
        l1_weight: float = 100.0,
        spectral_norm: bool = False,
        lr: float = 2e-4,
        lr_d: float = 2e-4,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
    ):
        super().__init__()
        self._init_common(channels, shape, periodic, gan_loss)
        self.record_config(locals())
        self.generator = UNetGenerator(
            channels, self.periodic, base_channels=base_channels, depth=depth
        )
        self.discriminator = PatchDiscriminator(
            2 * channels,
            self.periodic,
            base_channels=disc_channels,
            n_layers=disc_layers,
            spectral_norm=spectral_norm,
        )

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        return self._optimizer_groups([self.generator], [self.discriminator])

    def translate(self, a: torch.Tensor) -> torch.Tensor:
        return self.generator(a)

    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        a, b = _check_pair(batch, self.channels, self.name)
        logs: dict[str, torch.Tensor] = {}
        spec = self.loss_spec
        n_critic = spec.n_critic if spec.penalty == "gradient" or spec.weight_clipping else 1
        for _ in range(n_critic):
            with torch.no_grad(), ctx.autocast():
                fake = self.generator(a).float()
            self._critic_update(
                self.discriminator,
                torch.cat([a, b], 1),
                torch.cat([a, fake], 1),
                ctx,
                logs,
                "d_loss",
            )
        self.discriminator.requires_grad_(False)
        try:
            with ctx.autocast():
                fake = self.generator(a).float()
            l1 = F.l1_loss(fake, b)
            g_adv = spec.g_loss(patch_scores(self.discriminator, torch.cat([a, fake], 1), ctx))
            ctx.step(self.config["l1_weight"] * l1 + g_adv, "generator")
        finally:
            self.discriminator.requires_grad_(True)
        logs.update(l1=l1.detach(), g_loss=g_adv.detach())
        return logs


@register_family("cyclegan")
class CycleGAN(_TranslationBase):
    """Unpaired translation A ↔ B: two U-Net generators, two PatchGAN critics, cycle and identity
    losses.

    Parameters
    ----------
    channels, shape, periodic : field channels, grid (H, W), periodicity of (y, x).
    base_channels, depth : :class:`UNetGenerator` options of both generators.
    disc_channels, disc_layers, spectral_norm : :class:`PatchDiscriminator` options of both
        critics (each sees one field, unconditionally).
    gan_loss : one of :data:`TRANSLATION_GAN_LOSSES` (default "lsgan", as Zhu et al.).
    cycle_weight : λ_cyc (Zhu et al.: 10). identity_weight : λ_id (Zhu et al.: 0.5·λ_cyc; 0
        switches the identity loss off, which lets G_AB change fields more freely).
    noise_channels : white-noise input channels of both generators (default 0: deterministic
        maps); lets G break symmetries of its input (see :class:`UNetGenerator`). Translations
        then depend on the noise, drawn with ``translate(a, generator)``.
    coord_channels : position channels (:func:`climgen.nn.blocks.coordinate_channels`) as
        extra inputs of both generators and both critics (default False): the maps and the
        critics' judgement may then depend on the location, as a bias correction does on
        geography, or a pinned convection pattern on its place.
    spectral_weight : λ_spec (default 0: off). Adds λ_spec · (L_spec(G_AB(a), b) +
        L_spec(G_BA(b), a)) to the generator loss, L_spec the log-spectral distance of the
        batch-mean power spectra (:func:`climgen.families.gan.constraints.spectral_loss`, the
        evaluation's definition): an explicit pull of the translated batch's spectrum onto
        the other domain's, which the patch critics see only through small windows.
    covariance_weight : λ_cov (default 0: off). Adds λ_cov · :func:`cycle_covariance_loss`
        (G_AB(a), b, G_BA(b), a) — the Wu et al. (2020) covariance term of the GAN family's
        ``covariance_weight`` (:func:`climgen.families.gan.constraints.covariance_loss`),
        each translated batch against the other domain's batch; ``covariance_patch`` (p):
        on a random p×p window instead of the full field (p ≤ min(H, W)).
    lr, lr_d, gp_weight, clip_value : as :class:`Pix2Pix`.
    """

    name = "cyclegan"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        base_channels: int = 16,
        depth: int = 2,
        disc_channels: int = 16,
        disc_layers: int = 2,
        gan_loss: str = "lsgan",
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
        spectral_weight: float = 0.0,
        covariance_weight: float = 0.0,
        covariance_patch: int | None = None,
        noise_channels: int = 0,
        coord_channels: bool = False,
        spectral_norm: bool = False,
        lr: float = 2e-4,
        lr_d: float = 2e-4,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
    ):
        super().__init__()
        self._init_common(channels, shape, periodic, gan_loss)
        if float(covariance_weight) < 0:
            raise ClimgenInputError(
                f"option 'covariance_weight' must be ≥ 0, got {covariance_weight}"
            )
        if covariance_patch is not None and (
            isinstance(covariance_patch, bool) or not 1 <= int(covariance_patch) <= min(self.shape)
        ):
            raise ClimgenInputError(
                f"option 'covariance_patch' must be None or an int in [1, {min(self.shape)}] "
                f"(the grid is {self.shape}), got {covariance_patch!r}"
            )
        self.record_config(locals())

        def gen():
            return UNetGenerator(
                channels,
                self.periodic,
                base_channels=base_channels,
                depth=depth,
                noise_channels=noise_channels,
                coord_channels=coord_channels,
            )

        def critic():
            return PatchDiscriminator(
                channels,
                self.periodic,
                base_channels=disc_channels,
                n_layers=disc_layers,
                spectral_norm=spectral_norm,
                coord_channels=coord_channels,
            )

        self.g_ab, self.g_ba = gen(), gen()
        self.d_a, self.d_b = critic(), critic()

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        return self._optimizer_groups([self.g_ab, self.g_ba], [self.d_a, self.d_b])

    def translate(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """G_AB(a); ``generator`` draws the noise channels, if any."""
        return self.g_ab(a, generator=generator)

    def translate_back(self, b: torch.Tensor, generator: torch.Generator | None = None):
        """Domain-A fields for domain-B fields ``b`` (the inverse generator G_BA)."""
        return self.g_ba(b, generator=generator)

    def reconstruct(self, a: torch.Tensor, generator: torch.Generator | None = None):
        """The A → B → A cycle G_BA(G_AB(a)) (normalised A units); a perfect cycle returns a."""
        return self.g_ba(self.g_ab(a, generator=generator), generator=generator)

    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        a, b = _check_pair(batch, self.channels, self.name)
        c, spec = self.config, self.loss_spec
        logs: dict[str, torch.Tensor] = {}
        n_critic = spec.n_critic if spec.penalty == "gradient" or spec.weight_clipping else 1
        for _ in range(n_critic):
            with torch.no_grad(), ctx.autocast():
                fake_b, fake_a = self.g_ab(a).float(), self.g_ba(b).float()
            self._critic_update(self.d_b, b, fake_b, ctx, logs, "d_b_loss")
            self._critic_update(self.d_a, a, fake_a, ctx, logs, "d_a_loss")
        critics = (self.d_a, self.d_b)
        for d in critics:
            d.requires_grad_(False)
        try:
            with ctx.autocast():
                fake_b, fake_a = self.g_ab(a).float(), self.g_ba(b).float()
                cycle = F.l1_loss(self.g_ba(fake_b).float(), a) + F.l1_loss(
                    self.g_ab(fake_a).float(), b
                )
                total = c["cycle_weight"] * cycle
                if c["identity_weight"] > 0:
                    ident = identity_loss(self.g_ab, self.g_ba, a, b).float()
                    logs["identity"] = ident.detach()
                    total = total + c["identity_weight"] * ident
            if c["spectral_weight"] > 0:
                spec_term = spectral_loss(fake_b, b) + spectral_loss(fake_a, a)
                logs["spectral"] = spec_term.detach()
                total = total + c["spectral_weight"] * spec_term
            if c.get("covariance_weight", 0.0) > 0:
                cov_term = cycle_covariance_loss(
                    fake_b, b, fake_a, a, patch_size=c.get("covariance_patch")
                )
                logs["covariance"] = cov_term.detach()
                total = total + c["covariance_weight"] * cov_term
            g_ab_adv = spec.g_loss(patch_scores(self.d_b, fake_b, ctx))
            g_ba_adv = spec.g_loss(patch_scores(self.d_a, fake_a, ctx))
            ctx.step(total + g_ab_adv + g_ba_adv, "generator")
        finally:
            for d in critics:
                d.requires_grad_(True)
        logs.update(cycle=cycle.detach(), g_ab_loss=g_ab_adv.detach(), g_ba_loss=g_ba_adv.detach())
        return logs


@register_family("augmented-cyclegan")
class AugmentedCycleGAN(_TranslationBase):
    """Many-to-many unpaired translation with latent codes (Almahairi et al. 2018, ICML,
    "Augmented CycleGAN: learning many-to-many mappings from unpaired data").

    Generators G_AB(a, z_b), G_BA(b, z_a) with codes z ~ N(0, I) of ``latent_dim``; encoders
    E_A(a, b), E_B(a, b) infer the codes; critics D_A, D_B (PatchGAN on fields) and D_ZA, D_ZB
    (MLPs on codes). Augmented cycle from (a, z_b): b̃ = G_AB(a, z_b), a' = G_BA(b̃, E_A(a, b̃)),
    z_b' = E_B(a, b̃), loss |a' − a| + |z_b' − z_b| (and symmetrically from (b, z_a)). The
    adversarial terms match b̃ to B, ã to A, and the inferred codes E_B(ã, b), E_A(a, b̃) to the
    prior. One input a with several z_b gives several plausible B fields (``translate(a,
    generator=...)``).

    Parameters are those of :class:`CycleGAN` (without ``identity_weight``) plus
    ``latent_dim`` (default 4) and ``latent_weight`` (weight of the code reconstruction, 1).
    """

    name = "augmented-cyclegan"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        latent_dim: int = 4,
        base_channels: int = 16,
        depth: int = 2,
        disc_channels: int = 16,
        disc_layers: int = 2,
        gan_loss: str = "lsgan",
        cycle_weight: float = 10.0,
        latent_weight: float = 1.0,
        spectral_norm: bool = False,
        lr: float = 2e-4,
        lr_d: float = 2e-4,
        gp_weight: float = 10.0,
        clip_value: float = 0.01,
    ):
        super().__init__()
        self._init_common(channels, shape, periodic, gan_loss)
        if isinstance(latent_dim, bool) or int(latent_dim) < 1:
            raise ClimgenInputError(f"option 'latent_dim' must be ≥ 1, got {latent_dim!r}")
        self.record_config(locals())
        self.latent_dim = int(latent_dim)

        def gen():
            return UNetGenerator(
                channels,
                self.periodic,
                base_channels=base_channels,
                depth=depth,
                latent_dim=latent_dim,
            )

        def critic():
            return PatchDiscriminator(
                channels,
                self.periodic,
                base_channels=disc_channels,
                n_layers=disc_layers,
                spectral_norm=spectral_norm,
            )

        self.g_ab, self.g_ba = gen(), gen()
        self.e_a = LatentEncoder(channels, latent_dim, self.periodic, base_channels)
        self.e_b = LatentEncoder(channels, latent_dim, self.periodic, base_channels)
        self.d_a, self.d_b = critic(), critic()
        self.d_za, self.d_zb = latent_critic(latent_dim), latent_critic(latent_dim)

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        return self._optimizer_groups(
            [self.g_ab, self.g_ba, self.e_a, self.e_b], [self.d_a, self.d_b, self.d_za, self.d_zb]
        )

    def prior(self, n: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        device = generator.device if generator is not None else like.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=like.dtype)
        return z.to(like.device)

    def translate(
        self,
        a: torch.Tensor,
        generator: torch.Generator | None = None,
        z: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One plausible B field per A field, for codes ``z`` (default: drawn from the prior)."""
        return self.g_ab(a, self.prior(a.shape[0], a, generator) if z is None else z)

    def reconstruct(
        self, a: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The augmented A → B → A cycle: b̃ = G_AB(a, z_b), a' = G_BA(b̃, E_A(a, b̃))."""
        fake_b = self.translate(a, generator)
        return self.g_ba(fake_b, self.e_a(a, fake_b))

    def _fakes(self, a, b):
        z_a, z_b = self.prior(a.shape[0], a), self.prior(b.shape[0], b)
        return z_a, z_b, self.g_ab(a, z_b), self.g_ba(b, z_a)

    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        a, b = _check_pair(batch, self.channels, self.name)
        c, spec = self.config, self.loss_spec
        logs: dict[str, torch.Tensor] = {}
        n_critic = spec.n_critic if spec.penalty == "gradient" or spec.weight_clipping else 1
        for _ in range(n_critic):
            with torch.no_grad(), ctx.autocast():
                z_a, z_b, fake_b, fake_a = self._fakes(a, b)
                code_b, code_a = self.e_b(fake_a, b), self.e_a(a, fake_b)
            self._critic_update(self.d_b, b, fake_b.float(), ctx, logs, "d_b_loss")
            self._critic_update(self.d_a, a, fake_a.float(), ctx, logs, "d_a_loss")
            self._critic_update(self.d_zb, z_b, code_b.float(), ctx, logs, "d_zb_loss")
            self._critic_update(self.d_za, z_a, code_a.float(), ctx, logs, "d_za_loss")
        critics = (self.d_a, self.d_b, self.d_za, self.d_zb)
        for d in critics:
            d.requires_grad_(False)
        try:
            with ctx.autocast():
                z_a, z_b, fake_b, fake_a = self._fakes(a, b)
                code_a, code_b = self.e_a(a, fake_b), self.e_b(fake_a, b)
                rec_a = self.g_ba(fake_b, code_a)
                rec_b = self.g_ab(fake_a, code_b)
                cycle = F.l1_loss(rec_a.float(), a) + F.l1_loss(rec_b.float(), b)
                latent = F.l1_loss(self.e_b(a, fake_b).float(), z_b) + F.l1_loss(
                    self.e_a(fake_a, b).float(), z_a
                )
            adv = (
                spec.g_loss(patch_scores(self.d_b, fake_b.float(), ctx))
                + spec.g_loss(patch_scores(self.d_a, fake_a.float(), ctx))
                + spec.g_loss(patch_scores(self.d_zb, code_b.float(), ctx))
                + spec.g_loss(patch_scores(self.d_za, code_a.float(), ctx))
            )
            total = adv + c["cycle_weight"] * cycle + c["latent_weight"] * latent
            ctx.step(total, "generator")
        finally:
            for d in critics:
                d.requires_grad_(True)
        logs.update(cycle=cycle.detach(), latent_cycle=latent.detach(), g_loss=adv.detach())
        return logs

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` translations of ``cond``: (n, C, H, W) one each, or (C, H, W) / (1, C, H, W)
        n members of one field (codes drawn with ``generator``)."""
        if cond is not None:
            cond = cond[None] if cond.ndim == 3 else cond
            if cond.shape[0] == 1 and n > 1:
                cond = cond.expand(n, -1, -1, -1)
        if cond is None or cond.shape[0] != n:
            raise ClimgenInputError(
                "the augmented-cyclegan family translates given fields: call "
                "sample(n, cond=fields_a) with n fields (or one field for n members)"
            )
        was = self.training
        self.eval()
        try:
            return self.translate(cond, generator)
        finally:
            self.train(was)
