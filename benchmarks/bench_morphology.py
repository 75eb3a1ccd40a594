"""Benchmark: the morphology diagnostics against plain numpy loops doing the same counting.

Run:  .venv/bin/python benchmarks/bench_morphology.py [--quick]
Prints a Markdown table of best-of-N wall times and the speed-up of climgen over the loop
(record it, dated, in benchmarks/notes/). Each loop computes the same numbers the direct
way, and the script checks that they agree before timing:

- Minkowski curves (25 thresholds): per threshold and per field, the binary image, its
  vertices/edges/faces by padding and OR-ing shifted masks, V − E + F, and the pixel pairs that
  straddle the threshold — against :func:`climgen.metrics.minkowski_functionals` (one bucketing
  of the pixel, edge and vertex maxima for all thresholds);
- shift-aware nearest training field: for each field, each training field and each periodic
  shift, ``np.roll`` and an RMS difference — against
  :func:`climgen.metrics.nearest_training_distance` (FFT cross-correlation). The loop is timed
  on a few fields and scaled linearly to the whole set (stated in the table);
- spectra per latitude band: ``np.fft.rfft`` row by row and a weighted mean per band —
  against :func:`climgen.metrics.band_spectra`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from climgen.metrics import band_spectra, minkowski_functionals, nearest_training_distance


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fields(n, ny, nx, seed=0, length=3.0):
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, ny, nx))
    ky, kx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    f = np.fft.ifft2(
        np.fft.fft2(white) * np.exp(-((2 * np.pi * length) ** 2) * (kx**2 + ky**2) / 2)
    )
    return (f.real / f.real.std()).astype(np.float64)


def loop_minkowski(f, nu):
    """Per threshold and field: V − E + F on the pixel complex (x periodic, y walls)."""
    chi, cross = [], []
    for v in nu:
        c = x = 0
        for img in f > v:
            pad = np.pad(img, ((1, 1), (0, 0)))  # walls in y: nothing beyond
            rows = pad[1:] | pad[:-1]  # edges parallel to x
            cols = img | np.roll(img, 1, axis=1)  # edges parallel to y (x periodic)
            verts = rows | np.roll(rows, 1, axis=1)
            c += verts.sum() - rows.sum() - cols.sum() + img.sum()
            x += (img != np.roll(img, 1, axis=1)).sum() + (img[1:] != img[:-1]).sum()
        chi.append(c)
        cross.append(x)
    return np.array(chi), np.array(cross)


def loop_nearest(g, train):
    out = []
    for a in g:
        best = np.inf
        for t in train:
            for s in range(t.shape[-1]):
                best = min(best, float(np.mean((a - np.roll(t, s, axis=-1)) ** 2)))
        out.append(np.sqrt(best))
    return np.array(out)


def loop_bands(f, lat, edges):
    w = np.cos(np.deg2rad(lat))
    out = np.zeros((f.shape[0], len(edges) - 1, f.shape[-1] // 2 + 1))
    n = f.shape[-1]
    c = np.full(n // 2 + 1, 2.0)
    c[0], c[-1] = 0.0, 1.0
    for i, img in enumerate(f):
        for b in range(len(edges) - 1):
            rows = np.flatnonzero((lat >= edges[b]) & (lat <= edges[b + 1]))
            acc = sum(w[r] * c * np.abs(np.fft.rfft(img[r])) ** 2 / n**2 for r in rows)
            out[i, b] = acc / w[rows].sum()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
    args = parser.parse_args(argv)
    n, ny, nx, n_train, n_loop = (64, 64, 128, 64, 2) if not args.quick else (8, 32, 64, 8, 2)
    f = fields(n, ny, nx)
    train = fields(n_train, ny, nx, seed=1)
    nu = np.quantile(f, np.linspace(0.02, 0.98, 25))
    lat = np.linspace(-87.5, 87.5, ny)
    edges = np.array([-87.5, -60, -30, 0, 30, 60, 87.5])
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}; "
        f"{n} fields {ny}×{nx}, x periodic"
    )
    # Same numbers first.
    curves = minkowski_functionals(f, nu, periodic=(False, True))
    chi, cross = loop_minkowski(f, nu)
    np.testing.assert_allclose(curves.euler_characteristic * n * ny * nx, chi)
    np.testing.assert_allclose(curves.boundary_length * n * ny * nx, np.pi / 4 * cross)
    d = nearest_training_distance(f[:n_loop], train, periodic=(False, True))
    np.testing.assert_allclose(d, loop_nearest(f[:n_loop], train), rtol=1e-9)
    _, p, _ = band_spectra(
        f, edges, dx=1.0 / nx, row_coord=lat, row_weights=np.cos(np.deg2rad(lat))
    )
    np.testing.assert_allclose(p, loop_bands(f, lat, edges), rtol=1e-9, atol=1e-15)

    rows = [
        (
            "Minkowski curves, 25 thresholds",
            best_time(lambda: minkowski_functionals(f, nu, periodic=(False, True)), args.repeats),
            best_time(lambda: loop_minkowski(f, nu), 1),
            "all fields",
        ),
        (
            f"nearest of {n_train} training fields over {nx} shifts",
            best_time(
                lambda: nearest_training_distance(f, train, periodic=(False, True)), args.repeats
            ),
            best_time(lambda: loop_nearest(f[:n_loop], train), 1) * n / n_loop,
            f"loop timed on {n_loop} fields, × {n // n_loop}",
        ),
        (
            "spectra per latitude band (6 bands)",
            best_time(
                lambda: band_spectra(
                    f, edges, dx=1.0 / nx, row_coord=lat, row_weights=np.cos(np.deg2rad(lat))
                ),
                args.repeats,
            ),
            best_time(lambda: loop_bands(f, lat, edges), 1),
            "all fields",
        ),
    ]
    print("| diagnostic | climgen (s) | numpy loop (s) | × faster | note |")
    print("|---|---|---|---|---|")
    for name, ours, loop, note in rows:
        print(f"| {name} | {ours:.3f} | {loop:.2f} | {loop / ours:.0f}× | {note} |")


if __name__ == "__main__":
    main()
