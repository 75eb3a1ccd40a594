"""Downscaling: coarse fields → fine fields ×2 to ×8, with exact coarse means and ensembles.

``Downscaler(factor=4, method=...)`` offers, in one API (:func:`available_downscale_methods`):

- interpolation baselines ``"nearest"``, ``"bilinear"``, ``"bicubic"``, ``"lanczos"``
  (:mod:`climgen.tasks.downscale.interpolation`), which need no ``fit``;
- ``"regression"``: an EDSR-style network with pixel-shuffle up-sampling trained on an L1 (or
  L2) loss (:class:`climgen.families.superres.SuperResolution`);
- ``"srgan"``: the same generator with noise inputs, trained against a conditional critic with
  a loss of the GAN zoo, plus an optional spectral loss (Ledig et al. 2017; Stengel et al.
  2020); ``downscale(..., members=M)`` draws M stochastic fine fields;
- ``"diffusion"``: CorrDiff (Mardani et al. 2025): the regression net gives the mean μ(c),
  then an EDM diffusion model (:class:`climgen.families.diffusion.Diffusion`) of the
  residual r = (x − μ)/s, conditioned on μ (and the static fields), draws the members
  x = μ + s·r. Options: ``regression_options={...}``, ``diffusion_options={...}``.

``conserve=True`` (additive) or ``conserve="multiplicative"`` (non-negative fields) ends any
method with the conservation layer of :mod:`climgen.families.superres.conserve`: the
area-weighted (cos-lat on lat/lon grids) block means of the output equal the coarse input.

``calibrate_spectrum(ds_fine_train)`` fits a linear spectral gain g(k) = sqrt(P̄_fine(k) /
P̄_method(k)) on the method's outputs for coarsened training fields
(:class:`climgen.tasks.emulate.spectral_calibration.SpectralCalibration`); ``downscale`` then
applies it by default, *before* the conservation layer (the gain moves block means; the layer
restores them exactly).

``fit(ds_fine)`` makes the coarse inputs by area-weighted coarsening
(:func:`climgen.data.coarsen.coarsen_tensor`); ``fit(ds_coarse, ds_fine)`` trains on paired
data. Static high-resolution inputs (topography) are given as ``static=`` on the fine grid.
``downscale(ds_coarse)`` returns a Dataset on the fine grid: for trained models the training
grid's coordinates, for the baselines coordinates computed from the coarse cell bounds
(:func:`~climgen.tasks.downscale.interpolation.refine_coordinate`); variable and global attributes
are kept and provenance added. Networks run tiled when the field does not fit in memory
(:mod:`climgen.tasks.downscale.tiles`).

Example
-------
>>> import climgen as cg                                                    # doctest: +SKIP
>>> fine = cg.Downscaler(factor=4, method="bicubic", conserve=True).downscale(coarse)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.data.coarsen import coarsen, coarsen_tensor
from climgen.data.dataset import FieldDataset, to_xarray
from climgen.data.grids import area_weights, detect_grid, restore, to_canonical
from climgen.data.io import as_dataset, load_run_file, write_fields
from climgen.data.normalize import Normalizer
from climgen.data.patches import patch_size_pair
from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError
from climgen.families.base import check_family_options
from climgen.families.superres import conserve as conserve_layer
from climgen.families.superres import conserve_additive
from climgen.metrics.spectral_filter import apply_spectral_gain
from climgen.tasks._common import (
    build_seeded,
    check_neighbours,
    default_run_dir,
    field_variables,
    keep_input_layout,
    provenance_attrs,
    sample_step,
    train_config,
    zero_template,
)
from climgen.tasks.downscale.covariance_correction import covariance_correction_on
from climgen.tasks.downscale.interpolation import cell_bounds, interpolate, refine_coordinate
from climgen.tasks.downscale.tiles import auto_tile, tiled_apply
from climgen.train import TrainConfig, Trainer, load_family

__all__ = [
    "Downscaler",
    "available_downscale_methods",
    "back_project",
    "DOWNSCALE_METHODS",
    "MethodSpec",
]

_FINE_TEMPLATE = "fine_template.nc"
_COARSE_TEMPLATE = "coarse_template.nc"
_STATIC = "static.nc"
_NORMALIZER = "normalizer.json"
_CALIBRATION = "spectral_calibration.json"
_BASELINE = "baseline.json"
_CONSERVE = ("additive", "multiplicative")


@dataclass(frozen=True)
class MethodSpec:
    """A downscaling method: ``kind`` "interpolation" or "network" (family + default options)."""

    name: str
    kind: str
    description: str
    family: str | None = None
    defaults: dict = field(default_factory=dict)


DOWNSCALE_METHODS: dict[str, MethodSpec] = {
    "nearest": MethodSpec("nearest", "interpolation", "block copy of each coarse cell"),
    "bilinear": MethodSpec("bilinear", "interpolation", "separable linear interpolation"),
    "bicubic": MethodSpec("bicubic", "interpolation", "Keys (1981) cubic convolution, a=-0.5"),
    "lanczos": MethodSpec("lanczos", "interpolation", "Lanczos-3 windowed sinc"),
    "regression": MethodSpec(
        "regression",
        "network",
        "EDSR-style residual net with pixel shuffle, L1 loss",
        "superres",
        {"content_loss": "l1"},
    ),
    "srgan": MethodSpec(
        "srgan",
        "network",
        "SRGAN: the regression generator with noise inputs against a conditional critic",
        "superres",
        {"content_loss": "l1", "adversarial": "non-saturating", "noise_channels": 2},
    ),
    "diffusion": MethodSpec(
        "diffusion",
        "corrdiff",
        "CorrDiff: regression mean + EDM diffusion of the residual, conditioned on the mean",
        "diffusion",
    ),
}
_CORRDIFF_OPTIONS = ("regression_options", "diffusion_options")


def available_downscale_methods() -> list[str]:
    """Names accepted as ``Downscaler(method=...)``: baselines first, then trained models."""
    return list(DOWNSCALE_METHODS)


def _check_factor(factor) -> int:
    if (
        isinstance(factor, bool)
        or not isinstance(factor, (int, np.integer))
        or not (2 <= factor <= 8)
    ):
        raise ClimgenInputError(
            f"factor must be an integer from 2 to 8 (the same on both axes), got {factor!r}"
        )
    return int(factor)


AUGMENTATIONS = ("shift", "mirror-y", "mirror-x")


def context_indices(i: int, n: int, context: int) -> list[int]:
    """Sample indices of field ``i`` and its temporal context: ``[i, i−k, …, i−1, i+1, …,
    i+k]`` for k = ``context``, clamped to ``[0, n − 1]`` (a series end repeats its last
    field)."""
    offsets = [0, *range(-context, 0), *range(1, context + 1)]
    return [min(max(i + o, 0), n - 1) for o in offsets]


def _check_context(context) -> int:
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ClimgenInputError(
            f"context must be an integer ≥ 0 (coarse fields each side in time), got {context!r}"
        )
    return int(context)


def _check_augment(augment) -> tuple[str, ...]:
    names = (augment,) if isinstance(augment, str) else tuple(augment or ())
    unknown = [a for a in names if a not in AUGMENTATIONS]
    if unknown:
        raise ClimgenInputError(
            f"unknown augment {unknown}; choose from {', '.join(AUGMENTATIONS)}"
        )
    return names


def _check_conserve(conserve) -> str | None:
    if conserve in (False, None, "none"):
        return None
    if conserve is True:
        return "additive"
    if conserve not in _CONSERVE:
        raise ClimgenInputError(
            f"conserve={conserve!r} is not valid; use True/'additive' (signed fields), "
            "'multiplicative' (non-negative fields) or False"
        )
    return conserve


def _row_weights(da: xr.DataArray) -> np.ndarray | None:
    """Per-row area weights of ``da``'s grid in its own orientation (None on planar grids)."""
    grid = detect_grid(da)
    if grid.kind != "latlon":
        return None
    return area_weights(da, grid).values[:, 0]


