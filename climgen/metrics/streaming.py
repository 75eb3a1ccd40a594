r"""Streaming evaluation: the distances of huge sets computed chunk by chunk, with noise floors.

The in-memory metrics (:mod:`climgen.metrics.distributions`, :mod:`.spectra`,
:mod:`.structure`) need every value at once — 100 000 fields of 64 × 64 are 3.3 GB in
float64, and the exact W1/KS sort them all. The mergeable accumulators of
:mod:`climgen.metrics.accumulators` (:class:`Moments`, :class:`BinnedDistribution`,
:class:`MeanSpectrum`, :class:`MeanStructure`, :class:`Covariance`; their definitions, merge
formulas and error bounds are documented there) keep a fixed-size summary of the fields seen
so far, so memory is bounded by the chunk size, not by the number of fields. They are
re-exported here.

:class:`StreamingEvaluator` bundles the accumulators for a generated and a reference set,
and the noise floors: the reference's samples are grouped into the "atoms" of the requested
splits (the sets of samples that fall in the same half in every split), so each floor (the
distance between two halves of the reference) is a merge of a few atoms' summaries, without
a second pass.

References: Chan, Golub & LeVeque (1979), *Updating formulae and a pairwise algorithm for
computing sample variances*; Pébay (2008), *Formulas for robust, one-pass parallel
computation of covariances and arbitrary-order statistical moments*.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

from .accumulators import (
    DEFAULT_BINS,
    BinnedDistribution,
    Covariance,
    MeanSpectrum,
    MeanStructure,
    Moments,
    chunk_values,
)

__all__ = [
    "Moments",
    "BinnedDistribution",
    "MeanSpectrum",
    "MeanStructure",
    "Covariance",
    "FieldSummary",
    "StreamingEvaluator",
    "iter_chunks",
    "DEFAULT_BINS",
]

DEFAULT_QUANTILES = (0.001, 0.01, 0.99, 0.999)


# ---------------------------------------------------------------------------- field summary


def default_spectrum(chunk: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample spectra of a (n, ny, nx) chunk: :func:`climgen.metrics.field_spectrum` for
    DataArrays (the spectrum that fits the grid), :func:`rapsd` (unit spacing) otherwise."""
    from climgen.metrics.spectra import field_spectrum, rapsd

    if isinstance(chunk, xr.DataArray):
        s = field_spectrum(chunk)
        return np.asarray(s[s.dims[-1]].values, float), np.asarray(s.values, float)
    k, p = rapsd(chunk_values(chunk))
    return np.asarray(k, float), np.asarray(p, float)


@dataclass
class FieldSummary:
    """Every accumulator for one set of fields; merge-able as a whole."""

    moments: Moments
    values: BinnedDistribution
    spectrum: MeanStructure
    structure: MeanStructure
    covariance: Covariance | None

    def merge(self, other: FieldSummary) -> FieldSummary:
        self.moments.merge(other.moments)
        self.values.merge(other.values)
        self.spectrum.merge(other.spectrum)
        self.structure.merge(other.structure)
        if self.covariance is not None and other.covariance is not None:
            self.covariance.merge(other.covariance)
        return self

    def copy(self) -> FieldSummary:
        return FieldSummary(
            self.moments.copy(),
            self.values.copy(),
            self.spectrum.copy(),
            self.structure.copy(),
            None if self.covariance is None else self.covariance.copy(),
        )

    @property
    def n(self) -> int:
        return self.spectrum.n


