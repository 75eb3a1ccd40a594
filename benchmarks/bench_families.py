"""Benchmark: the family table — every generative family at the same CPU budget per model.

Run:  .venv/bin/python benchmarks/bench_families.py --budget-s 50 --threads 1 --datasets rbc
Data, split and training loop are those of ``bench_emulation.py`` (imported, not copied): the
first 80 % of the snapshots train, the last 20 % are held out and are the reference of
:func:`climgen.report.evaluate`, whose noise floor is the same distance between the two halves
of the held-out reference; each model trains through ``climgen.Emulator`` for ``--budget-s``
seconds of process CPU time (``TrainConfig.max_time_s``).

Per model: spectral log-error, W1, KS, tail-quantile error, covariance error and S2
structure-function error, each with its floor; bits/dim of the held-out fields where the family
has a likelihood (flow, PixelCNN; continuous density in normalised units, no dequantisation);
training time; sampling time per 100 fields; and a memorisation check: for every generated
field the RMSE to its nearest training field, against the same for every held-out field (the
two medians and their ratio; a ratio ≪ 1 means samples sit closer to training fields than new
data does, i.e. memorisation).

PixelCNN samples one value per network call (O(H·W) calls), so it draws only
``--pixelcnn-samples`` fields, is evaluated on them, and its time per 100 fields is scaled.
The trained diffusion model is also sampled with ancestral DDPM (``--ddpm-steps``, default 250)
on ``--ddpm-samples`` fields and compared with the default Heun sampler (19 evaluations) on the
same number of fields: spectral log-error and W1 of each against the held-out data.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import bench_emulation as be
import numpy as np
import torch
from bench_emulation import load_split, run_model

from climgen.families.diffusion.family import DEFAULT_SAMPLE_STEPS
from climgen.report.evaluate import evaluate

__all__ = ["FAMILY_MODELS", "memorisation", "bits_per_dim", "main"]

FACTOR = be.FACTOR
# (label, family, options). DCGAN loss: hinge, the best plain loss of the issue-3 table (best
# W1/KS/spectrum on Held–Suarez, best spectrum/S2 on RBC; non-saturating ≈ on RBC W1/KS).
FAMILY_MODELS = {
    "ae": ("AE (empirical code Gaussian)", "ae", dict(latent_dim=32, base_channels=8)),
    "vae": ("VAE", "vae", dict(latent_dim=32, base_channels=8)),
    "gan-hinge": ("DCGAN hinge", "gan", dict(loss="hinge", base_channels=8)),
    "gan-cov": (
        "DCGAN non-sat. + covariance (Wu 2020)",
        "gan",
        dict(loss="non-saturating", base_channels=8, covariance_weight=1.0),
    ),
    "flow": be.MODELS["flow"],
    "pixelcnn": (
        "PixelCNN (gated, logistic mix.)",
        "pixelcnn",
        dict(hidden_channels=32, n_layers=4, kernel_size=5, mixtures=5),
    ),
    "diffusion": (
        "Diffusion (EDM, Heun 19 evals)",
        "diffusion",
        dict(base_channels=16, channel_mults=(1, 2, 2), sampler="heun"),
    ),
}
# Network calls of the default Heun sampler (N steps → 2N − 1 = 19); DDIM gets as many steps.
HEUN_CALLS = 2 * DEFAULT_SAMPLE_STEPS["heun"] - 1
DISTANCES = {
    "spectrum_lsd": "spectral log-error",
    "wasserstein1": "W1",
    "ks": "KS",
    "tail_error": "tail-quantile error",
    "covariance_error": "covariance error",
    "structure_s2": "S2 structure fn.",
}


class RecordingEmulator(be.Emulator):
    """``Emulator`` that keeps a handle on itself and its last samples (for extra checks)."""

    last: RecordingEmulator | None = None

    def fit(self, *args, **kwargs):
        RecordingEmulator.last = self
        return super().fit(*args, **kwargs)

    @classmethod
    def load(cls, *args, **kwargs):  # --rescore: a kept run instead of a fit
        em = super().load(*args, **kwargs)
        RecordingEmulator.last = em
        return em

    def sample(self, *args, **kwargs):
        self.last_samples = super().sample(*args, **kwargs)
        if self.calibration is None and not hasattr(self, "raw_samples"):
            self.raw_samples = self.last_samples  # the first draw: the scored raw samples
        return self.last_samples


def _flat(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.float64)).flatten(1)


def nearest_rmse(fields: np.ndarray, train: np.ndarray) -> np.ndarray:
    """For every field, ``min_k sqrt(mean((field − train_k)²))`` (field units), (N,)."""
    return (
        torch.cdist(_flat(fields), _flat(train)).min(1).values / np.sqrt(fields[0].size)
    ).numpy()


def memorisation(samples: np.ndarray, train: np.ndarray, held: np.ndarray) -> dict:
    """Medians of nearest-training-field RMSE for generated and held-out fields, and ratio."""
    gen, ref = np.median(nearest_rmse(samples, train)), np.median(nearest_rmse(held, train))
    return {"gen_median": float(gen), "held_median": float(ref), "ratio": float(gen / ref)}


@torch.no_grad()
def bits_per_dim(em, held_values: np.ndarray) -> float:
    """Mean bits/dim of the held-out fields (normalised units) under the trained family."""
    x = torch.from_numpy(np.asarray(held_values, dtype=np.float32))[:, None]
    x = em.normalizer.transform(x)
    return float(torch.cat([em.family.bits_per_dim(c) for c in x.split(16)]).mean())


def _sampler_scores(samples, held, variable) -> dict:
    rep = evaluate(samples, held, variables=variable, progress=False, factor=FACTOR)
    d = rep.variables[variable].distances
    return {k: {"value": d[k].value, "floor": d[k].floor} for k in ("spectrum_lsd", "wasserstein1")}


def sampler_comparison(em, held, variable, args) -> dict:
    """Heun (19 evals; and with each ``--heun-churn``), DDIM with as many steps (each
    ``--ddim-eta``; η = 1 is a strided ancestral sampler) vs 250-step ancestral DDPM on the
    same trained diffusion model, same n and seed."""
    out = {}
    variants = [("heun", dict(sampler="heun"))]
    variants += [(f"heun churn {c:g}", dict(sampler="heun", churn=c)) for c in args.heun_churn]
    variants += [
        (f"ddim η {e:g}, {HEUN_CALLS} steps", dict(sampler="ddim", steps=HEUN_CALLS, eta=e))
        for e in args.ddim_eta
    ]
    if args.ddpm_steps > 0:
        variants.append(("ddpm", dict(sampler="ddpm", steps=args.ddpm_steps)))
    for name, opts in variants:
        t0 = time.perf_counter()
        s = em.sample(args.ddpm_samples, seed=args.seed + 7, **opts)
        dt = time.perf_counter() - t0
        out[name] = {
            "s_per_100": 100 * dt / args.ddpm_samples,
            **_sampler_scores(s, held, variable),
        }
        print(f"    sampler {name}: {dt:.0f} s, {out[name]}", flush=True)
    return out


def run_family(key, train, held, variable, args, root: Path) -> list[dict]:
    """The model's row and, with ``--calibrate``, the row of its calibrated samples."""
    run_args = copy.copy(args)
    if key == "pixelcnn":
        run_args.n_samples = args.pixelcnn_samples
        run_args.calibrate = False  # the calibration alone would draw hundreds more fields
    row = run_model(key, train, held, variable, run_args, root)
    em = RecordingEmulator.last
    calibrated = row.pop("calibrated", None)
    rows = [row] if calibrated is None else [row, calibrated]
    if calibrated is not None:
        # run_model drew the raw samples first and the calibrated ones last.
        row["samples"] = em.raw_samples[variable].values
        calibrated["samples"] = em.last_samples[variable].values
    else:
        row["samples"] = em.last_samples[variable].values
    for r in rows:
        r["n_samples"] = run_args.n_samples
        samples = r.pop("samples")
        r["memorisation"] = memorisation(samples, train[variable].values, held[variable].values)
        r.pop("losses", None)
    if key in ("flow", "pixelcnn"):
        row["bpd"] = bits_per_dim(em, held[variable].values)
        row["bpd_train"] = bits_per_dim(em, train[variable].values[-len(held["time"]) :])
    if key == "diffusion" and not args.no_sampler_comparison:
        row["samplers"] = sampler_comparison(em, held, variable, args)
    return rows


