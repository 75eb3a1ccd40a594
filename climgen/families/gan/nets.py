"""GAN networks for any grid (H, W): DCGAN generator/critic, BEGAN autoencoder, StyleGAN2-like.

Every convolution is a :class:`climgen.nn.PeriodicConv2d` (circular padding on periodic
axes). Grids need not be powers of two: :func:`plan_pyramid` picks ``n`` halvings so that the
smaller side of the base grid ``(ceil(H/2^n), ceil(W/2^n))`` stays ≥ 4 (at most 5 levels);
generators start there, double ``n`` times with nearest up-sampling + 3×3 convolution (no
transposed convolutions: no checkerboard artefacts, Odena et al. 2016) and, when
``base·2^n ≠ (H, W)``, resize to the exact grid (linear interpolation; circular on periodic
axes, so no seam appears).

References
----------
- Radford, Metz & Chintala (2016), *Unsupervised representation learning with deep
  convolutional GANs* (DCGAN).
- Berthelot, Schumm & Metz (2017), *BEGAN: Boundary equilibrium GANs* (autoencoder critic).
- Karras et al. (2020), *Analyzing and improving the image quality of StyleGAN* (StyleGAN2:
  modulated convolutions with weight demodulation, noise inputs, style mixing, truncation).
- Miyato et al. (2018), *Spectral normalization for GANs*.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import PeriodicConv2d, make_norm, pad_periodic
from climgen.nn import spectral_norm as apply_spectral_norm

__all__ = [
    "plan_pyramid",
    "resize_to",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "AutoencoderDiscriminator",
    "ModulatedConv2d",
    "StyleGenerator",
    "apply_spectral_norm",
]


def plan_pyramid(shape: tuple[int, int], *, min_base: int = 4, max_levels: int = 5):
    """``(n_levels, (h0, w0))``: halvings n and the base grid (ceil(H/2^n), ceil(W/2^n)).

    n is the largest integer ≤ ``max_levels`` with min(H, W)/2^n ≥ ``min_base``.
    """
    H, W = (int(s) for s in shape)
    if H < 2 or W < 2:
        raise ClimgenInputError(f"GAN nets need a grid of at least 2×2, got shape {shape}")
    n = 0
    while n < max_levels and min(H, W) / 2 ** (n + 1) >= min_base:
        n += 1
    return n, (math.ceil(H / 2**n), math.ceil(W / 2**n))


def _resize_axis(x: torch.Tensor, size: int, dim: int, periodic: bool) -> torch.Tensor:
    # Not climgen.nn.resize(mode="bilinear"): that one computes the source positions in
    # float64, this one in the field's dtype, and trained generators on grids that are not
    # base·2^n would change by up to ~4e-5 (unit-variance float32 fields) if it were swapped.
    n = x.shape[dim]
    if n == size:
        return x
    # Cell-centred linear interpolation; on a periodic axis the stencil wraps around.
    pos = (torch.arange(size, dtype=x.dtype, device=x.device) + 0.5) * n / size - 0.5
    if periodic:
        lo = torch.floor(pos)
        frac = pos - lo
        i0 = lo.long() % n
        i1 = (i0 + 1) % n
    else:
        pos = pos.clamp(0, n - 1)
        lo = torch.floor(pos)
        frac = pos - lo
        i0 = lo.long()
        i1 = (i0 + 1).clamp(max=n - 1)
    shape = [1] * x.ndim
    shape[dim] = size
    frac = frac.reshape(shape)
    return x.index_select(dim, i0) * (1 - frac) + x.index_select(dim, i1) * frac


def resize_to(x: torch.Tensor, shape: tuple[int, int], periodic: tuple[bool, bool]):
    """Linearly resize (..., h, w) to ``shape``, wrapping periodic axes; identity if equal."""
    x = _resize_axis(x, int(shape[0]), x.ndim - 2, bool(periodic[0]))
    return _resize_axis(x, int(shape[1]), x.ndim - 1, bool(periodic[1]))


def _widths(base_channels: int, n_levels: int, max_mult: int = 8) -> list[int]:
    """Channel widths from the base grid (widest) to the full grid (``base_channels``)."""
    return [base_channels * min(2 ** (n_levels - i), max_mult) for i in range(n_levels + 1)]


def _check_common(latent_dim: int, channels: int, base_channels: int) -> None:
    for name, value in (
        ("latent_dim", latent_dim),
        ("channels", channels),
        ("base_channels", base_channels),
    ):
        if int(value) < 1:
            raise ClimgenInputError(f"{name} must be a positive integer, got {value!r}")


class DCGANGenerator(nn.Module):
    """DCGAN generator z ∈ R^latent_dim → field (C, H, W) for any (H, W).

    Linear projection to the base grid, then per level: nearest ×2 up-sampling, 3×3
    periodic convolution, batch norm (``norm="batch"``, as in DCGAN) and ReLU; a final 3×3
    convolution to ``channels`` with a linear output (fields are normalised, not bounded, so
    no tanh). Widths halve per level from 8·``base_channels`` (capped) to ``base_channels``.

    Example
    -------
    >>> g = DCGANGenerator(16, 2, (48, 96), periodic=(False, True), base_channels=8)
    >>> g(torch.randn(3, 16)).shape
    torch.Size([3, 2, 48, 96])
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        base_channels: int = 32,
        norm: str = "batch",
        activation: str = "relu",
    ):
        super().__init__()
        _check_common(latent_dim, channels, base_channels)
        self.latent_dim, self.shape, self.periodic = int(latent_dim), tuple(shape), tuple(periodic)
        n, (h0, w0) = plan_pyramid(shape)
        widths = _widths(base_channels, n)
        act = {"relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}[activation]
        self.base = (widths[0], h0, w0)
        self.project = nn.Linear(latent_dim, widths[0] * h0 * w0)
        layers: list[nn.Module] = [make_norm(norm, widths[0]), act()]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                PeriodicConv2d(c_in, c_out, 3, periodic=periodic),
                make_norm(norm, c_out),
                act(),
            ]
        layers.append(PeriodicConv2d(widths[-1], channels, 3, periodic=periodic))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, latent_dim) → (B, C, H, W); deterministic given z (``generator`` unused)."""
        x = self.project(z).view(z.shape[0], *self.base)
        return resize_to(self.body(x), self.shape, self.periodic)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator / critic: field (C, H, W) → ``out_features`` scores per sample.

    3×3 periodic convolutions with stride 2 (each halves the grid, rounding up) and
    LeakyReLU(0.2); no batch norm, so the critic is a per-sample function (required by the
    WGAN-GP/DRAGAN gradient penalties, Gulrajani et al. 2017). The final grid is flattened
    into a linear layer. ``spectral_norm=True`` normalises every conv/linear weight by its
    largest singular value (Miyato et al. 2018). Output: (B,) for ``out_features=1``, else
    (B, out_features).
    """

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        base_channels: int = 32,
        spectral_norm: bool = False,
        out_features: int = 1,
    ):
        super().__init__()
        _check_common(1, channels, base_channels)
        n, _ = plan_pyramid(shape)
        widths = _widths(base_channels, n)[::-1]
        layers: list[nn.Module] = [
            PeriodicConv2d(channels, widths[0], 3, periodic=periodic),
            nn.LeakyReLU(0.2),
        ]
        h, w = shape
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                PeriodicConv2d(c_in, c_out, 3, stride=2, periodic=periodic),
                nn.LeakyReLU(0.2),
            ]
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.body = nn.Sequential(*layers)
        self.out_features = int(out_features)
        self.head = nn.Linear(widths[-1] * h * w, self.out_features)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(x).flatten(1))
        return out.squeeze(1) if self.out_features == 1 else out


