"""The gap-filling report page: written, with its table and figures, text escaped."""

from __future__ import annotations

import numpy as np
import pytest

from climgen.errors import ClimgenInputError
from climgen.report.fill_page import write_fill_page, zonal_power

GAP = ("spectrum", "area_fraction", "boundary_length", "euler_characteristic")


def _fields(t=3, h=12, w=24, seed=0):
    rng = np.random.default_rng(seed)
    lat = -90 + 180 / h * (np.arange(h) + 0.5)
    lon = 360 / w * (np.arange(w) + 0.5)
    truth = rng.standard_normal((t, h, w))
    observed = np.where(rng.random((t, h, w)) < 0.4, truth, np.nan)
    return truth, observed, lat, lon


def test_page_has_table_figures_and_escaped_text(tmp_path):
    truth, observed, lat, lon = _fields()
    hidden = np.isnan(observed)
    methods = {
        "<b>evil & co</b>": {
            "mean": np.where(hidden, 0.0, truth),
            "spread": np.where(hidden, 1.0, 0.0),
            "scores": {"n_hidden": int(hidden.sum()), "rmse": 1.0, "crps": 0.6, "bias": 0.01},
        },
        "nearest": {
            "mean": np.where(hidden, 0.5, truth),
            "spread": None,
            "scores": {"rmse": 1.2, "gaps": {"mean": dict.fromkeys(GAP, 7.5)}},
        },
    }
    page = write_fill_page(
        tmp_path / "rep",
        observed=observed,
        truth=truth,
        methods=methods,
        lat=lat,
        lon=lon,
        name="tas",
        units="K",
        title="fill <script>alert(1)</script>",
        provenance={"source": "<x>"},
    )
    html = page.read_text()
    assert page.name == "index.html"
    for png in ("fill_maps.png", "fill_error_by_latitude.png", "fill_spectra.png"):
        assert (page.parent / png).stat().st_size > 1000
        assert f'src="{png}"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>evil" not in html and "&lt;b&gt;evil &amp; co&lt;/b&gt;" in html
    assert "&lt;x&gt;" in html
    # the score table: header and one row per method, the lowest RMSE highlighted
    assert "<th>RMSE</th>" in html and "<th>spread/skill</th>" in html
    assert html.count("<tr") >= 3
    assert "None" not in html  # scores a method lacks are shown as "–"
    assert "background:#d8f0d2" in html
    # the structure inside the gaps: a table for the one method that has it
    assert "Structure inside the gaps" in html and "<th>Euler characteristic V2</th>" in html


def test_page_without_truth_and_bad_shapes(tmp_path):
    truth, observed, lat, lon = _fields()
    page = write_fill_page(
        tmp_path, observed=observed, methods={"m": {"mean": truth}}, lat=lat, lon=lon
    )
    assert (tmp_path / "fill_maps.png").exists() and not (
        tmp_path / "fill_error_by_latitude.png"
    ).exists()
    assert "index.html" == page.name
    with pytest.raises(ClimgenInputError, match="shape"):
        write_fill_page(
            tmp_path, observed=observed, methods={"m": {"mean": truth[:2]}}, lat=lat, lon=lon
        )
    with pytest.raises(ClimgenInputError, match="at least one"):
        write_fill_page(tmp_path, observed=observed, methods={}, lat=lat, lon=lon)


def test_zonal_power_of_a_single_wave():
    h, w = 8, 32
    lat = -90 + 180 / h * (np.arange(h) + 0.5)
    lon = np.arange(w) * 2 * np.pi / w
    field = np.broadcast_to(np.cos(3 * lon), (2, h, w))
    power = zonal_power(field, lat)
    assert np.argmax(power) == 3
    assert power[3] > 1e6 * np.delete(power, 3).max()
