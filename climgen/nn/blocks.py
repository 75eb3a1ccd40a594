"""Convolutional blocks shared by the families: conv/residual blocks, resampling, encoder/decoder.

Every convolution is a :class:`~climgen.nn.padding.PeriodicConv2d`, so periodic axes
(longitude, the Rayleigh–Bénard x axis) are padded circularly and no block invents a wall.
Up-sampling is interpolation followed by a convolution rather than a transposed convolution,
which avoids checkerboard artefacts (Odena, Dumoulin & Olah 2016, *Deconvolution and
checkerboard artifacts*, Distill).

:class:`Encoder` and :class:`Decoder` map a field (C, H, W) to a flat vector and back for any
(H, W), not only powers of two: :func:`plan_levels` halves the grid (rounding up) while the
smaller side stays ≥ ``min_bottleneck``, the encoder flattens the exact bottleneck grid into a
linear layer, and the decoder resizes to the *recorded* size of each level on the way up, so
odd sizes come back exactly without cropping.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError

from .padding import PeriodicConv2d, pad_periodic

__all__ = [
    "make_norm",
    "make_activation",
    "ConvBlock",
    "ResidualBlock",
    "Downsample",
    "Upsample",
    "resize",
    "plan_levels",
    "Encoder",
    "Decoder",
    "spectral_norm",
    "coordinate_channels",
    "n_coordinate_channels",
]

NORMS = ("group", "batch", "none")
ACTIVATIONS = ("silu", "relu", "leaky_relu", "gelu", "tanh", "none")


def n_coordinate_channels(periodic: tuple[bool, bool]) -> int:
    """Number of :func:`coordinate_channels` for a grid of this periodicity."""
    return sum(2 if p else 1 for p in periodic)


def coordinate_channels(x: torch.Tensor, periodic: tuple[bool, bool]) -> torch.Tensor:
    """``x`` (B, C, H, W) with position channels appended (CoordConv, Liu et al. 2018).

    Per axis of n cells: ``sin(2πi/n)`` and ``cos(2πi/n)`` when it is periodic (continuous
    across the seam), else a ramp from −1 to 1. Convolutions are translation-equivariant;
    with these a network can depend on where it is (land/sea, a pinned convection roll, the
    latitude) — and it stops being equivariant.

    Liu et al. (2018), *An intriguing failing of convolutional neural networks and the
    CoordConv solution*, NeurIPS.
    """
    b, _, h, w = x.shape
    maps = []
    for axis, (n, per) in enumerate(zip((h, w), periodic)):
        i = torch.arange(n, device=x.device, dtype=x.dtype)
        ramps = (
            [torch.sin(2 * math.pi * i / n), torch.cos(2 * math.pi * i / n)]
            if per
            else [2 * i / max(n - 1, 1) - 1]
        )
        for r in ramps:
            maps.append(r[:, None].expand(h, w) if axis == 0 else r[None, :].expand(h, w))
    coords = torch.stack(maps)[None].expand(b, -1, -1, -1)
    return torch.cat([x, coords], 1)


def make_norm(kind: str, channels: int, max_groups: int = 8) -> nn.Module:
    """Normalisation layer by name: "group" (GroupNorm, Wu & He 2018), "batch" or "none".

    GroupNorm uses ``gcd(channels, max_groups)`` groups, so any channel count works.
    """
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, max_groups), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ClimgenInputError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def make_activation(name: str) -> nn.Module:
    """Activation by name: "silu", "relu", "leaky_relu" (slope 0.2), "gelu", "tanh", "none"."""
    table = {
        "silu": nn.SiLU,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }
    if name not in table:
        raise ClimgenInputError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    return table[name]()


class ConvBlock(nn.Module):
    """``PeriodicConv2d → norm → activation``.

    With ``stride=2`` and kernel 3 the output grid is ``(⌈H/2⌉, ⌈W/2⌉)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        periodic: tuple[bool, bool] = (False, True),
        norm: str = "group",
        activation: str = "silu",
        nonperiodic_mode: str = "zeros",
    ):
        super().__init__()
        self.conv = PeriodicConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            periodic=periodic,
            nonperiodic_mode=nonperiodic_mode,
            bias=norm != "batch",
        )
        self.norm = make_norm(norm, out_channels)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """Pre-activation residual block ``x + conv(act(norm(conv(act(norm(x))))))``.

    A 1×1 convolution projects the skip path when the channel count changes. Reference: He et
    al. (2016), *Identity mappings in deep residual networks*, ECCV.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        periodic: tuple[bool, bool] = (False, True),
        norm: str = "group",
        activation: str = "silu",
        dropout: float = 0.0,
        nonperiodic_mode: str = "zeros",
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = make_norm(norm, in_channels)
        self.act1 = make_activation(activation)
        self.conv1 = PeriodicConv2d(
            in_channels, out_channels, 3, periodic=periodic, nonperiodic_mode=nonperiodic_mode
        )
        self.norm2 = make_norm(norm, out_channels)
        self.act2 = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = PeriodicConv2d(
            out_channels, out_channels, 3, periodic=periodic, nonperiodic_mode=nonperiodic_mode
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act1(self.norm1(x)))
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve the grid to ``(⌈H/2⌉, ⌈W/2⌉)``: strided 3×3 conv (``mode="conv"``) or 2×2 mean.

    ``mode="avgpool"`` first pads odd axes by one cell (circularly on periodic axes, by
    replication otherwise) so both modes give the same output size.
    """

    def __init__(
        self,
        channels: int,
        *,
        mode: str = "conv",
        periodic: tuple[bool, bool] = (False, True),
        nonperiodic_mode: str = "zeros",
    ):
        super().__init__()
        if mode not in ("conv", "avgpool"):
            raise ClimgenInputError(f"unknown downsample mode {mode!r}; choose conv or avgpool")
        self.mode = mode
        self.periodic = tuple(bool(p) for p in periodic)
        self.conv = (
            PeriodicConv2d(
                channels, channels, 3, 2, periodic=periodic, nonperiodic_mode=nonperiodic_mode
            )
            if mode == "conv"
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.conv(x)
        h, w = x.shape[-2:]
        x = pad_periodic(x, (0, h % 2), (0, w % 2), self.periodic, "replicate")
        return F.avg_pool2d(x, 2)


def _linear_resize_axis(x: torch.Tensor, size: int, dim: int, periodic: bool) -> torch.Tensor:
    # Linear interpolation along one axis with half-pixel centres (align_corners=False); on a
    # periodic axis the neighbours wrap around instead of being clamped at the edge.
    n = x.shape[dim]
    if n == size:
        return x
    src = (torch.arange(size, device=x.device, dtype=torch.float64) + 0.5) * (n / size) - 0.5
    if not periodic:
        src = src.clamp(0, n - 1)
    lo = torch.floor(src)
    frac = (src - lo).to(x.dtype)
    lo = lo.long()
    hi = lo + 1
    if periodic:
        lo, hi = lo % n, hi % n
    else:
        hi = hi.clamp(max=n - 1)
    shape = [1] * x.ndim
    shape[dim] = size
    frac = frac.view(shape)
    return x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    *,
    mode: str = "nearest",
    periodic: tuple[bool, bool] = (False, True),
) -> torch.Tensor:
    """Resize (..., H, W) to ``size``: "nearest" or "bilinear" (wrapping on periodic axes).

    Bilinear uses half-pixel centres like ``F.interpolate(..., align_corners=False)``; on a
    periodic axis the first and last cells are neighbours, so there is no seam.
    """
    if mode == "nearest":
        lead = x.shape[:-2]
        out = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=tuple(size), mode="nearest")
        return out.reshape(*lead, *size)
    if mode == "bilinear":
        x = _linear_resize_axis(x, size[0], x.ndim - 2, periodic[0])
        return _linear_resize_axis(x, size[1], x.ndim - 1, periodic[1])
    raise ClimgenInputError(f"unknown upsample mode {mode!r}; choose nearest or bilinear")


