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
