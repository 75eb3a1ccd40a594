"""YAML recipes: one file describes a whole run (data, family, training, evaluation).

Example (``recipes/emulate_rbc_wgangp.yaml``)::

    make_data:                 # the commands that make the data, run in the clone's root
      - climgen data rbc --seed 11 --snapshots 260 -o data/rbc_ra2e6_seed11.nc
    task: emulate
    data:
      paths: ../data/rbc_ra2e6_seed11.nc   # relative to this file; or "bundled:NAME"
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
with ``yaml.safe_load``: no code in a recipe is ever executed (``make_data`` is only shown to
the user, never run). Relative paths are resolved against the recipe's folder.

``make_data`` lists the shell commands that make the recipe's data files (``climgen data ...
-o FILE``). Reading a recipe does not need its data; running it does: after the task has
checked the recipe's values, a missing data file stops the run with an error naming the
recipe, the file and the command whose ``-o`` writes a file of that name — raised where the
task opens the file (:func:`open_data`, :func:`data_paths`); :func:`check_data_files` runs the
same check up front.
"""

from __future__ import annotations

import difflib
import glob
import importlib
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from climgen.errors import ClimgenInputError

__all__ = [
    "Recipe",
    "RecipeTask",
    "register_recipe_task",
    "available_recipe_tasks",
    "load_recipe",
    "run_recipe",
    "resolve_data_path",
    "check_data_files",
    "data_paths",
    "open_data",
    "split_samples",
    "prepare_run_dir",
    "check_resume",
    "suggest",
]

_COMMON_SECTIONS = {"make_data", "task", "data", "train", "evaluate", "run_dir"}
_COMMON_DATA_KEYS = frozenset(
    {"paths", "variables", "sample_dim", "train_fraction", "normalization"}
)
_MODEL_KEYS = {"name", "options"}
# Task modules register themselves on import; imported lazily so that reading a recipe does
# not import every task.
_BUILTIN_TASK_MODULES = (
    "climgen.tasks.emulate.recipe",
    "climgen.tasks.fill.recipe",
    "climgen.tasks.downscale.recipe",
    "climgen.tasks.translate.recipe",
)


@dataclass(frozen=True)
class RecipeTask:
    """What a recipe of one task may hold, how its model is checked and how it runs.

    ``model_key`` names the YAML section holding ``{name, options}`` of the model (``family``
    for emulation, ``method`` for the other tasks); ``data_keys`` are the keys the task adds to
    the common ``data`` keys (paths, variables, sample_dim, train_fraction, normalization);
    ``path_keys`` are data keys holding a path or list of paths, resolved like ``paths``;
    ``check_model(name, options)`` raises :class:`ClimgenInputError` listing the valid names;
    ``run(recipe, *, resume, run_dir, progress, overrides)`` returns ``(model, report_or_None)``;
    ``evaluate_keys`` are the keys of the ``evaluate`` section: a set (integer values) or a
    mapping key → type (``int``, ``bool``, ``float``).
    """

    name: str
    model_key: str
    check_model: Callable[[str, dict], None]
    run: Callable[..., tuple[Any, Any]]
    data_keys: frozenset = frozenset()
    path_keys: tuple[str, ...] = ()
    evaluate_keys: frozenset | dict = frozenset({"n_samples", "seed"})
    description: str = ""


_TASKS: dict[str, RecipeTask] = {}


def register_recipe_task(task: RecipeTask) -> RecipeTask:
    """Make ``task: NAME`` valid in recipes (re-registering a name replaces it)."""
    _TASKS[task.name] = task
    return task


def _load_builtin_tasks() -> None:
    for module in _BUILTIN_TASK_MODULES:
        importlib.import_module(module)


def available_recipe_tasks() -> list[str]:
    """Names valid as ``task:`` in a recipe."""
    _load_builtin_tasks()
    return sorted(_TASKS)


