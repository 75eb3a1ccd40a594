"""Benchmark: streamed evaluation in one process vs on a 2-worker dask LocalCluster (issue 26).

Run:  .venv/bin/python benchmarks/bench_dask_eval.py [--fields 256] [--ny 90] [--nx 180]
          [--chunk 32] [--workers 2]

Both sets are k⁻³ Gaussian random fields held in memory as dask arrays (chunks of
``--chunk`` fields); ``evaluate(..., chunk_size=--chunk)`` runs once with dask's synchronous
scheduler and once with ``client=`` a ``LocalCluster`` of ``--workers`` one-thread worker
processes (wall time of the evaluation only, the cluster's start excluded). Prints both
times and the largest relative difference between the two reports' distances (0 expected:
the summaries are merged in chunk order). In-memory data travel inside the tasks (dask
warns about a large graph), so this measures the overhead of the cluster path, not a
speed-up: workers pay off on several machines reading a shared store.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fields", type=int, default=256)
    p.add_argument("--ny", type=int, default=90)
    p.add_argument("--nx", type=int, default=180)
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    import dask
    from distributed import Client, LocalCluster

    from climgen.data.samples import grf_dataarray
    from climgen.report import evaluate

    def fields(seed):
        da = grf_dataarray(args.fields, args.ny, args.nx, seed=seed, name="v", units="K")
        return da.chunk({da.dims[0]: args.chunk})

    ref, gen = fields(0), fields(1)
    t = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        local = evaluate(gen, ref, progress=False, chunk_size=args.chunk)
    print(f"in-process: {time.perf_counter() - t:.1f} s wall")
    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        t = time.perf_counter()
        remote = evaluate(gen, ref, progress=False, chunk_size=args.chunk, client=client)
        print(f"{args.workers}-worker LocalCluster: {time.perf_counter() - t:.1f} s wall")
    a, b = local.variables["v"].distances, remote.variables["v"].distances
    diff = max(abs(b[k].value - d.value) / max(abs(d.value), 1e-300) for k, d in a.items())
    print(f"largest relative difference of the distances: {diff:.3g}")


if __name__ == "__main__":
    main()
