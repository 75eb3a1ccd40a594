"""``climgen train RECIPE``: train the model a YAML recipe describes; evaluate it on held-out
data."""

from __future__ import annotations

import argparse
from pathlib import Path

from climgen.cli._argtypes import add_quiet, positive_int

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  climgen train recipes/emulate_rbc_wgangp.yaml
  climgen train recipes/emulate_rbc_vae.yaml --run-dir runs/vae1 --max-steps 200
  climgen train recipes/emulate_rbc_wgangp.yaml --resume     # continue after a kill

The run directory (run_dir in the recipe) gets the resolved recipe, normaliser statistics,
atomic checkpoints (safetensors + model card), metrics.csv and, when the recipe holds data
out (data.train_fraction < 1), samples.nc and report/index.html.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``subparsers``; sets ``func=run``."""
    train = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train the model a recipe describes; evaluate it on held-out data.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_quiet(train)
    train.add_argument("recipe", metavar="RECIPE", help="YAML recipe (see recipes/)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest valid checkpoint of the run directory",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even if the recipe's learning keys (batch size, model "
        "options, data, ...) differ from the run's recipe.yaml",
    )
    train.add_argument("--run-dir", metavar="DIR", help="override the recipe's run_dir")
    train.add_argument(
        "--max-steps", type=positive_int, metavar="N", help="override train.max_steps"
    )
    train.set_defaults(func=run)
    return train


def run(args: argparse.Namespace) -> int:
    """Train (or resume), print the run directory and the report summary; the exit status."""
    from climgen.tasks.recipe import load_recipe, run_recipe
    from climgen.train.distributed import is_main_process

    recipe = load_recipe(args.recipe)
    overrides = {"max_steps": args.max_steps} if args.max_steps else {}
    _, report = run_recipe(
        recipe,
        resume=args.resume,
        run_dir=args.run_dir,
        progress=not args.quiet,
        overrides=overrides,
        force=args.force,
    )
    if not is_main_process():
        return 0
    run_dir = Path(args.run_dir or recipe.run_dir)
    print(f"trained {recipe.model['name']} ({recipe.task}) in {run_dir}")
    if report is not None and not args.quiet and hasattr(report, "summary"):
        print(report.summary())
    index = run_dir / "report" / "index.html"
    if index.is_file():
        print(index)
    return 0
