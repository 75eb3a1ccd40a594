"""Benchmark: emulation fidelity of each family at a fixed CPU budget per model.

Run:  .venv/bin/python benchmarks/bench_emulation.py --budget-s 120 --threads 1 --calibrate
Data: ``<repo>/../shared/data/rbc_ra2e6_train.nc`` (Rayleigh–Bénard buoyancy ``b``, 64×256,
periodic in x) and ``heldsuarez_train.nc`` (``omega500``, 64×128 lat/lon). A missing file is
skipped with a message.

**Test data: an independent run.** What a user means by "emulates the model" is that the
samples look like *another run* of the same solver, not like other snapshots of the run the
model was trained on. The primary reference is therefore an independent run made by the
package's own recipes with a seed the training run did not use, at least as long (the script
refuses a test run with the training run's seed, and says when it is shorter):

    climgen data rbc -o ../shared/data/rbc_ra2e6_test.nc --seed 12 --snapshots 260
    climgen data heldsuarez -o ../shared/data/heldsuarez_test.nc --seed 2 --days 200

(``--test-run NAME=FILE`` points elsewhere; without a test run only the in-run table is
printed, with a warning.) Models train on the training run's split (``--split``):
"interleaved" (default) cuts the series into 10 blocks and holds out blocks 5 and 10 (20 %),
"contiguous" holds out the last 20 %. The in-run held-out part is kept as a **secondary**
reference: in-run splits flatter emulators of slowly varying flows, because held-out
snapshots share the training snapshots' slow modes (roll positions, jet latitude) — see
docs/emulation.md. Each table is scored by :func:`climgen.report.evaluate`, whose noise floor
is the same distance between two contiguous halves of that reference.

If the training file is int16-packed (``scale_factor``), generated fields go through the same
packing before they are scored (:func:`climgen.sim.pack.quantise`): beyond a model's
truncation the data's spectrum is white quantisation noise, which unpacked output lacks.

Every model trains through the public ``climgen.Emulator`` API for ``--budget-s`` seconds of
process CPU time (``TrainConfig(max_time_s, time_clock="cpu")``: fair on a shared machine;
``--clock wall`` for wall time), then draws ``--n-samples`` fields. With ``--calibrate`` each
model also gets a row with its spectral calibration (``Emulator.calibrate_spectrum`` fitted on
the training split only). Two reference rows per table: "training data itself" (the training
split scored against the reference: what a perfect emulator of the training split gets) and
"surrogate (IAAFT)" (:func:`climgen.metrics.iaaft_surrogate` of the training split: its power
spectrum and per-row value distribution with random phases — what calibration reaches without
learning structure; a model is informative where it beats it). The "memo." column is the
shift-aware memorisation ratio (≈ 1 new fields, ≪ 1 copies of training fields).

**Long runs trained by a recipe** (hours of CPU, resumable, issue 23) are scored with
``--from-run LABEL=RUN_DIR``: the model row is the run's weights, with no training here; the
training data is then the whole training file (such recipes use ``train_fraction: 1.0``, so
there is no in-run table). With ``--validation-run NAME=FILE`` (a third seed, never the test
run) the checkpoint is chosen on it first (raw network, ``--select-every``/``--select-steps``;
:func:`climgen.tasks.emulate.selection.choose_checkpoint`), e.g.

    python benchmarks/bench_emulation.py --datasets heldsuarez \
        --from-run "EDM U-Net=runs/heldsuarez_omega500_edm_long" \
        --validation-run heldsuarez=data/heldsuarez_seed3.nc \
        --test-run heldsuarez=data/heldsuarez_seed2.nc --calibrate --per-row --marginal

Prints one Markdown table per dataset and reference (each distance as ``value (floor)``, bold
when ≤ 2 × floor) and a plain-words summary; exits 0 whether or not the targets are met.
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
import xarray as xr

from climgen.data.io import open_fields
from climgen.metrics import memorisation_ratio
from climgen.report.evaluate import evaluate
from climgen.tasks.emulate.emulator import Emulator
from climgen.tasks.emulate.scoring import (
    check_independent,
    file_packing,
    packed_like,
    run_seeds,
)
from climgen.tasks.emulate.selection import choose_checkpoint
from climgen.train.runlog import logged_time_s

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TRAIN_FRACTION = 0.8
FACTOR = 2.0
DATASETS = {
    "rbc": ("rbc_ra2e6_train.nc", "b", "Rayleigh–Bénard buoyancy b (Ra = 2e6), 64×256 planar"),
    "heldsuarez": ("heldsuarez_train.nc", "omega500", "Held–Suarez ω500, 64×128 lat/lon"),
}
# Independent runs (another seed) and the commands that make them.
TEST_RUNS = {
    "rbc": (
        "rbc_ra2e6_test.nc",
        "climgen data rbc -o ../shared/data/rbc_ra2e6_test.nc --seed 12 --snapshots 260",
    ),
    "heldsuarez": (
        "heldsuarez_test.nc",
        "climgen data heldsuarez -o ../shared/data/heldsuarez_test.nc --seed 2 --days 200",
    ),
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
    "band_spectrum_lsd": "x-spectra per band",
    "wasserstein1": "W1",
    "ks": "KS",
    "covariance_error": "covariance error",
    "structure_s2": "S2 structure fn.",
    "flatness_difference": "flatness",
    "minkowski_length": "Minkowski V1",
    "minkowski_euler": "Minkowski V2 (Euler)",
    "gradient_pdf": "gradient PDF",
}
SURROGATE_ROW = "surrogate (IAAFT)"


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


def score(distances: dict) -> dict:
    """The benchmark's distances (those the report has: band spectra need a periodic x)."""
    return {
        key: {"value": d.value, "floor": d.floor, "ratio": d.ratio}
        for key, d in distances.items()
        if key in DISTANCES
    }


