"""Structure of filled fields inside the gaps: spectra and Minkowski functionals on hidden cells.

A gap filler's RMSE rewards the conditional mean, which is too smooth where the gaps are
large: it lacks the small scales and the fronts and blobs of a real field there. An ensemble
member should not be: a draw from p(x | observed) has, inside the gaps, the spectrum and the
morphology of the truth. This module measures that where the filler could not see:

- **spectrum**: zonal (along-x) spectra of whole rows of the filled field (observed cells as
  they are, hidden cells filled), averaged over the rows of each latitude band with weights
  cos φ · h_y (h_y: the row's hidden fraction, so rows count as much as they are gap), in the
  bands that are mostly hidden; distance: the log-spectral distance of the time-mean band
  spectra (:func:`climgen.metrics.log_spectral_distance`), averaged over those bands. Whole
  rows, not rows windowed by the gaps: a window's sharp edges put the same leakage into
  every spectrum and hide a missing small-scale power (measured on 24 Held–Suarez days under
  the HadCRUT4 masks: at zonal wavenumbers ≥ 22 between 30° S and 30° N, OI's mean had
  0.86–1.0 of the truth's power windowed, 0.45–0.84 on whole rows; 0.93× the floor windowed
  with one split, 1.13× on whole rows with four).
- **Minkowski functionals** V0, V1, V2 of the excursion sets {f > ν} counted inside the
  hidden cells only (:func:`climgen.metrics.minkowski_functionals` with ``region=``), at
  thresholds ν at the area-weighted quantiles of the truth *within the gaps*; distance
  :func:`climgen.metrics.minkowski_curve_distance`.

Noise floor: the same distances between the two contiguous halves of the truth
(:func:`climgen.metrics.noise_floor`'s "halves"; whole fields, Minkowski counts under the cells
hidden in both halves day by day), averaged over ``n_splits`` rotations of the split point
(one split's boundary-length floor varied 4× between 16-field GRF samples). A member
matches the truth's structure in the gaps where distance ≤ 2 × floor; a mean estimate is too
smooth there. The floor compares two truths that differ on the observed cells too, so it is
generous by the rows' observed share (the band selection keeps rows mostly hidden).

References: Schmalzing & Buchert (1997), ApJ 482, L1 (Minkowski functionals); Durran et al.
(2017), MWR 145, 3901 (1-D spectra); Kadow et al. (2020), Nat. Geosci. 13, 408 (generative
infilling of HadCRUT4 gaps); Efron & Tibshirani (1993), ch. 6 (split-sample noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from climgen.data import grids
from climgen.errors import ClimgenInputError
from climgen.metrics.band_spectra import _band_index, default_band_edges
from climgen.metrics.morphology import (
    DEFAULT_THRESHOLD_QUANTILES,
    minkowski_curve_distance,
    minkowski_functionals,
    reference_thresholds,
)
from climgen.metrics.spectra import log_spectral_distance, row_power

__all__ = ["gap_structure", "gap_structure_distances", "GAP_STRUCTURE_NAMES"]

#: The distances :func:`gap_structure` reports, in order.
GAP_STRUCTURE_NAMES = ("spectrum", "area_fraction", "boundary_length", "euler_characteristic")
_MINKOWSKI = GAP_STRUCTURE_NAMES[1:]


def _values(x: Any, name: str, like: Any = None) -> np.ndarray:
    """(samples, …, ny, nx) numpy values in canonical orientation; plain arrays shaped like a
    DataArray ``like`` (the truth) are taken in its layout and turned with it."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(like, xr.DataArray) and not isinstance(x, xr.DataArray):
        if np.shape(x) == like.shape:
            x = like.copy(data=np.asarray(x))
    if isinstance(x, xr.DataArray):
        x = grids.to_canonical(x)[0].values if x.ndim >= 2 else x.values
    a = np.asarray(x)
    if a.ndim < 3:
        raise ClimgenInputError(f"{name} must be (samples, ..., ny, nx), got shape {a.shape}")
    return a


