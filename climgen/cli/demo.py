"""``climgen demo``: train a small emulator on bundled data and write its report (default), or
show what a failing report looks like on synthetic fields (``--synthetic``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from climgen.cli._argtypes import add_quiet, positive_int
from climgen.errors import ClimgenInputError

__all__ = ["add_parser", "run", "make_demo_data", "DEMO_FAMILY_OPTIONS"]

_EXAMPLES = """\
examples:
  climgen demo
  climgen demo -o demo-run --budget 0 --steps 400     # a fixed step count, bit-reproducible
  climgen demo --synthetic --samples 128 --size 64 256 --seed 1

By default the demo trains a small emulator (a GAN) on the bundled Rayleigh-Benard sample
(buoyancy, 32 x 128, made by `climgen data rbc`), holds out the last 20 % of the snapshots,
samples as many fields and writes the report comparing them with the held-out data. Training
stops at --steps or after --budget seconds of process CPU time, whichever comes first, on
--threads torch threads (one: beside other work, two threads took twice the wall time per
step of one): about 3 minutes on a 2-core machine. With a budget the number of steps depends
on the machine; --budget 0 makes the run reproducible.
With --synthetic it skips training: a reference set of Gaussian
random fields (P(k) ~ k^-3) against a deliberately wrong "generated" set (P(k) ~ k^-2, 30 %
too much variance, skewed values) — what a failing report looks like.
"""

# The demo's model: a small DCGAN that trains in minutes on two CPU cores.
DEMO_FAMILY_OPTIONS = {
    "loss": "hinge",
    "latent_dim": 32,
    "base_channels": 16,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
}

# Training budget of the default demo, process CPU seconds: 600 steps take ~0.56 CPU-s each
# on one thread of a 2-core VM, so the budget, not --steps, ends a default run there
# (benchmarks/RESULTS.md, Infrastructure: the demo's wall time idle and beside a busy process).
DEMO_CPU_BUDGET_S = 110.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``subparsers``; sets ``func=run``.

    The default mode's options come first; ``--samples`` and ``--size`` belong to
    ``--synthetic``.
    """
    demo = subparsers.add_parser(
        "demo",
        help="end-to-end demo: train a small emulator on bundled data, write the report",
        description="Train a small emulator (a GAN) on the bundled Rayleigh-Benard sample, "
        "sample it and write the report against the held-out snapshots. With --synthetic: no "
        "training; a synthetic reference and a deliberately wrong generated set are evaluated "
        "instead (what a failing report looks like).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_quiet(demo)
    demo.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default="climgen-demo",
        help="folder for the run (or the two netCDF files) and report/ (default: %(default)s)",
    )
    demo.add_argument(
        "--steps",
        type=positive_int,
        default=600,
        metavar="N",
        help="training steps of the demo emulator (default: %(default)s)",
    )
    demo.add_argument(
        "--budget",
        type=float,
        default=DEMO_CPU_BUDGET_S,
        metavar="SECONDS",
        help="training budget in process CPU seconds, 0 for none (default: %(default)s)",
    )
    demo.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="torch intra-op threads while the demo runs (default: %(default)s)",
    )
    demo.add_argument(
        "--raw",
        action="store_true",
        help="no calibration of the trained emulator's samples (by default: per-row spectral "
        "gain, quantile map per row and spectral gain, fitted on the training split; the raw "
        "model is then reported in DIR/report-raw)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    demo.add_argument(
        "--synthetic",
        action="store_true",
        help="no training: synthetic reference vs a deliberately wrong generated set",
    )
    demo.add_argument(
        "--samples",
        type=positive_int,
        default=64,
        metavar="N",
        help="with --synthetic: samples in each set (default: %(default)s)",
    )
    demo.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        default=(64, 128),
        metavar=("NY", "NX"),
        help="with --synthetic: grid size (default: 64 128)",
    )
    demo.set_defaults(func=run)
    return demo


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


def run(args: argparse.Namespace) -> int:
    """Run the demo (trained by default, ``--synthetic`` on request); the exit status."""
    if not args.synthetic:
        return _run_trained(args)
    return _run_synthetic(args)


def _run_synthetic(args: argparse.Namespace) -> int:
    """Evaluate a deliberately wrong synthetic set against a synthetic reference."""
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
    index = report.to_html(out / "report", overwrite=True)  # the demo folder is its own
    if not args.quiet:
        print(report.summary())
        print(f"demo finished in {time.perf_counter() - start:.1f} s")
    print(index)
    return 0


def _run_trained(args: argparse.Namespace) -> int:
    """Train a small emulator on the bundled RBC sample and report against held-out data."""
    import torch

    if not args.budget >= 0:
        raise ClimgenInputError(f"--budget must be a number of seconds ≥ 0, got {args.budget}")
    start, cpu_start = time.perf_counter(), time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # restored below: main() may run in a caller's process
    try:
        return _train_and_report(args, start, cpu_start)
    finally:
        torch.set_num_threads(threads)


def _train_and_report(args: argparse.Namespace, start: float, cpu_start: float) -> int:
    """The body of :func:`_run_trained`, run with the demo's thread count."""
    from climgen.tasks.recipe import Recipe, resolve_data_path, run_recipe

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
            "max_time_s": args.budget,
            "time_clock": "cpu",
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
        print(
            f"demo finished in {time.perf_counter() - start:.1f} s "
            f"({time.process_time() - cpu_start:.1f} CPU-s; {emulator.result.step} "
            f"training steps on {args.threads} thread(s))"
        )
    print(out / "report" / "index.html")
    return 0