def load_test_run(path: Path, variable: str, train_path: Path):
    """The independent run, checked (:func:`check_independent`: another seed than the
    training run, a warning when shorter)."""
    test = open_fields(path, variable).load()
    with xr.open_dataset(train_path) as tr, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # main() ignores UserWarnings: print these
        check_independent(test, tr, where=str(path))
    for w in caught:
        print(f"warning: {w.message}", flush=True)
    return test


def reference_rows(train, reference, variable: str) -> list[dict]:
    """Rows "training data itself" and "surrogate (IAAFT)" against ``reference``."""
    report = evaluate(
        train, reference, variables=variable, progress=False, factor=FACTOR, train=train
    )
    var = report.variables[variable]
    rows = []
    for label, key in (("training data itself", "training data"), (SURROGATE_ROW, SURROGATE_ROW)):
        rows.append(
            {
                "model": label,
                "steps": None,
                "train_s": None,
                "sample_s_per_100": None,
                "memorisation": var.memorisation.get(key),
                "distances": score(var.reference_rows[key]),
            }
        )
    return rows


def model_scores(samples, train, references: dict, variable: str) -> dict:
    """Distances and shift-aware memorisation of ``samples`` against each reference."""
    out = {}
    for name, ref in references.items():
        report = evaluate(samples, ref, variables=variable, progress=False, factor=FACTOR)
        grid_var = report.variables[variable]
        memo = memorisation_ratio(
            samples[variable].values,
            train[variable].values,
            ref[variable].values,
            periodic=_periodic(ref[variable]),
            weights=grid_var.weights,
        )
        out[name] = {"distances": score(grid_var.distances), "memorisation": memo}
    return out


def _periodic(da) -> tuple[bool, bool]:
    from climgen.data.grids import detect_grid

    g = detect_grid(da)
    return bool(g.periodic_y), bool(g.periodic_x)


def run_model(key, train, references, variable, args, root: Path, packing) -> list[dict]:
    """Train (or reload) one model; one row per reference (and per calibration)."""
    label, family, options = MODELS[key]
    run_dir = root / key
    options = dict(options)
    train_options = {k: options.pop(k) for k in TRAIN_KEYS if k in options}
    if getattr(args, "rescore", False):
        # Score a run kept by an earlier --keep-runs (same seeds, no training).
        em = Emulator.load(run_dir)
        em.calibration = None
        steps, train_s = logged_time_s(run_dir)
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
    base = {"model": label, "steps": steps, "train_s": train_s}
    return scored_rows(em, base, train, references, variable, args, packing)


def scored_rows(em, base, train, references, variable, args, packing, sample_options=None):
    """Rows of ``em``'s samples (raw, then calibrated with --calibrate) against each
    reference; ``base`` carries the model's label, steps and training time."""
    sample_options = sample_options or {}
    t0 = time.perf_counter()
    raw = em.sample(args.n_samples, seed=args.seed + 1, **sample_options)
    samples = packed_like(raw, packing)
    sample_s = time.perf_counter() - t0
    base = {
        **base,
        "sample_s_per_100": 100 * sample_s / args.n_samples,
        "losses": em.result.losses if em.result is not None else None,
    }
    rows = [{**base, "scores": model_scores(samples, train, references, variable)}]
    if getattr(args, "calibrate", False):
        em.calibrate_spectrum(
            train,
            n_samples=args.n_samples,
            seed=args.seed + 2,
            per_row=getattr(args, "per_row", False),
            marginal=getattr(args, "marginal", False),
            **({"sample_options": sample_options} if sample_options else {}),
        )
        calibrated = packed_like(em.apply_calibration(raw), packing)  # the same draws
        rows.append(
            {
                **base,
                "model": f"{base['model']} + spectral calibration"
                + (" per row" if getattr(args, "per_row", False) else "")
                + (" + quantile mapping" if getattr(args, "marginal", False) else ""),
                "scores": model_scores(calibrated, train, references, variable),
            }
        )
    return rows


