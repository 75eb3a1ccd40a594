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

The :class:`Downscaler` holds the settings and the fitted state; the work of each method kind
is done by one object: :class:`~climgen.tasks.downscale.interpolation_method.
InterpolationMethod`, :class:`~climgen.tasks.downscale.network_method.NetworkMethod` and
:class:`~climgen.tasks.downscale.diffusion_method.DiffusionMethod`, with the training pairs
in :mod:`~climgen.tasks.downscale.pairs`, the conservation corrections in
:mod:`~climgen.tasks.downscale.conservation` and the spectral calibration in
:mod:`~climgen.tasks.downscale.calibration`.

Example
-------
>>> import climgen as cg                                                    # doctest: +SKIP
>>> fine = cg.Downscaler(factor=4, method="bicubic", conserve=True).downscale(coarse)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.data.coarsen import coarsen
from climgen.data.grids import detect_grid
from climgen.data.io import as_dataset
from climgen.data.normalize import Normalizer
from climgen.data.patches import patch_size_pair
from climgen.errors import ClimgenInputError
from climgen.tasks._common import field_variables, keep_input_layout, provenance_attrs
from climgen.tasks.downscale.calibration import calibrate_spectrum
from climgen.tasks.downscale.conservation import (
    back_project,
    check_back_projection,
    check_conserve,
)
from climgen.tasks.downscale.diffusion_method import DiffusionMethod
from climgen.tasks.downscale.interpolation import cell_bounds
from climgen.tasks.downscale.interpolation_method import InterpolationMethod
from climgen.tasks.downscale.methods import (
    BASELINE,
    CALIBRATION,
    DOWNSCALE_METHODS,
    FINE_TEMPLATE,
    MethodSpec,
    available_downscale_methods,
)
from climgen.tasks.downscale.network_method import NetworkMethod
from climgen.tasks.downscale.pairs import check_augment, check_context
from climgen.train import TrainConfig

__all__ = [
    "Downscaler",
    "available_downscale_methods",
    "back_project",
    "DOWNSCALE_METHODS",
    "MethodSpec",
]

# The object that does the work of each MethodSpec.kind.
_KINDS = {
    "interpolation": InterpolationMethod,
    "network": NetworkMethod,
    "corrdiff": DiffusionMethod,
}


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
        self.augment = check_augment(augment)
        self.context = check_context(context)
        self.sample_step: float | None = None  # of the training series (context checks)
        self.back_projection = check_back_projection(back_projection)
        if method not in DOWNSCALE_METHODS:
            raise ClimgenInputError(
                f"unknown downscaling method {method!r}; choose one of "
                f"{', '.join(available_downscale_methods())}"
            )
        self.method = method
        self.spec = DOWNSCALE_METHODS[method]
        self.kind = _KINDS[self.spec.kind]()  # the object that does this kind's work
        self.conserve = check_conserve(conserve)
        self.variables = [variables] if isinstance(variables, str) else variables
        self.sample_dim = sample_dim
        self.normalization = normalization
        self.diffusion_options: dict = {}
        self.kind.configure(self, method, method_options, static)  # sets method_options
        self.static = None if static is None else as_dataset(static)
        self.tile_size, self.tile_halo = tile_size, tile_halo
        self.patch_size = None
        if patch_size is not None:
            if not self.kind.patches:
                raise ClimgenInputError(
                    f"patch_size applies to the networks 'regression' and 'srgan', not "
                    f"method {method!r}"
                )
            self.patch_size = patch_size_pair(patch_size)
        if self.augment and not self.kind.trained:
            raise ClimgenInputError(
                f"augment applies to trained methods, not the interpolation {method!r}"
            )
        if self.context and not self.kind.trained:
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
        return self.kind.fit(
            self,
            data,
            fine,
            run_dir=run_dir,
            resume=resume,
            train=train,
            callbacks=callbacks,
            **train_options,
        )

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
                f"that has {CALIBRATION})"
            )
        ds = as_dataset(coarse, self.variables)
        out = self.kind.downscale(self, ds, members, seed, batch_size, calibrated, progress)
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
        return calibrate_spectrum(
            self,
            data,
            fine,
            n_fields=n_fields,
            members=members,
            seed=seed,
            max_gain=max_gain,
            per_row=per_row,
            run_dir=run_dir,
        )

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
        stochastic = self.kind.trained
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
        if not (run_dir / FINE_TEMPLATE).exists():
            raise ClimgenInputError(
                f"{run_dir} is not a downscaling run directory (no {FINE_TEMPLATE}); give "
                "the directory that Downscaler.fit wrote"
            )
        if (run_dir / BASELINE).exists():
            return InterpolationMethod.load_run(cls, run_dir)
        return NetworkMethod.load_run(cls, run_dir, which=which, ema=ema)

    def _load_calibration(self) -> None:
        if (self.run_dir / CALIBRATION).exists():
            from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

            self.calibration = SpectralCalibration.load(self.run_dir / CALIBRATION)

    def _check_fitted(self) -> None:
        if self.family is None:
            raise ClimgenInputError(
                f"method {self.method!r} must be trained first: call fit(ds_fine) or "
                "Downscaler.load(run_dir)"
            )

    def __repr__(self) -> str:
        state = (
            ""
            if not self.kind.trained
            else (f", run_dir={str(self.run_dir)!r}" if self.run_dir else ", not fitted")
        )
        if self.calibration is not None:
            state += ", spectrally calibrated"
        return (
            f"Downscaler(factor={self.factor}, method={self.method!r}, "
            f"conserve={self.conserve!r}{state})"
        )
