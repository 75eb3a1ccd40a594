"""``task: fill`` recipes: train a gap filler on complete fields under real coverage masks, then
cross-validate it on the held-out fields (against kriging, nearest and zonal-mean) and write
the scores and the gap-filling report page into the run folder.

Example (``recipes/fill_heldsuarez_hadcrut_partialconv.yaml``)::

    task: fill
    data:
      paths: ../data/heldsuarez_seed1.nc
      variables: [tas]
      sample_dim: time
      train_fraction: 0.8          # the last 20 % are held out and cross-validated
      regrid: bundled:hadcrut4_mask_1877-09        # target grid (bilinear)
      anomalies: true              # subtract the training period's time mean per cell
      masks: bundled:hadcrut4_tas_1877-09_1893-08  # coverage: 0/1 or NaN gaps
      mask_pairing: cycle          # held-out field i gets mask i mod n_masks
    method:
      name: partialconv            # or cvae (networks); kriging, nearest, zonal-mean
      options: {base_channels: 16, lr: 0.001}
    train: {max_steps: 2000, batch_size: 16, seed: 0}
    evaluate: {members: 16, seed: 0, max_fields: 24, kriging_points: 1000}
    run_dir: ../runs/fill_heldsuarez_hadcrut_partialconv

``data`` keys of this task (besides paths, variables, sample_dim, train_fraction):

``masks``
    file(s) of coverage masks (:func:`~climgen.tasks.fill.prepare.coverage_masks`: a 0/1
    variable, or observations whose finite cells are the observed ones), used for training
    (drawn at random, rolled in longitude) and for cross-validation. Absent: synthetic masks
    for both (``mask_kind``, ``coverage`` of the method options).
``mask_variable``
    the variable of the mask files, when they hold several.
``mask_pairing``
    how held-out fields get masks: ``cycle`` (default; field i ↔ mask i mod n), ``paired``
    (as many masks as held-out fields) or ``broadcast`` (one mask for all).
``regrid``
    a file whose lat/lon grid the data are bilinearly regridded to
    (:func:`~climgen.tasks.fill.prepare.regrid_bilinear`), e.g. the observations' grid.
``anomalies``
    ``true``: train and score on anomalies from the training period's time mean per cell
    (written to ``RUN_DIR/climatology.nc``); ``climgen fill RUN_DIR obs.nc`` then takes
    absolute observations (on any lat/lon grid: regridded to the run's), subtracts that
    climatology, fills, and writes anomalies and absolute values.
``held_out``
    file(s) of complete fields to cross-validate on instead of the last ``1 − train_fraction``
    of ``paths`` (which then all train): e.g. train on every day of one run and score on
    another run. Regridded like ``paths``; anomalies from the training climatology.
``observations``
    real observations (NaN = gap) to fill with the trained infiller after the cross-validation:
    written to ``RUN_DIR/observations_filled.nc`` (e.g. HadCRUT4 months, filled by a model
    trained on simulated fields; give optimal interpolation ``nugget: ml`` there).
``observations_mask``
    with ``observations``: the coverage of an earlier, sparser month; the cells observed in
    ``observations`` but not in this mask are hidden, filled and scored against the
    observations — the cross-validation on real data, beside kriging, nearest and zonal-mean
    (``RUN_DIR/report_observations``: ``scores.json``, ``index.html``).
``validation_fraction``
    ensembles only (cvae; partialconv with ``reconstruction: crps``): this fraction of the
    training fields (the last ones) is kept out of training and fits the ensemble's spread
    inflation (:func:`~climgen.tasks.fill.cross_validation.calibrate_spread`).

``evaluate`` keys (integers): ``members`` (ensemble size, 16), ``seed`` (0), ``max_fields``
(held-out fields scored, 0 = all; default 24), ``kriging_points`` (kriging's ``max_fit_points``
in the comparison; 0 leaves kriging out; default 1000), ``map_index`` (time step drawn);
and ``compare_oi`` (true/false, default false): a method with ``prior: optimal-interpolation``
is also compared with optimal interpolation alone, fitted with the prior's options (its
spread inflation fitted on the same validation fields).
"""

from __future__ import annotations

from pathlib import Path

from climgen.errors import ClimgenInputError
from climgen.tasks.recipe import (
    Recipe,
    RecipeTask,
    data_paths,
    open_data,
    prepare_run_dir,
    register_recipe_task,
    split_samples,
    suggest,
)

__all__ = ["run_fill_recipe", "check_fill_method", "FILL_DATA_KEYS", "FILL_EVALUATE_KEYS"]

