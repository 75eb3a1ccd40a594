"""Memorisation check: distance of generated fields to their nearest training field, shift-aware.

A generator that copies its training fields scores perfectly on every distributional
distance. The check here finds, for each generated field, the nearest training field over
*all shifts along the periodic axes* — an emulator that reproduces a training snapshot at
another longitude or at another phase of a roll pattern has still memorised it, and an
independent run's structures sit at other phases — and compares that distance with what
held-out reference fields get against the same training set.

The minimum over shifts is one FFT cross-correlation per pair:
‖g − S_s t‖² = ‖g‖² + ‖t‖² − 2 (g ⋆ t)(s), with (g ⋆ t)(s) = Σ_x w(x) g(x) t(x − s)
computed for every shift s at once by F⁻¹[ĝ · conj(t̂)] (Wiener–Khinchin). Along x only (a
channel, a lat/lon grid with row area weights w(y)) the rows are summed in Fourier space
first: one batched matrix product per wavenumber.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.metrics._arrays import periodic_pair, prepare, to_like

__all__ = ["nearest_training_distance", "memorisation_ratio", "memorisation_ratios"]

#: Elements of the (fields × training × shifts) correlation block computed at once.
_BLOCK_ELEMENTS = 1 << 24


def _fields(x: Any, name: str, weights: Any):
    t, kind, w = prepare(x, name, weights)
    if t.ndim < 2:
        raise ClimgenInputError(f"{name} must be (..., ny, nx), got shape {tuple(t.shape)}")
    ny, nx = t.shape[-2:]
    t = t.detach().reshape(-1, ny, nx)
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64)
    return t, kind, w


def _row_weights(w: torch.Tensor | None, ny: int, nx: int, periodic_y: bool, dtype, device):
    """Per-point weights (ny, nx) — constant along x where shifts run along x."""
    if w is None:
        return torch.ones((ny, nx), dtype=dtype, device=device)
    w2 = w.reshape(-1, ny, nx)[0].to(dtype)
    if periodic_y and not bool(torch.all(w2 == w2[0, 0])):
        raise ClimgenInputError(
            "weights must be uniform when both axes are periodic (a shift in y would move them)"
        )
    if not bool(torch.allclose(w2, w2[:, :1].expand(ny, nx))):
        raise ClimgenInputError("weights must be constant along x (area weights per row)")
    return w2


def nearest_training_distance(
    fields: Any,
    train: Any,
    *,
    periodic=None,
    weights: Any = None,
):
    r"""Distance from each field to its nearest training field over all periodic shifts.

    .. math:: d(g) = \min_{t \in T} \min_{s} \Big(\frac{\sum_x w(x)\,[g(x) - t(x - s)]^2}
              {\sum_x w(x)}\Big)^{1/2}

    (an area-weighted RMS difference, units of the field) with s running over every shift
    along the periodic axes (none along walls). ``periodic`` is a bool or (y, x); by default
    the DataArray's grid decides (arrays: not periodic, plain nearest neighbour). Returns an
    array with one distance per field of ``fields`` (leading dims flattened). Reference:
    Meehan, Chaudhuri & Dasgupta (2020), "A non-parametric test to detect data-copying in
    generative models", AISTATS (nearest-training-sample distances as a copying test).
    """
    g, kind, wg = _fields(fields, "fields", weights)
    t, _, _ = _fields(train, "train", weights)
    if g.shape[-2:] != t.shape[-2:]:
        raise ClimgenInputError(
            f"fields are {tuple(g.shape[-2:])} per field but train is {tuple(t.shape[-2:])}"
        )
    t = t.to(g.dtype)
    py, px = periodic_pair(fields, periodic)
    ny, nx = g.shape[-2:]
    w = _row_weights(wg, ny, nx, py, g.dtype, g.device)
    wsum = w.sum()
    sw = w.sqrt()
    gn = ((g * sw) ** 2).sum(dim=(-2, -1))
    tn = ((t * sw) ** 2).sum(dim=(-2, -1))
    if py and px:
        fg, ft = torch.fft.rfft2(g), torch.fft.rfft2(t)
        shifts = ny * nx
    elif px:
        fg, ft = torch.fft.rfft(g * w, dim=-1), torch.fft.rfft(t, dim=-1)
        shifts = nx
    elif py:
        fg = torch.fft.rfft(g.transpose(-2, -1) * w.T, dim=-1)
        ft = torch.fft.rfft(t.transpose(-2, -1), dim=-1)
        shifts = ny
    else:
        fg = ft = None
        shifts = 1
    best = torch.empty(g.shape[0], dtype=g.dtype, device=g.device)
    step = max(1, _BLOCK_ELEMENTS // max(1, t.shape[0] * shifts))
    for i in range(0, g.shape[0], step):
        sl = slice(i, i + step)
        if fg is None:
            corr = torch.einsum("gyx,tyx->gt", g[sl] * w, t)
        elif py and px:
            prod = fg[sl, None] * ft[None].conj()
            corr = torch.fft.irfft2(prod, s=(ny, nx)).amax(dim=(-2, -1))
        else:
            n = nx if px else ny
            # Σ over rows (columns) of each row's circular cross-correlation, in Fourier space.
            prod = torch.einsum("gyk,tyk->gtk", fg[sl], ft.conj())
            corr = torch.fft.irfft(prod, n=n, dim=-1).amax(dim=-1)
        d2 = (gn[sl, None] + tn[None, :] - 2.0 * corr).clamp_min(0.0)
        best[sl] = d2.amin(dim=1)
    return to_like((best / wsum).sqrt(), kind)


def memorisation_ratio(
    generated: Any,
    train: Any,
    reference: Any,
    *,
    periodic=None,
    weights: Any = None,
) -> float:
    r"""How much closer generated fields sit to the training set than held-out fields do.

    .. math:: ρ = \frac{\operatorname{median}_{g} d(g)}{\operatorname{median}_{r} d(r)}

    with d the shift-aware nearest-training-field distance of
    :func:`nearest_training_distance`, g the generated fields and r held-out reference fields
    (not in ``train``; e.g. an independent run). The denominator is the nearest-neighbour
    distance of the reference to the same training set — the same number of candidates and
    shifts — so a generator that draws *new* fields from the data distribution gets ρ ≈ 1,
    one that copies (possibly shifted, slightly noisy) training fields ρ ≪ 1; ρ > 1 means
    generated fields are farther from the data than the data's own spread (poor samples,
    not memorisation). Medians make it robust to a few outliers. Dimensionless.
    Reference: Meehan, Chaudhuri & Dasgupta (2020), AISTATS (data-copying test).
    """
    ratios = memorisation_ratios(
        {"generated": generated}, train, reference, periodic=periodic, weights=weights
    )
    return ratios["generated"]


def memorisation_ratios(
    candidates: dict[str, Any],
    train: Any,
    reference: Any,
    *,
    periodic=None,
    weights: Any = None,
) -> dict[str, float]:
    """:func:`memorisation_ratio` of several candidate sets (generated, a surrogate, …) against
    the same training and reference fields; the reference's distances (the denominator) are
    computed once."""
    kw = dict(periodic=periodic_pair(reference, periodic), weights=weights)
    dr = np.asarray(torch.as_tensor(nearest_training_distance(reference, train, **kw)).cpu())
    den = float(np.median(dr))
    if not den > 0:
        raise ClimgenInputError(
            "the reference fields are copies of training fields (median distance 0): "
            "memorisation needs held-out reference fields"
        )
    ratios = {}
    for name, fields in candidates.items():
        dg = np.asarray(torch.as_tensor(nearest_training_distance(fields, train, **kw)).cpu())
        ratios[name] = float(np.median(dg)) / den
    return ratios
