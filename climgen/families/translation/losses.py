"""Losses of the translation families: cycle consistency, identity, the covariance term of both
directions, and the GAN losses the patch critics support.

- :func:`cycle_consistency_loss`, :func:`identity_loss`: Zhu et al. (2017), "Unpaired
  image-to-image translation using cycle-consistent adversarial networks".
- :func:`cycle_covariance_loss`: the Wu et al. (2020) covariance constraint of the GAN family,
  each translated batch against the other domain's batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.families.gan.constraints import covariance_loss
from climgen.families.gan.losses import get_gan_loss

__all__ = [
    "cycle_consistency_loss",
    "identity_loss",
    "cycle_covariance_loss",
    "translation_gan_loss",
    "patch_scores",
    "TRANSLATION_GAN_LOSSES",
]

TRANSLATION_GAN_LOSSES = ("non-saturating", "minimax", "hinge", "lsgan", "wgan", "wgan-gp")


def cycle_consistency_loss(g_ab, g_ba, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_cyc = mean|G_BA(G_AB(a)) − a| + mean|G_AB(G_BA(b)) − b| (Zhu et al. 2017, eq. 2).

    Zero when G_BA inverts G_AB on the data (e.g. both identity maps).
    """
    return F.l1_loss(g_ba(g_ab(a)), a) + F.l1_loss(g_ab(g_ba(b)), b)


def identity_loss(g_ab, g_ba, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L_id = mean|G_AB(b) − b| + mean|G_BA(a) − a| (Zhu et al. 2017, sec. 5.2; Taigman 2017):
    a generator fed a field already in its target domain should leave it unchanged."""
    return F.l1_loss(g_ab(b), b) + F.l1_loss(g_ba(a), a)


def cycle_covariance_loss(
    fake_b: torch.Tensor,
    b: torch.Tensor,
    fake_a: torch.Tensor,
    a: torch.Tensor,
    *,
    patch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_cov = C(G_AB(a), b) + C(G_BA(b), a): the covariance-matching term of both directions.

    C is the Wu et al. (2020) constraint of the GAN family,
    :func:`climgen.families.gan.constraints.covariance_loss`:
    C(x, y) = ‖Σ_x − Σ_y‖²_F / ‖Σ_y‖²_F with Σ the covariance over the batch of the fields
    flattened over channels and grid (full field; with ``patch_size=p`` a random p×p window,
    the same for both batches of one direction, drawn with ``generator``). Here y is the batch
    of the *other* domain (unpaired, as the critics see it), so the term pulls the translated
    batch's covariance onto the target domain's. 0 when each translated batch equals its
    target batch; differentiable w.r.t. the translated batches only.

    Wu, Kashinath, Mustafa et al. (2020), J. Comput. Phys. 406, 109209.
    """
    return covariance_loss(fake_b, b, patch_size=patch_size, generator=generator) + covariance_loss(
        fake_a, a, patch_size=patch_size, generator=generator
    )


def translation_gan_loss(name: str, family: str):
    """The GAN loss ``name`` of the zoo, if the translation families support it (errors name
    ``family`` and the choices)."""
    if name not in TRANSLATION_GAN_LOSSES:
        raise ClimgenInputError(
            f"{family}: gan_loss={name!r} is not supported; choose one of "
            f"{', '.join(TRANSLATION_GAN_LOSSES)}"
        )
    return get_gan_loss(name)


def patch_scores(critic: nn.Module, x: torch.Tensor, ctx) -> torch.Tensor:
    """Patch scores flattened to (B·h·w,): every patch is one sample of the GAN loss."""
    with ctx.autocast():
        out = critic(x)
    return out.float().flatten()