def run_from_dir(label, run_dir, train, references, variable, args, packing, validation):
    """Rows of a run trained elsewhere (a recipe): its checkpoint chosen on ``validation``
    when given (raw network), else its latest weights; the train s column is metrics.csv's
    time_s up to that step."""
    em = Emulator.load(run_dir)
    em.calibration = None
    sample_options = {"steps": args.sample_steps} if args.sample_steps else {}
    if variable not in em.variables:
        raise ValueError(f"{run_dir} emulates {em.variables}, not {variable!r}")
    if validation is not None:
        best, _ = choose_checkpoint(
            em,
            run_dir,
            train,
            validation,
            n_samples=args.n_samples,
            seed=args.seed + 3,
            steps=args.select_steps,
            every=args.select_every,
            packing=packing,
            sample_options=sample_options,
            log=lambda text: print(f"  {label} on the validation run, {text}", flush=True),
        )
        label = f"{label} (step {best.step}, chosen on the validation run)"
    logged = logged_time_s(run_dir, em.checkpoint_step)
    base = {"model": label, "steps": em.checkpoint_step, "train_s": logged and logged[1]}
    return scored_rows(em, base, train, references, variable, args, packing, sample_options)


def cell(d: dict) -> str:
    text = f"{d['value']:.3g} ({d['floor']:.2g})"
    return f"**{text}**" if d["ratio"] <= FACTOR else text


