"""Benchmark: gap filling under real HadCRUT4 coverage — every method side by side (issue 5).

Run:  .venv/bin/python benchmarks/bench_fill.py --budget-s 240 --threads 1 \\
          --json bench_fill.json --report bench_fill_report

Data. Held–Suarez near-surface temperature (``tas``, ../shared/data/heldsuarez_train.nc, 200
daily snapshots on the T42 Gaussian grid) regridded bilinearly to the HadCRUT4 5° grid
(72 × 72, :func:`climgen.tasks.fill.prepare.regrid_bilinear`), as anomalies from the training
period's time mean per cell. Split in time: the first 70 % trains the networks, the next 10 %
is the validation split (fits the cVAE spread inflation), the last 20 % is held out and
scored. Masks: the two real HadCRUT4 coverages bundled with climgen (1877-09, 23 %; 1893-08,
31 %): the networks train with them rolled randomly in longitude; held-out field i is shown
under real mask ``i mod 2`` at its true position.

Methods. ``partialconv`` (U-Net of partial convolutions), ``cvae`` (conditional VAE,
``--members`` members) and ``pconv-crps`` (the partial-conv U-Net with noise inputs trained
with the fair CRPS of ``--crps-members`` fills per field, ``reconstruction="crps"``; the
ensembles are scored raw and with the spread inflation fitted on the validation split) each
train for ``--budget-s`` seconds of *process CPU time* (``time.process_time``, torch with
``--threads`` threads), so contention from other processes does not change the budget;
``kriging`` (scikit-learn GP, Matérn-3/2 of chordal distance, per-field ML hyper-parameters),
``nearest`` and ``zonal-mean`` need no training. ``--oi [VARIANT ...]`` adds optimal
interpolation with the covariance learned from the training split (``plain``: the time
samples only; ``zonal``: also every longitude shift; ``zonal-hemispheric``: and every field
mirrored about the equator), scored raw and with the spread inflation fitted on the
validation split; ``--networks pconv-oi`` trains the partial-conv U-Net with the
``zonal-hemispheric`` optimal-interpolation estimate as an extra input channel
(``prior="optimal-interpolation"``); ``--networks oi-residual`` trains the generative
infiller of issue 27: the same U-Net with noise inputs, CRPS-trained on the *residual* of
that OI estimate (``residual=True``, ``reconstruction="crps"``; inputs also the OI std and the
OI means of the ``--context`` neighbours), members ``E_OI[x | obs] + r_i``, scored raw and
calibrated like the other ensembles and, with ``--oi``, against the best OI row
(``targets``: RMSE and CRPS ratios, target ≤ 0.9; the members' structure in the gaps, target
≤ 2× the floor). ``--test-data NC`` scores on the days of
an independent run (another seed, e.g. ../shared/data/heldsuarez_test.nc) instead of the
last 20 % of the training run; anomalies from the training days' climatology, the same masks
(field i under mask i mod 2). Scores on the hidden cells of the held-out
fields (:func:`climgen.tasks.fill.cross_validation.cross_validate`): area-weighted RMSE, MAE, bias,
correlation, fair CRPS (ensembles) or Gaussian predictive CRPS (kriging), spread/skill, and
the structure inside the gaps (:func:`climgen.metrics.gap_structure`: spectrum and Minkowski
functionals on the hidden cells ÷ the truth's noise floor, for the mean and the members).

Step cost. Time per training step and peak resident memory of the partial-conv U-Net
(family defaults, base_channels 32) at 72 × 72, batch 16, on CPU, against a plain-conv U-Net
of the same layout (same channels, kernels, strides, circular longitude padding, ordinary
``Conv2d``), each measured in a fresh subprocess (forward + L1 loss + backward + Adam step;
process CPU time per step; peak RSS from ``getrusage``).

Targets (issue 5): best network RMSE ≤ 0.85 × kriging RMSE; ensemble spread/skill in
0.9–1.1; fair CRPS below kriging's Gaussian CRPS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
TARGET_RATIO, SSR_RANGE = 0.85, (0.9, 1.1)
OI_VARIANTS = ("plain", "zonal", "zonal-hemispheric")
DETERMINISTIC = ("partialconv", "pconv-oi")  # networks without members
ENSEMBLES = ("cvae", "pconv-crps", "oi-residual")  # networks with members


def load_data(args):
    """(train, val, test) anomaly DataArrays on the HadCRUT grid and the real masks."""
    from climgen.data.bundled import bundled_path
    from climgen.data.io import open_fields
    from climgen.tasks.fill.prepare import anomalies, coverage_masks, regrid_bilinear

    masks = coverage_masks(bundled_path("hadcrut4_tas_1877-09_1893-08")).load()
    ds = open_fields(DATA / "heldsuarez_train.nc", "tas").load()
    tas = regrid_bilinear(ds.tas, masks)
    n = tas.sizes["time"]
    n_train, n_val = int(round(0.7 * n)), int(round(0.1 * n))
    train, clim = anomalies(tas.isel(time=slice(0, n_train)))
    val, _ = anomalies(tas.isel(time=slice(n_train, n_train + n_val)), clim)
    test, _ = anomalies(tas.isel(time=slice(n_train + n_val, n)), clim)
    if args.test_data:  # an independent run: every day of it, anomalies from the training days
        other = regrid_bilinear(open_fields(args.test_data, "tas").load().tas, masks)
        test, _ = anomalies(other.isel(time=slice(args.test_skip, None)), clim)
    if args.quick:
        val, test = val.isel(time=slice(0, 4)), test.isel(time=slice(0, 4))
    elif args.n_test:
        test = test.isel(time=slice(0, args.n_test))
    return train, val, test, masks


def paired_masks(masks: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """Real mask ``i mod n_masks`` for field i of ``like`` (time coordinate of ``like``)."""
    idx = np.arange(like.sizes["time"]) % masks.sizes["time"]
    return masks.isel(time=idx).assign_coords(time=like.time.values)


def train_network(
    method, options, train, masks, budget, run_dir, seed=0, batch_size=16, **train_options
):
    from climgen.tasks.fill.infiller import Infiller

    infiller = Infiller(method, **options)
    t0, c0 = time.perf_counter(), time.process_time()
    infiller.fit(
        train,
        masks=masks,
        run_dir=run_dir,
        max_steps=10**6,
        batch_size=batch_size,
        log_every=20,
        checkpoint_every=0,
        progress=False,
        seed=seed,
        # the trainer's own budget: ends at the first step after `budget` s of process CPU
        max_time_s=budget,
        time_clock="cpu",
        **train_options,
    )
    info = {
        "steps": infiller.result.step,
        "train_cpu_s": time.process_time() - c0,
        "train_wall_s": time.perf_counter() - t0,
    }
    return infiller, info


def scored(label, method, test, test_masks, members, extra=None):
    from climgen.tasks.fill.cross_validation import cross_validate

    c0, t0 = time.process_time(), time.perf_counter()
    s = cross_validate(method, test, test_masks, members=members)
    s.update(fill_cpu_s=time.process_time() - c0, fill_wall_s=time.perf_counter() - t0)
    s.update(extra or {})
    print(
        f"  {label:<22} RMSE {s['rmse']:.3f}  bias {s['bias']:+.3f}  corr {s['corr']:.3f}  "
        f"CRPS {s.get('crps', float('nan')):.3f}  SSR {s.get('spread_skill', float('nan')):.2f}"
        f"  ({s['fill_cpu_s']:.0f} CPU s to fill)",
        flush=True,
    )
    g = s.get("gaps", {})  # structure inside the gaps, distance ÷ the truth's noise floor
    shown = [f"{k} " + " ".join(f"{v:.2f}" for v in g[k].values()) for k in g if k[0] == "m"]
    if shown:  # mean, members (median), members_max
        print(f"  {'':<22} gaps ÷ floor (spectrum V0 V1 V2): " + "; ".join(shown), flush=True)
    return s


DISTANCE_BINS_KM = (0, 500, 1000, 2000, 4000, 20000)


def spread_by_distance(
    infiller, test, test_masks, n_masks: int, members: int, seed: int = 0
) -> list[dict]:
    """Per real mask (field i is under mask i mod ``n_masks``): the ensemble spread and the
    RMSE of its mean on the hidden cells, binned by great-circle distance to the nearest
    observed cell (is the spread where the error is?), over the fields under that mask."""
    from scipy.spatial import cKDTree

    out = infiller.fill(test.where(test_masks == 1), members=members, seed=seed)
    var = test.name
    keep = test_masks.values == 1
    lat, lon = np.meshgrid(np.deg2rad(test.lat.values), np.deg2rad(test.lon.values), indexing="ij")
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
    rows = []
    for k in range(n_masks):
        sel = slice(k, None, n_masks)
        hidden = ~keep[k]
        chord, _ = cKDTree(xyz[keep[k]]).query(xyz[hidden])
        dist = 2 * np.arcsin(np.clip(chord / 2, 0, 1)) * 6371.0
        spread = out[f"{var}_spread"].values[sel][:, hidden].mean(0)
        sq_err = ((out[var].values[sel] - test.values[sel])[:, hidden] ** 2).mean(0)
        row = {"mask": k, "corr_spread_distance": float(np.corrcoef(spread, dist)[0, 1])}
        for lo, hi in zip(DISTANCE_BINS_KM[:-1], DISTANCE_BINS_KM[1:]):
            b = (dist >= lo) & (dist < hi)
            if b.any():
                row[f"{lo}-{hi} km"] = {
                    "cells": int(b.sum()),
                    "spread": float(spread[b].mean()),
                    "rmse": float(np.sqrt(sq_err[b].mean())),
                }
        rows.append(row)
        print(f"  spread by distance, mask {k}: {row}", flush=True)
    return rows


# -- train-step cost -------------------------------------------------------------------------


def _plain_unet(in_channels, out_channels, shape, base_channels=32, first_kernel=7):
    """Plain-conv twin of :class:`climgen.nn.partialconv.PartialConvUNet` (same layout)."""
    from torch import nn

    from climgen.nn.blocks import plan_levels, resize
    from climgen.nn.padding import PeriodicConv2d

    sizes = plan_levels(tuple(shape), min_bottleneck=4)
    n_down = len(sizes) - 1
    chans = [min(base_channels * 2**i, 8 * base_channels) for i in range(n_down + 1)]
    kw = dict(periodic=(False, True))

    class PlainUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = PeriodicConv2d(in_channels, chans[0], first_kernel, **kw)
            self.down = nn.ModuleList(
                PeriodicConv2d(chans[i], chans[i + 1], 5 if i < 2 else 3, 2, **kw)
                for i in range(n_down)
            )
            self.up = nn.ModuleList(
                PeriodicConv2d(chans[i + 1] + chans[i], chans[i], 3, **kw)
                for i in reversed(range(n_down))
            )
            self.head = PeriodicConv2d(chans[0], out_channels, 1, **kw)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            skips = [h]
            for conv in self.down:
                h = torch.relu(conv(h))
                skips.append(h)
            skips.pop()
            for conv in self.up:
                skip = skips.pop()
                h = resize(h, tuple(skip.shape[-2:]), mode="nearest", periodic=(False, True))
                h = torch.nn.functional.leaky_relu(conv(torch.cat([h, skip], 1)), 0.2)
            return self.head(h)

    return PlainUNet()


def step_probe(kind: str, steps: int, threads: int) -> dict:
    """Run in a fresh process: CPU s per training step and peak RSS of one U-Net."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(16, 1, 72, 72)
    mask = (torch.rand(16, 1, 72, 72) > 0.7).float()
    if kind == "partialconv":
        import climgen.families.infill  # noqa: F401
        from climgen.families.base import build_family

        model = build_family("partialconv", channels=1, shape=(72, 72), periodic=(False, True))

        def loss_fn():
            return model.loss(x, mask, None, None)["loss"]
    else:
        model = _plain_unet(2, 1, (72, 72))

        def loss_fn():
            return (model(torch.cat([x * mask, mask], 1)) - x).abs().mean()

    opt = torch.optim.Adam(model.parameters(), 2e-4)
    rss_before = _vm("VmRSS")
    try:  # reset the high-water mark so VmHWM is the peak during the steps only
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    times = []
    for i in range(steps + 2):
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
        if i >= 2:  # two warm-up steps
            times.append(time.process_time() - c0)
    peak = _vm("VmHWM")
    return {
        "kind": kind,
        "parameters": sum(p.numel() for p in model.parameters()),
        "cpu_s_per_step_median": float(np.median(times)),
        "cpu_s_per_step_min": float(np.min(times)),
        "peak_rss_mib": peak / 1024,
        "rss_before_steps_mib": rss_before / 1024,
        "peak_growth_during_steps_mib": (peak - rss_before) / 1024,
    }


