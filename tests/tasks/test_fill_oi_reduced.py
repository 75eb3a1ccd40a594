"""Reduced-space optimal interpolation (``solver="reduced"``) against the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from test_fill_oi import NX, NY, _latlon, _nonstationary_fields

from climgen.errors import ClimgenInputError
from climgen.tasks.fill import oi_reduced
from climgen.tasks.fill.cross_validation import cross_validate
from climgen.tasks.fill.infiller import Infiller
from climgen.tasks.fill.masks import blob_masks
from climgen.tasks.fill.oi import GaussianFieldModel
from climgen.tasks.fill.oi_reduced import ReducedGaussianFieldModel, fit_field_model


def _assert_same_conditional(dense, reduced, y, observed, scale):
    """Conditional mean within 1e-3 of the field std, variance within 5 %, and draws whose
    mean and variance are the conditional's."""
    m_d, s_d, _ = dense.condition(y, observed)
    m_r, s_r, draws = reduced.condition(y, observed, members=4000, rng=3)
    hid = ~observed
    assert np.max(np.abs(m_r - m_d)) < 1e-3 * scale
    np.testing.assert_allclose(s_r[hid] ** 2, s_d[hid] ** 2, rtol=0.05)
    assert np.array_equal(m_r[observed], y[observed]) and np.all(s_r[observed] == 0)
    assert (draws[:, observed] == y[observed]).all()
    assert np.all(np.abs(draws.mean(0) - m_d)[hid] < 5 * s_d[hid] / np.sqrt(len(draws)))
    np.testing.assert_allclose(draws.var(0)[hid], s_d[hid] ** 2, rtol=0.1)
    # the dense members carry the nugget at the hidden cells too (their variance is s_d²)
    _, _, dense_draws = dense.condition(y, observed, members=4000, rng=4)
    np.testing.assert_allclose(dense_draws.var(0)[hid], s_d[hid] ** 2, rtol=0.1)


@pytest.mark.parametrize("zonal", [False, True])
def test_reduced_equals_dense_when_the_eofs_span_the_covariance(zonal):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 6, 8)).cumsum(-1)  # rank of C ≤ 10 without zonal
    kwargs = {"zonal": zonal, "hemispheric": True, "nugget": 1e-2}
    dense = GaussianFieldModel.fit(x, **kwargs)
    reduced = ReducedGaussianFieldModel.fit(x, rank=48, **kwargs)
    observed = rng.random((6, 8)) < 0.4
    _assert_same_conditional(dense, reduced, x[0], observed, x.std())
    assert reduced.log_likelihood(x[:3], nugget=0.1) == pytest.approx(
        dense.log_likelihood(x[:3], nugget=0.1), rel=1e-9
    )
    np.testing.assert_allclose(
        reduced.conditional_means(x[:3], observed),
        dense.conditional_means(x[:3], observed),
        atol=1e-9 * x.std(),
    )


def test_reduced_equals_dense_for_a_rank_r_plus_diagonal_covariance():
    """C = BBᵀ + diag(d₀) given to both: the dense model as anomalies A with AᵀA/m = C."""
    rng = np.random.default_rng(1)
    h, w, r = 5, 7, 4
    n = h * w
    b = rng.standard_normal((n, r))
    d0 = rng.uniform(0.05, 0.5, n)
    m = r + n
    anomalies = np.sqrt(m) * np.concatenate([b.T, np.diag(np.sqrt(d0))])
    mean = rng.standard_normal((h, w))
    dense = GaussianFieldModel(mean, anomalies=anomalies, nugget=1e-3)
    reduced = ReducedGaussianFieldModel(mean, b, d0, nugget=1e-3)
    assert reduced.tau2 == pytest.approx(dense.tau2, rel=1e-12)
    y = mean + rng.standard_normal((h, w))
    observed = rng.random((h, w)) < 0.5
    _assert_same_conditional(dense, reduced, y, observed, float(np.sqrt(dense.variance.mean())))


def test_zonal_truncation_keeps_zonal_symmetry_and_cos_sin_pairs():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 6, 8)).cumsum(-1)
    model = ReducedGaussianFieldModel.fit(x, zonal=True, nugget=1e-2, rank=5)
    cov = model.loadings @ model.loadings.T + np.diag(model.residual)
    shifted = np.roll(np.arange(48).reshape(6, 8), 3, axis=1).reshape(-1)
    np.testing.assert_allclose(cov[np.ix_(shifted, shifted)], cov, atol=1e-12)
    assert model.rank in (5, 6)  # a cos/sin pair is kept or dropped whole
    total = ReducedGaussianFieldModel.fit(x, zonal=True, nugget=1e-2, rank=48)
    np.testing.assert_allclose(model.variance, total.variance, atol=1e-12)  # residual fills in
    # a float rank keeps the fewest EOFs that explain that fraction of the variance
    for zonal in (False, True):
        fraction = ReducedGaussianFieldModel.fit(x, zonal=zonal, nugget=1e-2, rank=0.9)
        explained = 1 - fraction.residual.sum() / fraction.variance.sum()
        assert explained >= 0.9
        drop = 2 if zonal and fraction.rank > 1 else 1
        fewer = fraction.loadings[:, :-drop]
        assert (fewer**2).sum() / fraction.variance.sum() < 0.9


def test_reduced_solver_through_the_infiller_is_close_to_dense_and_reloads(tmp_path, monkeypatch):
    fields = _nonstationary_fields(96, seed=4)
    train, truth = _latlon(fields[:80]), _latlon(fields[80:])
    mask = _latlon(blob_masks(16, (NY, NX), coverage=0.35, seed=9), name="m")
    scores = {}
    for solver in ("dense", "reduced"):
        inf = Infiller("optimal-interpolation", solver=solver, rank=40)
        inf.fit(train, run_dir=tmp_path / solver)
        scores[solver] = cross_validate(inf, truth, mask, members=8)
    assert isinstance(inf.gaussian, ReducedGaussianFieldModel) and inf.gaussian.rank <= 40
    assert scores["reduced"]["rmse"] < 1.1 * scores["dense"]["rmse"], scores
    assert scores["reduced"]["crps"] < 1.1 * scores["dense"]["crps"], scores
    obs = truth.isel(time=[0]).where(mask.isel(time=0) > 0)
    out = inf.fill(obs, members=4, seed=1)
    again = Infiller.load(tmp_path / "reduced").fill(obs, members=4, seed=1)
    xr.testing.assert_identical(out.drop_attrs(), again.drop_attrs())
    # "auto" switches to the reduced solver above MAX_CELLS
    monkeypatch.setattr(oi_reduced, "MAX_CELLS", NY * NX - 1)
    auto = fit_field_model(fields[:20], nugget=1e-3, rank=8)
    assert isinstance(auto, ReducedGaussianFieldModel) and auto.rank == 8


def test_reduced_solver_bad_options_are_clear_errors():
    x = np.random.default_rng(0).standard_normal((8, 4, 6))
    with pytest.raises(ClimgenInputError, match="solver"):
        fit_field_model(x, solver="sparse")
    with pytest.raises(ClimgenInputError, match="rank"):
        fit_field_model(x, solver="reduced", rank=0)
    with pytest.raises(ClimgenInputError, match="context"):
        fit_field_model(x, solver="reduced", context=1)
