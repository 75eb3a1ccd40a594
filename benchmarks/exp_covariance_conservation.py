"""Conservation after a spectral calibration: Lanczos back-projection against the
optimal-interpolation correction (``Downscaler(back_projection="covariance")``,
:mod:`climgen.tasks.downscale.covariance_correction`), and full against damping-only gains.

×4 on the held-out split of ``bench_downscale.py`` (``--dataset``, default Held–Suarez
tas). Scores every combination of {raw, calibrated, calibrated with gains ≤ 1} × {no layer,
plain layer, back-projection + layer, covariance correction + layer}, as ratios to bicubic.
The layers use the truth grid's cos-lat weights, as in ``bench_downscale.py``.

Usage::

    .venv/bin/python benchmarks/exp_covariance_conservation.py               # bicubic
    .venv/bin/python benchmarks/exp_covariance_conservation.py --run DIR     # a kept net

``DIR`` is a run directory kept by ``bench_downscale.py --calibrate --keep-runs DIR``
(the calibration is read from it; the damping-only gains are refitted with ``max_gain=1``
on the same training fields).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import xarray as xr

# Run as a script, Python puts this folder first on sys.path: bench_downscale imports as is.
from bench_downscale import DATA_DIR, DATASETS, FACTOR, load_split, with_layer

from climgen.data.io import open_fields
from climgen.report.downscale_page import on_truth_grid
from climgen.tasks.downscale.downscaler import Downscaler
from climgen.tasks.downscale.scoring import compare_methods

LAYERS = {
    "": None,
    " +layer": 0,
    " +back-projection +layer": 20,
    " +covariance +layer": "covariance",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=None, help="kept Downscaler run dir (else bicubic)")
    p.add_argument("--extra-train", nargs="*", type=Path, default=[], help="as bench_downscale")
    p.add_argument("--cal-fields", type=int, default=32)
    p.add_argument("--dataset", choices=list(DATASETS), default="heldsuarez-tas")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fname, var = DATASETS[args.dataset][:2]
    train, held = load_split(DATA_DIR / fname, var)
    if args.extra_train:
        spatial = {d: train[d] for d in train.dims if d != "time" and d in train.coords}
        extra = [open_fields(f, var).load().assign_coords(spatial) for f in args.extra_train]
        train = xr.concat([train, *extra], "time")
    truth = held[var]
    down = Downscaler.load(args.run) if args.run else Downscaler(FACTOR, "bicubic")
    damp = Downscaler.load(args.run) if args.run else Downscaler(FACTOR, "bicubic")
    if down.calibration is None:
        down.calibrate_spectrum(train, n_fields=args.cal_fields, seed=1)
    damp.run_dir = None  # keep the kept run's calibration file as it is
    damp.calibrate_spectrum(train, n_fields=args.cal_fields, seed=1, max_gain=1.0)
    coarse = down.coarsen(held)
    bicubic = Downscaler(FACTOR, "bicubic").downscale(coarse)[var]
    outputs = {"bicubic": on_truth_grid(truth, bicubic)}
    for name, model, calibrated in (
        ("raw", down, False),
        ("calibrated", down, True),
        ("gain ≤ 1", damp, True),
    ):
        out = on_truth_grid(truth, model.downscale(coarse, calibrated=calibrated)[var])
        for suffix, back in LAYERS.items():
            c0 = time.process_time()
            layered = out if back is None else with_layer(out, coarse[var], back)
            outputs[name + suffix] = layered
            print(f"{name + suffix}: {time.process_time() - c0:.1f} CPU s", flush=True)
    scores = compare_methods(truth, outputs, coarse[var], FACTOR, baseline="bicubic")
    print("\n| output | RMSE / bicubic | high-k spectral error / bicubic | W1 | conservation |")
    print("|---|---|---|---|---|")
    for name, s in scores.items():
        print(
            f"| {name} | {s['rmse_ratio']:.3f} | {s['spectral_ratio']:.3f} | {s['w1']:.3g} | "
            f"{s['conservation']:.1e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