FILL_DATA_KEYS = frozenset(
    {
        "masks",
        "mask_variable",
        "mask_pairing",
        "regrid",
        "anomalies",
        "validation_fraction",
        "held_out",
        "observations",
        "observations_mask",
    }
)
FILL_EVALUATE_KEYS = {
    **dict.fromkeys(("members", "seed", "max_fields", "kriging_points", "map_index"), int),
    "compare_oi": bool,
}
_INFILLER_KEYS = {
    "variable",
    "time_dim",
    "context",
    "mask_kind",
    "coverage",
    "n_synthetic",
    "roll_fields",
    "fill_rolls",
    "flip_fields",
    "likelihood_noise",
    "spread_inflation",
    "prior",
    "prior_options",
    "residual",
    "member_noise",
}
_PAIRINGS = ("cycle", "paired", "broadcast")


def check_fill_method(name: str, options: dict) -> None:
    """Raise :class:`ClimgenInputError` for an unknown method or option (before any data)."""
    from climgen.tasks.fill.infiller import Infiller
    from climgen.tasks.fill.methods import available_fill_methods, get_method

    names = available_fill_methods()
    if name not in names:
        raise ClimgenInputError(
            f"unknown fill method {name!r}{suggest(name, names)}; valid methods: {', '.join(names)}"
        )
    if "variable" in options or "time_dim" in options:
        raise ClimgenInputError(
            "set the variable and the time dim in 'data' (variables, sample_dim), not in "
            "method.options"
        )
    if get_method(name).kind != "network":
        Infiller(name, **options)  # checks the method's options
        return
    from climgen.families.base import check_family_options

    family_options = {k: v for k, v in options.items() if k not in _INFILLER_KEYS}
    reserved = {"channels", "shape", "periodic", "cond_channels", "residual_channel"}
    reserved &= set(family_options)
    if reserved:
        raise ClimgenInputError(
            f"method.options {sorted(reserved)} are set from the data; remove them"
        )
    check_family_options(name, family_options)
    Infiller(name, **options)  # checks context, spread_inflation


def _data_option(data: dict, key: str, types, default, source: str):
    value = data.get(key, default)
    if isinstance(value, bool) and bool not in types:
        value = None
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise ClimgenInputError(f"{source}: data.{key} must be {names}, got {data.get(key)!r}")
    return value


