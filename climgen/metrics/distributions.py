"""One-point (value) distributions: histograms, Wasserstein-1, KS, quantiles and moments.

Every statistic here compares the *distribution of values* of two fields, pooled over samples
and grid points. On lat/lon grids each value counts with its cell area: pass ``weights``
(anything broadcastable to the field, usually ``(ny, nx)``) or pass DataArrays and the cos-lat
weights of :func:`climgen.data.grids.area_weights` are used. Weights are relative; only their
ratios matter. The two arguments may hold different numbers of samples.

numpy / DataArray input gives python floats (numpy arrays for vector output); torch input
gives torch scalars, differentiable with respect to the values where noted.

References: Villani (2009) *Optimal Transport* §6 (W1 as the L1 distance between CDFs);
Massey (1951) for the Kolmogorov–Smirnov statistic; Hyndman & Fan (1996) for quantile
definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.metrics._arrays import (
    common_kind,
    prepare,
    scalar_like,
    to_like,
)

__all__ = [
    "Histogram",
    "histogram",
    "shared_edges",
    "wasserstein1",
    "ks_statistic",
    "weighted_quantile",
    "quantile_errors",
    "tail_error",
    "moments",
]

DEFAULT_TAIL_QUANTILES = (0.001, 0.01, 0.99, 0.999)


def _flat_sorted(x: torch.Tensor, w: torch.Tensor | None):
    """Values sorted ascending with their weights normalised to sum 1."""
    v = x.reshape(-1)
    if v.numel() == 0:
        raise ClimgenInputError("empty field: a distribution needs at least one value")
    ww = torch.ones_like(v) if w is None else w.reshape(-1)
    v, order = torch.sort(v)
    ww = ww[order]
    return v, ww / ww.sum()


def _ecdfs(va, wa, vb, wb):
    """Both weighted ECDFs evaluated at every merged sample point (right-continuous).

    Returns (all_values sorted, F_a(all_values), F_b(all_values)).
    """
    allv, _ = torch.sort(torch.cat([va, vb]))
    ca, cb = torch.cumsum(wa, 0), torch.cumsum(wb, 0)
    # divide by the last partial sum so each CDF ends at exactly 1 (no 1 + eps round-off)
    ca = torch.cat([torch.zeros(1, dtype=wa.dtype, device=wa.device), ca / ca[-1]])
    cb = torch.cat([torch.zeros(1, dtype=wb.dtype, device=wb.device), cb / cb[-1]])
    key = allv.detach()
    fa = ca[torch.searchsorted(va.detach().contiguous(), key.contiguous(), right=True)]
    fb = cb[torch.searchsorted(vb.detach().contiguous(), key.contiguous(), right=True)]
    return allv, fa, fb


def _pair(a, b, weights_a, weights_b, name_a, name_b):
    ta, ka, wa = prepare(a, name_a, weights_a, f"weights_{name_a}")
    tb, kb, wb = prepare(b, name_b, weights_b, f"weights_{name_b}")
    ta, tb, kind = common_kind(ta, ka, tb, kb)
    if wa is not None:
        wa = wa.to(ta.dtype)
    if wb is not None:
        wb = wb.to(tb.dtype)
    return ta, wa, tb, wb, kind


# ----------------------------------------------------------------------------------------------
# Histograms


@dataclass(frozen=True)
class Histogram:
    """A (weighted) histogram on fixed bin edges, as numpy arrays.

    Attributes
    ----------
    edges : (n_bins + 1,) bin edges.
    counts : (n_bins,) number of values per bin (sum of weights when weighted, with the
        weights rescaled to mean 1 so counts stay on the scale of the sample size).
    density : counts / (total · bin width), integrating to 1 over the range (values outside
        the edges are left out of counts but kept in the total, so it may integrate to < 1).
    error : Poisson error of ``density``: sqrt(Σ w²) per bin / (total · bin width)
        (sqrt(counts) when unweighted). Plot log counts with these error bars.
    """

    edges: np.ndarray
    counts: np.ndarray
    density: np.ndarray
    error: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        """Bin centres, (n_bins,)."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])


def _values_numpy(x: Any, name: str, weights: Any = None):
    t, _, w = prepare(x, name, weights)
    v = t.detach().cpu().double().numpy().reshape(-1)
    wv = None if w is None else w.detach().cpu().double().numpy().reshape(-1)
    return v, wv


def _check_range(range_: tuple[float, float] | None) -> None:
    if range_ is not None and not (np.isfinite(range_).all() and range_[1] > range_[0]):
        raise ClimgenInputError(f"range must be finite (low, high) with high > low, got {range_}")


