"""Streaming accumulators: merge = whole set, equal to the in-memory metrics within the
stated bounds, and 100k fields evaluated in bounded memory."""

from __future__ import annotations

import resource
import time
import tracemalloc

import numpy as np
import pytest

from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError
from climgen.metrics import (
    covariance_error,
    ks_statistic,
    moments,
    noise_floor,
    rapsd,
    structure_functions,
    wasserstein1,
    weighted_quantile,
)
from climgen.metrics.streaming import (
    BinnedDistribution,
    Covariance,
    Moments,
    StreamingEvaluator,
    iter_chunks,
)

NY, NX = 16, 16


# Tiny models: intra-op threads only add contention (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights():
    lat = np.linspace(-80, 80, NY)
    return np.broadcast_to(np.cos(np.deg2rad(lat))[:, None], (NY, NX)).copy()


def _skewed(n, seed):
    g = make_grf(n, NY, NX, slope=-3.0, seed=seed)
    return g + 0.3 * g**2  # skewed, heavier right tail


def _split(n, rng, pieces=5):
    cuts = np.sort(rng.choice(np.arange(1, n), pieces - 1, replace=False))
    return np.split(np.arange(n), cuts)


def test_moments_merged_in_any_chunking_equal_the_in_memory_moments():
    x, w = _skewed(60, 0) + 100.0, _weights()  # large mean: tests the shifted update
    exact = moments(x, weights=w)
    rng = np.random.default_rng(1)
    parts = [Moments().update(x[idx], w) for idx in _split(60, rng)]
    total = Moments()
    for p in parts[::-1]:  # merge order does not matter
        total.merge(p)
    for key, value in total.result().items():
        assert value == pytest.approx(exact[key], rel=1e-10), key


def test_binned_w1_ks_quantiles_are_within_their_stated_bounds():
    a, b, w = _skewed(200, 2), _skewed(200, 3) * 1.1 + 0.05, _weights()
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    for n_bins in (256, 4096):
        ha = BinnedDistribution((lo, hi), n_bins).update(a, w)
        hb = BinnedDistribution((lo, hi), n_bins).update(b, w)
        w1 = wasserstein1(a, b, weights_a=w, weights_b=w)
        assert abs(ha.wasserstein1(hb) - w1) <= ha.w1_bound(hb)
        assert ha.w1_bound(hb) <= 2 * ha.width + 1e-12  # the headline bound: 2 bin widths
        ks = ks_statistic(a, b, weights_a=w, weights_b=w)
        assert ha.ks(hb) <= ks + 1e-12 <= ha.ks(hb) + ha.ks_bound(hb) + 1e-12
        q = np.array([0.001, 0.01, 0.5, 0.99, 0.999])
        exact = weighted_quantile(a, q, weights=w)
        assert np.all(np.abs(ha.quantile(q) - exact) <= ha.quantile_bound(q))
    # With 4096 bins the binned W1 is close in relative terms too.
    assert ha.wasserstein1(hb) == pytest.approx(w1, rel=2e-3)


