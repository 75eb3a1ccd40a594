"""Score downscaled fields against the fine truth, compare methods, and write the report page.

For a truth field x (samples, H, W), a method's output y on the same grid (optionally with a
``member`` dim of M stochastic members) and the coarse input c it was given, with area
weights w (cos φ on lat/lon grids, uniform on planar grids; :func:`climgen.data.grids.
area_weights`), :func:`score_downscaled` returns (lower is better for every score):

- ``rmse``: area-weighted RMSE √(Σ w (y − x)² / Σ w) over all samples (member 0 for
  ensembles: the error of one draw);
- ``rmse_ensemble_mean``: the same for the mean over members (ensembles only);
- ``spectral_high_k``: log-spectral error in the upper half of wavenumbers,
  √(mean_{k ≥ k_max/2} (log10 P̄_y(k) − log10 P̄_x(k))²) in decades, with P̄ the
  sample-mean spectrum of :func:`climgen.metrics.field_spectrum` (line spectrum along x for
  RBC-like grids with walls, spherical-harmonic spectrum on global Gaussian/equal-angle
  grids, radial spectrum otherwise) — how well the *small scales* that downscaling must
  invent carry the right variance;
- ``w1``: area-weighted Wasserstein-1 distance of the pooled values
  (:func:`climgen.metrics.wasserstein1`);
- ``q999_error``: |Q_y(0.999) − Q_x(0.999)|, the error of the upper-tail quantile
  (:func:`climgen.metrics.quantile_errors`);
- ``conservation``: max_B |M_B(y) − c_B| over coarse cells and samples
  (:func:`climgen.metrics.block_mean_error`), 0 when coarse means are kept exactly;
- ``crps``: the fair CRPS of the members (:func:`climgen.metrics.crps_fair`; ensembles with
  M ≥ 2 only; for a deterministic method it would equal the MAE).

:func:`compare_methods` scores several outputs and adds ``rmse_ratio`` and
``spectral_ratio`` relative to a baseline (bicubic). :func:`downscale_report` runs fitted
:class:`~climgen.tasks.downscale.Downscaler` objects on coarsened truth, scores them and
writes the HTML page of :mod:`climgen.report.downscale_page`.

References: Stengel et al. (2020, PNAS) and Harder et al. (2023, JMLR) score super-resolved
climate fields by RMSE, spectra, extremes and conservation; Ferro (2014) for the fair CRPS.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.data.grids import area_weights, detect_grid, to_canonical
from climgen.data.io import as_dataset, climgen_version
from climgen.errors import ClimgenInputError
from climgen.metrics import (
    block_mean_error,
    crps_fair,
    high_k_error,
    mean_spectrum,
    quantile_errors,
    rmse,
    wasserstein1,
)
from climgen.report.downscale_page import (
    on_truth_grid,
    write_downscale_page,
)
from climgen.tasks._common import field_variables, utc_stamp

__all__ = ["score_downscaled", "compare_methods", "downscale_report", "SCORE_NAMES"]

SCORE_NAMES = {
    "rmse": "RMSE",
    "rmse_ratio": "RMSE / baseline",
    "spectral_high_k": "high-k spectral error [dec]",
    "spectral_ratio": "high-k spectral / baseline",
    "w1": "W1",
    "q999_error": "|Δ q99.9|",
    "conservation": "conservation error",
    "crps": "CRPS",
}


def _canonical_values(da: xr.DataArray, lead: tuple[str, ...]) -> np.ndarray:
    canon, _ = to_canonical(da)
    grid = detect_grid(canon)
    return np.asarray(canon.transpose(*lead, grid.y_dim, grid.x_dim).values, dtype=np.float64)


def score_downscaled(
    truth: xr.DataArray,
    output: xr.DataArray,
    coarse: xr.DataArray,
    factor: int,
    *,
    member_dim: str = "member",
    spectrum_truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Scores of one method's ``output`` (see the module docstring for the definitions).

    ``truth`` (samples..., y, x) fine field, ``output`` on the same grid (plus optional
    ``member_dim``), ``coarse`` the coarse input (samples..., y/f, x/f). ``spectrum_truth``
    = (k, P̄) saves recomputing the truth's spectrum when scoring many methods.
    """
    out = on_truth_grid(truth, output, member_dim)
    canon_t, _ = to_canonical(truth)
    grid = detect_grid(canon_t)
    lead = tuple(d for d in canon_t.dims if d not in (grid.y_dim, grid.x_dim))
    t = _canonical_values(canon_t, lead)
    w2 = area_weights(canon_t, grid).values
    has_members = member_dim in out.dims
    first = out.isel({member_dim: 0}) if has_members else out
    y = _canonical_values(first, lead)
    w = np.broadcast_to(w2, t.shape)
    c = _canonical_values(coarse, tuple(d for d in lead if d in coarse.dims))
    if c.shape[:-2] != t.shape[:-2]:
        raise ClimgenInputError(
            f"coarse input has shape {c.shape}, the truth {t.shape}: sample dims differ"
        )
    k, p_truth = spectrum_truth if spectrum_truth is not None else mean_spectrum(canon_t)
    _, p_out = mean_spectrum(first)
    scores = {
        "rmse": float(rmse(y, t, weights=w)),
        "spectral_high_k": high_k_error(k, p_out, p_truth),
        "w1": float(wasserstein1(y.ravel(), t.ravel(), weights_a=w.ravel(), weights_b=w.ravel())),
        "q999_error": abs(
            float(
                quantile_errors(
                    y.ravel(), t.ravel(), (0.999,), weights_gen=w.ravel(), weights_ref=w.ravel()
                )[0.999]
            )
        ),
    }
    worst = 0.0
    ens = (
        _canonical_values(out.transpose(member_dim, ...), (member_dim, *lead))
        if has_members
        else y[None]
    )
    for member in ens:
        worst = max(worst, float(block_mean_error(member, c, factor, weights=w2)))
    scores["conservation"] = worst
    if has_members and out.sizes[member_dim] >= 2:
        scores["crps"] = float(crps_fair(ens, t, member_axis=0, weights=w))
        scores["rmse_ensemble_mean"] = float(rmse(ens.mean(0), t, weights=w))
    return scores


