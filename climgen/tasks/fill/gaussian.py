"""Optimal interpolation in gap filling: fitting the Gaussian field model of the training
fields (:func:`~climgen.tasks.fill.oi_reduced.fit_field_model`: the dense or the reduced-rank
model) and filling with its exact conditional mean, standard deviation and conditional draws.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError
from climgen.tasks._common import default_run_dir
from climgen.tasks.fill.names import OI
from climgen.tasks.fill.oi_noise import ML, check_nugget, noisy_model
from climgen.tasks.fill.oi_reduced import DEFAULT_RANK, fit_field_model
from climgen.tasks.fill.run_dir import save_settings

__all__ = [
    "fit_gaussian",
    "fill_gaussian",
    "conditioning_model",
    "use_nugget",
    "check_plausible",
    "IMPLAUSIBLE_SIGMAS",
]

# Under the fitted Gaussian model a conditional mean this many prior standard deviations from
# the training mean does not happen: it is an ill-posed solve — observations that carry errors
# conditioned with (almost) no observation-error nugget, e.g. real observations with a nugget
# chosen on smooth simulated fields (measured: RMSE 1 811 K on HadCRUT4 1893-08 with the auto
# nugget ~1e-14, 0.97 K with nugget 0.2).
IMPLAUSIBLE_SIGMAS = 20.0
LOGGER = logging.getLogger(__name__)


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
        # nugget="ml" is estimated from the observations at fill time (conditioning_model);
        # the stored model keeps the held-out choice of "auto" until then
        nugget="auto" if options.get("nugget") == ML else options.get("nugget", "auto"),
        context=inf.context if inf.method == OI else 0,
    )
    if inf.method != OI:
        return inf
    inf.run_dir = Path(run_dir) if run_dir else default_run_dir("fill", inf.method)
    inf.run_dir.mkdir(parents=True, exist_ok=True)
    save_settings(inf)
    return inf


def use_nugget(inf, nugget):
    """Make ``inf`` fill with this nugget from now on (optimal interpolation, or a network's OI
    prior): a number (τ² over the mean learned variance), ``"auto"`` (the fitted model's) or
    ``"ml"``, estimated with a scale of the covariance from the observed cells of the fields
    filled (:mod:`~climgen.tasks.fill.oi_noise`) — e.g. a run trained on simulated fields
    filling real observations (``climgen fill --nugget ml``). Returns ``inf``."""
    check_nugget(nugget)
    if inf.method != OI and inf.prior is None:
        raise ClimgenInputError(
            f"the nugget is an option of optimal interpolation (or of an OI prior); the "
            f"{inf.method} infiller has none"
        )
    (inf.options if inf.method == OI else inf.prior_options)["nugget"] = nugget
    return inf


def _nugget_choice(inf):
    """The nugget option of the method (or of the prior); None: the fitted model's own."""
    nugget = (inf.options if inf.method == OI else inf.prior_options).get("nugget")
    return None if nugget is None or check_nugget(nugget) == "auto" else nugget


def conditioning_model(inf, gappy, keep, targets):
    """The OI model a fill of the fields ``targets`` conditions with, and what the output
    records: the fitted model; with the option ``nugget="ml"`` its covariance rescaled and its
    nugget set by the marginal likelihood of the targets' observed cells
    (:mod:`~climgen.tasks.fill.oi_noise`); with a number other than the fitted model's (set
    after fitting, :meth:`Infiller.set_nugget`), that nugget."""
    model, choice = inf.gaussian, _nugget_choice(inf)
    if choice is None or (choice != ML and float(choice) == model.nugget):
        return model, {"nugget": model.nugget}
    if choice != ML:
        return model.with_noise(float(choice)), {"nugget": float(choice)}
    model, est = noisy_model(model, np.nan_to_num(gappy[targets]), keep[targets])
    LOGGER.info(
        "nugget='ml': nugget %.3g of the learned mean variance (tau^2 = %.3g), covariance "
        "scale %.3g, from %d observed values under %d mask(s)",
        est.nugget,
        est.tau2,
        est.scale,
        est.n_observed,
        est.n_masks,
    )
    return model, {"nugget": est.nugget, "oi_scale": est.scale, "nugget_method": ML}


def fill_gaussian(inf, gappy, keep, members, seed, targets, show=False):
    """Exact conditional mean and std, and ``members`` conditional draws, of the fields
    ``targets`` under :func:`conditioning_model`; ``spread_inflation`` scales the draws'
    deviations from the mean and the std. Returns ``(mean, std, members, info)``."""
    model, info = conditioning_model(inf, gappy, keep, targets)
    rng = np.random.default_rng(int(seed))
    shape = (len(targets), *gappy.shape[1:])
    mean, std = np.empty(shape), np.empty(shape)
    ens = np.empty((members, *shape))
    k, n = model.context, gappy.shape[0]
    values = np.nan_to_num(gappy)
    fields = progress_bar(targets, desc="fill (optimal interpolation)", unit="field", enabled=show)
    for i, t in enumerate(fields):
        if k == 0:
            out = model.condition(values[t], keep[t], members=members, rng=rng)
        else:  # the window t − k … t + k; days outside the record observe nothing
            window = np.arange(t - k, t + k + 1)
            days = np.clip(window, 0, n - 1)
            inside = (window >= 0) & (window < n)
            out = model.condition_window(
                values[days], keep[days] & inside[:, None, None], members=members, rng=rng
            )
        mean[i], std[i], ens[:, i] = out
    check_plausible(model, mean, keep[targets])
    alpha = inf.spread_inflation
    keep, gappy = keep[targets], gappy[targets]
    ens = np.where(keep[None], gappy, mean[None] + alpha * (ens - mean[None]))
    return mean, alpha * std, ens, info


def check_plausible(model, mean: np.ndarray, keep: np.ndarray) -> None:
    """Refuse conditional means (n, H, W) more than :data:`IMPLAUSIBLE_SIGMAS` prior standard
    deviations sqrt(diag C) from the training mean at a hidden cell (``keep`` False); the
    error names the nugget and how to choose one for observations with errors."""
    sd = np.sqrt(np.maximum(model.variance.reshape(model.mean.shape), np.finfo(float).tiny))
    z = np.where(keep, 0.0, np.abs(mean - model.mean) / sd)
    worst = float(z.max()) if z.size else 0.0
    if worst > IMPLAUSIBLE_SIGMAS:
        raise ClimgenInputError(
            f"optimal interpolation: the filled mean reaches {worst:.0f} prior standard "
            f"deviations from the training mean at a hidden cell (nugget {model.nugget:.3g} of "
            f"the mean training variance, tau^2 = {model.tau2:.3g}): the observations do not "
            "fit the covariance learned from the training fields without an observation "
            "error. Refit with a nugget near the observations' error variance over the mean "
            "training variance, e.g. Infiller('optimal-interpolation', nugget=0.1), or "
            "estimate it from the observations: nugget='ml' (climgen fill --nugget ml); "
            "nugget='auto' is chosen on the training fields, which carry no observation error"
        )
