"""Translation report page: scores against B with floors, cycle error, verdict, the page itself."""

from __future__ import annotations

import json

import pytest
import torch

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.report.translate_page import (
    IDENTITY,
    SCORE_DISTANCES,
    cycle_errors,
    score_rows,
    score_translations,
    verdict_vs_baseline,
    write_translate_page,
)

N, NY, NX = 24, 16, 32


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grf(seed, slope, n=N, scale=1.0, shift=0.0):
    da = grf_dataarray(n, NY, NX, slope=slope, seed=seed, name="v", units="K")
    return (da * scale + shift).assign_attrs(units="K").to_dataset()


def test_scores_zero_for_b_itself_and_w1_of_a_shift():
    b = _grf(0, -2.0)
    shifted = b.copy(deep=True)
    shifted["v"] = b["v"] + 0.25
    rows = score_rows(score_translations({"same": b, "shifted": shifted}, b))
    same = rows["same"]["v"]
    assert set(same) == set(SCORE_DISTANCES)
    for key in SCORE_DISTANCES:
        assert same[key]["value"] == pytest.approx(0.0, abs=1e-9)
        assert same[key]["floor"] > 0  # two halves of B differ
    # W1 between a distribution and its shift by c is |c| (area weights are uniform here).
    assert rows["shifted"]["v"]["wasserstein1"]["value"] == pytest.approx(0.25, rel=1e-6)
    # A constant shift leaves spectra (mean removed) and covariance unchanged.
    assert rows["shifted"]["v"]["spectrum_lsd"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert rows["shifted"]["v"]["covariance_error"]["value"] == pytest.approx(0.0, abs=1e-6)


def test_cycle_error_zero_for_identity_and_offset_over_std():
    a = _grf(1, -3.0)
    assert cycle_errors(a, a, ["v"])["v"] == 0.0
    off = a.copy(deep=True)
    off["v"] = a["v"] + 0.5
    expected = 0.5 / float(a["v"].values.std())
    assert cycle_errors(a, off, ["v"])["v"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ClimgenInputError, match="cycle error"):
        cycle_errors(a, a.isel(time=slice(0, 3)), ["v"])


def test_verdict_vs_baseline_rules():
    def s(lsd, w1, cov, floor=0.01):
        d = {"value": 0.0, "floor": floor, "ratio": 0.0, "status": "matches"}
        return {
            "v": {
                "spectrum_lsd": dict(d, value=lsd),
                "wasserstein1": dict(d, value=w1),
                "covariance_error": dict(d, value=cov),
                "ks": dict(d),
            }
        }

    scores = {"net": s(0.1, 0.05, 0.2), "qm": s(0.5, 0.045, 0.3)}
    assert verdict_vs_baseline(scores, "net", "qm", "v") == {
        "spectra": True,
        "covariance": True,
        "marginals": True,  # 0.05 ≤ 1.2 × 0.045
    }
    scores["net"] = s(0.6, 0.5, 0.2)
    v = verdict_vs_baseline(scores, "net", "qm", "v")
    assert v == {"spectra": False, "covariance": True, "marginals": False}
    # Within factor × floor counts as matching the marginals, whatever the baseline's W1.
    scores["net"] = s(0.6, 0.5, 0.2, floor=0.3)
    assert verdict_vs_baseline(scores, "net", "qm", "v")["marginals"]


def test_page_with_a_perfect_translator_beats_a_pointwise_baseline(tmp_path):
    a = _grf(1, -3.5, shift=1.0)  # A: smoother than B and offset
    b = _grf(2, -2.0)
    perfect = _grf(3, -2.0)  # new draws of B's distribution: what a perfect translator gives
    # A pointwise affine map (what quantile mapping does for Gaussians): B's mean and std,
    # A's spatial structure.
    pointwise = a.copy(deep=True)
    va = a["v"].values
    pointwise["v"] = (a["v"] - va.mean()) / va.std() * b["v"].values.std() + b["v"].values.mean()
    rec = a.copy(deep=True)
    rec["v"] = a["v"] + 0.1
    page = write_translate_page(
        tmp_path / "report",
        a=a,
        b=b,
        translated=perfect,
        method="oracle <b>",
        baselines={"quantile mapping": pointwise},
        reconstructed=rec,
        provenance={"note": "test"},
    )
    html = page.read_text()
    assert page.name == "index.html"
    assert "oracle &lt;b&gt; beats quantile mapping" in html  # escaped, verdict positive
    for stem in ("v_pdf", "v_spectrum", "v_eofs", "v_maps", "v_cycle"):
        assert (tmp_path / "report" / f"{stem}.png").stat().st_size > 1000
        assert f"{stem}.png" in html
    scores = json.loads((tmp_path / "report" / "scores.json").read_text())
    assert set(scores["scores"]) == {IDENTITY, "quantile mapping", "translated A (oracle <b>)"}
    assert scores["verdict"]["v"] == {"spectra": True, "covariance": True, "marginals": True}
    assert scores["cycle_error"]["v"] == pytest.approx(0.1 / va.std(), rel=1e-6)
    ours = scores["scores"]["translated A (oracle <b>)"]["v"]
    ident = scores["scores"][IDENTITY]["v"]
    assert ours["spectrum_lsd"]["value"] < 0.5 * ident["spectrum_lsd"]["value"]
    assert "Cycle error" in html and "Provenance" in html


def test_page_rejects_a_variable_missing_from_b(tmp_path):
    a = _grf(1, -3.0)
    b = _grf(2, -2.0).rename({"v": "w"})
    with pytest.raises(ClimgenInputError, match="not found in the domain-B"):
        write_translate_page(tmp_path, a=a, b=b, translated=a, method="x")