@dataclass
class Recipe:
    """A parsed, validated recipe (paths already resolved).

    ``model`` is the ``{name, options}`` mapping of the recipe's ``family`` (emulation) or
    ``method`` (fill, downscale, translate) section.
    """

    task: str
    data: dict
    model: dict
    train: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    run_dir: str = "runs/recipe"
    source: str = ""
    make_data: list[str] = field(default_factory=list)

    @property
    def family(self) -> dict:
        """The emulation recipe's ``family`` section (an alias of :attr:`model`)."""
        return self.model

    def to_dict(self) -> dict:
        """The recipe as YAML would hold it (paths resolved)."""
        _load_builtin_tasks()
        key = _TASKS[self.task].model_key if self.task in _TASKS else "model"
        return {
            **({"make_data": list(self.make_data)} if self.make_data else {}),
            "task": self.task,
            "data": self.data,
            key: self.model,
            "train": self.train,
            "evaluate": self.evaluate,
            "run_dir": self.run_dir,
        }


def suggest(key: str, valid) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or ``""``."""
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
                f"{where}: unknown key '{key}' in '{section}'{suggest(str(key), valid)}; "
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


def _resolve_paths(value, name: str, base: Path, where: str) -> list[str]:
    paths = [value] if isinstance(value, str) else _expect(value, list, name, where)
    return [resolve_data_path(_expect(p, str, name, where), base) for p in paths]


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
        raise ClimgenInputError(
            f"{where}: a recipe is a YAML mapping of sections {sorted(_COMMON_SECTIONS)} and "
            "the model section ('family' or 'method')"
        )
    if "task" not in raw:
        raise ClimgenInputError(f"{where}: missing section 'task'")
    task_name = _expect(raw["task"], str, "task", where)
    tasks = available_recipe_tasks()
    if task_name not in tasks:
        raise ClimgenInputError(
            f"{where}: unknown task {task_name!r}{suggest(task_name, tasks)}; "
            f"valid tasks: {', '.join(tasks)}"
        )
    task = _TASKS[task_name]
    _check_keys("recipe", raw, _COMMON_SECTIONS | {task.model_key}, where)
    for required in ("data", task.model_key):
        if required not in raw:
            raise ClimgenInputError(f"{where}: missing section '{required}' (task {task_name})")
    base = path.parent.resolve()

    data = dict(raw["data"] or {})
    _check_keys("data", data, _COMMON_DATA_KEYS | task.data_keys, where)
    if "paths" not in data:
        raise ClimgenInputError(f"{where}: 'data' needs 'paths' (a file, a glob or a list)")
    for key in ("paths", *task.path_keys):
        if key in data:
            data[key] = _resolve_paths(data[key], f"data.{key}", base, where)
    if "variables" in data:
        v = data["variables"]
        data["variables"] = [v] if isinstance(v, str) else _expect(v, list, "data.variables", where)
    if "train_fraction" in data:
        frac = _expect(data["train_fraction"], (int, float), "data.train_fraction", where)
        if not 0 < frac <= 1:
            raise ClimgenInputError(f"{where}: data.train_fraction must be in (0, 1], got {frac}")

    key = task.model_key
    model = dict(_expect(raw[key] or {}, dict, key, where))
    _check_keys(key, model, _MODEL_KEYS, where)
    _expect(model.get("name"), str, f"{key}.name", where)
    model["options"] = dict(_expect(model.get("options") or {}, dict, f"{key}.options", where))
    try:
        task.check_model(model["name"], model["options"])
    except ClimgenInputError as exc:
        raise ClimgenInputError(f"{where}: in '{key}': {exc}") from exc

    train = dict(_expect(raw.get("train") or {}, dict, "train", where))
    from climgen.train import TrainConfig

    try:
        TrainConfig.from_dict(train)
    except ClimgenInputError as exc:
        raise ClimgenInputError(f"{where}: in 'train': {exc}") from exc

    evaluate = dict(raw.get("evaluate") or {})
    types = (
        task.evaluate_keys
        if isinstance(task.evaluate_keys, dict)
        else dict.fromkeys(task.evaluate_keys, int)
    )
    _check_keys("evaluate", evaluate, types, where)
    for k in evaluate:
        _expect(evaluate[k], types[k], f"evaluate.{k}", where)
        if types[k] is int and evaluate[k] < 0:  # counts, seeds, indices: checked before
            raise ClimgenInputError(  # training, not when the report is made
                f"{where}: 'evaluate.{k}' must be an integer ≥ 0, got {evaluate[k]!r}"
            )

    make_data = raw.get("make_data") or []
    make_data = [make_data] if isinstance(make_data, str) else make_data
    for cmd in _expect(make_data, list, "make_data", where):
        _expect(cmd, str, "make_data", where)

    run_dir = _expect(raw.get("run_dir", f"runs/{path.stem}"), str, "run_dir", where)
    run_dir = str(Path(run_dir) if Path(run_dir).is_absolute() else (base / run_dir).resolve())
    return Recipe(
        task_name, data, model, train, evaluate, run_dir, source=where, make_data=make_data
    )


def _command_output(cmd: str) -> Path | None:
    """The file a ``make_data`` command writes (its ``-o`` / ``--output`` value), or None."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word in ("-o", "--output") and i + 1 < len(words):
            return Path(words[i + 1])
        if word.startswith("--output="):
            return Path(word.split("=", 1)[1])
    return None