def _check_finite(da: xr.DataArray, where: str) -> None:
    bad = int((~np.isfinite(da.values)).sum())
    if bad:
        raise ClimgenInputError(
            f"variable '{da.name}' of {where} has {bad} NaN/inf value(s); downscaling needs "
            "complete fields (fill the gaps first, e.g. with climgen's gap filling)"
        )


def back_project(fine, coarse, factor: int, weights, periodic, iterations: int):
    """Iterative back-projection (Irani & Peleg 1991) of the block-mean residual:

    .. math:: y \\leftarrow y + P\\,(c - M(y))

    with M the (area-weighted) block mean and P Lanczos-3 interpolation, ``iterations``
    times (stopping early when the residual stops shrinking). The correction is smooth, so
    the exact additive layer that follows only has a tiny residual to put into block-edge
    steps — which keeps a calibrated spectrum intact. ``fine`` (..., H, W), ``coarse``
    (..., H/f, W/f), float64; ``weights`` as for :func:`coarsen_tensor`; ``periodic`` =
    (y, x) flags of the interpolation. Reference: Irani & Peleg (1991), *Improving
    resolution by image registration*, CVGIP: Graphical Models and Image Processing 53.
    """
    best = float("inf")
    for _ in range(int(iterations)):
        residual = coarse - coarsen_tensor(fine, factor, weights)
        size = float(residual.abs().max())
        if size >= best or size == 0.0:
            break
        best = size
        fine = fine + interpolate(residual, factor, "lanczos", periodic)
    return fine


class _PairDataset(torch.utils.data.Dataset):
    """Items ``{"x": fine, "cond": coarse[, "static"]}`` (normalised, canonical orientation).

    With ``patch=(ph, pw)`` (coarse cells) each item is a random block-aligned crop: coarse
    rows i..i+ph and the fine rows f·i..f·(i+ph) below them (periodic axes wrap; offsets
    from torch's global RNG, which the trainer seeds).

    ``augment`` (only when the coarse inputs are made by coarsening) transforms the fine field
    before it is coarsened, so each item is a new consistent pair: "shift" rolls it by a
    random 0…f−1 fine cells along each periodic axis (the coarse blocks then straddle other
    fine cells), "mirror-y" / "mirror-x" flip it along y / x with probability ½. Static
    inputs are not moved: a shifted or mirrored field is another field on the same grid.

    With ``context=k`` the coarse input also holds the coarse fields of samples i − k … i + k
    (:func:`context_indices`; same transform as field i), as extra channels after field i's.
    """

    def __init__(
        self,
        fine: FieldDataset,
        factor,
        weights,
        coarse=None,
        static=None,
        patch=None,
        periodic=(False, False),
        augment=(),
        context=0,
    ):
        self.fine, self.coarse, self.factor = fine, coarse, factor
        self.weights, self.static = weights, static
        self.patch, self.periodic = patch, periodic
        self.augment = tuple(augment)
        self.context = int(context)

    def __len__(self) -> int:
        return len(self.fine)

    def __getitem__(self, i: int) -> dict:
        transform = self._draw_transform() if self.augment else None
        conds = []
        for j in context_indices(i, len(self), self.context):
            if self.coarse is not None and j != i:
                conds.append(self.coarse[j])
                continue
            xj = self.fine[j]
            if transform is not None:
                xj = self._apply(xj, *transform)
            if j == i:
                x = xj
            if self.coarse is not None:
                conds.append(self.coarse[j])
            else:
                conds.append(coarsen_tensor(xj.double(), self.factor, self.weights).float())
        cond = conds[0] if len(conds) == 1 else torch.cat(conds, dim=0)
        item = {"x": x, "cond": cond}
        if self.static is not None:
            item["static"] = self.static
        return item if self.patch is None else self._crop(item)

    def _draw_transform(self) -> tuple[list[int], list[int]]:
        """Random (shifts, mirrored axes) of one item (the ``augment`` symmetries)."""
        shifts = [0, 0]
        if "shift" in self.augment:
            shifts = [
                int(torch.randint(self.factor, (1,))) if periodic else 0
                for periodic in self.periodic
            ]
        flips = [
            axis
            for axis, name in ((-2, "mirror-y"), (-1, "mirror-x"))
            if name in self.augment and bool(torch.randint(2, (1,)))
        ]
        return shifts, flips

    @staticmethod
    def _apply(x: torch.Tensor, shifts: list[int], flips: list[int]) -> torch.Tensor:
        x = torch.roll(x, shifts, dims=(-2, -1)) if any(shifts) else x
        return torch.flip(x, dims=flips) if flips else x

    def _crop(self, item: dict) -> dict:
        f = self.factor
        index = []
        for axis, (p, periodic) in enumerate(zip(self.patch, self.periodic)):
            n = item["cond"].shape[-2 + axis]
            start = int(torch.randint(n if periodic else n - p + 1, (1,)))
            coarse = (torch.arange(p) + start) % n
            fine = (torch.arange(p * f) + start * f) % (n * f)
            index.append((coarse, fine))
        (cy, fy), (cx, fx) = index
        out = {"cond": item["cond"].index_select(-2, cy).index_select(-1, cx)}
        for key in ("x", "static"):
            if key in item:
                out[key] = item[key].index_select(-2, fy).index_select(-1, fx)
        return out


class _ResidualDataset(torch.utils.data.Dataset):
    """CorrDiff items ``{"x": (fine − μ)/scale, "cond": [μ, static]}`` from a pair dataset."""

    def __init__(self, pairs: _PairDataset, regression, scale: float):
        self.pairs, self.regression, self.scale = pairs, regression, scale

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        item = self.pairs[i]
        static = item.get("static")
        with torch.no_grad():
            mean = self.regression.predict(
                item["cond"][None], None if static is None else static[None]
            )[0]
        cond = mean if static is None else torch.cat([mean, static])
        return {"x": (item["x"] - mean) / self.scale, "cond": cond}