def table(rows: list[dict]) -> str:
    keys = [k for k in DISTANCES if any(k in r["distances"] for r in rows)]
    head = ["model", "steps", "train s", "sample s/100"] + [DISTANCES[k] for k in keys]
    head += ["memo.", f"≤ {FACTOR:g}× floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n_ok = sum(d["ratio"] <= FACTOR for d in r["distances"].values())
        steps = "—" if r["steps"] is None else str(r["steps"])
        train = "—" if r["train_s"] is None else f"{r['train_s']:.0f}"
        samp = "—" if r["sample_s_per_100"] is None else f"{r['sample_s_per_100']:.2f}"
        memo = "—" if r.get("memorisation") is None else f"{r['memorisation']:.2f}"
        cells = [r["model"], steps, train, samp]
        cells += [cell(r["distances"][k]) if k in r["distances"] else "—" for k in keys]
        cells += [memo, f"{n_ok}/{len(r['distances'])}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_for(reference: str, ref_rows: list[dict], model_rows: list[dict]) -> list[dict]:
    """The table against one reference: its reference rows, then each model's scores."""
    out = list(ref_rows)
    for r in model_rows:
        sc = r["scores"][reference]
        row = {k: v for k, v in r.items() if k != "scores"}
        out.append({**row, "distances": sc["distances"], "memorisation": sc["memorisation"]})
    return out


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
    target = "meets" if n_ok == len(worst) else "misses"
    beyond = [f"{DISTANCES[k]} {v:.1f}×" for k, v in worst.items() if v > FACTOR]
    oracle = next((r for r in rows if r["model"] == "training data itself"), None)
    surrogate = next((r for r in rows if r["model"] == SURROGATE_ROW), None)
    text = (
        f"{name}: best model {best['model']} ({best['steps']} steps in {best['train_s']:.0f} s) "
        f"{target} the target (every distance ≤ {FACTOR:g}× its noise floor): {n_ok}/"
        f"{len(worst)} within"
    )
    text += f"; beyond: {', '.join(beyond)}." if beyond else "."
    if oracle is not None:
        o_ok = sum(d["ratio"] <= FACTOR for d in oracle["distances"].values())
        text += (
            f" The training data itself scores {o_ok}/{len(oracle['distances'])} against this "
            "reference."
        )
    if surrogate is not None:
        beats = [
            DISTANCES[k]
            for k, d in best["distances"].items()
            if k in surrogate["distances"] and d["value"] < surrogate["distances"][k]["value"]
        ]
        text += (
            f" It beats the IAAFT surrogate on {len(beats)}/{len(best['distances'])} distances"
            + (f" ({', '.join(beats)})." if beats else ".")
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
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=list(MODELS),
        help="models to train (default: all, or none with --from-run)",
    )
    parser.add_argument("--n-samples", type=int, default=200, help="fields drawn per model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--test-run",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="independent run of dataset NAME (default: DATA_DIR/<name>_test file, see above)",
    )
    parser.add_argument(
        "--from-run",
        action="append",
        default=[],
        metavar="LABEL=RUN_DIR",
        help="score a run trained elsewhere (a recipe), no training; the training data is the "
        "whole training file",
    )
    parser.add_argument(
        "--validation-run",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="with --from-run: choose the checkpoint on this run of dataset NAME (a third seed)",
    )
    parser.add_argument("--select-every", type=int, default=1, help="score every N-th checkpoint")
    parser.add_argument("--select-steps", type=int, nargs="+", help="score only these checkpoints")
    parser.add_argument(
        "--sample-steps", type=int, default=None, help="sampler steps of --from-run diffusion runs"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s budget, 2 models")
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = [] if args.from_run else list(MODELS)
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
    tests, validations, from_runs = {}, {}, {}
    for option, items, into in (
        ("--test-run", args.test_run, tests),
        ("--validation-run", args.validation_run, validations),
    ):
        for item in items:
            name, _, file = item.partition("=")
            if name not in DATASETS or not file:
                parser.error(
                    f"{option} takes NAME=FILE with NAME in {list(DATASETS)}, got {item!r}"
                )
            into[name] = Path(file)
    for item in args.from_run:
        label, _, run_dir = item.partition("=")
        if not label or not Path(run_dir, "checkpoints").is_dir():
            parser.error(f"--from-run takes LABEL=RUN_DIR of a training run, got {item!r}")
        from_runs[label] = Path(run_dir)
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
            if from_runs:  # recipe runs trained on the whole file: no in-run split
                train, held = open_fields(path, variable).load(), None
            else:
                train, held = load_split(path, variable, args.split)
            packing = file_packing(path, [variable])
            test_path = tests.get(name, args.data_dir / TEST_RUNS[name][0])
            references = {}
            if Path(test_path).exists():
                test = load_test_run(Path(test_path), variable, path)
                references[f"independent run (seed {test.attrs.get('seed')})"] = test
            else:
                print(
                    f"\nwarning: no independent run for {name} ({test_path}); make one with\n"
                    f"    {TEST_RUNS[name][1]}\nonly the in-run split is scored, which "
                    "flatters emulators of slowly varying flows (docs/emulation.md)",
                    flush=True,
                )
            if held is not None:
                references[f"in-run held-out blocks ({args.split} split)"] = held
            print(
                f"\n## {title}\n\n{train.sizes['time']} training snapshots; references: "
                + ", ".join(f"{k} ({v.sizes['time']})" for k, v in references.items())
                + ". Generated fields packed like the training data: "
                + (
                    f"yes (scale_factor {packing[variable][0]:.3g}). "
                    if packing
                    else "no (unpacked). "
                )
                + (drift_note(train, held, variable) if held is not None else ""),
                flush=True,
            )
            ref_rows = {k: reference_rows(train, v, variable) for k, v in references.items()}
            model_rows = []
            validation = None
            if name in validations:
                validation = open_fields(validations[name], variable).load()
                for ref_name, ref in references.items():
                    shared = (run_seeds(validation) or set()) & (run_seeds(ref) or set())
                    if shared:
                        raise SystemExit(
                            f"{validations[name]}: the validation run shares seed(s) "
                            f"{sorted(shared)} with the {ref_name}: choose checkpoints on "
                            "a run of a third seed"
                        )
            for label, run_dir in from_runs.items():
                model_rows += run_from_dir(
                    label, run_dir, train, references, variable, args, packing, validation
                )
            for key in args.models:
                try:
                    new_rows = run_model(
                        key, train, references, variable, args, root / name, packing
                    )
                except Exception as exc:  # noqa: BLE001 - report and go on with the next model
                    print(f"{MODELS[key][0]} failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                model_rows += new_rows
                for r in new_rows:
                    first = next(iter(r["scores"].values()))
                    print(
                        f"  {r['model']}: {r['steps']} steps, {r['train_s']:.0f} s, "
                        + ", ".join(
                            f"{k} {v['ratio']:.2f}×" for k, v in first["distances"].items()
                        ),
                        flush=True,
                    )
            results[name] = {"title": title, "variable": variable, "tables": {}}
            for ref_name in references:
                rows = rows_for(ref_name, ref_rows[ref_name], model_rows)
                print(
                    f"\n### against the {ref_name}\n\n"
                    + table(rows)
                    + "\n\n"
                    + summary(title, rows),
                    flush=True,
                )
                results[name]["tables"][ref_name] = rows
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
