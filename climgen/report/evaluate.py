"""Judge generated fields against reference fields: physics diagnostics next to noise floors.

:func:`evaluate` compares, variable by variable, a set of generated fields with a reference
set on the same grid and returns an :class:`EvaluationReport`. Every distance
d(generated, reference) is reported with its **noise floor**, the same distance between two
halves of the reference (:func:`climgen.metrics.noise_floor`; averaged over 5 splits into
halves made of contiguous blocks, the first being first half vs second half), and a
verdict in words (Ravuri et al. 2021, Nature 597, 672, judge generative weather models
against the spread of the truth itself; ``docs/diagnostics.md`` §11):

* ``matches`` — d ≤ factor · floor (factor = 2 by default),
* ``close``   — factor · floor < d ≤ 5 · floor,
* ``differs`` — d > 5 · floor.

Distances per variable (all area-weighted on lat/lon grids):

====================  ==================================================================
spectrum_lsd          log-spectral distance sqrt(mean_k (log10 P_gen − log10 P_ref)²) of
                      the sample-mean spectra (rapsd or spherical C_ℓ, see field_spectrum)
spectrum_log_ratio    mean_k |log10(P_gen / P_ref)|
wasserstein1          W1 of the value distributions, units of the field
ks                    Kolmogorov–Smirnov statistic on the samples
tail_error            max over q ∈ {0.1 %, 1 %, 99 %, 99.9 %} of |ΔQ(q)| / σ_ref
mean_difference       |μ_gen − μ_ref| / σ_ref
std_log_ratio         |ln(σ_gen / σ_ref)|
skewness_difference   |γ1,gen − γ1,ref|
kurtosis_difference   |β2,gen − β2,ref|
covariance_error      ‖Σ_gen − Σ_ref‖_F / ‖Σ_ref‖_F of the covariance projected on the
                      reference's 10 leading EOFs (Wu et al. 2020)
structure_s2          mean_r |ln(S_2,gen(r) / S_2,ref(r))| along x
flatness_difference   mean_r |F_gen(r) − F_ref(r)|, F = S_4 / S_2², along x
minkowski_area        Minkowski functionals of {f > ν} at the reference's quantiles:
minkowski_length      mean_ν |V_gen − V_ref| / max |V_ref| for the area fraction, the
minkowski_euler       boundary length and the Euler characteristic
gradient_pdf          W1 of the |∇f| distributions / mean |∇f|_ref
band_spectrum_lsd     log-spectral distance of the spectra along x per latitude / height
                      band, mean over bands (periodic-x grids)
====================  ==================================================================

With ``train=`` (the model's training data), every distance is also given for two
reference rows judged against the same reference and floors — the training data itself
and an IAAFT surrogate of it (:mod:`climgen.report.eval_reference`) — with the
shift-aware memorisation ratio of the model and of the surrogate.

The pieces: result types in :mod:`climgen.report.eval_results`, input checks in
:mod:`climgen.report.eval_inputs`, measurements (shared with the streamed evaluation of
:mod:`climgen.report.streaming_eval`) in :mod:`climgen.report.eval_measures`, figures in
:mod:`climgen.report.eval_figures`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.errors import ClimgenInputError
from climgen.report.eval_inputs import (
    MIN_REFERENCE_SAMPLES,
    SAMPLE_DIM,
    as_samples,
    check_finite,
    check_same_grid,
    describe_source,
    open_dataset,
    reconcile_units,
    select_variables,
    subsample,
)
from climgen.report.eval_measures import (
    ReferenceSide,
    coordinate_values,
    measure_covariance,
    measure_distributions,
    measure_spectrum,
    measure_structure,
    progress_bar,
)
from climgen.report.eval_morphology import measure_morphology
from climgen.report.eval_reference import (
    REFERENCE_ROWS,
    SURROGATE_ROW,
    memorisation,
    reference_candidates,
)
from climgen.report.eval_results import Distance, EvaluationReport, VariableResult, classify
from climgen.report.streaming_eval import evaluate_streaming, resolve_client

__all__ = [
    "Distance",
    "VariableResult",
    "EvaluationReport",
    "evaluate",
    "classify",
    "MIN_REFERENCE_SAMPLES",
]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("climgen")
    except Exception:  # noqa: BLE001 - not installed: fall back to the package attribute
        import climgen

        return str(getattr(climgen, "__version__", "unknown"))


def evaluate(
    generated: Any,
    reference: Any,
    *,
    variables: Iterable[str] | str | None = None,
    sample_dim: str | None = None,
    max_samples: int | None = None,
    progress: bool = True,
    factor: float = 2.0,
    chunk_size: int | None = None,
    train: Any = None,
    seed: int = 0,
    client: Any = None,
    reuse: EvaluationReport | None = None,
) -> EvaluationReport:
    """Compare generated fields with reference fields and judge each distance.

    Parameters
    ----------
    generated, reference : xarray Dataset or DataArray, or path(s) to netCDF/zarr files.
        Both must be on the same spatial grid (same dim names and sizes, coordinates equal
        after canonical orientation); their sample counts may differ. Units are compared by
        meaning (UDUNITS-2 via ``cf_units``): the same unit spelled differently passes,
        convertible units (degC vs K) convert the generated data to the reference's units
        with a note in ``provenance["units"]``, incompatible ones raise.
    variables : names to evaluate (default: every gridded variable of ``generated``).
    sample_dim : the dim that indexes samples (default: every non-spatial dim, stacked).
    max_samples : use at most this many samples of each set (evenly spaced).
    progress : show a progress bar (on a terminal only).
    factor : a distance matches when value ≤ factor × noise floor.
    chunk_size : evaluate in bounded memory, ``chunk_size`` samples at a time (lazily
        opened files and dask arrays are read chunk by chunk; see :mod:`climgen.report.
        streaming_eval`). Distances use the mergeable accumulators of
        :mod:`climgen.metrics.streaming`: equal to the in-memory values up to round-off,
        except W1, KS and the tail error, computed on 65 536 common bins (error bounds in
        ``provenance["binning"]``); ``covariance_error`` is left out above 1024 grid points;
        figures show the first chunk's samples. The morphology distances and reference
        rows need all fields at once and are left out. Default: everything in memory.
    train : the model's training data (same kinds of input and grid as ``reference``):
        adds the reference rows "training data" and "surrogate (IAAFT)" — every distance for
        the training set itself and for an IAAFT surrogate of it, against the same
        reference and floors — and the shift-aware memorisation ratio
        (``VariableResult.reference_rows``, ``.memorisation``). ``max_samples`` applies.
    seed : seed of the surrogate's random phases.
    client : with ``chunk_size``, summarise the chunks on a dask cluster: a
        ``distributed.Client`` (``LocalCluster``, dask-jobqueue's ``SLURMCluster``, …) or a
        scheduler address (``"tcp://host:8786"``). Workers read their chunks themselves (the
        data must be files or dask arrays they can reach) and the client merges the
        summaries in chunk order: the same numbers as without ``client``. Needs the
        ``dask`` extra (``pip install 'climgen[dask]'``); docs/scaling.md.
    reuse : an earlier report of this function for another generated set of as many
        samples against the same reference (and ``train``, ``factor``, ``seed``), e.g. a
        model with and without its calibration: the noise floors, the reference's own
        statistics, the reference rows and the surrogate's memorisation ratio are taken
        from it instead of being measured again. A variable whose reference, training
        fields or settings differ (compared by content hash) is measured afresh.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ClimgenInputError
        naming the variable, dim or file at fault: a variable missing from either set,
        ``units`` that cannot be converted into each other, grids that differ, NaN/inf
        values, or fewer than 4 reference samples (the noise floor needs two halves of at
        least 2).
    """
    if max_samples is not None and int(max_samples) < MIN_REFERENCE_SAMPLES:
        raise ClimgenInputError(
            f"max_samples must be at least {MIN_REFERENCE_SAMPLES} (got {max_samples}): the "
            "noise floor compares two halves of the reference"
        )
    gen_src, ref_src = (
        describe_source(generated, "generated"),
        describe_source(reference, "reference"),
    )
    gen_ds, ref_ds = open_dataset(generated, "generated"), open_dataset(reference, "reference")
    names = select_variables(gen_ds, ref_ds, variables, gen_src, ref_src)
    srcs = (gen_src, ref_src)
    notes: dict[str, str | None] = {}
    if client is not None and chunk_size is None:
        raise ClimgenInputError(
            "client= (a dask cluster) evaluates chunk by chunk: give chunk_size too"
        )
    if chunk_size is not None:
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ClimgenInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if train is not None:
            raise ClimgenInputError(
                "train= (reference rows) needs all fields in memory: leave chunk_size unset, "
                "or pass max_samples to bound the memory"
            )
        results = {}
        dask_client, owned = (None, False) if client is None else resolve_client(client)
        try:
            for name in names:
                g_can, r_can, grid = _sample_pair(name, gen_ds, ref_ds, sample_dim, srcs, notes)
                results[name] = evaluate_streaming(
                    name,
                    subsample(g_can, max_samples),
                    subsample(r_can, max_samples),
                    grid,
                    int(chunk_size),
                    factor,
                    srcs,
                    progress,
                    client=dask_client,
                )
            if dask_client is not None:
                workers = len(dask_client.scheduler_info().get("workers", {}))
                cluster = f"{workers} worker(s) at {dask_client.scheduler.address}"
        finally:
            if owned:
                dask_client.close()
        provenance = _provenance(gen_src, ref_src, names, results, notes)
        provenance["chunk_size"] = int(chunk_size)
        if dask_client is not None:
            provenance["dask_cluster"] = cluster
        provenance["binning"] = {n: r.spectrum.pop("binning") for n, r in results.items()}
        return EvaluationReport(variables=results, provenance=provenance, factor=factor)

    train_ds = train_src = None
    if train is not None:
        train_src = describe_source(train, "training")
        train_ds = open_dataset(train, "training")
    prepared = {}
    for name in names:
        r_da = ref_ds[name]
        g_can, r_can, grid = _sample_pair(name, gen_ds, ref_ds, sample_dim, srcs, notes)
        g_can = _float_copy(subsample(g_can, max_samples))
        r_can = _float_copy(subsample(r_can, max_samples))
        if r_can.sizes[SAMPLE_DIM] < MIN_REFERENCE_SAMPLES:
            raise ClimgenInputError(
                f"variable '{name}': the reference ({ref_src}) has "
                f"{r_can.sizes[SAMPLE_DIM]} sample(s); at least {MIN_REFERENCE_SAMPLES} are "
                "needed to estimate the noise floor from two halves"
            )
        check_finite(g_can, "generated", name, gen_src)
        check_finite(r_can, "reference", name, ref_src)
        t_can = None
        if train_ds is not None:
            t_can = _training_fields(
                train_ds, name, r_da, sample_dim, max_samples, train_src, ref_src
            )
        prepared[name] = (g_can, r_can, grid, t_can)

    steps = ("spectrum", "distributions", "covariance", "structure functions", "morphology")
    n_steps = len(steps) + (len(REFERENCE_ROWS) + 1 if train_ds is not None else 0)
    results: dict[str, VariableResult] = {}
    sides: dict[str, ReferenceSide] = {}
    with progress_bar(len(names) * n_steps, progress) as bar:
        for name, (g_can, r_can, grid, t_can) in prepared.items():
            gen = np.asarray(g_can.values, float)
            ref = np.asarray(r_can.values, float)
            weights = grids.area_weights(r_can, grid).values
            # floors and reference statistics, shared by every row (and with ``reuse``)
            key = _reference_key(r_can, t_can, weights, grid, (factor, seed, gen.shape[0]))
            side = _side_for(reuse, name, key)
            sides[name] = side
            m = _measure(name, g_can, r_can, grid, weights, factor, side, bar, steps)
            rows: dict[str, dict[str, Distance]] = {}
            memo: dict[str, float] = {}
            if t_can is not None:
                sets = {"generated": gen}
                if side.reference_rows is None:
                    rows, sets[SURROGATE_ROW] = _reference_rows(
                        name, gen, r_can, t_can, grid, weights, factor, seed, side, bar
                    )
                else:
                    rows, surrogate_memo = side.reference_rows
                    bar.update(len(REFERENCE_ROWS))
                bar.set_description(f"{name}: memorisation")
                memo = memorisation(sets, t_can.values, ref, grid, weights)
                if SURROGATE_ROW in sets:  # measured now: kept for reuse
                    side.reference_rows = (rows, memo[SURROGATE_ROW])
                else:
                    memo[SURROGATE_ROW] = surrogate_memo
                rows = dict(rows)
                bar.update()
            distances, moments_, q_err, spectrum, structure, morphology = m
            structure["lag_units"] = (
                str(r_can[grid.x_dim].attrs.get("units", ""))
                if (grid.x_dim in r_can.coords)
                else ""
            )
            results[name] = VariableResult(
                name=name,
                units=str(r_can.attrs.get("units", "")),
                long_name=str(r_can.attrs.get("long_name", name)),
                grid=grid.kind,
                spatial_dims=(grid.y_dim, grid.x_dim),
                shape=(int(ref.shape[-2]), int(ref.shape[-1])),
                n_generated=int(gen.shape[0]),
                n_reference=int(ref.shape[0]),
                distances=distances,
                moments=moments_,
                quantile_errors=q_err,
                spectrum=spectrum,
                structure=structure,
                morphology=morphology,
                reference_rows=rows,
                memorisation=memo,
                generated_fields=gen,
                reference_fields=ref,
                weights=weights,
                y=coordinate_values(r_can, grid.y_dim, ref.shape[-2]),
                x=coordinate_values(r_can, grid.x_dim, ref.shape[-1]),
            )

    provenance = _provenance(gen_src, ref_src, names, results, notes)
    return EvaluationReport(
        variables=results, provenance=provenance, factor=factor, reference_sides=sides
    )


def _reference_key(r_can, t_can, weights, grid, settings) -> tuple:
    """What a :class:`ReferenceSide` was measured on: content hashes of the reference, its
    area weights and coordinates and the training fields, the grid, and ``settings``
    (factor, seed, number of generated samples)."""
    h = hashlib.blake2b(digest_size=16)
    arrays = [r_can.values, weights, *(r_can[c].values for c in sorted(r_can.coords))]
    for a in [*arrays, np.zeros(0) if t_can is None else t_can.values]:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.data if a.dtype.kind != "O" else repr(a.tolist()).encode())
    return h.hexdigest(), repr(grid), settings


def _side_for(reuse: EvaluationReport | None, name: str, key: tuple) -> ReferenceSide:
    """``reuse``'s side of variable ``name`` when it was measured on the same ``key``."""
    old = None if reuse is None else reuse.reference_sides.get(name)
    return old if old is not None and old.key == key else ReferenceSide(key=key)


def _reference_rows(name, gen, r_can, t_can, grid, weights, factor, seed, side, bar):
    """``(rows, surrogate fields)``: every distance of the training data and of its IAAFT
    surrogate against the reference (floors from ``side``), and the surrogate's values."""
    candidates = reference_candidates(
        t_can, gen.shape[0], seed=seed, periodic_y=bool(grid.periodic_y)
    )
    rows = {}
    for row, c_can in candidates.items():
        bar.set_description(f"{name}: {row}")
        rows[row] = _measure(name, c_can, r_can, grid, weights, factor, side)[0]
        bar.update()
    return rows, candidates[SURROGATE_ROW].values


def _sample_pair(name, gen_ds, ref_ds, sample_dim, srcs, notes):
    """Variable ``name`` of the generated and reference sets as samples on one grid:
    ``(generated, reference, grid)``, the generated fields in the reference's units (the note
    of a conversion, or None, goes to ``notes[name]``)."""
    gen_src, ref_src = srcs
    r_da = ref_ds[name]
    g_da, notes[name] = reconcile_units(name, gen_ds[name], r_da, gen_src, ref_src)
    check_same_grid(name, g_da, r_da)
    g_can, _ = as_samples(g_da, sample_dim, "generated", name)
    r_can, grid = as_samples(r_da, sample_dim, "reference", name)
    return g_can, r_can, grid


def _float_copy(da: xr.DataArray) -> xr.DataArray:
    """A writable float64 copy: file-backed arrays are read-only, which torch warns about."""
    return da.copy(data=np.array(da.values, dtype=np.float64))


def _training_fields(train_ds, name, r_da, sample_dim, max_samples, train_src, ref_src):
    """The training fields of variable ``name`` as a checked canonical (sample, y, x) array."""
    if name not in train_ds.data_vars:
        raise ClimgenInputError(
            f"variable '{name}' is not in the training data ({train_src}); it holds "
            f"{sorted(map(str, train_ds.data_vars))}"
        )
    t_da, _ = reconcile_units(name, train_ds[name], r_da, train_src, ref_src)
    check_same_grid(name, t_da, r_da)
    t_can, _ = as_samples(t_da, sample_dim, "training", name)
    t_can = _float_copy(subsample(t_can, max_samples))
    if t_can.sizes[SAMPLE_DIM] < MIN_REFERENCE_SAMPLES:
        raise ClimgenInputError(
            f"variable '{name}': the training data ({train_src}) has "
            f"{t_can.sizes[SAMPLE_DIM]} sample(s); the reference rows need at least "
            f"{MIN_REFERENCE_SAMPLES}"
        )
    check_finite(t_can, "training", name, train_src)
    return t_can


def _measure(name, g_can, r_can, grid, weights, factor, side, bar=None, steps=None):
    """All distances of one candidate set against the reference (floors and reference
    statistics shared via the :class:`ReferenceSide` ``side``): (distances, moments, quantile
    errors, spectrum, structure, morphology)."""

    def step(i):
        if bar is None:
            return
        if i:
            bar.update()
        if i < len(steps):
            bar.set_description(f"{name}: {steps[i]}")

    gen = np.asarray(g_can.values, float)
    ref = np.asarray(r_can.values, float)
    step(0)
    distances, spectrum = measure_spectrum(g_can, r_can, factor, side)
    step(1)
    d_dist, moments_, q_err = measure_distributions(gen, ref, weights, factor, side)
    distances.update(d_dist)
    step(2)
    distances.update(measure_covariance(gen, ref, weights, factor, side))
    step(3)
    d_sf, structure = measure_structure(gen, ref, grid, factor, side)
    distances.update(d_sf)
    step(4)
    d_mo, morphology = measure_morphology(r_can, gen, ref, grid, weights, factor, side)
    distances.update(d_mo)
    step(5)
    return distances, moments_, q_err, spectrum, structure, morphology


def _provenance(
    gen_src: str, ref_src: str, names: list[str], results: dict, notes: dict[str, str | None]
) -> dict[str, Any]:
    provenance = {
        "generated": gen_src,
        "reference": ref_src,
        "variables": names,
        "samples (generated)": {n: r.n_generated for n, r in results.items()},
        "samples (reference)": {n: r.n_reference for n, r in results.items()},
        "climgen version": _version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "noise floor": "same distance between two halves of the reference samples "
        "(mean over 5 splits into contiguous blocks)",
    }
    converted = {n: note for n, note in notes.items() if note}
    if converted:
        provenance["units"] = converted
    return provenance
