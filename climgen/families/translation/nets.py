"""Networks of the translation families: the U-Net generator, the PatchGAN critic, the latent
encoder and code critic of Augmented CycleGAN.

Every convolution is a :class:`climgen.nn.PeriodicConv2d` (circular padding on periodic axes).
The critics have no normalisation layers, so each output pixel sees exactly the window
:func:`patch_receptive_field` of the input (instance or batch norm would let it see all).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import (
    PeriodicConv2d,
    coordinate_channels,
    make_norm,
    n_coordinate_channels,
)
from climgen.nn import spectral_norm as apply_spectral_norm

__all__ = [
    "UNetGenerator",
    "PatchDiscriminator",
    "patch_receptive_field",
    "LatentEncoder",
    "latent_critic",
]


class _ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, periodic, stride: int = 1):
        super().__init__(
            PeriodicConv2d(c_in, c_out, 3, stride, periodic=periodic),
            make_norm("group", c_out),
            nn.LeakyReLU(0.2),
        )


class UNetGenerator(nn.Module):
    """Residual U-Net ``G(x) = x + U(x)`` for (B, C, H, W) fields of any H, W.

    ``depth`` stride-2 levels (3×3 convs, GroupNorm, LeakyReLU 0.2) with widths
    ``base_channels · 2^l`` (capped at 8×), skip connections by concatenation, nearest-neighbour
    up-sampling to the skip's size (odd sizes work). The last conv is zero-initialised, so an
    untrained G is the identity map — a natural start when A and B are similar climates.
    Reference: Ronneberger et al. 2015; the pix2pix generator of Isola et al. 2017.
    """

    def __init__(
        self,
        channels: int,
        periodic: tuple[bool, bool] = (False, True),
        *,
        base_channels: int = 16,
        depth: int = 2,
        latent_dim: int = 0,
        noise_channels: int = 0,
        coord_channels: bool = False,
    ):
        super().__init__()
        if depth < 0:
            raise ClimgenInputError(f"option 'depth' must be ≥ 0, got {depth}")
        if isinstance(noise_channels, bool) or int(noise_channels) < 0:
            raise ClimgenInputError(f"option 'noise_channels' must be ≥ 0, got {noise_channels}")
        periodic = tuple(bool(p) for p in periodic)
        self.latent_dim = int(latent_dim)
        self.noise_channels = int(noise_channels)
        self.periodic, self.coord_channels = periodic, bool(coord_channels)
        n_in = channels + self.noise_channels
        n_in += n_coordinate_channels(periodic) if self.coord_channels else 0
        widths = [base_channels * min(2**level, 8) for level in range(depth + 1)]
        self.stem = _ConvNormAct(n_in, widths[0], periodic)
        self.down = nn.ModuleList(
            _ConvNormAct(widths[i], widths[i + 1], periodic, stride=2) for i in range(depth)
        )
        self.up = nn.ModuleList(
            _ConvNormAct(widths[i + 1] + widths[i], widths[i], periodic)
            for i in reversed(range(depth))
        )
        self.head = PeriodicConv2d(widths[0], channels, 3, periodic=periodic)
        # Latent codes modulate every block's output (FiLM: h·(1 + γ(z)) + β(z), like the
        # conditional normalisation of Augmented CycleGAN): constant code channels fed at the
        # input would be removed by the next GroupNorm.
        block_widths = [widths[0], *widths[1:], *widths[:-1][::-1]]
        self.film = nn.ModuleList(
            nn.Linear(self.latent_dim, 2 * w) for w in (block_widths if self.latent_dim else [])
        )
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``x`` (B, C, H, W); ``z`` (B, latent_dim) latent codes (FiLM-modulating every
        block) when the generator was built with ``latent_dim > 0``. With ``noise_channels``
        > 0, that many channels of white noise N(0, 1) per grid cell (drawn with
        ``generator``, else the global RNG) are appended to the input: a convolutional net is
        translation-equivariant, so without noise (or coordinates) it cannot break a symmetry
        of its input, e.g. a field that repeats under a shift of half the domain."""
        if self.latent_dim:
            if z is None or z.shape != (x.shape[0], self.latent_dim):
                got = None if z is None else tuple(z.shape)
                raise ClimgenInputError(
                    f"this generator needs latent codes z of shape ({x.shape[0]}, "
                    f"{self.latent_dim}), got {got}"
                )
        films = iter(self.film)
        x_in = x
        if self.noise_channels:
            shape = (x.shape[0], self.noise_channels, *x.shape[-2:])
            device = generator.device if generator is not None else x.device
            noise = torch.randn(shape, generator=generator, device=device, dtype=x.dtype)
            x_in = torch.cat([x, noise.to(x.device)], 1)
        if self.coord_channels:
            x_in = coordinate_channels(x_in, self.periodic)

        def modulate(h):
            if not self.latent_dim:
                return h
            gamma, beta = next(films)(z)[:, :, None, None].chunk(2, dim=1)
            return h * (1 + gamma) + beta

        h = modulate(self.stem(x_in))
        skips = [h]
        for block in self.down:
            h = modulate(block(h))
            skips.append(h)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = modulate(block(torch.cat([h, skip], 1)))
        return x + self.head(h)


