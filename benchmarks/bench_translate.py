"""Benchmark: domain translation between two RBC climates, networks vs quantile mapping.

Run:  .venv/bin/python benchmarks/bench_translate.py --budget-cpu-s 240 --threads 1 \
          --json translate.json

Domain A: our own Dedalus run at Ra = 1e6, 32 × 128 (the bundled sample,
``climgen.data.bundled.bundled_path("rbc")``, 300 snapshots). Domain B: the shared RBC run at
Ra = 2e6 (``rbc_ra2e6_train.nc``, 64 × 256, 260 snapshots) **conservatively coarsened 2× to
32 × 128** (:func:`climgen.data.coarsen.coarsen`); B is therefore the coarsened higher-Ra run,
not a native 32 × 128 simulation. B gets A's coordinates: coarse z equals A's z; coarse x is
shifted by half a fine cell (0.0078) from A's x, irrelevant for statistics in the periodic,
homogeneous x direction. Data are unpaired (different runs).

Split per domain: the first 80 % of the snapshots train, the last 20 % (held-out times) are
the test set. Every method translates the held-out A fields, and the translations are scored
against the held-out B fields with :func:`climgen.report.translate_page.score_translations`
(spectral log-error, W1, covariance error, KS of :func:`climgen.report.evaluate.evaluate`),
each with B's own noise floor (two halves of held-out B). Rows: B's training fields
(what B itself scores: a realistic best case), A untranslated (the A-vs-B distance),
quantile mapping fitted on the training fields, and the networks.

Networks train through ``climgen.Translator`` for a fixed budget of **process CPU seconds**
(``time.process_time()``, torch 1 thread; the ``CpuBudget`` callback ends training at the first
step past the budget), so contention from other processes does not change the budget. The
cycle error mean|G_BA(G_AB(a)) − a| / std(a) on held-out A is reported for cycle methods.
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

import torch

from climgen.data.bundled import bundled_path
from climgen.data.coarsen import coarsen
from climgen.data.io import open_fields
from climgen.report.translate_page import (
    IDENTITY,
    SCORE_DISTANCES,
    cycle_errors,
    score_rows,
    score_translations,
    verdict_vs_baseline,
)
from climgen.tasks.translate import Translator
from climgen.train.callbacks import Callback

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
B_FILE = "rbc_ra2e6_train.nc"
VARIABLE = "b"
TRAIN_FRACTION = 0.8
FACTOR = 2.0
QM = "quantile mapping"
B_TRAIN = "B training fields (B itself)"

_NET = dict(base_channels=16, depth=2, disc_channels=16, disc_layers=2, lr=5e-4, lr_d=5e-4)
# key: (label, method, options)
MODELS = {
    "cyclegan": ("CycleGAN (lsgan, λ_cyc 10, λ_id 5)", "cyclegan", dict(_NET)),
    "cyclegan-spec": (
        "CycleGAN + spectral term (λ_spec 1)",
        "cyclegan",
        dict(_NET, spectral_weight=1.0),
    ),
    "cyclegan-id0.5": (
        "CycleGAN, λ_id 0.5",
        "cyclegan",
        dict(_NET, identity_weight=0.5),
    ),
    "cyclegan-noise-spec": (
        "CycleGAN + 2 noise channels + spectral term (λ_spec 1)",
        "cyclegan",
        dict(_NET, noise_channels=2, spectral_weight=1.0),
    ),
    "cyclegan-noise-spec5-id0": (
        "CycleGAN + noise + spectral term (λ_spec 5), λ_id 0",
        "cyclegan",
        dict(_NET, noise_channels=2, spectral_weight=5.0, identity_weight=0.0),
    ),
    "cyclegan-noise-spec5-id0-cyc1": (
        "CycleGAN + noise + spectral term (λ_spec 5), λ_id 0, λ_cyc 1",
        "cyclegan",
        dict(_NET, noise_channels=2, spectral_weight=5.0, identity_weight=0.0, cycle_weight=1.0),
    ),
    "cyclegan-hinge": ("CycleGAN hinge loss", "cyclegan", dict(_NET, gan_loss="hinge")),
    "augcyclegan": (
        "Augmented CycleGAN (latent 4)",
        "augmented-cyclegan",
        dict(_NET, latent_dim=4),
    ),
}


class CpuBudget(Callback):
    """Ends training at the first step completed after ``seconds`` of process CPU time.

    Lowers ``config.max_steps`` to the current step, so the trainer writes its final
    checkpoint and exits normally. CPU time of this process (all its threads): with torch
    on one thread this is the compute spent, whatever else runs on the machine.
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.t0 = 0.0

    def on_fit_start(self, trainer) -> None:
        self.t0 = time.process_time()

    def on_step_end(self, trainer, step, losses) -> None:
        if time.process_time() - self.t0 >= self.seconds:
            trainer.config.max_steps = step


