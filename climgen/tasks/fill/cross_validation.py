"""Cross-validation of gap fillers: hide observed cells, fill, score only the hidden cells.

The honest score of a gap filler (Kadow et al. 2020; Cowtan & Way 2014): on complete
(simulated) fields under a real coverage mask, or on real observations hiding the cells
observed now but not in an earlier month. Scores are cos-latitude area-weighted.

- :func:`cross_validate` — the scores of one method;
- :func:`calibrate_spread` — fit a cVAE ensemble's spread inflation on a validation split;
- :func:`cross_validation_report` — several methods side by side: scores (``scores.json``)
  and the report page (:func:`climgen.report.fill_page.write_fill_page`);
- :func:`filled_report` — the page of a plain fill (no truth): observed, filled, spread,
  spectra.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import as_dataset, climgen_version
from climgen.errors import ClimgenInputError
from climgen.metrics import GAP_STRUCTURE_NAMES, bias, crps_fair, gap_structure, mae, rmse
from climgen.tasks._common import utc_stamp
from climgen.tasks.fill.baselines import crps_gaussian
from climgen.tasks.fill.infiller import Infiller, _pick_variable
from climgen.tasks.fill.masks import pair_masks
from climgen.tasks.fill.run_dir import as_mask, save_settings

__all__ = ["cross_validate", "calibrate_spread", "cross_validation_report", "filled_report"]


def _as_infiller(method, variable, time_dim, options) -> Infiller:
    if isinstance(method, Infiller):
        return method
    return Infiller(method, variable=variable, time_dim=time_dim, **options)


def _hide(truth, mask, infiller, variable, time_dim):
    """(DataArray truth, hidden cells, gappy input) of ``truth`` under ``mask``."""
    ds = as_dataset(truth)
    var = _pick_variable(ds, variable or infiller.variable, time_dim)
    da = ds[var]
    paired = pair_masks(as_mask(mask), da, time_dim=time_dim)
    hidden = np.isfinite(da) & (paired == 0)
    if int(hidden.sum()) == 0:
        raise ClimgenInputError(
            "the mask hides no observed cell of the truth: nothing to score (is the mask the "
            "coverage of an earlier, sparser month?)"
        )
    return da, hidden, da.where(paired == 1)


def cross_validate(
    method,
    truth,
    mask,
    *,
    members: int = 16,
    variable: str | None = None,
    time_dim: str = "time",
    seed: int = 0,
    return_filled: bool = False,
    **options,
):
    """Score a method on cells it could not see: hide them with ``mask``, fill, compare.

    ``truth``: complete fields (simulation), or real observations with NaN gaps. The input
    given to the method is ``truth`` where ``mask == 1``; scores use only the *hidden* cells,
    ``isfinite(truth) & (mask == 0)``. On real observations pass an earlier month's coverage
    as ``mask``: the cells observed now but not then are hidden and scored.
    ``mask``: DataArray or netCDF path, broadcast or paired by time
    (:func:`~climgen.tasks.fill.masks.pair_masks`). ``method``: a name (baselines) or a
    fitted :class:`Infiller`.

    Returns a dict: ``rmse``, ``mae``, ``bias`` (filled − truth), ``corr`` (area-weighted
    Pearson correlation over hidden cells) in field units, ``n_hidden``; for methods with an
    uncertainty ``crps`` (fair CRPS of the members, or the Gaussian CRPS for kriging) and
    ``spread_skill`` (√(mean spread²) / RMSE, with the finite-ensemble factor √((M+1)/M) for
    ensembles: ≈ 1 when calibrated). All scores are cos-latitude area-weighted.
    ``gaps``: the structure inside the gaps (:func:`climgen.metrics.gap_structure`): the
    truth's noise floor and distance ÷ floor of the spectrum and Minkowski functionals on the
    hidden cells for the ``mean`` (the filled field) and, for ensembles, the ``members``
    (median over members; ``members_max`` the largest); ≤ 2 matches the truth's structure.
    With fewer than 4 fields (no floor) it holds ``skipped`` and the reason.
    ``return_filled=True`` returns ``(scores, filled Dataset)``.
    """
    infiller = _as_infiller(method, variable, time_dim, options)
    da, hidden, gappy = _hide(truth, mask, infiller, variable, time_dim)
    var = str(da.name)
    filled = infiller.fill(gappy.to_dataset(name=var), members=members, seed=seed)
    scores = _score(filled, da, hidden, var, infiller.method)
    return (scores, filled) if return_filled else scores


def _score(filled: xr.Dataset, da: xr.DataArray, hidden: xr.DataArray, var: str, method) -> dict:
    canon_truth, _ = to_canonical(da)
    canon_hidden, _ = to_canonical(hidden.transpose(*da.dims))
    canon_fill, _ = to_canonical(filled[var].transpose(*da.dims))
    weights = np.broadcast_to(_area_weights(canon_truth), canon_truth.shape) * np.asarray(
        canon_hidden.values
    )
    n_hidden = int(np.asarray(canon_hidden.values).sum())
    t = np.nan_to_num(np.asarray(canon_truth.values, dtype=np.float64))
    f = np.asarray(canon_fill.values, dtype=np.float64)
    f = np.where(weights > 0, f, t)
    scores = {
        "method": method,
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
    members = e if members_name in filled and e.shape[0] >= 2 else None
    scores["gaps"] = _gap_scores(f, members, canon_truth, np.asarray(canon_hidden.values))
    return scores


def _gap_scores(mean, members, truth: xr.DataArray, hidden: np.ndarray) -> dict:
    """Structure inside the gaps of the mean and (median, max over) the members."""
    estimates = {"mean": mean}
    if members is not None:
        estimates.update({f"member {i}": m for i, m in enumerate(members)})
    try:
        g = gap_structure(estimates, truth, hidden)
    except ClimgenInputError as exc:
        return {"skipped": str(exc)}
    out = {"floor": g["floor"], "bands": g["bands"], "mean": g["ratios"]["mean"]}
    if members is not None:
        r = np.array(
            [
                [g["ratios"][f"member {i}"][k] for k in GAP_STRUCTURE_NAMES]
                for i in range(len(members))
            ]
        )
        out["members"] = dict(zip(GAP_STRUCTURE_NAMES, np.median(r, 0).tolist()))
        out["members_max"] = dict(zip(GAP_STRUCTURE_NAMES, r.max(0).tolist()))
    return out


def calibrate_spread(
    infiller: Infiller,
    truth,
    mask,
    *,
    members: int = 16,
    variable: str | None = None,
    time_dim: str = "time",
    seed: int = 0,
) -> float:
    """Fit an ensemble infiller's spread inflation α on validation fields; returns α.

    The raw ensemble (α = 1) fills ``truth`` under ``mask``; on the hidden cells, with
    area weights w, α is chosen so that the spread/skill ratio is 1:

        α = √( mean_w[(x̄ − y)²] / ((M+1)/M · mean_w[s²]) )

    (s² the unbiased member variance, x̄ the ensemble mean; Fortin et al. 2014 for the
    finite-ensemble factor). Inflation keeps the mean and scales every member's deviation
    from it (``Infiller(spread_inflation=α)``), so the RMSE is unchanged and the CRPS drops
    when the raw ensemble was under- (α > 1) or over-dispersed (α < 1). The fitted α is set on
    ``infiller`` and saved in its run directory. Use fields *not* used for the final scores.
    """
    if not isinstance(infiller, Infiller) or not infiller.is_ensemble:
        raise ClimgenInputError(
            "calibrate_spread needs a fitted ensemble Infiller (cvae, or partialconv with "
            "reconstruction='crps')"
        )
    if members < 2:
        raise ClimgenInputError(f"calibrate_spread needs members ≥ 2, got {members}")
    previous, infiller.spread_inflation = infiller.spread_inflation, 1.0
    try:
        da, hidden, gappy = _hide(truth, mask, infiller, variable, time_dim)
        var = str(da.name)
        filled = infiller.fill(gappy.to_dataset(name=var), members=members, seed=seed)
    except Exception:
        infiller.spread_inflation = previous
        raise
    canon_truth, _ = to_canonical(da)
    canon_hidden, _ = to_canonical(hidden.transpose(*da.dims))
    ens, _ = to_canonical(filled[f"{var}_members"].transpose("member", *da.dims))
    w = np.broadcast_to(_area_weights(canon_truth), canon_truth.shape) * np.asarray(
        canon_hidden.values
    )
    t = np.nan_to_num(np.asarray(canon_truth.values, dtype=np.float64))
    e = np.asarray(ens.values, dtype=np.float64)
    mse = float((((e.mean(0) - t) ** 2) * w).sum() / w.sum())
    var_mean = float((e.var(axis=0, ddof=1) * w).sum() / w.sum())
    if not var_mean > 0:
        infiller.spread_inflation = previous
        raise ClimgenInputError("the ensemble has no spread on the hidden cells: cannot inflate")
    alpha = float(np.sqrt(mse / ((members + 1) / members * var_mean)))
    infiller.spread_inflation = alpha
    if infiller.run_dir is not None and (infiller.normalizer or infiller.gaussian) is not None:
        save_settings(infiller)
    return alpha


def cross_validation_report(
    methods,
    truth,
    mask,
    out_dir,
    *,
    members: int = 16,
    variable: str | None = None,
    time_dim: str = "time",
    seed: int = 0,
    index: int = 0,
    title: str = "climgen gap-filling report",
    notes: tuple[str, ...] = (),
    provenance: dict | None = None,
) -> dict:
    """Cross-validate several methods on the same fields and mask; write scores and a page.

    ``methods``: names (baselines) or fitted :class:`Infiller` objects, or a dict label →
    either. Each is scored with :func:`cross_validate`; ``out_dir`` gets ``scores.json``
    (label → scores) and ``index.html`` with maps of time step ``index``, the score table,
    error by latitude and zonal spectra (:func:`climgen.report.fill_page.write_fill_page`).
    Returns the scores dict.
    """
    from climgen.report.fill_page import write_fill_page

    if not isinstance(methods, dict):
        methods = {(m.method if isinstance(m, Infiller) else str(m)): m for m in methods}
    if not methods:
        raise ClimgenInputError("cross_validation_report needs at least one method")
    results, scores, da = {}, {}, None
    for label, method in methods.items():
        infiller = _as_infiller(method, variable, time_dim, {})
        s, filled = cross_validate(
            infiller,
            truth,
            mask,
            members=members,
            variable=variable,
            time_dim=time_dim,
            seed=seed,
            return_filled=True,
        )
        if da is None:
            da, hidden, gappy = _hide(truth, mask, infiller, variable, time_dim)
        var = str(da.name)
        mean, _ = to_canonical(filled[var].transpose(*da.dims))
        spread, _ = to_canonical(filled[f"{var}_spread"].transpose(*da.dims))
        spread = np.asarray(spread.values, dtype=np.float64)
        results[str(label)] = {
            "mean": np.asarray(mean.values, dtype=np.float64),
            "spread": spread if np.isfinite(spread).all() else None,
            "scores": s,
        }
        scores[str(label)] = s
    canon, _ = to_canonical(da)
    grid = detect_grid(canon)
    obs, _ = to_canonical(gappy.transpose(*da.dims))
    canon_hidden, _ = to_canonical(hidden.transpose(*da.dims))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=2))
    lat = canon[grid.y_dim].values if grid.y_dim in canon.coords else np.arange(canon.shape[-2])
    lon = canon[grid.x_dim].values if grid.x_dim in canon.coords else np.arange(canon.shape[-1])
    times = [str(t)[:19] for t in canon[time_dim].values] if time_dim in canon.coords else None
    write_fill_page(
        out_dir,
        observed=np.asarray(obs.values, dtype=np.float64),
        truth=np.nan_to_num(np.asarray(canon.values, dtype=np.float64)),
        hidden=np.asarray(canon_hidden.values, dtype=bool),
        methods=results,
        lat=lat,
        lon=lon,
        name=str(da.name),
        units=da.attrs.get("units"),
        index=index,
        time_labels=times,
        title=title,
        summary=_summary(scores),
        notes=notes,
        provenance={
            "climgen version": climgen_version(),
            "written": utc_stamp(),
            "members (ensembles)": members,
            "seed": seed,
            **(provenance or {}),
        },
    )
    return scores


def filled_report(
    filled: xr.Dataset,
    out_dir,
    *,
    variable: str | None = None,
    time_dim: str = "time",
    index: int = 0,
    title: str = "climgen gap-filling report",
    provenance: dict | None = None,
) -> Path:
    """The report page of a fill without hidden truth (maps of observed / filled / spread and
    the spectra of the filled fields); ``filled`` is the Dataset :meth:`Infiller.fill`
    returned. Returns the page's path."""
    from climgen.report.fill_page import write_fill_page

    if variable is None:  # the filled variable is the one with a ``<var>_spread`` beside it
        filled_vars = [str(v) for v in filled.data_vars if f"{v}_spread" in filled.data_vars]
        variable = filled_vars[0] if len(filled_vars) == 1 else None
    var = _pick_variable(filled, variable, time_dim)
    da = filled[var]
    canon, _ = to_canonical(da)
    grid = detect_grid(canon)
    kept, _ = to_canonical(filled[f"{var}_mask"].transpose(*da.dims))
    spread, _ = to_canonical(filled[f"{var}_spread"].transpose(*da.dims))
    values = np.asarray(canon.values, dtype=np.float64)
    observed = np.where(np.asarray(kept.values) == 1, values, np.nan)
    spread = np.asarray(spread.values, dtype=np.float64)
    method = str(filled.attrs.get("climgen_fill_method", "filled"))
    lat = canon[grid.y_dim].values if grid.y_dim in canon.coords else np.arange(canon.shape[-2])
    lon = canon[grid.x_dim].values if grid.x_dim in canon.coords else np.arange(canon.shape[-1])
    times = (
        [str(t)[:19] for t in np.atleast_1d(canon[time_dim].values)]
        if time_dim in canon.coords
        else None
    )
    return write_fill_page(
        out_dir,
        observed=observed,
        methods={
            method: {
                "mean": values,
                "spread": spread if np.isfinite(spread).all() else None,
                "scores": {"n_hidden": int(np.isnan(observed).sum())},
            }
        },
        lat=lat,
        lon=lon,
        name=var,
        units=da.attrs.get("units"),
        index=index,
        time_labels=times,
        title=title,
        summary="No hidden truth: the page shows the fill; score a method with a mask that "
        "hides observed cells (climgen fill ... --mask EARLIER_MASK --report DIR).",
        provenance={
            "climgen version": climgen_version(),
            "written": utc_stamp(),
            "method": method,
            "members": filled.attrs.get("climgen_fill_members", 1),
            **(provenance or {}),
        },
    )


def _summary(scores: dict) -> str:
    best = min(scores, key=lambda k: scores[k]["rmse"])
    parts = [f"Lowest RMSE on hidden cells: {best} ({scores[best]['rmse']:.3g})."]
    if "kriging" in scores:
        k = scores["kriging"]["rmse"]
        others = [f"{m} {s['rmse'] / k:.2f}" for m, s in scores.items() if m != "kriging"]
        parts.append("RMSE relative to kriging: " + ", ".join(others) + ".")
    return " ".join(parts)


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
