"""Optimal interpolation in gap filling: fitting the Gaussian field model of the training
fields (:func:`~climgen.tasks.fill.oi_reduced.fit_field_model`: the dense or the reduced-rank
model) and filling with its exact conditional mean, standard deviation and conditional draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError
from climgen.tasks._common import default_run_dir
from climgen.tasks.fill.names import OI
from climgen.tasks.fill.oi_reduced import DEFAULT_RANK, fit_field_model
from climgen.tasks.fill.run_dir import save_settings

__all__ = ["fit_gaussian", "fill_gaussian"]


def fit_gaussian(inf, values: np.ndarray, grid, run_dir, options):
    """Estimate the optimal-interpolation covariance from canonical fields (T, H, W) (the
    method, or a network's prior); the method saves it in the run directory at once."""
    hemispheric = bool(options.get("hemispheric", False))
    if inf.roll_fields and not grid.periodic_x:
        raise ClimgenInputError(
            f"roll_fields=True cannot be used here: the grid ({grid.shape_name}) is not "
            "periodic in longitude"
        )
    if hemispheric and grid.kind != "latlon":
        raise ClimgenInputError(
            f"hemispheric=True needs a lat/lon grid; '{inf.variable}' is {grid.shape_name}"
        )
    inf.gaussian = fit_field_model(
        values,
        solver=options.get("solver", "auto"),
        rank=options.get("rank", DEFAULT_RANK),
        zonal=inf.roll_fields,
        hemispheric=hemispheric,
        nugget=options.get("nugget", "auto"),
        context=inf.context if inf.method == OI else 0,
    )
    if inf.method != OI:
        return inf
    inf.run_dir = Path(run_dir) if run_dir else default_run_dir("fill", inf.method)
    inf.run_dir.mkdir(parents=True, exist_ok=True)
    save_settings(inf)
    return inf


def fill_gaussian(inf, gappy, keep, members, seed, targets, show=False):
    """Exact conditional mean and std, and ``members`` conditional draws, of the fields
    ``targets``; ``spread_inflation`` scales the draws' deviations from the mean and the
    std."""
    rng = np.random.default_rng(int(seed))
    shape = (len(targets), *gappy.shape[1:])
    mean, std = np.empty(shape), np.empty(shape)
    ens = np.empty((members, *shape))
    k, n = inf.gaussian.context, gappy.shape[0]
    values = np.nan_to_num(gappy)
    fields = progress_bar(targets, desc="fill (optimal interpolation)", unit="field", enabled=show)
    for i, t in enumerate(fields):
        if k == 0:
            out = inf.gaussian.condition(values[t], keep[t], members=members, rng=rng)
        else:  # the window t − k … t + k; days outside the record observe nothing
            window = np.arange(t - k, t + k + 1)
            days = np.clip(window, 0, n - 1)
            inside = (window >= 0) & (window < n)
            out = inf.gaussian.condition_window(
                values[days], keep[days] & inside[:, None, None], members=members, rng=rng
            )
        mean[i], std[i], ens[:, i] = out
    alpha = inf.spread_inflation
    keep, gappy = keep[targets], gappy[targets]
    ens = np.where(keep[None], gappy, mean[None] + alpha * (ens - mean[None]))
    return mean, alpha * std, ens
