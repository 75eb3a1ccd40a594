"""``climgen fill``: fill the gaps of observations with a trained run or a baseline method.

The main ``climgen`` parser calls :func:`add_parser`, which sets ``func=run`` on the parsed
namespace.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from climgen.cli._argtypes import positive_int
from climgen.cli._output import add_overwrite, check_output
from climgen.errors import ClimgenInputError

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  climgen fill runs/fill_partialconv obs.nc -o filled.nc
  climgen fill runs/fill_cvae obs.nc -o filled.nc --members 16
  climgen fill kriging obs.nc -o filled.nc --variable tas
  climgen fill zonal-mean obs.nc -o filled.nc --mask coverage_1877.nc
  climgen fill kriging obs.nc -o filled.nc --mask coverage_1877.nc --report report_dir

--report DIR writes DIR/index.html: with --mask, the cells observed in OBS but hidden by the
mask are scored (cross-validation on real observations: scores.json, error maps); without,
maps of observed / filled / spread and spectra.

MODEL is a run directory written by `climgen train` / Infiller.fit (methods partialconv, cvae)
or the name of a baseline that needs no training: kriging, nearest, zonal-mean.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``fill`` subcommand to ``subparsers``; sets ``func=run``."""
    parser = subparsers.add_parser(
        "fill",
        help="fill gaps in observations (trained run or kriging/nearest/zonal-mean)",
        description="Fill the missing (NaN) cells of gridded observations; observed cells are "
        "kept bit for bit. Writes the filled field, its spread, the mask used and, for "
        "ensemble methods, the members.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="run directory or baseline method name")
    parser.add_argument("obs", metavar="OBS", help="netCDF/zarr file of observations (NaN = gap)")
    parser.add_argument("-o", "--output", metavar="FILE", required=True, help="file to write")
    add_overwrite(parser)
    parser.add_argument(
        "--members",
        type=positive_int,
        default=16,
        help="ensemble members for ensemble methods (default: %(default)s)",
    )
    parser.add_argument("--variable", help="variable to fill (default: the only one)")
    parser.add_argument("--mask", metavar="FILE", help="extra coverage mask (1 = observed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="also write the gap-filling report page (with --mask: scores on the hidden cells)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``climgen fill``; returns the exit status."""
    from climgen.data.io import write_fields
    from climgen.data.masks import load_mask
    from climgen.tasks.fill import FILL_METHODS, TRAINED, Infiller

    check_output(args.output, args.obs, args.mask, args.model, overwrite=args.overwrite)
    model = Path(args.model)
    if model.is_dir():
        infiller = Infiller.load(model)
        if args.variable and args.variable != infiller.variable:
            raise ClimgenInputError(
                f"the run in {model} fills '{infiller.variable}', not '{args.variable}'"
            )
    elif args.model in FILL_METHODS and args.model not in TRAINED:
        infiller = Infiller(args.model, variable=args.variable)
    else:
        raise ClimgenInputError(
            f"MODEL {args.model!r} is neither a run directory nor a baseline method "
            f"(kriging, nearest, zonal-mean); {', '.join(TRAINED)} need a trained run dir"
        )
    mask = load_mask(args.mask) if args.mask else None
    out = infiller.fill(args.obs, members=args.members, mask=mask, seed=args.seed)
    if args.report:  # before the output is written: a report that fails leaves no output
        from climgen.tasks.fill_cv import cross_validation_report, filled_report

        title = f"Gap filling: {infiller.method} on {Path(args.obs).name}"
        if mask is not None:
            scores = cross_validation_report(
                {infiller.method: infiller},
                args.obs,
                mask,
                args.report,
                members=args.members,
                variable=infiller.variable or args.variable,
                seed=args.seed,
                title=title,
                notes=(
                    f"Cells observed in {Path(args.obs).name} but missing in the mask "
                    f"{Path(args.mask).name} were hidden and are scored.",
                ),
                provenance={"observations": args.obs, "mask": args.mask},
            )
            s = scores[infiller.method]
            print(f"scores on {s['n_hidden']} hidden cells: RMSE {s['rmse']:.4g}")
        else:
            filled_report(
                out,
                args.report,
                variable=infiller.variable or args.variable,
                title=title,
                provenance={"observations": args.obs},
            )
        print(Path(args.report) / "index.html")
    path = write_fields(out, args.output)
    print(f"wrote {path} ({infiller.method}; variables {', '.join(map(str, out.data_vars))})")
    return 0
