"""YAML recipes: one file describes a whole run (data, family, training, evaluation).

Example (``recipes/emulate_rbc_wgangp.yaml``)::

    task: emulate
    data:
      paths: ../../shared/data/rbc_ra2e6_train.nc   # relative to this file; or "bundled:rbc"
      variables: [b]
      sample_dim: time
      train_fraction: 0.8     # first 80 % trains, the rest is the held-out reference
    family:
      name: gan
      options: {loss: wgan-gp, latent_dim: 64}
    train: {max_steps: 3000, batch_size: 32, seed: 0}
    evaluate: {n_samples: 52}
    run_dir: ../runs/rbc_wgangp

Every key is checked: a typo or a wrong type stops with an error naming the key and listing
the valid ones (misspelt options silently ignored are a known trap of peer tools). YAML is read
with ``yaml.safe_load``: no code in a recipe is ever executed. Relative paths are resolved
against the recipe's folder.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from climgen.errors import ClimgenInputError

__all__ = ["Recipe", "load_recipe", "run_recipe", "resolve_data_path"]

_SECTIONS = {"task", "data", "family", "train", "evaluate", "run_dir"}
_DATA_KEYS = {"paths", "variables", "sample_dim", "train_fraction", "normalization"}
_FAMILY_KEYS = {"name", "options"}
_EVALUATE_KEYS = {"n_samples", "seed"}
_TASKS = ("emulate",)


@dataclass
class Recipe:
    """A parsed, validated recipe (paths already resolved)."""

    task: str
    data: dict
    family: dict
    train: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    run_dir: str = "runs/recipe"
    source: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("source")
        return out


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(section: str, mapping, valid, where: str) -> None:
    if not isinstance(mapping, dict):
        raise ClimgenInputError(
            f"{where}: '{section}' must be a mapping, got {type(mapping).__name__}"
        )
    for key in mapping:
        if key not in valid:
            raise ClimgenInputError(
                f"{where}: unknown key '{key}' in '{section}'{_suggest(str(key), valid)}; "
                f"valid keys: {', '.join(sorted(valid))}"
            )


def _expect(value, types, name: str, where: str):
    types = types if isinstance(types, tuple) else (types,)
    # bool is an int in Python; a recipe's `true` is never a number.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        raise ClimgenInputError(
            f"{where}: '{name}' must be {names}, got {value!r} ({type(value).__name__})"
        )
    return value


def resolve_data_path(path: str, base: Path) -> str:
    """``bundled:NAME`` → the packaged sample; relative paths → against ``base``."""
    if path.startswith("bundled:"):
        from climgen.data.bundled import bundled_path

        return str(bundled_path(path.split(":", 1)[1]))
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (base / p).resolve())


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a YAML recipe; errors name the file and the offending key."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ClimgenInputError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ClimgenInputError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ClimgenInputError(f"{where}: a recipe is a YAML mapping of sections {_SECTIONS}")
    _check_keys("recipe", raw, _SECTIONS, where)
    for required in ("task", "data", "family"):
        if required not in raw:
            raise ClimgenInputError(f"{where}: missing section '{required}'")
    task = _expect(raw["task"], str, "task", where)
    if task not in _TASKS:
        raise ClimgenInputError(f"{where}: unknown task {task!r}; valid tasks: {', '.join(_TASKS)}")
    base = path.parent.resolve()

    data = dict(raw["data"] or {})
    _check_keys("data", data, _DATA_KEYS, where)
    if "paths" not in data:
        raise ClimgenInputError(f"{where}: 'data' needs 'paths' (a file, a glob or a list)")
    paths = data["paths"]
    paths = [paths] if isinstance(paths, str) else _expect(paths, list, "data.paths", where)
    data["paths"] = [resolve_data_path(_expect(p, str, "data.paths", where), base) for p in paths]
    if "variables" in data:
        v = data["variables"]
        data["variables"] = [v] if isinstance(v, str) else _expect(v, list, "data.variables", where)
    if "train_fraction" in data:
        frac = _expect(data["train_fraction"], (int, float), "data.train_fraction", where)
        if not 0 < frac <= 1:
            raise ClimgenInputError(f"{where}: data.train_fraction must be in (0, 1], got {frac}")

    family = dict(raw["family"] or {})
    _check_keys("family", family, _FAMILY_KEYS, where)
    _expect(family.get("name"), str, "family.name", where)
    family["options"] = dict(_expect(family.get("options") or {}, dict, "family.options", where))
    from climgen.families.base import available_families, check_family_options

    names = available_families()
    if family["name"] not in names:
        raise ClimgenInputError(
            f"{where}: unknown family {family['name']!r}{_suggest(family['name'], names)}; "
            f"valid families: {', '.join(names)}"
        )
    reserved = {"channels", "shape", "periodic"} & set(family["options"])
    if reserved:
        raise ClimgenInputError(
            f"{where}: family.options {sorted(reserved)} are set from the data; remove them"
        )
    try:
        check_family_options(family["name"], family["options"])
    except ClimgenInputError as exc:
        raise ClimgenInputError(f"{where}: in 'family.options': {exc}") from exc

    train = dict(_expect(raw.get("train") or {}, dict, "train", where))
    from climgen.train import TrainConfig

    try:
        TrainConfig.from_dict(train)
    except ClimgenInputError as exc:
        raise ClimgenInputError(f"{where}: in 'train': {exc}") from exc

    evaluate = dict(raw.get("evaluate") or {})
    _check_keys("evaluate", evaluate, _EVALUATE_KEYS, where)
    for key in evaluate:
        _expect(evaluate[key], int, f"evaluate.{key}", where)

    run_dir = _expect(raw.get("run_dir", f"runs/{path.stem}"), str, "run_dir", where)
    run_dir = str(Path(run_dir) if Path(run_dir).is_absolute() else (base / run_dir).resolve())
    return Recipe(task, data, family, train, evaluate, run_dir, source=where)


def run_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    run_dir: str | None = None,
    progress: bool = True,
    overrides: dict | None = None,
):
    """Train the recipe's model, then (when data are held out) sample and write the report.

    Returns ``(emulator, report_or_None)``. The resolved recipe is saved as
    ``RUN_DIR/recipe.yaml``.
    """
    from climgen.data.io import open_fields
    from climgen.tasks.emulate import Emulator

    data = recipe.data
    sample_dim = data.get("sample_dim", "time")
    ds = open_fields(data["paths"], data.get("variables"))
    if sample_dim not in ds.dims:
        raise ClimgenInputError(
            f"{recipe.source}: sample_dim '{sample_dim}' is not a dim of the data "
            f"(dims: {dict(ds.sizes)})"
        )
    n = ds.sizes[sample_dim]
    n_train = max(1, int(round(n * float(data.get("train_fraction", 1.0)))))
    train_ds = ds.isel({sample_dim: slice(0, n_train)})
    held_out = ds.isel({sample_dim: slice(n_train, None)}) if n_train < n else None
    from climgen.train.distributed import is_main_process

    run_dir = Path(run_dir or recipe.run_dir)
    main = is_main_process()  # under torchrun only rank 0 writes files and evaluates
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    train_options = {"progress": progress, **recipe.train, **(overrides or {})}
    emulator = Emulator(
        recipe.family["name"],
        variables=data.get("variables"),
        sample_dim=sample_dim,
        normalization=data.get("normalization", "standard"),
        **recipe.family["options"],
    ).fit(train_ds, run_dir=run_dir, resume=resume, **train_options)
    report = None
    if main and held_out is not None and held_out.sizes[sample_dim] >= 4:
        from climgen.data.io import write_fields
        from climgen.report.evaluate import evaluate

        n_samples = recipe.evaluate.get("n_samples", held_out.sizes[sample_dim])
        samples = emulator.sample(n_samples, seed=recipe.evaluate.get("seed", 0))
        write_fields(samples, run_dir / "samples.nc")
        reference = held_out.rename({sample_dim: "sample"})
        report = evaluate(
            samples, reference, variables=emulator.variables, sample_dim="sample", progress=progress
        )
        report.to_html(run_dir / "report")
    return emulator, report
