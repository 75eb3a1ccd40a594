"""Benchmark: train the DCGAN from a ~20 GB zarr store vs from an in-memory subset (issue 7).

Run:  .venv/bin/python benchmarks/bench_streaming.py --threads 1      (--quick for a smoke run)

1. **Store.** A zarr store of ``--size-gb`` GB of float32 fields (``time, y, x``; default
   64×64, 1.3 M fields for 20 GB) is written chunk by chunk from a lazy dask array, in
   bounded memory: each dask block draws its fields as randomly rolled, scaled and shifted
   copies of a bank of 256 Gaussian random fields with a k⁻³ spectrum (GRF-like texture at
   memcpy cost; generating 20 GB of fresh GRFs by FFT would take ~10 × longer on 2 cores).
   zarr chunks hold ``--chunk-time`` fields each (default 16 → 256 KiB, uncompressed).
2. **Normalisation out of core.** :meth:`climgen.data.normalize.Normalizer.fit` over the
   whole store, opened with large dask chunks (``--stats-chunk`` fields per task) so the
   task graph stays small; its time, read rate and peak RSS are reported.
3. **Training.** The GAN family's DCGAN through :class:`climgen.train.Trainer`:

   - *streaming*: :class:`climgen.data.dataset.FieldDataset` over the store opened with
     :func:`climgen.data.io.open_fields` (dask, the store's own chunks), normalised per
     batch, batches read by ``--num-workers`` DataLoader worker processes (forkserver,
     persistent, prefetch factor 2: up to 2 batches per worker read ahead of compute);
   - *in-memory*: the first ``--memory-fields`` fields of the same store, normalised with
     the same statistics, as one tensor (the trainer indexes it directly: no loader at all).

   Both get the same model, seed, batch size and number of steps; repetitions are
   interleaved (A B, then B A) so slow phases of a shared machine hit both. Throughput is
   the steady state: samples/s between the end of step ``--warmup`` and the last step (from
   a callback's timestamps), so worker start-up and the final checkpoint are not counted.
   Target: streaming ≥ 0.9 × in-memory samples/s.
4. **Memory.** A thread samples the RSS summed over this process and all its children
   (DataLoader workers, the forkserver) every 0.1 s; the peak of each phase is reported
   (RSS of separate processes is summed, so shared pages count twice: an upper bound).
   Target: < 4 GB during streaming training.

The store is deleted at the end unless ``--keep``; ``--reuse`` trains from an existing store
(written by an earlier ``--keep`` run with the same shape). Wall-clock figures on a shared
machine are noisy: load averages are printed at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import psutil
import torch
import xarray as xr

from climgen.data.dataset import FieldDataset
from climgen.data.io import open_fields
from climgen.data.normalize import Normalizer
from climgen.data.samples import make_grf
from climgen.families.gan import GAN
from climgen.train import Callback, TrainConfig, Trainer

BANK = 256


# ---------------------------------------------------------------------------------- memory


class TreeRSS:
    """Peak RSS (bytes) of this process plus all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self.phase = "setup"
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.current()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            time.sleep(self.interval)

    def set_phase(self, name: str) -> None:
        self.phase = name
        self.peaks[name] = max(self.peaks.get(name, 0), self.current())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------- store


def _fields(block_id: int, n: int, bank: np.ndarray, seed: int) -> np.ndarray:
    """``n`` fields: rolled, scaled, shifted copies of bank fields (deterministic per block)."""
    rng = np.random.default_rng([seed, block_id])
    ny, nx = bank.shape[-2:]
    pick = rng.integers(0, bank.shape[0], n)
    shift_y, shift_x = rng.integers(0, ny, n), rng.integers(0, nx, n)
    scale = rng.uniform(0.5, 2.0, n).astype(np.float32)
    offset = rng.normal(0.0, 0.5, n).astype(np.float32)
    out = np.empty((n, ny, nx), np.float32)
    for i in range(n):
        f = np.roll(bank[pick[i]], (shift_y[i], shift_x[i]), axis=(0, 1))
        np.multiply(f, scale[i], out=out[i])
        out[i] += offset[i]
    return out


def lazy_fields(n: int, shape, block: int, seed: int) -> dsa.Array:
    bank = make_grf(BANK, *shape, slope=-3.0, seed=seed).astype(np.float32)
    blocks = (block,) * (n // block) + ((n % block,) if n % block else ())
    chunks = (blocks, (shape[0],), (shape[1],))

    def make(block_info=None):
        info = block_info[None]
        return _fields(info["chunk-location"][0], info["chunk-shape"][0], bank, seed)

    return dsa.map_blocks(make, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), "f4"))