def _vm(key: str) -> float:
    """A memory figure of this process from /proc/self/status in KiB (Linux; ru_maxrss as
    fallback, which survives exec and so may hold the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def step_cost(steps: int, threads: int) -> dict:
    out = {}
    for kind in ("partialconv", "plain"):
        cmd = [sys.executable, __file__, "--step-probe", kind, "--steps", str(steps)]
        cmd += ["--threads", str(threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    pc, plain = out["partialconv"], out["plain"]
    out["time_ratio"] = pc["cpu_s_per_step_median"] / plain["cpu_s_per_step_median"]
    out["memory_ratio"] = pc["peak_rss_mib"] / plain["peak_rss_mib"]
    out["step_memory_ratio"] = (
        pc["peak_growth_during_steps_mib"] / plain["peak_growth_during_steps_mib"]
    )
    return out


# -- main ------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=240.0, help="CPU s per network")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--members", type=int, default=16, help="ensemble members")
    parser.add_argument("--n-test", type=int, default=0, help="held-out fields (0: all)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of the step probe")
    parser.add_argument(
        "--kriging-fit-points",
        type=int,
        default=1000,
        help="kriging's max_fit_points; 0: no kriging",
    )
    parser.add_argument("--pconv-channels", type=int, default=16)
    parser.add_argument("--cvae-channels", type=int, default=16)
    parser.add_argument("--context", type=int, default=0, help="neighbouring days as inputs")
    parser.add_argument(
        "--roll-fields",
        action="store_true",
        help="networks: augment by rolling training fields in longitude (zonally symmetric data)",
    )
    parser.add_argument(
        "--fill-rolls",
        type=int,
        default=1,
        help="partial-conv with --roll-fields: average the fill over this many longitude rolls",
    )
    parser.add_argument("--pconv-lr", type=float, default=1e-3, help="partial-conv Adam lr")
    parser.add_argument(
        "--pconv-loss",
        choices=("l1", "l2"),
        default="l1",
        help="partial-conv valid/hole terms (PartialConvInfiller reconstruction)",
    )
    parser.add_argument(
        "--area-loss",
        action="store_true",
        help="partial-conv: weigh the loss by cell area (row_weights='area')",
    )
    parser.add_argument(
        "--ema-decay", type=float, default=None, help="networks: EMA of the weights (TrainConfig)"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine", "linear"),
        default="constant",
        help="networks: learning-rate schedule over the CPU budget (TrainConfig.lr_schedule)",
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=("partialconv", "cvae", "pconv-crps", "pconv-oi", "oi-residual", "none"),
        default=["partialconv", "cvae"],
        help="networks to train (default: partialconv cvae; 'none': no network)",
    )
    parser.add_argument(
        "--oi",
        nargs="*",
        metavar="VARIANT",
        choices=OI_VARIANTS,
        default=None,
        help="also fit and score optimal interpolation with the learned covariance: plain "
        "(time samples only), zonal (roll_fields: every longitude shift), zonal-hemispheric "
        "(and every field mirrored about the equator); no variant given: all three",
    )
    parser.add_argument(
        "--oi-nugget",
        type=lambda v: v if v == "auto" else float(v),
        default="auto",
        help="optimal-interpolation nugget (relative to the mean variance, or 'auto')",
    )
    parser.add_argument(
        "--oi-context",
        type=int,
        nargs="+",
        default=[0],
        help="optimal interpolation: neighbouring days on each side (space-time OI); several "
        "values: one row each",
    )
    parser.add_argument(
        "--oi-solver",
        nargs="+",
        choices=("dense", "reduced"),
        default=["dense"],
        help="optimal interpolation: dense N x N covariance and/or the reduced-space solver "
        "(leading --oi-rank EOFs + diagonal, climgen.tasks.fill.oi_reduced); one row each",
    )
    parser.add_argument(
        "--oi-rank",
        type=lambda v: float(v) if "." in v else int(v),
        default=200,
        help="reduced OI: EOFs kept (an int) or fraction of the variance kept (e.g. 0.9999)",
    )
    parser.add_argument(
        "--crps-members",
        type=int,
        default=4,
        help="pconv-crps: fills per training field in the CRPS loss",
    )
    parser.add_argument(
        "--crps-batch",
        type=int,
        default=4,
        help="pconv-crps: fields per step (x --crps-members network passes)",
    )
    parser.add_argument(
        "--test-data",
        metavar="NC",
        help="score on the days of this independent run (e.g. ../shared/data/heldsuarez_test.nc"
        ", another seed) instead of the last 20 %% of the training run",
    )
    parser.add_argument(
        "--test-skip", type=int, default=0, help="--test-data: skip its first days (spin-up)"
    )
    parser.add_argument("--no-step-cost", action="store_true", help="skip the step probe")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the trained networks' run directories as DIR/<method> (reuse with --load)",
    )
    parser.add_argument(
        "--load",
        metavar="DIR",
        help="skip training: load the networks kept by an earlier --keep DIR run",
    )
    parser.add_argument(
        "--train-only", action="store_true", help="stop after training (with --keep: score later)"
    )
    parser.add_argument("--json", metavar="OUT", help="write all results as JSON")
    parser.add_argument("--report", metavar="DIR", help="write the gap-filling report page")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budget/test")
    parser.add_argument("--step-probe", choices=("partialconv", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step_probe:
        print(json.dumps(step_probe(args.step_probe, args.steps, args.threads)))
        return 0
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="sklearn")  # kriging bound warnings per field
    if args.quick:
        args.budget_s, args.members, args.steps, args.kriging_fit_points = 4.0, 4, 1, 200
    load0 = os.getloadavg()
    print(
        f"bench_fill: {platform.node()} {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), budget "
        f"{args.budget_s:g} CPU s/network, load {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
        flush=True,
    )
    from climgen.tasks.fill.cross_validation import calibrate_spread
    from climgen.tasks.fill.infiller import Infiller

    train, val, test, masks = load_data(args)
    val_masks, test_masks = paired_masks(masks, val), paired_masks(masks, test)
    print(
        f"data: train {train.sizes['time']}, val {val.sizes['time']}, test "
        f"{test.sizes['time']} fields 72x72; anomaly std {float(test.std()):.2f} K; masks "
        f"{[round(float(c), 3) for c in masks.mean(('lat', 'lon')).values]} coverage",
        flush=True,
    )
    results: dict = {"methods": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench_fill_"))
    nets = {}
    common = {"context": args.context}
    if args.roll_fields:
        common["roll_fields"] = True
    specs = {
        "partialconv": dict(
            base_channels=args.pconv_channels,
            lr=args.pconv_lr,
            **({"reconstruction": "l2"} if args.pconv_loss == "l2" else {}),
            **({"row_weights": "area"} if args.area_loss else {}),
            **common,
            **({"fill_rolls": args.fill_rolls} if args.fill_rolls > 1 else {}),
        ),
        "cvae": dict(base_channels=args.cvae_channels, latent_dim=32, lr=1e-3, **common),
    }
    specs["pconv-crps"] = {
        **specs["partialconv"],
        "reconstruction": "crps",
        "crps_members": args.crps_members,
    }
    args.networks = [n for n in args.networks if n != "none"]
    args.oi = () if args.oi is None else (args.oi or OI_VARIANTS)  # bare --oi: all variants
    specs["pconv-oi"] = {
        **specs["partialconv"],
        "prior": "optimal-interpolation",
        "prior_options": {"hemispheric": True, "nugget": args.oi_nugget},
    }
    specs["oi-residual"] = {**specs["pconv-crps"], **specs["pconv-oi"], "residual": True}
    specs["oi-residual"]["reconstruction"] = "crps"
    for label in args.networks:
        options = specs[label]
        method = "partialconv" if label in ("pconv-crps", "pconv-oi", "oi-residual") else label
        if args.load:
            run_dir = Path(args.load) / label
            nets[label] = Infiller.load(run_dir)
            nets[label].fill_rolls = options.get("fill_rolls", 1)
            # calibrate_spread saved the earlier run's α in the run dir: score raw first again
            nets[label].spread_inflation = 1.0
            info_path = run_dir / "bench_train.json"
            info = json.loads(info_path.read_text()) if info_path.exists() else {}
            info["loaded_from"] = str(run_dir)
            print(f"loaded {label} from {run_dir}", flush=True)
        else:
            print(f"training {label} {options} for {args.budget_s:g} CPU s ...", flush=True)
            nets[label], info = train_network(
                method,
                options,
                train,
                masks,
                args.budget_s,
                tmp / label,
                batch_size=args.crps_batch if label in ("pconv-crps", "oi-residual") else 16,
                ema_decay=args.ema_decay,
                lr_schedule=args.lr_schedule,
            )
            info["options"] = {
                **options,
                "ema_decay": args.ema_decay,
                "lr_schedule": args.lr_schedule,
            }
            if args.keep:
                kept = Path(args.keep) / label
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(tmp / label, kept)
                (kept / "bench_train.json").write_text(json.dumps(info, indent=2, default=float))
                nets[label] = Infiller.load(kept)
                nets[label].fill_rolls = options.get("fill_rolls", 1)
        results[f"train_{label}"] = info
        print(f"  {info}", flush=True)

    if args.train_only:
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    print("scores on hidden cells of the held-out fields:", flush=True)
    m = args.members
    res = results["methods"]
    if args.kriging_fit_points:
        res["kriging"] = scored(
            "kriging",
            Infiller("kriging", max_fit_points=args.kriging_fit_points),
            test,
            test_masks,
            m,
        )
    res["nearest"] = scored("nearest", "nearest", test, test_masks, m)
    res["zonal-mean"] = scored("zonal-mean", "zonal-mean", test, test_masks, m)
    for label in DETERMINISTIC:
        if label in nets:
            res[label] = scored(label, nets[label], test, test_masks, m)

    def raw_and_calibrated(label: str) -> None:
        """Score ensemble ``label`` raw, fit its spread inflation on the validation split,
        score it again (rows ``label`` and ``label-calibrated``)."""
        res[label] = scored(f"{label} ({m} members)", nets[label], test, test_masks, m)
        c0 = time.process_time()
        alpha = calibrate_spread(nets[label], val, val_masks, members=m, seed=1)
        print(f"  {label} spread inflation fitted on validation: α = {alpha:.3f}", flush=True)
        res[f"{label}-calibrated"] = scored(
            f"{label} calibrated",
            nets[label],
            test,
            test_masks,
            m,
            {"spread_inflation": alpha, "calibration_cpu_s": time.process_time() - c0},
        )

    ensembles = [label for label in ENSEMBLES if label in nets]
    for label in ensembles:
        distance = spread_by_distance(nets[label], test, test_masks, masks.sizes["time"], m)
        raw_and_calibrated(label)
        res[label]["spread_by_distance"] = distance

    oi_labels = []
    rows = [(v, k, s) for v in args.oi for k in args.oi_context for s in args.oi_solver]
    for variant, k, solver in rows:
        label = f"oi-{variant}" + (f"-context{k}" if k else "")
        label += f"-reduced{args.oi_rank}" if solver == "reduced" else ""
        options = {
            "roll_fields": variant != "plain",
            "hemispheric": variant == "zonal-hemispheric",
            "nugget": args.oi_nugget,
            "context": k,
            "solver": solver,
            **({"rank": args.oi_rank} if solver == "reduced" else {}),
        }
        c0 = time.process_time()
        nets[label] = Infiller("optimal-interpolation", **options).fit(train, run_dir=tmp / label)
        fit_cpu = time.process_time() - c0
        print(f"  {label} covariance fitted in {fit_cpu:.1f} CPU s {options}", flush=True)
        raw_and_calibrated(label)
        res[label].update(fit_cpu_s=fit_cpu, options=options)
        oi_labels.append(label)

    if args.report:
        from climgen.tasks.fill.cross_validation import cross_validation_report

        print(f"writing report page to {args.report} ...", flush=True)
        n_rep = min(8, test.sizes["time"])
        shown = {"zonal-mean": "zonal-mean"}
        if args.kriging_fit_points:
            shown["kriging"] = Infiller("kriging", max_fit_points=args.kriging_fit_points)
        for label in DETERMINISTIC:
            if label in nets:
                shown[label] = nets[label]
        for label in ensembles:
            shown[f"{label} (calibrated)"] = nets[label]
        if oi_labels:
            shown[f"{oi_labels[-1]} (calibrated)"] = nets[oi_labels[-1]]
        cross_validation_report(
            shown,
            test.isel(time=slice(0, n_rep)),
            test_masks.isel(time=slice(0, n_rep)),
            args.report,
            members=m,
            title="Gap filling: Held–Suarez tas anomalies under real HadCRUT4 masks",
            notes=(f"First {n_rep} held-out fields of bench_fill.py (a subset of the table).",),
        )

    if not args.no_step_cost:
        print("train-step cost (partial-conv vs plain-conv U-Net, 72x72, batch 16) ...", flush=True)
        results["step_cost"] = step_cost(args.steps, args.threads)
        sc = results["step_cost"]
        for kind in ("partialconv", "plain"):
            print(f"  {sc[kind]}", flush=True)
        print(
            f"  ratio time {sc['time_ratio']:.2f}, peak RSS {sc['memory_ratio']:.2f}, "
            f"peak growth during steps {sc['step_memory_ratio']:.2f}",
            flush=True,
        )

    k = res.get("kriging", {"rmse": float("nan"), "crps": float("nan")})
    trained = [n for n in (*DETERMINISTIC, *ensembles) if n in res]
    targets = {}
    if trained:
        best_net = min(trained, key=lambda n: res[n]["rmse"])
        targets = {
            "best_network": best_net,
            "rmse_ratio_best_network_vs_kriging": res[best_net]["rmse"] / k["rmse"],
            "rmse_target_met": res[best_net]["rmse"] <= TARGET_RATIO * k["rmse"],
        }
    for label in oi_labels:
        targets[f"{label}_rmse_vs_kriging"] = res[label]["rmse"] / k["rmse"]
        targets[f"{label}_crps_calibrated_vs_kriging"] = (
            res[f"{label}-calibrated"]["crps"] / k["crps"]
        )
    if ensembles:
        best_ens = min(ensembles, key=lambda n: res[f"{n}-calibrated"]["crps"])
        cal = res[f"{best_ens}-calibrated"]
        targets.update(
            best_ensemble=best_ens,
            spread_skill_raw=res[best_ens]["spread_skill"],
            spread_skill_calibrated=cal["spread_skill"],
            spread_skill_target_met=SSR_RANGE[0] <= cal["spread_skill"] <= SSR_RANGE[1],
            crps_calibrated_vs_kriging=cal["crps"] / k["crps"],
            crps_target_met=cal["crps"] < k["crps"],
        )
    for label in ensembles:  # the generative infillers against the best OI row (issue 27)
        if oi_labels:
            best_oi = min(oi_labels, key=lambda n: res[n]["rmse"])
            cal, oi_cal = res[f"{label}-calibrated"], res[f"{best_oi}-calibrated"]
            gaps = cal["gaps"].get("members", {})  # structure in the gaps ÷ floor, ≤ 2
            targets[f"{label}_vs_{best_oi}"] = {
                "rmse_ratio": cal["rmse"] / oi_cal["rmse"],
                "crps_ratio": cal["crps"] / oi_cal["crps"],
                "spread_skill": cal["spread_skill"],
                "gaps_members_within_2x": bool(gaps) and max(gaps.values()) <= 2,
                "met": cal["rmse"] <= 0.9 * oi_cal["rmse"]
                and cal["crps"] <= 0.9 * oi_cal["crps"]
                and SSR_RANGE[0] <= cal["spread_skill"] <= SSR_RANGE[1]
                and bool(gaps)
                and max(gaps.values()) <= 2,
            }
    results["targets"] = targets
    load1 = os.getloadavg()
    results["meta"] = {
        "argv": sys.argv,
        "load_start": load0,
        "load_end": load1,
        "torch": torch.__version__,
        "threads": args.threads,
        "budget_cpu_s": args.budget_s,
        "members": m,
        "n_train": train.sizes["time"],
        "n_val": val.sizes["time"],
        "n_test": test.sizes["time"],
        "test_data": args.test_data,
    }
    print(f"targets: {results['targets']}", flush=True)
    print(f"load at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    shutil.rmtree(tmp, ignore_errors=True)  # run dirs of the trained networks
    return 0


if __name__ == "__main__":
    sys.exit(main())
