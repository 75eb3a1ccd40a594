"""``climgen fill``: fill the gaps of observations with a trained run or a baseline method.

The main ``climgen`` parser calls :func:`add_parser`, which sets ``func=run`` on the parsed
namespace.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from climgen.cli._argtypes import add_quiet, positive_int
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
  climgen fill runs/fill_oi hadcrut_1893.nc -o filled.nc --days 1893-08-15 1893-08-16
  climgen fill runs/fill_oi hadcrut4.nc -o filled.nc --days 1877-09 --nugget ml

OBS as it comes: for a run trained on anomalies (recipe `anomalies: true`, RUN/climatology.nc)
absolute observations are recognised (--values auto), regridded to the run's lat/lon grid
when on another one, filled as anomalies, and written as both (<var>, <var>_anomaly).
--days fills only those fields (dates of the time coordinate, or 0-based positions); the
other fields of OBS still serve as context for a run with context > 0.

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
    add_quiet(parser, help="no progress bar, only the output path")
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
    parser.add_argument(
        "--mask-variable", metavar="VAR", help="the mask variable, when --mask FILE has several"
    )
    parser.add_argument(
        "--days",
        nargs="+",
        metavar="DAY",
        help="fill only these fields: dates of the time coordinate or 0-based positions",
    )
    parser.add_argument(
        "--values",
        choices=("auto", "absolute", "anomalies"),
        default="auto",
        help="for a run trained on anomalies: are OBS absolute values or anomalies from the "
        "run's climatology (default: %(default)s, decided from the data)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="CELLS",
        help="partialconv: core tile in grid cells (0: never tile; default: from memory)",
    )
    parser.add_argument(
        "--tile-halo",
        type=int,
        default=None,
        metavar="CELLS",
        help="partialconv: context cells around each tile (default: the net's receptive "
        "radius, which makes the tiled fill equal the untiled one)",
    )
    parser.add_argument(
        "--nugget",
        type=_nugget,
        metavar="ml|auto|NUMBER",
        help="optimal interpolation (or a run's OI prior): the observation-error nugget of "
        "this fill: 'ml' estimates it, with the covariance's amplitude, from the observed "
        "cells by marginal likelihood (for real observations and a run trained on simulated "
        "fields); a number is tau^2 over the mean learned variance (default: the run's)",
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="also write the gap-filling report page (with --mask: scores on the hidden cells)",
    )
    parser.set_defaults(func=run)
    return parser


def _day(text: str):
    """A --days item: an integer is a 0-based position, anything else a time label."""
    try:
        return int(text)
    except ValueError:
        return text


def _nugget(text: str):
    """A --nugget value: 'ml', 'auto' or a number."""
    if text in ("ml", "auto"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'ml', 'auto' or a number, not {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Handler of ``climgen fill``; returns the exit status."""
    from climgen.data.io import write_fields
    from climgen.data.masks import load_mask
    from climgen.tasks.fill.infiller import Infiller
    from climgen.tasks.fill.methods import fill_method_names

    check_output(args.output, args.obs, args.mask, args.model, overwrite=args.overwrite)
    model = Path(args.model)
    if model.is_dir():
        infiller = Infiller.load(model)
        if args.variable and args.variable != infiller.variable:
            raise ClimgenInputError(
                f"the run in {model} fills '{infiller.variable}', not '{args.variable}'"
            )
    elif args.model in fill_method_names(trained=False):
        infiller = Infiller(args.model, variable=args.variable)
    else:
        raise ClimgenInputError(
            f"MODEL {args.model!r} is neither a run directory nor a baseline method "
            f"({', '.join(fill_method_names(trained=False))}); "
            f"{', '.join(fill_method_names(trained=True))} need a trained run dir"
        )
    if args.nugget is not None:
        infiller.set_nugget(args.nugget)
    if args.mask_variable and not args.mask:
        raise ClimgenInputError("--mask-variable names a variable of --mask FILE: give --mask")
    mask = load_mask(args.mask, args.mask_variable) if args.mask else None
    days = None if args.days is None else [_day(d) for d in args.days]
    out = infiller.fill(
        args.obs,
        members=args.members,
        mask=mask,
        seed=args.seed,
        at=days,
        values=args.values,
        progress=not args.quiet,
        tile_size=args.tile_size,
        tile_halo=args.tile_halo,
    )
    if args.report:  # before the output is written: a report that fails leaves no output
        from climgen.tasks.fill.cross_validation import cross_validation_report, filled_report

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
    if args.quiet:
        print(path)
    else:
        names = ", ".join(map(str, out.data_vars))
        print(f"wrote {path} ({infiller.method}; variables {names})")
    return 0
