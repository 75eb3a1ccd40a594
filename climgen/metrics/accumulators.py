r"""Mergeable accumulators: the summaries that let metrics of huge sets run chunk by chunk.

The in-memory metrics (:mod:`climgen.metrics.distributions`, :mod:`.spectra`,
:mod:`.structure`) need every value at once — 100 000 fields of 64 × 64 are 3.3 GB in
float64, and the exact W1/KS sort them all. The accumulators here keep a fixed-size summary
of the fields seen so far, take the fields in chunks of any size, and **merge** (chunks,
files, ranks of a distributed job: ``a.merge(b)`` summarises the union), so memory is
bounded by the chunk size, not by the number of fields:

============================  ======================================================  ============
accumulator                   summary (memory)                                        vs in-memory
============================  ======================================================  ============
:class:`Moments`              weighted count, mean, central sums M2..M4 (5 floats)    exact*
:class:`BinnedDistribution`   weighted counts on fixed common bins, min/max (bins)    bounded
:class:`MeanSpectrum`         sum of per-sample spectra (n_k)                         exact*
:class:`MeanStructure`        sum of per-sample structure functions (orders × lags)   exact*
:class:`Covariance`           count, mean (D), co-moment matrix (D × D)               exact*
============================  ======================================================  ============

\* equal up to floating-point summation order (relative ≤ 1e-8 in float64, tested).

**Moments** merge with the pairwise update of Chan et al. (1979) extended to the third and
fourth moments with weights (Pébay 2008, Sandia report SAND2008-6212, eqs. 3.1–3.3): with
total weights W_a, W_b, W = W_a + W_b and δ = μ_b − μ_a,

.. math::
    M_2 &= M_{2a} + M_{2b} + δ^2 W_a W_b / W \\
    M_3 &= M_{3a} + M_{3b} + δ^3 W_a W_b (W_a − W_b) / W^2 + 3δ (W_a M_{2b} − W_b M_{2a}) / W \\
    M_4 &= M_{4a} + M_{4b} + δ^4 W_a W_b (W_a^2 − W_a W_b + W_b^2) / W^3
          + 6δ^2 (W_a^2 M_{2b} + W_b^2 M_{2a}) / W^2 + 4δ (W_a M_{3b} − W_b M_{3a}) / W

(M_k = Σ w (x − μ)^k), which avoids the cancellation of raw power sums.

**Value distributions** are area-weighted histograms on one fixed binning shared by every
set to be compared: ``n_bins`` equal bins of width Δ over ``range = (lo, hi)``, plus an
underflow bin [min, lo) and an overflow bin [hi, max] whose outer limits are the exact
minimum and maximum seen. The binned CDF is exact at every edge; between edges it is
interpolated linearly. Error bounds against the exact statistics of
:mod:`climgen.metrics.distributions` (p_a,k, p_b,k: fraction of the weight of each set in
bin k, Δ_k the bin's width, the outer bins included):

- **W1**: :math:`|\tilde W_1 − W_1| \le \sum_k Δ_k (p_{a,k} + p_{b,k}) \le 2 \max_k Δ_k`,
  because on each bin the true and the interpolated CDF both lie between the CDF values at
  the bin's edges.
- **KS**: the largest CDF difference at the edges, :math:`\tilde D = \max_k |F_a(e_k) −
  F_b(e_k)|`, is a lower bound and :math:`\tilde D \le D \le \tilde D + \max_k \max(p_{a,k},
  p_{b,k})` (the largest bin mass, ≈ Δ × the largest density).
- **Quantiles**: the binned quantile (linear inversion of the interpolated CDF) and the
  exact (Hazen) quantile both lie between the last edge where the binned CDF is below
  q − ε and the first where it is above q + ε (ε = half the largest weight / total), a
  span of one bin width Δ where bins hold many values, wider in sparse tails
  (:meth:`BinnedDistribution.quantile_bound`).

:meth:`BinnedDistribution.w1_bound` and :meth:`~BinnedDistribution.ks_bound` return the
data-dependent bounds; :class:`StreamingEvaluator` reports them. With the default 65 536
bins over twice the span of the first reference chunk, Δ ≈ 3·10⁻⁴ σ for Gaussian data.

**Covariance** accumulates the co-moment matrix C = Σ (x − μ)(x − μ)ᵀ of the fields scaled by
√(area weight), merged with Chan's update C = C_a + C_b + δδᵀ n_a n_b / n; the covariance
error on the reference's leading EOFs (:func:`climgen.metrics.covariance_error` with
``n_eofs``) then needs only the two D × D matrices. Memory is 8 D² bytes per set, so it is
computed only up to ``covariance_max_points`` grid points.

:class:`climgen.metrics.streaming.StreamingEvaluator` bundles them for a generated and a
reference set, with the noise floors.

References: Chan, Golub & LeVeque (1979), *Updating formulae and a pairwise algorithm for
computing sample variances*; Pébay (2008), *Formulas for robust, one-pass parallel
computation of covariances and arbitrary-order statistical moments*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = [
    "Moments",
    "BinnedDistribution",
    "MeanSpectrum",
    "MeanStructure",
    "Covariance",
    "chunk_values",
    "DEFAULT_BINS",
]

DEFAULT_BINS = 2**16


def chunk_values(chunk: Any) -> np.ndarray:
    """A chunk (numpy, torch or xarray) as float64 numpy; NaN/inf are an input error."""
    if isinstance(chunk, xr.DataArray):
        chunk = chunk.values
    if isinstance(chunk, torch.Tensor):
        chunk = chunk.detach().cpu().numpy()
    arr = np.asarray(chunk, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ClimgenInputError(
            f"a chunk holds {bad} NaN/inf value(s) out of {arr.size}; fill or mask them first"
        )
    return arr


def _weights_like(weights: np.ndarray | None, arr: np.ndarray) -> np.ndarray:
    if weights is None:
        return np.ones(arr.shape[-2:])
    return np.asarray(weights, dtype=np.float64)


# ----------------------------------------------------------------------------------- moments


@dataclass
class Moments:
    """Weighted mean and central moment sums, mergeable (Chan/Pébay pairwise update).

    ``update(chunk, weights)`` adds the values of a chunk (weights broadcast to it, e.g. the
    (ny, nx) area weights); :meth:`result` gives mean, std (population), skewness and
    kurtosis (not excess) with the definitions of :func:`climgen.metrics.moments`.
    """

    w: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    def update(self, chunk: Any, weights: Any = None) -> Moments:
        x = chunk_values(chunk)
        if x.size == 0:
            return self
        w = np.broadcast_to(np.ones(1) if weights is None else np.asarray(weights, float), x.shape)
        sw = float(w.sum())
        mu = float((w * x).sum() / sw)
        d = x - mu
        wd2 = w * d * d
        part = Moments(
            sw,
            mu,
            float(wd2.sum()),
            float((wd2 * d).sum()),
            float((wd2 * d * d).sum()),
        )
        return self.merge(part)

    def merge(self, other: Moments) -> Moments:
        """Combine in place with ``other`` (the summary of the union); returns self."""
        wa, wb = self.w, other.w
        if wb == 0:
            return self
        if wa == 0:
            self.w, self.mean, self.m2, self.m3, self.m4 = (
                other.w,
                other.mean,
                other.m2,
                other.m3,
                other.m4,
            )
            return self
        w = wa + wb
        d = other.mean - self.mean
        m2 = self.m2 + other.m2 + d * d * wa * wb / w
        m3 = (
            self.m3
            + other.m3
            + d**3 * wa * wb * (wa - wb) / w**2
            + 3 * d * (wa * other.m2 - wb * self.m2) / w
        )
        m4 = (
            self.m4
            + other.m4
            + d**4 * wa * wb * (wa * wa - wa * wb + wb * wb) / w**3
            + 6 * d * d * (wa * wa * other.m2 + wb * wb * self.m2) / w**2
            + 4 * d * (wa * other.m3 - wb * self.m3) / w
        )
        self.mean = self.mean + d * wb / w
        self.w, self.m2, self.m3, self.m4 = w, m2, m3, m4
        return self

    def copy(self) -> Moments:
        return Moments(self.w, self.mean, self.m2, self.m3, self.m4)

    def result(self) -> dict[str, float]:
        if self.w == 0:
            raise ClimgenInputError("no values were accumulated")
        var = self.m2 / self.w
        if var > 0:
            skew = self.m3 / self.w / var**1.5
            kurt = self.m4 / self.w / var**2
        else:
            skew = kurt = float("nan")
        return {
            "mean": self.mean,
            "std": math.sqrt(max(var, 0.0)),
            "skewness": skew,
            "kurtosis": kurt,
        }


# ----------------------------------------------------------------------------- distributions


@dataclass
class BinnedDistribution:
    """Area-weighted histogram on a fixed binning, for W1, KS and quantiles of huge sets.

    ``n_bins`` equal bins over ``range`` plus under- and overflow bins bounded by the exact
    min and max seen. Two summaries can be compared (or merged) only when they share
    ``range`` and ``n_bins``. Error bounds: see the module docstring.
    """

    range: tuple[float, float]
    n_bins: int = DEFAULT_BINS
    counts: np.ndarray = field(default=None, repr=False)  # (n_bins + 2,): under, bins, over
    vmin: float = math.inf
    vmax: float = -math.inf
    wmax: float = 0.0  # the largest single weight (for the quantile bound)

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ClimgenInputError(
                f"range must be finite (low, high) with high > low, got {self.range}"
            )
        if int(self.n_bins) < 1:
            raise ClimgenInputError(f"n_bins must be a positive integer, got {self.n_bins}")
        self.range, self.n_bins = (lo, hi), int(self.n_bins)
        if self.counts is None:
            self.counts = np.zeros(self.n_bins + 2)

    @property
    def width(self) -> float:
        return (self.range[1] - self.range[0]) / self.n_bins

    def update(self, chunk: Any, weights: Any = None) -> BinnedDistribution:
        x = chunk_values(chunk)
        if x.size == 0:
            return self
        w = np.broadcast_to(np.ones(1) if weights is None else np.asarray(weights, float), x.shape)
        lo, hi = self.range
        idx = np.floor((x.reshape(-1) - lo) / self.width)
        # Bin k ↔ index k + 1; values < lo → 0 (underflow), > hi → n + 1; x == hi → last bin.
        idx = np.where(x.reshape(-1) == hi, self.n_bins - 1, idx)
        idx = np.clip(idx, -1, self.n_bins).astype(np.int64) + 1
        self.counts += np.bincount(idx, weights=w.reshape(-1), minlength=self.n_bins + 2)
        self.vmin = min(self.vmin, float(x.min()))
        self.vmax = max(self.vmax, float(x.max()))
        self.wmax = max(self.wmax, float(w.max()))
        return self

    def _check_same(self, other: BinnedDistribution) -> None:
        if self.range != other.range or self.n_bins != other.n_bins:
            raise ClimgenInputError(
                f"binned distributions differ in binning: range {self.range} with {self.n_bins}"
                f" bins vs {other.range} with {other.n_bins}; build both with the same range"
            )

    def merge(self, other: BinnedDistribution) -> BinnedDistribution:
        self._check_same(other)
        self.counts = self.counts + other.counts
        self.vmin, self.vmax = min(self.vmin, other.vmin), max(self.vmax, other.vmax)
        self.wmax = max(self.wmax, other.wmax)
        return self

    def copy(self) -> BinnedDistribution:
        return BinnedDistribution(
            self.range, self.n_bins, self.counts.copy(), self.vmin, self.vmax, self.wmax
        )

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def _edges(self, vmin: float, vmax: float) -> np.ndarray:
        """n_bins + 3 edges: [outer low, lo, …, hi, outer high] (zero-width outer bins when
        nothing fell outside the range)."""
        lo, hi = self.range
        inner = np.linspace(lo, hi, self.n_bins + 1)
        return np.concatenate([[min(vmin, lo)], inner, [max(vmax, hi)]])

    def cdf_at_edges(self, edges_from: BinnedDistribution | None = None):
        """(edges, F at the edges): F(e_k) = weight of values below e_k / total."""
        other = edges_from or self
        edges = self._edges(min(self.vmin, other.vmin), max(self.vmax, other.vmax))
        if self.total <= 0:
            raise ClimgenInputError("no values were accumulated")
        cum = np.concatenate([[0.0], np.cumsum(self.counts)]) / self.total
        cum[-1] = 1.0
        return edges, cum

    def _pair(self, other: BinnedDistribution):
        self._check_same(other)
        edges, fa = self.cdf_at_edges(other)
        _, fb = other.cdf_at_edges(self)
        return edges, fa, fb

    def wasserstein1(self, other: BinnedDistribution) -> float:
        r"""∫|F_a − F_b| dv of the linearly interpolated binned CDFs (error ≤ :meth:`w1_bound`)."""
        edges, fa, fb = self._pair(other)
        d = fa - fb
        widths = np.diff(edges)
        d0, d1 = d[:-1], d[1:]
        same = d0 * d1 >= 0
        a0, a1 = np.abs(d0), np.abs(d1)
        with np.errstate(invalid="ignore", divide="ignore"):
            crossing = (d0 * d0 + d1 * d1) / (2 * (a0 + a1))
        per_bin = np.where(same, 0.5 * (a0 + a1), np.nan_to_num(crossing))
        return float((widths * per_bin).sum())

    def w1_bound(self, other: BinnedDistribution) -> float:
        """Σ_k Δ_k (p_a,k + p_b,k): bound on |binned W1 − exact W1|."""
        edges, fa, fb = self._pair(other)
        return float((np.diff(edges) * (np.diff(fa) + np.diff(fb))).sum())

    def ks(self, other: BinnedDistribution) -> float:
        """max_k |F_a(e_k) − F_b(e_k)|: a lower bound of the exact KS statistic D, with
        D ≤ this + :meth:`ks_bound`."""
        _, fa, fb = self._pair(other)
        return float(np.abs(fa - fb).max())

    def ks_bound(self, other: BinnedDistribution) -> float:
        """Largest bin mass of either set: the exact KS exceeds :meth:`ks` by at most this."""
        _, fa, fb = self._pair(other)
        return float(max(np.diff(fa).max(), np.diff(fb).max()))

    def quantile(self, q: Any) -> np.ndarray:
        """Quantiles at levels q by linear inversion of the binned CDF (error: module doc)."""
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs < 0) | (qs > 1)):
            raise ClimgenInputError(f"quantile levels q must lie in [0, 1], got {q}")
        edges, cum = self.cdf_at_edges()
        out = []
        for level in qs:
            k = int(np.clip(np.searchsorted(cum, level, side="right") - 1, 0, cum.size - 2))
            mass = cum[k + 1] - cum[k]
            frac = 0.0 if mass <= 0 else min(max((level - cum[k]) / mass, 0.0), 1.0)
            out.append(edges[k] + frac * (edges[k + 1] - edges[k]))
        return np.asarray(out).reshape(np.shape(q))

    def quantile_bound(self, q: Any) -> np.ndarray:
        """Guaranteed bound on |binned − exact (Hazen) quantile| at each level q.

        The exact quantile Q satisfies F(Q) ≥ q − ε and F(Q⁻) ≤ q + ε with ε = half the
        largest single weight / total, so it lies between the last edge where the binned CDF
        is below q − ε and the first edge where it is above q + ε; so does the binned one.
        The bound is that span: one bin width Δ where bins hold many values, more in
        sparse tails (where consecutive values are further apart than a bin).
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        edges, cum = self.cdf_at_edges()
        eps = 0.5 * self.wmax / self.total
        k1 = np.searchsorted(cum, qs - eps, side="left") - 1  # last k with cum[k] < q − ε
        k2 = np.searchsorted(cum, qs + eps, side="right")  # first k with cum[k] > q + ε
        k1 = np.clip(k1, 0, cum.size - 1)
        k2 = np.clip(k2, 0, cum.size - 1)
        return (edges[k2] - edges[k1]).reshape(np.shape(q))