def _missing_file_error(recipe: Recipe, key: str, path: str) -> ClimgenInputError:
    """The error for a data file that is not there: names the recipe, the file and the
    ``make_data`` command whose output has the file's name (with the folder to run it in)."""
    where = f"{recipe.source}: data.{key} file {path} does not exist"
    for cmd in recipe.make_data:
        out = _command_output(cmd)
        if out is None or out.name != Path(path).name:
            continue
        target, folder = Path(path), None
        if not out.is_absolute() and target.parts[-len(out.parts) :] == out.parts:
            folder = Path(*target.parts[: -len(out.parts)]) or Path(".")
        run_in = f" (run it in {folder})" if folder is not None else ""
        return ClimgenInputError(f"{where}; make it with:\n  {cmd}{run_in}")
    hint = (
        "; the recipe's make_data commands: " + " ; ".join(recipe.make_data)
        if recipe.make_data
        else "; the recipe names no command that makes it (add one under 'make_data')"
    )
    return ClimgenInputError(where + hint)


def _exists(path: str) -> bool:
    """Whether ``path`` exists (a glob: whether it matches something)."""
    return bool(glob.glob(path) if any(c in path for c in "*?[") else os.path.exists(path))


def data_paths(recipe: Recipe, key: str = "paths") -> list[str]:
    """The files of the recipe's ``data.<key>``, each checked to exist: a missing one stops
    with an error naming the recipe, the file and the ``make_data`` command that makes it."""
    paths = recipe.data.get(key) or []
    for path in paths:
        if not _exists(path):
            raise _missing_file_error(recipe, key, path)
    return paths


def open_data(recipe: Recipe, key: str = "paths", variables=None):
    """:func:`climgen.data.io.open_fields` of :func:`data_paths` ``(recipe, key)``: where a
    task opens its data, so that a missing file is the recipe's clear error."""
    from climgen.data.io import open_fields

    return open_fields(data_paths(recipe, key), variables)


def check_data_files(recipe: Recipe) -> None:
    """Raise :class:`ClimgenInputError` for the first data file of ``recipe`` that does not
    exist; the message names the recipe, the file and the ``make_data`` command that makes it."""
    _load_builtin_tasks()
    task = _TASKS.get(recipe.task)
    for key in ("paths", *(task.path_keys if task else ())):
        data_paths(recipe, key)


