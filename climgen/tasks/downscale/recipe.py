"""``task: downscale`` recipes: train a downscaler on fine fields, then score held-out fields
against interpolation baselines and write the report page.

Example (``recipes/downscale_rbc_x4_regression.yaml``)::

    task: downscale
    data:
      paths: ../data/rbc_ra2e6_seed11.nc   # made by `climgen data rbc --seed 11 ...` (make_data)
      variables: [b]
      sample_dim: time
      train_fraction: 0.8      # first 80 % train; the rest are coarsened, downscaled, scored
      factor: 4                # 64 × 256 fine ← 16 × 64 coarse block means
      conserve: additive       # the conservation layer (true/additive, multiplicative, false)
    method:
      name: regression         # any of climgen.available_downscale_methods()
      options: {base_channels: 32, n_blocks: 6, content_loss: l2}
    train: {max_steps: 3000, batch_size: 8, seed: 0}
    evaluate: {members: 4, seed: 0, baselines: [bicubic, lanczos]}
    run_dir: ../runs/downscale_rbc_x4_regression

``data`` keys of this task (besides paths, variables, sample_dim, train_fraction,
normalization):

``factor``
    refinement per axis, an integer 2–8 (default 4). The coarse training inputs are the
    area-weighted block means of the fine fields (:meth:`Downscaler.coarsen`).
``conserve``
    ``true``/``additive``, ``multiplicative`` (non-negative fields) or ``false`` (default):
    the conservation layer that makes the output's block means equal the coarse input.
``static``
    file(s) with fine-grid static inputs (e.g. topography, no sample dim); resolved like
    ``paths``.
``patch_size``
    an int or [rows, cols] in coarse cells: train on random crops (regression, srgan).

``evaluate`` keys: ``members`` (int, ensemble members of srgan/diffusion; default 4),
``seed`` (int, 0), ``n_fields`` (int, score at most this many held-out fields, evenly spaced;
default all) and ``baselines`` (list of interpolation methods, default ``[bicubic]``). With
held-out fields (``train_fraction`` < 1) the run folder gets ``report/index.html`` and
``report/scores.json`` (:func:`climgen.tasks.downscale.scoring.downscale_report`).

``calibrate_spectrum: true`` fits the method's spectral calibration on the training split
after training (:meth:`Downscaler.calibrate_spectrum`: gain g(k) = sqrt(P_fine/P_method) per
wavenumber, applied before the conservation layer); it is saved in the run dir, used by
``climgen downscale RUN_DIR`` too, and the report scores the method without it and, as
"<method> (calibrated)", with it. ``calibrate_per_row: true`` adds the per-row stage
(zonal spectrum per latitude / x-spectrum per height); ``calibrate_fields`` (int, default 64)
is the number of training fields it is fitted on.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from climgen.errors import ClimgenInputError
from climgen.tasks.recipe import (
    Recipe,
    RecipeTask,
    open_data,
    prepare_run_dir,
    register_recipe_task,
    split_samples,
    suggest,
)

__all__ = [
    "check_downscale_method",
    "run_downscale_recipe",
    "DOWNSCALE_DATA_KEYS",
    "DOWNSCALE_EVALUATE_KEYS",
]

DOWNSCALE_DATA_KEYS = frozenset({"factor", "conserve", "static", "patch_size"})
DOWNSCALE_EVALUATE_KEYS = {
    "members": int,
    "seed": int,
    "n_fields": int,
    "baselines": list,
    "calibrate_spectrum": bool,
    "calibrate_per_row": bool,
    "calibrate_fields": int,
}
_RESERVED = {"factor", "conserve", "variables", "sample_dim", "normalization", "static"}


def check_downscale_method(name: str, options: dict) -> None:
    """Raise :class:`ClimgenInputError` for an unknown method or option (before any data)."""
    from climgen.tasks.downscale.downscaler import DOWNSCALE_METHODS, Downscaler

    if name not in DOWNSCALE_METHODS:
        raise ClimgenInputError(
            f"unknown downscaling method {name!r}{suggest(name, DOWNSCALE_METHODS)}; valid "
            f"methods: {', '.join(DOWNSCALE_METHODS)}"
        )
    reserved = (_RESERVED | {"channels", "shape", "periodic"}) & set(options)
    if reserved:
        raise ClimgenInputError(
            f"method.options {sorted(reserved)} are set from the data section "
            "(data.factor, data.conserve, ...); remove them"
        )
    Downscaler(4, name, **options)  # checks the method's options


def _settings(data: dict, evaluate: dict, source: str) -> dict:
    """The task's data/evaluate values, checked before any data is read."""
    from climgen.tasks.downscale.downscaler import DOWNSCALE_METHODS

    factor = data.get("factor", 4)
    if isinstance(factor, bool) or not isinstance(factor, int) or not 2 <= factor <= 8:
        raise ClimgenInputError(f"{source}: data.factor must be an integer 2–8, got {factor!r}")
    conserve = data.get("conserve", False)
    if conserve not in (True, False, "additive", "multiplicative", "none"):
        raise ClimgenInputError(
            f"{source}: data.conserve must be true, false, 'additive' or 'multiplicative', "
            f"got {conserve!r}"
        )
    patch = data.get("patch_size")
    if patch is not None and (
        isinstance(patch, bool)
        or not (
            isinstance(patch, int)
            or (isinstance(patch, list) and len(patch) == 2 and all(type(p) is int for p in patch))
        )
    ):
        raise ClimgenInputError(
            f"{source}: data.patch_size must be an int or [rows, cols], got {patch!r}"
        )
    baselines = [str(b) for b in evaluate.get("baselines", ["bicubic"])]
    for b in baselines:
        spec = DOWNSCALE_METHODS.get(b)
        if spec is None or spec.kind != "interpolation":
            valid = [k for k, s in DOWNSCALE_METHODS.items() if s.kind == "interpolation"]
            raise ClimgenInputError(
                f"{source}: evaluate.baselines has {b!r}{suggest(b, valid)}; baselines are the "
                f"interpolation methods {', '.join(valid)}"
            )
    for key in ("members", "n_fields", "calibrate_fields"):
        if key in evaluate and evaluate[key] < 1:
            raise ClimgenInputError(f"{source}: evaluate.{key} must be ≥ 1, got {evaluate[key]}")
    return {
        "factor": factor,
        "conserve": conserve,
        "patch_size": tuple(patch) if isinstance(patch, list) else patch,
        "baselines": baselines,
        "members": evaluate.get("members", 4),
        "seed": evaluate.get("seed", 0),
        "n_fields": evaluate.get("n_fields"),
        "calibrate": evaluate.get("calibrate_spectrum", False),
        "per_row": evaluate.get("calibrate_per_row", False),
        "calibrate_fields": evaluate.get("calibrate_fields", 64),
    }


