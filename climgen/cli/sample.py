"""``climgen sample RUN_DIR -n N -o FILE``: draw fields from a trained emulator."""

from __future__ import annotations

import argparse

from climgen.cli._argtypes import add_quiet, positive_int
from climgen.cli._output import add_overwrite, check_output

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  climgen sample runs/rbc_wgangp -n 512 -o samples.nc
  climgen sample runs/rbc_wgangp -n 64 -o samples.nc --seed 3 --which best
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sample`` subcommand to ``subparsers``; sets ``func=run``."""
    sample = subparsers.add_parser(
        "sample",
        help="draw fields from a trained emulator",
        description="Draw N fields from the model in RUN_DIR; write netCDF (or .zarr).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_quiet(sample)
    sample.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `climgen train`")
    sample.add_argument(
        "-n", type=positive_int, required=True, metavar="N", help="number of fields"
    )
    sample.add_argument("-o", "--output", required=True, metavar="FILE", help="output .nc or .zarr")
    add_overwrite(sample)
    sample.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    sample.add_argument(
        "--raw",
        action="store_true",
        help="skip the run's spectral calibration (spectral_calibration.json), if it has one",
    )
    sample.add_argument(
        "--which",
        choices=("latest", "best"),
        default="latest",
        help="checkpoint to use (default: %(default)s)",
    )
    sample.set_defaults(func=run)
    return sample


def run(args: argparse.Namespace) -> int:
    """Draw ``args.n`` fields, write ``args.output``, print its path; returns the exit status."""
    from climgen.data.io import write_fields
    from climgen.tasks.emulate.emulator import Emulator

    check_output(args.output, args.run_dir, overwrite=args.overwrite)
    emulator = Emulator.load(args.run_dir, which=args.which)
    samples = emulator.sample(args.n, seed=args.seed, calibrated=False if args.raw else None)
    print(write_fields(samples, args.output))
    return 0