def write_store(path: Path, n: int, shape, chunk_time: int, block: int, seed: int) -> float:
    """Write the store chunk by chunk; returns seconds."""
    block = max(chunk_time, block - block % chunk_time)
    data = lazy_fields(n, shape, block, seed)
    periodic = {"units": "1", "periodic": "true"}
    ds = xr.Dataset(
        {"field": (("time", "y", "x"), data, {"units": "1", "long_name": "GRF-like field"})},
        coords={
            "time": np.arange(n),
            "y": ("y", np.arange(shape[0], dtype=float), {**periodic, "axis": "Y"}),
            "x": ("x", np.arange(shape[1], dtype=float), {**periodic, "axis": "X"}),
        },
        attrs={"title": "bench_streaming synthetic store"},
    )
    encoding = {"field": {"chunks": (chunk_time, *shape), "compressors": None}}
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        ds.to_zarr(path, mode="w", encoding=encoding, consolidated=True)
    return time.perf_counter() - t0


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -------------------------------------------------------------------------------- training


class StepClock(Callback):
    """Wall time, main-process CPU time, time spent waiting for batches and the CPU time of
    the DataLoader workers, at the end of every step."""

    def __init__(self):
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.wait: list[float] = []
        self.workers_cpu: list[float] = []

    def on_step_end(self, trainer, step, losses) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.wait.append(trainer.data_wait_s)
        self.workers_cpu.append(_children_cpu())


def _children_cpu() -> float:
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class TimedTrainer(Trainer):
    """The Trainer, timing how long each step waits for its batch (instrumentation only)."""

    data_wait_s = 0.0

    def _next_batch(self):
        t0 = time.perf_counter()
        try:
            return super()._next_batch()
        finally:
            self.data_wait_s += time.perf_counter() - t0


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


