"""``evaluate(..., chunk_size=N)``: one variable judged chunk by chunk, in bounded memory.

The generated and reference fields (canonical ``(sample, y, x)`` DataArrays, usually lazy:
dask or a file) are read ``chunk_size`` samples at a time into the mergeable accumulators of
:mod:`climgen.metrics.streaming`. The noise floors use the same five block splits of the
reference as the in-memory path (:func:`climgen.report.eval_measures.block_splits`): each
reference sample is routed to the accumulator of its "atom" (the samples that share a half in
every split), and each half is a merge of atoms — one pass, no second read.

Memory: one chunk of each set plus the summaries (65 536-bin histograms, mean spectra and
structure functions, and for ≤ 1024 grid points D × D covariances, for the whole sets and
each atom). Differences from the in-memory report: W1, KS and the tail error come from the
binned CDFs (error bounds returned under ``binning``); ``covariance_error`` is omitted above
1024 grid points; the figures' sample maps and value PDFs show the first chunk only.

With a ``distributed.Client`` the chunks are read and summarised on its workers (each task
fills an evaluator from :meth:`~climgen.metrics.streaming.StreamingEvaluator.spawn`) and
merged on the client in chunk order: every accumulator merges exactly, so the result is the
one-process result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.errors import ClimgenInputError
from climgen.metrics.distributions import DEFAULT_TAIL_QUANTILES
from climgen.metrics.spectra import field_spectrum, spectral_errors
from climgen.metrics.streaming import StreamingEvaluator
from climgen.report.eval_inputs import MIN_REFERENCE_SAMPLES
from climgen.report.eval_measures import (
    COVARIANCE_EOFS,
    STRUCTURE_ORDERS,
    block_splits,
    coordinate_values,
    progress_bar,
)
from climgen.report.eval_results import VariableResult, judged

__all__ = ["evaluate_streaming"]

FIGURE_SAMPLES = 64
COVARIANCE_MAX_POINTS = 1024


def _load_chunk(part: xr.DataArray, start: int, role: str, name: str, src: str) -> xr.DataArray:
    """Read one chunk (a sample slice starting at ``start``) as float64; refuse NaN/inf."""
    chunk = part.load().astype(np.float64)
    bad = int((~np.isfinite(chunk.values)).sum())
    if bad:
        raise ClimgenInputError(
            f"variable '{name}' of the {role} data ({src}) holds {bad} NaN/inf value(s) in "
            f"samples {start}–{start + chunk.shape[0] - 1}; evaluation needs complete "
            "fields: fill or crop the missing points first"
        )
    return chunk


def _slices(da: xr.DataArray, size: int):
    dim = da.dims[0]
    for start in range(0, da.sizes[dim], size):
        yield start, da.isel({dim: slice(start, start + size)})


def _chunks(da: xr.DataArray, size: int, role: str, name: str, src: str):
    for start, part in _slices(da, size):
        yield _load_chunk(part, start, role, name, src)


def _summarise(template, part, start, role, name, src):
    """On a dask worker: one chunk read and summarised into an evaluator from ``spawn``."""
    import dask

    # Read with the synchronous scheduler: a lazy chunk computed inside a task must not
    # submit tasks back to the cluster (a worker with one thread would wait on itself).
    with dask.config.set(scheduler="synchronous"):
        chunk = _load_chunk(part, start, role, name, src)
    ev = template.spawn()
    if role == "reference":
        ev.add_reference(chunk, start=start)
    else:
        ev.add_generated(chunk)
    return ev


def resolve_client(client: Any):
    """``(client, owned)`` for ``client=``: a ``distributed.Client`` as given, or a new one
    connected to a scheduler address (``owned``: close it when done)."""
    try:
        import distributed
    except ImportError:
        raise ClimgenInputError(
            "client=/--scheduler evaluates on a dask.distributed cluster, but the package "
            "'distributed' is not installed: pip install 'climgen[dask]'"
        ) from None
    if isinstance(client, distributed.Client):
        return client, False
    if isinstance(client, str):
        try:
            return distributed.Client(client, timeout="30s"), True
        except OSError as err:
            raise ClimgenInputError(
                f"cannot reach the dask scheduler at '{client}' (client=/--scheduler): {err}"
            ) from None
    raise ClimgenInputError(
        f"client must be a distributed.Client or a scheduler address such as "
        f"'tcp://host:8786', got {type(client).__name__}"
    )


def _feed_distributed(ev, client, jobs, name, bar):
    """Summarise every chunk on the cluster, merge the summaries on the client in chunk
    order (the same arithmetic as feeding them in one process). At most a few chunks per
    worker thread are in flight, so the cluster's memory stays bounded too."""
    template = client.scatter(ev.spawn(), broadcast=True)
    threads = max(1, sum(client.nthreads().values()))
    window = 2 * threads
    pending: list = []
    jobs = iter(jobs)

    def submit() -> bool:
        job = next(jobs, None)
        if job is None:
            return False
        role, start, part, src = job
        pending.append(
            client.submit(_summarise, template, part, start, role, name, src, pure=False)
        )
        return True

    while len(pending) < window and submit():
        pass
    while pending:
        future = pending.pop(0)
        ev.merge(future.result())
        future.release()
        bar.update()
        submit()


