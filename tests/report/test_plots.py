"""Figures and the HTML page: files are written, PNGs are valid, text is escaped."""

from __future__ import annotations

import numpy as np
import pytest

from climgen.report import plots
from climgen.report.html import Figure, render_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, tmp_path):
    assert path.parent == tmp_path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000  # a drawn figure, not an empty canvas


@pytest.fixture(scope="module")
def fields():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 12, 20)), 1.5 * rng.standard_normal((4, 12, 20))


def test_sample_maps_planar(tmp_path, fields):
    gen, ref = fields
    path = plots.plot_sample_maps(gen, ref, tmp_path / "maps.png", name="w", units="m s-1")
    _assert_png(path, tmp_path)


def test_sample_maps_latlon_without_or_with_cartopy(tmp_path, fields):
    gen, ref = fields
    lat = np.linspace(-82.5, 82.5, 12)
    lon = np.arange(20) * 18.0
    path = plots.plot_sample_maps(
        gen, ref, tmp_path / "maps.png", y=lat, x=lon, latlon=True, n_maps=2
    )
    _assert_png(path, tmp_path)


def test_spectra_with_noise_band(tmp_path):
    k = np.arange(0, 30) / 60.0
    p_ref = np.zeros_like(k)
    p_ref[1:] = k[1:] ** -3.0
    halves = (p_ref * 1.1, p_ref / 1.1)
    path = plots.plot_spectra(
        k, 2 * p_ref, p_ref, tmp_path / "spec.png", reference_halves=halves, k_label="k [1/m]"
    )
    _assert_png(path, tmp_path)


def test_pdfs_log_axis_with_weights(tmp_path, fields):
    gen, ref = fields
    weights = np.cos(np.deg2rad(np.linspace(-80, 80, 12)))[:, None] * np.ones(20)
    path = plots.plot_pdfs(gen, ref, tmp_path / "pdf.png", weights=weights, units="K")
    _assert_png(path, tmp_path)


def test_structure_functions_and_flatness(tmp_path):
    lags = np.arange(1, 11, dtype=float)
    orders = (1, 2, 3, 4, 5, 6)
    s = np.array([lags ** (p / 3) for p in orders])
    path = plots.plot_structure_functions(
        lags,
        1.2 * s,
        s,
        tmp_path / "sf.png",
        orders=orders,
        flatness_generated=np.full(10, 3.5),
        flatness_reference=np.full(10, 3.0),
    )
    _assert_png(path, tmp_path)


def test_creates_missing_folders(tmp_path, fields):
    gen, ref = fields
    path = plots.plot_sample_maps(gen, ref, tmp_path / "a" / "b" / "maps.png")
    assert path.exists()


def test_html_is_self_contained_and_escaped(tmp_path):
    report = {
        "matches": False,
        "factor": 2.0,
        "provenance": {"generated": "<gen>.nc", "variables": ["a&b"]},
        "variables": {
            "<script>alert(1)</script>": {
                "units": "K",
                "long_name": "x < y",
                "grid": "planar",
                "shape": [2, 3],
                "matches": False,
                "distances": {
                    "ks": {
                        "value": 0.5,
                        "floor": 0.01,
                        "ratio": 50.0,
                        "status": "differs",
                        "verdict": "differs (50× the noise floor)",
                        "description": "KS",
                    },
                    "w1": {
                        "value": None,
                        "floor": 0.0,
                        "ratio": None,
                        "status": "matches",
                        "verdict": "matches",
                        "description": "",
                    },
                },
                "moments": {"generated": {"mean": 0.0}, "reference": {"mean": 1.0}},
            }
        },
    }
    figures = {"<script>alert(1)</script>": [Figure("Spectrum", "s.png", "read <this>")]}
    path = render_html(report, figures, tmp_path / "index.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "&lt;script&gt;" in text
    assert "&lt;gen&gt;.nc" in text and "a&amp;b" in text and "read &lt;this&gt;" in text
    assert 'src="s.png"' in text
    assert "<style>" in text and "http" not in text
    assert "#f6c9c4" in text  # the red of "differs"
