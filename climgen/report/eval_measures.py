"""Measurements of :func:`climgen.report.evaluate.evaluate`, each distance with its noise floor.

Shared by the in-memory evaluation (:mod:`climgen.report.evaluate`) and the streamed one
(:mod:`climgen.report.streaming_eval`): the block splits of the reference that define the noise
floor, the spectrum, distribution, covariance and structure-function distances, and the
progress bar. Definitions: docs/diagnostics.md.

Several candidate sets (a model, the training data, a surrogate) judged against one reference
share a :class:`ReferenceSide`: the noise floors and what is measured on the reference alone
(its spectrum, moments, structure functions, Minkowski curves, …) are computed once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.data.progress import progress
from climgen.report.eval_results import Distance, judged

__all__ = [
    "COVARIANCE_EOFS",
    "FLOOR_SPLITS",
    "STRUCTURE_ORDERS",
    "ReferenceSide",
    "block_splits",
    "coordinate_values",
    "distance_with_floor",
    "measure_covariance",
    "measure_distributions",
    "measure_spectrum",
    "measure_structure",
    "memoized",
    "progress_bar",
]

FLOOR_SPLITS = 5
STRUCTURE_ORDERS = (1, 2, 3, 4, 5, 6)
COVARIANCE_EOFS = 10


def block_splits(n: int, n_splits: int = FLOOR_SPLITS, n_blocks: int = 8) -> list[np.ndarray]:
    """Sample orders whose first and second halves are unions of contiguous blocks.

    The samples are cut into ``n_blocks`` contiguous blocks (fewer for small n); each order
    puts half of the blocks first. The first order is the plain first-half/second-half split;
    the others are drawn (seeded, so reports are reproducible) from the balanced block
    assignments. Contiguous blocks keep autocorrelated samples together, so the floor is not
    made too small by splitting neighbours apart.
    """
    from itertools import combinations

    n_blocks = min(n_blocks, n) - min(n_blocks, n) % 2
    blocks = np.array_split(np.arange(n), n_blocks)
    first = [c for c in combinations(range(n_blocks), n_blocks // 2) if 0 in c]
    plain = tuple(range(n_blocks // 2))
    others = [c for c in first if c != plain]
    rng = np.random.default_rng(0)
    chosen = [plain] + [others[i] for i in rng.permutation(len(others))[: n_splits - 1]]
    orders = []
    for group in chosen:
        rest = [b for b in range(n_blocks) if b not in group]
        orders.append(np.concatenate([blocks[b] for b in (*group, *rest)]))
    return orders


def memoized(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """``fn`` of one array, cached by the array's content (shape + hash of its bytes)."""
    memo: dict[tuple, Any] = {}

    def wrapper(a: np.ndarray):
        a = np.ascontiguousarray(a)
        key = (a.shape, a.dtype.str, hashlib.blake2b(a.data, digest_size=16).digest())
        if key not in memo:
            memo[key] = fn(a)
        return memo[key]

    return wrapper


