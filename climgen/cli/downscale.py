"""``climgen downscale RUN_DIR coarse.nc -o fine.nc``: apply a trained or baseline downscaler.

The main ``climgen`` parser calls :func:`add_parser`, which sets ``func=run`` on the parsed
namespace. ``RUN_DIR`` is the directory written
by ``Downscaler.fit`` (or by ``Downscaler.calibrate_spectrum(..., run_dir=)`` for a calibrated
baseline), or the name of an interpolation baseline ("bicubic", ...) together with
``--factor``. A run dir with ``spectral_calibration.json`` applies it (before the
conservation layer) unless ``--no-calibration`` is given.
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
  climgen downscale runs/downscale-srgan coarse.nc -o fine.nc --members 8
  climgen downscale bicubic coarse.nc -o fine.nc --factor 4 --conserve additive
  climgen downscale runs/downscale-srgan coarse.nc -o fine.nc --truth fine_truth.nc --report rep
  climgen downscale runs/downscale-srgan coarse.nc -o raw.nc --no-calibration

A model trained with Downscaler(context=k) reads each field's k neighbours along the sample
dim: give it the coarse fields as one consecutive time series.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``downscale`` subcommand to ``subparsers``; sets ``func=run``."""
    p = subparsers.add_parser(
        "downscale",
        help="downscale coarse fields with a trained model or an interpolation baseline",
        description="Downscale coarse fields to the fine grid (netCDF/zarr in, netCDF out).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_quiet(p, help="no progress bar")
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="run directory of Downscaler.fit, or a "
        "baseline method name (nearest, bilinear, bicubic, lanczos)",
    )
    p.add_argument("coarse", metavar="COARSE", help="coarse input file (netCDF or zarr)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="file to write")
    add_overwrite(p)
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
        "--back-projection",
        default=None,
        metavar="N|covariance",
        help="with --conserve additive: smooth corrections before the exact layer — N "
        "Lanczos back-projection iterations, or 'covariance' (optimal interpolation under "
        "the output's own spectrum; keeps a calibrated spectrum band-limited). Default: 20 "
        "for calibrated output, else 0",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the run's spectral calibration (spectral_calibration.json), if it has one",
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
    p.add_argument(
        "--truth",
        metavar="FILE",
        default=None,
        help="fine fields the output should match (for --report)",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        default=None,
        help="score the output against --truth next to bicubic and write DIR/index.html",
    )
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Downscale ``args.coarse`` with ``args.run_dir`` and write ``args.output``."""
    from climgen.data.io import write_fields
    from climgen.tasks.downscale.downscaler import DOWNSCALE_METHODS, Downscaler

    check_output(args.output, args.coarse, args.truth, args.run_dir, overwrite=args.overwrite)
    target = str(args.run_dir)
    if (args.report is None) != (args.truth is None):
        raise ClimgenInputError("--report DIR and --truth FILE go together")
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
    back = getattr(args, "back_projection", None)
    if back is not None:
        if back != "covariance" and not back.isdigit():
            raise ClimgenInputError(
                f"--back-projection must be an integer ≥ 0 or 'covariance', got {back!r}"
            )
        model.back_projection = back if back == "covariance" else int(back)
    calibrated = False if getattr(args, "no_calibration", False) else None
    out = model.downscale(
        args.coarse,
        members=args.members,
        seed=args.seed,
        calibrated=calibrated,
        progress=not args.quiet,
    )
    path = write_fields(out, args.output)
    print(path)
    if args.report is not None:
        print(_report(model, out, args))
    return 0


def _report(model, out, args) -> Path:
    """Score ``out`` (and bicubic on the same input) against ``args.truth``; write the page."""
    from climgen.data.io import as_dataset
    from climgen.report.downscale_page import write_downscale_page
    from climgen.tasks.downscale.downscaler import Downscaler
    from climgen.tasks.downscale.scoring import compare_methods

    coarse = as_dataset(args.coarse)
    truth = as_dataset(args.truth)
    names = [v for v in out.data_vars if v in truth.data_vars and v in coarse.data_vars]
    if not names:
        raise ClimgenInputError(
            f"--truth {args.truth} has none of the downscaled variables {list(out.data_vars)}"
        )
    name = names[0]
    outputs = {}
    if model.method != "bicubic":
        base = Downscaler(model.factor, "bicubic", conserve=model.conserve or False)
        outputs["bicubic"] = base.downscale(coarse[[name]])[name]
    outputs[model.method] = out[name]
    scores = compare_methods(truth[name], outputs, coarse[name], model.factor)
    return write_downscale_page(
        Path(args.report) / "index.html",
        truth=truth[name],
        coarse=coarse[name],
        outputs=outputs,
        scores=scores,
        factor=model.factor,
        title=f"Downscaling ×{model.factor} ({model.method}): {name}",
        provenance={"coarse": str(args.coarse), "truth": str(args.truth), "run": str(args.run_dir)},
    )
