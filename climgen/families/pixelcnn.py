"""Autoregressive Gated PixelCNN for continuous fields: exact likelihood and raster-order sampling.

The model factorises the density of a field x (C, H, W) in raster order — row by row, left to
right, and within a pixel channel by channel:

.. math::
    p(x) = \\prod_{i=1}^{H}\\prod_{j=1}^{W}\\prod_{c=1}^{C}
           p\\left(x_{c,ij} \\mid x_{\\cdot,<ij},\\; x_{<c,ij}\\right)

so channel c at pixel (i, j) sees every channel at the pixels before (i, j) and channels < c at
(i, j) itself (the channel ordering of PixelCNN, van den Oord et al. 2016a).

Network (Gated PixelCNN, van den Oord et al. 2016b): a *vertical* stack whose features at row i
see only rows ≤ i, and a *horizontal* stack whose features at (i, j) see row i left of j (and
the masked centre). The vertical features are shifted down one row (pad the top, crop the
bottom) before they enter the horizontal stack, so the horizontal stack gets everything above
row i — no blind spot, unlike stacked masked 3×3 convolutions (:class:`MaskedConv2d`), whose
receptive field misses a growing wedge up and to the right. Each layer uses gated activations
``tanh(W_f * v) ⊙ σ(W_g * v)``; the horizontal stack is residual. The first horizontal
convolution uses a type-A mask (centre excluded: channel c sees channels < c at the pixel), the
later ones and all 1×1 convolutions of the horizontal stack type B (channel c sees channels ≤ c
of the *features*, which themselves saw only data channels < c).

Output distributions (per value, given its context), chosen by ``output``:

- ``"logistic-mixture"`` (PixelCNN++, Salimans et al. 2017): a mixture of M logistics
  discretised on a fixed grid of ``bins`` equal bins covering ``value_range`` of the normalised
  field (default [−5, 5], 256 bins, width Δ = 10/256). Values outside the range are clamped:
  the first and last bins take the tails, P(bin 0) = F(lo + Δ), P(bin K−1) = 1 − F(hi − Δ).
  As a density on the real line the model is piecewise constant, p(x) = P(bin(x)) / Δ (the
  exact density of "draw a bin, then a uniform value inside it", which is how it samples), so
  its bits/dim are comparable with those of flows and of the Gaussian mixture.
- ``"gaussian-mixture"``: a continuous mixture of M Gaussians, p(x) = Σ_m π_m N(x; μ_m, σ_m²).

Bits per dimension: ``bpd = −log p(x) / (C·H·W · ln 2)`` with the density in normalised units
(negative values are possible for continuous densities). The discrete code length of the
logistic model is ``bpd − log2 Δ`` (≈ bpd + 4.68 for the default grid).

Periodicity: the model is causal in raster order, so rows cannot wrap (row 0 would see the
last row) and the horizontal stack cannot wrap (column 0 would see the end of its own row).
Both are zero padded; ``periodic[0]`` is accepted and ignored. When ``periodic[1]`` is true the
vertical stack pads x circularly — it only looks at rows above (after its shift), so wrapping
keeps the model causal and lets the top rows' east–west neighbours inform each pixel.

Sampling is exact but slow: one network call per pixel and channel, O(C·H·W) calls, each on
the rows inside the receptive field (``receptive_field_rows`` rows above the current one).

References
----------
van den Oord, Kalchbrenner & Kavukcuoglu (2016a), *Pixel recurrent neural networks*, ICML.
van den Oord et al. (2016b), *Conditional image generation with PixelCNN decoders*, NeurIPS.
Salimans, Karpathy, Chen & Kingma (2017), *PixelCNN++: improving the PixelCNN with discretized
logistic mixture likelihood and other modifications*, ICLR.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import pad_periodic

from .base import FamilyModule, check_grid_options, register_family

__all__ = [
    "MaskedConv2d",
    "GatedPixelCNNLayer",
    "GatedPixelCNNNet",
    "PixelCNN",
    "discretized_logistic_mixture_log_prob",
    "discretized_logistic_mixture_bin_log_probs",
    "gaussian_mixture_log_prob",
]

_OUTPUTS = ("logistic-mixture", "gaussian-mixture")
_MIN_LOG_SCALE = -7.0  # PixelCNN++: keeps 1/s finite in early training


# --- masked convolution ----------------------------------------------------------------------
def _channel_mask(out_channels: int, in_channels: int, groups: int, include_centre: bool):
    """(out, in) 0/1 mask: output group g sees input groups < g (type A) or ≤ g (type B)."""
    out_group = torch.arange(out_channels) // (out_channels // groups)
    in_group = torch.arange(in_channels) // (in_channels // groups)
    allowed = (
        in_group[None] <= out_group[:, None]
        if include_centre
        else in_group[None] < out_group[:, None]
    )
    return allowed.float()


class MaskedConv2d(nn.Conv2d):
    """Convolution whose kernel sees only positions before its centre in raster order.

    Mask (van den Oord et al. 2016a): kernel positions in earlier rows, or in the centre row left
    of the centre, are kept; positions after the centre are zeroed; at the centre itself the
    channels are split into ``data_channels`` ordered groups (input and output channel counts
    must be multiples of it) and output group c sees input groups < c (``mask_type="A"``, the
    first layer: the centre value itself is hidden) or ≤ c (``"B"``, later layers).

    ``centre`` (row, col) inside the kernel, default the middle; the input is zero padded so the
    output has the input's size and output (i, j) sits at the kernel centre. A kernel
    (1, k//2 + 1) with ``centre=(0, k//2)`` is the horizontal stack of Gated PixelCNN.
    Stacked k×k masked convolutions have a blind spot (see :class:`GatedPixelCNNNet`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str = "B",
        data_channels: int = 1,
        *,
        centre: tuple[int, int] | None = None,
        bias: bool = True,
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=bias)
        if mask_type not in ("A", "B"):
            raise ClimgenInputError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if in_channels % data_channels or out_channels % data_channels:
            raise ClimgenInputError(
                f"MaskedConv2d channels ({in_channels} in, {out_channels} out) must be "
                f"multiples of data_channels={data_channels}"
            )
        kh, kw = self.kernel_size
        ci, cj = centre if centre is not None else (kh // 2, kw // 2)
        if not (0 <= ci < kh and 0 <= cj < kw):
            raise ClimgenInputError(f"centre {centre} lies outside the kernel {kh}×{kw}")
        self.mask_type, self.data_channels, self.centre = mask_type, data_channels, (ci, cj)
        mask = torch.zeros(out_channels, in_channels, kh, kw)
        mask[:, :, :ci] = 1.0
        mask[:, :, ci, :cj] = 1.0
        mask[:, :, ci, cj] = _channel_mask(
            out_channels, in_channels, data_channels, include_centre=mask_type == "B"
        )
        self.register_buffer("mask", mask, persistent=False)
        self._pad = (cj, kw - 1 - cj, ci, kh - 1 - ci)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self._pad), self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_type={self.mask_type}, centre={self.centre}"


# --- gated layers ----------------------------------------------------------------------------
def _gate(pre: torch.Tensor, groups: int) -> torch.Tensor:
    """tanh(a) ⊙ σ(b) with a, b the two halves of each channel group (keeps the ordering)."""
    b, ch, h, w = pre.shape
    pre = pre.view(b, groups, 2, ch // (2 * groups), h, w)
    return (torch.tanh(pre[:, :, 0]) * torch.sigmoid(pre[:, :, 1])).reshape(b, ch // 2, h, w)


def _down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move features one row down (zero first row): row i then holds what saw rows ≤ i − 1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class GatedPixelCNNLayer(nn.Module):
    """One gated layer of both stacks (van den Oord et al. 2016b, figure 2).

    ``v' = tanh ⊙ σ(V * v)`` with V a (k//2 + 1)×k kernel on rows i − k//2 … i (top zero
    padded; columns wrap if ``periodic_x``); ``h' = h + P(tanh ⊙ σ(H * h + U(shift(V * v))))``
    with H the masked 1×(k//2 + 1) horizontal kernel, U and P 1×1 convolutions (P masked B, U
    free because the shifted vertical features only saw rows above). ``residual=False`` for the
    first layer, whose input is the data (channel counts differ).
    """

    def __init__(
        self,
        in_channels: int,
        features: int,
        kernel_size: int,
        data_channels: int,
        mask_type: str,
        *,
        periodic_x: bool = False,
        residual: bool = True,
    ):
        super().__init__()
        half = kernel_size // 2
        self.data_channels, self.half, self.residual = data_channels, half, residual
        self.periodic_x = periodic_x
        self.vertical = nn.Conv2d(in_channels, 2 * features, (half + 1, kernel_size))
        self.horizontal = MaskedConv2d(
            in_channels, 2 * features, (1, half + 1), mask_type, data_channels, centre=(0, half)
        )
        self.vertical_to_horizontal = nn.Conv2d(2 * features, 2 * features, 1)
        self.horizontal_out = MaskedConv2d(features, features, 1, "B", data_channels)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.vertical(
            pad_periodic(v, (self.half, 0), (self.half, self.half), (False, self.periodic_x))
        )
        h_pre = self.horizontal(h) + self.vertical_to_horizontal(_down_shift(v_pre))
        h_new = self.horizontal_out(_gate(h_pre, self.data_channels))
        return _gate(v_pre, self.data_channels), h + h_new if self.residual else h_new


class GatedPixelCNNNet(nn.Module):
    """Gated PixelCNN: (B, C, H, W) → per-value parameters (B, C·P, H, W), channel-grouped.

    Output channels [c·P, (c+1)·P) parametrise the distribution of data channel c and depend
    only on the data before (i, j) in raster order and on channels < c at (i, j). ``features``
    must be a multiple of C. The head is ELU → 1×1 (mask B) → ELU → 1×1 (mask B).
    """

    def __init__(
        self,
        data_channels: int,
        params_per_channel: int,
        *,
        features: int = 64,
        n_layers: int = 8,
        kernel_size: int = 5,
        periodic_x: bool = False,
    ):
        super().__init__()
        c = data_channels
        self.data_channels = c
        self.receptive_field_rows = n_layers * (kernel_size // 2) + 1
        self.layers = nn.ModuleList(
            GatedPixelCNNLayer(
                c if k == 0 else features,
                features,
                kernel_size,
                c,
                "A" if k == 0 else "B",
                periodic_x=periodic_x,
                residual=k > 0,
            )
            for k in range(n_layers)
        )
        self.head = nn.Sequential(
            nn.ELU(),
            MaskedConv2d(features, features, 1, "B", c),
            nn.ELU(),
            MaskedConv2d(features, c * params_per_channel, 1, "B", c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)


# --- output distributions --------------------------------------------------------------------
def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 − e^{−d}) for d > 0, accurate for small and large d (Mächler 2012)."""
    return torch.where(d < math.log(2.0), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def _logistic_bin_log_prob(left, right, first, last, mu, log_s):
    """log P(left < y ≤ right) for y ~ Logistic(μ, s); bins flagged first/last extend to ∓∞.

    Uses σ(a) − σ(b) = σ(a)·σ(−b)·(1 − e^{b−a}) so no difference of probabilities is formed.
    """
    inv_s = torch.exp(-log_s)
    a, b = (right - mu) * inv_s, (left - mu) * inv_s
    interior = F.logsigmoid(a) + F.logsigmoid(-b) + _log1mexp(a - b)
    return torch.where(first, F.logsigmoid(a), torch.where(last, F.logsigmoid(-b), interior))


def _check_grid(bins: int, value_range) -> tuple[float, float, float]:
    lo, hi = (float(v) for v in value_range)
    if not (isinstance(bins, int) and bins >= 2):
        raise ClimgenInputError(f"option 'bins' must be an int ≥ 2, got {bins!r}")
    if not hi > lo:
        raise ClimgenInputError(
            f"option 'value_range' must be (low, high), low < high, got {value_range!r}"
        )
    return lo, hi, (hi - lo) / bins


def discretized_logistic_mixture_log_prob(
    x: torch.Tensor,
    logit_pi: torch.Tensor,
    mu: torch.Tensor,
    log_s: torch.Tensor,
    bins: int = 256,
    value_range: tuple[float, float] = (-5.0, 5.0),
) -> torch.Tensor:
    """log P(bin(x)) (nats) under a discretised mixture of logistics (Salimans et al. 2017).

    The grid has ``bins`` equal bins of width Δ = (hi − lo)/bins on ``value_range``; x is
    clamped to the range and the edge bins take the tails:

    .. math::
        P(k) = \\sum_m \\pi_m \\left[F_m(e_{k+1}) - F_m(e_k)\\right],\\quad
        F_m(y) = \\sigma\\!\\left(\\frac{y - \\mu_m}{s_m}\\right),\\; e_0 = -\\infty,\\;
        e_K = +\\infty

    ``x``: (...), the parameters (..., M) (mixture last; π = softmax(logit_pi), log s clamped
    at −7). Add ``−log Δ`` for the log density of the piecewise-constant model.
    """
    lo, hi, width = _check_grid(bins, value_range)
    k = torch.floor((x.clamp(lo, hi) - lo) / width).clamp(0, bins - 1)
    left = (lo + k * width).unsqueeze(-1)
    first, last = (k == 0).unsqueeze(-1), (k == bins - 1).unsqueeze(-1)
    comp = _logistic_bin_log_prob(
        left, left + width, first, last, mu, log_s.clamp_min(_MIN_LOG_SCALE)
    )
    return torch.logsumexp(F.log_softmax(logit_pi, dim=-1) + comp, dim=-1)


def discretized_logistic_mixture_bin_log_probs(
    logit_pi: torch.Tensor,
    mu: torch.Tensor,
    log_s: torch.Tensor,
    bins: int = 256,
    value_range: tuple[float, float] = (-5.0, 5.0),
) -> torch.Tensor:
    """log P(k) for every bin k: parameters (..., M) → (..., bins); they sum to 1 in k."""
    lo, _, width = _check_grid(bins, value_range)
    k = torch.arange(bins, device=mu.device, dtype=mu.dtype)
    left = (lo + k * width)[:, None]
    first, last = (k == 0)[:, None], (k == bins - 1)[:, None]
    comp = _logistic_bin_log_prob(
        left,
        left + width,
        first,
        last,
        mu.unsqueeze(-2),
        log_s.clamp_min(_MIN_LOG_SCALE).unsqueeze(-2),
    )
    return torch.logsumexp(F.log_softmax(logit_pi, dim=-1).unsqueeze(-2) + comp, dim=-1)


def gaussian_mixture_log_prob(
    x: torch.Tensor, logit_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor
) -> torch.Tensor:
    """log Σ_m π_m N(x; μ_m, σ_m²) (nats); x (...), parameters (..., M), π = softmax(logit_pi).

    log σ is clamped at −7 as for the logistic mixture.
    """
    log_sigma = log_sigma.clamp_min(_MIN_LOG_SCALE)
    z = (x.unsqueeze(-1) - mu) * torch.exp(-log_sigma)
    comp = -0.5 * z.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(F.log_softmax(logit_pi, dim=-1) + comp, dim=-1)


# --- the family ------------------------------------------------------------------------------
@register_family("pixelcnn")
class PixelCNN(FamilyModule):
    """Gated PixelCNN family ("pixelcnn"): exact likelihood, raster-order sampling.

    Options: ``hidden_channels`` (features per stack, rounded up to a multiple of
    ``channels``), ``n_layers`` gated layers of odd ``kernel_size`` (receptive field
    ``n_layers·(kernel_size//2) + 1`` rows up, as many columns left), ``output``
    ("logistic-mixture" | "gaussian-mixture") with ``mixtures`` components; the logistic grid
    has ``bins`` bins on ``value_range`` (normalised units). ``lr``: Adam, betas (0.9, 0.999).

    Loss: negative log-likelihood in bits per dimension (logged as "loss" and "bpd"); a batch
    "mask" (B, 1|C, H, W) restricts the average to valid values (the model still conditions
    on every value). See the module docstring for the factorisation, the channel ordering and
    why the model is not periodic.

    Example
    -------
    >>> model = PixelCNN(1, (16, 32), hidden_channels=32, n_layers=4)
    >>> model.bits_per_dim(torch.randn(2, 1, 16, 32)).shape
    torch.Size([2])
    >>> model.sample(2, generator=torch.Generator().manual_seed(0)).shape  # 512 calls
    torch.Size([2, 1, 16, 32])
    """

    name = "pixelcnn"
    ema_attr = "net"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        hidden_channels: int = 64,
        n_layers: int = 8,
        kernel_size: int = 5,
        output: str = "logistic-mixture",
        mixtures: int = 5,
        bins: int = 256,
        value_range: tuple[float, float] = (-5.0, 5.0),
        lr: float = 1e-3,
    ):
        super().__init__()
        check_grid_options(channels, shape, periodic)
        for option, value, least in (
            ("hidden_channels", hidden_channels, 1),
            ("n_layers", n_layers, 1),
            ("mixtures", mixtures, 1),
        ):
            if not isinstance(value, int) or value < least:
                raise ClimgenInputError(
                    f"option {option!r} must be an int ≥ {least}, got {value!r}"
                )
        if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ClimgenInputError(
                f"option 'kernel_size' must be an odd int ≥ 3, got {kernel_size!r}"
            )
        if output not in _OUTPUTS:
            raise ClimgenInputError(
                f"unknown option output={output!r}; choose one of {', '.join(_OUTPUTS)}"
            )
        lo, hi, self.bin_width = _check_grid(bins, value_range)
        self.record_config(locals(), value_range=[lo, hi])
        self.channels, self.shape = channels, tuple(self.config["shape"])
        self.output, self.mixtures, self.bins = output, mixtures, bins
        self.value_range, self.lr = (lo, hi), float(lr)
        features = channels * math.ceil(hidden_channels / channels)
        self.net = GatedPixelCNNNet(
            channels,
            3 * mixtures,
            features=features,
            n_layers=n_layers,
            kernel_size=kernel_size,
            periodic_x=bool(periodic[1]),
        )

    @property
    def receptive_field_rows(self) -> int:
        """Rows above the current one that can influence it: n_layers·(kernel_size//2) + 1."""
        return self.net.receptive_field_rows

    # --- family contract -------------------------------------------------------------------
    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        """NLL in bits/dim on ``batch``; update group "main"; return {"loss", "bpd"} detached."""
        x = self._check_field(batch.get("x"), "batch['x']")
        with ctx.autocast():
            losses = self.loss(x, mask=batch.get("mask"))
        ctx.step(losses["loss"], "main")
        return {k: v.detach() for k, v in losses.items()}

    # --- likelihood ------------------------------------------------------------------------
    def distribution_params(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logit π, μ, log scale), each (B, C, H, W, M), of p(x_{c,ij} | its context)."""
        return self._split(self.net(x))

    def value_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (nats) of every value given its context, (B, C, H, W)."""
        x = self._check_field(x, "x")
        logit_pi, mu, log_s = self.distribution_params(x)
        x = x.to(mu.dtype)
        if self.output == "gaussian-mixture":
            return gaussian_mixture_log_prob(x, logit_pi, mu, log_s)
        log_p = discretized_logistic_mixture_log_prob(
            x, logit_pi, mu, log_s, self.bins, self.value_range
        )
        return log_p - math.log(self.bin_width)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood log p(x) (nats, normalised units), summed over C, H, W → (B,)."""
        return self.value_log_prob(x).flatten(1).sum(1)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """−log p(x) / (C·H·W · ln 2) per field → (B,)."""
        return -self.log_prob(x) / (math.prod(x.shape[1:]) * math.log(2.0))

    def loss(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{"loss", "bpd"}: mean NLL in bits/dim over the (valid) values; both the same."""
        nll = -self.value_log_prob(x) / math.log(2.0)
        if mask is None:
            bpd = nll.mean()
        else:
            weight = mask.to(nll.dtype).expand_as(nll)
            bpd = (nll * weight).sum() / weight.sum().clamp_min(1.0)
        return {"loss": bpd, "bpd": bpd}

    # --- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws (n, C, H, W), one pixel and channel at a time in raster order.

        O(C·H·W) network calls; each call sees only the rows [i − R, i] that can influence row
        i (R = ``receptive_field_rows``), since the network never looks down and nothing
        further up reaches row i. Random numbers come from ``generator`` (drawn on its device,
        so a seeded CPU generator gives the same fields on any device).
        """
        ref = next(self.parameters())
        h, w = self.shape
        x = torch.zeros(n, self.channels, h, w, device=ref.device, dtype=ref.dtype)
        for i in range(h):
            top = max(0, i - self.receptive_field_rows)
            for j in range(w):
                for c in range(self.channels):
                    out = self.net(x[:, :, top : i + 1])
                    logit_pi, mu, log_s = (p[:, c, -1, j] for p in self._split(out[..., -1:, :]))
                    x[:, c, i, j] = self._draw(logit_pi, mu, log_s, generator).to(x.dtype)
        return x

    def _draw(self, logit_pi, mu, log_s, generator) -> torch.Tensor:
        """One value per row of the (n, M) parameters: component by Gumbel-max, then the value."""
        n, m = mu.shape
        gumbel = -torch.log(-torch.log(self._uniform((n, m), generator, mu)))
        k = torch.argmax(logit_pi + gumbel, dim=-1, keepdim=True)
        mu, log_s = mu.gather(-1, k)[:, 0], log_s.gather(-1, k)[:, 0]
        if self.output == "gaussian-mixture":
            return mu + torch.exp(log_s.clamp_min(_MIN_LOG_SCALE)) * self._normal(n, generator, mu)
        u, inside = self._uniform((2, n), generator, mu)
        y = mu + torch.exp(log_s.clamp_min(_MIN_LOG_SCALE)) * (torch.log(u) - torch.log1p(-u))
        lo, _ = self.value_range
        k = torch.floor((y - lo) / self.bin_width).clamp(0, self.bins - 1)
        return lo + (k + inside) * self.bin_width

    @staticmethod
    def _uniform(size, generator, like: torch.Tensor) -> torch.Tensor:
        device = generator.device if generator is not None else like.device
        u = torch.rand(size, generator=generator, device=device, dtype=like.dtype)
        return u.to(like.device).clamp(1e-6, 1 - 1e-6)

    @staticmethod
    def _normal(n: int, generator, like: torch.Tensor) -> torch.Tensor:
        device = generator.device if generator is not None else like.device
        return torch.randn(n, generator=generator, device=device, dtype=like.dtype).to(like.device)

    # --- internals -------------------------------------------------------------------------
    def _split(self, out: torch.Tensor):
        b, _, h, w = out.shape
        # Low-precision (autocast) outputs are promoted: the likelihood needs ≥ float32.
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        params = out.view(b, self.channels, 3, self.mixtures, h, w)
        params = params.permute(2, 0, 1, 4, 5, 3)  # (3, B, C, H, W, M)
        return params[0], params[1], params[2]
