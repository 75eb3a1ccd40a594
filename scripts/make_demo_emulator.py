"""Make the demo's bundled emulator: choose a checkpoint on a validation ensemble, export it.

    for s in 22 23; do climgen data rbc -o data/rbc_small_seed$s.nc --rayleigh 1e6 --nx 128 \
        --nz 32 --snapshots 75 --interval 2 --seed $s; done            # 'sim' extra
    climgen data join -o data/rbc_small_seeds22-23.nc data/rbc_small_seed22.nc \
        data/rbc_small_seed23.nc                                       # the validation runs
    OMP_NUM_THREADS=1 climgen train recipes/demo_emulator.yaml         # CPU budget: --resume
    python scripts/make_demo_emulator.py runs/demo_emulator data/rbc_small_seeds22-23.nc \
        climgen/data/bundled/demo_emulator

Every checkpoint of the run is calibrated on the training data (the demo's three stages),
sampled and scored against the validation runs (seeds 22, 23; never the demo's test runs,
seeds 12, 14, 15, 16); the checkpoint with the most distances within 2x the noise floor
(ties: the smallest largest ratio) is exported with ``Emulator.export``
(weights that sampling uses, calibration, template; no optimiser state), its model card
recording the recipe, data seeds, steps and training CPU time.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from climgen.data.io import open_fields
from climgen.report.evaluate import evaluate
from climgen.tasks.emulate import Emulator
from climgen.tasks.emulate.scoring import check_independent, file_packing, packed_like
from climgen.train.checkpoint import list_checkpoints, load_family


def score(report, name: str) -> tuple[int, float]:
    """(distances within 2x the floor, the largest ratio): the verdict needs every distance."""
    distances = report.variables[name].distances.values()
    ratios = [d.ratio if math.isfinite(d.ratio) else math.inf for d in distances]
    return sum(d.status == "matches" for d in distances), max(ratios)


def train_seconds(run: Path, step: int) -> float | None:
    """Wall seconds of training up to ``step``, summed over resumes (metrics.csv's time_s)."""
    path = run / "metrics.csv"
    if not path.exists():
        return None
    rows = [r for r in csv.DictReader(path.open()) if int(r["step"]) <= step]
    return float(rows[-1]["time_s"]) if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="the training run directory")
    parser.add_argument("validation", type=Path, help="validation run (another seed)")
    parser.add_argument("dest", type=Path, help="folder to export into (must not exist)")
    parser.add_argument("--variable", default="b")
    parser.add_argument("--n-samples", type=int, default=300)
    parser.add_argument("--every", type=int, default=1, help="score every N-th checkpoint")
    parser.add_argument("--steps", type=int, nargs="+", help="score only these checkpoints")
    parser.add_argument("--note", default="", help="how the run went (into MODEL_CARD.md)")
    args = parser.parse_args()

    recipe = yaml.safe_load((args.run / "recipe.yaml").read_text())
    train_path = recipe["data"]["paths"][0]
    train = open_fields(train_path, args.variable).load()
    validation = open_fields(args.validation, args.variable).load()
    check_independent(validation, train, where=str(args.validation))
    packing = file_packing(train_path, [args.variable])
    em = Emulator.load(args.run)
    scores = {}
    for path in list_checkpoints(args.run)[:: args.every]:
        if args.steps and int(path.name.split("_")[-1]) not in args.steps:
            continue
        em.family, ckpt = load_family(path)
        em.checkpoint_step = ckpt.step
        em.calibrate_spectrum(train, n_samples=256, per_row=True, marginal=True)
        samples = packed_like(em.sample(args.n_samples, seed=1), packing)
        report = evaluate(
            samples, validation.rename(time="sample"), variables=args.variable, progress=False
        )
        scores[ckpt.step] = score(report, args.variable)
        print(
            f"step {ckpt.step}: {scores[ckpt.step][0]} matches, largest ratio "
            f"{scores[ckpt.step][1]:.2f}",
            flush=True,
        )
    best = max(scores, key=lambda s: (scores[s][0], -scores[s][1]))
    em.family, ckpt = load_family(
        next(p for p in list_checkpoints(args.run) if int(p.name.split("_")[-1]) == best)
    )
    em.checkpoint_step = best
    em.calibrate_spectrum(train, n_samples=256, per_row=True, marginal=True)
    with xr.open_dataset(train_path) as tr, xr.open_dataset(args.validation) as va:
        seeds = {
            "data_seeds": [int(v) for v in np.atleast_1d(tr.attrs["seed"])],
            "validation_seeds": [int(v) for v in np.atleast_1d(va.attrs["seed"])],
        }
    shared = {k: v for k, v in recipe.items() if k != "run_dir"}  # no paths of this machine
    shared["data"] = {**recipe["data"], "paths": [Path(p).name for p in recipe["data"]["paths"]]}
    extras = {
        "recipe": shared,
        **seeds,
        "steps": best,
        "train_wall_seconds": train_seconds(args.run, best),
        "validation_score": {"matches": scores[best][0], "largest_ratio": scores[best][1]},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    em.export(args.dest, extras=extras)
    wall = extras["train_wall_seconds"]
    card = [
        "# climgen demo emulator",
        "",
        f"- family: {recipe['family']['name']} {recipe['family']['options']}",
        "- recipe: recipes/demo_emulator.yaml (train section: "
        f"{ {k: recipe['train'][k] for k in ('batch_size', 'ema_decay', 'seed')} })",
        f"- training data: bundled:rbc_ensemble, run seeds {seeds['data_seeds']}",
        f"- checkpoint: step {best}, chosen on validation runs {seeds['validation_seeds']} "
        f"({scores[best][0]} distances within 2x the floor, largest ratio "
        f"{scores[best][1]:.3g}); never on the demo's test runs",
        f"- training time: {'unknown' if wall is None else f'{wall:.0f} s'} wall "
        "(metrics.csv time_s up to that step; one torch thread on a shared 2-core VM)",
        f"- exported {extras['exported_at']} by scripts/make_demo_emulator.py",
    ]
    if args.note:
        card += ["", args.note]
    (args.dest / "MODEL_CARD.md").write_text("\n".join(card) + "\n")
    print(f"exported step {best} to {args.dest}")


if __name__ == "__main__":
    main()