# ----------------------------------------------------------------------- spectra / structure


@dataclass
class MeanStructure:
    """Sum of per-sample curves (spectra, structure functions) and the sample count.

    ``fn(chunk) -> (axis, curves)`` with curves shaped (..., n_samples_in_chunk, ...) given by
    ``sample_axis``; :meth:`mean` is the sample mean, equal to the curve of the whole set
    for any statistic that is a plain mean over samples.
    """

    total: np.ndarray | None = None
    n: int = 0
    axis: np.ndarray | None = None

    def add(self, axis: np.ndarray, per_sample_sum: np.ndarray, n: int) -> MeanStructure:
        if self.total is None:
            self.total, self.axis = np.array(per_sample_sum, dtype=np.float64), np.asarray(axis)
        else:
            self.total = self.total + per_sample_sum
        self.n += int(n)
        return self

    def merge(self, other: MeanStructure) -> MeanStructure:
        if other.total is None:
            return self
        return self.add(other.axis, other.total, other.n)

    def copy(self) -> MeanStructure:
        return MeanStructure(None if self.total is None else self.total.copy(), self.n, self.axis)

    def mean(self) -> np.ndarray:
        if self.n == 0:
            raise ClimgenInputError("no samples were accumulated")
        return self.total / self.n


MeanSpectrum = MeanStructure  # same arithmetic: a sum of per-sample spectra