class _SpectrumWithAttrs:
    """field_spectrum per chunk, remembering the spectrum's kind, dim and units."""

    def __init__(self) -> None:
        self.attrs: dict[str, str] = {}

    def __call__(self, chunk):
        s = field_spectrum(chunk)
        dim = s.dims[-1]
        self.attrs = {
            "kind": str(s.attrs.get("spectrum_kind", dim)),
            "dim": str(dim),
            "k_units": str(s.attrs.get("k_units", "")),
            "power_units": str(s.attrs.get("units", "")),
        }
        return np.asarray(s[dim].values, float), np.asarray(s.values, float)


def evaluate_streaming(
    name: str,
    gen: xr.DataArray,
    ref: xr.DataArray,
    grid: grids.GridInfo,
    chunk_size: int,
    factor: float,
    sources: tuple[str, str],
    progress: bool,
    client: Any = None,
):
    """The :class:`~climgen.report.eval_results.VariableResult` of one variable, streamed
    (chunks summarised on the workers of a ``distributed.Client`` when ``client`` is one)."""
    gen_src, ref_src = sources
    n_ref, n_gen = ref.shape[0], gen.shape[0]
    if n_ref < MIN_REFERENCE_SAMPLES:
        raise ClimgenInputError(
            f"variable '{name}': the reference ({ref_src}) has {n_ref} sample(s); at least "
            f"{MIN_REFERENCE_SAMPLES} are needed to estimate the noise floor from two halves"
        )
    half = n_ref // 2
    splits = [(order[:half], order[half : 2 * half]) for order in block_splits(n_ref)]
    weights = grids.area_weights(ref.isel({ref.dims[0]: 0}), grid).values
    spectrum = _SpectrumWithAttrs()
    ev = StreamingEvaluator(
        n_ref,
        weights=weights,
        splits=splits,
        spectrum=spectrum,
        periodic_x=bool(grid.periodic_x),
        structure_orders=STRUCTURE_ORDERS,
        covariance_max_points=COVARIANCE_MAX_POINTS,
        n_eofs=COVARIANCE_EOFS,
        quantiles=DEFAULT_TAIL_QUANTILES,
    )
    first: dict[str, np.ndarray] = {}
    n_chunks = -(-n_ref // chunk_size) + -(-n_gen // chunk_size)
    sets = (("reference", ref, ref_src), ("generated", gen, gen_src))
    with progress_bar(n_chunks, progress) as bar:
        bar.set_description(f"{name}: streaming")
        if client is None:
            for role, da, src in sets:
                add = ev.add_reference if role == "reference" else ev.add_generated
                for chunk in _chunks(da, chunk_size, role, name, src):
                    if role not in first:
                        first[role] = np.asarray(chunk.values[:FIGURE_SAMPLES])
                    add(chunk)
                    bar.update()
        else:
            # The client reads the first chunk of each set (figures; the reference's fixes
            # the binning, as in one process); the workers read and summarise every chunk.
            for role, da, src in sets:
                chunk = next(_chunks(da, chunk_size, role, name, src))
                first[role] = np.asarray(chunk.values[:FIGURE_SAMPLES])
                if role == "reference":
                    ev.set_binning(chunk)
                    spectrum(chunk[:1])
            jobs = (
                (role, start, part, src)
                for role, da, src in sets
                for start, part in _slices(da, chunk_size)
            )
            _feed_distributed(ev, client, jobs, name, bar)
    pairs = ev.distances()
    atol = {"wasserstein1": 1e-9 * max(ev.reference().moments.result()["std"], 1e-300)}
    distances = {
        key: judged(key, value, floor, factor, atol=atol.get(key, 1e-9))
        for key, (value, floor) in pairs.items()
    }

    g_sum, r_sum = ev.generated, ev.reference()
    half_a, half_b = ev.reference_halves(0)
    k = r_sum.spectrum.axis
    pg, pr = g_sum.spectrum.mean(), r_sum.spectrum.mean()
    keep = np.isfinite(k) & (k > 0) & np.isfinite(pg) & np.isfinite(pr) & (pg > 0) & (pr > 0)
    spec = {
        **spectrum.attrs,
        "k": k[keep],
        "generated": pg[keep],
        "reference": pr[keep],
        "reference_half_a": half_a.spectrum.mean()[keep],
        "reference_half_b": half_b.spectrum.mean()[keep],
        "effective_resolution": float(
            spectral_errors(pg[keep], pr[keep], k=k[keep])["effective_resolution"]
        ),
    }
    sg, sr = g_sum.structure.mean(), r_sum.structure.mean()
    i2, i4 = STRUCTURE_ORDERS.index(2), STRUCTURE_ORDERS.index(4)
    with np.errstate(divide="ignore", invalid="ignore"):
        structure = {
            "lags": np.asarray(r_sum.structure.axis, float) * grid.dx,
            "lag_units": str(ref[grid.x_dim].attrs.get("units", ""))
            if grid.x_dim in ref.coords
            else "",
            "orders": list(STRUCTURE_ORDERS),
            "generated": sg,
            "reference": sr,
            "flatness_generated": sg[i4] / sg[i2] ** 2,
            "flatness_reference": sr[i4] / sr[i2] ** 2,
        }
    qs = DEFAULT_TAIL_QUANTILES
    q_err = g_sum.values.quantile(qs) - r_sum.values.quantile(qs)
    bounds = ev.error_bounds()
    spec["binning"] = {
        "range": list(r_sum.values.range),
        "bins": r_sum.values.n_bins,
        "wasserstein1_error_bound": bounds["wasserstein1"],
        "ks_error_bound": bounds["ks"],
        "tail_quantile_error_bound": float(
            max(g_sum.values.quantile_bound(qs).max(), r_sum.values.quantile_bound(qs).max())
        ),
        "covariance_error": "computed"
        if "covariance_error" in distances
        else f"omitted: more than {COVARIANCE_MAX_POINTS} grid points",
        "figures": f"sample maps and value PDFs show the first {FIGURE_SAMPLES} samples",
    }
    return VariableResult(
        name=name,
        units=str(ref.attrs.get("units", "")),
        long_name=str(ref.attrs.get("long_name", name)),
        grid=grid.kind,
        spatial_dims=(grid.y_dim, grid.x_dim),
        shape=(int(ref.shape[-2]), int(ref.shape[-1])),
        n_generated=int(n_gen),
        n_reference=int(n_ref),
        distances=distances,
        moments={"generated": g_sum.moments.result(), "reference": r_sum.moments.result()},
        quantile_errors={f"{float(q):g}": float(v) for q, v in zip(qs, q_err, strict=True)},
        spectrum=spec,
        structure=structure,
        generated_fields=first.get("generated"),
        reference_fields=first.get("reference"),
        weights=weights,
        y=coordinate_values(ref, grid.y_dim, ref.shape[-2]),
        x=coordinate_values(ref, grid.x_dim, ref.shape[-1]),
    )