def load_domains(data_dir: Path):
    """(A train, A test, B train, B test) Datasets on one 32 × 128 grid."""
    a = open_fields(bundled_path("rbc"), VARIABLE).load()
    fine = open_fields(data_dir / B_FILE, VARIABLE).load()
    coarse = coarsen(fine[VARIABLE], 2)
    b = coarse.to_dataset(name=VARIABLE).assign_coords(z=a["z"], x=a["x"])
    b[VARIABLE].attrs = dict(fine[VARIABLE].attrs)
    b.attrs = dict(fine.attrs, climgen_note="conservatively coarsened 2x to 32 x 128")

    def split(ds):
        n = ds.sizes["time"]
        k = int(round(TRAIN_FRACTION * n))
        return ds.isel(time=slice(0, k)), ds.isel(time=slice(k, n))

    return (*split(a), *split(b))


def run_network(key, a_tr, a_te, b_tr, args, root: Path) -> tuple[dict, object, object]:
    label, method, options = MODELS[key]
    tr = Translator(method, variables=[VARIABLE], **options)
    c0, w0 = time.process_time(), time.perf_counter()
    tr.fit(
        a_tr,
        b_tr,
        run_dir=root / key,
        callbacks=[CpuBudget(args.budget_cpu_s)],
        max_steps=10**9,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
        checkpoint_every=0,
        log_every=50,
    )
    info = {
        "model": label,
        "key": key,
        "method": method,
        "options": options,
        "steps": tr.result.step,
        "train_cpu_s": time.process_time() - c0,
        "train_wall_s": time.perf_counter() - w0,
        "losses": {k: float(v) for k, v in tr.result.losses.items()},
    }
    out = tr.translate(a_te, seed=args.seed + 1)
    rec = tr.reconstruct(a_te, seed=args.seed + 1)
    info["cycle_error"] = cycle_errors(a_te, rec, [VARIABLE])[VARIABLE]
    return info, out, rec


def collect_run(run: Path, a_te, seed: int) -> tuple[dict, object]:
    """Reload a network saved by ``--keep`` and translate the held-out A fields again.

    Steps and CPU time come from ``info.json`` when the run wrote one, else the steps from the
    last checkpoint (the CPU time is then only known to be the budget: the first step past it).
    """
    key = run.name
    tr = Translator.load(run)
    if (run / "info.json").exists():
        info = json.loads((run / "info.json").read_text())
    else:
        from climgen.train import load_family

        label, method, options = MODELS[key]
        step = load_family(run)[1].step
        info = {
            "model": label,
            "key": key,
            "method": method,
            "options": options,
            "steps": int(step),
            "train_cpu_s": None,
        }
    out = tr.translate(a_te, seed=seed + 1)
    info["cycle_error"] = cycle_errors(a_te, tr.reconstruct(a_te, seed=seed + 1), [VARIABLE])[
        VARIABLE
    ]
    return info, out


def cell(d: dict) -> str:
    text = f"{d['value']:.3g} ({d['floor']:.2g})"
    return f"**{text}**" if d["ratio"] <= FACTOR else text