def shared_edges(a: Any, b: Any, bins: int = 64, range: tuple[float, float] | None = None):
    """Common bin edges for comparing two histograms: ``bins`` equal bins over ``range``.

    The default range spans the values of both ``a`` and ``b`` (min to max), widened by
    ±0.5 when all values are equal. Returns a numpy array of ``bins + 1`` edges.
    """
    if int(bins) < 1:
        raise ClimgenInputError(f"bins must be a positive integer, got {bins}")
    _check_range(range)
    if range is None:
        va, _ = _values_numpy(a, "a")
        vb, _ = _values_numpy(b, "b")
        lo = float(min(va.min(), vb.min()))
        hi = float(max(va.max(), vb.max()))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        range = (lo, hi)
    return np.linspace(range[0], range[1], int(bins) + 1)


def histogram(
    x: Any,
    bins: int = 64,
    range: tuple[float, float] | None = None,
    weights: Any = None,
    edges: Any = None,
) -> Histogram:
    """Histogram of the values of ``x`` (area-weighted when weights are given or derived).

    ``edges`` (e.g. from :func:`shared_edges`) takes precedence over ``bins``/``range``.
    Values outside the edges are not counted (as in :func:`numpy.histogram`).
    """
    v, w = _values_numpy(x, "x", weights)
    if edges is None:
        edges = shared_edges(v, v, bins=bins, range=range)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ClimgenInputError("edges must be a 1-D increasing array of at least 2 values")
    if w is not None:
        w = w / w.mean()
    counts, _ = np.histogram(v, bins=edges, weights=w)
    sq, _ = np.histogram(v, bins=edges, weights=None if w is None else w * w)
    total = v.size if w is None else w.sum()
    width = np.diff(edges)
    density = counts / (total * width)
    error = np.sqrt(sq) / (total * width)
    return Histogram(edges=edges, counts=counts.astype(np.float64), density=density, error=error)


# ----------------------------------------------------------------------------------------------
# Distances between value distributions


def wasserstein1(a: Any, b: Any, *, weights_a: Any = None, weights_b: Any = None):
    r"""Wasserstein-1 (earth mover's) distance between the value distributions of a and b.

    .. math:: W_1 = \int_{-\infty}^{\infty} |F_a(v) - F_b(v)|\, dv

    with :math:`F` the (area-weighted) empirical CDFs, evaluated exactly by merging the
    sorted samples — no histogram binning. Units: those of the field. Differentiable with
    respect to the values of torch inputs (through the gaps between sorted values).
    Reference: Villani (2009), *Optimal Transport*, Thm. 6.0 and §6 (1-D case).
    """
    ta, wa, tb, wb, kind = _pair(a, b, weights_a, weights_b, "a", "b")
    va, pa = _flat_sorted(ta, wa)
    vb, pb = _flat_sorted(tb, wb)
    allv, fa, fb = _ecdfs(va, pa, vb, pb)
    gaps = allv[1:] - allv[:-1]
    w1 = (torch.abs(fa[:-1] - fb[:-1]) * gaps).sum()
    return scalar_like(w1, kind)


def ks_statistic(a: Any, b: Any, *, weights_a: Any = None, weights_b: Any = None):
    r"""Two-sample Kolmogorov–Smirnov statistic :math:`D = \sup_v |F_a(v) - F_b(v)|`.

    Computed on the samples: both (area-weighted) ECDFs are evaluated at every sample point,
    which is where the supremum of two step functions is attained — never on histogram
    heights. Dimensionless in [0, 1]. Reference: Massey (1951), JASA 46, 68–78.
    """
    ta, wa, tb, wb, kind = _pair(a, b, weights_a, weights_b, "a", "b")
    va, pa = _flat_sorted(ta, wa)
    vb, pb = _flat_sorted(tb, wb)
    _, fa, fb = _ecdfs(va, pa, vb, pb)
    return scalar_like(torch.abs(fa - fb).max(), kind)


# ----------------------------------------------------------------------------------------------
# Quantiles and moments