def test_binned_merge_equals_histogram_of_the_union_and_outliers_are_kept():
    x = _skewed(40, 4)
    whole = BinnedDistribution((-1.0, 1.0), 64).update(x)  # range narrower than the data
    parts = [BinnedDistribution((-1.0, 1.0), 64).update(x[i]) for i in np.array_split(range(40), 3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert (merged.vmin, merged.vmax) == (x.min(), x.max())
    assert merged.total == x.size
    assert merged.quantile(1.0) == pytest.approx(x.max())  # the overflow bin ends at the max
    assert x.min() - merged.width <= merged.quantile(0.0) <= x.min()
    with pytest.raises(ClimgenInputError, match="binning"):
        merged.merge(BinnedDistribution((-1.0, 2.0), 64))


def test_covariance_error_from_merged_summaries_equals_covariance_error():
    a, b, w = _skewed(50, 5), _skewed(70, 6), _weights()
    ca, cb = Covariance(), Covariance()
    for idx in _split(50, np.random.default_rng(0)):
        ca.update(a[idx], w)
    for idx in _split(70, np.random.default_rng(1)):
        cb.update(b[idx], w)
    for k in (10, None):
        exact = covariance_error(a, b, n_eofs=k, weights=w)
        assert ca.error(cb, n_eofs=k) == pytest.approx(exact, rel=1e-8)


def test_evaluator_matches_in_memory_distances_and_floors():
    gen, ref, w = _skewed(48, 7), _skewed(40, 8), _weights()
    ev = StreamingEvaluator(40, weights=w, n_bins=2**14, range=(-6.0, 12.0))
    ev.run(iter_chunks(gen, 7), iter_chunks(ref, 9))
    out = ev.distances()
    bounds = ev.error_bounds()
    exact_w1 = wasserstein1(gen, ref, weights_a=w, weights_b=w)
    assert abs(out["wasserstein1"][0] - exact_w1) <= bounds["wasserstein1"]
    ks = ks_statistic(gen, ref, weights_a=w, weights_b=w)
    assert 0 <= ks - out["ks"][0] <= bounds["ks"] + 1e-12
    exact_floor = noise_floor(
        lambda a, b: wasserstein1(a, b, weights_a=w, weights_b=w), ref, method="halves"
    )
    assert out["wasserstein1"][1] == pytest.approx(exact_floor, rel=1e-2)
    mg, mr = moments(gen, weights=w), moments(ref, weights=w)
    assert out["mean_difference"][0] == pytest.approx(
        abs(mg["mean"] - mr["mean"]) / mr["std"], rel=1e-9
    )
    assert out["kurtosis_difference"][0] == pytest.approx(
        abs(mg["kurtosis"] - mr["kurtosis"]), rel=1e-9
    )
    _, pg = rapsd(gen)
    _, pr = rapsd(ref)
    lsd = np.sqrt(np.mean(np.log10(pg.mean(0)[1:] / pr.mean(0)[1:]) ** 2))
    assert out["spectrum_lsd"][0] == pytest.approx(lsd, rel=1e-9)
    assert out["covariance_error"][0] == pytest.approx(
        covariance_error(gen, ref, n_eofs=10, weights=w), rel=1e-8
    )
    _, sg = structure_functions(gen, orders=(1, 2, 3, 4, 5, 6), max_lag=NX // 2)
    _, sr = structure_functions(ref, orders=(1, 2, 3, 4, 5, 6), max_lag=NX // 2)
    assert out["structure_s2"][0] == pytest.approx(np.mean(np.abs(np.log(sg[1] / sr[1]))), rel=1e-9)


def _tiny_fields(n_chunks, size, seed):
    """Cheap GRF-like chunks: rolled and scaled copies of a small bank plus noise."""
    bank = make_grf(64, NY, NX, slope=-3.0, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(n_chunks):
        pick = rng.integers(0, 64, size)[:, None, None]
        cols = (np.arange(NX) + rng.integers(0, NX, size)[:, None])[:, None, :] % NX
        chunk = bank[pick, np.arange(NY)[None, :, None], cols]  # each field rolled along x
        yield chunk * rng.uniform(0.8, 1.2, (size, 1, 1)) + 0.1 * rng.standard_normal(chunk.shape)


def test_100k_fields_evaluate_in_bounded_memory():
    n_chunks, size = 50, 1000  # 50k generated + 50k reference 16×16 fields
    ev = StreamingEvaluator(n_chunks * size, weights=_weights(), range=(-8.0, 8.0))
    ev.run(_tiny_fields(1, 100, 3), _tiny_fields(0, 0, 4))  # warm-up: imports, caches
    ev = StreamingEvaluator(n_chunks * size, weights=_weights(), range=(-8.0, 8.0))
    t0 = time.process_time()
    max_rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    tracemalloc.start()
    ev.run(_tiny_fields(n_chunks, size, 1), _tiny_fields(n_chunks, size, 2))
    out = ev.distances()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - max_rss0
    cpu = time.process_time() - t0  # CPU time: robust to other jobs on the machine
    whole = 2 * n_chunks * size * NY * NX * 8  # both sets in float64: 205 MB
    assert peak < 40e6 < whole / 5, f"peak traced memory {peak / 1e6:.1f} MB"
    assert max_rss_growth < 80e6, f"peak RSS grew by {max_rss_growth / 1e6:.0f} MB"
    assert set(out) >= {"wasserstein1", "ks", "spectrum_lsd", "covariance_error"}
    assert all(np.isfinite(v) and np.isfinite(f) for v, f in out.values())
    assert cpu < 20, f"{cpu:.1f} s of CPU"  # about 2.5 s on one core


EXACT = (
    "spectrum_lsd",
    "spectrum_log_ratio",
    "mean_difference",
    "std_log_ratio",
    "skewness_difference",
    "kurtosis_difference",
    "covariance_error",
    "structure_s2",
    "flatness_difference",
)


def test_evaluate_with_chunk_size_equals_in_memory_evaluate_within_bounds():
    from climgen.data.samples import grf_dataarray
    from climgen.report.evaluate import evaluate

    gen = grf_dataarray(40, 16, 24, seed=1, name="v", units="K", kind="latlon")
    ref = grf_dataarray(48, 16, 24, seed=0, name="v", units="K", kind="latlon")
    whole = evaluate(gen, ref, progress=False).variables["v"]
    report = evaluate(gen.chunk({"time": 10}), ref, progress=False, chunk_size=7)
    streamed = report.variables["v"]
    # the morphology distances need all fields at once: the streamed evaluation leaves them out
    from climgen.report.eval_morphology import MORPHOLOGY_DISTANCES

    assert list(streamed.distances) == [d for d in whole.distances if d not in MORPHOLOGY_DISTANCES]
    for key in EXACT:
        a, b = whole.distances[key], streamed.distances[key]
        assert b.value == pytest.approx(a.value, rel=1e-6, abs=1e-12), key
        assert b.floor == pytest.approx(a.floor, rel=1e-6, abs=1e-12), key
    bounds = report.provenance["binning"]["v"]
    for key, bound in (("wasserstein1", "wasserstein1_error_bound"), ("ks", "ks_error_bound")):
        assert abs(streamed.distances[key].value - whole.distances[key].value) <= bounds[bound]
    sigma = whole.moments["reference"]["std"]
    tail = 2 * bounds["tail_quantile_error_bound"] / sigma
    assert abs(streamed.distances["tail_error"].value - whole.distances["tail_error"].value) <= tail
    for q, err in whole.quantile_errors.items():
        assert abs(streamed.quantile_errors[q] - err) <= 2 * bounds["tail_quantile_error_bound"]
    assert streamed.n_generated == 40 and streamed.n_reference == 48
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ClimgenInputError, match="chunk_size"):
            evaluate(gen, ref, progress=False, chunk_size=bad)


def test_streamed_structure_distance_uses_the_report_lags_on_wide_grids():
    from climgen.metrics.structure import report_lags

    gen, ref = make_grf(4, 4, 600, slope=-3.0, seed=1), make_grf(4, 4, 600, slope=-3.0, seed=2)
    ev = StreamingEvaluator(4)
    ev.run(iter_chunks(gen, 2), iter_chunks(ref, 3))
    lags = report_lags(600)
    _, sg = structure_functions(gen, orders=(2,), lags=lags)
    _, sr = structure_functions(ref, orders=(2,), lags=lags)
    s2 = ev.distances()["structure_s2"][0]
    assert s2 == pytest.approx(np.mean(np.abs(np.log(sg[0] / sr[0]))), rel=1e-9)