class Downscaler:
    """Downscale coarse gridded fields by an integer ``factor`` with any registered method.

    Parameters
    ----------
    factor : refinement per axis, 2–8.
    method : one of :func:`available_downscale_methods`.
    conserve : False, True / "additive" or "multiplicative": end with the conservation layer.
    variables : variables to downscale (networks: jointly, as channels); default: all.
    sample_dim : the dim of independent fields (default "time").
    normalization : "standard" or "robust" (networks).
    static : fine-grid static inputs (Dataset or DataArray on the training fine grid, no
        sample dim), e.g. topography; networks only.
    tile_size : networks: core tile in coarse cells, None (whole fields when they fit in a
        quarter of the available memory, else tiles) or 0 (never tile).
    tile_halo : context cells around each tile (default: the net's receptive radius, which
        makes tiled output equal untiled output).
    back_projection : with ``conserve="additive"``: iterations of smooth back-projection of
        the block-mean residual before the exact layer (:func:`back_project`). None
        (default): 20 when the output is spectrally calibrated (the layer's block-edge steps
        would otherwise undo the calibrated small scales), else 0 (the plain layer).
        "covariance": instead, the optimal-interpolation correction whose spectrum is the
        output's own (:mod:`climgen.tasks.downscale.covariance_correction`): it keeps a calibrated
        spectrum where Lanczos back-projection adds power beyond a band limit (grids up to
        2048 coarse cells).
    patch_size : networks ("regression", "srgan"): train on random block-aligned crops of
        ``patch_size`` coarse cells (int or (rows, cols); periodic axes wrap) instead of whole
        fields — more, cheaper steps per CPU second; the fully convolutional net then runs
        on whole fields. None: whole fields.
    augment : networks, trained on coarsened fine fields: symmetries of the data's statistics
        that make new training pairs — "shift" (random sub-block shifts along periodic axes:
        the coarse blocks see other fine cells; valid for any data on a periodic axis),
        "mirror-y" (e.g. a climate symmetric about the equator, like Held–Suarez) and
        "mirror-x"; a name or a sequence of names. Each item's fine field is transformed, then
        coarsened.
    context : networks: also condition on the coarse fields of the ``context`` samples before
        and after each one along ``sample_dim`` (multi-frame super-resolution: a front that
        moves across coarse cells between days shows where inside a cell it lies). The
        samples must be consecutive in time, in training and at :meth:`downscale`; at the
        ends of a series the last field is repeated. 0 (default): each field alone.
    **method_options : options of the network family (e.g. ``base_channels=16``,
        ``n_blocks=4``, ``adversarial="hinge"``, ``spectral_weight=0.1``).
    """

    _bar = None  # the progress bar of a running downscale (networks count fields on it)

    def __init__(
        self,
        factor: int = 4,
        method: str = "bicubic",
        *,
        conserve: bool | str = False,
        variables=None,
        sample_dim: str = "time",
        normalization: str = "standard",
        static=None,
        tile_size: int | None = None,
        tile_halo: int | None = None,
        patch_size: int | tuple[int, int] | None = None,
        back_projection: int | str | None = None,
        augment=(),
        context: int = 0,
        **method_options,
    ):
        self.factor = _check_factor(factor)
        self.augment = _check_augment(augment)
        self.context = _check_context(context)
        self.sample_step: float | None = None  # of the training series (context checks)
        if (
            back_projection is not None
            and back_projection != "covariance"
            and (
                isinstance(back_projection, bool)
                or not isinstance(back_projection, (int, np.integer))
                or back_projection < 0
            )
        ):
            raise ClimgenInputError(
                "back_projection must be None, an integer ≥ 0 or 'covariance', got "
                f"{back_projection!r}"
            )
        self.back_projection = back_projection
        if method not in DOWNSCALE_METHODS:
            raise ClimgenInputError(
                f"unknown downscaling method {method!r}; choose one of "
                f"{', '.join(available_downscale_methods())}"
            )
        self.method = method
        self.spec = DOWNSCALE_METHODS[method]
        self.conserve = _check_conserve(conserve)
        self.variables = [variables] if isinstance(variables, str) else variables
        self.sample_dim = sample_dim
        self.normalization = normalization
        if self.spec.kind == "interpolation" and (method_options or static is not None):
            extra = sorted(method_options) + (["static"] if static is not None else [])
            raise ClimgenInputError(
                f"method {method!r} is an interpolation and takes no option(s) {extra}"
            )
        self.method_options = {**self.spec.defaults, **method_options}
        self.diffusion_options: dict = {}
        if self.spec.kind == "corrdiff":
            unknown = sorted(set(method_options) - set(_CORRDIFF_OPTIONS))
            if unknown:
                raise ClimgenInputError(
                    f"method 'diffusion' takes regression_options={{...}} and "
                    f"diffusion_options={{...}}, not {unknown}"
                )
            self.method_options = {
                **DOWNSCALE_METHODS["regression"].defaults,
                **dict(method_options.get("regression_options") or {}),
            }
            self.diffusion_options = dict(method_options.get("diffusion_options") or {})
            check_family_options("diffusion", self.diffusion_options)
        if self.spec.kind != "interpolation":
            check_family_options("superres", self.method_options)
        self.static = None if static is None else as_dataset(static)
        self.tile_size, self.tile_halo = tile_size, tile_halo
        self.patch_size = None
        if patch_size is not None:
            if self.spec.kind != "network":
                raise ClimgenInputError(
                    f"patch_size applies to the networks 'regression' and 'srgan', not "
                    f"method {method!r}"
                )
            self.patch_size = patch_size_pair(patch_size)
        if self.augment and self.spec.kind == "interpolation":
            raise ClimgenInputError(
                f"augment applies to trained methods, not the interpolation {method!r}"
            )
        if self.context and self.spec.kind == "interpolation":
            raise ClimgenInputError(
                f"context applies to trained methods, not the interpolation {method!r}"
            )
        self.family = None
        self.normalizer: Normalizer | None = None
        self.fine_template: xr.Dataset | None = None
        self.coarse_template: xr.Dataset | None = None
        self.static_tensor: torch.Tensor | None = None
        self.diffusion = None
        self.residual_scale = 1.0
        self.run_dir: Path | None = None
        self.result = None
        self.checkpoint_step: int | None = None  # of the network that downscales
        self.calibration = None

    # -- helpers -----------------------------------------------------------------------------
    def coarsen(self, data) -> xr.Dataset:
        """Area-weighted block means of ``data`` by ``factor`` (what ``fit`` trains on).

        The result carries CF cell bounds (``<dim>_bnds`` coordinates, the union of the fine
        cells of each block), so :meth:`downscale` puts the fine cells back exactly where
        they were.
        """
        ds = as_dataset(data, self.variables)
        names = self.variables or field_variables(ds)
        out = xr.Dataset({v: coarsen(ds[v], self.factor) for v in names}, attrs=dict(ds.attrs))
        grid = detect_grid(ds[names[0]])
        f = self.factor
        for dim in grid.spatial_dims:
            if dim not in ds.coords:
                continue
            bname = ds[dim].attrs.get("bounds")
            b = ds[bname].values if bname in ds.variables else None
            lo, hi = cell_bounds(
                ds[dim].values,
                bounds=b,
                latitude=grid.kind == "latlon" and dim == grid.y_dim,
                name=dim,
            )
            coarse_b = np.stack([lo[::f], hi[f - 1 :: f]], axis=1)
            name = f"{dim}_bnds"
            out = out.assign_coords({name: ((dim, "bnds"), coarse_b)})
            out[dim].attrs = {**out[dim].attrs, "bounds": name}
        return out

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        data,
        fine=None,
        *,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        train: TrainConfig | dict | None = None,
        callbacks=(),
        **train_options,
    ) -> Downscaler:
        """Train on fine fields ``data`` (coarse inputs made by coarsening), or on pairs
        ``fit(ds_coarse, ds_fine)``; returns ``self``. Interpolation methods need no
        training: ``fit`` returns at once.

        ``train`` / ``train_options`` are :class:`climgen.train.TrainConfig` fields
        (``max_steps``, ``batch_size``, ``seed``, ...).
        """
        if self.spec.kind == "interpolation":
            return self
        if fine is None:
            ds_fine, ds_coarse = as_dataset(data, self.variables), None
        else:
            ds_coarse, ds_fine = as_dataset(data, self.variables), as_dataset(fine, self.variables)
        variables = self._pick_variables(ds_fine, "the fine training data")
        times = ds_fine[self.sample_dim].values if self.sample_dim in ds_fine.coords else None
        self.sample_step = sample_step(times)
        if ds_coarse is not None:
            self._check_has(ds_coarse, variables, "the coarse training data")
            if self.augment:
                raise ClimgenInputError(
                    f"augment={list(self.augment)} transforms fine fields before coarsening "
                    "them; with paired data (fit(ds_coarse, ds_fine)) the coarse fields are "
                    "given, so drop augment"
                )
        f = self.factor
        grid = detect_grid(ds_fine[variables[0]])
        if "shift" in self.augment and not (grid.periodic_y or grid.periodic_x):
            raise ClimgenInputError(
                "augment='shift' rolls fields along a periodic axis; the training grid "
                f"{grid.spatial_dims} has none"
            )
        for dim in grid.spatial_dims:
            if ds_fine.sizes[dim] % f:
                raise ClimgenInputError(
                    f"dim '{dim}' of the fine training data has {ds_fine.sizes[dim]} cells, "
                    f"not divisible by factor {f}; crop it (e.g. ds.isel({dim}=slice(0, "
                    f"{ds_fine.sizes[dim] // f * f})))"
                )
        config = train_config(train, train_options)
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("downscale", self.method)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and (self.run_dir / _NORMALIZER).exists():
            self.normalizer = Normalizer.from_json(self.run_dir / _NORMALIZER)
        else:
            self.normalizer = Normalizer.fit(ds_fine, variables, method=self.normalization)
            self.normalizer.to_json(self.run_dir / _NORMALIZER)
        fine_set = FieldDataset(
            ds_fine, variables, sample_dim=self.sample_dim, normalizer=self.normalizer
        )
        shape = fine_set.shape
        canon_fine, _ = to_canonical(ds_fine[variables[0]], grid)
        weights = _row_weights(canon_fine)
        coarse_set = None
        if ds_coarse is not None:
            coarse_set = FieldDataset(
                ds_coarse, variables, sample_dim=self.sample_dim, normalizer=self.normalizer
            )
            want = (shape[0] // f, shape[1] // f)
            if coarse_set.shape != want or len(coarse_set) != len(fine_set):
                raise ClimgenInputError(
                    f"paired data do not match: coarse grid {coarse_set.shape} with "
                    f"{len(coarse_set)} fields, fine grid {shape} with {len(fine_set)} fields; "
                    f"with factor {f} the coarse grid must be {want} with as many fields"
                )
            self.coarse_template = zero_template(ds_coarse, variables, self.sample_dim)
        else:
            one = ds_fine[variables].isel({self.sample_dim: 0}, drop=True)
            self.coarse_template = zero_template(self.coarsen(one), variables, self.sample_dim)
        self.fine_template = zero_template(ds_fine, variables, self.sample_dim)
        static_state = self._prepare_static(grid, canon_fine) if self.static is not None else None
        options = dict(self.method_options)
        options.setdefault("spectral_spacing", [grid.dy, grid.dx])
        periodic = (grid.periodic_y, grid.periodic_x)
        net_shape = self._patch_shape(shape, periodic, weights, options)
        if options.get("constraint") == "additive" and weights is not None:
            options.setdefault("row_weights", [float(w) for w in weights])
        self.family = build_seeded(
            config.seed,
            "superres",
            channels=len(variables),
            shape=net_shape,
            periodic=(grid.periodic_y, grid.periodic_x),
            factor=f,
            static_channels=0 if self.static_tensor is None else self.static_tensor.shape[0],
            context_channels=2 * self.context * len(variables),
            **options,
        )
        write_fields(self.fine_template, self.run_dir / _FINE_TEMPLATE)
        write_fields(self.coarse_template, self.run_dir / _COARSE_TEMPLATE)
        if self.static is not None:
            write_fields(self.static, self.run_dir / _STATIC)
        card = {
            "task": "downscale",
            "method": self.method,
            "factor": f,
            "conserve": self.conserve,
            "variables": variables,
            "sample_dim": self.sample_dim,
            "patch_size": None if self.patch_size is None else list(self.patch_size),
            "augment": list(self.augment),
            "context": self.context,
            "sample_step": self.sample_step,
            "normalizer": self.normalizer.state_dict(),
            "static": static_state,
            "grid": {
                "kind": grid.kind,
                "dims": list(grid.spatial_dims),
                "fine_shape": list(shape),
                "coarse_shape": [shape[0] // f, shape[1] // f],
                "periodic": [grid.periodic_y, grid.periodic_x],
            },
            "data": {
                "source": str(ds_fine.encoding.get("source", "in-memory")),
                "n_samples": len(fine_set),
                "paired": ds_coarse is not None,
                "title": str(ds_fine.attrs.get("title", "")),
            },
        }
        w_t = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        pairs = _PairDataset(
            fine_set,
            f,
            w_t,
            coarse_set,
            self.static_tensor,
            self.patch_size,
            periodic,
            self.augment,
            self.context,
        )
        corrdiff = self.spec.kind == "corrdiff"
        reg_dir = self.run_dir / "regression" if corrdiff else self.run_dir
        trainer = Trainer(self.family, config, reg_dir, callbacks=callbacks, card=card)
        self.result = trainer.fit(pairs, resume=resume)
        self.checkpoint_step = int(self.result.step)
        self.family.eval()
        if trainer.ema is not None:
            self.family, _ = load_family(reg_dir, ema=True)
        if corrdiff:
            self._fit_residual_diffusion(pairs, grid, shape, config, callbacks, resume)
        return self

    def _patch_shape(self, shape, periodic, weights, options) -> tuple[int, int]:
        """The fine shape the family trains on: the whole grid, or the patch's."""
        if self.patch_size is None:
            return shape
        f = self.factor
        for n, p, per, axis in zip(shape, self.patch_size, periodic, ("rows", "columns")):
            if p < 1 or (not per and p > n // f):
                raise ClimgenInputError(
                    f"patch_size {self.patch_size} does not fit the coarse grid "
                    f"{(shape[0] // f, shape[1] // f)}: {axis} must be 1..{n // f} "
                    "on a bounded axis"
                )
        if options.get("constraint") == "additive" and weights is not None:
            raise ClimgenInputError(
                "patch_size with constraint='additive' needs a planar grid (the latitude "
                "weights of the in-model layer depend on the patch); use conserve=True instead"
            )
        return (self.patch_size[0] * f, self.patch_size[1] * f)

    def _fit_residual_diffusion(self, pairs, grid, shape, config, callbacks, resume) -> None:
        """CorrDiff stage 2: an EDM diffusion of r = (x − μ(c)) / s given μ(c) (and statics)."""
        residuals = _ResidualDataset(pairs, self.family, 1.0)
        probe = torch.stack([residuals[i]["x"] for i in range(min(len(residuals), 64))])
        self.residual_scale = float(probe.std()) or 1.0
        residuals.scale = self.residual_scale
        static_channels = 0 if self.static_tensor is None else self.static_tensor.shape[0]
        self.diffusion = build_seeded(
            config.seed,
            "diffusion",
            channels=len(self.variables),
            shape=shape,
            periodic=(grid.periodic_y, grid.periodic_x),
            cond_channels=len(self.variables) + static_channels,
            **self.diffusion_options,
        )
        card = {"task": "downscale-residual", "residual_scale": self.residual_scale}
        trainer = Trainer(
            self.diffusion, config, self.run_dir / "diffusion", callbacks=callbacks, card=card
        )
        self.result = trainer.fit(residuals, resume=resume)
        self.diffusion.eval()
        if trainer.ema is not None:
            self.diffusion, _ = load_family(self.run_dir / "diffusion", ema=True)

    def _pick_variables(self, ds: xr.Dataset, where: str) -> list[str]:
        if self.variables:
            self._check_has(ds, self.variables, where)
            return list(self.variables)
        names = [str(v) for v in ds.data_vars if self.sample_dim in ds[v].dims]
        if not names:
            raise ClimgenInputError(
                f"no variable of {where} has the sample dim '{self.sample_dim}' "
                f"(variables: {list(ds.data_vars)}); pass sample_dim=..."
            )
        self.variables = names
        return names

    @staticmethod
    def _check_has(ds: xr.Dataset, variables, where: str) -> None:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise ClimgenInputError(
                f"variable(s) {missing} missing from {where}; it has {list(ds.data_vars)}"
            )

    def _prepare_static(self, grid, canon_fine: xr.DataArray) -> dict:
        static = self.static
        names = [str(v) for v in static.data_vars]
        tensors, center, scale = [], {}, {}
        for v in names:
            da = static[v]
            if set(da.dims) != set(grid.spatial_dims):
                raise ClimgenInputError(
                    f"static variable '{v}' has dims {da.dims}; it must lie on the fine grid "
                    f"{grid.spatial_dims} without other dims"
                )
            canon, _ = to_canonical(da)
            for dim in grid.spatial_dims:
                ok = canon.sizes[dim] == canon_fine.sizes[dim] and (
                    dim not in canon.coords
                    or np.allclose(canon[dim].values, canon_fine[dim].values)
                )
                if not ok:
                    raise ClimgenInputError(
                        f"static variable '{v}' is not on the fine grid: dim '{dim}' differs "
                        f"({canon.sizes[dim]} vs {canon_fine.sizes[dim]} cells)"
                    )
            _check_finite(da, "the static inputs")
            values = canon.values.astype(np.float64)
            center[v], scale[v] = float(values.mean()), float(values.std() or 1.0)
            tensors.append((values - center[v]) / scale[v])
        self.static_tensor = torch.as_tensor(np.stack(tensors), dtype=torch.float32)
        return {"variables": names, "center": center, "scale": scale}

    # -- inference -----------------------------------------------------------------------------
    def downscale(
        self,
        coarse,
        *,
        members: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        calibrated: bool | None = None,
        progress: bool = False,
    ) -> xr.Dataset:
        """Fine fields for ``coarse`` (Dataset, DataArray or file paths).

        ``members=M`` adds a ``member`` dim of M fields (stochastic for "srgan"; the
        deterministic methods repeat their one answer, with zero spread). ``seed`` fixes the
        noise. ``calibrated``: apply the spectral calibration of :meth:`calibrate_spectrum`
        (default: when one was fitted); it acts on the method's output *before* the
        conservation layer, so the coarse means stay exact. ``True`` without a fitted
        calibration is an error. ``progress``: a bar over the fields (networks; on a
        terminal). Returns a Dataset on the fine grid in the input's layout (longitude
        convention, axis directions), with the input's variable attributes and its own
        provenance (:func:`~climgen.tasks._common.provenance_attrs`).
        """
        if members is not None and (int(members) != members or members < 1):
            raise ClimgenInputError(f"members must be a positive integer, got {members!r}")
        if calibrated is None:
            calibrated = self.calibration is not None
        if calibrated and self.calibration is None:
            raise ClimgenInputError(
                f"calibrated=True but this {self.method!r} downscaler has no spectral "
                "calibration: call calibrate_spectrum(ds_fine_train) first (or load a run dir "
                f"that has {_CALIBRATION})"
            )
        ds = as_dataset(coarse, self.variables)
        if self.spec.kind == "interpolation":
            names = self.variables or field_variables(ds)
            self._check_has(ds, names, "the coarse input")
            out, bounds = xr.Dataset(), {}
            for v in names:
                out[v], b = self._interpolate_variable(ds, v, calibrated)
                bounds.update(b)
            out = out.assign_coords(bounds)
        else:
            self._check_fitted()
            self._check_has(ds, self.variables, "the coarse input")
            if self.context and self.sample_dim in ds.coords:
                check_neighbours(
                    ds[self.sample_dim].values,
                    self.context,
                    step=self.sample_step,
                    what="coarse fields",
                    hint="give consecutive coarse fields (a few beyond the wanted ones)",
                )
            out = self._network_downscale(
                ds, members or 1, seed, batch_size, calibrated, show=progress
            )
        if members is not None and "member" not in out.dims:
            out = xr.concat([out] * int(members), dim="member")
        if "member" in out.dims:
            out = out.assign_coords(member=np.arange(out.sizes["member"]))
        out = keep_input_layout(out, ds)  # the input's longitude convention and axis order
        return self._provenance(out, ds, calibrated, seed)

    # -- spectral calibration ------------------------------------------------------------------
    def calibrate_spectrum(
        self,
        data,
        fine=None,
        *,
        n_fields: int = 64,
        members: int | None = None,
        seed: int = 2**20,
        max_gain: float = 1e3,
        per_row: bool = False,
        run_dir: str | os.PathLike | None = None,
    ) -> Downscaler:
        """Fit a spectral calibration of this method's output on training fields.

        ``data`` are fine training fields (coarsened as :meth:`fit` does), or
        ``calibrate_spectrum(ds_coarse, ds_fine)`` paired data. ``n_fields`` evenly spaced
        fields (the first ``n_fields`` with ``context``, which needs consecutive ones;
        ``members`` draws each for the stochastic methods, default 1) are downscaled
        without calibration and without the conservation layer, and a
        :class:`~climgen.tasks.emulate.spectral_calibration.SpectralCalibration` is fitted so that

        .. math:: g(k) = \\sqrt{\\bar P_{fine}(k) / \\bar P_{method}(k)}, \\qquad
                  \\hat y'(k) = g(k)\\,\\hat y(k)

        gives the calibrated outputs the mean spectrum of the true fine fields, per
        wavenumber of the diagnostics' basis (x-wavenumber for grids with walls, rings on
        doubly periodic grids, degree ℓ on global Gaussian/equiangular grids;
        :mod:`climgen.metrics.spectral_filter`). ``per_row=True`` adds a stage with a gain per
        row and x-wavenumber (the zonal spectrum per latitude, the x-spectrum per height).
        :meth:`downscale` then applies it by default, before the conservation layer. The
        gain is fitted in the basis of the training fine grid and applied by position, so
        the baselines' own fine coordinates (from the coarse cell bounds) are accepted.

        Saved as ``spectral_calibration.json`` in the run dir (networks; for interpolation
        methods when ``run_dir`` is given, with the fine template, so
        :meth:`load` / ``climgen downscale RUN_DIR`` reload a calibrated baseline).
        Use training data only. Returns ``self``. Reference: Wiener (1949), linear filters
        fixed by spectra; see :mod:`climgen.tasks.emulate.spectral_calibration`.
        """
        from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

        if (
            isinstance(n_fields, bool)
            or not isinstance(n_fields, (int, np.integer))
            or (n_fields < 1)
        ):
            raise ClimgenInputError(f"n_fields must be a positive integer, got {n_fields!r}")
        if self.spec.kind != "interpolation":
            self._check_fitted()
        if fine is None:
            ds_fine, ds_coarse = as_dataset(data, self.variables), None
        else:
            ds_coarse, ds_fine = as_dataset(data, self.variables), as_dataset(fine, self.variables)
        names = list(self.variables or field_variables(ds_fine))
        self._check_has(ds_fine, names, "the fine calibration data")
        if ds_coarse is not None:
            self._check_has(ds_coarse, names, "the coarse calibration data")
        if self.sample_dim not in ds_fine[names[0]].dims:
            raise ClimgenInputError(
                f"calibrate_spectrum needs several training fields along '{self.sample_dim}'; "
                f"the fine data have dims {ds_fine[names[0]].dims}"
            )
        n = ds_fine.sizes[self.sample_dim]
        pick = np.unique(np.linspace(0, n - 1, min(int(n_fields), n)).round().astype(int))
        if self.context:  # the net needs each field's neighbours: consecutive fields
            pick = np.arange(min(int(n_fields), n))
        ds_fine = ds_fine[names].isel({self.sample_dim: pick})
        coarse = (
            self.coarsen(ds_fine)
            if ds_coarse is None
            else ds_coarse[names].isel({self.sample_dim: pick})
        )
        if self.spec.kind == "interpolation":
            self.fine_template = zero_template(ds_fine, names, self.sample_dim)
        layer, self.conserve = self.conserve, None
        try:
            raw = self.downscale(coarse, members=members, seed=seed, calibrated=False)
        finally:
            self.conserve = layer
        raw = xr.Dataset({v: self._on_template_grid(raw[v], v) for v in names})
        data_fine = xr.Dataset({v: to_canonical(ds_fine[v])[0] for v in names})
        self.calibration = SpectralCalibration.fit(
            raw,
            data_fine,
            names,
            sample_dim=self.sample_dim,
            data_sample_dim=self.sample_dim,
            max_gain=max_gain,
            per_row=per_row,
        )
        if run_dir is not None:
            self.run_dir = Path(run_dir)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.spec.kind == "interpolation":
                write_fields(self.fine_template, self.run_dir / _FINE_TEMPLATE)
                card = {
                    "task": "downscale",
                    "method": self.method,
                    "factor": self.factor,
                    "conserve": self.conserve,
                    "variables": names,
                    "sample_dim": self.sample_dim,
                }
                (self.run_dir / _BASELINE).write_text(json.dumps(card, indent=1))
            self.calibration.save(self.run_dir / _CALIBRATION)
        return self

    def _on_template_grid(self, da: xr.DataArray, name: str) -> xr.DataArray:
        """``da`` in canonical orientation with the training fine grid's coordinates
        (values matched by position): the basis the calibration's gains are fitted in."""
        canon, _ = to_canonical(da)
        grid = detect_grid(canon)
        want, _ = to_canonical(self.fine_template[name])
        tgrid = detect_grid(want)
        shape = (canon.sizes[grid.y_dim], canon.sizes[grid.x_dim])
        tshape = (want.sizes[tgrid.y_dim], want.sizes[tgrid.x_dim])
        if shape != tshape:
            raise ClimgenInputError(
                f"variable '{name}': the spectral calibration was fitted on the fine grid "
                f"{tshape}, but this output is {shape}; pass calibrated=False or refit it "
                "with calibrate_spectrum on fields of this grid"
            )
        lead = [d for d in canon.dims if d not in (grid.y_dim, grid.x_dim)]
        dims = (*lead, tgrid.y_dim, tgrid.x_dim)
        coords = {d: canon[d] for d in lead if d in canon.coords}
        coords.update({d: want[d] for d in (tgrid.y_dim, tgrid.x_dim) if d in want.coords})
        return xr.DataArray(
            canon.transpose(*lead, grid.y_dim, grid.x_dim).values,
            dims=dims,
            coords=coords,
            name=name,
        )

    def _calibrate(self, da: xr.DataArray, name: str) -> xr.DataArray:
        """Apply the fitted gain chain of variable ``name`` to ``da`` (any orientation)."""
        chain = self.calibration.stages.get(name)
        if chain is None:
            raise ClimgenInputError(
                f"the spectral calibration has no gain for variable '{name}' (fitted for "
                f"{sorted(self.calibration.stages)}); pass calibrated=False"
            )
        canon, state = to_canonical(da)
        grid = detect_grid(canon)
        canon = canon.transpose(
            *[d for d in canon.dims if d not in grid.spatial_dims], *grid.spatial_dims
        )
        filtered = self._on_template_grid(canon, name)
        for kind, gain in chain:
            filtered = apply_spectral_gain(filtered, gain, kind)
        return restore(canon.copy(data=filtered.values.astype(canon.dtype, copy=False)), state)

    def _interpolate_variable(self, ds: xr.Dataset, name: str, calibrated: bool = False):
        """(fine DataArray, {bounds name: fine bounds}) for variable ``name``."""
        da = ds[name]
        _check_finite(da, "the coarse input")
        grid = detect_grid(da)
        y, x = grid.spatial_dims
        f = self.factor
        moved = da.transpose(..., y, x)
        t = torch.from_numpy(np.asarray(moved.values, dtype=np.float64))
        fine = interpolate(t, f, self.method, (grid.periodic_y, grid.periodic_x))
        coords, bounds = {}, {}
        for dim in (y, x):
            values = moved[dim].values if dim in moved.coords else np.arange(moved.sizes[dim])
            bname = moved[dim].attrs.get("bounds") if dim in moved.coords else None
            b = ds[bname].values if bname in ds.variables else None
            centres, fine_b = refine_coordinate(
                values, f, bounds=b, latitude=grid.kind == "latlon" and dim == y, name=dim
            )
            attrs = dict(moved[dim].attrs) if dim in moved.coords else {}
            coords[dim] = (dim, centres, attrs)
            if b is not None:
                bdim = ds[bname].dims[-1]
                bounds[bname] = xr.DataArray(fine_b, dims=(dim, bdim))
        if calibrated:  # before the layer: the gain changes block means, the layer restores them
            raw = xr.DataArray(
                fine.numpy(), dims=moved.dims, coords={y: coords[y], x: coords[x]}, name=name
            )
            fine = torch.from_numpy(
                np.asarray(self._calibrate(raw, name).transpose(*moved.dims).values, np.float64)
            )
        if self.conserve:
            lat = coords[y][1]
            weights = np.cos(np.deg2rad(lat)).clip(min=0) if grid.kind == "latlon" else None
            w_t = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
            template = None
            if self.back_projection == "covariance":  # the grid its spectral basis needs
                template = xr.DataArray(
                    np.zeros((len(coords[y][1]), len(coords[x][1]))),
                    dims=(y, x),
                    coords={y: coords[y], x: coords[x]},
                    name=name,
                )
                known = getattr(self, "fine_template", None)
                if known is not None and name in known and known[name].size == template.size:
                    # The training fine grid (e.g. Gaussian latitudes), which the cell-bound
                    # latitudes of interpolated output only approximate.
                    template = to_canonical(known[name])[0]
            fine = self._smooth_correction(
                fine, t, w_t, (grid.periodic_y, grid.periodic_x), calibrated, template
            )
            fine = conserve_layer(fine, t, f, weights, self.conserve)
        keep = {
            c: moved.coords[c]
            for c in moved.coords
            if c not in (y, x) and not set(moved[c].dims) & {y, x}
        }
        out = xr.DataArray(
            fine.numpy().astype(da.dtype if da.dtype.kind == "f" else np.float64),
            dims=moved.dims,
            coords={**keep, **coords},
            name=name,
            attrs=dict(da.attrs),
        ).transpose(*da.dims)
        return out, bounds

    def _check_coarse_grid(self, ds: xr.Dataset) -> None:
        for v in self.variables:
            have, _ = to_canonical(ds[v])
            want, _ = to_canonical(self.coarse_template[v])
            grid = detect_grid(want)
            for dim in grid.spatial_dims:
                if dim not in have.dims:
                    raise ClimgenInputError(
                        f"variable '{v}' of the coarse input has no dim '{dim}' (dims "
                        f"{have.dims}); the model was trained on {grid.spatial_dims}"
                    )
                n_have, n_want = have.sizes[dim], want.sizes[dim]
                spacing = grid.dy if dim == grid.y_dim else grid.dx
                close = n_have == n_want and (
                    dim not in have.coords
                    or dim not in want.coords
                    or np.allclose(have[dim].values, want[dim].values, atol=0.25 * spacing)
                )
                if not close:
                    raise ClimgenInputError(
                        f"the coarse grid of variable '{v}' does not match the model's training "
                        f"grid: dim '{dim}' has {n_have} cells, expected {n_want} with "
                        f"coordinates {np.round(want[dim].values[:3], 4).tolist()}...; "
                        f"coarsen the fine training grid by factor {self.factor} to match"
                    )

    def _network_downscale(
        self, ds, members: int, seed: int, batch_size, calibrated: bool = False, show=False
    ) -> xr.Dataset:
        self._check_coarse_grid(ds)
        for v in self.variables:
            _check_finite(ds[v], "the coarse input")
        has_sample = self.sample_dim in ds[self.variables[0]].dims
        if not has_sample:
            ds = ds.expand_dims(self.sample_dim)
        arrays = [to_canonical(ds[v])[0].transpose(self.sample_dim, ...) for v in self.variables]
        raw = torch.as_tensor(np.stack([a.values for a in arrays], axis=1), dtype=torch.float64)
        cond = self.normalizer.transform(raw).float()
        if self.context:
            n = cond.shape[0]
            cond = torch.cat(
                [cond[context_indices(i, n, self.context)].flatten(0, 1)[None] for i in range(n)]
            )
        w_t = self._fine_row_weights()
        mean = None
        outputs = []
        n_fields = cond.shape[0] * (members + (self.diffusion is not None))
        self._bar = progress_bar(
            total=n_fields, desc=f"downscale ({self.method})", unit="field", enabled=show
        )
        try:
            for m in range(members):
                gen = torch.Generator().manual_seed(int(seed) * 100_003 + m)
                if self.diffusion is None:
                    fine_n = self._generate(cond, gen, batch_size)
                else:
                    mean = self._generate(cond, None, batch_size) if mean is None else mean
                    residual = self._sample_residual(mean, gen, batch_size)
                    fine_n = mean + self.residual_scale * residual
                fine = self.normalizer.inverse_transform(fine_n)
                if calibrated:  # before the layer, which restores the block means it moved
                    fine = self._calibrate_tensor(fine)
                if self.conserve:
                    fine = self._smooth_correction(fine, raw, w_t, self._periodic(), calibrated)
                    fine = conserve_layer(fine, raw, self.factor, w_t, self.conserve)
                outputs.append(fine)
        finally:
            self._bar.close()
            self._bar = None
        out = torch.stack(outputs) if members > 1 else outputs[0]
        return self._to_fine_dataset(out, ds, members > 1, has_sample)

    def _smooth_correction(self, fine, coarse, weights, periodic, calibrated: bool, template=None):
        """Back-projection before the additive layer (see ``back_projection``). ``fine``:
        (n, C, H, W) net output, or (..., H, W) of the one variable on ``template``'s grid."""
        n = self.back_projection
        if n is None:
            n = 20 if calibrated else 0
        if not n or self.conserve != "additive":
            return fine
        if n == "covariance":
            if template is None:  # network output: the training fine grid
                template = to_canonical(self.fine_template[self.variables[0]])[0]
            out = covariance_correction_on(
                template, fine.double(), coarse.double(), self.factor, weights
            )
            return out.to(fine.dtype)
        return back_project(fine.double(), coarse.double(), self.factor, weights, periodic, n).to(
            fine.dtype
        )

    def _periodic(self) -> tuple[bool, bool]:
        grid = detect_grid(to_canonical(self.fine_template[self.variables[0]])[0])
        return grid.periodic_y, grid.periodic_x

    def _calibrate_tensor(self, fine: torch.Tensor) -> torch.Tensor:
        """Calibrate (n, C, H, W) physical fine fields in the canonical training layout."""
        channels = []
        for c, v in enumerate(self.variables):
            canon, _ = to_canonical(self.fine_template[v])
            grid = detect_grid(canon)
            da = xr.DataArray(
                fine[:, c].numpy(),
                dims=(self.sample_dim, grid.y_dim, grid.x_dim),
                coords={d: canon[d] for d in grid.spatial_dims if d in canon.coords},
                name=v,
            )
            channels.append(torch.from_numpy(np.asarray(self._calibrate(da, v).values)))
        return torch.stack(channels, dim=1).to(fine.dtype)

    def _fine_row_weights(self) -> torch.Tensor | None:
        fine_canon, _ = to_canonical(self.fine_template[self.variables[0]])
        weights = _row_weights(fine_canon)
        return None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def _generate(self, cond: torch.Tensor, gen, batch_size) -> torch.Tensor:
        """The SR generator's fine fields (normalised, float64), tiled when memory requires."""
        family = self.family
        net = family.generator
        n = cond.shape[0]
        halo = self.tile_halo if self.tile_halo is not None else net.receptive_radius
        width = family.config["base_channels"]
        tile, auto_batch = auto_tile(tuple(cond.shape[-2:]), self.factor, width, halo, n_fields=n)
        if self.tile_size is not None:
            tile = self.tile_size or None
        batch = batch_size or auto_batch
        w_t = self._fine_row_weights() if family.config["constraint"] == "additive" else None
        static = self.static_tensor
        chunks = []
        for start in range(0, n, batch):
            c = cond[start : start + batch]
            if self._bar is not None:
                self._bar.update(c.shape[0])
            s = None if static is None else static[None].expand(c.shape[0], -1, -1, -1)
            with torch.no_grad():
                coarse_in, fine_in = family.inputs(c, s, gen)
                if tile is None:
                    y = net(coarse_in, fine_in)
                else:
                    y = tiled_apply(
                        net,
                        coarse_in,
                        fine_in,
                        self.factor,
                        tile=int(tile),
                        halo=int(halo),
                        periodic=family.periodic,
                    )
                if family.config["constraint"] == "additive":
                    centre = c[:, : family.channels].double()
                    y = conserve_additive(y.double(), centre, self.factor, w_t)
            chunks.append(y.double())
        return torch.cat(chunks)

    def _sample_residual(self, mean: torch.Tensor, gen, batch_size) -> torch.Tensor:
        """CorrDiff residuals (normalised by ``residual_scale``) drawn given the mean."""
        batch = batch_size or 16
        static = self.static_tensor
        chunks = []
        for start in range(0, mean.shape[0], batch):
            mu = mean[start : start + batch].float()
            if self._bar is not None:
                self._bar.update(mu.shape[0])
            cond = (
                mu
                if static is None
                else torch.cat([mu, static[None].expand(mu.shape[0], -1, -1, -1)], 1)
            )
            chunks.append(self.diffusion.sample(mu.shape[0], generator=gen, cond=cond).double())
        return torch.cat(chunks)

    def _to_fine_dataset(self, out: torch.Tensor, ds, has_members: bool, has_sample: bool):
        template = self.fine_template
        pieces = out if has_members else out[None]
        results = []
        for member in pieces:
            fine = to_xarray(
                member.float().numpy(),
                template,
                variables=self.variables,
                sample_dim=self.sample_dim,
            )
            if self.sample_dim in ds.coords:
                fine = fine.assign_coords({self.sample_dim: ds[self.sample_dim].values})
            results.append(fine)
        fine = xr.concat(results, dim="member") if has_members else results[0]
        if not has_sample:
            fine = fine.isel({self.sample_dim: 0}, drop=True)
        for v in self.variables:
            fine[v].attrs = dict(ds[v].attrs)
        return fine

    def _provenance(self, out: xr.Dataset, ds: xr.Dataset, calibrated: bool, seed: int):
        """The output's own global attributes (:func:`~climgen.tasks._common.provenance_attrs`:
        not the input's or the training data's)."""
        calibration = None
        if calibrated:
            kinds = " then ".join(
                dict.fromkeys(k for chain in self.calibration.stages.values() for k, _ in chain)
            )
            calibration = (
                f"linear spectral gain sqrt(P_fine/P_{self.method}) per {kinds} wavenumber, "
                f"fitted on {self.calibration.n_fit} training fields, applied before the "
                "conservation layer"
            )
        stochastic = self.spec.kind != "interpolation"
        out.attrs = provenance_attrs(
            ds.attrs,
            f"Downscaler(factor={self.factor}, method={self.method!r}, "
            f"conserve={self.conserve!r}).downscale",
            method=self.method,
            downscale_factor=self.factor,
            conservation=self.conserve or "none",
            calibrated=bool(calibrated),
            spectral_calibration=calibration,
            run_dir=None if self.run_dir is None else str(self.run_dir),
            checkpoint_step=self.checkpoint_step,
            seed=int(seed) if stochastic else None,
        )
        return out

    # -- evaluation -----------------------------------------------------------------------------
    def report(
        self,
        truth,
        path: str | os.PathLike,
        *,
        baselines=("bicubic",),
        members: int = 4,
        seed: int = 0,
        variable: str | None = None,
    ):
        """Score this method on held-out fine ``truth`` next to interpolation ``baselines``.

        ``truth`` is coarsened by ``factor``, downscaled by every method and compared with
        itself (:func:`climgen.tasks.downscale.scoring.compare_methods`: RMSE, high-k spectral
        error, W1, |Δq99.9|, conservation error, CRPS for ensembles of ``members``). Writes
        the page ``path`` (a ``.html`` file, or a folder that gets ``index.html``) with its
        figures and ``scores.json``; returns ``(scores, page_path)``.
        """
        from climgen.tasks.downscale.scoring import downscale_report

        baselines = [baselines] if isinstance(baselines, str) else list(baselines)
        if not baselines:
            raise ClimgenInputError("report needs at least one baseline, e.g. ('bicubic',)")
        methods = {
            b: Downscaler(self.factor, b, conserve=self.conserve or False, variables=self.variables)
            for b in baselines
            if b != self.method
        }
        methods[self.method] = self
        path = Path(path)
        page = path if path.suffix in (".html", ".htm") else path / "index.html"
        return downscale_report(
            truth,
            methods,
            page,
            variable=variable,
            members=members,
            seed=seed,
            baseline=baselines[0],
        )

    # -- persistence ----------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, which: str = "latest", ema: bool = True):
        """Reload a trained downscaler from its run directory (no code is run from files)."""
        run_dir = Path(run_dir)
        if not (run_dir / _FINE_TEMPLATE).exists():
            raise ClimgenInputError(
                f"{run_dir} is not a downscaling run directory (no {_FINE_TEMPLATE}); give "
                "the directory that Downscaler.fit wrote"
            )
        if (run_dir / _BASELINE).exists():
            return cls._load_baseline(run_dir)
        import climgen.families.superres  # noqa: F401  (registers the family)

        corrdiff = (run_dir / "diffusion").is_dir()
        reg_dir = run_dir / "regression" if corrdiff else run_dir
        family, ckpt = load_family(reg_dir, which=which, ema=ema)
        card = ckpt.card
        ds = cls(
            card["factor"],
            card["method"],
            conserve=card.get("conserve") or False,
            variables=card["variables"],
            sample_dim=card["sample_dim"],
            context=int(card.get("context", 0)),
        )
        ds.sample_step = card.get("sample_step")
        ds.family = family
        ds.checkpoint_step = int(ckpt.step)
        if corrdiff:
            ds.diffusion, dckpt = load_family(run_dir / "diffusion", which=which, ema=ema)
            ds.residual_scale = float(dckpt.card["residual_scale"])
        ds.normalizer = Normalizer.from_state_dict(card["normalizer"])
        ds.fine_template = load_run_file(run_dir / _FINE_TEMPLATE)
        ds.coarse_template = load_run_file(run_dir / _COARSE_TEMPLATE)
        state = card.get("static")
        if state:
            static = load_run_file(run_dir / _STATIC)
            ds.static = static
            ds.static_tensor = torch.as_tensor(
                np.stack(
                    [
                        (to_canonical(static[v])[0].values - state["center"][v]) / state["scale"][v]
                        for v in state["variables"]
                    ]
                ),
                dtype=torch.float32,
            )
        ds.run_dir = run_dir
        ds._load_calibration()
        return ds

    @classmethod
    def _load_baseline(cls, run_dir: Path) -> Downscaler:
        """A calibrated interpolation baseline saved by :meth:`calibrate_spectrum`."""
        try:
            card = json.loads((run_dir / _BASELINE).read_text())
            down = cls(
                card["factor"],
                card["method"],
                conserve=card.get("conserve") or False,
                variables=card["variables"],
                sample_dim=card["sample_dim"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClimgenInputError(f"{run_dir / _BASELINE}: not a baseline card ({exc})") from exc
        down.fine_template = load_run_file(run_dir / _FINE_TEMPLATE)
        down.run_dir = run_dir
        down._load_calibration()
        return down

    def _load_calibration(self) -> None:
        if (self.run_dir / _CALIBRATION).exists():
            from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

            self.calibration = SpectralCalibration.load(self.run_dir / _CALIBRATION)

    def _check_fitted(self) -> None:
        if self.family is None:
            raise ClimgenInputError(
                f"method {self.method!r} must be trained first: call fit(ds_fine) or "
                "Downscaler.load(run_dir)"
            )

    def __repr__(self) -> str:
        state = (
            ""
            if self.spec.kind == "interpolation"
            else (f", run_dir={str(self.run_dir)!r}" if self.run_dir else ", not fitted")
        )
        if self.calibration is not None:
            state += ", spectrally calibrated"
        return (
            f"Downscaler(factor={self.factor}, method={self.method!r}, "
            f"conserve={self.conserve!r}{state})"
        )
