"""The ``climgen`` command line: one parser, one dispatch, one module per subcommand.

Subcommands (``climgen SUBCOMMAND --help`` for options and examples):

- ``evaluate`` (:mod:`climgen.cli.evaluate`): judge generated fields against reference
  fields; HTML report and metrics.json.
- ``demo`` (:mod:`climgen.cli.demo`): train a small emulator on the bundled data and write its
  report; ``--synthetic`` shows a failing report without training.
- ``train`` (:mod:`climgen.cli.train`): train the model a YAML recipe describes.
- ``sample`` (:mod:`climgen.cli.sample`): draw fields from a trained emulator.
- ``translate`` (:mod:`climgen.cli.translate`): map domain-A fields to domain B.
- ``fill`` (:mod:`climgen.cli.fill`): fill the gaps of observations.
- ``downscale`` (:mod:`climgen.cli.downscale`): coarse fields to the fine grid.
- ``data rbc|heldsuarez`` (:mod:`climgen.cli.data`): make simulation data with a real solver.

Each module has ``add_parser(subparsers)``, which sets ``func`` on the parsed namespace;
:func:`main` calls it. Heavy modules (torch, matplotlib, the task wings) are imported inside
the subcommand functions, so ``climgen --help`` stays instant. Bad input (a missing file or
variable, grids that differ, NaNs, …) is reported as ``climgen: error: <message>`` with exit
status 2 and no traceback; a training stopped by SIGTERM/SIGINT exits with 128 + the signal
number; anything else is a bug and keeps its traceback. ``python -m climgen`` is the same
command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from climgen.cli import data, demo, downscale, evaluate, fill, sample, train, translate
from climgen.cli.demo import make_demo_data
from climgen.errors import ClimgenInputError, MissingDependencyError

__all__ = ["main", "build_parser", "make_demo_data", "SUBCOMMANDS"]

EXIT_INPUT_ERROR = 2

# In the order `climgen --help` lists them.
SUBCOMMANDS = {
    "evaluate": evaluate,
    "demo": demo,
    "train": train,
    "sample": sample,
    "translate": translate,
    "fill": fill,
    "downscale": downscale,
    "data": data,
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("climgen")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        import climgen

        return str(getattr(climgen, "__version__", "unknown"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``climgen`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="climgen",
        description="Deep generative models for gridded Earth-system data, judged by physics.",
        epilog="Run 'climgen SUBCOMMAND --help' for the options and examples of each subcommand.",
    )
    parser.add_argument("--version", action="version", version=f"climgen {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a training stopped by a signal (checkpoint written).

    Only a command that trained can raise it, and that command imported :mod:`climgen.train`;
    looking it up in ``sys.modules`` keeps torch out of the commands that do not train.
    """
    train_pkg = sys.modules.get("climgen.train")
    interrupted = getattr(train_pkg, "TrainingInterrupted", None)
    return interrupted is not None and isinstance(exc, interrupted)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``climgen`` and ``python -m climgen``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT_ERROR
    try:
        return args.func(args)
    except (ClimgenInputError, MissingDependencyError) as exc:
        print(f"climgen: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except Exception as exc:
        if not _interrupted(exc):
            raise
        # SIGTERM/SIGINT: the checkpoint is written; exit like the shell does.
        print(f"climgen: {exc}", file=sys.stderr)
        return 128 + exc.signum
