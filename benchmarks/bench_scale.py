"""Benchmark: cost and memory of gap filling and downscaling as the grid grows (issue 26).

Run:  .venv/bin/python benchmarks/bench_scale.py --sizes 36x72 72x144 180x360 \\
          --json bench_scale.json                                   (--quick: 2 small sizes)

Data: Gaussian random fields with a k⁻³ spectrum on global cell-centred lat/lon grids
(:func:`climgen.data.samples.grf_dataarray`), float64. Each (task, size) runs in a fresh
subprocess, so its peak RSS (``getrusage``'s ``ru_maxrss``, the whole process: Python,
numpy, torch and the data included) is its own.

Tasks.

- ``oi-reduced``: ``Infiller("optimal-interpolation", solver="reduced", rank=--rank,
  nugget=--nugget)`` fitted on ``--train`` fields (the EOFs from the Gram matrix of the
  anomalies), then ``--fields`` fields filled under blob masks of 20–40 % coverage with
  ``--members`` members. The dense OI would hold an N × N covariance: its size is printed
  alongside (``dense_cov_gb``), never allocated.
- ``bicubic-conserve``: ``Downscaler(4, "bicubic", conserve=True)``: ``--fields`` coarse
  fields (block means of the fine ones) back to the fine grid with exact block means.
- ``bicubic-covariance`` (not run by default): the same on the Gaussian grid of as many
  rows, with a spectrum calibrated on the fields and ``back_projection="covariance"`` (the
  block-mean correction shaped by the output's spectrum; above 2,048 coarse cells solved
  by zonal wavenumber).

- ``partialconv`` / ``partialconv-tiled``: an untrained partial-conv U-Net (``--width``
  base channels, ``--levels`` levels; the cost does not depend on the weights) filling
  ``--fields`` fields one at a time under 20–40 % coverage, whole or in ``--tile``-cell
  tiles with the exact halo (the net's receptive radius, :func:`climgen.tasks.fill.tiled.
  tiled_unet_infill`).
- ``regression-tiled`` / ``regression``: ``Downscaler(4, "regression", conserve=True,
  tile_size=--tile/4)`` or whole fields (``tile_size=0``; default net, built by one training
  step on 8-cell patches) downscaling ``--fields`` coarsened fields (grid sides divisible
  by 4).
- ``evaluate`` / ``evaluate-stream``: ``evaluate`` of ``--fields`` generated against
  ``--fields`` reference fields (≥ 4), in memory or with ``chunk_size=--chunk``; with the
  CPU s of its three super-linear steps inside (``sht_tables_cpu_s``: building the Legendre
  tables; ``sht_transform_cpu_s``: the spherical-harmonic transforms once built;
  ``structure_cpu_s``: the structure functions' lag passes).

For the network and evaluation tasks ``step_peak_rss_mb`` is the peak RSS of the measured
step alone (Linux VmHWM, reset before it).

``--year`` instead measures a year of daily fields evaluated from disk (issue 26):
``--year-fields`` (365) generated and as many reference k⁻³ fields of ``--year-grid``
(721 × 1440) written, ``--chunk`` fields at a time, as float32 to two zarr stores in a
temporary folder under ``--scratch`` (deleted afterwards), then ``evaluate(gen_store,
ref_store, chunk_size=--chunk)`` on the paths; writer and evaluation each in a fresh process,
with CPU, wall, peak RSS, an RSS trace and the bytes the process read (``rchar``):
``taskset -c 1 .venv/bin/python benchmarks/bench_scale.py --year --scratch DIR`` (smoke
run: ``--year-fields 16``).

``--rank-sweep RANK ...`` instead compares the dense and the reduced OI (those ranks) on the
72 × 72 HadCRUT-grid data of ``bench_fill.py`` (see :func:`_rank_sweep`).

Reported per (task, size): CPU s and wall s per field filled/downscaled (fit excluded; the
OI fit's CPU separately), peak RSS, and the log–log slope of CPU per field against the
number of cells N (least squares over the sizes run): cost ∝ N^slope.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time

import numpy as np


def _one(task: str, h: int, w: int, args) -> dict:
    """Run one (task, size) in this process; returns its measurements."""
    import torch

    torch.set_num_threads(1)
    from climgen.data.samples import grf_dataarray

    n_cells = h * w
    out = {"task": task, "ny": h, "nx": w, "cells": n_cells}
    if task == "oi-reduced":
        from climgen.tasks.fill.infiller import Infiller
        from climgen.tasks.fill.masks import blob_masks

        data = grf_dataarray(args.train + args.fields, h, w, kind="latlon", seed=0, name="tas")
        data = data.astype(np.float64)
        train, truth = data.isel(time=slice(0, args.train)), data.isel(time=slice(args.train, None))
        masks = blob_masks(args.fields, (h, w), coverage=(0.2, 0.4), seed=1).astype(bool)
        obs = truth.where(truth.copy(data=masks))
        oi = Infiller("optimal-interpolation", solver="reduced", rank=args.rank, nugget=args.nugget)
        c0 = time.process_time()
        oi.fit(train, run_dir=args.tmp / f"oi_{h}x{w}")
        out["fit_cpu_s"] = time.process_time() - c0
        c0, t0 = time.process_time(), time.perf_counter()
        filled = oi.fill(obs, members=args.members, seed=0)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        hidden = ~masks
        err = (filled.tas.values - truth.values)[hidden]
        out.update(
            rank=oi.gaussian.rank,
            model_mb=oi.gaussian.loadings.nbytes / 2**20,
            dense_cov_gb=n_cells**2 * 8 / 2**30,
            rmse_over_std=float(np.sqrt(np.mean(err**2)) / truth.values.std()),
        )
    elif task in ("bicubic-conserve", "bicubic-covariance"):
        from climgen.tasks.downscale.downscaler import Downscaler

        fine = grf_dataarray(args.fields, h, w, kind="latlon", seed=2, name="tas").to_dataset()
        if task == "bicubic-conserve":
            down = Downscaler(4, "bicubic", conserve=True)
        else:  # calibrated spectrum, then the covariance-shaped block-mean correction
            gauss = np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(h)[0]))
            fine = fine.assign_coords(lat=np.sort(gauss))  # a Gaussian grid: exact SHT
            down = Downscaler(4, "bicubic", conserve=True, back_projection="covariance")
            c0 = time.process_time()
            down.calibrate_spectrum(fine, n_fields=args.fields)
            out["calibration_cpu_s"] = time.process_time() - c0
        coarse = down.coarsen(fine)
        c0, t0 = time.process_time(), time.perf_counter()
        result = down.downscale(coarse)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        back = down.coarsen(result)["tas"].values - coarse["tas"].values
        out["max_block_mean_error"] = float(np.abs(back).max())
    elif task in NETWORK_TASKS or task in EVALUATE_TASKS:
        cpu, wall = (_networks if task in NETWORK_TASKS else _evaluate)(task, h, w, args, out)
    else:
        raise SystemExit(f"unknown task {task!r}")
    out.update(
        cpu_s_per_field=cpu / args.fields,
        wall_s_per_field=wall / args.fields,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return out


NETWORK_TASKS = ("partialconv", "partialconv-tiled", "regression", "regression-tiled")
EVALUATE_TASKS = ("evaluate", "evaluate-stream")


def _hwm_mb() -> float:
    """Peak RSS since the last :func:`_reset_hwm` (Linux VmHWM), MB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _networks(task: str, h: int, w: int, args, out: dict) -> tuple[float, float]:
    """Untrained networks (cost does not depend on the weights): the partial-conv U-Net
    (``--width`` base channels, ``--levels`` levels) filling ``--fields`` fields under 20–40 %
    coverage, whole or in ``--tile`` tiles with the exact halo; the regression ×4
    SR net (defaults, 1 training step on 8-cell patches to build it) with conservation."""
    import torch

    from climgen.data.samples import grf_dataarray

    if task.startswith("partialconv"):
        from climgen.tasks._common import build_seeded
        from climgen.tasks.fill.masks import blob_masks
        from climgen.tasks.fill.tiled import tiled_unet_infill

        family = build_seeded(
            0,
            "partialconv",
            channels=1,
            shape=(h, w),
            periodic=(False, True),
            base_channels=args.width,
            num_levels=args.levels,
        ).eval()
        x = torch.as_tensor(grf_dataarray(args.fields, h, w, kind="latlon", seed=0).values)
        x = x.float()[:, None]
        m = torch.as_tensor(blob_masks(args.fields, (h, w), coverage=(0.2, 0.4), seed=1))
        m = m.float()[:, None]
        net = family.net
        out.update(receptive_radius=net.receptive_radius, align=net.align, tile=None)
        _reset_hwm()
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.no_grad():
            for i in range(args.fields):  # one field at a time
                if task == "partialconv":
                    family.infill(x[i : i + 1], m[i : i + 1])
                else:
                    tiled_unet_infill(family, x[i : i + 1], m[i : i + 1], tile=args.tile)
        if task == "partialconv-tiled":
            out["tile"] = args.tile
    else:
        from climgen.tasks.downscale.downscaler import Downscaler

        fine = grf_dataarray(args.fields, h, w, kind="latlon", seed=2, name="tas").to_dataset()
        tile = args.tile // 4 if task == "regression-tiled" else 0  # 0: whole fields
        down = Downscaler(4, "regression", conserve=True, patch_size=8, tile_size=tile)
        down.fit(fine, run_dir=args.tmp / f"sr_{h}x{w}", max_steps=1, batch_size=2, progress=False)
        coarse = down.coarsen(fine)
        out.update(receptive_radius=down.family.generator.receptive_radius, tile=tile or None)
        _reset_hwm()
        c0, t0 = time.process_time(), time.perf_counter()
        down.downscale(coarse, batch_size=1)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out["step_peak_rss_mb"] = _hwm_mb()
    return cpu, wall


