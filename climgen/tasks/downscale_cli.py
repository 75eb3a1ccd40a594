"""``climgen downscale RUN_DIR coarse.nc -o fine.nc``: apply a trained or baseline downscaler.

The main ``climgen`` parser calls :func:`add_downscale_parser` and dispatches ``downscale``
to :func:`run_downscale` (the parser sets ``handler``). ``RUN_DIR`` is the directory written
by ``Downscaler.fit``, or the name of an interpolation baseline ("bicubic", ...) together
with ``--factor``. Stand-alone: ``python -m climgen.tasks.downscale_cli RUN_DIR coarse.nc -o
fine.nc`` (see :func:`main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from climgen._argtypes import positive_int
from climgen.errors import ClimgenInputError, MissingDependencyError

__all__ = ["add_downscale_parser", "run_downscale", "main"]

_EXAMPLES = """\
examples:
  climgen downscale runs/downscale-srgan coarse.nc -o fine.nc --members 8
  climgen downscale bicubic coarse.nc -o fine.nc --factor 4 --conserve additive
"""


def add_downscale_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``downscale`` sub-command to ``subparsers``; sets ``handler=run_downscale``."""
    p = subparsers.add_parser(
        "downscale",
        help="downscale coarse fields with a trained model or an interpolation baseline",
        description="Downscale coarse fields to the fine grid (netCDF/zarr in, netCDF out).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="run directory of Downscaler.fit, or a "
        "baseline method name (nearest, bilinear, bicubic, lanczos)",
    )
    p.add_argument("coarse", metavar="COARSE", help="coarse input file (netCDF or zarr)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="file to write")
    p.add_argument(
        "--members",
        type=positive_int,
        default=None,
        metavar="N",
        help="ensemble members (stochastic methods draw N fields)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    p.add_argument(
        "--factor",
        type=positive_int,
        default=None,
        help="refinement factor 2-8 (baselines only; a run directory knows its own)",
    )
    p.add_argument(
        "--conserve",
        choices=("none", "additive", "multiplicative"),
        default=None,
        help="conservation layer (default: none for baselines, the model's choice "
        "for run directories)",
    )
    p.add_argument(
        "--variables",
        nargs="+",
        default=None,
        metavar="VAR",
        help="variables to downscale (baselines; default: all)",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="CELLS",
        help="core tile size in coarse cells (0: never tile; default: from memory)",
    )
    p.set_defaults(handler=run_downscale)
    return p


def run_downscale(args) -> int:
    """Downscale ``args.coarse`` with ``args.run_dir`` and write ``args.output``."""
    from climgen.data.io import write_fields
    from climgen.tasks.downscale import DOWNSCALE_METHODS, Downscaler

    target = str(args.run_dir)
    if not Path(target).is_dir():
        spec = DOWNSCALE_METHODS.get(target)
        if spec is None or spec.kind != "interpolation":
            raise ClimgenInputError(
                f"RUN_DIR '{target}' is neither a directory nor a baseline method "
                "(nearest, bilinear, bicubic, lanczos)"
            )
        if args.factor is None:
            raise ClimgenInputError(f"baseline '{target}' needs --factor (2-8)")
        model = Downscaler(
            args.factor,
            target,
            conserve=args.conserve or False,
            variables=args.variables,
        )
    else:
        if args.factor is not None:
            raise ClimgenInputError(
                "--factor applies to baselines only; the run directory fixes its factor"
            )
        model = Downscaler.load(target)
        if args.conserve is not None:
            model.conserve = None if args.conserve == "none" else args.conserve
        if args.tile_size is not None:
            model.tile_size = args.tile_size
    out = model.downscale(args.coarse, members=args.members, seed=args.seed)
    path = write_fields(out, args.output)
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m climgen.tasks.downscale_cli RUN_DIR COARSE -o FILE``."""
    parser = argparse.ArgumentParser(prog="python -m climgen.tasks.downscale_cli")
    sub = parser.add_subparsers(dest="command")
    add_downscale_parser(sub)
    args = parser.parse_args(["downscale", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_downscale(args)
    except (ClimgenInputError, MissingDependencyError) as exc:
        print(f"climgen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