class AutoencoderDiscriminator(nn.Module):
    """BEGAN's discriminator: an autoencoder D(x) = dec(enc(x)) returning the reconstruction.

    The encoder is a :class:`DCGANDiscriminator` with ``code_dim`` outputs, the decoder a
    :class:`DCGANGenerator` without batch norm, with ELU (Berthelot et al. 2017). The GAN
    loss uses the per-sample reconstruction error L(v) = mean|v − D(v)|
    (:func:`climgen.families.gan.losses.reconstruction_error`).
    """

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        base_channels: int = 32,
        code_dim: int = 64,
        spectral_norm: bool = False,
    ):
        super().__init__()
        self.encoder = DCGANDiscriminator(
            channels,
            shape,
            periodic,
            base_channels,
            spectral_norm=spectral_norm,
            out_features=code_dim,
        )
        self.decoder = DCGANGenerator(
            code_dim, channels, shape, periodic, base_channels, norm="none", activation="elu"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution with weight demodulation (Karras et al. 2020, eq. 1–3).

    .. math::
        w'_{oik} = s_i\\, w_{oik}, \\qquad
        w''_{oik} = w'_{oik} \\Big/ \\sqrt{\\textstyle\\sum_{i,k} {w'_{oik}}^2 + ε}

    with per-sample styles s = A(w) (an affine map of the intermediate latent, bias
    initialised to 1). With demodulation every output channel has unit weight norm, so for
    inputs of unit variance (i.i.d.) the outputs have unit variance. Implemented as one
    grouped convolution over the batch; padding is periodic where ``periodic``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        periodic: tuple[bool, bool] = (False, False),
        eps: float = 1e-8,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.affine = nn.Linear(style_dim, in_channels)
        nn.init.ones_(self.affine.bias)
        self.demodulate, self.periodic, self.eps = demodulate, tuple(periodic), eps
        t = kernel_size - 1
        self._pad = (t // 2, t - t // 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        s = self.affine(w)
        weight = self.scale * self.weight[None] * s[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(
                weight.square().sum(dim=(2, 3, 4), keepdim=True) + self.eps
            )
        x = pad_periodic(x.reshape(1, B * C, H, W), self._pad, self._pad, self.periodic)
        out = F.conv2d(x, weight.reshape(B * self.out_channels, C, *weight.shape[-2:]), groups=B)
        return out.reshape(B, self.out_channels, H, W)


class _StyleLayer(nn.Module):
    """Modulated 3×3 conv → scaled per-pixel noise → bias → LeakyReLU(0.2)."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, periodic, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv = ModulatedConv2d(c_in, c_out, 3, style_dim, periodic=periodic)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x, w, noise):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv(x, w)
        x = x + self.noise_strength * noise(x.shape[0], x.shape[-2], x.shape[-1])
        return F.leaky_relu(x + self.bias[:, None, None], 0.2)


class StyleGenerator(nn.Module):
    """Compact StyleGAN2-like generator: mapping MLP, learned constant, modulated convolutions.

    z → (pixel norm) → ``n_mapping`` × [Linear, LeakyReLU] → w; a learned constant on the
    base grid of :func:`plan_pyramid`; one modulated 3×3 convolution per level (nearest ×2
    up-sampling before each but the first), each followed by per-pixel Gaussian noise with a
    learned strength; a 1×1 modulated convolution without demodulation ("toRGB") to
    ``channels``. Layer ``i`` takes style ``ws[:, i]``; ``num_ws = n_levels + 2``.

    - **Style mixing**: ``forward(z, mix_z=z2, mix_layer=L)`` uses w(z) for layers < L and
      w(z2) from L on (coarse structure from z, fine detail from z2).
    - **Truncation**: w ← w̄ + ψ (w − w̄) with w̄ the running mean of w over training
      (updated with momentum ``w_avg_beta`` in train mode); ψ = ``truncation``.
    - **Noise** is drawn with ``generator`` (a ``torch.Generator``) so samples are reproducible.
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        base_channels: int = 32,
        n_mapping: int = 4,
        w_avg_beta: float = 0.995,
    ):
        super().__init__()
        _check_common(latent_dim, channels, base_channels)
        self.latent_dim, self.shape, self.periodic = int(latent_dim), tuple(shape), tuple(periodic)
        n, (h0, w0) = plan_pyramid(shape)
        widths = _widths(base_channels, n)
        mapping: list[nn.Module] = []
        for _ in range(n_mapping):
            mapping += [nn.Linear(latent_dim, latent_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        self.const = nn.Parameter(torch.randn(widths[0], h0, w0))
        self.layers = nn.ModuleList(
            [_StyleLayer(widths[0], widths[0], latent_dim, periodic, upsample=False)]
            + [
                _StyleLayer(a, b, latent_dim, periodic, upsample=True)
                for a, b in zip(widths[:-1], widths[1:])
            ]
        )
        self.to_field = ModulatedConv2d(widths[-1], channels, 1, latent_dim, demodulate=False)
        self.out_bias = nn.Parameter(torch.zeros(channels))
        self.num_ws = len(self.layers) + 1
        self.w_avg_beta = float(w_avg_beta)
        self.register_buffer("w_avg", torch.zeros(latent_dim))

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network z → w (z pixel-normalised first)."""
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping(z)

    def forward(
        self,
        z: torch.Tensor,
        mix_z: torch.Tensor | None = None,
        mix_layer: int | None = None,
        truncation: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        w = self.map(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0).to(self.w_avg.dtype), 1.0 - self.w_avg_beta)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if mix_z is not None:
            if mix_layer is None or not 0 < int(mix_layer) < self.num_ws:
                raise ClimgenInputError(
                    f"style mixing: mix_layer must be an integer in [1, {self.num_ws - 1}], "
                    f"got {mix_layer!r}"
                )
            w2 = self.map(mix_z)[:, None].expand(-1, self.num_ws, -1)
            ws = torch.cat([ws[:, :mix_layer], w2[:, mix_layer:]], dim=1)
        if truncation != 1.0:
            ws = self.w_avg + truncation * (ws - self.w_avg)

        def noise(b, h, w_):
            src = generator.device if generator is not None else z.device
            n = torch.randn(b, 1, h, w_, generator=generator, device=src, dtype=z.dtype)
            return n.to(z.device)

        x = self.const[None].expand(z.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise)
        x = self.to_field(x, ws[:, -1]) + self.out_bias[:, None, None]
        return resize_to(x, self.shape, self.periodic)
