"""``climgen translate``: translate domain-A fields with a trained translator, optionally with
the report page against domain-B fields.

The main ``climgen`` parser calls :func:`add_parser`, which sets ``func=run`` on the parsed
namespace.
"""

from __future__ import annotations

import argparse

from climgen.cli._argtypes import add_quiet, positive_int
from climgen.cli._output import add_overwrite, check_output
from climgen.errors import ClimgenInputError

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  climgen translate runs/qm model_a.nc -o corrected.nc
  climgen translate runs/augcycle model_a.nc -o out.nc --members 8 --seed 1
  climgen translate runs/cyclegan a_test.nc -o out.nc --report report/ --reference b_test.nc \\
      --fit-a a_train.nc --fit-b b_train.nc

--report DIR writes DIR/index.html and DIR/scores.json: translated INPUT, untranslated INPUT
and quantile mapping, each scored against the --reference fields of domain B (spectral
log-error, W1, covariance error, KS with B's noise floor), PDFs, spectra, EOF variance, maps
and, for CycleGAN-type translators, the cycle error. Quantile mapping is fitted on --fit-a /
--fit-b (the training fields) when given, else on INPUT and the reference (in-sample).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``translate`` subcommand to ``subparsers``; sets ``func=run``."""
    parser = subparsers.add_parser(
        "translate",
        help="map fields from domain A to domain B with a trained translator",
        description="Translate the fields of INPUT (domain A) with the translator in RUN_DIR "
        "(pix2pix, CycleGAN, Augmented CycleGAN or quantile mapping, as trained by "
        "climgen.Translator(...).fit(ds_a, ds_b, run_dir=...) or a 'task: translate' recipe); "
        "write netCDF or zarr.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_quiet(parser)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of the translator")
    parser.add_argument("input", metavar="INPUT", help="domain-A fields (.nc or .zarr)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help=".nc or .zarr")
    add_overwrite(parser)
    parser.add_argument(
        "--members", type=positive_int, metavar="M", help="ensemble members (stochastic only)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    parser.add_argument("--report", metavar="DIR", help="write the report page here")
    parser.add_argument("--reference", metavar="FILE", help="domain-B fields (with --report)")
    parser.add_argument("--fit-a", metavar="FILE", help="A training fields for the baseline")
    parser.add_argument("--fit-b", metavar="FILE", help="B training fields for the baseline")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    """Run ``climgen translate`` from parsed arguments; returns the exit status."""
    from climgen.data.io import open_fields, write_fields
    from climgen.tasks.translate.translator import Translator

    if args.report and not args.reference:
        raise ClimgenInputError("--report needs --reference FILE (the domain-B fields)")
    if not args.report and (args.reference or args.fit_a or args.fit_b):
        raise ClimgenInputError("--reference, --fit-a and --fit-b go with --report DIR")
    inputs = (args.run_dir, args.input, args.reference, args.fit_a, args.fit_b)
    check_output(args.output, *inputs, overwrite=args.overwrite)
    translator = Translator.load(args.run_dir)
    ds_a = open_fields(args.input)
    out = translator.translate(ds_a, members=args.members, seed=args.seed)
    print(write_fields(out, args.output))
    if args.report:
        fit = [open_fields(p) if p else None for p in (args.fit_a, args.fit_b)]
        page = translator.report(
            ds_a,
            open_fields(args.reference),
            args.report,
            fit_a=fit[0],
            fit_b=fit[1],
            members=args.members,
            seed=args.seed,
        )
        print(page)
    return 0
