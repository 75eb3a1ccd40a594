"""One-point distribution metrics against known values, scipy and invariances."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from climgen.errors import ClimgenInputError
from climgen.metrics import (
    histogram,
    ks_statistic,
    moments,
    noise_floor,
    quantile_errors,
    shared_edges,
    tail_error,
    verdict,
    wasserstein1,
    weighted_quantile,
)

finite = hs.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
samples = hnp.arrays(np.float64, hs.integers(1, 40), elements=finite)


def _latlon(values, lat):
    lon = np.arange(values.shape[-1]) * 360.0 / values.shape[-1]
    dims = ("time", "lat", "lon")[-values.ndim :]
    return xr.DataArray(values, dims=dims, coords={"lat": lat, "lon": lon})


def test_shifted_gaussians_known_w1_and_ks():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 40_000), rng.normal(0.5, 1, 40_000)
    assert wasserstein1(a, b) == pytest.approx(0.5, abs=0.02)
    # KS of N(0,1) vs N(0.5,1): sup |Φ(x) − Φ(x − 0.5)| at x = 0.25, = 2Φ(0.25) − 1.
    assert ks_statistic(a, b) == pytest.approx(2 * st.norm.cdf(0.25) - 1, abs=0.015)


def test_same_distribution_is_at_the_noise_floor():
    rng = np.random.default_rng(1)
    ref, gen = rng.normal(size=(200, 8, 8)), rng.normal(size=(200, 8, 8))
    for dist in (wasserstein1, ks_statistic):
        d = dist(gen, ref)
        floor = noise_floor(dist, ref, method="random", n_boot=10, rng=2)
        assert 0 < d <= 2 * floor
        assert verdict(d, floor).level == "matches"
    shifted = gen + 0.3
    floor = noise_floor(wasserstein1, ref)
    assert verdict(wasserstein1(shifted, ref), floor).level == "differs"


def test_agrees_with_scipy_unweighted_and_weighted():
    rng = np.random.default_rng(2)
    a, b = rng.gamma(2.0, size=500), rng.normal(2, 1, size=333)
    wa, wb = rng.uniform(0.1, 2, 500), rng.uniform(0.1, 2, 333)
    assert wasserstein1(a, b) == pytest.approx(st.wasserstein_distance(a, b), rel=1e-12)
    assert wasserstein1(a, b, weights_a=wa, weights_b=wb) == pytest.approx(
        st.wasserstein_distance(a, b, wa, wb), rel=1e-12
    )
    assert ks_statistic(a, b) == pytest.approx(st.ks_2samp(a, b).statistic, abs=1e-12)


def test_weighted_equals_duplicated_samples():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=50), rng.exponential(size=60)
    k = rng.integers(1, 5, size=50)
    dup = np.repeat(a, k)
    assert wasserstein1(a, b, weights_a=k) == pytest.approx(wasserstein1(dup, b), rel=1e-12)
    assert ks_statistic(a, b, weights_a=k) == pytest.approx(ks_statistic(dup, b), abs=1e-12)
    mw, md = moments(a, weights=k), moments(dup)
    for key in mw:
        assert mw[key] == pytest.approx(md[key], rel=1e-10)


def test_dataarray_uses_coslat_weights_and_canonical_orientation():
    rng = np.random.default_rng(4)
    lat = np.linspace(-80, 80, 9)
    x, y = rng.normal(size=(5, 9, 12)), rng.normal(0.2, 1, size=(5, 9, 12))
    w = np.broadcast_to(np.cos(np.deg2rad(lat))[:, None], (9, 12))
    expected = wasserstein1(x, y, weights_a=w, weights_b=w)
    assert expected != pytest.approx(wasserstein1(x, y), rel=1e-6)
    da_x = _latlon(x, lat)
    da_y = _latlon(y, lat).isel(lat=slice(None, None, -1))  # descending latitude
    assert wasserstein1(da_x, da_y) == pytest.approx(expected, rel=1e-12)
    expected_mean = np.average(x, weights=np.broadcast_to(w, x.shape))
    assert moments(da_x)["mean"] == pytest.approx(expected_mean)


def test_quantile_errors_of_a_shift_equal_the_shift():
    rng = np.random.default_rng(5)
    ref = rng.standard_t(4, size=(100, 10, 10))
    err = quantile_errors(ref + 0.7, ref)
    assert set(err) == {0.001, 0.01, 0.99, 0.999}
    assert all(v == pytest.approx(0.7, abs=1e-12) for v in err.values())
    assert tail_error(ref - 0.7, ref) == pytest.approx(0.7 / ref.std(), rel=1e-10)
    # a scaled distribution: tails move most
    assert tail_error(2 * ref, ref) > tail_error(ref + 0.1, ref)


def test_weighted_quantile_is_hazen_and_respects_weights():
    rng = np.random.default_rng(6)
    x = rng.normal(size=101)
    q = np.array([0.0, 0.003, 0.25, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(weighted_quantile(x, q), np.quantile(x, q, method="hazen"))
    # a large-sample weighted quantile approaches the duplicated-sample quantile
    k = rng.integers(1, 4, size=101)
    np.testing.assert_allclose(
        weighted_quantile(x, [0.1, 0.5, 0.9], weights=k),
        np.quantile(np.repeat(x, k), [0.1, 0.5, 0.9], method="hazen"),
        atol=0.1,
    )


def test_moments_of_known_distributions():
    rng = np.random.default_rng(7)
    m = moments(rng.exponential(2.0, size=1_000_000))
    assert m["mean"] == pytest.approx(2.0, rel=0.01)
    assert m["std"] == pytest.approx(2.0, rel=0.01)
    assert m["skewness"] == pytest.approx(2.0, abs=0.1)
    assert m["kurtosis"] == pytest.approx(9.0, abs=1.0)  # not excess: exponential has 9
    u = moments(rng.uniform(size=400_000))
    assert u["skewness"] == pytest.approx(0.0, abs=0.02)
    assert u["kurtosis"] == pytest.approx(1.8, abs=0.02)
    g = moments(rng.normal(size=400_000))
    assert g["kurtosis"] == pytest.approx(3.0, abs=0.05)


def test_histogram_density_and_poisson_errors():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=3000), rng.normal(1, 2, size=2000)
    edges = shared_edges(a, b, bins=30)
    assert edges[0] == min(a.min(), b.min()) and edges[-1] == max(a.max(), b.max())
    h = histogram(a, edges=edges)
    assert h.counts.sum() == 3000
    assert (h.density * np.diff(h.edges)).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(h.error, np.sqrt(h.counts) / (3000 * np.diff(edges)))
    assert h.centres.shape == (30,)
    hw = histogram(a, edges=edges, weights=np.full(3000, 5.0))
    np.testing.assert_allclose(hw.counts, h.counts)  # weights are relative
    assert histogram(np.ones(10)).counts.sum() == 10  # constant field: widened range


def test_torch_input_gives_differentiable_tensors():
    rng = np.random.default_rng(9)
    a = torch.tensor(rng.normal(size=300))
    shift = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    w1 = wasserstein1(a + shift, a)
    assert isinstance(w1, torch.Tensor)
    w1.backward()
    assert w1.item() == pytest.approx(0.4)
    assert float(shift.grad) == pytest.approx(1.0)
    # mixed torch / numpy input
    assert float(wasserstein1(a.float(), a.numpy() + 1.0)) == pytest.approx(1.0, rel=1e-5)
    q = quantile_errors(a + shift, a, q=(0.5,))
    assert q[0.5].item() == pytest.approx(0.4)


def test_bad_input_names_the_argument():
    a = np.array([1.0, np.nan, 2.0])
    with pytest.raises(ClimgenInputError, match="b contains 1 non-finite"):
        wasserstein1(np.ones(3), a)
    with pytest.raises(ClimgenInputError, match="weights_a"):
        ks_statistic(np.ones(3), np.ones(3), weights_a=np.ones(4))
    with pytest.raises(ClimgenInputError, match="quantile levels"):
        quantile_errors(np.ones(3), np.ones(3), q=(1.5,))
    with pytest.raises(ClimgenInputError, match="constant"):
        tail_error(np.arange(3.0), np.ones(3))


@settings(max_examples=40, deadline=None)
@given(samples, samples, finite)
def test_w1_properties(a, b, c):
    d = wasserstein1(a, b)
    assert d >= 0
    assert d == pytest.approx(wasserstein1(b, a), rel=1e-9, abs=1e-9)
    assert wasserstein1(a, a + c) == pytest.approx(abs(c), rel=1e-9, abs=1e-9)
    ks = ks_statistic(a, b)
    assert 0 <= ks <= 1
    assert ks == pytest.approx(ks_statistic(b, a))
    assert ks_statistic(a, a) == 0
