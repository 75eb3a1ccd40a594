"""Partial-convolution U-Net infiller as a family: complete fields from observed values + mask.

:class:`PartialConvInfiller` ("partialconv") wraps :class:`~climgen.nn.partialconv.PartialConvUNet`
(Liu et al. 2018; Kadow, Hall & Ulbrich 2020) in the family contract of
:mod:`climgen.families.base`, so the one trainer trains it.

Batches: ``{"x": (B, C, H, W) complete fields, "mask": (B, 1|C, H, W) coverage (1 = observed),
"cond": optional (B, Ce, H, W) extra inputs, "cond_mask": optional (B, Ce, H, W)}``. The extra
inputs are neighbouring months (themselves gappy: their masks come as ``cond_mask``) and static
fields such as a land–sea fraction (mask 1). Without ``"mask"`` (e.g. plain tensors from the
trainer) a random blocky coverage mask is drawn per field.

Loss (Liu et al. 2018, without their perceptual/style terms, which need an ImageNet network):

.. math::
    \\mathcal L = w_v \\underbrace{\\frac{\\sum a M |\\hat x - x|}{\\sum a M}}_{\\text{valid\\_l1}}
      + w_h \\underbrace{\\frac{\\sum a (1-M) |\\hat x - x|}{\\sum a (1-M)}}_{\\text{hole\\_l1}}
      + w_{tv}\\, \\mathrm{TV}_{\\text{hole}}(\\tilde x)
      + w_s \\, \\overline{|\\log P_{\\hat x}(k) - \\log P_x(k)|}

in normalised units: ``valid_l1`` and ``hole_l1`` are mean absolute errors over the observed
and the hidden cells (reported separately), TV is the mean absolute difference between
neighbouring cells of the composite ``x̃ = M x + (1 − M) x̂`` next to holes, and the spectral
term compares the log power of the zonal (longitude) Fourier modes of each row. Default weights
``w_v = 1, w_h = 6`` as Liu et al.; ``w_tv = w_s = 0``. ``a`` are optional per-row weights
(``row_weights``, e.g. cos φ so that the loss weighs cells by area as the area-weighted scores
do; 1 by default). With ``reconstruction="l2"`` the two terms are mean *squared* errors
(reported as ``valid_l2``, ``hole_l2``): the L1 terms fit the conditional median, the L2 terms
the conditional mean, which is what an RMSE score rewards.

With ``reconstruction="crps"`` the infiller is an *ensemble* generator: the U-Net gets noise
inputs (:class:`~climgen.nn.partialconv.PartialConvUNet` ``noise_injection``), every training
field is filled ``crps_members`` = M times with fresh noise, and the valid and hole terms are
the fair CRPS of the M fills at each cell (reported as ``valid_crps``, ``hole_crps``),

.. math::
    \\mathrm{CRPS}_{fair} = \\frac1M\\sum_i |\\hat x_i - x|
        - \\frac{1}{2M(M-1)}\\sum_{i,j} |\\hat x_i - \\hat x_j|,

a proper score, so its minimum is the true conditional distribution cell by cell: the members'
mean tends to the conditional median and their spread to the conditional uncertainty — large
far from observations, small next to them. This is scoring-rule training of an implicit
generative model (Gneiting & Raftery 2007; Pacchiardi et al. 2024, *Probabilistic forecasting
with generative networks via scoring rule minimization*, JMLR 25; the "almost fair" CRPS
ensembles of Lang et al. 2024, AIFS-CRPS). A step costs M forward/backward passes per field.

With ``residual_channel=j`` the network predicts a *correction* of a given estimate carried
as condition channel j (e.g. the optimal-interpolation mean ``E_OI[x | obs]``, normalised):
``x̂ = cond_j + f(x, mask, cond)``, with the output layer initialised at zero, so an untrained
network returns that estimate exactly and training learns the residual ``x − cond_j`` (its
distribution, with ``"crps"``). :meth:`infill` still keeps the observed cells, so the
residual is 0 there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from climgen.errors import ClimgenInputError
from climgen.metrics.ensemble import crps_fair
from climgen.nn.partialconv import PartialConvUNet

from .base import FamilyModule, register_family

__all__ = ["PartialConvInfiller", "random_block_masks"]


def random_block_masks(
    n: int,
    shape: tuple[int, int],
    *,
    coverage: tuple[float, float] = (0.1, 0.6),
    block: int = 4,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """(n, 1, H, W) float masks of observed blocks: coarse uniform noise thresholded per mask.

    Noise on a ``⌈H/block⌉ × ⌈W/block⌉`` grid, bilinearly up-sampled and thresholded at a
    per-mask coverage drawn uniformly from ``coverage``: irregular patches of about
    ``block`` cells. Used when a batch brings no masks.
    """
    h, w = shape
    coarse = torch.rand(n, 1, -(-h // block), -(-w // block), generator=generator)
    noise = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    lo, hi = coverage
    frac = lo + (hi - lo) * torch.rand(n, generator=generator)
    threshold = torch.quantile(noise.reshape(n, -1), 1 - frac, dim=1).diagonal()
    return (noise >= threshold.view(n, 1, 1, 1)).float().to(device)


@register_family("partialconv")
class PartialConvInfiller(FamilyModule):
    """Partial-convolution U-Net gap filler (Kadow et al. 2020), trained on masked fields.

    Parameters
    ----------
    channels, shape, periodic : the family's common arguments (fields (C, H, W)).
    cond_channels : number of extra input channels (neighbouring months, land–sea fraction).
    base_channels, max_channels, min_bottleneck, num_levels, first_kernel : U-Net size
        (:class:`~climgen.nn.partialconv.PartialConvUNet`).
    valid_weight, hole_weight, tv_weight, spectral_weight : loss weights (module docstring).
    reconstruction : "l1" (Liu et al.), "l2", or "crps" (a stochastic ensemble infiller trained
        with the fair CRPS of ``crps_members`` fills per field; module docstring).
    crps_members : fills per training field with ``reconstruction="crps"`` (M ≥ 2).
    residual_channel : None, or the index j of the condition channel(s) ``j … j + C − 1`` holding
        an estimate of the field that the network corrects (module docstring).
    row_weights : None, or H non-negative weights of the grid rows in the valid/hole terms
        (normalised to mean 1; ``Infiller(row_weights="area")`` passes cos φ of the grid).
    lr : Adam learning rate.

    Example
    -------
    >>> net = PartialConvInfiller(1, (16, 32), base_channels=4)
    >>> x, m = torch.randn(2, 1, 16, 32), (torch.rand(2, 1, 16, 32) > 0.5).float()
    >>> net.infill(x, m).shape
    torch.Size([2, 1, 16, 32])
    """

    name = "partialconv"
    ema_attr = "net"

    def __init__(
        self,
        channels: int,
        shape: tuple[int, int],
        periodic: tuple[bool, bool] = (False, True),
        *,
        cond_channels: int = 0,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        num_levels: int | None = None,
        first_kernel: int = 7,
        valid_weight: float = 1.0,
        hole_weight: float = 6.0,
        tv_weight: float = 0.0,
        spectral_weight: float = 0.0,
        reconstruction: str = "l1",
        crps_members: int = 4,
        residual_channel: int | None = None,
        row_weights=None,
        lr: float = 2e-4,
    ):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ClimgenInputError(f"option 'channels' must be a positive int, got {channels!r}")
        if not isinstance(cond_channels, int) or cond_channels < 0:
            raise ClimgenInputError(
                f"option 'cond_channels' must be an int ≥ 0, got {cond_channels!r}"
            )
        if len(shape) != 2 or any(int(s) < 1 for s in shape):
            raise ClimgenInputError(f"option 'shape' must be (H, W) > 0, got {shape!r}")
        weights = dict(
            valid_weight=valid_weight,
            hole_weight=hole_weight,
            tv_weight=tv_weight,
            spectral_weight=spectral_weight,
        )
        for key, value in weights.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ClimgenInputError(f"option '{key}' must be a number ≥ 0, got {value!r}")
        if reconstruction not in ("l1", "l2", "crps"):
            raise ClimgenInputError(
                f"option 'reconstruction' must be 'l1', 'l2' or 'crps', got {reconstruction!r}"
            )
        if isinstance(crps_members, bool) or not isinstance(crps_members, int) or crps_members < 2:
            raise ClimgenInputError(
                f"option 'crps_members' must be an int ≥ 2, got {crps_members!r}"
            )
        if residual_channel is not None and (
            isinstance(residual_channel, bool)
            or not isinstance(residual_channel, int)
            or not 0 <= residual_channel <= cond_channels - channels
        ):
            raise ClimgenInputError(
                f"option 'residual_channel' must be None or an int in 0…{cond_channels - channels}"
                f" (a condition channel), got {residual_channel!r}"
            )
        if row_weights is not None:
            rw = torch.as_tensor(row_weights, dtype=torch.float32).flatten()
            if rw.numel() != int(shape[0]) or not bool(torch.isfinite(rw).all()):
                raise ClimgenInputError(
                    f"option 'row_weights' must be {int(shape[0])} finite numbers (one per grid "
                    f"row), got {rw.numel()}"
                )
            if bool((rw < 0).any()) or float(rw.sum()) <= 0:
                raise ClimgenInputError("option 'row_weights' must be ≥ 0 with a positive sum")
            row_weights = [float(v) for v in rw / rw.mean()]
        self.record_config(locals())
        self.channels, self.cond_channels = channels, cond_channels
        self.shape = tuple(self.config["shape"])
        self.weights = {k: float(v) for k, v in weights.items()}
        self.lr = float(lr)
        self.reconstruction = reconstruction
        self.crps_members = crps_members
        # a plain attribute, not a buffer: the weights live in the config, not the checkpoint
        self._row_weights = None if row_weights is None else torch.tensor(row_weights)
        self.net = PartialConvUNet(
            channels + cond_channels,
            channels,
            self.shape,
            base_channels=base_channels,
            max_channels=max_channels,
            min_bottleneck=min_bottleneck,
            num_levels=num_levels,
            first_kernel=first_kernel,
            periodic=tuple(self.config["periodic"]),
            noise_injection=self.stochastic,
        )
        self.residual_channel = residual_channel
        if residual_channel is not None:  # untrained: the estimate itself, not a random map
            torch.nn.init.zeros_(self.net.head.weight)
            torch.nn.init.zeros_(self.net.head.bias)

    @property
    def stochastic(self) -> bool:
        """True for the CRPS-trained ensemble infiller: each call draws a different fill."""
        return self.reconstruction == "crps"

    # --- family contract -------------------------------------------------------------------
    def training_step(self, batch: dict, step: int, ctx) -> dict[str, torch.Tensor]:
        """Losses on ``batch`` (a random mask is drawn when it has none); updates "main"."""
        x = self._check(batch.get("x"), self.channels, "batch['x']")
        mask = batch.get("mask")
        if mask is None:
            mask = random_block_masks(x.shape[0], self.shape, device=x.device)
        with ctx.autocast():
            losses = self.loss(x, mask, batch.get("cond"), batch.get("cond_mask"))
        ctx.step(losses["loss"], "main")
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        x: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`infill` of ``x`` under ``mask`` (both (n, ...)); without them, zeros.

        A deterministic infiller has no distribution to sample: with nothing observed its
        answer is the normalised climatology, 0. ``generator`` draws the noise of a stochastic
        (``reconstruction="crps"``) infiller.
        """
        if x is not None and mask is not None:
            return self.infill(x, mask, cond, cond_mask, generator=generator)
        ref = next(self.parameters())
        return torch.zeros(n, self.channels, *self.shape, dtype=ref.dtype, device=ref.device)

    # --- infilling -------------------------------------------------------------------------
    def predict(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        noise: list[torch.Tensor] | None = None,
        any_shape: bool = False,
    ) -> torch.Tensor:
        """Raw network output (B, C, H, W) everywhere (observed cells not yet re-inserted);
        a stochastic infiller draws its noise from ``generator`` (or adds ``noise``, see
        :meth:`~climgen.nn.partialconv.PartialConvUNet.forward`). ``any_shape``: a grid other
        than the training one (a tile of it)."""
        x = self._check(x, self.channels, "x", any_shape)
        mask = mask.to(x.dtype)
        if mask.shape[1] == 1 and self.channels > 1:
            mask = mask.expand(-1, self.channels, -1, -1)
        inputs, masks = [x], [mask]
        if self.cond_channels:
            cond = self._check(cond, self.cond_channels, "cond", any_shape)
            cm = torch.ones_like(cond) if cond_mask is None else cond_mask.to(x.dtype)
            inputs.append(cond)
            masks.append(cm.expand_as(cond))
        elif cond is not None:
            raise ClimgenInputError(
                "this partialconv model was built with cond_channels=0 but got 'cond'"
            )
        out, _ = self.net(
            torch.cat(inputs, 1), torch.cat(masks, 1), generator, noise=noise, any_shape=any_shape
        )
        if self.residual_channel is not None:
            j = self.residual_channel
            out = out + cond[:, j : j + self.channels]
        return out

    def infill(self, x, mask, cond=None, cond_mask=None, *, generator=None) -> torch.Tensor:
        """Composite ``M x + (1 − M) x̂``: observed cells kept, holes from the network."""
        out = self.predict(x, mask, cond, cond_mask, generator=generator)
        observed = mask.expand_as(out) > 0
        return torch.where(observed, x, out)

    def loss(self, x, mask, cond=None, cond_mask=None) -> dict[str, torch.Tensor]:
        """{"loss", "valid_l1", "hole_l1"[, "tv", "spectral"]} in normalised units
        (``valid_l2``, ``hole_l2`` with ``reconstruction="l2"``; ``valid_crps``, ``hole_crps``
        with ``"crps"``: then the other terms use the members' mean)."""
        if self.stochastic:
            k = self.crps_members
            rep = [
                None if t is None else t.repeat_interleave(k, 0) for t in (x, mask, cond, cond_mask)
            ]
            members = self.predict(*rep).float()
            members = members.view(x.shape[0], k, *members.shape[1:])
            err = crps_fair(members, x.float(), member_axis=1, reduce=False)
            out = members.mean(1)
        else:
            out = self.predict(x, mask, cond, cond_mask).float()
            diff = out - x.float()
            err = diff.abs() if self.reconstruction == "l1" else diff.square()
        x = x.float()
        m = mask.float().expand_as(out)
        a = torch.ones_like(m)
        if self._row_weights is not None:
            a = a * self._row_weights.to(m.device).view(1, 1, -1, 1)
        valid = (err * a * m).sum() / (a * m).sum().clamp_min(1e-12)
        hole = (err * a * (1 - m)).sum() / (a * (1 - m)).sum().clamp_min(1e-12)
        w = self.weights
        total = w["valid_weight"] * valid + w["hole_weight"] * hole
        norm = self.reconstruction
        losses = {f"valid_{norm}": valid, f"hole_{norm}": hole}
        if w["tv_weight"] > 0:
            comp = m * x + (1 - m) * out
            near_hole = F.max_pool2d(1 - m, 3, 1, 1)
            dy = ((comp[..., 1:, :] - comp[..., :-1, :]).abs() * near_hole[..., 1:, :]).mean()
            dx = (comp - comp.roll(1, -1)).abs().mul(near_hole).mean()
            losses["tv"] = dy + dx
            total = total + w["tv_weight"] * losses["tv"]
        if w["spectral_weight"] > 0:
            p_out = torch.fft.rfft(out, dim=-1).abs().pow(2).mean((0, 2))
            p_x = torch.fft.rfft(x, dim=-1).abs().pow(2).mean((0, 2))
            losses["spectral"] = (torch.log(p_out + 1e-8) - torch.log(p_x + 1e-8)).abs().mean()
            total = total + w["spectral_weight"] * losses["spectral"]
        return {"loss": total, **losses}

    def _check(self, t, channels: int, what: str, any_shape: bool = False) -> torch.Tensor:
        expected = (channels, *self.shape)
        got_shape = None if not isinstance(t, torch.Tensor) else tuple(t.shape[1:])
        if any_shape and got_shape is not None and t.ndim == 4:
            expected = (channels, *got_shape[1:])
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or got_shape != expected:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ClimgenInputError(
                f"{what} must be a tensor (B, {', '.join(map(str, expected))}) for the "
                f"partialconv infiller, got {got}"
            )
        return t