def _geometry(truth: Any, shape) -> dict:
    """Row coordinate and cos φ weights, spacings and periodicity from the truth's grid
    (DataArray), or defaults for plain arrays (row index, unit weights, x periodic)."""
    ny = shape[-2]
    if not isinstance(truth, xr.DataArray):
        y = np.arange(ny, dtype=float)
        return dict(y=y, wy=np.ones(ny), latlon=False, dy=1.0, dx=1.0, periodic=(False, True))
    canon, _ = grids.to_canonical(truth)
    g = grids.detect_grid(canon)
    latlon = g.kind == "latlon"
    y = np.asarray(canon[g.y_dim].values, dtype=float) if g.y_dim in canon.coords else None
    y = np.arange(ny, dtype=float) if y is None else y
    wy = np.clip(np.cos(np.deg2rad(y)), 0.0, None) if latlon else np.ones(ny)
    periodic = (bool(g.periodic_y), bool(g.periodic_x))
    return dict(y=y, wy=wy, latlon=latlon, dy=g.dy, dx=g.dx, periodic=periodic)


def _band_power(x: np.ndarray, geo: dict, bands) -> np.ndarray:
    """Time-mean zonal spectra of the rows of ``x`` (samples, ny, nx), averaged over the rows
    of each band in ``bands`` with the row weights cos φ · h_y: (len(bands), nx//2 + 1)."""
    p = row_power(torch.as_tensor(x, dtype=torch.float64)).mean(0).numpy()  # (ny, nk)
    out = []
    for b in bands:
        w = geo["row_weights"] * (geo["band_of_row"] == b)
        out.append((w[:, None] * p).sum(0) / w.sum())
    return np.asarray(out)


def gap_structure_distances(
    estimate: Any,
    truth: Any,
    hidden: Any,
    *,
    thresholds: Any,
    bands: Any,
    geometry: dict,
) -> dict[str, float]:
    """The four distances of :func:`gap_structure` between ``estimate`` and ``truth`` (numpy
    (samples, ny, nx), complete fields) with the Minkowski functionals counted on ``hidden``,
    at fixed ``thresholds`` and latitude ``bands`` (indices into the default 30° bands of
    :func:`climgen.metrics.default_band_edges`); ``geometry`` from the grid and the gaps.
    Mostly for :func:`gap_structure`, which chooses these and fills observed cells.
    """
    t = np.nan_to_num(np.asarray(truth, dtype=float))
    e = np.nan_to_num(np.asarray(estimate, dtype=float))
    pe, pt = _band_power(e, geometry, bands), _band_power(t, geometry, bands)
    k = np.arange(pt.shape[-1])
    lsd = []
    for b in range(len(bands)):
        ok = (k > 0) & (pe[b] > 0) & (pt[b] > 0)
        if ok.any():
            lsd.append(log_spectral_distance(pe[b][ok], pt[b][ok]))
    out = {"spectrum": float(np.mean(lsd)) if lsd else float("inf")}
    kw = dict(
        periodic=geometry["periodic"],
        dy=geometry["dy"],
        dx=geometry["dx"],
        weights=np.broadcast_to(geometry["wy"][:, None], e.shape[-2:]),
        region=np.asarray(hidden, dtype=bool),
    )
    ce = minkowski_functionals(e, thresholds, **kw)
    ct = minkowski_functionals(t, thresholds, **kw)
    for name in _MINKOWSKI:
        out[name] = minkowski_curve_distance(getattr(ce, name), getattr(ct, name))
    return out


def _floor(t: np.ndarray, h: np.ndarray, n_splits: int, kw: dict) -> dict[str, float]:
    """Mean over ``n_splits`` rotations of the split point of the distances between the two
    contiguous (cyclic) halves of the truth, under the cells hidden in both halves."""
    n, half = t.shape[0], t.shape[0] // 2
    if int(n_splits) < 1:
        raise ClimgenInputError(f"n_splits must be a positive integer, got {n_splits}")
    starts = sorted({int(round(i * half / int(n_splits))) for i in range(int(n_splits))})
    out = []
    for s in starts:
        a, b = (s + np.arange(half)) % n, (s + half + np.arange(half)) % n
        out.append(gap_structure_distances(t[a], t[b], h[a] & h[b], **kw))
    return {name: float(np.mean([d[name] for d in out])) for name in GAP_STRUCTURE_NAMES}