def run_fill_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    run_dir: str | None = None,
    progress: bool = True,
    overrides: dict | None = None,
):
    """Train the recipe's infiller; with held-out fields, cross-validate it and write the report.

    Returns ``(infiller, scores or None)``; ``scores`` maps each method to its scores on the
    hidden cells of the held-out fields (also in ``RUN_DIR/report/scores.json``, with the page
    ``RUN_DIR/report/index.html``).
    """
    import xarray as xr

    from climgen.data.io import open_fields, write_fields
    from climgen.tasks.fill.infiller import CLIMATOLOGY, OI, Infiller
    from climgen.tasks.fill.methods import get_method
    from climgen.tasks.fill.prepare import anomalies, coverage_masks, regrid_bilinear
    from climgen.train.distributed import is_main_process

    data, source = recipe.data, recipe.source
    sample_dim = data.get("sample_dim", "time")
    pairing = _data_option(data, "mask_pairing", (str,), "cycle", source)
    if pairing not in _PAIRINGS:
        raise ClimgenInputError(
            f"{source}: data.mask_pairing must be one of {', '.join(_PAIRINGS)}, got {pairing!r}"
        )
    use_anomalies = _data_option(data, "anomalies", (bool,), False, source)
    val_frac = _data_option(data, "validation_fraction", (int, float), 0.0, source)
    if not 0 <= val_frac < 1:
        raise ClimgenInputError(f"{source}: data.validation_fraction must be in [0, 1)")
    mask_variable = _data_option(data, "mask_variable", (str, type(None)), None, source)
    ev = recipe.evaluate
    members, seed = ev.get("members", 16), ev.get("seed", 0)
    if members < 1:
        raise ClimgenInputError(f"{source}: evaluate.members must be ≥ 1, got {members}")

    ds = open_data(recipe, "paths", data.get("variables"))
    variables = data.get("variables") or [str(v) for v in ds.data_vars]
    if len(variables) != 1:
        raise ClimgenInputError(
            f"{source}: a fill recipe fills one variable; data.variables is {variables}"
        )
    var = variables[0]
    da = ds[var].load()
    if "regrid" in data:
        target = open_fields(data_paths(recipe, "regrid")[0])
        da = regrid_bilinear(da, target)
    masks = None
    if "masks" in data:
        masks = coverage_masks(
            data_paths(recipe, "masks"), variable=mask_variable, time_dim=sample_dim
        )
    train_ds, held_out = split_samples(da.to_dataset(name=var), data, source)
    if "held_out" in data:
        if held_out is not None:
            raise ClimgenInputError(
                f"{source}: data.held_out names the fields to cross-validate on; with it, "
                "train on all of data.paths (leave train_fraction out or set it to 1)"
            )
        other = open_data(recipe, "held_out", [var])
        held = other[var].load()
        if "regrid" in data:
            held = regrid_bilinear(held, target)
        held_out = held.to_dataset(name=var)
    train_da = train_ds[var]
    climatology = None
    if use_anomalies:
        train_da, climatology = anomalies(train_da, time_dim=sample_dim)
    val_da = None
    options = dict(recipe.model["options"])
    name = recipe.model["name"]
    infiller = Infiller(name, variable=var, time_dim=sample_dim, **options)
    if ev.get("compare_oi", False) and infiller.prior is None:
        raise ClimgenInputError(
            f"{source}: evaluate.compare_oi needs a method with prior: optimal-interpolation"
        )
    if infiller.is_ensemble and val_frac > 0:
        n_val = max(1, int(round(val_frac * train_da.sizes[sample_dim])))
        val_da = train_da.isel({sample_dim: slice(-n_val, None)})
        train_da = train_da.isel({sample_dim: slice(0, -n_val)})
    run_dir = prepare_run_dir(recipe, run_dir)
    if get_method(name).kind == "network":
        train_options = {"progress": progress, **recipe.train, **(overrides or {})}
        infiller.fit(train_da, masks=masks, run_dir=run_dir, resume=resume, **train_options)
    elif name == OI:
        infiller.fit(train_da, run_dir=run_dir)
    else:
        infiller.fit(train_da)
    if not is_main_process():
        return infiller, None

    def keep_climatology(inf, folder: Path) -> None:  # fill FOLDER takes absolute values
        if climatology is not None:
            write_fields(climatology.to_dataset(name=f"{var}_climatology"), folder / CLIMATOLOGY)
            inf.anomaly_climatology = climatology

    keep_climatology(infiller, run_dir)

    def cv_masks(like: xr.DataArray) -> xr.DataArray:
        if masks is not None:
            from climgen.tasks.fill.masks import pair_masks

            m = masks if pairing != "broadcast" else masks.isel({sample_dim: 0}, drop=True)
            return pair_masks(m, like, time_dim=sample_dim, mode=pairing)
        from climgen.tasks.fill.masks import synthetic_masks

        shape = like.shape[-2:]
        values = synthetic_masks(like.sizes[sample_dim], shape, seed=seed)
        return xr.DataArray(
            values, dims=like.dims, coords={d: like[d] for d in like.dims if d in like.coords}
        )

    from climgen.tasks.fill.cross_validation import calibrate_spread

    def fit_spread(model):  # the spread inflation on the validation fields
        return calibrate_spread(
            model,
            val_da,
            cv_masks(val_da),
            members=max(members, 2),
            time_dim=sample_dim,
            seed=seed + 1,
        )

    if val_da is not None:
        alpha = fit_spread(infiller)
        print(f"{name} spread inflation fitted on {val_da.sizes[sample_dim]} fields: {alpha:.3f}")
    if held_out is None or held_out.sizes[sample_dim] == 0:
        return infiller, None
    test = held_out[var]
    if climatology is not None:
        test, _ = anomalies(test, climatology, time_dim=sample_dim)
    max_fields = ev.get("max_fields", 24)
    if max_fields:
        test = test.isel({sample_dim: slice(0, max_fields)})
    from climgen.tasks.fill.cross_validation import cross_validation_report

    compare = {name: infiller}
    if ev.get("compare_oi", False):  # OI with the covariance options of the network's prior
        oi = Infiller(
            OI,
            variable=var,
            time_dim=sample_dim,
            roll_fields=infiller.roll_fields,
            **infiller.prior_options,
        ).fit(train_da, run_dir=Path(run_dir) / "compare-oi")
        keep_climatology(oi, oi.run_dir)
        if val_da is not None:
            fit_spread(oi)
        compare[OI] = oi
    compare.update(_baselines(name, var, sample_dim, ev.get("kriging_points", 1000)))
    n_test = test.sizes[sample_dim]
    scores = cross_validation_report(
        compare,
        test,
        cv_masks(test),
        Path(run_dir) / "report",
        members=members,
        time_dim=sample_dim,
        seed=seed,
        index=min(ev.get("map_index", 0), n_test - 1),
        title=f"Gap filling: {name} on held-out {var} ({Path(source).name})",
        notes=(
            f"{n_test} held-out fields of "
            + ", ".join(Path(p).name for p in data.get("held_out") or data["paths"])
            + (" (anomalies from the training time mean)" if climatology is not None else "")
            + (
                f", masks from {', '.join(Path(p).name for p in data['masks'])} ({pairing})"
                if masks is not None
                else ", synthetic masks"
            )
            + ".",
        ),
        provenance={"recipe": source, "run dir": str(run_dir)},
    )
    _print_scores(scores, progress)
    if "observations" in data:
        _fill_observations(recipe, infiller, var, run_dir, progress)
    return infiller, scores


