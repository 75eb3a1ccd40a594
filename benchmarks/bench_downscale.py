"""Benchmark: downscaling ×4 of RBC buoyancy and Held–Suarez ω500, every method side by side.

Run:  .venv/bin/python benchmarks/bench_downscale.py --budget-cpu 200 --threads 1 \\
          --json bench_downscale.json [--datasets rbc heldsuarez] [--quick]
Data: ``<repo>/../shared/data/rbc_ra2e6_train.nc`` (``b``, 64×256, walls in z, periodic x) and
``heldsuarez_train.nc`` (``omega500``, and ``tas`` as ``--datasets heldsuarez-tas``; 64×128
Gaussian grid, periodic longitude). A missing
file is skipped with a message. Split in time: the first 80 % train, the last 20 % are the
held-out truth; their area-weighted ×4 block means (``Downscaler.coarsen``) are the inputs.

Methods: the interpolation baselines (no training), and networks trained through the public
``Downscaler.fit`` for a fixed budget of **process CPU seconds** per training stage
(``--budget-cpu``, torch with ``--threads`` threads; ``TrainConfig(max_time_s,
time_clock="cpu")`` ends training at the first step past the budget, so contention from
other processes does not change the budget):
two regression variants (L2 loss with the in-model additive conservation layer; L2 with patch
training on random crops), SRGAN, and CorrDiff diffusion (its regression stage and its
residual-diffusion stage each get the budget; the regression stage alone, the plain L1
regression SR of ``method="regression"``, is scored as "regression (L1)"). Every method is
scored without and with the conservation layer (``conserve=True``, applied to the same
output) by :func:`climgen.tasks.downscale.scoring.compare_methods`: area-weighted RMSE,
log-spectral error in the upper half of wavenumbers, W1, |Δq99.9|, conservation error, CRPS
(ensembles of ``--members``). Ratios are to plain bicubic in the same run.

``--calibrate`` adds, for bicubic and every network, the rows "+ spectral calibration":
``Downscaler.calibrate_spectrum`` fitted on ``--cal-fields`` training fields (the gain
g(k) = sqrt(P_fine/P_method) per wavenumber,
:mod:`climgen.tasks.emulate.spectral_calibration`), then the
held-out output calibrated, scored without the layer, with it as ``conserve=True`` applies
it to calibrated outputs ("+layer": 20 iterations of smooth back-projection of the block-mean
residual, then the exact layer) and with the plain layer straight after the gain ("+plain
layer"), and a table of calibrated against raw ratios to bicubic. ``--covariance`` adds
"+covariance layer" (``back_projection="covariance"``: the optimal-interpolation correction
of :mod:`climgen.tasks.downscale.covariance_correction`, then the exact layer); ``--max-gain 1``
fits damping-only gains. ``--keep-runs DIR`` keeps the trained networks' run directories.

Reference row (not a method: it reads the truth) "oracle low-pass": the held-out truth
truncated to the modes the coarse grid can represent (zonal/periodic wavenumbers ≤ n_c/2 by
FFT, the first n_c cosine modes along a non-periodic axis by DCT-II; n_c coarse cells). Its
RMSE is the error of a method that knew the resolvable scales exactly and nothing finer, so a
method below it predicts sub-grid structure from the resolved scales.

Throughput: fields per second (wall) and per CPU second for a 256×1024 output (a 64×256
coarse input) for each method, as a ratio to bicubic in the same run. Wall numbers are noisy
on a shared machine: the load average is printed at start and end.

Prints Markdown tables and writes the report page of each dataset (``--report-dir``).
Exits 0 whether or not the targets (best RMSE ≤ 0.7× bicubic, its high-k spectral error ≤
0.3× bicubic's, conservation ≤ 1e-5 with the layer) are met.
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

from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import open_fields
from climgen.families.base import build_family
from climgen.families.superres import conserve as conserve_layer
from climgen.report.downscale_page import on_truth_grid, write_downscale_page
from climgen.tasks.downscale.covariance_correction import covariance_correction_on
from climgen.tasks.downscale.downscaler import Downscaler, back_project
from climgen.tasks.downscale.scoring import compare_methods
from climgen.train.callbacks import Callback

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TRAIN_FRACTION = 0.8
FACTOR = 4
DATASETS = {
    "rbc": ("rbc_ra2e6_train.nc", "b", "Rayleigh–Bénard buoyancy b, 64×256 planar", (16, 16)),
    "heldsuarez": ("heldsuarez_train.nc", "omega500", "Held–Suarez ω500, 64×128 lat/lon", (16, 16)),
    "heldsuarez-tas": ("heldsuarez_train.nc", "tas", "Held–Suarez tas, 64×128 lat/lon", (16, 16)),
}
INTERPOLATION = ("nearest", "bilinear", "bicubic", "lanczos")
CAL = " + spectral calibration"
BACK_PROJECTION = 20  # conserve=True's default for calibrated outputs
ORACLE = "oracle low-pass (truth, resolvable modes only)"
NET = dict(base_channels=32, n_blocks=6, lr=1e-3)


def network_methods(patch) -> dict[str, tuple[str, dict, dict]]:
    """label → (method, Downscaler options, train options)."""
    return {
        "regression L2 (in-model layer)": (
            "regression",
            dict(NET, content_loss="l2", constraint="additive"),
            dict(batch_size=8),
        ),
        "regression patches": (
            "regression",
            dict(NET, content_loss="l2", patch_size=patch),
            dict(batch_size=16),
        ),
        "srgan": (
            "srgan",
            dict(NET, spectral_weight=0.1, adversarial_weight=1e-2, warmup_steps=20),
            dict(batch_size=8),
        ),
        "diffusion": (
            "diffusion",
            dict(
                regression_options=dict(NET),
                diffusion_options=dict(
                    base_channels=16,
                    channel_mults=(1, 2, 2),
                    attention_levels=(),
                    sample_steps=8,
                    lr=1e-3,
                ),
            ),
            dict(batch_size=8),
        ),
    }


class StageLog(Callback):
    """Records the steps and process-CPU seconds of each training stage (the budget itself is
    the trainer's: ``TrainConfig(max_time_s, time_clock="cpu")``)."""

    def __init__(self):
        self.t0 = 0.0
        self.stages: list[dict] = []

    def on_fit_start(self, trainer) -> None:
        self.t0 = time.process_time()

    def on_fit_end(self, trainer, result) -> None:
        self.stages.append({"steps": int(result.step), "cpu_s": time.process_time() - self.t0})


def load_split(path: Path, variable: str):
    ds = open_fields(path, variable).load()
    n = ds.sizes["time"]
    n_train = int(round(TRAIN_FRACTION * n))
    return ds.isel(time=slice(0, n_train)), ds.isel(time=slice(n_train, n))


def with_layer(out: xr.DataArray, coarse: xr.DataArray, back_projection: int | str = 0):
    """``out`` passed through the additive conservation layer (cos-lat weights on lat/lon),
    after ``back_projection`` iterations of smooth back-projection (what ``conserve=True``
    does for calibrated outputs, :func:`climgen.tasks.downscale.back_project`), or after the
    optimal-interpolation correction for ``"covariance"``
    (:mod:`climgen.tasks.downscale.covariance_correction`)."""
    canon, _ = to_canonical(out)
    grid = detect_grid(canon)
    ccan, _ = to_canonical(coarse)
    lead = [d for d in canon.dims if d not in (grid.y_dim, grid.x_dim)]
    canon = canon.transpose(*lead, grid.y_dim, grid.x_dim)
    c = torch.as_tensor(ccan.transpose(*[d for d in lead if d != "member"], ...).values)
    if "member" in lead:
        c = c[None]
    w = None
    if grid.kind == "latlon":
        w = torch.as_tensor(np.cos(np.deg2rad(canon[grid.y_dim].values)).clip(min=0))
    y = torch.as_tensor(canon.values, dtype=torch.float64)
    if back_projection == "covariance":
        y = covariance_correction_on(canon, y, c.double(), FACTOR, w)
    elif back_projection:
        periodic = (grid.periodic_y, grid.periodic_x)
        y = back_project(y, c.double(), FACTOR, w, periodic, back_projection)
    y = conserve_layer(y, c.double(), FACTOR, w)
    return canon.copy(data=y.numpy())


def oracle_lowpass(truth: xr.DataArray, factor: int) -> xr.DataArray:
    """``truth`` keeping only the modes its ×``factor`` coarse grid can represent (module
    docstring): per spatial axis FFT truncation at n/(2·factor) if periodic, else DCT-II
    truncation at n/factor."""
    import scipy.fft

    grid = detect_grid(truth)
    values = truth.transpose(..., *grid.spatial_dims).values.astype(np.float64)
    for axis, periodic in zip((-2, -1), (grid.periodic_y, grid.periodic_x)):
        n = values.shape[axis]
        if periodic:
            spec = np.fft.rfft(values, axis=axis)
            keep = np.arange(spec.shape[axis]) <= n // (2 * factor)
            shape = [1] * values.ndim
            shape[axis] = -1
            values = np.fft.irfft(spec * keep.reshape(shape), n=n, axis=axis)
        else:
            spec = scipy.fft.dct(values, axis=axis, norm="ortho")
            keep = np.arange(n) < n // factor
            shape = [1] * values.ndim
            shape[axis] = -1
            values = scipy.fft.idct(spec * keep.reshape(shape), axis=axis, norm="ortho")
    out = truth.transpose(..., *grid.spatial_dims).copy(data=values.astype(truth.dtype))
    return out.transpose(*truth.dims)


def latitude_static(da: xr.DataArray) -> xr.DataArray:
    """sin(latitude) on ``da``'s fine grid: a static input that tells a convolutional net
    where it is (its statistics differ between tropics and mid-latitudes)."""
    grid = detect_grid(da)
    if grid.kind != "latlon":
        raise SystemExit("--static-latitude needs a lat/lon data set")
    lat = da[grid.y_dim]
    field = np.sin(np.deg2rad(lat)) * xr.ones_like(da[grid.x_dim], dtype=float)
    return field.rename("sin_lat").transpose(grid.y_dim, grid.x_dim)


def throughput(label: str, down: Downscaler | None, method: str, n: int) -> dict:
    """Fields/s for a 256×1024 output from a (64, 256) coarse input (untrained grid is fine:
    the nets are fully convolutional; diffusion: 1 field)."""
    gen = torch.Generator().manual_seed(0)
    scale = 1.0
    inputs = 1 if down is None or down.family is None else 1 + down.family.context_channels
    coarse = torch.randn(n, inputs, 64, 256, generator=gen, dtype=torch.float64)
    if down is None or down.spec.kind == "interpolation":
        da = xr.DataArray(
            coarse[:, 0].numpy(),
            dims=("time", "y", "x"),
            coords={
                "y": ("y", np.arange(64) + 0.5, {"axis": "Y"}),
                "x": ("x", np.arange(256) + 0.5, {"axis": "X", "periodic": "true"}),
            },
            name="f",
        )
        run = lambda: Downscaler(FACTOR, method).downscale(da)  # noqa: E731
    elif down.diffusion is not None:
        # The residual U-Net is built for its training grid: time an untrained copy of the
        # same architecture (the cost does not depend on the weights) at 128×512 and scale
        # by the pixel count (×1/4): sampling at 256×1024 exceeded the machine's 20 GB.
        n, scale = 1, 0.25
        cond = coarse[:1, :, :32, :128].float()
        fam = down.family
        unet = build_family(
            "diffusion",
            channels=1,
            shape=(128, 512),
            periodic=fam.periodic,
            cond_channels=1,
            **down.diffusion_options,
        ).eval()

        def run():
            with torch.no_grad():
                mean = fam.generator(*fam.inputs(cond, None, gen))
                unet.sample(1, generator=gen, cond=mean)

    else:
        cond = coarse.float()
        fam = down.family

        def run():
            with torch.no_grad():
                y = fam.generator(*fam.inputs(cond, None, gen))
                if fam.config["constraint"] == "additive":
                    conserve_layer(y, cond[:, :1], FACTOR)

    try:
        run()  # warm-up (builds matrices / caches)
        c0, w0 = time.process_time(), time.perf_counter()
        run()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    except Exception as exc:  # noqa: BLE001 — report, do not stop the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    out = {"fields": n, "fields_per_s": scale * n / wall, "fields_per_cpu_s": scale * n / cpu}
    return {**out, "scaled_from_128x512": True} if scale != 1.0 else out


def calibrated_rows(down, label, train, coarse, var, args, outputs, info) -> None:
    """Fit ``down``'s spectral calibration on the training split (``--cal-fields`` fields, one
    member each) and add the calibrated output: without the layer; "+layer" with it as
    ``conserve=True`` applies it after a calibration (smooth back-projection, then the exact
    layer); "+plain layer" with the layer straight after the gain."""
    stochastic = down.method in ("srgan", "diffusion")
    c0 = time.process_time()
    down.calibrate_spectrum(train, n_fields=args.cal_fields, seed=1, max_gain=args.max_gain)
    fit_cpu = time.process_time() - c0
    out = down.downscale(coarse, members=args.members if stochastic else None, seed=0)[var]
    outputs[f"{label}{CAL}"] = out
    outputs[f"{label}{CAL} +layer"] = with_layer(out, coarse[var], BACK_PROJECTION)
    outputs[f"{label}{CAL} +plain layer"] = with_layer(out, coarse[var])
    if args.covariance:
        outputs[f"{label}{CAL} +covariance layer"] = with_layer(out, coarse[var], "covariance")
    info[f"{label}{CAL}"] = {
        "stages": info.get(label, info.get("regression (L1)", {})).get("stages"),
        "calibration_cpu_s": fit_cpu,
        "heldout_inference_cpu_s": time.process_time() - c0 - fit_cpu,
    }
    print(f"[{label}] spectral calibration fitted in {fit_cpu:.0f} cpu-s", flush=True)


def run_dataset(key: str, args, work: Path) -> dict:
    fname, var, desc, patch = DATASETS[key]
    path = DATA_DIR / fname
    if not path.exists():
        print(f"[{key}] skipped: {path.resolve()} is absent")
        return {}
    train, held = load_split(path, var)
    if args.extra_train:  # more training days of the same model (e.g. another seed's run)
        extra = [open_fields(p_, var).load() for p_ in args.extra_train]
        for e in extra:
            if dict(e.sizes) | {"time": 0} != dict(train.sizes) | {"time": 0}:
                raise SystemExit(f"--extra-train: {e.sizes} is not on the grid of {path.name}")
        spatial = {d: train[d] for d in train.dims if d != "time" and d in train.coords}
        train = xr.concat([train, *[e.assign_coords(spatial) for e in extra]], "time")
        print(f"[{key}] training split + --extra-train: {train.sizes['time']} fields", flush=True)
    if args.quick:
        train, held = train.isel(time=slice(0, 16)), held.isel(time=slice(0, 6))
    n = held.sizes["time"]
    if args.context and args.n_eval:
        raise SystemExit("--context needs consecutive held-out fields: drop --n-eval")
    if args.n_eval and args.n_eval < n:  # evenly spaced held-out fields
        held = held.isel(time=np.linspace(0, n - 1, args.n_eval).round().astype(int))
    down0 = Downscaler(FACTOR, "bicubic")
    coarse = down0.coarsen(held)
    truth = held[var]
    outputs, info = {}, {}
    for m in INTERPOLATION:
        outputs[m] = Downscaler(FACTOR, m).downscale(coarse)[var]
        # The layer with the truth grid's weights (a baseline's own fine latitudes come from
        # the coarse cell bounds, which on a Gaussian grid differ slightly from the truth's).
        outputs[f"{m} +layer"] = with_layer(on_truth_grid(truth, outputs[m]), coarse[var])
    outputs[ORACLE] = oracle_lowpass(truth, FACTOR)
    if args.calibrate:
        base = Downscaler(FACTOR, "bicubic")
        c0 = time.process_time()
        base.calibrate_spectrum(train, n_fields=args.cal_fields, seed=1, max_gain=args.max_gain)
        cal = on_truth_grid(truth, base.downscale(coarse)[var])
        outputs[f"bicubic{CAL}"] = cal
        outputs[f"bicubic{CAL} +layer"] = with_layer(cal, coarse[var], BACK_PROJECTION)
        outputs[f"bicubic{CAL} +plain layer"] = with_layer(cal, coarse[var])
        if args.covariance:
            outputs[f"bicubic{CAL} +covariance layer"] = with_layer(cal, coarse[var], "covariance")
        info[f"bicubic{CAL}"] = {"calibration_cpu_s": time.process_time() - c0}
    models = {}
    for label, (method, opts, topts) in network_methods(patch).items():
        if args.only and label not in args.only:
            continue
        budget = StageLog()
        if args.augment:
            opts = dict(opts, augment=args.augment)
            label = f"{label} +aug {','.join(args.augment)}"
        if args.context:
            opts = dict(opts, context=args.context)
            label = f"{label} +context {args.context}"
        if args.static_latitude:
            opts = dict(opts, static=latitude_static(train[var]))
            label = f"{label} +latitude input"
        down = Downscaler(FACTOR, method, **opts)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            down.fit(
                train,
                run_dir=work / f"{key}-{label.replace(' ', '_')}",
                max_steps=10**6,
                seed=0,
                progress=False,
                checkpoint_every=0,
                log_every=50,
                max_time_s=args.budget_cpu,
                time_clock="cpu",
                callbacks=[budget],
                **topts,
            )
        fit_wall = time.perf_counter() - t0
        stochastic = method in ("srgan", "diffusion")
        c0 = time.process_time()
        out = down.downscale(coarse, members=args.members if stochastic else None, seed=0)[var]
        infer_cpu = time.process_time() - c0
        outputs[label] = out
        outputs[f"{label} +layer"] = with_layer(out, coarse[var])
        models[label] = down
        if method == "diffusion":
            # CorrDiff's first stage is the plain L1 regression net at the same budget:
            # score it as "regression" (saves training it twice).
            diffusion, down.diffusion = down.diffusion, None
            reg = down.downscale(coarse)[var]
            outputs["regression (L1)"] = reg
            outputs["regression (L1) +layer"] = with_layer(reg, coarse[var])
            info["regression (L1)"] = {"stages": budget.stages[:1]}
            if args.calibrate:
                calibrated_rows(down, "regression (L1)", train, coarse, var, args, outputs, info)
                down.calibration = None
            down.diffusion = diffusion
        info[label] = {
            "stages": budget.stages,
            "fit_wall_s": fit_wall,
            "heldout_inference_cpu_s": infer_cpu,
        }
        if args.calibrate:
            calibrated_rows(down, label, train, coarse, var, args, outputs, info)
        print(
            f"[{key}] {label}: {budget.stages} wall {fit_wall:.0f}s, infer {infer_cpu:.0f} cpu-s",
            flush=True,
        )
    scores = compare_methods(truth, outputs, coarse[var], FACTOR, baseline="bicubic")
    speed = {}
    n_tp = 2 if args.quick else 4
    for m in INTERPOLATION:
        speed[m] = throughput(m, None, m, n_tp)
    for label, down in models.items():
        speed[label] = throughput(label, down, down.method, n_tp)
    base = speed["bicubic"]
    for s in speed.values():
        if "fields_per_s" in s:
            s["ratio_wall"] = s["fields_per_s"] / base["fields_per_s"]
            s["ratio_cpu"] = s["fields_per_cpu_s"] / base["fields_per_cpu_s"]
    if args.report_dir:
        shown = {
            k: v
            for k, v in outputs.items()
            if not k.endswith("layer") and k not in ("nearest", ORACLE)
        }
        write_downscale_page(
            Path(args.report_dir) / key / "index.html",
            truth=truth,
            coarse=coarse[var],
            outputs=shown,
            scores=scores,
            factor=FACTOR,
            title=f"Downscaling benchmark ×{FACTOR}: {desc}",
            provenance={"command": args.command, "budget_cpu_s": args.budget_cpu},
        )
    return {
        "description": desc,
        "variable": var,
        "n_train": train.sizes["time"],
        "n_heldout": held.sizes["time"],
        "scores": scores,
        "training": info,
        "throughput": speed,
    }


def print_tables(key: str, res: dict) -> None:
    print(
        f"\n### {res['description']} ×{FACTOR} ({res['n_train']} train / "
        f"{res['n_heldout']} held-out fields)\n"
    )
    print(
        "| method | steps | RMSE | /bicubic | high-k spec. err [dec] | /bicubic | W1 | "
        "\\|Δq99.9\\| | conservation err | CRPS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, s in res["scores"].items():
        base = label.replace(" +plain layer", "").replace(" +layer", "")
        stages = res["training"].get(base, {}).get("stages")
        steps = "+".join(str(st["steps"]) for st in stages) if stages else "—"
        crps = f"{s['crps']:.4g}" if "crps" in s else "—"
        print(
            f"| {label} | {steps} | {s['rmse']:.4g} | {s['rmse_ratio']:.3f} | "
            f"{s['spectral_high_k']:.3g} | {s['spectral_ratio']:.3f} | {s['w1']:.3g} | "
            f"{s['q999_error']:.3g} | {s['conservation']:.2e} | {crps} |"
        )
    print("\n| method | fields/s (wall) | ×bicubic | fields per CPU s | ×bicubic |")
    print("|---|---|---|---|---|")
    for label, s in res["throughput"].items():
        if "error" in s:
            print(f"| {label} | {s['error']} | | | |")
            continue
        print(
            f"| {label} | {s['fields_per_s']:.3g} | {s['ratio_wall']:.3g} | "
            f"{s['fields_per_cpu_s']:.3g} | {s['ratio_cpu']:.3g} |"
        )
    cal = [k[: -len(CAL)] for k in res["scores"] if k.endswith(CAL)]
    if cal:
        sc = res["scores"]
        print(
            "\n| method | RMSE ×bicubic | calibrated | high-k ×bicubic | calibrated | "
            "+layer: RMSE ×bicubic | calibrated | +layer: high-k ×bicubic | calibrated |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for m in cal:
            row = [m]
            for suffix in ("", " +layer"):
                for key in ("rmse_ratio", "spectral_ratio"):
                    row += [f"{sc[m + suffix][key]:.3f}", f"{sc[m + CAL + suffix][key]:.3f}"]
            print("| " + " | ".join(row) + " |")
    methods = [m for m in res["scores"] if m != ORACLE]
    best = min(methods, key=lambda m: res["scores"][m]["rmse"])
    s = res["scores"][best]
    layer = [v["conservation"] for k, v in res["scores"].items() if k.endswith("layer")]
    print(
        f"\nbest RMSE: {best}: {s['rmse_ratio']:.3f}× bicubic (target ≤ 0.7: "
        f"{'met' if s['rmse_ratio'] <= 0.7 else 'missed'}); its high-k spectral error "
        f"{s['spectral_ratio']:.3f}× bicubic's (target ≤ 0.3: "
        f"{'met' if s['spectral_ratio'] <= 0.3 else 'missed'}); worst conservation error with "
        f"the layer {max(layer):.1e} (target ≤ 1e-5: "
        f"{'met' if max(layer) <= 1e-5 else 'missed'})"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--budget-cpu",
        type=float,
        default=200.0,
        help="process CPU seconds per training stage (default 200)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--members", type=int, default=4, help="ensemble members (default 4)")
    parser.add_argument(
        "--n-eval", type=int, default=0, help="score this many held-out fields (0: all)"
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["rbc", "heldsuarez"], choices=list(DATASETS)
    )
    parser.add_argument("--only", nargs="+", default=None, help="network labels to run")
    parser.add_argument("--report-dir", default=None, help="write a report page per dataset")
    parser.add_argument("--json", default=None, help="write all numbers to this file")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="also score bicubic and every network after Downscaler.calibrate_spectrum "
        "(fitted on the training split), without and with the layer",
    )
    parser.add_argument(
        "--covariance",
        action="store_true",
        help="with --calibrate: also the rows '+covariance layer' (the layer after the "
        "optimal-interpolation correction, Downscaler(back_projection='covariance'))",
    )
    parser.add_argument(
        "--max-gain",
        type=float,
        default=1e3,
        help="with --calibrate: clip the spectral gains to this (1: damping only; default 1000)",
    )
    parser.add_argument(
        "--cal-fields",
        type=int,
        default=32,
        help="training fields the spectral calibration is fitted on (default 32)",
    )
    parser.add_argument(
        "--extra-train",
        nargs="+",
        type=Path,
        default=[],
        metavar="NC",
        help="more training fields of the same model and grid (e.g. `climgen data heldsuarez "
        "--seed 2`), appended to the training split; the held-out fields are unchanged",
    )
    parser.add_argument(
        "--augment",
        nargs="+",
        default=[],
        choices=["shift", "mirror-y", "mirror-x"],
        help="networks: Downscaler(augment=...) symmetries (Held–Suarez: shift mirror-y)",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=0,
        help="networks: Downscaler(context=K), the coarse fields K days before and after as "
        "inputs (the held-out fields must stay consecutive: not with --n-eval)",
    )
    parser.add_argument(
        "--static-latitude",
        action="store_true",
        help="networks: sin(latitude) as a static fine-grid input (lat/lon data sets)",
    )
    parser.add_argument(
        "--keep-runs",
        type=Path,
        default=None,
        metavar="DIR",
        help="train the networks in DIR and keep their run directories (Downscaler.load)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s budget, tiny split")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/bench_downscale.py " + " ".join(argv or os.sys.argv[1:])
    if args.quick:
        args.budget_cpu, args.members = 3.0, 2
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); budget "
        f"{args.budget_cpu:g} CPU s per stage; load average at start {os.getloadavg()}",
        flush=True,
    )
    if args.keep_runs:
        args.keep_runs.mkdir(parents=True, exist_ok=True)
    work = args.keep_runs or Path(tempfile.mkdtemp(prefix="bench_downscale_"))
    results = {}
    try:
        for key in args.datasets:
            res = run_dataset(key, args, work)
            if res:
                results[key] = res
                print_tables(key, res)
    finally:
        if not args.keep_runs:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "results": results}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
