"""Benchmark: emulation fidelity of each family at a fixed CPU budget per model.

Run:  .venv/bin/python benchmarks/bench_emulation.py --budget-s 120 --threads 1 --calibrate
Data: ``<repo>/../shared/data/rbc_ra2e6_train.nc`` (Rayleigh–Bénard buoyancy ``b``, 64×256,
periodic in x) and ``heldsuarez_train.nc`` (``omega500``, 64×128 lat/lon). A missing file is
skipped with a message. Split in time (``--split``): "interleaved" (default) cuts the series
into 10 blocks and holds out blocks 5 and 10 (20 %), so that training and reference come from
the same period; "contiguous" holds out the last 20 %. The held-out part is the reference of
:func:`climgen.report.evaluate`, whose noise floor is the same distance between two halves of
that reference.

Every model trains through the public ``climgen.Emulator`` API for ``--budget-s`` seconds of
process CPU time (``TrainConfig(max_time_s, time_clock="cpu")``: fair on a shared machine;
``--clock wall`` for wall time), then draws ``--n-samples`` fields. With ``--calibrate`` each
model also gets a row with its spectral calibration (``Emulator.calibrate_spectrum`` fitted on
the training split only). A row
"training data itself" scores the whole training split against the held-out reference: what a
perfect emulator of the training split would get, so it shows how much of a model's distance
is drift between the two periods rather than model error.

Prints one Markdown table per dataset (each distance as ``value (floor)``, bold when
≤ 2 × floor) and a plain-words summary; exits 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from climgen.data.io import open_fields
from climgen.report.evaluate import evaluate
from climgen.tasks.emulate.emulator import Emulator

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TRAIN_FRACTION = 0.8
FACTOR = 2.0
DATASETS = {
    "rbc": ("rbc_ra2e6_train.nc", "b", "Rayleigh–Bénard buoyancy b (Ra = 2e6), 64×256 planar"),
    "heldsuarez": ("heldsuarez_train.nc", "omega500", "Held–Suarez ω500, 64×128 lat/lon"),
}
# (label, family, options): small nets so that a CPU budget of minutes buys hundreds of steps.
MODELS = {
    "vae": ("VAE", "vae", dict(latent_dim=32, base_channels=8)),
    "gan-ns": ("DCGAN non-saturating", "gan", dict(loss="non-saturating", base_channels=8)),
    "gan-wgangp": ("DCGAN WGAN-GP (n_critic 5)", "gan", dict(loss="wgan-gp", base_channels=8)),
    "gan-hinge": ("DCGAN hinge", "gan", dict(loss="hinge", base_channels=8)),
    "gan-hinge-ema": (
        "DCGAN hinge, EMA 0.995",
        "gan",
        dict(loss="hinge", base_channels=8, ema_decay=0.995),
    ),
    "gan-cov": (
        "DCGAN non-sat. + covariance (Wu 2020)",
        "gan",
        dict(loss="non-saturating", base_channels=8, covariance_weight=1.0),
    ),
    "gan-cov-ema": (
        "DCGAN non-sat. + covariance, 16 ch., EMA 0.999",
        "gan",
        dict(loss="non-saturating", base_channels=16, covariance_weight=1.0, ema_decay=0.999),
    ),
    "flow": ("Flow (Glow affine)", "flow", dict(levels=3, steps_per_level=4, hidden_channels=32)),
}
# Options of the training loop (TrainConfig) that a model entry may set besides its family's.
TRAIN_KEYS = ("ema_decay", "grad_clip")
DISTANCES = {
    "spectrum_lsd": "spectral log-error",
    "wasserstein1": "W1",
    "ks": "KS",
    "covariance_error": "covariance error",
    "structure_s2": "S2 structure fn.",
}


N_BLOCKS = 10
HELD_BLOCKS = (4, 9)  # 0-based: the 5th and the 10th of 10 blocks


def load_split(path: Path, variable: str, split: str = "interleaved"):
    """(train, held-out) along time: the last 20 %, or blocks 5 and 10 of 10 (interleaved)."""
    ds = open_fields(path, variable).load()
    n = ds.sizes["time"]
    if split == "contiguous":
        n_train = int(round(TRAIN_FRACTION * n))
        return ds.isel(time=slice(0, n_train)), ds.isel(time=slice(n_train, n))
    block = np.arange(n) * N_BLOCKS // n
    held = np.isin(block, HELD_BLOCKS)
    return ds.isel(time=np.flatnonzero(~held)), ds.isel(time=np.flatnonzero(held))


def drift_note(train, held, variable: str) -> str:
    """Mean and std of the field in each part: a first look at stationarity."""
    a, b = train[variable].values, held[variable].values
    h = a.shape[0] // 2
    parts = {"train 1st half": a[:h], "train 2nd half": a[h:], "held-out": b}
    return "; ".join(f"{k}: mean {v.mean():.4g}, std {v.std():.4g}" for k, v in parts.items())


def score(report, variable: str) -> dict:
    out = {}
    for key in DISTANCES:
        d = report.variables[variable].distances[key]
        out[key] = {"value": d.value, "floor": d.floor, "ratio": d.ratio}
    return out


def _kept_run_progress(run_dir: Path) -> tuple[int, float]:
    """(last step, its wall time) from a kept run's metrics.csv."""
    import csv

    with open(run_dir / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    return int(last["step"]), float(last["time_s"])


def run_model(key, train, held, variable, args, root: Path) -> dict:
    label, family, options = MODELS[key]
    run_dir = root / key
    options = dict(options)
    train_options = {k: options.pop(k) for k in TRAIN_KEYS if k in options}
    if getattr(args, "rescore", False):
        # Score a run kept by an earlier --keep-runs (same seeds, no training).
        em = Emulator.load(run_dir)
        em.calibration = None
        steps, train_s = _kept_run_progress(run_dir)
    else:
        em = Emulator(family, variables=[variable], **options)
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        t0 = clock()
        em.fit(
            train,
            run_dir=run_dir,
            max_steps=10**9,
            max_time_s=args.budget_s,
            time_clock=args.clock,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=False,
            checkpoint_every=0,
            log_every=50,
            **train_options,
        )
        train_s = clock() - t0
        steps = em.result.step
    t0 = time.perf_counter()
    samples = em.sample(args.n_samples, seed=args.seed + 1)
    sample_s = time.perf_counter() - t0
    report = evaluate(samples, held, variables=variable, progress=False, factor=FACTOR)
    row = {
        "model": label,
        "steps": steps,
        "train_s": train_s,
        "sample_s_per_100": 100 * sample_s / args.n_samples,
        "losses": em.result.losses if em.result is not None else None,
        "distances": score(report, variable),
    }
    if getattr(args, "calibrate", False):
        em.calibrate_spectrum(
            train,
            n_samples=args.n_samples,
            seed=args.seed + 2,
            per_row=getattr(args, "per_row", False),
            marginal=getattr(args, "marginal", False),
        )
        calibrated = em.sample(args.n_samples, seed=args.seed + 1)
        report = evaluate(calibrated, held, variables=variable, progress=False, factor=FACTOR)
        row["calibrated"] = {
            **row,
            "model": f"{label} + spectral calibration"
            + (" per row" if getattr(args, "per_row", False) else "")
            + (" + quantile mapping" if getattr(args, "marginal", False) else ""),
            "distances": score(report, variable),
        }
    return row


def cell(d: dict) -> str:
    text = f"{d['value']:.3g} ({d['floor']:.2g})"
    return f"**{text}**" if d["ratio"] <= FACTOR else text


def table(rows: list[dict]) -> str:
    head = ["model", "steps", "train s", "sample s/100"] + list(DISTANCES.values())
    head.append(f"≤ {FACTOR:g}× floor")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n_ok = sum(d["ratio"] <= FACTOR for d in r["distances"].values())
        steps = "—" if r["steps"] is None else str(r["steps"])
        train = "—" if r["train_s"] is None else f"{r['train_s']:.0f}"
        samp = "—" if r["sample_s_per_100"] is None else f"{r['sample_s_per_100']:.2f}"
        cells = [r["model"], steps, train, samp]
        cells += [cell(r["distances"][k]) for k in DISTANCES]
        cells.append(f"{n_ok}/{len(DISTANCES)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(name: str, rows: list[dict]) -> str:
    models = [r for r in rows if r["steps"] is not None]
    if not models:
        return f"{name}: no model ran."

    def key(r):
        ratios = [d["ratio"] for d in r["distances"].values()]
        return (-sum(x <= FACTOR for x in ratios), float(np.mean(np.log(ratios))))

    best = min(models, key=key)
    worst = {k: v["ratio"] for k, v in best["distances"].items()}
    n_ok = sum(v <= FACTOR for v in worst.values())
    target = "meets" if n_ok == len(DISTANCES) else "misses"
    beyond = [f"{DISTANCES[k]} {v:.1f}×" for k, v in worst.items() if v > FACTOR]
    oracle = next((r for r in rows if r["steps"] is None), None)
    text = (
        f"{name}: best model {best['model']} ({best['steps']} steps in {best['train_s']:.0f} s) "
        f"{target} the target (every distance ≤ {FACTOR:g}× its noise floor): {n_ok}/"
        f"{len(DISTANCES)} within"
    )
    text += f"; beyond: {', '.join(beyond)}." if beyond else "."
    if oracle is not None:
        o_ok = sum(d["ratio"] <= FACTOR for d in oracle["distances"].values())
        text += (
            f" The training data itself scores {o_ok}/{len(DISTANCES)} against the held-out "
            "reference."
        )
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=120.0, help="training s/model")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="budget clock")
    parser.add_argument("--split", choices=("interleaved", "contiguous"), default="interleaved")
    parser.add_argument(
        "--calibrate", action="store_true", help="also score spectrally calibrated samples"
    )
    parser.add_argument(
        "--per-row",
        action="store_true",
        help="with --calibrate: add the per-row (zonal per latitude / x per height) gain stage",
    )
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="with --calibrate: add the quantile-mapping stage (per row)",
    )
    parser.add_argument(
        "--keep-runs", type=Path, default=None, help="keep the run dirs here (default: deleted)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="with --keep-runs: load the kept runs and score them again, no training "
        "(train s column = wall time of the original run)",
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--n-samples", type=int, default=200, help="fields drawn per model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s budget, 2 models")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget_s, args.n_samples = 5.0, 16
        args.models = args.models if len(args.models) < len(MODELS) else ["vae", "gan-ns"]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); budget {args.budget_s:g} "
        f"{args.clock} s/model, split {args.split}, batch {args.batch_size}, "
        f"{args.n_samples} samples/model; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    results = {}
    if args.keep_runs is not None:
        root = args.keep_runs
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="climgen-bench-emulation-"))
    try:
        for name in args.datasets:
            filename, variable, title = DATASETS[name]
            path = args.data_dir / filename
            if not path.exists():
                print(f"\nskipping {name}: {path} not found (the shared data is not here)")
                continue
            train, held = load_split(path, variable, args.split)
            print(
                f"\n## {title}\n\n{train.sizes['time']} training / {held.sizes['time']} held-out "
                f"snapshots. {drift_note(train, held, variable)}",
                flush=True,
            )
            oracle = evaluate(train, held, variables=variable, progress=False, factor=FACTOR)
            rows = [
                {
                    "model": "training data itself",
                    "steps": None,
                    "train_s": None,
                    "sample_s_per_100": None,
                    "distances": score(oracle, variable),
                }
            ]
            for key in args.models:
                try:
                    rows.append(run_model(key, train, held, variable, args, root / name))
                except Exception as exc:  # noqa: BLE001 - report and go on with the next model
                    print(f"{MODELS[key][0]} failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                r = rows[-1]
                if "calibrated" in r:
                    rows.append(r.pop("calibrated"))
                print(
                    f"  {r['model']}: {r['steps']} steps, {r['train_s']:.0f} s, "
                    + ", ".join(f"{k} {v['ratio']:.2f}×" for k, v in r["distances"].items()),
                    flush=True,
                )
            print("\n" + table(rows) + "\n\n" + summary(title, rows), flush=True)
            results[name] = {"title": title, "variable": variable, "rows": rows}
    finally:
        if args.keep_runs is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; values are "
        "`distance (noise floor)`, bold = within 2× the floor",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