def _baselines(name: str, var: str, sample_dim: str, kriging_points: int) -> dict:
    """The baselines a recipe compares with (kriging only with ``kriging_points`` > 0)."""
    from climgen.tasks.fill.infiller import Infiller

    out = {}
    for baseline in ("kriging", "nearest", "zonal-mean"):
        if baseline == name or (baseline == "kriging" and not kriging_points):
            continue
        extra = {"max_fit_points": kriging_points} if baseline == "kriging" else {}
        out[baseline] = Infiller(baseline, variable=var, time_dim=sample_dim, **extra)
    return out


def _print_scores(scores: dict, progress: bool, what: str = "") -> None:
    if progress:
        for label, s in scores.items():
            crps = s.get("crps", float("nan"))
            gaps = s.get("gaps", {})  # the worst of the four, distance ÷ the truth's floor
            shown = [f"{k} {max(gaps[k].values()):.2g}" for k in ("mean", "members") if k in gaps]
            gaps = f", gaps ÷ floor (worst): {', '.join(shown)}" if shown else ""
            print(f"{label:>12}: RMSE {s['rmse']:.3g}, CRPS {crps:.3g}{gaps}{what}")


def _fill_observations(recipe: Recipe, infiller, var: str, run_dir, progress: bool) -> None:
    """``data.observations``: fill them (``RUN_DIR/observations_filled.nc``); with
    ``data.observations_mask``, cross-validate on the cells observed there but hidden by
    that mask, beside the baselines (``RUN_DIR/report_observations``)."""
    import numpy as np

    from climgen.data.io import write_fields
    from climgen.data.masks import load_mask
    from climgen.tasks.fill.cross_validation import cross_validation_report
    from climgen.tasks.fill.masks import pair_masks

    ev, run_dir = recipe.evaluate, Path(run_dir)
    members, seed = ev.get("members", 16), ev.get("seed", 0)
    obs = open_data(recipe, "observations", [var])
    obs_path = data_paths(recipe, "observations")[0]
    filled = infiller.fill(obs, members=members, seed=seed)
    out = write_fields(filled, run_dir / "observations_filled.nc")
    if progress:
        print(f"filled {Path(obs_path).name}: {out}")
    if "observations_mask" not in recipe.data:
        return
    mask_path = data_paths(recipe, "observations_mask")[0]
    mask = load_mask(mask_path, recipe.data.get("mask_variable"))
    time_dim = infiller.time_dim
    truth = obs[var]
    hidden = np.isfinite(truth) & (pair_masks(mask, truth, time_dim=time_dim) == 0)
    per_field = hidden.sum([d for d in hidden.dims if d != time_dim]) if truth.ndim == 3 else None
    compare = {infiller.method: infiller}
    compare.update(_baselines(infiller.method, var, time_dim, ev.get("kriging_points", 1000)))
    scores = cross_validation_report(
        compare,
        obs,
        mask,
        run_dir / "report_observations",
        members=members,
        variable=var,
        time_dim=time_dim,
        seed=seed,
        index=0 if per_field is None else int(np.argmax(per_field.values)),
        title=f"Gap filling: {infiller.method} on {Path(obs_path).name} (real observations)",
        notes=(
            f"Cells observed in {Path(obs_path).name} but missing in the coverage "
            f"{Path(mask_path).name} were hidden and are scored "
            f"({int(hidden.sum())} cells); the filler was trained on "
            + ", ".join(Path(p).name for p in recipe.data["paths"])
            + ".",
        ),
        provenance={"recipe": recipe.source, "observations": obs_path, "mask": mask_path},
    )
    _print_scores(scores, progress, f" ({Path(obs_path).name}, hidden by {Path(mask_path).name})")


register_recipe_task(
    RecipeTask(
        name="fill",
        model_key="method",
        check_model=check_fill_method,
        run=run_fill_recipe,
        data_keys=FILL_DATA_KEYS,
        path_keys=("masks", "regrid", "held_out", "observations", "observations_mask"),
        evaluate_keys=FILL_EVALUATE_KEYS,
        description="gap filling: train an infiller under coverage masks, cross-validate it",
    )
)