def train(data, args, run_dir: Path, num_workers: int) -> dict[str, float]:
    """Steady-state figures of one Trainer run (between step ``warmup`` and the last)."""
    clock = StepClock()
    config = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        device="cpu",
        progress=False,
        log_every=50,
        checkpoint_every=0,
        num_workers=num_workers,
    )
    gan = build_gan(args.shape, args.base_channels, args.seed)
    TimedTrainer(gan, config, run_dir, callbacks=[clock]).fit(data)
    shutil.rmtree(run_dir, ignore_errors=True)
    w, steps = args.warmup, len(clock.times) - 1 - args.warmup
    wall = clock.times[-1] - clock.times[w]
    return {
        "samples_per_s": steps * args.batch_size / wall,
        "samples_per_main_cpu_s": steps * args.batch_size / (clock.cpu[-1] - clock.cpu[w]),
        "wait_fraction": (clock.wait[-1] - clock.wait[w]) / wall,
        "reader_cpu_ms_per_batch": 1000 * (clock.workers_cpu[-1] - clock.workers_cpu[w]) / steps,
    }


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------------ main


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        default=str(Path(tempfile.gettempdir()) / "climgen-bench-streaming" / "store.zarr"),
    )
    parser.add_argument("--size-gb", type=float, default=20.0, help="store size (decimal GB)")
    parser.add_argument("--shape", default="64x64", help="field H×W")
    parser.add_argument("--chunk-time", type=int, default=16, help="fields per zarr chunk")
    parser.add_argument("--write-block", type=int, default=1024, help="fields per dask task")
    parser.add_argument("--stats-chunk", type=int, default=1024, help="fields per stats task")
    parser.add_argument("--memory-fields", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--lazy-variant", action="store_true", help="also time the store opened without dask"
    )
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--reuse", action="store_true", help="train from an existing store")
    parser.add_argument("--skip-stats", action="store_true", help="(with --reuse) no stats pass")
    parser.add_argument("--quick", action="store_true", help="small store, few steps")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_gb, args.steps, args.warmup, args.repeats = 0.05, 30, 5, 1
        args.memory_fields = 512
        if args.store == parser.get_default("store"):
            args.store = str(Path(args.store).with_name("quick.zarr"))
    args.shape = tuple(int(s) for s in args.shape.lower().split("x"))
    torch.set_num_threads(args.threads)
    store = Path(args.store)
    field_bytes = 4 * args.shape[0] * args.shape[1]
    n = int(args.size_gb * 1e9 // field_bytes)
    n -= n % args.chunk_time
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)",
        "load_start": loadavg(),
        "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
    }
    print(f"# {results['machine']}; load average at start {results['load_start']}", flush=True)
    rss = TreeRSS()
    try:
        if not args.reuse:
            rss.set_phase("write")
            store.parent.mkdir(parents=True, exist_ok=True)
            print(f"writing {n} fields of {args.shape} ({n * field_bytes / 1e9:.1f} GB) to {store}")
            secs = write_store(store, n, args.shape, args.chunk_time, args.write_block, args.seed)
            size = store_bytes(store)
            results["write"] = {"seconds": secs, "bytes": size, "MB_per_s": size / secs / 1e6}
            print(f"  wrote {size / 1e9:.2f} GB in {secs:.0f} s ({size / secs / 1e6:.0f} MB/s)")
        ds = open_fields(store, "field")  # dask, the store's own chunks
        n = ds.sizes["time"]
        results["store"] = {
            "path": str(store),
            "fields": n,
            "shape": list(args.shape),
            "bytes": store_bytes(store),
            "chunk": [int(c) for c in ds["field"].encoding.get("chunks", ())],
        }
        rss.set_phase("normalizer")
        if args.reuse and args.skip_stats:
            norm = Normalizer(["field"], {"field": 0.0}, {"field": 1.0})
        else:
            big = open_fields(store, "field", chunks={"time": args.stats_chunk})
            t0 = time.perf_counter()
            with dask.config.set(scheduler="threads", num_workers=2):
                norm = Normalizer.fit(big, "field")
            secs = time.perf_counter() - t0
            results["normalizer"] = {
                "seconds": secs,
                "MB_per_s": n * field_bytes / secs / 1e6,
                "center": norm.center["field"],
                "scale": norm.scale["field"],
            }
            print(
                f"Normalizer.fit over the store: {secs:.0f} s "
                f"({n * field_bytes / secs / 1e6:.0f} MB/s), center {norm.center['field']:.4f}, "
                f"scale {norm.scale['field']:.4f}",
                flush=True,
            )
        streams = {"streaming": FieldDataset(ds, "field", normalizer=norm)}
        if args.lazy_variant:
            # The same store without dask: xarray's lazily indexed zarr array, one orthogonal
            # zarr read per batch (zarr fetches the chunks concurrently).
            lazy = xr.open_zarr(store, chunks=None)
            streams["streaming, no dask"] = FieldDataset(lazy, "field", normalizer=norm)
        memory = ds["field"].isel(time=slice(0, args.memory_fields)).values[:, None]
        memory = torch.from_numpy(norm.transform(memory).astype(np.float32))
        rates: dict[str, list[float]] = {"in-memory": [], **{k: [] for k in streams}}
        details: dict[str, list[dict]] = {k: [] for k in rates}
        tmp = store.parent / "runs"
        for rep in range(args.repeats):
            order = list(rates) if rep % 2 == 0 else list(rates)[::-1]
            for i, name in enumerate(order):
                rss.set_phase(f"train {name}")
                if name in streams:
                    got = train(streams[name], args, tmp / f"{rep}-{i}", args.num_workers)
                else:
                    got = train(memory, args, tmp / f"{rep}-{i}", 0)
                rates[name].append(got["samples_per_s"])
                details[name].append(got)
                print(
                    f"  {name:20s} rep {rep}: {got['samples_per_s']:.1f} samples/s, "
                    f"{got['samples_per_main_cpu_s']:.1f} per main-process CPU s, waiting "
                    f"{100 * got['wait_fraction']:.1f} % of the time, readers "
                    f"{got['reader_cpu_ms_per_batch']:.0f} ms CPU/batch (load {loadavg()})",
                    flush=True,
                )
        shutil.rmtree(tmp, ignore_errors=True)
        best = {k: max(v) for k, v in rates.items()}
        median = {k: statistics.median(v) for k, v in rates.items()}
        results["train"] = {
            "runs": details,
            "samples_per_s": rates,
            "best": best,
            "median": median,
            "ratio_best": {k: best[k] / best["in-memory"] for k in streams},
            "ratio_median": {k: median[k] / median["in-memory"] for k in streams},
        }
    finally:
        rss.stop()
        if not args.keep and not args.reuse:
            shutil.rmtree(store, ignore_errors=True)
    results["peak_rss_GB"] = {k: v / 1e9 for k, v in rss.peaks.items()}
    results["load_end"] = loadavg()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def print_table(r: dict) -> None:
    tr = r["train"]
    print("\n| variant | best samples/s | median samples/s | ratio (best / best) | target |")
    print("|---|---|---|---|---|")
    print(
        f"| in-memory tensor ({r['args']['memory_fields']} fields) | "
        f"{tr['best']['in-memory']:.1f} | {tr['median']['in-memory']:.1f} | 1.000 | baseline |"
    )
    for name, ratio in tr["ratio_best"].items():
        ok = "met" if ratio >= 0.9 else "missed"
        how = "dask, store chunks" if name == "streaming" else "lazy zarr, no dask"
        print(
            f"| zarr store, FieldDataset ({how}), {r['args']['num_workers']} workers | "
            f"{tr['best'][name]:.1f} | {tr['median'][name]:.1f} | {ratio:.3f} | "
            f"≥ 0.90× — {ok} |"
        )
    print(
        "\n| variant | samples per main-process CPU s (median) | waiting for data (median) "
        "| reader CPU per batch (median) |"
    )
    print("|---|---|---|---|")
    for name, runs in tr["runs"].items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"| {name} | {med['samples_per_main_cpu_s']:.1f} | "
            f"{100 * med['wait_fraction']:.1f} % | {med['reader_cpu_ms_per_batch']:.0f} ms |"
        )
    print("\n| phase | peak RSS of the process tree (GB) |")
    print("|---|---|")
    for k, v in r["peak_rss_GB"].items():
        print(f"| {k} | {v:.2f} |")
    print(f"\nload average at end {r['load_end']}", flush=True)


if __name__ == "__main__":
    main()
