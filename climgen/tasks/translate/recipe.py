"""``task: translate`` recipes: fit a translator from domain A to domain B, then score the
translation of A's held-out fields against B's held-out fields and write the report page.

Example (``recipes/translate_rbc_ra1e6_to_ra2e6_cyclegan.yaml``)::

    task: translate
    data:
      paths: bundled:rbc                                 # domain A (Ra = 1e6, 32 × 128)
      paths_b: ../data/rbc_ra2e6_seed11.nc             # domain B (Ra = 2e6, 64 × 256)
      variables: [b]
      coarsen_b: 2                 # conservative 2× coarsening of B onto A's 32 × 128
      b_coords_from_a: true        # B takes A's coordinates (x differs by half a fine cell)
      sample_dim: time
      train_fraction: 0.8          # per domain: first 80 % train, the rest is held out
    method:
      name: cyclegan               # or quantile-mapping, pix2pix, augmented-cyclegan
      options: {base_channels: 16, lr: 0.0005, lr_d: 0.0005}
    train: {max_steps: 2000, batch_size: 8, seed: 0}
    evaluate: {members: 1, seed: 0}
    run_dir: ../runs/translate_rbc_ra1e6_to_ra2e6_cyclegan

``data`` keys of this task (besides paths, variables, sample_dim, train_fraction,
normalization); ``paths`` is domain A:

``paths_b``
    file(s) of domain B (required); resolved like ``paths`` (``bundled:NAME`` allowed).
``variables_b``
    B's names of ``variables``, in the same order, when they differ (renamed to A's names).
``coarsen_b``
    an int (or [fy, fx]) factor: B is conservatively block-averaged
    (:func:`climgen.data.coarsen.coarsen`) onto a grid that factor coarser, e.g. a
    higher-resolution run onto A's grid.
``b_coords_from_a``
    ``true``: B's spatial coordinates are replaced by A's (same shape required). For grids that
    are one up to a shift, such as a periodic axis after coarsening; without it, differing
    coordinates stop the scoring with an error naming the coordinate.

``evaluate`` keys (integers): ``members`` (translations per held-out field, augmented-cyclegan
only; default 1) and ``seed`` (0). Held-out fields of both domains (at least 4 each) give the
report ``RUN_DIR/report/index.html`` and ``scores.json`` (translated A, untranslated A and
quantile mapping fitted on the training fields, each against held-out B with B's noise floor).
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

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
    "check_translate_method",
    "load_translate_domains",
    "run_translate_recipe",
    "TRANSLATE_DATA_KEYS",
    "TRANSLATE_EVALUATE_KEYS",
]

TRANSLATE_DATA_KEYS = frozenset({"paths_b", "variables_b", "coarsen_b", "b_coords_from_a"})
TRANSLATE_EVALUATE_KEYS = frozenset({"members", "seed"})


def check_translate_method(name: str, options: dict) -> None:
    """Raise :class:`ClimgenInputError` for an unknown method or option (before any data)."""
    from climgen.tasks.translate.translator import TRANSLATE_METHODS, Translator

    if name not in TRANSLATE_METHODS:
        raise ClimgenInputError(
            f"unknown translation method {name!r}{suggest(name, TRANSLATE_METHODS)}; valid "
            f"methods: {', '.join(TRANSLATE_METHODS)}"
        )
    reserved = {"channels", "shape", "periodic", "variables", "sample_dim"} & set(options)
    if reserved:
        raise ClimgenInputError(
            f"method.options {sorted(reserved)} are set from the data; remove them"
        )
    Translator(name, **options)  # checks the method's options


def _list(value, key: str, source: str) -> list:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list):
        raise ClimgenInputError(f"{source}: data.{key} must be a list, got {value!r}")
    return value


def load_translate_domains(recipe) -> tuple[xr.Dataset, xr.Dataset]:
    """Domain A and domain B Datasets of a recipe (its ``data`` section, paths resolved),
    with ``variables_b`` renamed, ``coarsen_b`` and ``b_coords_from_a`` applied."""
    from climgen.data.coarsen import coarsen
    from climgen.data.grids import detect_grid

    data, source = recipe.data, recipe.source
    if "paths_b" not in data:
        raise ClimgenInputError(
            f"{source}: a translate recipe needs data.paths_b (the domain-B files); data.paths "
            "is domain A"
        )
    variables = data.get("variables")
    ds_a = open_data(recipe, "paths", variables).load()
    names_b = variables
    if "variables_b" in data:
        names_b = [str(v) for v in _list(data["variables_b"], "variables_b", source)]
        if variables is None or len(names_b) != len(variables):
            raise ClimgenInputError(
                f"{source}: data.variables_b {names_b} must name B's version of each of "
                f"data.variables {variables}, in order"
            )
    ds_b = open_data(recipe, "paths_b", names_b).load()
    if names_b is not None and variables is not None:
        ds_b = ds_b.rename({b: a for b, a in zip(names_b, variables) if b != a})
    if "coarsen_b" in data:
        factor = data["coarsen_b"]
        factor = tuple(_list(factor, "coarsen_b", source)) if isinstance(factor, list) else factor
        if isinstance(factor, bool) or not isinstance(factor, (int, tuple)):
            raise ClimgenInputError(f"{source}: data.coarsen_b must be an int or [fy, fx]")
        names = variables or [str(v) for v in ds_b.data_vars]
        coarse = {v: coarsen(ds_b[v], factor) for v in names}
        for v in names:
            coarse[v].attrs = dict(ds_b[v].attrs)
        attrs = dict(ds_b.attrs)
        ds_b = xr.Dataset(coarse)
        ds_b.attrs = dict(attrs, climgen_coarsened=f"conservatively coarsened by {factor}")
    flag = data.get("b_coords_from_a", False)
    if not isinstance(flag, bool):
        raise ClimgenInputError(f"{source}: data.b_coords_from_a must be true or false")
    if flag:
        name = variables[0] if variables else next(iter(ds_a.data_vars))
        grid_a, grid_b = detect_grid(ds_a[name]), detect_grid(ds_b[name])
        for dim_a, dim_b in ((grid_a.y_dim, grid_b.y_dim), (grid_a.x_dim, grid_b.x_dim)):
            if ds_a.sizes[dim_a] != ds_b.sizes[dim_b]:
                raise ClimgenInputError(
                    f"{source}: data.b_coords_from_a needs one grid shape, but A's '{dim_a}' "
                    f"has {ds_a.sizes[dim_a]} points and B's '{dim_b}' {ds_b.sizes[dim_b]} "
                    "(coarsen_b?)"
                )
            if dim_b != dim_a:
                ds_b = ds_b.rename({dim_b: dim_a})
            ds_b = ds_b.assign_coords({dim_a: ds_a[dim_a]})
    return ds_a, ds_b


def run_translate_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    run_dir: str | None = None,
    progress: bool = True,
    overrides: dict | None = None,
):
    """Fit the recipe's translator on the training fields of A and B; with held-out fields of
    both, write ``RUN_DIR/report`` (page + ``scores.json``).

    Returns ``(translator, scores or None)`` with ``scores`` the content of ``scores.json``.
    """
    import json

    from climgen.tasks.translate.translator import Translator
    from climgen.train.distributed import is_main_process

    data, source = recipe.data, recipe.source
    sample_dim = data.get("sample_dim", "time")
    members = recipe.evaluate.get("members", 1)
    seed = recipe.evaluate.get("seed", 0)
    name = recipe.model["name"]
    if members < 1:
        raise ClimgenInputError(f"{source}: evaluate.members must be ≥ 1, got {members}")
    if members > 1 and name != "augmented-cyclegan":
        raise ClimgenInputError(
            f"{source}: evaluate.members = {members} needs method augmented-cyclegan; "
            f"{name!r} is a deterministic map"
        )
    ds_a, ds_b = load_translate_domains(recipe)
    train_a, held_a = split_samples(ds_a, data, f"{source} (domain A)")
    train_b, held_b = split_samples(ds_b, data, f"{source} (domain B)")
    run_dir = prepare_run_dir(recipe, run_dir)
    translator = Translator(
        name,
        variables=data.get("variables"),
        sample_dim=sample_dim,
        normalization=data.get("normalization", "standard"),
        **recipe.model["options"],
    )
    if name == "quantile-mapping":
        translator.fit(train_a, train_b, run_dir=run_dir)
    else:
        train_options = {"progress": progress, **recipe.train, **(overrides or {})}
        translator.fit(train_a, train_b, run_dir=run_dir, resume=resume, **train_options)
    if not is_main_process():
        return translator, None
    too_few = [
        label
        for label, held in (("A", held_a), ("B", held_b))
        if held is None or held.sizes[sample_dim] < 4
    ]
    if too_few:
        if progress:
            print(
                f"no report: domain(s) {', '.join(too_few)} have fewer than 4 held-out fields "
                "(set data.train_fraction < 1)"
            )
        return translator, None
    page = translator.report(
        held_a,
        held_b,
        Path(run_dir) / "report",
        fit_a=train_a,
        fit_b=train_b,
        members=members if name == "augmented-cyclegan" else None,
        seed=seed,
    )
    scores = json.loads((page.parent / "scores.json").read_text())
    if progress:
        for cand, per_var in scores["scores"].items():
            text = ", ".join(
                f"{v}: lsd {d['spectrum_lsd']['value']:.3g}, W1 {d['wasserstein1']['value']:.3g}"
                f", cov {d['covariance_error']['value']:.3g}"
                for v, d in per_var.items()
            )
            print(f"{cand:>32}: {text}")
        print(page)
    return translator, scores


register_recipe_task(
    RecipeTask(
        name="translate",
        model_key="method",
        check_model=check_translate_method,
        run=run_translate_recipe,
        data_keys=TRANSLATE_DATA_KEYS,
        path_keys=("paths_b",),
        evaluate_keys=TRANSLATE_EVALUATE_KEYS,
        description="domain translation: map fields of climate A onto climate B, scored "
        "against held-out B next to quantile mapping",
    )
)
