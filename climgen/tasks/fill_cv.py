"""Cross-validation of gap fillers: hide observed cells, fill, score only the hidden cells.

The honest score of a gap filler (Kadow et al. 2020; Cowtan & Way 2014): on complete
(simulated) fields under a real coverage mask, or on real observations hiding the cells
observed now but not in an earlier month. Scores are cos-latitude area-weighted.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid, to_canonical
from climgen.errors import ClimgenInputError
from climgen.metrics import bias, crps_fair, mae, rmse
from climgen.tasks.emulate import as_dataset
from climgen.tasks.fill import Infiller, _as_mask, _pick_variable
from climgen.tasks.fill_masks import pair_masks
from climgen.tasks.fill_methods import crps_gaussian

__all__ = ["cross_validate"]


def cross_validate(
    method,
    truth,
    mask,
    *,
    members: int = 16,
    variable: str | None = None,
    time_dim: str = "time",
    seed: int = 0,
    **options,
) -> dict:
    """Score a method on cells it could not see: hide them with ``mask``, fill, compare.

    ``truth``: complete fields (simulation), or real observations with NaN gaps. The input
    given to the method is ``truth`` where ``mask == 1``; scores use only the *hidden* cells,
    ``isfinite(truth) & (mask == 0)``. On real observations pass an earlier month's coverage
    as ``mask``: the cells observed now but not then are hidden and scored.
    ``mask``: DataArray or netCDF path, broadcast or paired by time
    (:func:`~climgen.tasks.fill_masks.pair_masks`). ``method``: a name (baselines) or a
    fitted :class:`Infiller`.

    Returns a dict: ``rmse``, ``mae``, ``bias`` (filled − truth), ``corr`` (area-weighted
    Pearson correlation over hidden cells) in field units, ``n_hidden``; for methods with an
    uncertainty ``crps`` (fair CRPS of the members, or the Gaussian CRPS for kriging) and
    ``spread_skill`` (√(mean spread²) / RMSE, with the finite-ensemble factor √((M+1)/M) for
    ensembles: ≈ 1 when calibrated). All scores are cos-latitude area-weighted.
    """
    infiller = (
        method
        if isinstance(method, Infiller)
        else Infiller(method, variable=variable, time_dim=time_dim, **options)
    )
    ds = as_dataset(truth)
    var = _pick_variable(ds, variable or infiller.variable, time_dim)
    da = ds[var]
    paired = pair_masks(_as_mask(mask), da, time_dim=time_dim)
    hidden = np.isfinite(da) & (paired == 0)
    gappy = da.where(paired == 1)
    filled = infiller.fill(gappy.to_dataset(name=var), members=members, seed=seed)
    canon_truth, _ = to_canonical(da)
    canon_hidden, _ = to_canonical(hidden.transpose(*da.dims))
    canon_fill, _ = to_canonical(filled[var].transpose(*da.dims))
    weights = np.broadcast_to(_area_weights(canon_truth), canon_truth.shape) * np.asarray(
        canon_hidden.values
    )
    n_hidden = int(np.asarray(canon_hidden.values).sum())
    if n_hidden == 0:
        raise ClimgenInputError(
            "the mask hides no observed cell of the truth: nothing to score (is the mask the "
            "coverage of an earlier, sparser month?)"
        )
    t = np.nan_to_num(np.asarray(canon_truth.values, dtype=np.float64))
    f = np.asarray(canon_fill.values, dtype=np.float64)
    f = np.where(weights > 0, f, t)
    scores = {
        "method": infiller.method,
        "n_hidden": n_hidden,
        "rmse": float(rmse(f, t, weights=weights)),
        "mae": float(mae(f, t, weights=weights)),
        "bias": float(bias(f, t, weights=weights)),
        "corr": _weighted_corr(f, t, weights),
    }
    spread_name, members_name = f"{var}_spread", f"{var}_members"
    if members_name in filled:
        ens, _ = to_canonical(filled[members_name].transpose("member", *da.dims))
        e = np.where(weights[None] > 0, np.asarray(ens.values, dtype=np.float64), t[None])
        m = e.shape[0]
        if m >= 2:
            scores["crps"] = float(crps_fair(e, t, weights=weights))
            var_mean = float((e.var(axis=0, ddof=1) * weights).sum() / weights.sum())
            scores["spread_skill"] = float(
                np.sqrt((m + 1) / m) * np.sqrt(var_mean) / _weighted_rmse(e.mean(0), t, weights)
            )
    elif np.isfinite(filled[spread_name].values).all():
        sd, _ = to_canonical(filled[spread_name].transpose(*da.dims))
        s = np.asarray(sd.values, dtype=np.float64)
        crps = crps_gaussian(f, s, t)
        scores["crps"] = float((crps * weights).sum() / weights.sum())
        var_mean = float((s**2 * weights).sum() / weights.sum())
        scores["spread_skill"] = float(np.sqrt(var_mean) / scores["rmse"])
    return scores


def _area_weights(canon: xr.DataArray) -> np.ndarray:
    grid = detect_grid(canon)
    if grid.kind == "latlon" and grid.y_dim in canon.coords:
        lat = np.asarray(canon[grid.y_dim].values, dtype=np.float64)
        return np.clip(np.cos(np.deg2rad(lat)), 0, None)[:, None] * np.ones(canon.shape[-1])
    return np.ones(canon.shape[-2:])


def _weighted_rmse(f, t, w) -> float:
    return float(np.sqrt(((f - t) ** 2 * w).sum() / w.sum()))


def _weighted_corr(f, t, w) -> float:
    wsum = w.sum()
    fa, ta = f - (f * w).sum() / wsum, t - (t * w).sum() / wsum
    denom = np.sqrt((fa**2 * w).sum() * (ta**2 * w).sum())
    return float((fa * ta * w).sum() / denom) if denom > 0 else float("nan")
