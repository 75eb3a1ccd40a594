"""Reference rows of an evaluation: the training data itself, an IAAFT surrogate, memorisation."""

from __future__ import annotations

import numpy as np
import pytest

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.report.eval_morphology import MORPHOLOGY_DISTANCES
from climgen.report.evaluate import evaluate

N, NY, NX = 16, 32, 48


def _blobs(seed, n=N):
    """Sharp-edged disks on a weakly noisy background, on a doubly periodic planar grid."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:NY, 0:NX]
    f = np.zeros((n, NY, NX))
    for i in range(n):
        for _ in range(4):
            cy, cx, r = rng.integers(NY), rng.integers(NX), rng.uniform(3, 5)
            dy, dx = (y - cy + NY / 2) % NY - NY / 2, (x - cx + NX / 2) % NX - NX / 2
            f[i] += np.hypot(dy, dx) < r
    f += 0.05 * rng.standard_normal(f.shape)
    template = grf_dataarray(n, NY, NX, seed=0, name="v", units="K")
    return template.copy(data=f)


@pytest.fixture(scope="module")
def blob_report():
    ref, train = _blobs(0), _blobs(1)
    rng = np.random.default_rng(5)
    # "memorising" model: training fields shifted along the periodic axes, plus weak noise
    shifted = np.stack(
        [np.roll(f, (rng.integers(NY), rng.integers(NX)), axis=(0, 1)) for f in train.values]
    )
    gen = train.copy(data=shifted + 0.02 * rng.standard_normal(shifted.shape))
    return evaluate(gen, ref, train=train, progress=False)


def test_morphology_distances_join_the_table():
    ref = grf_dataarray(N, NY, NX, seed=0, name="v", units="K")
    report = evaluate(grf_dataarray(N, NY, NX, seed=1, name="v", units="K"), ref, progress=False)
    var = report.variables["v"]
    assert set(MORPHOLOGY_DISTANCES) <= set(var.distances)
    assert var.reference_rows == {} and var.memorisation == {}
    same = evaluate(ref, ref, progress=False).variables["v"]
    assert all(same.distances[d].value == 0 for d in MORPHOLOGY_DISTANCES)


def test_rows_share_the_floors_and_the_surrogate_loses_the_blobs(blob_report):
    var = blob_report.variables["v"]
    train_row, surrogate = (
        var.reference_rows["training data"],
        var.reference_rows["surrogate (IAAFT)"],
    )
    for name, d in var.distances.items():
        assert train_row[name].floor == d.floor and surrogate[name].floor == d.floor
    # the training run has the same blobs as the reference: its Euler curve matches; the
    # surrogate keeps spectrum and values but breaks the disks into fragments
    assert train_row["minkowski_euler"].status == "matches"
    assert surrogate["minkowski_euler"].ratio > 5 * max(train_row["minkowski_euler"].ratio, 0.2)
    # the report's surrogate ends on the spectral step: its spectrum is the training data's
    assert surrogate["spectrum_lsd"].ratio < 2 * max(train_row["spectrum_lsd"].ratio, 1)


def test_memorisation_ratio_flags_shifted_copies(blob_report):
    memo = blob_report.variables["v"].memorisation
    assert memo["generated"] < 0.3  # shifted copies of training fields
    assert memo["surrogate (IAAFT)"] > 0.7
    text = blob_report.summary()
    assert "surrogate (IAAFT)" in text and "memorisation ratio of generated" in text


def test_train_input_errors_are_one_clear_message():
    ref = grf_dataarray(N, NY, NX, seed=0, name="v", units="K")
    other = ref.rename("w").to_dataset()
    with pytest.raises(ClimgenInputError, match="'v' is not in the training data"):
        evaluate(ref, ref, train=other, progress=False)
    with pytest.raises(ClimgenInputError, match="chunk_size"):
        evaluate(ref, ref, train=ref, chunk_size=4, progress=False)
    small = ref.isel(x=slice(0, 40))
    with pytest.raises(ClimgenInputError, match="x"):
        evaluate(ref, ref, train=small, progress=False)


def test_reference_side_is_measured_once_and_rows_equal_separate_evaluations(monkeypatch):
    """The reference's own statistics are computed once for the model and both rows, and
    sharing them changes no number: the training row equals evaluating the training data."""
    import climgen.metrics as metrics

    ref = grf_dataarray(8, 16, 24, seed=0, name="v", units="K")
    train = grf_dataarray(8, 16, 24, seed=1, name="v", units="K")
    gen = grf_dataarray(8, 16, 24, slope=-2.0, seed=2, name="v", units="K")
    calls = {"structure_functions": 0, "minkowski_functionals": 0, "field_spectrum": 0}
    for fn in calls:
        real = getattr(metrics, fn)

        def counting(a, *args, _real=real, _fn=fn, **kw):
            values = np.asarray(getattr(a, "values", a))
            if values.shape == ref.shape and np.array_equal(values, ref.values):
                calls[_fn] += 1
            return _real(a, *args, **kw)

        monkeypatch.setattr(metrics, fn, counting)
    var = evaluate(gen, ref, train=train, progress=False).variables["v"]
    assert calls == {"structure_functions": 1, "minkowski_functionals": 1, "field_spectrum": 1}
    alone = evaluate(train, ref, progress=False).variables["v"].distances
    row = var.reference_rows["training data"]
    assert {k: (d.value, d.floor) for k, d in row.items()} == {
        k: (d.value, d.floor) for k, d in alone.items()
    }


def test_reuse_takes_floors_and_rows_from_an_earlier_report_of_the_same_reference(monkeypatch):
    import climgen.metrics as metrics

    ref = grf_dataarray(8, 16, 24, seed=0, name="v", units="K")
    train = grf_dataarray(8, 16, 24, seed=1, name="v", units="K")
    first_gen = grf_dataarray(8, 16, 24, slope=-2.0, seed=2, name="v", units="K")
    other_gen = grf_dataarray(8, 16, 24, slope=-4.0, seed=3, name="v", units="K")
    first = evaluate(first_gen, ref, train=train, progress=False)
    fresh = evaluate(other_gen, ref, train=train, progress=False).variables["v"]
    surrogates = []
    real = metrics.iaaft_surrogate
    monkeypatch.setattr(
        metrics, "iaaft_surrogate", lambda *a, **k: surrogates.append(1) or real(*a, **k)
    )
    reused = evaluate(other_gen, ref, train=train, progress=False, reuse=first).variables["v"]
    assert surrogates == []  # the reference rows were not measured again
    for attr in ("distances", "reference_rows"):
        a, b = getattr(reused, attr), getattr(fresh, attr)
        assert a.keys() == b.keys()
        for k in a:
            if attr == "distances":
                assert (a[k].value, a[k].floor) == pytest.approx((b[k].value, b[k].floor))
            else:
                assert {n: d.value for n, d in a[k].items()} == {
                    n: d.value for n, d in b[k].items()
                }
    assert reused.memorisation == pytest.approx(fresh.memorisation)
    # another reference is measured afresh, not taken from the earlier report
    ref2 = grf_dataarray(8, 16, 24, seed=4, name="v", units="K")
    evaluate(other_gen, ref2, train=train, progress=False, reuse=first)
    assert surrogates == [1]