def _evaluate(task: str, h: int, w: int, args, out: dict) -> tuple[float, float]:
    """``evaluate`` of ``--fields`` generated against ``--fields`` reference fields (two
    k⁻³ GRF sets of different seeds), the full report in memory, or streamed with
    ``chunk_size=--chunk``; cost per field of the two sets."""
    from climgen.data.samples import grf_dataarray
    from climgen.report.evaluate import evaluate

    gen = grf_dataarray(args.fields, h, w, kind="latlon", seed=3, name="tas", units="K")
    ref = grf_dataarray(args.fields, h, w, kind="latlon", seed=4, name="tas", units="K")
    chunk = args.chunk if task == "evaluate-stream" else None
    out["chunk_size"] = chunk
    parts = _time_parts()
    _reset_hwm()
    c0, t0 = time.process_time(), time.perf_counter()
    report = evaluate(gen, ref, progress=False, chunk_size=chunk)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out["step_peak_rss_mb"] = _hwm_mb()
    out.update({f"{k}_cpu_s": v for k, v in parts.items()})
    out["variables"] = len(report.to_dict().get("variables", {}))
    return cpu, wall


def _time_parts() -> dict[str, float]:
    """CPU s spent, from now on in this process, building the Legendre tables
    (``sht_tables``), in the spherical-harmonic transforms once built (``sht_transform``)
    and in the structure functions' lag passes (``structure``): the three steps whose cost
    grows faster than N. Wraps the functions in place (this process only) and empties the
    transform cache, so that the tables are built inside the measured step."""
    from climgen.metrics import sht, structure

    parts = {"sht_tables": 0.0, "sht_transform": 0.0, "structure": 0.0}

    def timed(owner, name, key, exclude=None):
        fn = getattr(owner, name)

        def wrapper(*a, **kw):
            c0 = time.process_time()
            before = parts[exclude] if exclude else 0.0
            try:
                return fn(*a, **kw)
            finally:
                inner = parts[exclude] - before if exclude else 0.0
                parts[key] += time.process_time() - c0 - inner

        setattr(owner, name, wrapper)

    timed(sht.SphericalTransform, "_block", "sht_tables")
    timed(sht.SphericalTransform, "forward", "sht_transform", exclude="sht_tables")
    timed(sht.SphericalTransform, "__call__", "sht_transform", exclude="sht_tables")
    timed(structure, "_structure_functions_inplace", "structure")
    sht.spherical_transform.cache_clear()
    return parts