def table(rows: list[dict]) -> str:
    head = ["method", "steps", "CPU s", "cycle error"] + [
        SCORE_DISTANCES[k].split(" [")[0] for k in SCORE_DISTANCES
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["model"],
            "—" if r.get("steps") is None else str(r["steps"]),
            "—" if r.get("train_cpu_s") is None else f"{r['train_cpu_s']:.0f}",
            "—" if r.get("cycle_error") is None else f"{r['cycle_error']:.3f}",
        ]
        cells += [cell(r["scores"][k]) for k in SCORE_DISTANCES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    by = {r["model"]: r for r in rows}
    scores = {r["model"]: {VARIABLE: r["scores"]} for r in rows}
    parts = []
    for r in rows:
        if r.get("steps") is None:
            continue
        v = verdict_vs_baseline(scores, r["model"], QM, VARIABLE, FACTOR)
        met = v["spectra"] and v["covariance"] and v["marginals"]
        parts.append(
            f"{r['model']}: {'MEETS' if met else 'misses'} the target (beats QM on spectra: "
            f"{'yes' if v['spectra'] else 'no'}, on covariance: "
            f"{'yes' if v['covariance'] else 'no'}, matches QM's W1: "
            f"{'yes' if v['marginals'] else 'no'})"
        )
    q = by.get(QM)
    if q:
        ident = by[IDENTITY]["scores"]
        parts.append(
            "quantile mapping vs identity: spectral log-error "
            f"{q['scores']['spectrum_lsd']['value']:.3g} vs {ident['spectrum_lsd']['value']:.3g}, "
            f"W1 {q['scores']['wasserstein1']['value']:.3g} vs "
            f"{ident['wasserstein1']['value']:.3g}, covariance "
            f"{q['scores']['covariance_error']['value']:.3g} vs "
            f"{ident['covariance_error']['value']:.3g}"
        )
    return "\n".join(f"- {p}" for p in parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-cpu-s", type=float, default=240.0, help="CPU s per network")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="keep run dirs + outputs here")
    parser.add_argument(
        "--table", nargs="+", type=Path, default=None, help="only print the table of JSON files"
    )
    parser.add_argument(
        "--collect",
        nargs="+",
        type=Path,
        default=None,
        help="score saved runs instead of training: folders of --keep runs (one sub-folder "
        "per network, named by its key)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 CPU s, 1 network")
    args = parser.parse_args(argv)
    if args.table:
        rows, seen = [], set()
        for path in args.table:
            for r in json.loads(path.read_text())["rows"]:
                if r["model"] not in seen:
                    rows.append(r)
                    seen.add(r["model"])
        print(table(rows) + "\n\n" + summary(rows))
        return
    if args.quick:
        args.budget_cpu_s = 5.0
        args.models = args.models if len(args.models) < len(MODELS) else ["cyclegan"]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); budget {args.budget_cpu_s:g} "
        f"CPU s/network, batch {args.batch_size}; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    path_b = args.data_dir / B_FILE
    if not path_b.exists():
        print(f"skipping: {path_b} not found (the shared data is not here)")
        return
    a_tr, a_te, b_tr, b_te = load_domains(args.data_dir)
    print(
        f"A (Ra 1e6, bundled): {a_tr.sizes['time']} train / {a_te.sizes['time']} test; "
        f"B (Ra 2e6 coarsened 2x): {b_tr.sizes['time']} train / {b_te.sizes['time']} test",
        flush=True,
    )
    qm = Translator("quantile-mapping").fit(a_tr, b_tr)
    candidates = {B_TRAIN: b_tr, IDENTITY: a_te, QM: qm.translate(a_te)}
    infos = {name: {"model": name} for name in candidates}
    if args.collect:
        for folder in args.collect:
            for run in sorted(p for p in folder.iterdir() if p.name in MODELS):
                info, out = collect_run(run, a_te, args.seed)
                candidates[info["model"]] = out
                infos[info["model"]] = info
        args.models = []
    root = args.keep or Path(tempfile.mkdtemp(prefix="climgen-bench-translate-"))
    try:
        for key in args.models:
            try:
                info, out, _ = run_network(key, a_tr, a_te, b_tr, args, root)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{MODELS[key][0]} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            candidates[info["model"]] = out
            infos[info["model"]] = info
            one = score_rows(score_translations({"x": out}, b_te, variables=VARIABLE))["x"]
            print(
                f"  {info['model']}: {info['steps']} steps, {info['train_cpu_s']:.0f} CPU s "
                f"({info['train_wall_s']:.0f} wall s), cycle {info['cycle_error']:.3f}, "
                + ", ".join(f"{k} {one[VARIABLE][k]['value']:.3g}" for k in SCORE_DISTANCES),
                flush=True,
            )
            if args.keep:
                (root / key / "info.json").write_text(json.dumps(info, default=float))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    scores = score_rows(score_translations(candidates, b_te, variables=VARIABLE, factor=FACTOR))
    rows = [dict(infos[name], scores=scores[name][VARIABLE]) for name in candidates]
    print("\n" + table(rows) + "\n\n" + summary(rows), flush=True)
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"budget_cpu_s": args.budget_cpu_s, "rows": rows}, indent=1, default=float)
        )


if __name__ == "__main__":
    main()
