"""The ``climgen`` command line: ``demo``, ``train``, ``sample``, ``evaluate``, ``data``.

Run ``climgen --help`` or ``climgen SUBCOMMAND --help``. Bad input (a missing file or
variable, grids that differ, NaNs, …) is reported as ``climgen: error: <message>`` with exit
status 2 and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from climgen._argtypes import positive_int
from climgen.errors import ClimgenInputError, MissingDependencyError

__all__ = ["main", "build_parser", "make_demo_data"]

EXIT_INPUT_ERROR = 2

_EVALUATE_EXAMPLES = """\
examples:
  climgen evaluate samples.nc test.nc -o report/
  climgen evaluate samples.nc test.nc -o report/ --variables tas omega500 --max-samples 500
  python -m climgen evaluate gen.zarr ref.nc -o report/ --quiet

Each distance (spectrum, value distribution, covariance, structure functions) is printed
next to its noise floor — the same distance between the two halves of the reference — and
judged "matches" when it is at most 2x the floor. The report folder holds index.html,
one PNG per figure and metrics.json (machine readable).
"""

_DEMO_EXAMPLES = """\
examples:
  climgen demo
  climgen demo -o /tmp/demo --steps 400
  climgen demo --synthetic --samples 128 --size 64 256 --seed 1

By default the demo trains a small emulator (a GAN) on the bundled Rayleigh-Benard sample
(buoyancy, 32 x 128, made by `climgen data rbc`), holds out the last 20 % of the snapshots,
samples as many fields and writes the report comparing them with the held-out data: a few
minutes on a laptop CPU. With --synthetic it skips training: a reference set of Gaussian
random fields (P(k) ~ k^-3) against a deliberately wrong "generated" set (P(k) ~ k^-2, 30 %
too much variance, skewed values) — what a failing report looks like.
"""

_TRAIN_EXAMPLES = """\
examples:
  climgen train recipes/emulate_rbc_wgangp.yaml
  climgen train recipes/emulate_rbc_vae.yaml --run-dir runs/vae1 --max-steps 200
  climgen train recipes/emulate_rbc_wgangp.yaml --resume     # continue after a kill

The run directory (run_dir in the recipe) gets the resolved recipe, normaliser statistics,
atomic checkpoints (safetensors + model card), metrics.csv and, when the recipe holds data
out (data.train_fraction < 1), samples.nc and report/index.html.
"""

_SAMPLE_EXAMPLES = """\
examples:
  climgen sample runs/rbc_wgangp -n 512 -o samples.nc
  climgen sample runs/rbc_wgangp -n 64 -o samples.nc --seed 3 --which best