def _halves(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    half = n // 2
    return [(np.arange(half), np.arange(half, 2 * half))]


def _structure_default(periodic: bool, orders: Sequence[float]):
    from climgen.metrics.structure import report_lags, structure_functions

    def fn(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lags, s = structure_functions(
            chunk,
            axis=-1,
            orders=tuple(orders),
            lags=report_lags(chunk.shape[-1], periodic),
            periodic=periodic,
        )
        return np.asarray(lags, float), np.asarray(s, float)

    return fn


class StreamingEvaluator:
    """Distances between a generated and a reference set fed chunk by chunk, with floors.

    Parameters
    ----------
    n_reference : number of reference samples (needed to place each one in the halves of
        the noise-floor splits as it streams past).
    weights : (ny, nx) area weights (None: uniform).
    range : (lo, hi) of the common value binning; default: the first chunk's (reference or
        generated, whichever comes first) [min, max] widened by half its span on each side
        (values outside still count, in the under/overflow bins, with a larger error bound).
    n_bins : bins over ``range`` (default 65 536).
    splits : noise-floor splits of the reference, a list of (indices of half A, indices of
        half B); default: first half vs second half.
    spectrum : ``fn(chunk) -> (k, per-sample power (n, n_k))``; default
        :func:`default_spectrum`.
    periodic_x : structure functions along x wrap around (default True); their lags are
        :func:`climgen.metrics.structure.report_lags`, as in the in-memory report.
    covariance_max_points : accumulate D × D covariances only up to this many grid points.
    n_eofs : EOFs for the covariance error.

    Feed with :meth:`add_generated` / :meth:`add_reference` (any chunk sizes, reference in
    sample order), or all at once with :meth:`run`; :meth:`distances` returns
    ``{name: (value, floor)}`` with the names of :func:`climgen.report.evaluate`.
    """

    def __init__(
        self,
        n_reference: int,
        *,
        weights: Any = None,
        range: tuple[float, float] | None = None,
        n_bins: int = DEFAULT_BINS,
        splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
        spectrum: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None,
        periodic_x: bool = True,
        structure_orders: Sequence[float] = (1, 2, 3, 4, 5, 6),
        covariance_max_points: int = 1024,
        n_eofs: int | None = 10,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> None:
        if int(n_reference) < 4:
            raise ClimgenInputError(
                f"n_reference is {n_reference}; the noise floor needs at least 4 reference samples"
            )
        self.n_reference = int(n_reference)
        self.weights = None if weights is None else np.asarray(weights, float)
        self.range = None if range is None else (float(range[0]), float(range[1]))
        self.n_bins = int(n_bins)
        self.spectrum_fn = spectrum or default_spectrum
        self.structure_orders = tuple(structure_orders)
        self.structure_fn = _structure_default(periodic_x, self.structure_orders)
        self.covariance_max_points = int(covariance_max_points)
        self.n_eofs = n_eofs
        self.quantiles = tuple(float(q) for q in quantiles)
        splits = list(splits) if splits is not None else _halves(self.n_reference)
        labels = np.full((len(splits), self.n_reference), 2, dtype=np.int8)
        for s, (a, b) in enumerate(splits):
            labels[s, np.asarray(a, int)] = 0
            labels[s, np.asarray(b, int)] = 1
        rows, self._atom_of = np.unique(labels.T, axis=0, return_inverse=True)
        self._atom_of = self._atom_of.reshape(-1)
        # For each split: the atoms making half A and half B.
        self._split_atoms = [
            (np.flatnonzero(rows[:, s] == 0), np.flatnonzero(rows[:, s] == 1))
            for s in np.arange(len(splits))
        ]
        self._atoms: list[FieldSummary | None] = [None] * rows.shape[0]
        self.generated: FieldSummary | None = None
        self._ref_seen = 0
        self._shape: tuple[int, int] | None = None

    # -- feeding -------------------------------------------------------------------------------
    def _new_summary(self, shape: tuple[int, int]) -> FieldSummary:
        d = shape[0] * shape[1]
        return FieldSummary(
            Moments(),
            BinnedDistribution(self.range, self.n_bins),
            MeanStructure(),
            MeanStructure(),
            Covariance() if d <= self.covariance_max_points else None,
        )

    def _init(self, chunk: Any) -> None:
        x = chunk_values(chunk)
        if x.ndim != 3:
            raise ClimgenInputError(
                f"chunks must be (n_samples, ny, nx); got shape {tuple(x.shape)}"
            )
        if self._shape is None:
            self._shape = tuple(x.shape[-2:])
            if self.range is None:
                lo, hi = float(x.min()), float(x.max())
                span = hi - lo if hi > lo else 1.0
                self.range = (lo - 0.5 * span, hi + 0.5 * span)
        elif tuple(x.shape[-2:]) != self._shape:
            raise ClimgenInputError(
                f"chunk grid {tuple(x.shape[-2:])} differs from the first chunk's {self._shape}"
            )

    def _update(self, summary: FieldSummary, chunk: Any) -> None:
        x = chunk_values(chunk)
        w = self.weights
        summary.moments.update(x, w)
        summary.values.update(x, w)
        k, p = self.spectrum_fn(chunk)
        summary.spectrum.add(k, p.reshape(x.shape[0], -1).sum(0), x.shape[0])
        lags, s = self.structure_fn(x)
        summary.structure.add(lags, s * x.shape[0], x.shape[0])
        if summary.covariance is not None:
            summary.covariance.update(x, w)

    def add_generated(self, chunk: Any) -> None:
        """Add a (n, ny, nx) chunk (array, tensor or DataArray) of generated fields."""
        self._init(chunk)
        if self.generated is None:
            self.generated = self._new_summary(self._shape)
        self._update(self.generated, chunk)

    def add_reference(self, chunk: Any, start: int | None = None) -> None:
        """Add a (n, ny, nx) chunk of reference fields: by default the next one in sample
        order; with ``start``, the samples ``start … start + n − 1`` (chunks may then come in
        any order or to different evaluators, merged afterwards with :meth:`merge`)."""
        self._init(chunk)
        n = chunk_values(chunk).shape[0] if not isinstance(chunk, xr.DataArray) else chunk.shape[0]
        start = self._ref_seen if start is None else int(start)
        stop = start + n
        if start < 0 or stop > self.n_reference:
            raise ClimgenInputError(
                f"reference samples {start}–{stop - 1} were added but n_reference is "
                f"{self.n_reference}"
            )
        atoms = self._atom_of[start:stop]
        for atom in np.unique(atoms):
            rows = np.flatnonzero(atoms == atom)
            part = chunk[rows[0] : rows[-1] + 1] if _contiguous(rows) else chunk[rows]
            if self._atoms[atom] is None:
                self._atoms[atom] = self._new_summary(self._shape)
            self._update(self._atoms[atom], part)
        self._ref_seen += n

    # -- splitting the work --------------------------------------------------------------------
    def set_binning(self, chunk: Any) -> StreamingEvaluator:
        """Fix the grid shape and (unless given) the value range from ``chunk``, exactly as
        the first chunk added would; needed before :meth:`spawn`. Returns self."""
        self._init(chunk)
        return self

    def spawn(self) -> StreamingEvaluator:
        """An empty evaluator with this one's settings, splits and binning, to be fed
        elsewhere (another process, a dask worker) and merged back (:meth:`merge`)."""
        if self.range is None or self._shape is None:
            raise ClimgenInputError(
                "the value range and grid are not fixed yet: call set_binning(first_chunk) or "
                "give range= before spawn()"
            )
        out = copy.copy(self)
        out._atoms = [None] * len(self._atoms)
        out.generated, out._ref_seen = None, 0
        return out

    def merge(self, other: StreamingEvaluator) -> StreamingEvaluator:
        """Add in place the summaries of ``other`` (an evaluator from :meth:`spawn`, fed
        with other chunks); returns self. Every accumulator merges exactly (Chan/Pébay for
        moments and covariances, sums for histograms and curves), so feeding the chunks to
        one evaluator or to several and merging in chunk order gives the same numbers."""
        if (
            other.n_reference != self.n_reference
            or other.range != self.range
            or other.n_bins != self.n_bins
            or len(other._atoms) != len(self._atoms)
        ):
            raise ClimgenInputError(
                "cannot merge streaming evaluators with different n_reference, splits or "
                "binning: make both with spawn() from the same evaluator"
            )
        if other._shape is not None and self._shape not in (None, other._shape):
            raise ClimgenInputError(
                f"cannot merge streaming evaluators of grids {self._shape} and {other._shape}"
            )
        self._shape = self._shape or other._shape
        if other.generated is not None:
            if self.generated is None:
                self.generated = other.generated.copy()
            else:
                self.generated.merge(other.generated)
        for a, s in enumerate(other._atoms):
            if s is not None:
                self._atoms[a] = s.copy() if self._atoms[a] is None else self._atoms[a].merge(s)
        self._ref_seen += other._ref_seen
        return self

    def run(self, generated: Iterable[Any], reference: Iterable[Any]) -> StreamingEvaluator:
        """Feed every chunk of both iterables (reference first); returns self."""
        for chunk in reference:
            self.add_reference(chunk)
        for chunk in generated:
            self.add_generated(chunk)
        return self

    # -- results -------------------------------------------------------------------------------
    def _merged(self, atoms: Iterable[int]) -> FieldSummary:
        out = None
        for a in atoms:
            s = self._atoms[a]
            if s is None:
                continue
            out = s.copy() if out is None else out.merge(s)
        if out is None:
            raise ClimgenInputError("no reference samples were added")
        return out

    def reference(self) -> FieldSummary:
        """Summary of the whole reference set (a merge of its atoms)."""
        return self._merged(range(len(self._atoms)))

    def reference_halves(self, split: int = 0) -> tuple[FieldSummary, FieldSummary]:
        """Summaries of the two halves of the reference in noise-floor split ``split``."""
        atoms_a, atoms_b = self._split_atoms[split]
        return self._merged(atoms_a), self._merged(atoms_b)

    def _check_complete(self) -> None:
        if self._ref_seen != self.n_reference:
            raise ClimgenInputError(
                f"{self._ref_seen} reference samples were added but n_reference is "
                f"{self.n_reference}"
            )
        if self.generated is None:
            raise ClimgenInputError("no generated samples were added")

    def _distances(self, a: FieldSummary, b: FieldSummary) -> dict[str, float]:
        from climgen.metrics.spectra import spectral_errors

        ma, mb = a.moments.result(), b.moments.result()
        out: dict[str, float] = {}
        pa, pb = a.spectrum.mean(), b.spectrum.mean()
        k = b.spectrum.axis
        keep = np.isfinite(k) & (k > 0) & np.isfinite(pa) & np.isfinite(pb) & (pa > 0) & (pb > 0)
        errs = spectral_errors(pa[keep], pb[keep])
        out["spectrum_lsd"] = errs["log_spectral_distance"]
        out["spectrum_log_ratio"] = errs["mean_abs_log_ratio"]
        out["wasserstein1"] = a.values.wasserstein1(b.values)
        out["ks"] = a.values.ks(b.values)
        qs = self.quantiles
        q_err = a.values.quantile(qs) - b.values.quantile(qs)
        out["tail_error"] = float(np.abs(q_err).max() / mb["std"]) if mb["std"] > 0 else math.inf
        out["mean_difference"] = abs(ma["mean"] - mb["mean"]) / mb["std"]
        out["std_log_ratio"] = abs(math.log(ma["std"] / mb["std"]))
        out["skewness_difference"] = abs(ma["skewness"] - mb["skewness"])
        out["kurtosis_difference"] = abs(ma["kurtosis"] - mb["kurtosis"])
        if a.covariance is not None and b.covariance is not None:
            out["covariance_error"] = a.covariance.error(b.covariance, self.n_eofs)
        orders = self.structure_orders
        i2, i4 = orders.index(2), orders.index(4)
        sa, sb = a.structure.mean(), b.structure.mean()
        ok = (sa[i2] > 0) & (sb[i2] > 0)
        out["structure_s2"] = (
            float(np.mean(np.abs(np.log(sa[i2][ok] / sb[i2][ok])))) if ok.any() else 0.0
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            fa, fb = sa[i4] / sa[i2] ** 2, sb[i4] / sb[i2] ** 2
        ok = np.isfinite(fa) & np.isfinite(fb)
        out["flatness_difference"] = float(np.mean(np.abs(fa[ok] - fb[ok]))) if ok.any() else 0.0
        return out

    def distances(self) -> dict[str, tuple[float, float]]:
        """``{name: (distance, noise floor)}``; the floor is the mean over the splits of the
        distance between the two halves of the reference."""
        self._check_complete()
        ref = self.reference()
        values = self._distances(self.generated, ref)
        floors: dict[str, list[float]] = {k: [] for k in values}
        for atoms_a, atoms_b in self._split_atoms:
            d = self._distances(self._merged(atoms_a), self._merged(atoms_b))
            for k in floors:
                floors[k].append(d[k])
        return {k: (values[k], float(np.mean(floors[k]))) for k in values}

    def error_bounds(self) -> dict[str, float]:
        """Bounds on |binned − exact| for W1 and KS (:mod:`climgen.metrics.accumulators`),
        generated vs reference."""
        self._check_complete()
        ref = self.reference().values
        gen = self.generated.values
        return {"wasserstein1": gen.w1_bound(ref), "ks": gen.ks_bound(ref)}


def _contiguous(rows: np.ndarray) -> bool:
    return rows.size > 0 and rows[-1] - rows[0] + 1 == rows.size


def iter_chunks(data: Any, chunk_size: int, sample_axis: int = 0):
    """Chunks of ``chunk_size`` samples of an array, tensor, dask array or DataArray (each
    chunk loaded only when reached; a DataArray is sliced along its first dim)."""
    size = int(chunk_size)
    if size < 1:
        raise ClimgenInputError(f"chunk_size must be a positive integer, got {chunk_size}")
    if isinstance(data, xr.DataArray):
        dim = data.dims[sample_axis]
        n = data.sizes[dim]
        for start in range(0, n, size):
            yield data.isel({dim: slice(start, start + size)}).load()
        return
    n = data.shape[sample_axis]
    for start in range(0, n, size):
        chunk = data[start : start + size]
        if hasattr(chunk, "compute"):
            chunk = chunk.compute()
        yield chunk
