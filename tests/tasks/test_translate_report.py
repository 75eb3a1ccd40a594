"""Translator.reconstruct (cycle), the spectral term of CycleGAN, and Translator.report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError
from climgen.families.gan.constraints import spectral_loss
from climgen.families.translation import AugmentedCycleGAN, CycleGAN
from climgen.tasks.translate.translator import Translator

TINY = dict(base_channels=8, depth=1, disc_channels=8, disc_layers=1)
FIT = dict(batch_size=8, progress=False, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planar(values, units="K"):
    n, ny, nx = values.shape
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={
            "time": np.arange(n),
            "y": ("y", np.arange(ny, dtype=float), {"axis": "Y", "periodic": "true"}),
            "x": ("x", np.arange(nx, dtype=float), {"axis": "X", "periodic": "true"}),
        },
        name="t",
        attrs={"units": units, "long_name": "test field"},
    ).to_dataset()


def test_untrained_cycle_families_reconstruct_their_input():
    """Zero-initialised generator heads: G_BA(G_AB(a)) = a before training (cycle error 0)."""
    a = torch.randn(3, 1, 8, 16)
    fam = CycleGAN(1, (8, 16), (False, True), **TINY)
    torch.testing.assert_close(fam.reconstruct(a), a)
    aug = AugmentedCycleGAN(1, (8, 16), (False, True), **TINY, latent_dim=2)
    torch.testing.assert_close(aug.reconstruct(a, torch.Generator().manual_seed(0)), a)


@pytest.mark.slow
def test_spectral_term_is_logged_and_pulls_the_spectrum_toward_b():
    """λ_spec > 0 adds the log-spectral term to the generator loss; 20 steps with it leave a
    smaller spectral gap between G_AB(a) and B than the same 20 steps (same seed) without.

    At seeds 0, 1, 2 the gap after 20 steps was 0.11 with the term and 0.92 without (0.92 at
    the start); 0.05–0.07 with it after 60 steps.
    """
    n = 16
    a = torch.tensor(make_grf(64, n, n, slope=-4, seed=1), dtype=torch.float32)[:, None]
    b = torch.tensor(make_grf(64, n, n, slope=-2, seed=2), dtype=torch.float32)[:, None]
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()

    def gap_after(weight):
        torch.manual_seed(0)
        fam = CycleGAN(
            1,
            (n, n),
            (True, True),
            **TINY,
            spectral_weight=weight,
            lr=2e-3,
            cycle_weight=1.0,
            identity_weight=0.0,
        )
        opts = {
            k: torch.optim.Adam(s.params, lr=s.lr, betas=s.betas)
            for k, s in fam.optimizer_groups().items()
        }

        class Ctx:
            device = torch.device("cpu")

            def step(self, loss, group):
                opts[group].zero_grad(set_to_none=True)
                loss.backward()
                opts[group].step()
                opts[group].zero_grad(set_to_none=True)

            def autocast(self):
                import contextlib

                return contextlib.nullcontext()

        g = torch.Generator().manual_seed(0)
        for step in range(20):
            i, j = (
                torch.randint(0, 64, (16,), generator=g),
                torch.randint(0, 64, (16,), generator=g),
            )
            logs = fam.training_step({"x": a[i], "y": b[j]}, step, Ctx())
        with torch.no_grad():
            return logs, float(spectral_loss(fam.translate(a), b))

    logs, with_term = gap_after(5.0)
    assert "spectral" in logs and torch.isfinite(logs["spectral"])
    _, without = gap_after(0.0)
    start = float(spectral_loss(a, b))
    assert with_term < without and with_term < start, (start, without, with_term)


@pytest.fixture(scope="module")
def domains():
    a = _planar(make_grf(40, 8, 16, slope=-3, seed=4).astype(np.float32) * 2 + 280.0)
    b = _planar(make_grf(40, 8, 16, slope=-2, seed=5).astype(np.float32) + 285.0)
    return a, b


def test_translator_reconstruct_in_a_units_and_rejects_other_methods(domains, tmp_path):
    a, b = domains
    tr = Translator("cyclegan", **TINY).fit(a, b, run_dir=tmp_path, max_steps=3, **FIT)
    rec = tr.reconstruct(a.isel(time=slice(0, 5)))
    assert rec["t"].shape == (5, 8, 16)
    assert rec["t"].attrs["units"] == "K"
    assert "reconstruct" in rec.attrs["history"]
    # After 3 small steps the cycle is still close to the identity, in A's units (≈ 280).
    assert abs(float(rec["t"].mean()) - float(a["t"][:5].mean())) < 0.5
    qm = Translator("quantile-mapping").fit(a, b)
    with pytest.raises(ClimgenInputError, match="no inverse generator"):
        qm.reconstruct(a)


def test_translator_report_page_with_baseline_and_cycle(domains, tmp_path):
    a, b = domains
    tr = Translator("cyclegan", **TINY).fit(
        a.isel(time=slice(0, 30)),
        b.isel(time=slice(0, 30)),
        run_dir=tmp_path / "run",
        max_steps=3,
        **FIT,
    )
    page = tr.report(
        a.isel(time=slice(30, None)),
        b.isel(time=slice(30, None)),
        tmp_path / "report",
        fit_a=a.isel(time=slice(0, 30)),
        fit_b=b.isel(time=slice(0, 30)),
    )
    html = page.read_text()
    assert "training fields of A and B" in html
    scores = json.loads((tmp_path / "report" / "scores.json").read_text())
    assert scores["baseline"] == "quantile mapping"
    assert set(scores["scores"]) == {
        "A untranslated (identity)",
        "quantile mapping",
        "translated A (cyclegan)",
    }
    assert scores["cycle_error"]["t"] < 0.2
    assert (tmp_path / "report" / "t_cycle.png").exists()
    with pytest.raises(ClimgenInputError, match="fit_a and fit_b"):
        tr.report(a, b, tmp_path / "r2", fit_a=a)


def test_translate_cli_with_report(domains, tmp_path, capsys):
    from climgen.cli import main

    a, b = domains
    a.to_netcdf(tmp_path / "a.nc")
    b.to_netcdf(tmp_path / "b.nc")
    Translator("quantile-mapping", n_quantiles=10).fit(a, b, run_dir=tmp_path / "qm")
    args = [
        "translate",
        str(tmp_path / "qm"),
        str(tmp_path / "a.nc"),
        "-o",
        str(tmp_path / "out.nc"),
    ]
    assert main([*args, "--report", str(tmp_path / "rep")]) == 2
    assert "--reference" in capsys.readouterr().err
    assert (
        main([*args, "--report", str(tmp_path / "rep"), "--reference", str(tmp_path / "b.nc")]) == 0
    )
    assert (tmp_path / "rep" / "index.html").exists()
    out = xr.load_dataset(tmp_path / "out.nc")
    assert out["t"].shape == a["t"].shape


def test_noise_channels_break_a_half_domain_symmetry_that_convolutions_keep():
    """A periodic conv net is shift-equivariant: a field repeating every W/2 stays so (no odd
    x-harmonics can appear); white-noise input channels break it. Seeded noise repeats."""
    from climgen.families.translation import UNetGenerator

    torch.manual_seed(0)
    half = torch.randn(2, 1, 8, 8)
    x = torch.cat([half, half], -1)  # invariant under a shift by 8 of 16 columns
    for noise in (0, 2):
        g = UNetGenerator(1, (False, True), base_channels=8, depth=2, noise_channels=noise)
        torch.nn.init.normal_(g.head.weight, std=0.1)  # not the identity start
        with torch.no_grad():
            y = g(x, generator=torch.Generator().manual_seed(1))
            again = g(x, generator=torch.Generator().manual_seed(1))
        asym = float((y - y.roll(8, -1)).abs().max())
        if noise:
            assert asym > 1e-3
            torch.testing.assert_close(y, again)
        else:
            assert asym < 1e-5
    with pytest.raises(ClimgenInputError, match="noise_channels"):
        UNetGenerator(1, noise_channels=-1)


def test_coordinate_channels_break_shift_equivariance_deterministically():
    """Position channels: sin/cos on a periodic axis (continuous across the seam), a −1…1
    ramp on a bounded one; a generator and a critic fed them are no longer shift-equivariant,
    and the output is deterministic (unlike noise channels)."""
    from climgen.families.translation import PatchDiscriminator, UNetGenerator
    from climgen.nn import coordinate_channels

    x = torch.zeros(2, 1, 6, 16)
    c = coordinate_channels(x, (False, True))[:, 1:]  # ramp(y), sin(x), cos(x)
    assert c.shape == (2, 3, 6, 16)
    torch.testing.assert_close(c[0, 0, :, 0], torch.linspace(-1, 1, 6))
    torch.testing.assert_close(c[0, 1] ** 2 + c[0, 2] ** 2, torch.ones(6, 16))
    step = torch.tensor(2 * np.pi / 16)  # the seam: column 15 → 0 is one ordinary step
    torch.testing.assert_close(
        c[0, 2, 0, 0], torch.cos(torch.atan2(c[0, 1, 0, 15], c[0, 2, 0, 15]) + step)
    )
    torch.manual_seed(0)
    half = torch.randn(2, 1, 8, 8)
    x = torch.cat([half, half], -1)  # invariant under a shift by 8 of 16 columns
    for coords in (False, True):
        g = UNetGenerator(1, (False, True), base_channels=8, depth=2, coord_channels=coords)
        d = PatchDiscriminator(1, (False, True), base_channels=8, n_layers=1, coord_channels=coords)
        torch.nn.init.normal_(g.head.weight, std=0.1)
        with torch.no_grad():
            y, score = g(x), d(x)
        asym = float((y - y.roll(8, -1)).abs().max())
        score_asym = float((score - score.roll(4, -1)).abs().max())  # critic: stride 2
        assert (asym > 1e-3 and score_asym > 1e-4) if coords else (asym < 1e-5)
        torch.testing.assert_close(g(x), y)
    family = CycleGAN(1, (8, 16), coord_channels=True)
    assert family.config["coord_channels"] is True and family.g_ab.coord_channels
