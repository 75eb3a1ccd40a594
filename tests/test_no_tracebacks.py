"""Issue 24 item 3: inputs that ended in a Python traceback now give one error naming the
option, the checkpoint or what to change."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.cli import main
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("value", [-1, 0, float("inf"), "abc", None, [1e-4]])
@pytest.mark.parametrize("option", ["lr_g", "lr_d"])
def test_bad_learning_rate_names_the_option(option, value):
    from climgen.families.base import build_family

    with pytest.raises(ClimgenInputError, match=f"'{option}'"):
        build_family(
            "gan", channels=1, shape=(8, 8), latent_dim=2, base_channels=2, **{option: value}
        )


def test_numeric_text_learning_rate_from_yaml_is_accepted():
    from climgen.families.base import build_family

    family = build_family(
        "gan", channels=1, shape=(8, 8), latent_dim=2, base_channels=2, lr_g="1e-4"
    )
    assert family.config["lr_g"] == 1e-4


@pytest.mark.parametrize("value", ["-1", "abc"])
def test_recipe_with_a_bad_learning_rate_exits_2(tmp_path, capsys, value):
    write_fields(grf_dataarray(10, 8, 8, seed=1, name="psi").to_dataset(), tmp_path / "d.nc")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "task: emulate\ndata: {paths: d.nc, variables: [psi]}\n"
        f"family: {{name: gan, options: {{latent_dim: 2, base_channels: 2, lr_g: {value}}}}}\n"
        "train: {max_steps: 1, batch_size: 4}\nrun_dir: run\n"
    )
    assert main(["train", str(recipe), "-q"]) == 2
    err = capsys.readouterr().err
    assert "lr_g" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_resume_with_another_architecture_names_the_option(tmp_path):
    from climgen.tasks.emulate.emulator import Emulator

    data = grf_dataarray(8, 8, 8, seed=2, name="psi")
    kw = dict(run_dir=tmp_path, batch_size=4, progress=False)
    Emulator("vae", latent_dim=2, base_channels=2).fit(data, max_steps=1, **kw)
    with pytest.raises(ClimgenInputError, match=r"latent_dim: 2 in the checkpoint, 3 now"):
        Emulator("vae", latent_dim=3, base_channels=2).fit(data, max_steps=2, resume=True, **kw)


def test_fill_report_without_mask_finds_the_filled_variable(tmp_path, capsys):
    obs = grf_dataarray(2, 8, 16, kind="latlon", seed=3, name="tas", units="K")
    obs = obs.where(np.arange(16) % 4 != 0)
    write_fields(obs.to_dataset(), tmp_path / "obs.nc")
    out, report = tmp_path / "f.nc", tmp_path / "report"
    argv = ["fill", "nearest", str(tmp_path / "obs.nc"), "-o", str(out), "--report", str(report)]
    assert main(argv) == 0, capsys.readouterr().err
    assert (report / "index.html").exists()
    assert set(xr.open_dataset(out).data_vars) >= {"tas", "tas_spread"}


@pytest.mark.parametrize("zonal", [False, True])
def test_space_time_covariance_of_a_window_is_positive_semidefinite(zonal):
    """The (2k+1)·N window covariance from few rough fields has no negative eigenvalue
    (beyond round-off): the lagged covariances share the divisor T (biased estimator)."""
    from climgen.tasks.fill.oi import GaussianFieldModel

    x = np.random.default_rng(0).standard_normal((10, 6, 12))
    model = GaussianFieldModel.fit(x, context=1, nugget=1e-8, zonal=zonal)
    cells = np.arange(72)
    window = np.block([[model.block(b - a, cells, cells) for b in range(3)] for a in range(3)])
    eig = np.linalg.eigvalsh((window + window.T) / 2)
    assert eig.min() > -1e-10 * eig.max()


def test_space_time_oi_on_few_rough_fields_fills_without_linalg_error():
    from climgen.tasks.fill.infiller import Infiller

    rng = np.random.default_rng(1)
    da = grf_dataarray(12, 12, 24, kind="latlon", slope=0.0, seed=4, name="tas")
    infiller = Infiller("optimal-interpolation", context=1).fit(da)
    obs = da.isel(time=slice(0, 3)).where(rng.random((3, 12, 24)) > 0.5)
    out = infiller.fill(obs, members=2)
    assert np.isfinite(out["tas"]).all()


@pytest.mark.parametrize(
    "family, option, value, least",
    [
        ("vae", "base_channels", 0, 1),  # built a zero-channel network, failing later in torch
        ("vae", "latent_dim", 0, 1),
        ("gan", "base_channels", 0, 1),
        ("superres", "n_blocks", 0, 1),
        ("diffusion", "num_steps", 1, 2),
        ("pixelcnn", "bins", 1, 2),
        ("flow", "hidden_channels", 0, 1),
        ("vae", "kl_warmup_steps", -1, 0),  # a count that may be 0
    ],
)
def test_integer_option_below_its_minimum_names_the_option(family, option, value, least):
    from climgen.families.base import build_family

    with pytest.raises(ClimgenInputError, match=rf"'{option}' must be an integer ≥ {least}"):
        build_family(family, channels=1, shape=(8, 8), **{option: value})
    build_family(family, channels=1, shape=(8, 8), **{option: max(least, 1)})  # the least works


def test_recipe_with_zero_base_channels_exits_2(tmp_path, capsys):
    write_fields(grf_dataarray(10, 8, 8, seed=1, name="psi").to_dataset(), tmp_path / "d.nc")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "task: emulate\ndata: {paths: d.nc, variables: [psi]}\n"
        "family: {name: vae, options: {latent_dim: 2, base_channels: 0}}\n"
        "train: {max_steps: 1, batch_size: 4}\nrun_dir: run\n"
    )
    assert main(["train", str(recipe), "-q"]) == 2
    err = capsys.readouterr().err
    assert "'base_channels' must be an integer ≥ 1" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