@dataclass
class ReferenceSide:
    """What is measured on one variable's reference alone, kept for every candidate set
    judged against it.

    ``floors``: noise floors by distance name (:func:`distance_with_floor`); :meth:`value`:
    reference-only quantities by name (computed on first use); :meth:`memoized`: functions of
    one array (:func:`memoized`) that keep their results — on the reference and its halves —
    from one candidate to the next. ``key`` identifies the reference (and settings) it was
    measured on; ``reference_rows`` is what :func:`climgen.report.evaluate.evaluate` keeps of
    its reference rows. A side belongs to one reference: never share it between two.
    """

    key: Any = None
    floors: dict[str, float] = field(default_factory=dict)
    reference_rows: Any = None
    _values: dict[str, Any] = field(default_factory=dict, repr=False)
    _memos: dict[str, Callable] = field(default_factory=dict, repr=False)

    def value(self, name: str, compute: Callable[[], Any]) -> Any:
        if name not in self._values:
            self._values[name] = compute()
        return self._values[name]

    def memoized(self, name: str, fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
        if name not in self._memos:
            self._memos[name] = memoized(fn)
        return self._memos[name]


def distance_with_floor(
    name: str,
    fn: Callable[[np.ndarray, np.ndarray], float],
    gen: np.ndarray,
    ref: np.ndarray,
    factor: float,
    *,
    atol: float = 1e-9,
    floors: dict[str, float] | None = None,
) -> Distance:
    """d = fn(gen, ref) and its noise floor; values ≤ ``atol`` count as exactly 0, so that
    round-off (e.g. two zero-mean sets) is not judged against a round-off floor.

    The floor is the mean of :func:`climgen.metrics.noise_floor` ("halves") over
    :func:`block_splits` orders of the reference: one split alone is a single noisy draw
    and makes a faithful model fail by chance too often. ``floors``: a cache by distance
    name, filled on first use, so that several candidate sets (a model, the training data,
    a surrogate) judged against the same reference share the floors.
    """
    from climgen.metrics import noise_floor

    value = float(fn(gen, ref))
    if floors is not None and name in floors:
        return judged(name, value, floors[name], factor, atol=atol)
    floor = float(
        np.mean(
            [
                float(noise_floor(fn, ref[order], sample_axis=0, method="halves"))
                for order in block_splits(ref.shape[0])
            ]
        )
    )
    if floors is not None:
        floors[name] = floor
    return judged(name, value, floor, factor, atol=atol)


def _valid_bins(k: np.ndarray, *powers: np.ndarray) -> np.ndarray:
    """Bins with k > 0 whose power is finite in every sample and positive on average."""
    keep = np.isfinite(k) & (k > 0)
    for p in powers:
        keep &= np.isfinite(p).all(axis=0) & (np.nan_to_num(p).mean(axis=0) > 0)
    return keep


def measure_spectrum(
    gen: xr.DataArray, ref: xr.DataArray, factor: float, side: ReferenceSide | None = None
):
    from climgen.metrics import field_spectrum, spectral_errors

    side = side or ReferenceSide()
    floors = side.floors
    sg, sr = field_spectrum(gen), side.value("spectrum", lambda: field_spectrum(ref))
    spec_dim = sr.dims[-1]
    k = np.asarray(sr[spec_dim].values, float)
    pg = np.asarray(sg.values, float).reshape(-1, k.size)
    pr = np.asarray(sr.values, float).reshape(-1, k.size)
    keep = _valid_bins(k, pg, pr)
    k, pg, pr = k[keep], pg[:, keep], pr[:, keep]

    def lsd(a, b):
        return spectral_errors(a.mean(0), b.mean(0))["log_spectral_distance"]

    def mean_log(a, b):
        return spectral_errors(a.mean(0), b.mean(0))["mean_abs_log_ratio"]

    distances = {
        "spectrum_lsd": distance_with_floor("spectrum_lsd", lsd, pg, pr, factor, floors=floors),
        "spectrum_log_ratio": distance_with_floor(
            "spectrum_log_ratio", mean_log, pg, pr, factor, floors=floors
        ),
    }
    mean_g, mean_r = pg.mean(0), pr.mean(0)
    half = pr.shape[0] // 2
    eff = float(spectral_errors(mean_g, mean_r, k=k)["effective_resolution"])
    spectrum = {
        "kind": str(sr.attrs.get("spectrum_kind", spec_dim)),
        "dim": str(spec_dim),
        "k_units": str(sr.attrs.get("k_units", "")),
        "power_units": str(sr.attrs.get("units", "")),
        "k": k,
        "generated": mean_g,
        "reference": mean_r,
        "reference_half_a": pr[:half].mean(0),
        "reference_half_b": pr[half:].mean(0),
        # First k from which P_gen/P_ref stays below 0.5 (NaN → null: never).
        "effective_resolution": eff,
    }
    return distances, spectrum


def measure_distributions(
    gen: np.ndarray,
    ref: np.ndarray,
    w: np.ndarray,
    factor: float,
    side: ReferenceSide | None = None,
):
    from climgen.metrics import ks_statistic, moments, quantile_errors, tail_error, wasserstein1

    side = side or ReferenceSide()
    floors = side.floors

    def w1(a, b):
        return wasserstein1(a, b, weights_a=w, weights_b=w)

    def ks(a, b):
        return ks_statistic(a, b, weights_a=w, weights_b=w)

    def tail(a, b):
        return tail_error(a, b, weights_gen=w, weights_ref=w)

    one = side.memoized("moments", lambda a: moments(a, weights=w))

    def mom(a, b):
        # Four distances and their floors share the moments of the same few sets.
        return one(a), one(b)

    def mean_diff(a, b):
        ma, mb = mom(a, b)
        return abs(ma["mean"] - mb["mean"]) / mb["std"]

    def std_ratio(a, b):
        ma, mb = mom(a, b)
        return abs(math.log(ma["std"] / mb["std"]))

    def skew_diff(a, b):
        ma, mb = mom(a, b)
        return abs(ma["skewness"] - mb["skewness"])

    def kurt_diff(a, b):
        ma, mb = mom(a, b)
        return abs(ma["kurtosis"] - mb["kurtosis"])

    fns = {
        "wasserstein1": w1,
        "ks": ks,
        "tail_error": tail,
        "mean_difference": mean_diff,
        "std_log_ratio": std_ratio,
        "skewness_difference": skew_diff,
        "kurtosis_difference": kurt_diff,
    }
    m_gen, m_ref = mom(gen, ref)
    # W1 is in field units: its round-off tolerance scales with the reference spread.
    atol = {"wasserstein1": 1e-9 * max(float(m_ref["std"]), 1e-300)}
    distances = {
        name: distance_with_floor(
            name, fn, gen, ref, factor, atol=atol.get(name, 1e-9), floors=floors
        )
        for name, fn in fns.items()
    }
    q_err = quantile_errors(gen, ref, weights_gen=w, weights_ref=w)
    return (
        distances,
        {"generated": m_gen, "reference": m_ref},
        {f"{float(q):g}": float(v) for q, v in q_err.items()},
    )


def measure_covariance(
    gen: np.ndarray,
    ref: np.ndarray,
    w: np.ndarray,
    factor: float,
    side: ReferenceSide | None = None,
):
    from climgen.metrics import covariance_error

    floors = (side or ReferenceSide()).floors

    # Leading EOFs rather than the full D × D covariance: with n ≪ D samples the full
    # matrix is mostly sampling noise, while the large-scale covariance is well estimated.
    def cov(a, b):
        return covariance_error(a, b, n_eofs=COVARIANCE_EOFS, weights=w)

    return {
        "covariance_error": distance_with_floor(
            "covariance_error", cov, gen, ref, factor, floors=floors
        )
    }


def measure_structure(
    gen: np.ndarray,
    ref: np.ndarray,
    grid: grids.GridInfo,
    factor: float,
    side: ReferenceSide | None = None,
):
    from climgen.metrics import structure_functions
    from climgen.metrics.structure import report_lags

    side = side or ReferenceSide()
    floors = side.floors

    periodic = bool(grid.periodic_x)
    lag_list = report_lags(gen.shape[-1], periodic)
    i2 = STRUCTURE_ORDERS.index(2)
    i4 = STRUCTURE_ORDERS.index(4)

    def structure(a):
        # Both structure distances and their floors reuse the same sets of fields.
        lags, s = structure_functions(
            a, axis=-1, orders=STRUCTURE_ORDERS, lags=lag_list, periodic=periodic
        )
        return np.asarray(lags, float), np.asarray(s, float)

    sf = side.memoized("structure functions", structure)

    def flat(s):
        with np.errstate(divide="ignore", invalid="ignore"):
            return s[i4] / s[i2] ** 2

    def s2_log(a, b):
        _, sa = sf(a)
        _, sb = sf(b)
        ok = (sa[i2] > 0) & (sb[i2] > 0)
        return float(np.mean(np.abs(np.log(sa[i2][ok] / sb[i2][ok])))) if ok.any() else 0.0

    def flat_diff(a, b):
        fa, fb = flat(sf(a)[1]), flat(sf(b)[1])
        ok = np.isfinite(fa) & np.isfinite(fb)
        return float(np.mean(np.abs(fa[ok] - fb[ok]))) if ok.any() else 0.0

    distances = {
        "structure_s2": distance_with_floor(
            "structure_s2", s2_log, gen, ref, factor, floors=floors
        ),
        "flatness_difference": distance_with_floor(
            "flatness_difference", flat_diff, gen, ref, factor, floors=floors
        ),
    }
    lags, s_gen = sf(gen)
    _, s_ref = sf(ref)
    structure = {
        "lags": lags * grid.dx,
        "lag_units": "",
        "orders": list(STRUCTURE_ORDERS),
        "generated": s_gen,
        "reference": s_ref,
        "flatness_generated": flat(s_gen),
        "flatness_reference": flat(s_ref),
    }
    return distances, structure


def coordinate_values(da: xr.DataArray, dim: str, n: int) -> np.ndarray:
    if dim in da.coords:
        return np.asarray(da[dim].values, float)
    return np.arange(n, dtype=float)


def progress_bar(total: int, enabled: bool):
    # disable=None lets tqdm switch itself off when stderr is not a terminal.
    return progress(total=total, desc="evaluate", unit="step", enabled=enabled)
