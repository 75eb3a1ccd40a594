"""tiled_fill: a fully convolutional partial-conv net filled tile by tile with a halo ≥ its
receptive radius equals the untiled fill; a smaller halo does not. The strided partial-conv
U-Net too, with tiles aligned to its 2^levels (noise of the CRPS net included), and through
``Infiller.fill(tile_size=...)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.families.infill import PartialConvInfiller
from climgen.nn.partialconv import PartialConv2d
from climgen.tasks.fill.infiller import Infiller
from climgen.tasks.fill.masks import blob_masks
from climgen.tasks.fill.tiled import tiled_fill, tiled_unet_infill

KERNELS = (5, 3, 3)
RADIUS = sum(k // 2 for k in KERNELS)  # receptive radius of the stride-1 stack: 4 cells


class _PartialConvStack(nn.Module):
    """Stride-1 partial convolutions: translation equivariant, receptive radius RADIUS."""

    def __init__(self, channels: int, periodic: tuple[bool, bool]):
        super().__init__()
        widths = (channels, 6, 6, channels)
        self.convs = nn.ModuleList(
            PartialConv2d(a, b, k, periodic=periodic)
            for a, b, k in zip(widths[:-1], widths[1:], KERNELS)
        )

    def forward(self, x, mask):
        h, m = x, mask
        for i, conv in enumerate(self.convs):
            h, m = conv(h, m)
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h


def _case(periodic, seed=0):
    torch.manual_seed(seed)
    net = _PartialConvStack(2, periodic).double().eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 24, 40, generator=g, dtype=torch.float64)
    mask = (torch.rand(3, 1, 24, 40, generator=g) > 0.6).double()
    x = torch.where(mask > 0, x, torch.full_like(x, float("nan")))  # hidden: never read
    with torch.no_grad():
        whole = torch.where(mask.expand_as(x) > 0, x, net(x, mask))
    return net, x, mask, whole


@pytest.mark.parametrize("periodic", [(False, True), (False, False)])
def test_tiled_fill_with_halo_at_least_the_receptive_radius_equals_the_untiled_fill(periodic):
    net, x, mask, whole = _case(periodic)
    with torch.no_grad():
        tiled = tiled_fill(net, x, mask, tile=8, halo=RADIUS, periodic=periodic)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    torch.testing.assert_close(tiled, whole, rtol=1e-12, atol=1e-12)
    assert torch.equal(tiled[mask.expand_as(x) > 0], x[mask.expand_as(x) > 0])


def test_a_halo_below_the_receptive_radius_shows_seams():
    net, x, mask, whole = _case((False, True), seed=1)
    with torch.no_grad():
        tiled = tiled_fill(net, x, mask, tile=8, halo=1, overlap=1)
    assert (tiled - whole).abs().max() > 1e-3


def test_mismatched_mask_is_refused():
    net, x, mask, _ = _case((False, True))
    with pytest.raises(ClimgenInputError, match="same grid"):
        tiled_fill(net, x, mask[..., :-1], tile=8, halo=RADIUS)


# -- the partial-conv U-Net (strided: equivariant to shifts by 2^levels only) ------------------


def _unet(stochastic: bool, seed=0):
    torch.manual_seed(seed)
    family = PartialConvInfiller(
        1,
        (32, 64),
        cond_channels=1,
        base_channels=4,
        num_levels=3,
        reconstruction="crps" if stochastic else "l1",
    )
    return family.double().eval()


def test_unet_receptive_radius_bounds_the_reach_of_one_input_cell():
    net = _unet(False).net
    x = torch.randn(1, 2, 96, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = torch.ones_like(x)
    with torch.no_grad():
        base = net(x, m, any_shape=True)[0]
        reach = 0
        for i, j in ((48, 64), (49, 65), (47, 63)):
            x2 = x.clone()
            x2[0, 0, i, j] += 1.0
            rows, cols = torch.nonzero((net(x2, m, any_shape=True)[0] - base)[0, 0], as_tuple=True)
            reach = max(reach, (rows - i).abs().max().item(), (cols - j).abs().max().item())
    assert net.align == 8
    assert reach <= net.receptive_radius < 2 * reach  # a bound, and not a loose one


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("shape", [(48, 96), (41, 96)])  # odd rows; W a multiple of align
def test_tiled_unet_infill_equals_the_whole_field_fill_noise_included(stochastic, shape):
    family = _unet(stochastic)
    g = torch.Generator().manual_seed(1)
    x, c = (torch.randn(2, 1, *shape, dtype=torch.float64, generator=g) for _ in range(2))
    m, cm = ((torch.rand(2, 1, *shape, generator=g) > p).double() for p in (0.5, 0.3))
    x = torch.where(m > 0, x, torch.full_like(x, float("nan")))  # hidden: never read
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        whole = torch.where(m > 0, x, family.predict(x, m, c, cm, generator=g, any_shape=True))
        tiled = tiled_unet_infill(
            family, x, m, c, cm, tile=16, generator=torch.Generator().manual_seed(5)
        )
        short = tiled_unet_infill(
            family, x, m, c, cm, tile=16, halo=8, generator=torch.Generator().manual_seed(5)
        )
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    torch.testing.assert_close(tiled, whole, rtol=1e-12, atol=1e-12)
    assert torch.equal(tiled[m > 0], x[m > 0])
    assert (short - whole).abs().max() > 1e-5  # a halo below the receptive radius: seams


def _series(n=6, ny=16, nx=48, seed=0):
    lat = -90 + 180 / ny * (np.arange(ny) + 0.5)
    lon = 360 / nx * (np.arange(nx) + 0.5)
    values = grf_dataarray(n, ny, nx, kind="latlon", seed=seed, name="tas").values
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": np.arange(n), "lat": lat, "lon": lon},
        name="tas",
        attrs={"units": "K"},
    )


@pytest.mark.parametrize("reconstruction", ["l1", "crps"])
def test_infiller_tiled_fill_equals_untiled_and_keeps_observed_cells(reconstruction, tmp_path):
    torch.set_num_threads(1)
    da = _series()
    net = Infiller(
        "partialconv",
        base_channels=4,
        num_levels=1,
        first_kernel=3,
        context=1,
        reconstruction=reconstruction,
    )
    net.fit(da, run_dir=tmp_path, max_steps=2, batch_size=2, progress=False)
    radius = net.family.net.receptive_radius
    assert radius == 1 + 2 + 2
    mask = blob_masks(1, (16, 48), coverage=0.5, seed=3)[0] > 0
    obs = da.isel(time=slice(0, 3)).where(mask)
    whole = net.fill(obs, members=3, seed=2, tile_size=0)
    tiled = net.fill(obs, members=3, seed=2, tile_size=6)  # halo: the radius, rounded to 6
    np.testing.assert_allclose(tiled.tas.values, whole.tas.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(tiled.tas.values[:, mask], obs.values[:, mask])
    if reconstruction == "crps":
        np.testing.assert_allclose(tiled.tas_members, whole.tas_members, rtol=1e-5, atol=1e-5)
    seams = net.fill(obs, members=3, seed=2, tile_size=6, tile_halo=0).tas.values
    assert np.abs(seams - whole.tas.values).max() > 1e-4
    if reconstruction == "l1":  # the command line passes the tiling through
        from climgen.cli import main

        obs.to_netcdf(tmp_path / "obs.nc")
        args = ["fill", str(tmp_path), str(tmp_path / "obs.nc"), "-o", str(tmp_path / "f.nc")]
        assert main([*args, "--tile-size", "6", "--quiet"]) == 0
        cli = xr.load_dataset(tmp_path / "f.nc").tas.values
        np.testing.assert_allclose(cli, whole.tas.values, rtol=1e-5, atol=1e-5)
        assert main([*args, "--tile-size", "6", "--tile-halo", "-1", "--overwrite"]) == 2


def test_auto_tiling_follows_the_available_memory(monkeypatch, caplog):
    import types

    import psutil

    from climgen.tasks.fill.networks import unet_tiling

    inf = types.SimpleNamespace(family=_unet(False))  # 4 base channels, radius 27
    radius = inf.family.net.receptive_radius

    def available(n_bytes):
        memory = types.SimpleNamespace(available=n_bytes)
        monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)

    per_cell = 32 * 4 * 4  # maps × base channels × float32 bytes
    available(4 * per_cell * 200 * 400 + 1)
    assert unet_tiling(inf, (200, 400), 1) is None  # a quarter of memory holds the field
    assert unet_tiling(inf, (200, 400), 1, tile_size=0) is None
    assert unet_tiling(inf, (200, 400), 1, tile_size=50, tile_halo=3) == (50, 3)
    available(4 * per_cell * 200**2)  # a 200-cell extended tile fits
    assert unet_tiling(inf, (400, 800), 1) == (200 - 2 * radius, radius)  # exact halo
    available(4 * per_cell * 60**2)  # 60 cells: the exact halo leaves a core < the halo
    with caplog.at_level("WARNING"):
        assert unet_tiling(inf, (400, 800), 1) == (30, 15)
    assert "receptive radius 27" in caplog.text
