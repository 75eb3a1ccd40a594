"""Benchmark: climgen.metrics.rapsd against pysteps' rapsd and against a bare batched FFT.

Run:  .venv/bin/pip install pysteps && .venv/bin/python benchmarks/bench_spectra.py
Prints a Markdown table of best-of-N wall times and the ratios; record it, dated, in
benchmarks/notes/.
pysteps handles one 2-D field per call, so it is timed on a subset of the fields and scaled
linearly to the whole batch (stated in the table).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from climgen.metrics import rapsd


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: plans, caches
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(n: int, ny: int, nx: int, repeats: int, pysteps_fields: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, ny, nx), dtype=np.float32)
    xt = torch.from_numpy(x)
    row = {"shape": f"{n} × {ny}×{nx}"}
    row["climgen (numpy in)"] = best_time(lambda: rapsd(x), repeats)
    row["climgen (torch in)"] = best_time(lambda: rapsd(xt), repeats)
    row["numpy.fft.rfft2"] = best_time(lambda: np.fft.rfft2(x), repeats)
    row["torch.fft.rfft2"] = best_time(lambda: torch.fft.rfft2(xt), repeats)
    try:
        from pysteps.utils.spectral import rapsd as pysteps_rapsd
    except ImportError:
        row["pysteps"] = float("nan")
    else:
        m = min(pysteps_fields, n)
        sub = x[:m]  # the same float32 fields every contender gets
        per_batch = best_time(
            lambda: [pysteps_rapsd(f, fft_method=np.fft) for f in sub], max(1, repeats // 2)
        )
        row["pysteps"] = per_batch * n / m
        row["pysteps fields timed"] = m
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
    args = parser.parse_args(argv)
    shapes = [(512, 256, 256), (64, 721, 1440)]
    if args.quick:
        shapes = [(16, 64, 64), (4, 91, 180)]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}"
    )
    print(
        "| fields | climgen numpy-in (s) | climgen torch-in (s) | numpy rfft2 (s) | "
        "torch rfft2 (s) | pysteps (s) | × faster than pysteps | ÷ bare torch FFT |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, ny, nx in shapes:
        r = bench(n, ny, nx, args.repeats, pysteps_fields=16 if ny < 512 else 2)
        ours = r["climgen (torch in)"]
        print(
            f"| {r['shape']} | {r['climgen (numpy in)']:.3f} | {ours:.3f} | "
            f"{r['numpy.fft.rfft2']:.3f} | {r['torch.fft.rfft2']:.3f} | "
            f"{r['pysteps']:.2f} (from {r.get('pysteps fields timed', 0)} fields) | "
            f"{r['pysteps'] / ours:.0f}× | {ours / r['torch.fft.rfft2']:.2f} |"
        )


if __name__ == "__main__":
    main()
