"""Gap filling: complete fields from gappy observations, with uncertainty, in one API.

``Infiller(method=...)`` covers learned and classical methods (:func:`available_fill_methods`):

``"partialconv"``
    partial-convolution U-Net (Kadow et al. 2020, :mod:`climgen.families.infill`) trained on
    complete fields under real or synthetic coverage masks; deterministic (no spread) — or,
    with ``reconstruction="crps"``, a stochastic U-Net trained with the fair CRPS whose
    ``members`` fills give the estimate (their mean) and the spread.
``"cvae"``
    conditional VAE (:class:`climgen.families.vae.ConditionalVAE`) conditioned on the observed
    values and the mask: ``members`` plausible complete fields, whose mean and standard
    deviation are the estimate and the spread. With ``likelihood_noise=True`` (default) each
    member gets the decoder's learned pixel noise N(0, s²), the aleatoric part of the error.
``"optimal-interpolation"``
    the Gaussian conditional of the fields under their empirical covariance, learned by
    ``fit`` (:mod:`climgen.tasks.fill.oi`; ``roll_fields=True`` makes it zonally homogeneous,
    ``hemispheric=True`` mirrors the fields about the equator): exact conditional mean and
    std, and ``members`` exact conditional draws. The strong linear baseline.
``"kriging"``, ``"nearest"``, ``"zonal-mean"``
    baselines of :mod:`climgen.tasks.fill.baselines`, usable without ``fit``; kriging gives its
    Gaussian predictive std as the spread.

``fit(ds_complete, masks=...)`` trains the networks with the one trainer: each training field
is shown under a coverage mask drawn from ``masks`` (real masks from a netCDF, any number,
cycled) or synthetic ones (:mod:`climgen.tasks.fill.masks`), rolled randomly in longitude.
Optional inputs: ``context=k`` neighbouring months on each side (gappy, with their own masks)
and ``aux`` static fields (e.g. land–sea fraction).

``fill(obs, members=16)`` returns a Dataset with ``<var>`` (the filled field; observed cells
bit-for-bit the input), ``<var>_spread`` (predictive std; NaN for methods without one),
``<var>_mask`` (the mask used: 1 = observed, kept), ``<var>_members`` (dim ``member``, for
ensemble methods) and provenance attributes.

:func:`climgen.tasks.fill.cross_validation.cross_validate` is the honest score: hide cells with a
coverage mask, fill, and score on the hidden cells only — on complete (simulated) fields, or on
real observations hiding the cells observed now but not in an earlier month;
:func:`~climgen.tasks.fill.cross_validation.cross_validation_report` writes the scores of several
methods and the report page, :func:`~climgen.tasks.fill.cross_validation.calibrate_spread` fits
``spread_inflation``.
Recipes (``task: fill``): :mod:`climgen.tasks.fill.recipe`; data preparation (regridding,
anomalies, masks from files): :mod:`climgen.tasks.fill.prepare`.

Reference: Kadow, Hall & Ulbrich (2020), *Artificial intelligence reconstructs missing
climate information*, Nature Geoscience 13, 408–413.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

import climgen.families.infill  # noqa: F401 - registers the "partialconv" family
from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import as_dataset
from climgen.data.normalize import Normalizer
from climgen.data.units import affine, to_units
from climgen.errors import ClimgenInputError
from climgen.tasks._common import (
    check_neighbours,
    sample_step,
)
from climgen.tasks.fill.gaussian import fit_gaussian, use_nugget
from climgen.tasks.fill.masks import (
    pair_masks,
)
from climgen.tasks.fill.methods import (
    FillRequest,
    available_fill_methods,
    fill_method_names,
    get_method,
)
from climgen.tasks.fill.names import OI, OI_OPTIONS
from climgen.tasks.fill.networks import check_member_noise, fit_network
from climgen.tasks.fill.oi import GaussianFieldModel
from climgen.tasks.fill.oi_noise import check_nugget
from climgen.tasks.fill.output import assemble
from climgen.tasks.fill.prepare import (
    anomaly_base,
    check_observations,
    day_positions,
    observation_kind,
    read_observations,
    to_run_grid,
)
from climgen.tasks.fill.run_dir import CLIMATOLOGY, as_mask, load_infiller  # noqa: F401
from climgen.train import TrainConfig

LOGGER = logging.getLogger(__name__)

__all__ = ["Infiller", "available_fill_methods", "fill_method_names"]


def _check_flags(spread_inflation, context, **flags) -> None:
    """One clear error for a bad ``spread_inflation``, ``context`` or boolean flag."""
    α = spread_inflation
    if isinstance(α, bool) or not isinstance(α, (int, float)) or not np.isfinite(α) or α <= 0:
        raise ClimgenInputError(f"spread_inflation must be a finite number > 0, got {α!r}")
    if not isinstance(context, int) or context < 0:
        raise ClimgenInputError(f"context must be an int ≥ 0, got {context!r}")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ClimgenInputError(f"{name} must be true or false, got {value!r}")


def _pick_variable(ds: xr.Dataset, variable: str | None, time_dim: str) -> str:
    if variable is not None:
        if variable not in ds.data_vars:
            raise ClimgenInputError(
                f"variable '{variable}' not found; available: {sorted(map(str, ds.data_vars))}"
            )
        return variable
    names = [str(v) for v in ds.data_vars if ds[v].ndim >= 2 and not str(v).endswith("_mask")]
    with_time = [v for v in names if time_dim in ds[v].dims]
    names = with_time or names
    if len(names) != 1:
        raise ClimgenInputError(
            f"cannot tell which variable to fill among {names}; pass variable=... (on the "
            "command line: --variable)"
        )
    return names[0]


class Infiller:
    """Fill gaps in gridded observations with a learned or classical method.

    Parameters
    ----------
    method : one of :func:`available_fill_methods`.
    variable : variable to fill (default: the only data variable with a time dim).
    time_dim : the dim indexing fields (default ``"time"``).
    context : networks and optimal interpolation — neighbouring time steps on each side given
        as extra (gappy) inputs; optimal interpolation then conditions on their observed cells
        through the lagged covariances learned from consecutive training fields.
    mask_kind, coverage, n_synthetic : synthetic training masks when ``fit`` gets no masks
        (:func:`~climgen.tasks.fill.masks.synthetic_masks`).
    roll_fields : networks and optimal interpolation — augment training by rolling each
        training field (with its context neighbours) by a random number of longitude cells,
        independently of its mask (optimal interpolation: average the covariance over every
        roll, i.e. assume it zonally homogeneous). Valid only for statistically zonally
        homogeneous data (aqua-planet / Held–Suarez simulations); on Earth-like data with
        land–sea contrast it teaches the wrong geography, and it cannot be combined with
        ``aux`` inputs. Default False.
    fill_rolls : partialconv with ``roll_fields=True`` only — at ``fill``, average the network's
        output over ``fill_rolls`` evenly spaced longitude rolls of the input (each rolled
        back), ``x̂ = (1/R) Σ_r S_{-r} f(S_r x, S_r m)``: test-time augmentation by the symmetry
        the network was trained with. The strided encoder is not exactly shift-equivariant, so
        the R views differ and their mean has a lower error; cost × R. Default 1 (no rolls).
        For the stochastic (``reconstruction="crps"``) U-Net, member k is drawn under roll
        ``k mod R`` instead, at no extra cost.
    flip_fields : networks — augment training by mirroring each training item (field, mask,
        neighbours, prior channels) about the equator with probability 1/2. Valid only for
        data statistically symmetric about the equator (aqua-planet / Held–Suarez); with
        ``prior``, needs ``prior_options={"hemispheric": True}``. Default False.
    likelihood_noise : cvae only — add the decoder's learned pixel noise to each member.
    spread_inflation : ensembles only — factor α > 0 on each member's deviation from the ensemble
        mean, ``x_i ← x̄ + α (x_i − x̄)`` (mean unchanged, spread × α). 1 = raw ensemble; fit it
        on a validation split with :func:`climgen.tasks.fill.cross_validation.calibrate_spread`.
    prior : partialconv only — ``"optimal-interpolation"`` gives the network, as one more
        input channel, the optimal-interpolation estimate of the field from the same
        observations (the Gaussian conditional mean under the covariance learned from the
        training fields, :mod:`climgen.tasks.fill.oi`), so that it learns a correction of the
        best linear estimate rather than the whole map. Default None.
    prior_options : options of that prior (``nugget``, ``hemispheric``; ``roll_fields`` makes
        its covariance zonally homogeneous).
    residual : with ``prior`` only — the network corrects the optimal-interpolation estimate
        instead of redrawing the map: ``x̂ = E_OI[x | obs] + r`` with ``r = f(...)``, given as
        inputs the OI mean, the OI standard deviation and the OI means of the ``context``
        neighbours on each side (besides the gappy field, its mask and the gappy neighbours);
        the output layer starts at zero (an untrained network returns the OI mean) and the
        observed cells are kept, so r = 0 there. With ``reconstruction="crps"`` this is the
        generative infiller: members ``E_OI[x | obs] + r_i`` whose residuals are drawn by
        the CRPS-trained network (:mod:`climgen.families.infill`). Default False.
    member_noise : with ``residual`` and ``reconstruction="crps"`` — where the members'
        deviations come from: ``"network"`` (default, its own draws) or ``"oi"``: the network's
        ensemble mean plus the OI conditional draws' deviations, the OI ensemble re-centred
        on the better mean (:func:`~climgen.tasks.fill.networks.recentre_on`).
    **options : family options (networks: e.g. ``base_channels``, ``hole_weight``,
        ``latent_dim``), kriging options (``max_fit_points``, ``nu``) or optimal-interpolation
        options (``nugget``: τ² relative to the mean variance, ``"auto"`` (default):
        chosen by held-out likelihood of the training fields, :mod:`climgen.tasks.fill.oi`,
        or ``"ml"``: estimated at fill time, with a scale of the covariance, by the marginal
        likelihood of the observations, :mod:`climgen.tasks.fill.oi_noise` — for real
        observations, which carry errors the simulated training fields do not; ``hemispheric``:
        also learn from every field mirrored about the equator, default False; ``solver``:
        ``"dense"`` (the exact N × N covariance), ``"reduced"`` (the leading ``rank`` EOFs plus
        a diagonal, solved by Woodbury identities: any grid size,
        :mod:`climgen.tasks.fill.oi_reduced`) or ``"auto"`` (default: dense up to 20,000
        cells); ``rank``: EOFs kept by the reduced solver, default 200).

    Example
    -------
    >>> filled = Infiller("kriging").fill(obs)                            # doctest: +SKIP
    >>> net = Infiller("partialconv", base_channels=16).fit(sims, masks="mask.nc",
    ...     run_dir="runs/fill", max_steps=2000)                          # doctest: +SKIP
    >>> net.fill(obs).tas_spread                                          # doctest: +SKIP
    """

    def __init__(
        self,
        method: str = "kriging",
        *,
        variable: str | None = None,
        time_dim: str = "time",
        context: int = 0,
        mask_kind: str = "mixed",
        coverage=(0.1, 0.6),
        n_synthetic: int = 512,
        roll_fields: bool = False,
        fill_rolls: int = 1,
        flip_fields: bool = False,
        likelihood_noise: bool = True,
        spread_inflation: float = 1.0,
        prior: str | None = None,
        prior_options: dict | None = None,
        residual: bool = False,
        member_noise: str = "network",
        **options,
    ):
        spec = get_method(method)  # an unknown name raises, listing the known
        allowed = spec.options
        if allowed is not None:
            unknown = sorted(set(options) - allowed)
            if unknown:
                raise ClimgenInputError(
                    f"method {method!r} has no option(s) {unknown}; valid: {sorted(allowed)}"
                )
        _check_flags(spread_inflation, context, roll_fields=roll_fields, flip_fields=flip_fields)
        self.method, self.variable, self.time_dim = method, variable, time_dim
        self.roll_fields = roll_fields and spec.trained
        self.flip_fields = flip_fields and spec.trained and method != OI
        if isinstance(fill_rolls, bool) or not isinstance(fill_rolls, int) or fill_rolls < 1:
            raise ClimgenInputError(f"fill_rolls must be an int ≥ 1, got {fill_rolls!r}")
        if fill_rolls > 1 and not (method == "partialconv" and self.roll_fields):
            raise ClimgenInputError(
                "fill_rolls > 1 needs method='partialconv' with roll_fields=True (a network "
                "trained on longitude-rolled fields)"
            )
        self.fill_rolls = fill_rolls
        if prior not in (None, OI) or (prior is not None and method != "partialconv"):
            raise ClimgenInputError(
                f"prior must be None or {OI!r} (with method='partialconv'), got {prior!r} "
                f"for method {method!r}"
            )
        self.prior, self.prior_options = prior, dict(prior_options or {})
        if not isinstance(residual, bool) or (residual and prior is None):
            raise ClimgenInputError(
                f"residual must be true or false, and true only with prior={OI!r}; got "
                f"residual={residual!r}, prior={prior!r}"
            )
        self.residual = residual
        self.member_noise = check_member_noise(member_noise, residual, options)
        unknown = sorted(set(self.prior_options) - OI_OPTIONS)
        if unknown:
            raise ClimgenInputError(f"prior_options {unknown} unknown; valid: {sorted(OI_OPTIONS)}")
        check_nugget(self.prior_options.get("nugget", "auto"), "prior_options nugget")
        check_nugget(options.get("nugget", "auto") if method == OI else "auto")
        self.context = context if spec.trained else 0
        self.mask_kind, self.coverage, self.n_synthetic = mask_kind, coverage, n_synthetic
        self.likelihood_noise = bool(likelihood_noise)
        self.spread_inflation = float(spread_inflation)
        self.options = options
        self.family = None
        self.gaussian: GaussianFieldModel | None = None
        self.normalizer: Normalizer | None = None
        self.sample_step: float | None = None  # of the training series (context checks)
        self.template: xr.DataArray | None = None
        self.climatology: np.ndarray | None = None
        # climatology.nc of a run trained on anomalies (recipe ``anomalies: true``): fill
        # subtracts it from absolute observations and adds it back (see ``fill``)
        self.anomaly_climatology: xr.DataArray | None = None
        self.units: str | None = None
        self.aux: np.ndarray | None = None
        self.run_dir: Path | None = None
        self.checkpoint_step: int | None = None
        self.result = None

    @property
    def is_ensemble(self) -> bool:
        """True when ``fill`` returns members: "cvae", "optimal-interpolation", and
        "partialconv" with ``reconstruction="crps"``."""
        if self.method != "partialconv":
            return self.method in ("cvae", OI)
        if self.family is not None:
            return bool(self.family.stochastic)
        return self.options.get("reconstruction") == "crps"

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        ds_complete,
        masks=None,
        *,
        aux=None,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        train: TrainConfig | dict | None = None,
        seed: int = 0,
        callbacks=(),
        **train_options,
    ) -> Infiller:
        """Learn from complete fields; returns ``self``.

        Baselines only record the climatology (the zonal-mean fallback) and units. Networks
        are trained with :class:`climgen.train.Trainer` (``train``/``train_options``:
        :class:`~climgen.train.TrainConfig` fields such as ``max_steps``, ``batch_size``).
        ``masks``: None or ``"synthetic"`` (synthetic masks), or real masks — a DataArray or a
        netCDF path, any number of time steps, on the data grid; they are cycled with random
        longitude rolls. ``aux``: DataArray(s) of static inputs on the grid (H, W).
        """
        ds = as_dataset(ds_complete)
        var = self.variable = _pick_variable(ds, self.variable, self.time_dim)
        da = ds[var]
        if self.time_dim not in da.dims:
            raise ClimgenInputError(
                f"variable '{var}' has no '{self.time_dim}' dim (dims {da.dims}); "
                "fit needs a series of complete fields (time_dim=...)"
            )
        grid = detect_grid(da)
        canon, _ = to_canonical(da, grid)
        self.units = da.attrs.get("units")
        times = da[self.time_dim].values if self.time_dim in da.coords else None
        self.sample_step = sample_step(times)
        self.template = xr.zeros_like(canon.isel({self.time_dim: 0}, drop=True), np.float32)
        self.template = self.template.load()
        self.template.attrs = dict(da.attrs)
        if get_method(self.method).kind == "baseline":
            self.climatology = np.asarray(canon.mean(self.time_dim).values, dtype=np.float64)
            return self
        if self.method == OI or self.prior is not None:  # loads the fields (networks stream)
            values = canon.transpose(self.time_dim, grid.y_dim, grid.x_dim).values  # (T, H, W)
        if self.method == OI:
            return fit_gaussian(self, values, grid, run_dir, self.options)
        return fit_network(
            self,
            ds,
            da,
            canon,
            grid,
            values if self.prior is not None else None,
            masks,
            aux,
            run_dir,
            resume,
            train,
            seed,
            callbacks,
            train_options,
        )

    # -- filling ---------------------------------------------------------------------------
    def fill(
        self,
        obs,
        *,
        members: int = 16,
        mask=None,
        seed: int = 0,
        batch_size: int = 16,
        at=None,
        values: str = "auto",
        progress: bool = False,
        tile_size: int | None = None,
        tile_halo: int | None = None,
    ) -> xr.Dataset:
        """Fill the missing cells of ``obs`` (Dataset, DataArray or path; NaN = missing).

        ``mask`` (optional, 1 = observed): hide further cells (a cell counts as observed only
        when the mask says so *and* its value is finite). ``members``: ensemble size for
        ensemble methods. ``at``: fill only these fields (0-based positions, or labels of the
        time coordinate such as ``"1893-08-15"``); the others still serve as context
        (``context > 0``). ``progress``: a bar over the fields (on a terminal).
        ``tile_size`` (partialconv): core tile in grid cells, None (tiles only when a batch
        does not fit in a quarter of the available memory) or 0 (never tile); ``tile_halo``:
        context cells around each tile, default the U-Net's receptive radius, which makes the
        tiled fill equal the untiled one (:mod:`climgen.tasks.fill.tiled`).

        Observations as they come: on another lat/lon grid than the run's they are regridded
        to it (gaps stay gaps); when the run was trained on anomalies (it has a
        ``climatology.nc``), ``values="auto"`` tells absolute values from anomalies (nearer the
        climatology or nearer zero; ``"absolute"`` / ``"anomalies"`` say it), absolute values
        are filled as anomalies and the output holds both (``<var>`` as given and
        ``<var>_anomaly`` or ``<var>_absolute``). Returns the Dataset described in the module
        docstring.
        """
        if int(members) != members or members < 1:
            raise ClimgenInputError(f"members must be a positive integer, got {members!r}")
        if get_method(self.method).trained and self.family is None and self.gaussian is None:
            raise ClimgenInputError(
                f"the {self.method} infiller is not trained: call fit(...) or Infiller.load()"
            )
        ds_obs = as_dataset(obs)
        var = _pick_variable(ds_obs, self.variable, self.time_dim)
        da = read_observations(ds_obs[var])
        units_given = da.attrs.get("units")
        da, units_note = to_units(
            var,
            da,
            self.units,
            src=str(obs) if isinstance(obs, (str, os.PathLike)) else "the data given to fill()",
            target_src=str(self.run_dir) if self.run_dir else "the data given to fit()",
            role="observations",
            target_role="training data",
            difference=values == "anomalies",
        )
        # an affine conversion (degC → K) adds its offset to absolute values only
        shift = affine(units_given, self.units)[1] if units_note and values != "anomalies" else 0
        observed = np.isfinite(da)
        if mask is not None:
            observed = observed & (pair_masks(as_mask(mask), da, time_dim=self.time_dim) == 1)
        da, observed, regrid_note = to_run_grid(da, observed, self.template)
        grid = detect_grid(da)
        canon, state = to_canonical(da, grid)
        canon_obs, _ = to_canonical(observed.transpose(*da.dims), grid)
        single = self.time_dim not in canon.dims
        if at is not None:
            targets = day_positions(canon, at, self.time_dim)
            if canon.ndim != 3:
                raise ClimgenInputError(
                    f"at= / --days needs '{var}' with '{self.time_dim}' as its only non-spatial "
                    f"dim; it has dims {tuple(map(str, da.dims))}"
                )
        raw = np.asarray(canon.values)
        keep = np.asarray(canon_obs.values, dtype=bool)
        if single:
            raw, keep = raw[None], keep[None]
        raw, keep = raw.reshape(-1, *raw.shape[-2:]), keep.reshape(-1, *keep.shape[-2:])
        targets = np.arange(raw.shape[0]) if at is None else targets
        if self.context and not single and self.time_dim in canon.coords:
            check_neighbours(
                canon[self.time_dim].values,
                self.context,
                step=self.sample_step,
                targets=targets,
                what="fields",
                hint="give the consecutive fields around the ones to fill and choose those "
                "with at= (--days)",
            )
        clim = anomaly_base(self.anomaly_climatology, canon)
        kind = observation_kind(
            values, raw - shift, keep, None if clim is None else clim - shift, var
        )
        if kind == "anomalies" and shift:  # anomalies are differences: no offset
            raw = raw - shift
            units_note += f"; read as anomalies (differences): without the offset {shift:.10g}"
        if units_note:
            LOGGER.info("'%s': %s", var, units_note)
        base = raw - clim if kind == "absolute" else raw  # what the run fills: its training kind
        check_observations(self, canon.copy(data=base.reshape(canon.shape)), var)
        empty = targets[~keep[targets].any(axis=(1, 2))]
        if empty.size:
            raise ClimgenInputError(
                f"'{var}' has no observed value at {self.time_dim} index {empty[:5].tolist()}: "
                "an all-missing field cannot be filled"
            )
        gappy = np.where(keep, base, np.nan).astype(np.float64)
        lat = canon[grid.y_dim].values if grid.y_dim in canon.coords else None
        lon = canon[grid.x_dim].values if grid.x_dim in canon.coords else None
        method = get_method(self.method)
        if method.needs_latlon and (grid.kind != "latlon" or lat is None):
            raise ClimgenInputError(
                f"method {self.method!r} needs a lat/lon grid with coordinates; '{var}' is "
                f"{grid.shape_name}"
            )
        tiles = (tile_size, tile_halo)
        request = FillRequest(
            gappy, keep, targets, lat, lon, members, seed, batch_size, progress, *tiles
        )
        mean, spread, ensemble, method_info = method.fill(self, request)
        info: dict = {"seed": int(seed), **method_info}
        raw, keep, base = raw[targets], keep[targets], base[targets]
        out_dtype = raw.dtype if raw.dtype.kind == "f" else np.float64
        filled = np.where(keep, base, mean.astype(out_dtype))  # observed cells: the input's bits
        if spread is None:
            spread = np.where(keep, 0.0, np.nan)
        spread = np.where(keep, 0.0, spread).astype(out_dtype)
        if ensemble is not None:
            ensemble = np.where(keep[None], base[None], ensemble.astype(out_dtype))
        extra = {}
        if kind is not None:
            absolute = (filled + clim).astype(out_dtype)
            if kind == "absolute":  # observed cells: the input's bits
                absolute = np.where(keep, raw, absolute)
            info["values"] = kind
            if kind == "absolute":
                extra[f"{var}_anomaly"] = (filled, "anomaly from the run's climatology")
                filled = absolute
                if ensemble is not None:
                    ensemble = np.where(keep[None], raw[None], ensemble + clim)
            else:
                extra[f"{var}_absolute"] = (absolute, "anomaly plus the run's climatology")
        if regrid_note:
            info["regrid"] = regrid_note
        if units_note:
            info["units"] = units_note
        if at is not None:
            canon = canon.isel({self.time_dim: targets})
        out = (filled, spread, keep, ensemble, members, info, extra)
        return assemble(self, canon, state, var, da, ds_obs.attrs, *out)

    def set_nugget(self, nugget) -> Infiller:
        """Fill with this OI nugget from now on: a number, ``"auto"`` or ``"ml"`` (estimated
        from the observations; :func:`~climgen.tasks.fill.gaussian.use_nugget`)."""
        return use_nugget(self, nugget)

    def _climatology_for(self, gappy: np.ndarray) -> np.ndarray | None:
        if self.climatology is None or self.climatology.shape != gappy.shape[-2:]:
            return None
        return self.climatology

    # -- persistence -----------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, which: str = "latest", ema: bool = True):
        """Reload a trained infiller from the run directory ``fit`` wrote."""
        return load_infiller(cls, run_dir, which=which, ema=ema)

    def __repr__(self) -> str:
        state = f"run_dir={str(self.run_dir)!r}" if self.run_dir else "no run dir"
        return f"Infiller(method={self.method!r}, variable={self.variable!r}, {state})"
