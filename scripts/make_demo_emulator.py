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
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from climgen.data.io import open_fields
from climgen.tasks.emulate import Emulator
from climgen.tasks.emulate.scoring import file_packing
from climgen.tasks.emulate.selection import choose_checkpoint
from climgen.train.runlog import logged_time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="the training run directory")
    parser.add_argument("validation", type=Path, help="validation run (another seed)")
    parser.add_argument("dest", type=Path, help="folder to export into (must not exist)")
    parser.add_argument("--variable", default="b")
    parser.add_argument("--n-samples", type=int, default=300)
    parser.add_argument("--every", type=int, default=1, help="score every N-th checkpoint")
    parser.add_argument("--steps", type=int, nargs="+", help="score only these checkpoints")
    parser.add_argument(
        "--sample-steps", type=int, help="sampler steps (diffusion; default: the run's)"
    )
    parser.add_argument("--note", default="", help="how the run went (into MODEL_CARD.md)")
    args = parser.parse_args()

    recipe = yaml.safe_load((args.run / "recipe.yaml").read_text())
    train_path = recipe["data"]["paths"][0]
    train = open_fields(train_path, args.variable).load()
    validation = open_fields(args.validation, args.variable).load()
    packing = file_packing(train_path, [args.variable])
    em = Emulator.load(args.run)
    sample_options = {"steps": args.sample_steps} if args.sample_steps else None
    best, scores = choose_checkpoint(
        em,
        args.run,
        train,
        validation,
        n_samples=args.n_samples,
        steps=args.steps,
        every=args.every,
        calibrate=dict(n_samples=256, per_row=True, marginal=True, sample_options=sample_options),
        packing=packing,
        sample_options=sample_options,
    )
    if args.sample_steps:  # the exported model samples as it was scored
        em.family.config["sample_steps"] = args.sample_steps
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
        "steps": best.step,
        "train_wall_seconds": (logged_time_s(args.run, best.step) or (None, None))[1],
        "validation_score": {"matches": best.matches, "largest_ratio": best.largest_ratio},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    em.export(args.dest, extras=extras)
    wall = extras["train_wall_seconds"]
    best_text = (
        f"{best.matches} distances within 2x the floor, largest ratio {best.largest_ratio:.3g}"
    )
    card = [
        "# climgen demo emulator",
        "",
        f"- family: {recipe['family']['name']} {recipe['family']['options']}",
        "- recipe: recipes/demo_emulator.yaml (train section: "
        f"{ {k: recipe['train'][k] for k in ('batch_size', 'ema_decay', 'seed')} })",
        f"- training data: bundled:rbc_ensemble, run seeds {seeds['data_seeds']}",
        f"- checkpoint: step {best.step}, chosen on validation runs "
        f"{seeds['validation_seeds']} ({best_text}); never on the demo's test runs",
        f"- training time: {'unknown' if wall is None else f'{wall:.0f} s'} wall "
        "(metrics.csv time_s up to that step; one torch thread on a shared 2-core VM)",
        f"- exported {extras['exported_at']} by scripts/make_demo_emulator.py",
    ]
    if args.note:
        card += ["", args.note]
    (args.dest / "MODEL_CARD.md").write_text("\n".join(card) + "\n")
    print(f"exported step {best.step} to {args.dest}")


if __name__ == "__main__":
    main()