def cell(d: dict) -> str:
    text = f"{d['value']:.3g} ({d['floor']:.2g})"
    return f"**{text}**" if d["ratio"] <= FACTOR else text


def table(rows: list[dict]) -> str:
    head = ["model", "steps", "train s", "sample s/100", "n"] + list(DISTANCES.values())
    head += [f"≤ {FACTOR:g}× floor", "bits/dim held (train)", "NN-RMSE gen / held (ratio)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n_ok = sum(r["distances"][k]["ratio"] <= FACTOR for k in DISTANCES)
        cells = [
            r["model"],
            "—" if r.get("steps") is None else str(r["steps"]),
            "—" if r.get("train_s") is None else f"{r['train_s']:.0f}",
            "—" if r.get("sample_s_per_100") is None else f"{r['sample_s_per_100']:.3g}",
            str(r.get("n_samples", "—")),
        ]
        cells += [cell(r["distances"][k]) for k in DISTANCES]
        cells.append(f"{n_ok}/{len(DISTANCES)}")
        cells.append(f"{r['bpd']:.3f} ({r['bpd_train']:.3f})" if "bpd" in r else "—")
        m = r.get("memorisation")
        cells.append(
            f"{m['gen_median']:.3g} / {m['held_median']:.3g} ({m['ratio']:.2f})" if m else "—"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sampler_table(cmp: dict) -> str:
    lines = ["| sampler | s/100 | spectral log-error | W1 |", "|---|---|---|---|"]
    for name, r in cmp.items():
        s, w = r["spectrum_lsd"], r["wasserstein1"]
        lines.append(
            f"| {name} | {r['s_per_100']:.3g} | {s['value']:.3g} ({s['floor']:.2g}) | "
            f"{w['value']:.3g} ({w['floor']:.2g}) |"
        )
    d = cmp.get("ddpm")  # absent with --ddpm-steps 0
    for name, h in cmp.items() if d is not None else ():
        if name == "ddpm":
            continue
        rel = {k: h[k]["value"] / d[k]["value"] - 1 for k in ("spectrum_lsd", "wasserstein1")}
        lines.append(
            f"\n{name} vs DDPM: "
            + ", ".join(f"{DISTANCES[k]} {100 * v:+.0f} %" for k, v in rel.items())
            + " (target: within +10 %)"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=50.0, help="training s/model")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="budget clock")
    parser.add_argument(
        "--calibrate", action="store_true", help="also score spectrally calibrated samples"
    )
    parser.add_argument(
        "--per-row", action="store_true", help="with --calibrate: add the per-row gain stage"
    )
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="with --calibrate: add the quantile-mapping stage (per row)",
    )
    parser.add_argument("--split", choices=("interleaved", "contiguous"), default="interleaved")
    parser.add_argument(
        "--keep-runs", type=Path, default=None, help="keep the run dirs here (default: deleted)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="with --keep-runs: load the kept runs (also those of bench_emulation.py) and score "
        "them again, no training (train s column = wall time of the original run)",
    )
    parser.add_argument("--datasets", nargs="+", default=list(be.DATASETS), choices=be.DATASETS)
    parser.add_argument("--models", nargs="+", default=list(FAMILY_MODELS), choices=FAMILY_MODELS)
    parser.add_argument("--n-samples", type=int, default=200, help="fields drawn per model")
    parser.add_argument("--pixelcnn-samples", type=int, default=8)
    parser.add_argument(
        "--ddpm-steps",
        type=int,
        default=250,
        help="steps of the ancestral DDPM baseline (0: skip it, e.g. to --rescore new samplers "
        "of a kept run whose baseline was already drawn with the same seed)",
    )
    parser.add_argument("--ddpm-samples", type=int, default=32)
    parser.add_argument(
        "--heun-churn",
        type=float,
        nargs="*",
        default=[],
        help=f"also compare Heun with these churn values (EDM Alg. 2 S_churn; {HEUN_CALLS} calls)",
    )
    parser.add_argument(
        "--ddim-eta",
        type=float,
        nargs="*",
        default=[],
        help=f"also compare DDIM with {HEUN_CALLS} steps at these η (0: deterministic, "
        "1: ancestral)",
    )
    parser.add_argument("--no-sampler-comparison", action="store_true")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--data-dir", type=Path, default=be.DATA_DIR)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s budget, few samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget_s, args.n_samples, args.pixelcnn_samples = 3.0, 16, 2
        args.ddpm_steps, args.ddpm_samples = 20, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    # run_model reads these module globals: add the families and the tail distance to them.
    be.MODELS.update(FAMILY_MODELS)
    be.DISTANCES.update(DISTANCES)
    be.Emulator = RecordingEmulator
    warnings.filterwarnings("ignore", category=UserWarning)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); budget {args.budget_s:g} "
        f"s/model, batch {args.batch_size}, {args.n_samples} samples/model "
        f"(PixelCNN {args.pixelcnn_samples}); load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    results = {}
    if args.rescore and args.keep_runs is None:
        parser.error("--rescore needs --keep-runs DIR (the runs to score again)")
    root = args.keep_runs or Path(tempfile.mkdtemp(prefix="climgen-bench-families-"))
    try:
        for name in args.datasets:
            filename, variable, title = be.DATASETS[name]
            path = args.data_dir / filename
            if not path.exists():
                print(f"\nskipping {name}: {path} not found (the shared data is not here)")
                continue
            train, held = load_split(path, variable, args.split)
            print(f"\n## {title}\n\n{train.sizes['time']} training / {held.sizes['time']} held-out")
            oracle = evaluate(train, held, variables=variable, progress=False, factor=FACTOR)
            rows = [
                {
                    "model": "training data itself",
                    "distances": be.score(oracle, variable),
                }
            ]
            results[name] = {"title": title, "variable": variable, "rows": rows}
            for key in args.models:
                try:
                    new_rows = run_family(key, train, held, variable, args, root / name)
                except Exception as exc:  # noqa: BLE001 - report and go on with the next model
                    print(
                        f"{FAMILY_MODELS[key][0]} failed: {type(exc).__name__}: {exc}", flush=True
                    )
                    continue
                rows.extend(new_rows)
                for r in new_rows:
                    print(
                        f"  {r['model']}: {r['steps']} steps, {r['train_s']:.0f} s, "
                        + ", ".join(f"{k} {v['ratio']:.2f}×" for k, v in r["distances"].items())
                        + f"; memorisation {r['memorisation']}"
                        + (f"; bpd {r['bpd']:.3f}" if "bpd" in r else ""),
                        flush=True,
                    )
                if args.json:
                    args.json.write_text(json.dumps(results, indent=2, default=float))
            print("\n" + table(rows), flush=True)
            for r in rows:
                if "samplers" in r:
                    print("\n" + sampler_table(r["samplers"]), flush=True)
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