def _quantiles(x: torch.Tensor, w: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor:
    """Weighted Hazen quantiles: linear interpolation of sorted values at plotting positions
    p_i = (C_i − w_i / 2) / W (C_i cumulative weight); constant beyond the extreme positions.
    Unweighted this is Hyndman & Fan (1996) definition 5, p_i = (i − 1/2) / n.
    """
    v, p = _flat_sorted(x, w)
    if v.numel() == 1:
        return v.expand(q.shape)
    pos = torch.cumsum(p, 0) - 0.5 * p
    qq = q.to(dtype=pos.dtype, device=pos.device).clamp(pos[0].detach(), pos[-1].detach())
    hi = torch.searchsorted(pos.detach().contiguous(), qq.contiguous()).clamp(1, v.numel() - 1)
    lo = hi - 1
    span = (pos[hi] - pos[lo]).clamp_min(torch.finfo(pos.dtype).tiny)
    frac = ((qq - pos[lo]) / span).clamp(0.0, 1.0)
    return v[lo] + frac * (v[hi] - v[lo])


def _check_q(q) -> tuple[float, ...]:
    qs = tuple(float(v) for v in np.atleast_1d(np.asarray(q, dtype=np.float64)))
    if not qs or any(not (0.0 <= v <= 1.0) for v in qs):
        raise ClimgenInputError(f"quantile levels q must lie in [0, 1], got {q}")
    return qs


def weighted_quantile(x: Any, q: Any, *, weights: Any = None):
    """Area-weighted quantiles of the values of ``x`` at levels ``q`` (Hazen positions).

    Uses linear interpolation between sorted values at plotting positions
    p_i = (C_i − w_i/2)/W (Hyndman & Fan 1996, definition 5 when unweighted). Returns an array
    shaped like ``q`` (numpy for numpy input, differentiable tensor for torch input).
    """
    t, kind, w = prepare(x, "x", weights)
    qs = _check_q(q)
    out = _quantiles(t, w, torch.tensor(qs, dtype=t.dtype, device=t.device))
    return to_like(out.reshape(np.shape(q)), kind)


def quantile_errors(
    gen: Any,
    ref: Any,
    q: Any = DEFAULT_TAIL_QUANTILES,
    *,
    weights_gen: Any = None,
    weights_ref: Any = None,
) -> dict[float, Any]:
    """Quantile error Q_gen(q) − Q_ref(q) for each level q, in the units of the field.

    Quantiles are area-weighted (see :func:`weighted_quantile`). Returns ``{q: error}``
    with python floats for numpy input, torch scalars for torch input.
    """
    tg, wg, tr, wr, kind = _pair(gen, ref, weights_gen, weights_ref, "gen", "ref")
    qs = _check_q(q)
    qt = torch.tensor(qs, dtype=tg.dtype, device=tg.device)
    err = _quantiles(tg, wg, qt) - _quantiles(tr, wr, qt)
    return {level: scalar_like(err[i], kind) for i, level in enumerate(qs)}


def _moments_t(x: torch.Tensor, w: torch.Tensor | None):
    v = x.reshape(-1)
    p = torch.full_like(v, 1.0 / v.numel()) if w is None else w.reshape(-1) / w.sum()
    mean = (p * v).sum()
    d = v - mean
    m2 = (p * d**2).sum()
    m3 = (p * d**3).sum()
    m4 = (p * d**4).sum()
    return mean, m2, m3, m4


def tail_error(
    gen: Any,
    ref: Any,
    q: Any = DEFAULT_TAIL_QUANTILES,
    *,
    weights_gen: Any = None,
    weights_ref: Any = None,
):
    """Largest quantile error over the tail levels ``q``, in units of the reference std.

    tail_error = max_q |Q_gen(q) − Q_ref(q)| / σ_ref  (dimensionless; σ_ref area-weighted,
    population std). Raises :class:`ClimgenInputError` when ``ref`` is constant.
    """
    tg, wg, tr, wr, kind = _pair(gen, ref, weights_gen, weights_ref, "gen", "ref")
    qs = _check_q(q)
    qt = torch.tensor(qs, dtype=tg.dtype, device=tg.device)
    err = (_quantiles(tg, wg, qt) - _quantiles(tr, wr, qt)).abs().max()
    _, m2, _, _ = _moments_t(tr, wr)
    if not bool(m2 > 0):
        raise ClimgenInputError("ref is constant (std 0): the tail error in std units is undefined")
    return scalar_like(err / m2.sqrt(), kind)


def moments(x: Any, weights: Any = None) -> dict[str, Any]:
    r"""Area-weighted mean, standard deviation, skewness and kurtosis of the values of x.

    With normalised weights :math:`p_i` and central moments :math:`m_k = \sum p_i (x_i -
    \mu)^k`: std = :math:`\sqrt{m_2}` (population, ddof = 0), skewness = :math:`m_3 /
    m_2^{3/2}`, kurtosis = :math:`m_4 / m_2^2` — the fourth standardised moment, **not** the
    excess kurtosis (a Gaussian gives 3). Skewness and kurtosis are NaN for a constant field.
    Returns python floats for numpy input, torch scalars for torch input.
    """
    t, kind, w = prepare(x, "x", weights)
    mean, m2, m3, m4 = _moments_t(t, w)
    if bool(m2 > 0):
        skew, kurt = m3 / m2**1.5, m4 / m2**2
    else:
        skew = kurt = torch.full_like(m2, float("nan"))
    out = {"mean": mean, "std": m2.sqrt(), "skewness": skew, "kurtosis": kurt}
    return {k: scalar_like(v, kind) for k, v in out.items()}
