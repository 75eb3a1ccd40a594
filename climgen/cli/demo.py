"""``climgen demo``: sample the bundled pre-trained emulator and judge it against snapshots of
an independent run (default), train one from scratch first (``--train``), or show what a
failing report looks like on synthetic fields (``--synthetic``)."""

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
  climgen demo --train -o demo-run                    # train the emulator from scratch first
  climgen demo --train --budget 0 --steps 400         # a fixed step count, bit-reproducible
  climgen demo --synthetic --samples 128 --size 64 256 --seed 1

By default the demo samples the small emulator (a GAN) shipped with climgen, trained on runs
of the bundled Rayleigh-Benard recipe (buoyancy, 32 x 128: the run of seed 11, then the five
runs of seeds 17-21; climgen/data/bundled/demo_emulator/MODEL_CARD.md), and writes the report that
compares its samples with four independent runs (seeds 12, 14, 15, 16): what "it emulates
the model" means. One run does not sample this flow's climate (its rolls and mean state
persist), so both sets are ensembles of runs and the noise floor compares two runs with two
others. The report's rows "training data" (what a perfect copy of the training runs scores)
and "surrogate (IAAFT)" (same spectrum and marginals, random phases: what calibration alone
reaches) frame the model's row. About a minute.
With --train it first trains a new emulator on the training runs: training stops at --steps
or after --budget seconds of process CPU time, whichever comes first, on --threads torch
threads (one: beside other work, two threads took twice the wall time per step of one), about
3 minutes on a 2-core machine; --budget 0 makes the run reproducible.
With --synthetic it skips the emulator: a reference set of Gaussian random fields
(P(k) ~ k^-3) against a deliberately wrong "generated" set (P(k) ~ k^-2, 30 %
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
        help="end-to-end demo: sample the bundled emulator, judge it on an independent run",
        description="Sample the small emulator (a GAN) shipped with climgen, trained on "
        "bundled Rayleigh-Benard runs, and write the report against independent runs "
        "(other seeds). With --train: train the emulator from scratch "
        "first. With --synthetic: no emulator; a synthetic reference and a deliberately wrong "
        "generated set are evaluated instead (what a failing report looks like).",
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
        "--train",
        action="store_true",
        help="train the emulator from scratch on the bundled training runs instead of using "
        "the shipped one (--steps, --budget, --threads)",
    )
    demo.add_argument(
        "--steps",
        type=positive_int,
        default=600,
        metavar="N",
        help="with --train: training steps (default: %(default)s)",
    )
    demo.add_argument(
        "--budget",
        type=float,
        default=DEMO_CPU_BUDGET_S,
        metavar="SECONDS",
        help="with --train: training budget in process CPU seconds, 0 for none "
        "(default: %(default)s)",
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
        help="no calibration of the emulator's samples (by default: per-row spectral gain, "
        "quantile map per row and spectral gain, fitted on the training data; the raw model "
        "is then reported in DIR/report-raw)",
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
    """Run the demo (bundled emulator by default, ``--train``, ``--synthetic``); the exit
    status."""
    if not args.synthetic:
        return _run_emulator(args)
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


def _run_emulator(args: argparse.Namespace) -> int:
    """The emulator demo (bundled or ``--train``), on the demo's thread count."""
    import torch

    if not args.budget >= 0:
        raise ClimgenInputError(f"--budget must be a number of seconds ≥ 0, got {args.budget}")
    start, cpu_start = time.perf_counter(), time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # restored below: main() may run in a caller's process
    try:
        if args.train:
            emulator, report = _train(args)
        else:
            emulator, report = _bundled(args)
    finally:
        torch.set_num_threads(threads)
    out = Path(args.output)
    if not args.quiet:
        print(report.summary())
        if emulator.calibration is not None:
            print(
                "samples calibrated (per-row gain, quantile map, spectral gain; fitted on the "
                f"training data); the raw model: {out / 'report-raw' / 'index.html'}"
            )
        how = (
            f"{emulator.result.step} training steps on {args.threads} thread(s)"
            if args.train
            else f"the bundled emulator, step {emulator.checkpoint_step}"
        )
        print(
            f"demo finished in {time.perf_counter() - start:.1f} s "
            f"({time.process_time() - cpu_start:.1f} CPU-s; {how})"
        )
    print(out / "report" / "index.html")
    return 0


def _bundled(args: argparse.Namespace):
    """Sample the shipped emulator and score it against the independent runs."""
    from climgen.data.bundled import bundled_path
    from climgen.data.io import open_fields
    from climgen.tasks.emulate import Emulator
    from climgen.tasks.emulate.scoring import check_independent, file_packing, score_emulator

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    emulator = Emulator.load(bundled_path("demo_emulator"))
    if args.raw:
        emulator.calibration = None
    train_path, ref_path = bundled_path("rbc_ensemble"), bundled_path("rbc_reference")
    train, reference = open_fields(train_path, "b").load(), open_fields(ref_path, "b").load()
    check_independent(reference, train, where=str(ref_path))
    report, _ = score_emulator(
        emulator,
        reference,
        train,
        out,
        n_samples=reference.sizes["time"],
        seed=args.seed,
        progress=not args.quiet,
        packing=file_packing(train_path, ["b"]),
    )
    return emulator, report


def _train(args: argparse.Namespace):
    """Train a small emulator on the bundled training runs; report against the independent
    ones."""
    from climgen.tasks.recipe import Recipe, resolve_data_path, run_recipe

    recipe = Recipe(
        task="emulate",
        data={
            "paths": [resolve_data_path("bundled:rbc_ensemble", Path.cwd())],
            "variables": ["b"],
            "sample_dim": "time",
            "held_out": [resolve_data_path("bundled:rbc_reference", Path.cwd())],
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
        run_dir=str(Path(args.output)),
        source="climgen demo --train",
    )
    return run_recipe(recipe, progress=not args.quiet)
