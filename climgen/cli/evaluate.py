"""``climgen evaluate GENERATED REFERENCE -o DIR``: judge generated fields against reference
fields; write an HTML report and metrics.json."""

from __future__ import annotations

import argparse

from climgen.cli._argtypes import add_quiet, positive_int
from climgen.cli._output import add_overwrite, check_output

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  climgen evaluate samples.nc test.nc -o report/
  climgen evaluate samples.nc test.nc -o report/ --variables tas omega500 --max-samples 500
  python -m climgen evaluate gen.zarr ref.nc -o report/ --quiet
  climgen evaluate samples.nc test_run.nc -o report/ --train train.nc

Each distance (spectrum, value distribution, covariance, structure functions) is printed
next to its noise floor — the same distance between the two halves of the reference — and
judged "matches" when it is at most 2x the floor. With --train, two reference rows are
added: the training data itself and an IAAFT surrogate of it (same spectrum and row-wise
value distribution, random phases), with the shift-aware memorisation ratio; a model is
informative where it beats the surrogate. The report folder holds index.html, one PNG per
figure and metrics.json (machine readable).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to ``subparsers``; sets ``func=run``."""
    ev = subparsers.add_parser(
        "evaluate",
        help="judge generated fields against reference fields; write an HTML report",
        description="Compare generated fields with reference fields on the same grid and "
        "write an HTML report with figures and metrics.json.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_quiet(ev)
    ev.add_argument("generated", metavar="GENERATED", help="netCDF file or zarr store")
    ev.add_argument("reference", metavar="REFERENCE", help="netCDF file or zarr store")
    ev.add_argument(
        "-o", "--output", metavar="DIR", required=True, help="report folder (created if needed)"
    )
    add_overwrite(ev)
    ev.add_argument(
        "--variables",
        nargs="+",
        metavar="NAME",
        help="variables to evaluate (default: every gridded variable of GENERATED)",
    )
    ev.add_argument(
        "--max-samples",
        type=positive_int,
        metavar="N",
        help="use at most N samples of each set, evenly spaced (default: all)",
    )
    ev.add_argument(
        "--chunk-size",
        type=positive_int,
        metavar="N",
        help="evaluate N samples at a time in bounded memory (large sets; default: in memory)",
    )
    ev.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --chunk-size: summarise the chunks on the dask.distributed cluster at "
        "ADDRESS (e.g. tcp://host:8786; needs climgen[dask])",
    )
    ev.add_argument(
        "--sample-dim",
        metavar="DIM",
        help="dim that indexes samples (default: all non-spatial dims, stacked)",
    )
    ev.add_argument(
        "--train",
        metavar="FILE",
        help="the model's training data (netCDF/zarr): adds the reference rows 'training "
        "data' and 'surrogate (IAAFT)' and the memorisation ratio",
    )
    ev.set_defaults(func=run)
    return ev


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report folder, print its index.html; returns the exit status."""
    from climgen.report.evaluate import evaluate

    out = check_output(
        args.output, args.generated, args.reference, overwrite=args.overwrite, folder=True
    )
    report = evaluate(
        args.generated,
        args.reference,
        variables=args.variables,
        sample_dim=args.sample_dim,
        max_samples=args.max_samples,
        chunk_size=args.chunk_size,
        client=args.scheduler,
        progress=not args.quiet,
        train=args.train,
    )
    index = report.to_html(out, overwrite=True)  # check_output above refused what it must
    if not args.quiet:
        print(report.summary())
    print(index)
    return 0
