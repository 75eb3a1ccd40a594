"""Benchmark: overhead of the climgen Trainer and of the netCDF/dask data path.

Run:  .venv/bin/python benchmarks/bench_trainer.py            (--quick for a smoke run)

1. Trainer vs a bare hand-written PyTorch loop training the same DCGAN (the GAN family's own
   generator, discriminator and loss functions; non-saturating loss, one critic step, Adam with
   the family's learning rates and betas) on the same in-memory tensor, batch size and number
   of steps. The bare loop does the same work per step (D update on a detached fake batch,
   G update with the critic frozen) and nothing else. The Trainer runs with its defaults
   except: no progress bar, metrics every 50 steps, one checkpoint at the end (its cost is
   included). Target: ≥ 0.95× the bare loop's samples/s.
2. The Trainer fed by ``FieldDataset`` over a dask-backed netCDF file (written here from
   synthetic GRF fields with one compressed HDF5 chunk per field, like the shared data, and
   opened with :func:`climgen.data.io.open_fields(chunks={"time": 1})`) vs the same Trainer on
   the in-memory tensor. Target: ≥ 0.9×. A ``FieldDataset`` over the same file loaded into
   memory separates the per-item cost of the dataset from that of dask/netCDF, and a small
   table gives the time of one ``FieldDataset[i]`` per opening mode (including the default
   ``chunks="auto"``, one dask block for the whole file). ``num_workers > 0`` is not timed:
   on the dask-backed dataset its worker stalled (benchmarks/notes/, trainer overhead).

Repetitions are interleaved (AB BA AB …, order alternating) so that slow phases of a shared
machine hit every variant. Each repetition gives a *paired* ratio (variant / baseline of the same
repetition, run back to back), which cancels drifts slower than one pair; the verdict uses the
median of the paired ratios over ``--repeats`` pairs, once on wall-clock samples/s and once on
samples per process-CPU second (1 thread: insensitive to time stolen by other processes). The
best-of-N throughput and the best/best ratio are printed beside them.
Prints Markdown tables; record them, dated, in benchmarks/notes/.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from climgen.data.dataset import FieldDataset
from climgen.data.io import open_fields
from climgen.data.samples import grf_dataarray
from climgen.families.gan import GAN
from climgen.train import TrainConfig, Trainer


def build_gan(shape, base_channels: int, seed: int) -> GAN:
    torch.manual_seed(seed)
    return GAN(
        channels=1,
        shape=shape,
        periodic=(True, True),
        loss="non-saturating",
        n_critic=1,
        base_channels=base_channels,
        latent_dim=64,
    )


def bare_loop(gan: GAN, data: torch.Tensor, steps: int, batch_size: int, seed: int) -> None:
    """The same DCGAN update, hand-written: no trainer, logging, checks or checkpoints."""
    torch.manual_seed(seed)
    G, D, spec, c = gan.generator, gan.discriminator, gan.loss_spec, gan.config
    opt_g = torch.optim.Adam(G.parameters(), lr=c["lr_g"], betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=c["lr_d"], betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    n_batches = data.shape[0] // batch_size
    perm, position = torch.randperm(data.shape[0], generator=gen), 0
    gan.train()
    for _ in range(steps):
        if position == n_batches:
            perm, position = torch.randperm(data.shape[0], generator=gen), 0
        real = data[perm[position * batch_size : (position + 1) * batch_size]]
        position += 1
        fake = G(torch.randn(batch_size, gan.latent_dim)).detach()
        d_loss = spec.d_loss(D(real), D(fake))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        D.requires_grad_(False)
        g_loss = spec.g_loss(D(G(torch.randn(batch_size, gan.latent_dim))))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)


def trainer_run(
    gan: GAN, dataset, steps: int, batch_size: int, seed: int, run_dir: Path, num_workers: int = 0
) -> None:
    config = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        seed=seed,
        device="cpu",
        progress=False,
        log_every=50,
        checkpoint_every=0,
        num_workers=num_workers,
    )
    Trainer(gan, config, run_dir).fit(dataset)


def write_netcdf(da, path: Path) -> Path:
    """netCDF-4 with one zlib-compressed HDF5 chunk per field, as the shared data files are."""
    encoding = {da.name: {"zlib": True, "complevel": 4, "chunksizes": (1, *da.shape[1:])}}
    da.to_dataset().to_netcdf(path, encoding=encoding)
    return path


def read_table(datasets: dict, n: int = 64) -> str:
    """Mean time of one ``FieldDataset[i]`` (a (1, H, W) float32 tensor) per opening mode."""
    lines = ["| FieldDataset opened with | ms per item |", "|---|---|"]
    for name, ds in datasets.items():
        ds[0]
        t = timed(functools.partial(_read_items, ds, n))
        lines.append(f"| {name} | {1000 * t / n:.2f} |")
    return "\n".join(lines)


def _read_items(ds, n: int) -> None:
    for i in range(n):
        ds[i % len(ds)]


def timed(fn) -> float:
    return timed_both(fn)[0]


def timed_both(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def compare(variants: dict, args, tmp: Path) -> dict[str, dict[str, list[float]]]:
    """samples/s (wall and process-CPU) of every variant, repetitions interleaved with
    alternating order; ``rates[name]["wall"][r]`` belongs to repetition r of every variant."""
    names = list(variants)
    rates: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in names}
    for name in names:  # warm-up: allocator, oneDNN kernels, dask graph caches
        gan = build_gan(args.shape, args.base_channels, args.seed)
        variants[name](gan, max(2, args.steps // 10), tmp / f"warm-{name}")
    for rep in range(args.repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            gan = build_gan(args.shape, args.base_channels, args.seed)
            run_dir = tmp / f"{name}-{rep}"
            wall, cpu = timed_both(functools.partial(variants[name], gan, args.steps, run_dir))
            rates[name]["wall"].append(args.steps * args.batch_size / wall)
            rates[name]["cpu"].append(args.steps * args.batch_size / max(cpu, 1e-9))
            shutil.rmtree(run_dir, ignore_errors=True)
    return rates


def paired_ratios(rates: dict, name: str, baseline: str, clock: str) -> list[float]:
    """Per-repetition ratios variant / baseline on one clock ("wall" or "cpu")."""
    return [v / b for v, b in zip(rates[name][clock], rates[baseline][clock])]


def table(title: str, rates: dict, baseline: str, target: float) -> str:
    best_base = max(rates[baseline]["wall"])
    lines = [
        f"**{title}**",
        "",
        "| variant | best samples/s | median samples/s | best / best | paired ratio, wall: "
        "median [min, max] | paired ratio, CPU: median | target (median paired, wall) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rates.items():
        wall = r["wall"]
        if name == baseline:
            cells, goal = "1 | 1", "baseline"
        else:
            pw = paired_ratios(rates, name, baseline, "wall")
            pc = paired_ratios(rates, name, baseline, "cpu")
            ratio = statistics.median(pw)
            cells = f"{ratio:.3f} [{min(pw):.3f}, {max(pw):.3f}] | {statistics.median(pc):.3f}"
            goal = f"≥ {target:.2f}× — {'met' if ratio >= target else 'missed'}"
        lines.append(
            f"| {name} | {max(wall):.1f} | {statistics.median(wall):.1f} | "
            f"{max(wall) / best_base:.3f} | {cells} | {goal} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64x64", help="field H×W, e.g. 64x64 or 32x128")
    parser.add_argument("--n-fields", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9, help="interleaved pairs")
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.n_fields, args.steps, args.repeats = "32x32", 64, 6, 2
    args.shape = tuple(int(s) for s in args.shape.lower().split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}; "
        f"DCGAN base_channels {args.base_channels}, fields {args.shape[0]}×{args.shape[1]}, "
        f"batch {args.batch_size}, {args.steps} steps × {args.repeats} interleaved repeats; "
        f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="climgen-bench-trainer-"))
    try:
        da = grf_dataarray(args.n_fields, *args.shape, slope=-3.0, seed=args.seed, name="field")
        da = da.astype(np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(da.values[:, None]))
        bs, seed = args.batch_size, args.seed
        overhead = compare(
            {
                "bare PyTorch loop": lambda g, n, d: bare_loop(g, tensor, n, bs, seed),
                "climgen Trainer": lambda g, n, d: trainer_run(g, tensor, n, bs, seed, d),
            },
            args,
            tmp,
        )
        print(
            "\n"
            + table("Trainer vs bare loop (in-memory tensor)", overhead, "bare PyTorch loop", 0.95),
            flush=True,
        )

        path = write_netcdf(da, tmp / "grf.nc")
        per_field = FieldDataset(open_fields(path, "field", chunks={"time": 1}), "field")
        auto = FieldDataset(open_fields(path, "field"), "field")  # default chunks ("auto")
        loaded = FieldDataset(open_fields(path, "field").load(), "field")
        print(
            "\n"
            + read_table(
                {
                    "dask chunks time=1": per_field,
                    "dask chunks auto": auto,
                    "loaded into memory": loaded,
                }
            ),
            flush=True,
        )
        loaders = compare(
            {
                "in-memory tensor": lambda g, n, d: trainer_run(g, tensor, n, bs, seed, d),
                "FieldDataset, dask chunks time=1": (
                    lambda g, n, d: trainer_run(g, per_field, n, bs, seed, d)
                ),
                "FieldDataset, loaded into memory (numpy)": (
                    lambda g, n, d: trainer_run(g, loaded, n, bs, seed, d)
                ),
            },
            args,
            tmp,
        )
        title = "netCDF/dask FieldDataset vs in-memory tensor (both through the Trainer)"
        print("\n" + table(title, loaders, "in-memory tensor", 0.9), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