def compare_methods(
    truth: xr.DataArray,
    outputs: dict[str, xr.DataArray],
    coarse: xr.DataArray,
    factor: int,
    *,
    baseline: str | None = "bicubic",
    member_dim: str = "member",
) -> dict[str, dict[str, float]]:
    """:func:`score_downscaled` for each output, plus ratios to ``outputs[baseline]``.

    ``rmse_ratio`` = RMSE / RMSE_baseline and ``spectral_ratio`` = high-k spectral error /
    the baseline's (both < 1 when the method beats the baseline).
    """
    canon_t, _ = to_canonical(truth)
    spectrum = mean_spectrum(canon_t)
    scores = {
        name: score_downscaled(
            truth, out, coarse, factor, member_dim=member_dim, spectrum_truth=spectrum
        )
        for name, out in outputs.items()
    }
    if baseline is not None and baseline in scores:
        base = scores[baseline]
        for s in scores.values():
            s["rmse_ratio"] = s["rmse"] / base["rmse"] if base["rmse"] > 0 else float("nan")
            spec = base["spectral_high_k"]
            s["spectral_ratio"] = s["spectral_high_k"] / spec if spec > 0 else float("nan")
    return scores


def downscale_report(
    truth,
    methods: dict,
    path: str | os.PathLike,
    *,
    variable: str | None = None,
    members: int = 4,
    seed: int = 0,
    baseline: str = "bicubic",
    title: str | None = None,
    provenance: dict | None = None,
) -> tuple[dict[str, dict[str, float]], Path]:
    """Coarsen ``truth``, downscale it with every method, score and write the report page.

    Parameters
    ----------
    truth : fine held-out fields (Dataset/DataArray/paths) on the grid the methods expect.
    methods : label → :class:`~climgen.tasks.downscale.Downscaler` (fitted, or a baseline),
        all with the same factor. The baseline (``"bicubic"``, with the first method's
        conservation setting) is added when missing.
    path : the page's file (``.../index.html``); figures are written next to it.
    variable : the variable to score and draw (default: the first of the first method).
    members : ensemble members drawn by the stochastic methods (srgan, diffusion).

    Returns ``(scores, page_path)``; ``scores`` is also written as ``scores.json`` next to
    the page.
    """
    import json

    if not methods:
        raise ClimgenInputError("downscale_report needs at least one method")
    first = next(iter(methods.values()))
    factor = first.factor
    bad = [k for k, m in methods.items() if m.factor != factor]
    if bad:
        raise ClimgenInputError(f"methods {bad} do not have the factor {factor} of the others")
    if baseline not in methods:
        # The baseline is built with the methods' own class: this module measures and never
        # imports the Downscaler (which calls it), so the two do not import each other.
        base = type(first)(factor, baseline, conserve=first.conserve or False)
        methods = {baseline: base, **methods}
    ds = as_dataset(truth, first.variables)
    name = variable or (first.variables[0] if first.variables else None)
    if name is None:
        name = field_variables(ds)[0]
    if name not in ds.data_vars:
        raise ClimgenInputError(
            f"variable '{name}' missing from the truth; it has {list(ds.data_vars)}"
        )
    coarse = first.coarsen(ds)
    outputs = {}
    for label, method in methods.items():
        stochastic = method.method in ("srgan", "diffusion")
        out = method.downscale(coarse, members=members if stochastic else None, seed=seed)
        outputs[label] = out[name]
    scores = compare_methods(ds[name], outputs, coarse[name], factor, baseline=baseline)
    prov = {
        "created": utc_stamp(),
        "climgen_version": climgen_version(),
        "factor": factor,
        "variable": name,
        "fields scored": int(np.prod([ds[name].sizes[d] for d in ds[name].dims[:-2]] or [1])),
        "members (stochastic methods)": members,
        **(provenance or {}),
    }
    page = write_downscale_page(
        path,
        truth=ds[name],
        coarse=coarse[name],
        outputs=outputs,
        scores=scores,
        factor=factor,
        baseline=baseline,
        title=title or f"Downscaling ×{factor}: {name}",
        provenance=prov,
    )
    (page.parent / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True))
    return scores, page