def split_samples(ds, data: dict, source: str):
    """Split ``ds`` along ``data['sample_dim']`` (default ``time``): the first
    ``train_fraction`` of the samples train, the rest (or ``None``) is held out."""
    sample_dim = data.get("sample_dim", "time")
    if sample_dim not in ds.dims:
        raise ClimgenInputError(
            f"{source}: sample_dim '{sample_dim}' is not a dim of the data (dims: {dict(ds.sizes)})"
        )
    n = ds.sizes[sample_dim]
    n_train = max(1, int(round(n * float(data.get("train_fraction", 1.0)))))
    train = ds.isel({sample_dim: slice(0, n_train)})
    held_out = ds.isel({sample_dim: slice(n_train, None)}) if n_train < n else None
    return train, held_out


def prepare_run_dir(recipe: Recipe, run_dir: str | os.PathLike | None = None) -> Path:
    """The run folder (``run_dir`` overrides the recipe's); on the main process it is
    created and gets the resolved recipe as ``recipe.yaml``."""
    from climgen.train.distributed import is_main_process

    path = Path(run_dir or recipe.run_dir)
    if is_main_process():  # under torchrun only rank 0 writes files
        path.mkdir(parents=True, exist_ok=True)
        (path / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return path


# Keys a resumed run may change: how long and how it is run, logged and reported, not what
# it learns (``--resume --max-steps N`` continues a run further).
RESUMABLE_CHANGES = (
    "make_data",
    "run_dir",
    "evaluate",
    "train.max_steps",
    "train.max_time_s",
    "train.time_clock",
    "train.progress",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_last",
    "train.num_workers",
    "train.tensorboard",
    "train.device",
)


def _flat(value, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"seed": 0}}`` → ``{"train.seed": 0}`` (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(saved: dict, recipe: dict) -> list[str]:
    """``"key: old → new"`` for every recipe key that differs from ``saved``, except the
    :data:`RESUMABLE_CHANGES`."""
    old, new = _flat(saved), _flat(recipe)
    free = tuple(RESUMABLE_CHANGES)
    return [
        f"{k}: {old.get(k, '(absent)')!r} → {new.get(k, '(absent)')!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not any(k == f or k.startswith(f + ".") for f in free)
    ]


def check_resume(recipe: Recipe, run_dir: str | os.PathLike) -> None:
    """Refuse to resume ``run_dir`` with a recipe whose learning keys differ from the
    ``recipe.yaml`` it was trained with; the error lists them."""
    saved_path = Path(run_dir) / "recipe.yaml"
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, yaml.YAMLError):
        return  # nothing recorded (a run from the Python API): nothing to compare
    if not isinstance(saved, dict):
        return
    changes = changed_keys(saved, recipe.to_dict())
    if changes:
        raise ClimgenInputError(
            f"{recipe.source}: --resume of {run_dir} with other values than it was trained "
            f"with ({saved_path}): {'; '.join(changes)}. Restore them, start a new run_dir, "
            "or pass --force to continue with the new values"
        )


def run_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    run_dir: str | None = None,
    progress: bool = True,
    overrides: dict | None = None,
    force: bool = False,
):
    """Run the recipe's task: train its model, then (when data are held out) score it and
    write the report into the run folder.

    Returns ``(model, report_or_None)``; the resolved recipe is saved as
    ``RUN_DIR/recipe.yaml``. ``resume=True`` first compares the recipe with that file and
    stops, listing the changed keys, unless ``force`` (see :func:`check_resume`).
    """
    _load_builtin_tasks()
    if recipe.task not in _TASKS:
        raise ClimgenInputError(
            f"{recipe.source}: unknown task {recipe.task!r}; valid tasks: "
            f"{', '.join(sorted(_TASKS))}"
        )
    if resume and not force:
        check_resume(recipe, run_dir or recipe.run_dir)
    # The task checks the recipe's values first (cheap), then opens the data with
    # open_data / data_paths: a missing file is an error naming the recipe and its make_data.
    return _TASKS[recipe.task].run(
        recipe, resume=resume, run_dir=run_dir, progress=progress, overrides=overrides
    )
