"""Super-resolution networks: an EDSR-style residual net with pixel-shuffle up-sampling.

:class:`SRResNet` maps a coarse field (B, C, h, w) to the fine field (B, C, f·h, f·w):

1. a 3×3 head convolution on the coarse grid (input: the C coarse channels plus optional
   noise channels);
2. ``n_blocks`` EDSR residual blocks ``x + s · conv(ReLU(conv(x)))`` without normalisation
   (Lim et al. 2017: batch norm removes range flexibility and, for us, would make a tile's
   output depend on its neighbours), residual scaling s = 0.1, and a global skip;
3. up-sampling by each prime factor r of f (8 = 2·2·2, 6 = 2·3, 5, 7): a 3×3 convolution to
   r²·F channels and a pixel shuffle (Shi et al. 2016, *Real-time single image and video
   super-resolution using an efficient sub-pixel convolutional neural network*);
4. on the fine grid, the optional static high-resolution inputs (topography, land fraction)
   and fine noise channels are concatenated, followed by ``fine_blocks`` residual blocks and a
   3×3 convolution to C channels;
5. the network predicts a residual on top of the bilinear up-sampled coarse field (periodic
   axes wrap), so an untrained net starts at bilinear interpolation.

Every convolution is a :class:`climgen.nn.PeriodicConv2d` (circular padding on periodic
axes). The net is local: :attr:`SRResNet.receptive_radius` bounds, in coarse cells, how far
an output cell looks, which tiled inference uses as its halo.

References: Ledig et al. (2017), *Photo-realistic single image super-resolution using a
generative adversarial network* (SRResNet/SRGAN), CVPR; Lim et al. (2017), *Enhanced deep
residual networks for single image super-resolution* (EDSR), CVPR workshops.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import PeriodicConv2d, resize

__all__ = ["prime_factors", "EDSRBlock", "SRResNet"]


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in ascending order (8 → [2, 2, 2], 6 → [2, 3], 7 → [7])."""
    n = int(n)
    if n < 1:
        raise ClimgenInputError(f"cannot factorise {n}: expected a positive integer")
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


class EDSRBlock(nn.Module):
    """``x + scale · conv(ReLU(conv(x)))`` with periodic 3×3 convolutions, no normalisation."""

    def __init__(self, channels: int, periodic: tuple[bool, bool], scale: float = 0.1):
        super().__init__()
        self.conv1 = PeriodicConv2d(channels, channels, 3, periodic=periodic)
        self.conv2 = PeriodicConv2d(channels, channels, 3, periodic=periodic)
        self.act = nn.ReLU()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(self.act(self.conv1(x)))


class SRResNet(nn.Module):
    """EDSR/SRResNet generator: coarse (B, C [+ noise], h, w) → fine (B, C, f·h, f·w).

    Parameters
    ----------
    channels : field channels C (variables), the same in and out.
    factor : up-sampling factor f (2–8; any integer ≥ 2 works).
    periodic : (periodic_y, periodic_x).
    base_channels : feature width F.
    n_blocks : residual blocks on the coarse grid; ``fine_blocks`` on the fine grid.
    coarse_extra, fine_extra : extra input channels on the coarse grid (noise) and on the fine
        grid (static fields + noise).
    """

    def __init__(
        self,
        channels: int,
        factor: int,
        periodic: tuple[bool, bool] = (False, True),
        *,
        base_channels: int = 32,
        n_blocks: int = 8,
        fine_blocks: int = 1,
        coarse_extra: int = 0,
        fine_extra: int = 0,
    ):
        super().__init__()
        for name, value, low in (
            ("channels", channels, 1),
            ("factor", factor, 2),
            ("base_channels", base_channels, 1),
            ("n_blocks", n_blocks, 0),
            ("fine_blocks", fine_blocks, 0),
            ("coarse_extra", coarse_extra, 0),
            ("fine_extra", fine_extra, 0),
        ):
            if int(value) != value or value < low:
                raise ClimgenInputError(f"SRResNet: {name} must be an integer ≥ {low}, got {value}")
        self.channels, self.factor = int(channels), int(factor)
        self.periodic = tuple(bool(p) for p in periodic)
        self.coarse_extra, self.fine_extra = int(coarse_extra), int(fine_extra)
        width = int(base_channels)
        self.head = PeriodicConv2d(channels + coarse_extra, width, 3, periodic=self.periodic)
        self.body = nn.Sequential(
            *(EDSRBlock(width, self.periodic) for _ in range(n_blocks)),
            PeriodicConv2d(width, width, 3, periodic=self.periodic),
        )
        stages: list[nn.Module] = []
        for r in prime_factors(factor):
            stages += [PeriodicConv2d(width, width * r * r, 3, periodic=self.periodic)]
            stages += [nn.PixelShuffle(r)]
        self.upsample = nn.Sequential(*stages)
        self.fuse = PeriodicConv2d(width + fine_extra, width, 3, periodic=self.periodic)
        self.fine = nn.Sequential(
            nn.ReLU(), *(EDSRBlock(width, self.periodic) for _ in range(fine_blocks))
        )
        self.out = PeriodicConv2d(width, channels, 3, periodic=self.periodic)
        # Coarse-grid reach: head, 2 per block, body tail, first up-sampling conv; later
        # up-sampling convs sit on finer grids (1/r of a coarse cell each); fine convs 1/f each.
        reach = 1 + 2 * n_blocks + 1 + 1
        scale = 1.0
        for r in prime_factors(factor)[:-1]:
            scale *= r
            reach += 1.0 / scale
        reach += (2 + 2 * fine_blocks) / self.factor
        self.receptive_radius = int(math.ceil(reach)) + 1  # +1: the bilinear skip

    def forward(self, coarse: torch.Tensor, fine_extra: torch.Tensor | None = None) -> torch.Tensor:
        """``coarse`` (B, C + coarse_extra, h, w), ``fine_extra`` (B, fine_extra, f·h, f·w)."""
        want = self.channels + self.coarse_extra
        if coarse.ndim != 4 or coarse.shape[1] != want:
            raise ClimgenInputError(
                f"SRResNet expects a coarse input (B, {want}, h, w), got {tuple(coarse.shape)}"
            )
        h = self.head(coarse)
        h = self.upsample(h + self.body(h))
        size = (coarse.shape[-2] * self.factor, coarse.shape[-1] * self.factor)
        if self.fine_extra:
            if fine_extra is None or tuple(fine_extra.shape[1:]) != (self.fine_extra, *size):
                got = None if fine_extra is None else tuple(fine_extra.shape)
                raise ClimgenInputError(
                    f"SRResNet expects fine-grid inputs (B, {self.fine_extra}, {size[0]}, "
                    f"{size[1]}) (static fields and noise), got {got}"
                )
            h = torch.cat([h, fine_extra.to(h.dtype)], dim=1)
        skip = resize(coarse[:, : self.channels], size, mode="bilinear", periodic=self.periodic)
        return skip + self.out(self.fine(self.fuse(h)))
