"""``task: emulate`` recipes: train an :class:`~climgen.tasks.emulate.Emulator`, then sample
it and judge the samples against the held-out part of the data (noise floors, HTML report)."""

from __future__ import annotations

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

__all__ = ["run_emulate_recipe"]


def _check_family(name: str, options: dict) -> None:
    from climgen.families.base import available_families, check_family_options

    names = available_families()
    if name not in names:
        raise ClimgenInputError(
            f"unknown family {name!r}{suggest(name, names)}; valid families: {', '.join(names)}"
        )
    reserved = {"channels", "shape", "periodic"} & set(options)
    if reserved:
        raise ClimgenInputError(
            f"family.options {sorted(reserved)} are set from the data; remove them"
        )
    check_family_options(name, options)


def run_emulate_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    run_dir: str | None = None,
    progress: bool = True,
    overrides: dict | None = None,
):
    """Train the emulator; with held-out data, sample it and write ``RUN_DIR/report``.

    Held-out data: ``data.held_out`` (an independent run of the simulation, another seed:
    what the report should be judged on; a file with the training data's ``seed`` attribute
    is refused), else the last ``1 − train_fraction`` of the data (an in-run split).
    Samples are put through the training file's int16 packing, if any, before scoring.

    ``evaluate: {calibrate_spectrum: true}`` fits the emulator's spectral calibration on the
    training split before sampling (:meth:`Emulator.calibrate_spectrum`); it is saved in the
    run dir and used by ``climgen sample`` too; ``calibrate_per_row: true`` adds its per-row
    stage (zonal spectrum per latitude / x-spectrum per height), ``calibrate_marginal: true``
    its quantile-mapping stage (one-point distribution per row). With a calibration the raw
    model is reported too: ``RUN_DIR/samples_raw.nc`` and ``RUN_DIR/report-raw``.

    Returns ``(emulator, EvaluationReport or None)``.
    """
    from climgen.tasks.emulate.emulator import Emulator, check_all_finite
    from climgen.train.distributed import is_main_process

    data = recipe.data
    sample_dim = data.get("sample_dim", "time")
    ds = open_data(recipe, "paths", data.get("variables"))
    train_ds, held_out = split_samples(ds, data, recipe.source)
    if data.get("held_out"):  # an independent run (another seed) scores the model
        from climgen.tasks.emulate.scoring import check_independent

        independent = open_data(recipe, "held_out", data.get("variables"))
        check_independent(independent, ds, where=f"{recipe.source}: data.held_out")
        held_out = independent
    if held_out is not None:  # before training: a NaN in the reference is no gap to score
        check_all_finite(
            held_out,
            data.get("variables") or list(train_ds.data_vars),
            sample_dim,
            where=f"{recipe.source}: the held-out data",
        )
    run_dir = prepare_run_dir(recipe, run_dir)
    train_options = {"progress": progress, **recipe.train, **(overrides or {})}
    emulator = Emulator(
        recipe.model["name"],
        variables=data.get("variables"),
        sample_dim=sample_dim,
        normalization=data.get("normalization", "standard"),
        **recipe.model["options"],
    ).fit(train_ds, run_dir=run_dir, resume=resume, **train_options)
    report = None
    if is_main_process() and held_out is not None and held_out.sizes[sample_dim] >= 4:
        from climgen.tasks.emulate.scoring import file_packing, score_emulator

        n_samples = recipe.evaluate.get("n_samples", held_out.sizes[sample_dim])
        seed = recipe.evaluate.get("seed", 0)
        if recipe.evaluate.get("calibrate_spectrum", False):
            emulator.calibrate_spectrum(
                train_ds,
                n_samples=max(n_samples, 64),
                seed=seed + 1,
                per_row=recipe.evaluate.get("calibrate_per_row", False),
                marginal=recipe.evaluate.get("calibrate_marginal", False),
            )
        # Reference rows (training data itself, IAAFT surrogate) and, when calibrated, the
        # raw model beside it (report-raw).
        report, _ = score_emulator(
            emulator,
            held_out,
            train_ds,
            run_dir,
            n_samples=n_samples,
            seed=seed,
            progress=progress,
            packing=file_packing(data_paths(recipe)[0], emulator.variables),
        )
    return emulator, report


register_recipe_task(
    RecipeTask(
        name="emulate",
        model_key="family",
        check_model=_check_family,
        run=run_emulate_recipe,
        data_keys=frozenset({"held_out"}),
        path_keys=("held_out",),
        evaluate_keys={
            "n_samples": int,
            "seed": int,
            "calibrate_spectrum": bool,
            "calibrate_per_row": bool,
            "calibrate_marginal": bool,
        },
        description="learn the data's distribution and draw new samples",
    )
)