def gap_structure(
    estimates: Any,
    truth: Any,
    hidden: Any,
    *,
    quantiles=DEFAULT_THRESHOLD_QUANTILES,
    min_hidden: float = 0.5,
    n_splits: int = 4,
) -> dict:
    r"""Spectra and Minkowski functionals of filled fields inside the gaps, against the truth's.

    ``estimates``: one field set or a mapping label → field set, each shaped like ``truth``
    (samples, ny, nx): a member, an ensemble mean, a conditional mean; ``truth``: the complete
    fields (DataArray: its lat/lon grid gives cos φ weights, 30° latitude bands and the
    periodic longitude; arrays: row index, 4 bands of rows, x periodic); ``hidden``: boolean,
    the cells the filler could not see (same shape). Plain arrays given with a DataArray truth
    are in the truth's layout. Distances (0 for the same structure):

    .. math::
        d_{spec} = \operatorname{mean}_{b:\,h_b ≥ h_{min}}
          \Big(\operatorname{mean}_{k>0}\big(\log_{10}\bar P^{est}_b(k)
          - \log_{10}\bar P^{truth}_b(k)\big)^2\Big)^{1/2},\qquad
        d_i = \frac{\operatorname{mean}_ν |V_i^{est}(ν) - V_i^{truth}(ν)|}
                   {\max_ν |V_i^{truth}(ν)|}

    with :math:`\bar P_b` the time-mean zonal spectrum of whole rows in latitude band b,
    rows weighted by cos φ · h_y (h_y the row's hidden fraction), over the bands whose
    (cos φ-weighted) hidden fraction h_b ≥ ``min_hidden`` (default 0.5: mostly gap); V_i the
    Minkowski functionals counted on the hidden cells at ν = the ``quantiles`` of the truth
    within the gaps. Observed cells of the estimates are taken from the truth (they are not
    judged here). The floor of each is the same distance between the contiguous halves of the
    truth, averaged over ``n_splits`` rotations of the split point (module docstring).

    Returns ``{"floor": {name: f}, "distances": {label: {name: d}}, "ratios": {label: {name:
    d / f}}, "bands": [(lower, upper), …], "n_samples": n}`` with names
    :data:`GAP_STRUCTURE_NAMES`; a single unlabelled estimate is labelled ``"estimate"``.
    Needs ≥ 4 samples (two halves of ≥ 2). References: see the module docstring.
    """
    if not isinstance(estimates, Mapping):
        estimates = {"estimate": estimates}
    t = _values(truth, "truth")
    h = _values(hidden, "hidden", truth).astype(bool)
    if h.shape != t.shape:
        raise ClimgenInputError(f"hidden has shape {h.shape}, truth {t.shape}: they must match")
    t, h = t.reshape(-1, *t.shape[-2:]), h.reshape(-1, *t.shape[-2:])
    n = t.shape[0]
    if n < 4:
        raise ClimgenInputError(
            f"gap_structure needs at least 4 fields for the truth's noise floor, got {n}"
        )
    if not np.isfinite(t[h]).all():
        raise ClimgenInputError("truth is not finite on every hidden cell: cannot score them")
    geo = _geometry(truth, t.shape)
    # Bands that are mostly gap: the cos φ-weighted hidden fraction per band.
    edges = default_band_edges(geo["y"], geo["latlon"])
    geo["band_of_row"] = _band_index(geo["y"], edges)
    row_frac = h.mean(axis=(0, 2))
    geo["row_weights"] = geo["wy"] * row_frac
    bands = []
    for b in range(len(edges) - 1):
        w = geo["wy"] * (geo["band_of_row"] == b)
        if w.sum() > 0 and float((row_frac * w).sum() / w.sum()) >= min_hidden:
            bands.append(b)
    if not bands:
        raise ClimgenInputError(
            f"no latitude band is at least {min_hidden:g} hidden: lower min_hidden "
            "(the gaps are too small for a spectrum inside them)"
        )
    wgt = np.broadcast_to(geo["wy"][:, None], t.shape)  # cos φ: thresholds by area
    thresholds = reference_thresholds(t[h], quantiles, weights=wgt[h])
    kw = dict(thresholds=thresholds, bands=bands, geometry=geo)
    floor = _floor(t, h, n_splits, kw)
    distances, ratios = {}, {}
    for label, est in estimates.items():
        e = _values(est, str(label), truth)
        if e.shape[-2:] != t.shape[-2:] or e.size != t.size:
            raise ClimgenInputError(
                f"estimate {label!r} has shape {e.shape}, the truth {t.shape}: they must match"
            )
        e = np.where(h, e.reshape(t.shape), t)  # observed cells: the truth's, as in a fill
        d = gap_structure_distances(e, t, h, **kw)
        distances[str(label)] = d
        ratios[str(label)] = {
            k: (d[k] / floor[k] if floor[k] > 0 else (0.0 if d[k] == 0 else float("inf")))
            for k in GAP_STRUCTURE_NAMES
        }
    return {
        "floor": floor,
        "distances": distances,
        "ratios": ratios,
        "bands": [[float(edges[b]), float(edges[b + 1])] for b in bands],
        "n_samples": int(n),
    }