class Upsample(nn.Module):
    """Resize (default 2×, or to an exact ``size``) then a 3×3 ``PeriodicConv2d``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        mode: str = "nearest",
        periodic: tuple[bool, bool] = (False, True),
        nonperiodic_mode: str = "zeros",
    ):
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ClimgenInputError(f"unknown upsample mode {mode!r}; choose nearest or bilinear")
        self.mode = mode
        self.periodic = tuple(bool(p) for p in periodic)
        self.conv = PeriodicConv2d(
            in_channels,
            out_channels or in_channels,
            3,
            periodic=periodic,
            nonperiodic_mode=nonperiodic_mode,
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        size = tuple(size) if size is not None else (2 * x.shape[-2], 2 * x.shape[-1])
        return self.conv(resize(x, size, mode=self.mode, periodic=self.periodic))


def plan_levels(
    shape: tuple[int, int], *, min_bottleneck: int = 4, num_levels: int | None = None
) -> list[tuple[int, int]]:
    """Grid sizes from ``shape`` down to the bottleneck, halving with ``⌈n/2⌉`` each level.

    Without ``num_levels`` the grid is halved while the smaller side stays ≥ ``min_bottleneck``
    (e.g. 64×256 → 4×16, 48×96 → 6×12, 30×40 → 4×5, 72×72 → 5×5). Returns the list of sizes,
    first the input, last the bottleneck.
    """
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ClimgenInputError(f"shape must be two positive sizes (H, W), got {tuple(shape)}")
    sizes = [(h, w)]
    while True:
        nh, nw = -(-h // 2), -(-w // 2)
        if num_levels is not None:
            if len(sizes) > num_levels:
                break
        elif min(nh, nw) < min_bottleneck:
            break
        if (nh, nw) == (h, w):
            break
        h, w = nh, nw
        sizes.append((h, w))
    return sizes


def _level_channels(base: int, n_levels: int, max_channels: int | None) -> list[int]:
    cap = max_channels or 8 * base
    return [min(base * 2**i, cap) for i in range(n_levels + 1)]


class Encoder(nn.Module):
    """Field (B, C, H, W) → vector (B, out_features), for any (H, W).

    Stem conv, then per level a :class:`ResidualBlock` (channels ``base·2^i``, capped at
    ``max_channels``) and a :class:`Downsample`; at the bottleneck a norm + activation, and a
    linear layer over the flattened bottleneck grid (its size is known exactly from
    :func:`plan_levels`). ``level_sizes`` holds the grid of each level.
    """

    def __init__(
        self,
        in_channels: int,
        shape: tuple[int, int],
        out_features: int,
        *,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        num_levels: int | None = None,
        periodic: tuple[bool, bool] = (False, True),
        norm: str = "group",
        activation: str = "silu",
        downsample: str = "conv",
    ):
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        self.level_sizes = plan_levels(
            self.shape, min_bottleneck=min_bottleneck, num_levels=num_levels
        )
        n = len(self.level_sizes) - 1
        chans = _level_channels(base_channels, n, max_channels)
        opts = dict(periodic=periodic, norm=norm, activation=activation)
        self.stem = PeriodicConv2d(in_channels, chans[0], 3, periodic=periodic)
        self.levels = nn.ModuleList(
            nn.Sequential(
                ResidualBlock(chans[i], chans[i + 1], **opts),
                Downsample(chans[i + 1], mode=downsample, periodic=periodic),
            )
            for i in range(n)
        )
        self.bottleneck = nn.Sequential(
            ResidualBlock(chans[n], chans[n], **opts),
            make_norm(norm, chans[n]),
            make_activation(activation),
        )
        hb, wb = self.level_sizes[-1]
        self.bottleneck_shape = (chans[n], hb, wb)
        self.head = nn.Linear(chans[n] * hb * wb, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape:
            raise ClimgenInputError(
                f"Encoder built for grid {self.shape} got input of grid {tuple(x.shape[-2:])}"
            )
        h = self.stem(x)
        for level in self.levels:
            h = level(h)
        return self.head(self.bottleneck(h).flatten(1))


class Decoder(nn.Module):
    """Vector (B, in_features) → field (B, C, H, W), the mirror of :class:`Encoder`.

    A linear layer fills the bottleneck grid; per level an :class:`Upsample` to the exact size
    recorded by :func:`plan_levels` and a :class:`ResidualBlock`; a final norm, activation and
    3×3 conv to ``out_channels`` (no output activation: fields are normalised, unbounded).

    With ``cond_channels > 0`` the forward takes a condition map (B, Cc, H, W); it is
    area-averaged to each level's grid and concatenated to the features there (conditioning
    at every scale, as in Sohn et al. 2015's CVAE decoder p(x | z, c)).
    """

    def __init__(
        self,
        out_channels: int,
        shape: tuple[int, int],
        in_features: int,
        *,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        num_levels: int | None = None,
        periodic: tuple[bool, bool] = (False, True),
        norm: str = "group",
        activation: str = "silu",
        upsample: str = "nearest",
        cond_channels: int = 0,
    ):
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        self.cond_channels = int(cond_channels)
        self.level_sizes = plan_levels(
            self.shape, min_bottleneck=min_bottleneck, num_levels=num_levels
        )
        n = len(self.level_sizes) - 1
        chans = _level_channels(base_channels, n, max_channels)
        cc = self.cond_channels
        opts = dict(periodic=periodic, norm=norm, activation=activation)
        hb, wb = self.level_sizes[-1]
        self.bottleneck_shape = (chans[n], hb, wb)
        self.head = nn.Linear(in_features, chans[n] * hb * wb)
        self.bottleneck = ResidualBlock(chans[n] + cc, chans[n], **opts)
        self.ups = nn.ModuleList(
            Upsample(chans[i + 1], chans[i], mode=upsample, periodic=periodic)
            for i in reversed(range(n))
        )
        self.blocks = nn.ModuleList(
            ResidualBlock(chans[i] + cc, chans[i], **opts) for i in reversed(range(n))
        )
        self.out = nn.Sequential(
            make_norm(norm, chans[0]),
            make_activation(activation),
            PeriodicConv2d(chans[0], out_channels, 3, periodic=periodic),
        )

    def _with_cond(self, h: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.cond_channels == 0:
            return h
        return torch.cat([h, F.adaptive_avg_pool2d(cond, h.shape[-2:]).to(h.dtype)], dim=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond_channels and (
            cond is None
            or cond.shape[1] != self.cond_channels
            or tuple(cond.shape[-2:]) != self.shape
        ):
            got = None if cond is None else tuple(cond.shape)
            raise ClimgenInputError(
                f"Decoder needs a condition of shape (B, {self.cond_channels}, {self.shape[0]}, "
                f"{self.shape[1]}), got {got}"
            )
        h = self.head(z).view(z.shape[0], *self.bottleneck_shape)
        h = self.bottleneck(self._with_cond(h, cond))
        for up, block, size in zip(self.ups, self.blocks, reversed(self.level_sizes[:-1])):
            h = block(self._with_cond(up(h, size), cond))
        return self.out(h)


def spectral_norm(
    module: nn.Module,
    *,
    n_power_iterations: int = 1,
    types: tuple[type, ...] = (nn.Conv2d, nn.Linear),
) -> nn.Module:
    """Spectrally normalise every Conv2d/Linear in ``module`` (in place); returns ``module``.

    Each weight W is divided by its largest singular value σ(W), estimated by power iteration,
    so every layer is 1-Lipschitz (Miyato et al. 2018, *Spectral normalization for generative
    adversarial networks*, ICLR). Uses :func:`torch.nn.utils.parametrizations.spectral_norm`;
    ``PeriodicConv2d`` is a Conv2d, so it is wrapped too.
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm as _sn

    targets = [
        m
        for m in module.modules()
        if isinstance(m, types) and not parametrize.is_parametrized(m, "weight")
    ]
    for m in targets:
        _sn(m, n_power_iterations=n_power_iterations)
    return module
