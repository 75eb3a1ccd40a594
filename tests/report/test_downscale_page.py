"""The downscaling report page: spectral score, grid matching, figures and the score table."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.data.coarsen import coarsen
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.report.downscale_page import on_truth_grid, write_downscale_page


def test_on_truth_grid_matches_by_position_and_rejects_other_grids():
    truth = grf_dataarray(2, 8, 8, kind="latlon", seed=0, name="tas")
    shifted = truth.assign_coords(lat=truth.lat + 0.3)  # e.g. latitudes from cell bounds
    out = on_truth_grid(truth, shifted.expand_dims(member=2))
    np.testing.assert_array_equal(out.lat.values, truth.lat.values)
    assert out.dims == ("member", "time", "lat", "lon")
    with pytest.raises(ClimgenInputError, match="not on the truth's fine grid"):
        on_truth_grid(truth, truth.isel(lat=slice(0, 4)))


def test_page_has_figures_table_and_escaped_names(tmp_path):
    truth = grf_dataarray(3, 16, 32, seed=2, name="b", units="K")
    coarse = coarsen(truth, 4)
    nearest = truth.copy(data=np.repeat(np.repeat(coarse.values, 4, 1), 4, 2))
    ens = xr.concat([truth + 0.1 * i for i in range(2)], dim="member")
    outputs = {"nearest": nearest, "<perfect>": truth, "ensemble": ens}
    scores = {
        "nearest": {"rmse": 0.5, "rmse_ratio": 1.0, "spectral_high_k": 2.0, "conservation": 0.0},
        "<perfect>": {"rmse": 0.0, "rmse_ratio": 0.0, "spectral_high_k": 0.0, "conservation": 0.0},
        "ensemble": {"rmse": 0.1, "spectral_high_k": 0.1, "conservation": 0.1, "crps": 0.05},
    }
    page = write_downscale_page(
        tmp_path / "rep" / "index.html",
        truth=truth,
        coarse=coarse,
        outputs=outputs,
        scores=scores,
        factor=4,
        baseline="nearest",
        provenance={"run": "test"},
    )
    html = page.read_text()
    for png in ("maps.png", "spectra.png", "tails.png"):
        assert (page.parent / png).stat().st_size > 1000
        assert f'src="{png}"' in html
    assert "&lt;perfect&gt;" in html and "<perfect>" not in html
    assert "CRPS" in html and "conservation error" in html
    assert "Lowest RMSE: &lt;perfect&gt;" in html
    # The best-RMSE row is highlighted; only one row is.
    assert html.count("background:#d8f0d2") == 1
    assert "Provenance" in html