def run_downscale_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    run_dir: str | None = None,
    progress: bool = True,
    overrides: dict | None = None,
):
    """Fit the recipe's downscaler on the training fields; with held-out fields, write
    ``RUN_DIR/report`` (page + ``scores.json``) comparing it with the baselines.

    Returns ``(downscaler, scores or None)``, ``scores`` = method → score dict.
    """
    from climgen.tasks.downscale.downscaler import Downscaler
    from climgen.tasks.downscale.scoring import downscale_report
    from climgen.train.distributed import is_main_process

    data, source = recipe.data, recipe.source
    cfg = _settings(data, recipe.evaluate, source)
    sample_dim = data.get("sample_dim", "time")
    ds = open_data(recipe, "paths", data.get("variables"))
    train, held = split_samples(ds, data, source)
    static = open_data(recipe, "static").load() if data.get("static") else None
    run_dir = prepare_run_dir(recipe, run_dir)
    name = recipe.model["name"]
    extra = {} if cfg["patch_size"] is None else {"patch_size": cfg["patch_size"]}
    down = Downscaler(
        cfg["factor"],
        name,
        conserve=cfg["conserve"],
        variables=data.get("variables"),
        sample_dim=sample_dim,
        normalization=data.get("normalization", "standard"),
        static=static,
        **extra,
        **recipe.model["options"],
    )
    train_options = {"progress": progress, **recipe.train, **(overrides or {})}
    if down.spec.kind != "interpolation":
        down.fit(train.load(), run_dir=run_dir, resume=resume, **train_options)
    if not is_main_process():
        return down, None
    if cfg["calibrate"]:
        down.calibrate_spectrum(
            train.load(),
            n_fields=cfg["calibrate_fields"],
            seed=cfg["seed"] + 1,
            per_row=cfg["per_row"],
            run_dir=run_dir,
        )
    if held is None:
        if progress:
            print("no report: no held-out fields (set data.train_fraction < 1)")
        return down, None
    held = held.load()
    n = held.sizes[sample_dim]
    if cfg["n_fields"] is not None and cfg["n_fields"] < n:
        if down.context:
            raise ClimgenInputError(
                f"{source}: evaluate.n_fields picks spaced held-out fields, but the model's "
                f"context={down.context} needs consecutive ones: drop evaluate.n_fields"
            )
        held = held.isel({sample_dim: np.linspace(0, n - 1, cfg["n_fields"]).round().astype(int)})
    methods = {
        b: Downscaler(cfg["factor"], b, conserve=cfg["conserve"], variables=down.variables)
        for b in cfg["baselines"]
        if b != name
    }
    if down.calibration is not None:
        raw = copy.copy(down)
        raw.calibration = None
        methods[name] = raw
        methods[f"{name} (calibrated)"] = down
    else:
        methods[name] = down
    scores, page = downscale_report(
        held,
        methods,
        Path(run_dir) / "report" / "index.html",
        members=cfg["members"],
        seed=cfg["seed"],
        baseline=cfg["baselines"][0],
        title=f"Downscaling ×{cfg['factor']} ({name}): {Path(source).name}",
        provenance={"recipe": source, "run_dir": str(run_dir)},
    )
    if progress:
        for label, s in scores.items():
            print(
                f"{label:>12}: RMSE {s['rmse']:.4g}, high-k spectral error "
                f"{s['spectral_high_k']:.3g} dec, conservation {s['conservation']:.2g}"
            )
        print(page)
    return down, scores


register_recipe_task(
    RecipeTask(
        name="downscale",
        model_key="method",
        check_model=check_downscale_method,
        run=run_downscale_recipe,
        data_keys=DOWNSCALE_DATA_KEYS,
        path_keys=("static",),
        evaluate_keys=DOWNSCALE_EVALUATE_KEYS,
        description="downscaling: coarse → fine fields (×2–×8), scored on held-out fields "
        "against interpolation baselines",
    )
)