def patch_receptive_field(n_layers: int) -> int:
    """Side (cells) of the input window seen by one output of :class:`PatchDiscriminator`.

    The critic is ``n_layers`` 4×4 stride-2 convs then two 4×4 stride-1 convs; walking back
    from one output cell, a conv of kernel k and stride s maps a window r to (r − 1)·s + k:
    1 → 4 → 7 → 16 → 34 → 70 → 142 for n_layers = 0, 1, 2, 3 (3 gives the 70×70 PatchGAN).
    """
    r = 1
    for k, s in [(4, 1), (4, 1)] + [(4, 2)] * int(n_layers):
        r = (r - 1) * s + k
    return r


class PatchDiscriminator(nn.Module):
    """PatchGAN critic: a map (B, 1, H/2^n, W/2^n) of realism scores of overlapping patches.

    ``n_layers`` 4×4 stride-2 convs (widths ``base_channels · 2^l``, capped at 8×), one 4×4
    stride-1 conv and a 4×4 stride-1 output conv, LeakyReLU 0.2, optional spectral norm, no
    normalisation layers. Each output cell sees a square window of side
    :func:`patch_receptive_field` (``n_layers``) — 16 for 1, 34 for 2, 70 for 3 (Isola et al.
    2017, who found 70×70 patches a good trade-off). Periodic axes wrap.
    """

    def __init__(
        self,
        in_channels: int,
        periodic: tuple[bool, bool] = (False, True),
        *,
        base_channels: int = 16,
        n_layers: int = 2,
        spectral_norm: bool = False,
        coord_channels: bool = False,
    ):
        super().__init__()
        periodic = tuple(bool(p) for p in periodic)
        self.periodic, self.coord_channels = periodic, bool(coord_channels)
        self.n_layers = int(n_layers)
        self.receptive_field = patch_receptive_field(self.n_layers)
        layers: list[nn.Module] = []
        c_in = in_channels + (n_coordinate_channels(periodic) if self.coord_channels else 0)
        widths = [base_channels * min(2**i, 8) for i in range(self.n_layers + 1)]
        for i in range(self.n_layers):
            layers += [PeriodicConv2d(c_in, widths[i], 4, 2, periodic=periodic), nn.LeakyReLU(0.2)]
            c_in = widths[i]
        layers += [PeriodicConv2d(c_in, widths[-1], 4, 1, periodic=periodic), nn.LeakyReLU(0.2)]
        layers += [PeriodicConv2d(widths[-1], 1, 4, 1, periodic=periodic)]
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            apply_spectral_norm(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coord_channels:
            x = coordinate_channels(x, self.periodic)
        return self.net(x)


class LatentEncoder(nn.Module):
    """E(a, b) → z (B, latent_dim): stride-2 3×3 convs on the pair, global mean, linear."""

    def __init__(self, channels: int, latent_dim: int, periodic, base_channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            _ConvNormAct(2 * channels, base_channels, periodic, stride=2),
            _ConvNormAct(base_channels, 2 * base_channels, periodic, stride=2),
        )
        self.out = nn.Linear(2 * base_channels, latent_dim)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(torch.cat([a, b], 1)).mean((-2, -1)))


def latent_critic(latent_dim: int, width: int = 64) -> nn.Module:
    """MLP critic of latent codes (B, latent_dim) → (B, 1): two LeakyReLU(0.2) layers."""
    return nn.Sequential(
        nn.Linear(latent_dim, width),
        nn.LeakyReLU(0.2),
        nn.Linear(width, width),
        nn.LeakyReLU(0.2),
        nn.Linear(width, 1),
    )