"""


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

    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars and no summary table"
    )

    ev = sub.add_parser(
        "evaluate",
        parents=[quiet],
        help="judge generated fields against reference fields; write an HTML report",
        description="Compare generated fields with reference fields on the same grid and "
        "write an HTML report with figures and metrics.json.",
        epilog=_EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("generated", metavar="GENERATED", help="netCDF file or zarr store")
    ev.add_argument("reference", metavar="REFERENCE", help="netCDF file or zarr store")
    ev.add_argument(
        "-o", "--output", metavar="DIR", required=True, help="report folder (created if needed)"
    )
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
        "--sample-dim",
        metavar="DIM",
        help="dim that indexes samples (default: all non-spatial dims, stacked)",
    )

    demo = sub.add_parser(
        "demo",
        parents=[quiet],
        help="end-to-end demo: train a small emulator on bundled data, write the report",
        description="Make a synthetic reference and a deliberately wrong generated set, "
        "evaluate them and write the report.",
        epilog=_DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default="climgen-demo",
        help="folder for the two netCDF files and report/ (default: %(default)s)",
    )
    demo.add_argument(
        "--samples",
        type=positive_int,
        default=64,
        metavar="N",
        help="samples in each set (default: %(default)s)",
    )
    demo.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        default=(64, 128),
        metavar=("NY", "NX"),
        help="grid size (default: 64 128)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    demo.add_argument(
        "--synthetic",
        action="store_true",
        help="no training: synthetic reference vs a deliberately wrong generated set",
    )
    demo.add_argument(
        "--steps",
        type=positive_int,
        default=600,
        metavar="N",
        help="training steps of the demo emulator (default: %(default)s)",
    )
    demo.add_argument(
        "--raw",
        action="store_true",
        help="no calibration of the trained emulator's samples (by default: per-row spectral "
        "gain, quantile map per row and spectral gain, fitted on the training split; the raw "
        "model is then reported in DIR/report-raw)",
    )

    train = sub.add_parser(
        "train",
        parents=[quiet],
        help="train a model from a YAML recipe",
        description="Train the model a recipe describes; evaluate it on held-out data.",
        epilog=_TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("recipe", metavar="RECIPE", help="YAML recipe (see recipes/)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest valid checkpoint of the run directory",
    )
    train.add_argument("--run-dir", metavar="DIR", help="override the recipe's run_dir")
    train.add_argument(
        "--max-steps", type=positive_int, metavar="N", help="override train.max_steps"
    )

    sample = sub.add_parser(
        "sample",
        parents=[quiet],
        help="draw fields from a trained emulator",
        description="Draw N fields from the model in RUN_DIR; write netCDF (or .zarr).",
        epilog=_SAMPLE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sample.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `climgen train`")
    sample.add_argument(
        "-n", type=positive_int, required=True, metavar="N", help="number of fields"
    )
    sample.add_argument("-o", "--output", required=True, metavar="FILE", help="output .nc or .zarr")
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

    from climgen.sim.cli import add_data_parser
    from climgen.tasks.downscale_cli import add_downscale_parser
    from climgen.tasks.fill_cli import add_fill_parser
    from climgen.tasks.translate_cli import add_translate_parser

    add_translate_parser(sub, parents=[quiet])
    add_fill_parser(sub)
    add_downscale_parser(sub)
    add_data_parser(sub)
    return parser


def make_demo_data(n_samples: int = 64, ny: int = 64, nx: int = 128, seed: int = 0):
    """Reference and deliberately wrong generated GRF Datasets for the demo.

    reference: Gaussian random fields with P(k) ∝ k^-3, σ = 1. generated: P(k) ∝ k^-2
    (too much small-scale power), then g ↦ 1.3 · (g + 0.25 (g² − 1)) (30 % too much
    variance, positive skewness). Both carry the same name, units and long_name.
    """
    import numpy as np

    from climgen.data.samples import grf_dataarray

    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31, size=2)
    ref = grf_dataarray(n_samples, ny, nx, slope=-3.0, seed=int(seeds[0]), name="tracer", units="K")
    gen = grf_dataarray(n_samples, ny, nx, slope=-2.0, seed=int(seeds[1]), name="tracer", units="K")
    g = gen / gen.std()
    gen = (1.3 * (g + 0.25 * (g**2 - 1.0))).assign_attrs(ref.attrs)
    gen.name = "tracer"
    ref.attrs["long_name"] = gen.attrs["long_name"] = "synthetic tracer"
    return gen.to_dataset(), ref.to_dataset()


def _run_evaluate(args) -> int:
    from climgen.report.evaluate import evaluate

    report = evaluate(
        args.generated,
        args.reference,
        variables=args.variables,
        sample_dim=args.sample_dim,
        max_samples=args.max_samples,
        chunk_size=args.chunk_size,
        progress=not args.quiet,
    )
    index = report.to_html(args.output)
    if not args.quiet:
        print(report.summary())
    print(index)
    return 0


def _run_train(args) -> int:
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


def _run_sample(args) -> int:
    from climgen.data.io import write_fields
    from climgen.tasks.emulate.emulator import Emulator

    emulator = Emulator.load(args.run_dir, which=args.which)
    samples = emulator.sample(args.n, seed=args.seed, calibrated=False if args.raw else None)
    print(write_fields(samples, args.output))
    return 0


def _run_demo(args) -> int:
    if not args.synthetic:
        return _run_trained_demo(args)
    from climgen.data.io import write_fields
    from climgen.report.evaluate import evaluate

    ny, nx = args.size
    if ny < 4 or nx < 4:
        raise ClimgenInputError(f"--size: the grid must be at least 4 x 4, got {ny} x {nx}")
    if args.samples < 4:
        raise ClimgenInputError(
            f"--samples must be at least 4 (the noise floor needs two halves), got {args.samples}"
        )
    start = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    gen, ref = make_demo_data(args.samples, ny, nx, args.seed)
    gen_path = write_fields(gen, out / "generated.nc")
    ref_path = write_fields(ref, out / "reference.nc")
    report = evaluate(gen_path, ref_path, progress=not args.quiet)
    index = report.to_html(out / "report")
    if not args.quiet:
        print(report.summary())
        print(f"demo finished in {time.perf_counter() - start:.1f} s")
    print(index)
    return 0


def _run_trained_demo(args) -> int:
    """Train a small emulator on the bundled RBC sample and report against held-out data."""
    from climgen.tasks.recipe import Recipe, resolve_data_path, run_recipe

    start = time.perf_counter()
    out = Path(args.output)
    recipe = Recipe(
        task="emulate",
        data={
            "paths": [resolve_data_path("bundled:rbc", Path.cwd())],
            "variables": ["b"],
            "sample_dim": "time",
            "train_fraction": 0.8,
        },
        model={"name": "gan", "options": DEMO_FAMILY_OPTIONS},
        train={
            "max_steps": args.steps,
            "batch_size": 32,
            "seed": args.seed,
            "checkpoint_every": max(100, args.steps // 4),
            "ema_decay": 0.99,
        },
        evaluate={
            "seed": args.seed,
            "calibrate_spectrum": not args.raw,
            "calibrate_per_row": not args.raw,
            "calibrate_marginal": not args.raw,
        },
        run_dir=str(out),
        source="climgen demo",
    )
    emulator, report = run_recipe(recipe, progress=not args.quiet)
    if not args.quiet:
        print(report.summary())
        if not args.raw:
            print(
                "samples calibrated (per-row gain, quantile map, spectral gain; fitted on the "
                f"training split); the raw model: {out / 'report-raw' / 'index.html'}"
            )
        print(f"demo finished in {time.perf_counter() - start:.1f} s")
    print(out / "report" / "index.html")
    return 0


# The demo's model: a small DCGAN that trains in minutes on two CPU cores.
DEMO_FAMILY_OPTIONS = {
    "loss": "hinge",
    "latent_dim": 32,
    "base_channels": 16,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``climgen`` and ``python -m climgen``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT_ERROR
    from climgen.sim.cli import run_data
    from climgen.tasks.downscale_cli import run_downscale
    from climgen.tasks.fill_cli import run_fill
    from climgen.tasks.translate_cli import run_translate

    runners = {
        "evaluate": _run_evaluate,
        "demo": _run_demo,
        "train": _run_train,
        "sample": _run_sample,
        "data": run_data,
        "downscale": run_downscale,
        "fill": run_fill,
        "translate": run_translate,
    }
    from climgen.train import TrainingInterrupted

    try:
        return runners[args.command](args)
    except (ClimgenInputError, MissingDependencyError) as exc:
        print(f"climgen: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except TrainingInterrupted as exc:  # SIGTERM/SIGINT: checkpoint written, exit like the shell
        print(f"climgen: {exc}", file=sys.stderr)
        return 128 + exc.signum