def _rss_trace(every: float = 5.0) -> list:
    """Samples ``[wall s, VmRSS MB]`` of this process every ``every`` s in a daemon thread
    (the returned list grows while the process runs)."""
    trace: list = []
    t0 = time.perf_counter()

    def sample():
        while True:
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    trace.append([round(time.perf_counter() - t0, 1), int(line.split()[1]) >> 10])
            time.sleep(every)

    threading.Thread(target=sample, daemon=True).start()
    return trace


def _rchar() -> int:
    """Bytes this process has read through read() calls (page cache included)."""
    for line in open("/proc/self/io"):
        if line.startswith("rchar"):
            return int(line.split()[1])
    return 0


def _year_step(step: str, h: int, w: int, args) -> dict:
    """One step of ``--year`` in this process: ``year-write`` writes the two stores under
    ``--scratch`` chunk by chunk; ``year-evaluate`` evaluates them from their paths."""
    from climgen.data.samples import grf_dataarray

    n, chunk = args.year_fields, args.chunk
    stores = {"generated": args.scratch / "gen.zarr", "reference": args.scratch / "ref.zarr"}
    out = {"task": step, "ny": h, "nx": w, "cells": h * w, "fields": n, "chunk_size": chunk}
    from climgen.report.evaluate import evaluate

    parts = _time_parts() if step == "year-evaluate" else {}
    trace = _rss_trace()
    _reset_hwm()
    rchar0 = _rchar()
    c0, t0 = time.process_time(), time.perf_counter()
    if step == "year-write":
        for seed, path in enumerate(stores.values(), start=3):
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                da = grf_dataarray(
                    m, h, w, kind="latlon", seed=[seed, start], name="tas", units="K"
                )
                ds = da.astype(np.float32).assign_coords(time=np.arange(start, start + m))
                ds = ds.to_dataset()
                if start == 0:
                    enc = {"tas": {"chunks": (chunk, h, w), "compressors": None}}
                    ds.to_zarr(path, mode="w", encoding=enc)
                else:
                    ds.to_zarr(path, append_dim="time")
        out["store_gb"] = sum(f.stat().st_size for p in stores.values() for f in p.rglob("*"))
        out["store_gb"] /= 1e9
    else:
        report = evaluate(
            str(stores["generated"]), str(stores["reference"]), chunk_size=chunk, progress=False
        )
        out.update({f"{k}_cpu_s": v for k, v in parts.items()})
        res = report.variables["tas"]
        out.update(n_generated=res.n_generated, n_reference=res.n_reference)
        out["distances"] = {k: [d.value, d.floor] for k, d in res.distances.items()}
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out.update(
        cpu_s=cpu,
        wall_s=wall,
        cpu_s_per_field=cpu / n,
        read_gb=(_rchar() - rchar0) / 1e9,
        step_peak_rss_mb=_hwm_mb(),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_trace_mb=trace[:: max(1, len(trace) // 40)],
    )
    return out


def _year(args) -> list[dict]:
    """``--year``: the writer and the evaluation, each in a fresh process; the stores live
    in a temporary folder under ``--scratch``, removed at the end."""
    import tempfile
    from pathlib import Path

    h, w = (int(v) for v in args.year_grid.lower().split("x"))
    scratch = Path(tempfile.mkdtemp(prefix="bench_scale_year_", dir=args.scratch))
    rows = []
    try:
        for step in ("year-write", "year-evaluate"):
            cmd = [sys.executable, __file__, "--one", step, str(h), str(w)]
            cmd += [f"--year-fields={args.year_fields}", f"--chunk={args.chunk}"]
            cmd += [f"--scratch={scratch}"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for r in rows:
        print(
            f"{r['task']}: {r['fields']} + {r['fields']} fields of {r['ny']}×{r['nx']}, "
            f"{r['cpu_s']:.0f} CPU s ({r['fields'] / r['cpu_s']:.3g} fields/CPU s), "
            f"{r['wall_s']:.0f} s wall, peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(step {r['step_peak_rss_mb']:.0f} MB), read {r['read_gb']:.2f} GB"
        )
    return rows


def _rank_sweep(args) -> list[dict]:
    """Dense vs reduced OI on the 72×72 HadCRUT-grid data of bench_fill.py (Held–Suarez
    ``tas`` anomalies, zonal + hemispheric covariance, the dense model's auto nugget for
    both): RMSE and Gaussian CRPS on the hidden cells of the first ``--fields`` held-out
    days under the real masks, unweighted."""
    from types import SimpleNamespace

    from bench_fill import load_data

    from climgen.data.grids import to_canonical
    from climgen.tasks.fill.baselines import crps_gaussian
    from climgen.tasks.fill.oi import GaussianFieldModel
    from climgen.tasks.fill.oi_reduced import ReducedGaussianFieldModel

    train, _, test, masks = load_data(SimpleNamespace(quick=False, n_test=args.fields))
    x, xt = to_canonical(train)[0].values, to_canonical(test)[0].values
    seen = to_canonical(masks)[0].values > 0
    kw = {"zonal": True, "hemispheric": True}
    dense = GaussianFieldModel.fit(x, **kw)
    models = {"dense": dense}
    for rank in args.rank_sweep:
        rank = float(rank) if "." in rank else int(rank)
        models[f"reduced {rank}"] = ReducedGaussianFieldModel.fit(
            x, **kw, nugget=dense.nugget, rank=rank
        )
    rows = []
    for label, model in models.items():
        c0 = time.process_time()
        sq, crps = [], []
        for i in range(len(xt)):
            m = seen[i % len(seen)]
            mean, std, _ = model.condition(xt[i], m)
            sq.append((mean - xt[i])[~m] ** 2)
            crps.append(crps_gaussian(mean[~m], std[~m], xt[i][~m]))
        rows.append(
            {
                "model": label,
                "eofs": getattr(model, "rank", None),
                "nugget": model.nugget,
                "rmse": float(np.sqrt(np.mean(np.concatenate(sq)))),
                "crps": float(np.mean(np.concatenate(crps))),
                "cpu_s_per_field": (time.process_time() - c0) / len(xt),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def torch_threads_one() -> None:
    import torch

    torch.set_num_threads(1)


def _slope(rows: list[dict]) -> float | None:
    if len(rows) < 2:
        return None
    n = np.log([r["cells"] for r in rows])
    c = np.log([r["cpu_s_per_field"] for r in rows])
    return float(np.polyfit(n, c, 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["36x72", "72x144", "180x360"])
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["oi-reduced", "bicubic-conserve"],
        choices=(
            "oi-reduced",
            "bicubic-conserve",
            "bicubic-covariance",
            *NETWORK_TASKS,
            *EVALUATE_TASKS,
        ),
    )
    parser.add_argument("--tile", type=int, default=128, help="network core tile (fine cells)")
    parser.add_argument("--width", type=int, default=16, help="partial-conv base channels")
    parser.add_argument("--levels", type=int, default=4, help="partial-conv U-Net levels")
    parser.add_argument("--chunk", type=int, default=4, help="evaluate-stream chunk_size")
    parser.add_argument("--train", type=int, default=64, help="OI training fields")
    parser.add_argument("--fields", type=int, default=4, help="fields filled/downscaled")
    parser.add_argument("--members", type=int, default=8, help="OI members")
    parser.add_argument("--rank", type=int, default=64, help="OI EOFs kept")
    parser.add_argument("--nugget", type=float, default=1e-3, help="OI nugget (fixed)")
    parser.add_argument(
        "--rank-sweep",
        nargs="+",
        metavar="RANK",
        help="instead: dense vs reduced OI (these ranks: ints or variance fractions) on the "
        "72x72 data of bench_fill.py (needs ../shared/data)",
    )
    parser.add_argument(
        "--year", action="store_true", help="instead: a year of fields evaluated from zarr"
    )
    parser.add_argument("--year-fields", type=int, default=365, help="--year: fields per set")
    parser.add_argument("--year-grid", default="721x1440", help="--year: grid HxW")
    parser.add_argument(
        "--scratch", help="--year: folder for the stores (default: the system's temp dir)"
    )
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 small sizes")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    if args.one and args.one[0].startswith("year-"):
        args.scratch = Path(args.scratch)
        print(json.dumps(_year_step(args.one[0], int(args.one[1]), int(args.one[2]), args)))
        return 0
    if args.year:
        rows = _year(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    if args.one:  # the run folders of the fits live in a temporary folder, removed even on error
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
            args.tmp = Path(tmp)
            print(json.dumps(_one(args.one[0], int(args.one[1]), int(args.one[2]), args)))
        return 0
    if args.rank_sweep:
        torch_threads_one()
        rows = _rank_sweep(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    if args.quick:
        args.sizes, args.train, args.fields, args.members = ["20x40", "36x72"], 16, 2, 4
    rows = []
    passthrough = [
        f"--{k}={getattr(args, k)}"
        for k in (
            "train",
            "fields",
            "members",
            "rank",
            "nugget",
            "tile",
            "width",
            "levels",
            "chunk",
        )
    ]
    for task in args.tasks:
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            cmd = [sys.executable, __file__, "--one", task, str(h), str(w), *passthrough]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| task | grid | cells | CPU s/field | wall s/field | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['ny']}×{r['nx']} | {r['cells']} | {r['cpu_s_per_field']:.3g} "
            f"| {r['wall_s_per_field']:.3g} | {r['peak_rss_mb']:.0f} |"
        )
    slopes = {t: _slope([r for r in rows if r["task"] == t]) for t in args.tasks}
    print("log–log slope of CPU per field vs cells:", json.dumps(slopes))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "slopes": slopes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
