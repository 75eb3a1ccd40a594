"""The training evaluation callback scores with the report's measures when it knows the grid."""

from __future__ import annotations

import pytest
import torch

import climgen
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.train.callbacks import SpectralEvalCallback


def _fields(da):
    return torch.as_tensor(da.values)[:, None]  # (n, 1, lat ascending, lon)


def test_callback_scores_equal_the_reports_spectrum_and_area_weighted_w1():
    pytest.importorskip("torch_harmonics")
    ref = grf_dataarray(6, 32, 64, kind="latlon", seed=0, name="tas")  # global, cell-centred
    gen = 1.3 * grf_dataarray(6, 32, 64, kind="latlon", seed=1, name="tas")
    report = climgen.evaluate(gen, ref, progress=False).to_dict()
    distances = report["variables"]["tas"]["distances"]
    # `like` in any orientation: north → south here, the tensors are south → north.
    like = ref.isel(lat=slice(None, None, -1))
    scores = SpectralEvalCallback(_fields(ref), like=like, best_by=None).scores(_fields(gen))
    assert scores["lsd"] == pytest.approx(distances["spectrum_lsd"]["value"], rel=1e-9)
    assert scores["w1"] == pytest.approx(distances["wasserstein1"]["value"], rel=1e-9)
    # Without a grid: the planar ring spectrum and unweighted values, other numbers.
    plain = SpectralEvalCallback(_fields(ref), best_by=None).scores(_fields(gen))
    assert plain["w1"] != pytest.approx(scores["w1"], rel=1e-3)


def test_callback_refuses_fields_off_the_grid():
    ref = grf_dataarray(2, 16, 32, kind="latlon", seed=0)
    cb = SpectralEvalCallback(torch.zeros(2, 1, 8, 8), like=ref, best_by=None)
    with pytest.raises(ClimgenInputError, match="shape"):
        cb.scores(torch.zeros(2, 1, 8, 8))


def test_callback_computes_the_reference_spectrum_once_and_scores_alike(monkeypatch):
    import climgen.metrics as metrics

    ref = grf_dataarray(4, 16, 32, slope=-3.0, seed=0, name="b")
    gen = grf_dataarray(4, 16, 32, slope=-2.0, seed=1, name="b")
    calls = []
    real = metrics.rapsd
    monkeypatch.setattr(metrics, "rapsd", lambda x, *a, **k: calls.append(x) or real(x, *a, **k))
    cb = SpectralEvalCallback(_fields(ref), best_by=None)
    first, second = cb.scores(_fields(gen)), cb.scores(_fields(gen))
    assert first == second and first["lsd"] > 0
    ref_calls = [x for x in calls if torch.equal(x, cb.reference)]
    assert len(ref_calls) == 1 and len(calls) == 3  # the reference once, the samples twice