# -------------------------------------------------------------------------------- covariance


@dataclass
class Covariance:
    """Co-moment matrix of flattened fields (scaled by √weights), merged with Chan's update."""

    n: int = 0
    mean: np.ndarray | None = None
    comoment: np.ndarray | None = None

    def update(self, chunk: Any, weights: Any = None) -> Covariance:
        x = chunk_values(chunk)
        if x.shape[0] == 0:
            return self
        if weights is not None:
            x = x * np.sqrt(np.asarray(weights, float))
        x = x.reshape(x.shape[0], -1)
        mu = x.mean(0)
        a = torch.from_numpy(x - mu)  # torch: its thread setting, as the other metrics
        return self.merge(Covariance(x.shape[0], mu, (a.T @ a).numpy()))

    def merge(self, other: Covariance) -> Covariance:
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.comoment = other.n, other.mean.copy(), other.comoment.copy()
            return self
        n = self.n + other.n
        d = other.mean - self.mean
        self.comoment = self.comoment + other.comoment + np.outer(d, d) * (self.n * other.n / n)
        self.mean = self.mean + d * (other.n / n)
        self.n = n
        return self

    def copy(self) -> Covariance:
        if self.n == 0:
            return Covariance()
        return Covariance(self.n, self.mean.copy(), self.comoment.copy())

    def error(self, reference: Covariance, n_eofs: int | None = 10) -> float:
        """‖Σ_self − Σ_ref‖_F / ‖Σ_ref‖_F on the reference's ``n_eofs`` leading EOFs (all
        points when None): :func:`climgen.metrics.covariance_error` from the summaries."""
        if self.n < 2 or reference.n < 2:
            raise ClimgenInputError("a covariance needs at least 2 samples per set")
        sa = self.comoment / (self.n - 1)
        sb = reference.comoment / (reference.n - 1)
        if n_eofs is not None:
            evals, vecs = torch.linalg.eigh(torch.from_numpy(reference.comoment))
            evals, vecs = evals.numpy()[::-1], vecs.numpy()[:, ::-1]
            evals, vecs = evals[: int(n_eofs)], vecs[:, : int(n_eofs)]
            d = reference.comoment.shape[0]
            keep = evals > evals[0] * np.finfo(float).eps * max(reference.n, d)
            v = vecs[:, keep]
            sa, sb = v.T @ sa @ v, v.T @ sb @ v
        return float(np.linalg.norm(sa - sb) / np.linalg.norm(sb))
