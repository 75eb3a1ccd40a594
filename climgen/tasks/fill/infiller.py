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

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import climgen.families.infill  # noqa: F401 - registers the "partialconv" family
from climgen.data.dataset import FieldDataset
from climgen.data.grids import area_weights, detect_grid, restore, to_canonical
from climgen.data.io import as_dataset, climgen_version, load_run_file, write_fields
from climgen.data.masks import MASK_ATTRS, load_mask
from climgen.data.normalize import Normalizer
from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError
from climgen.tasks._common import (
    build_seeded,
    check_neighbours,
    default_run_dir,
    sample_step,
)
from climgen.tasks.fill.baselines import BASELINES
from climgen.tasks.fill.masks import (
    canonical_mask_array,
    pair_masks,
    roll_longitude,
    synthetic_masks,
)
from climgen.tasks.fill.methods import (
    FillRequest,
    available_fill_methods,
    get_method,
)
from climgen.tasks.fill.oi import GaussianFieldModel
from climgen.tasks.fill.oi_reduced import DEFAULT_RANK, fit_field_model, load_field_model
from climgen.tasks.fill.prepare import day_positions, observation_kind, to_run_grid
from climgen.train import TrainConfig, Trainer, load_family

__all__ = ["Infiller", "available_fill_methods", "FILL_METHODS", "TRAINED"]

NETWORKS = ("partialconv", "cvae")
OI = "optimal-interpolation"
TRAINED = (*NETWORKS, OI)  # methods that need ``fit`` (and a run directory) before ``fill``
FILL_METHODS = (*NETWORKS, OI, *BASELINES)
_TEMPLATE, _NORMALIZER, _AUX, _SETTINGS = "template.nc", "normalizer.json", "aux.nc", "fill.json"
_OI_MODEL = "gaussian.npz"
CLIMATOLOGY = "climatology.nc"  # a run trained on anomalies: the climatology they are from


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


def _as_mask(masks) -> xr.DataArray:
    if isinstance(masks, (str, os.PathLike)):
        return load_mask(masks)
    if isinstance(masks, xr.Dataset):
        names = list(masks.data_vars)
        if len(names) != 1:
            raise ClimgenInputError(f"mask Dataset holds {names}; pass the mask DataArray")
        return masks[names[0]]
    if isinstance(masks, xr.DataArray):
        return masks
    raise ClimgenInputError(
        f"masks must be a DataArray, a file path or 'synthetic', got {type(masks).__name__}"
    )


class _MaskedFields(torch.utils.data.Dataset):
    """Training items: a normalised complete field under a random (rolled) coverage mask.

    ``style="partialconv"`` gives ``{"x", "mask", "cond", "cond_mask"}``; ``style="cvae"``
    gives ``{"x", "cond"}`` with ``cond = [x·m, m, neighbours·m', m', aux]``.
    """

    def __init__(
        self,
        fields: FieldDataset,
        bank: np.ndarray,
        *,
        context,
        aux,
        style,
        seed,
        roll=False,
        prior=None,
    ):
        self.fields, self.bank, self.context, self.style = fields, bank, context, style
        self.aux = None if aux is None else torch.from_numpy(aux.astype(np.float32))
        self.seed, self.draws, self.roll = int(seed), 0, bool(roll)
        self.prior = prior

    def __len__(self) -> int:
        return len(self.fields)

    def _mask(self, rng: np.random.Generator, which: list | None = None) -> torch.Tensor:
        b, q = int(rng.integers(len(self.bank))), int(rng.integers(self.bank.shape[-1]))
        if which is not None:
            which += [b, q]
        m = roll_longitude(self.bank[b][None], q)
        return torch.from_numpy(m.astype(np.float32))

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, int(i), self.draws])
        self.draws += 1
        # roll_fields: the target and its neighbours shifted together by one random number
        # of longitude cells (a symmetry of zonally homogeneous training data).
        shift = int(rng.integers(self.bank.shape[-1])) if self.roll else 0

        def field(k: int) -> torch.Tensor:
            f = self.fields[k]
            return torch.roll(f, shift, dims=-1) if shift else f

        x = field(i)
        which: list = []
        mask = self._mask(rng, which)
        cond, cond_mask = [], []
        for j in [*range(-self.context, 0), *range(1, self.context + 1)]:
            if 0 <= i + j < len(self.fields):
                cond.append(field(i + j))
                cond_mask.append(self._mask(rng).expand_as(x))
            else:
                cond.append(torch.zeros_like(x))
                cond_mask.append(torch.zeros_like(x))
        if self.aux is not None:
            cond.append(self.aux)
            cond_mask.append(torch.ones_like(self.aux))
        if self.prior is not None:
            cond.append(torch.from_numpy(self.prior(i, shift, *which))[None])
            cond_mask.append(torch.ones_like(x))
        return _network_item(x, mask, cond, cond_mask, self.style)


class _PriorMeans:
    """Normalised optimal-interpolation means of the training fields under the training masks,
    the ``prior`` input channel of a partial-conv infiller, cached per (mask, roll).

    Field i rolled by ``shift`` under bank mask b rolled by q: with a zonally homogeneous
    covariance (``roll_fields``, the only case with shift ≠ 0),
    fill(S_s x, S_q m) = S_s fill(x, S_(q−s) m), so one factorisation per
    (b, (q − s) mod W) serves every field and every shift. ``max_entries`` bounds the cache
    (each entry holds T fields).
    """

    def __init__(self, model, fields, bank, center, scale, max_entries: int = 256):
        self.model, self.fields, self.bank = model, fields, bank
        self.center, self.scale, self.max_entries = center, scale, max_entries
        self.cache: dict = {}

    def __call__(self, i: int, shift: int, b: int, q: int) -> np.ndarray:
        key = (b, (q - shift) % self.bank.shape[-1])
        if key not in self.cache:
            if len(self.cache) >= self.max_entries:
                self.cache.pop(next(iter(self.cache)))
            mask = roll_longitude(self.bank[b][None], key[1])[0] > 0
            means = self.model.conditional_means(self.fields, mask)
            self.cache[key] = ((means - self.center) / self.scale).astype(np.float32)
        return np.roll(self.cache[key][i], shift, axis=-1)


def _network_item(x, mask, cond, cond_mask, style) -> dict:
    """One item (C, H, W) tensors → the batch dict of ``style``."""
    if style == "partialconv":
        item = {"x": x, "mask": mask}
        if cond:
            item["cond"], item["cond_mask"] = torch.cat(cond), torch.cat(cond_mask)
        return item
    parts = [x * mask, mask.expand_as(x)]
    for c, cm in zip(cond, cond_mask):
        parts += [c * cm, cm]
    return {"x": x, "cond": torch.cat(parts)}


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
    **options : family options (networks: e.g. ``base_channels``, ``hole_weight``,
        ``latent_dim``), kriging options (``max_fit_points``, ``nu``) or optimal-interpolation
        options (``nugget``: τ² relative to the mean variance, or ``"auto"`` (default):
        chosen by held-out likelihood, :mod:`climgen.tasks.fill.oi`; ``hemispheric``:
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
        likelihood_noise: bool = True,
        spread_inflation: float = 1.0,
        prior: str | None = None,
        prior_options: dict | None = None,
        **options,
    ):
        allowed = get_method(method).options  # an unknown name raises, listing the known
        if allowed is not None:
            unknown = sorted(set(options) - allowed)
            if unknown:
                raise ClimgenInputError(
                    f"method {method!r} has no option(s) {unknown}; valid: {sorted(allowed)}"
                )
        if (
            isinstance(spread_inflation, bool)
            or not isinstance(spread_inflation, (int, float))
            or not np.isfinite(spread_inflation)
            or spread_inflation <= 0
        ):
            raise ClimgenInputError(
                f"spread_inflation must be a finite number > 0, got {spread_inflation!r}"
            )
        if not isinstance(context, int) or context < 0:
            raise ClimgenInputError(f"context must be an int ≥ 0, got {context!r}")
        if not isinstance(roll_fields, bool):
            raise ClimgenInputError(f"roll_fields must be true or false, got {roll_fields!r}")
        self.method, self.variable, self.time_dim = method, variable, time_dim
        self.roll_fields = roll_fields and method in TRAINED
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
        unknown = sorted(set(self.prior_options) - get_method(OI).options)
        if unknown:
            raise ClimgenInputError(
                f"prior_options {unknown} unknown; valid: {sorted(get_method(OI).options)}"
            )
        self.context = context if method in TRAINED else 0
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
        if self.method in BASELINES:
            self.climatology = np.asarray(canon.mean(self.time_dim).values, dtype=np.float64)
            return self
        if self.method == OI or self.prior is not None:  # loads the fields (networks stream)
            values = canon.transpose(self.time_dim, grid.y_dim, grid.x_dim).values  # (T, H, W)
        if self.method == OI:
            return self._fit_gaussian(values, grid, run_dir, self.options)
        shape = (canon.sizes[grid.y_dim], canon.sizes[grid.x_dim])
        bank = self._mask_bank(masks, da, shape, seed)
        self.aux = self._aux_array(aux, da)
        if self.roll_fields and (self.aux is not None or not grid.periodic_x):
            why = (
                "aux inputs are fixed in space"
                if self.aux is not None
                else (f"the grid ({grid.shape_name}) is not periodic in longitude")
            )
            raise ClimgenInputError(f"roll_fields=True cannot be used here: {why}")
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("fill", self.method)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.normalizer = Normalizer.fit(ds, [var])
        fields = FieldDataset(ds, [var], sample_dim=self.time_dim, normalizer=self.normalizer)
        prior = None
        if self.prior is not None:
            self._fit_gaussian(values, grid, None, self.prior_options)
            center, scale = self.normalizer.center[var], self.normalizer.scale[var]
            prior = _PriorMeans(self.gaussian, values, bank, center, scale)
        dataset = _MaskedFields(
            fields,
            bank,
            context=self.context,
            aux=self.aux,
            style=self.method,
            seed=seed,
            roll=self.roll_fields,
            prior=prior,
        )
        n_cond = 2 * self.context + (0 if self.aux is None else len(self.aux))
        n_cond += self.prior is not None
        periodic = (grid.periodic_y, grid.periodic_x)
        if self.method == "partialconv":
            options = {"cond_channels": n_cond, **self.options}
            if isinstance(options.get("row_weights"), str):
                if options["row_weights"] != "area":
                    raise ClimgenInputError(
                        f"row_weights must be 'area', a list of {shape[0]} numbers or None, "
                        f"got {options['row_weights']!r}"
                    )
                # cos φ per row of the canonical grid (uniform on planar grids)
                options["row_weights"] = area_weights(canon).values[:, 0].tolist()
        else:
            # cond = [x·m, m] and one (value·mask, mask) pair per extra input.
            options = {"cond_channels": 2 + 2 * n_cond, **self.options}
        config = TrainConfig.from_dict({**_as_dict(train), **train_options})
        self.family = build_seeded(
            config.seed, self.method, channels=1, shape=shape, periodic=periodic, **options
        )
        self._save_settings()
        card = {
            "task": "fill",
            "method": self.method,
            "variables": [var],
            "sample_dim": self.time_dim,
            "normalizer": self.normalizer.state_dict(),
            "grid": {"kind": grid.kind, "dims": list(grid.spatial_dims), "shape": list(shape)},
        }
        trainer = Trainer(self.family, config, self.run_dir, callbacks=callbacks, card=card)
        self.result = trainer.fit(dataset, resume=resume)
        self.checkpoint_step = int(self.result.step)
        self.family.eval()
        if trainer.ema is not None:
            self.family, _ = load_family(self.run_dir, ema=True)
        return self

    def _fit_gaussian(self, values: np.ndarray, grid, run_dir, options) -> Infiller:
        """Estimate the optimal-interpolation covariance from canonical fields (T, H, W) (the
        method, or a network's prior); the method saves it in the run directory at once."""
        hemispheric = bool(options.get("hemispheric", False))
        if self.roll_fields and not grid.periodic_x:
            raise ClimgenInputError(
                f"roll_fields=True cannot be used here: the grid ({grid.shape_name}) is not "
                "periodic in longitude"
            )
        if hemispheric and grid.kind != "latlon":
            raise ClimgenInputError(
                f"hemispheric=True needs a lat/lon grid; '{self.variable}' is {grid.shape_name}"
            )
        self.gaussian = fit_field_model(
            values,
            solver=options.get("solver", "auto"),
            rank=options.get("rank", DEFAULT_RANK),
            zonal=self.roll_fields,
            hemispheric=hemispheric,
            nugget=options.get("nugget", "auto"),
            context=self.context if self.method == OI else 0,
        )
        if self.method != OI:
            return self
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("fill", self.method)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._save_settings()
        return self

    def _mask_bank(self, masks, da, shape, seed) -> np.ndarray:
        if masks is None or (isinstance(masks, str) and masks == "synthetic"):
            return synthetic_masks(
                self.n_synthetic, shape, kind=self.mask_kind, coverage=self.coverage, seed=seed
            )
        mask = _as_mask(masks)
        like = da.isel({self.time_dim: 0}, drop=True)
        if self.time_dim in mask.dims:
            stacked = [
                pair_masks(mask.isel({self.time_dim: [k]}), like)
                for k in range(mask.sizes[self.time_dim])
            ]
            mask = xr.concat(stacked, self.time_dim)
        else:
            mask = pair_masks(mask, like)
        bank = canonical_mask_array(mask)
        if not bank.any(axis=(1, 2)).all():
            raise ClimgenInputError("some training masks observe nothing; drop the empty ones")
        return bank

    def _aux_array(self, aux, da) -> np.ndarray | None:
        if aux is None:
            return None
        items = list(aux.data_vars.values()) if isinstance(aux, xr.Dataset) else aux
        items = [items] if isinstance(items, xr.DataArray) else list(items)
        like = da.isel({self.time_dim: 0}, drop=True)
        out = []
        for a in items:
            if not isinstance(a, xr.DataArray):
                raise ClimgenInputError(f"aux inputs must be DataArrays, got {type(a).__name__}")
            pair_masks(xr.ones_like(a, dtype=np.int8), like)  # grid check
            values = np.asarray(to_canonical(a)[0].values, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ClimgenInputError(f"aux input '{a.name}' has NaN/inf values")
            std = values.std()
            out.append((values - values.mean()) / (std if std > 0 else 1.0))
        return np.stack(out)

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
    ) -> xr.Dataset:
        """Fill the missing cells of ``obs`` (Dataset, DataArray or path; NaN = missing).

        ``mask`` (optional, 1 = observed): hide further cells (a cell counts as observed only
        when the mask says so *and* its value is finite). ``members``: ensemble size for
        ensemble methods. ``at``: fill only these fields (0-based positions, or labels of the
        time coordinate such as ``"1893-08-15"``); the others still serve as context
        (``context > 0``). ``progress``: a bar over the fields (on a terminal).

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
        if self.method in TRAINED and self.family is None and self.gaussian is None:
            raise ClimgenInputError(
                f"the {self.method} infiller is not trained: call fit(...) or Infiller.load()"
            )
        ds_obs = as_dataset(obs)
        var = _pick_variable(ds_obs, self.variable, self.time_dim)
        da = ds_obs[var]
        n_inf = int(np.isinf(da).sum())
        if n_inf:
            raise ClimgenInputError(
                f"observations '{var}' hold {n_inf} inf value(s); gaps are NaN, and inf is no "
                f"measurement: set them to NaN (obs.where(np.isfinite(obs))) to fill them"
            )
        observed = np.isfinite(da)
        if mask is not None:
            observed = observed & (pair_masks(_as_mask(mask), da, time_dim=self.time_dim) == 1)
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
        clim = self._anomaly_base(canon)
        kind = observation_kind(values, raw, keep, clim, var)
        base = raw - clim if kind == "absolute" else raw  # what the run fills: its training kind
        self._check_obs(canon.copy(data=base.reshape(canon.shape)), var)
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
        request = FillRequest(gappy, keep, targets, lat, lon, members, seed, batch_size, progress)
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
        if at is not None:
            canon = canon.isel({self.time_dim: targets})
        return self._assemble(
            canon,
            state,
            var,
            da,
            ds_obs.attrs,
            filled,
            spread,
            keep,
            ensemble,
            members,
            info,
            extra,
        )

    def _anomaly_base(self, canon: xr.DataArray) -> np.ndarray | None:
        """The run's climatology (H, W) on the canonical grid of ``canon``, if it has one."""
        if self.anomaly_climatology is None:
            return None
        clim, _ = to_canonical(self.anomaly_climatology)
        values = np.asarray(clim.values, dtype=np.float64)
        if values.shape != tuple(canon.shape[-2:]):
            raise ClimgenInputError(
                f"the run's climatology is {values.shape}, the observations "
                f"{tuple(canon.shape[-2:])} after regridding: the run directory is inconsistent"
            )
        return values

    def _climatology_for(self, gappy: np.ndarray) -> np.ndarray | None:
        if self.climatology is None or self.climatology.shape != gappy.shape[-2:]:
            return None
        return self.climatology

    def _check_obs(self, canon: xr.DataArray, var: str) -> None:
        units = canon.attrs.get("units")
        if self.units is not None and units is not None and str(units) != str(self.units):
            raise ClimgenInputError(
                f"observations '{var}' are in '{units}' but the infiller was fitted on data in "
                f"'{self.units}': convert them (e.g. to anomalies) first"
            )
        if self.template is not None:
            t = self.template
            shape = tuple(canon.shape[-2:])
            if shape != tuple(t.shape) or any(
                d in canon.coords
                and d in t.coords
                and not np.allclose(canon[d].values, t[d].values, atol=1e-6)
                for d in t.dims
            ):
                raise ClimgenInputError(
                    f"observations '{var}' are on grid {dict(zip(canon.dims[-2:], shape))} but "
                    f"the infiller was fitted on {dict(t.sizes)} (or other coordinates): "
                    "regrid the observations to the training grid"
                )
        stats = None
        if self.normalizer is not None:
            stats = (self.normalizer.center[self.variable], self.normalizer.scale[self.variable])
        elif self.gaussian is not None:
            g = self.gaussian
            stats = (float(g.mean.mean()), float(np.sqrt(np.mean(g.variance))))
        if stats is not None:
            values = np.asarray(canon.values, dtype=np.float64)
            finite = values[np.isfinite(values)]
            center, scale = stats
            z = (finite.mean() - center) / scale
            if abs(z) > 10:
                raise ClimgenInputError(
                    f"observations '{var}' average {finite.mean():.4g} {units or ''}, "
                    f"{abs(z):.0f} training standard deviations from the training mean "
                    f"{center:.4g}: absolute values vs anomalies? Use the "
                    "same kind of data (and units) as in training"
                )

    def _fill_network(self, gappy, keep, members, seed, batch_size, targets, show=False):
        v = self.variable
        center, scale = self.normalizer.center[v], self.normalizer.scale[v]
        x_all = torch.from_numpy(np.nan_to_num((gappy - center) / scale).astype(np.float32))
        m_all = torch.from_numpy(keep.astype(np.float32))
        aux = None if self.aux is None else torch.from_numpy(self.aux.astype(np.float32))
        prior = None
        if self.prior is not None:
            means = np.zeros(gappy.shape)
            for t in targets:  # the prior channel of the fields filled (not of the context)
                means[t] = self.gaussian.conditional_means(np.nan_to_num(gappy[t])[None], keep[t])
            prior = torch.from_numpy(((means - center) / scale).astype(np.float32))
        n = len(targets)
        generator = torch.Generator().manual_seed(int(seed))
        outs = []  # per batch: (T_b, H, W) means, or (M, T_b, H, W) members
        step = batch_size if self.method == "partialconv" else 1
        bar = progress_bar(total=n, desc=f"fill ({self.method})", unit="field", enabled=show)
        with torch.no_grad(), bar:
            for start in range(0, n, step):
                items = [
                    self._fill_item(x_all, m_all, aux, int(i), prior)
                    for i in targets[start : start + step]
                ]
                bar.update(len(items))
                if self.method == "partialconv":
                    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
                    if self.is_ensemble:
                        out = torch.stack(
                            [
                                self._rolled_infill(batch, generator, member=k)
                                for k in range(members)
                            ]
                        )[:, :, 0]
                    else:
                        out = self._rolled_infill(batch)[:, 0]
                else:
                    cond = items[0]["cond"][None]
                    draws = self.family.sample(members, generator, cond=cond)
                    if self.likelihood_noise:
                        s = self.family.log_scale.exp().view(1, -1, 1, 1)
                        draws = draws + s * torch.randn(draws.shape, generator=generator)
                    out = draws  # (M, 1, H, W): the member axis, then one field
                outs.append(out.numpy().astype(np.float64) * scale + center)
        if not self.is_ensemble:
            return np.concatenate(outs), None, None
        ens = np.concatenate(outs, axis=1)  # (M, T, H, W)
        keep, gappy = keep[targets], gappy[targets]
        ens = np.where(keep[None], gappy, ens)
        if self.spread_inflation != 1.0:
            centre = ens.mean(axis=0, keepdims=True)
            ens = np.where(keep[None], gappy, centre + self.spread_inflation * (ens - centre))
        std = ens.std(axis=0, ddof=1) if members > 1 else np.full(ens.shape[1:], np.nan)
        return ens.mean(axis=0), std, ens

    def _fill_gaussian(self, gappy, keep, members, seed, targets, show=False):
        """Exact conditional mean and std, and ``members`` conditional draws, of the fields
        ``targets``; ``spread_inflation`` scales the draws' deviations from the mean and the
        std."""
        rng = np.random.default_rng(int(seed))
        shape = (len(targets), *gappy.shape[1:])
        mean, std = np.empty(shape), np.empty(shape)
        ens = np.empty((members, *shape))
        k, n = self.gaussian.context, gappy.shape[0]
        values = np.nan_to_num(gappy)
        fields = progress_bar(
            targets, desc="fill (optimal interpolation)", unit="field", enabled=show
        )
        for i, t in enumerate(fields):
            if k == 0:
                out = self.gaussian.condition(values[t], keep[t], members=members, rng=rng)
            else:  # the window t − k … t + k; days outside the record observe nothing
                window = np.arange(t - k, t + k + 1)
                days = np.clip(window, 0, n - 1)
                inside = (window >= 0) & (window < n)
                out = self.gaussian.condition_window(
                    values[days], keep[days] & inside[:, None, None], members=members, rng=rng
                )
            mean[i], std[i], ens[:, i] = out
        alpha = self.spread_inflation
        keep, gappy = keep[targets], gappy[targets]
        ens = np.where(keep[None], gappy, mean[None] + alpha * (ens - mean[None]))
        return mean, alpha * std, ens

    def _rolled_infill(self, batch: dict, generator=None, member: int | None = None):
        """Partial-conv infill of ``batch``, averaged over ``fill_rolls`` longitude rolls; for
        ``member`` k of a stochastic infiller, one draw under roll ``k mod fill_rolls``."""
        width = batch["x"].shape[-1]
        shifts = sorted(
            {round(k * width / self.fill_rolls) % width for k in range(self.fill_rolls)}
        )
        if member is not None:
            shifts = [shifts[member % len(shifts)]]
        total = None
        for shift in shifts:
            b = {k: torch.roll(v, shift, dims=-1) for k, v in batch.items()}
            out = self.family.infill(
                b["x"], b["mask"], b.get("cond"), b.get("cond_mask"), generator=generator
            )
            out = torch.roll(out, -shift, dims=-1)
            total = out if total is None else total + out
        return total / len(shifts)

    def _fill_item(self, x_all, m_all, aux, i, prior=None) -> dict:
        n = x_all.shape[0]
        x, mask = x_all[i][None], m_all[i][None]
        cond, cond_mask = [], []
        for j in [*range(-self.context, 0), *range(1, self.context + 1)]:
            if 0 <= i + j < n:
                cond.append(x_all[i + j][None])
                cond_mask.append(m_all[i + j][None])
            else:
                cond.append(torch.zeros_like(x))
                cond_mask.append(torch.zeros_like(x))
        if aux is not None:
            cond.append(aux)
            cond_mask.append(torch.ones_like(aux))
        if prior is not None:
            cond.append(prior[i][None])
            cond_mask.append(torch.ones_like(x))
        return _network_item(x, mask, cond, cond_mask, self.method)

    def _assemble(
        self,
        canon,
        state,
        var,
        da,
        ds_attrs,
        filled,
        spread,
        keep,
        ensemble,
        members,
        info,
        extra=None,
    ):
        shape = canon.shape

        def back(values, name, attrs, extra_dim=None):
            values = values.reshape(((values.shape[0],) if extra_dim else ()) + shape)
            dims = ((extra_dim,) if extra_dim else ()) + canon.dims
            coords = {d: canon[d] for d in canon.dims if d in canon.coords}
            out = xr.DataArray(values, dims=dims, coords=coords, name=name, attrs=attrs)
            return restore(out, state)

        units = {"units": da.attrs["units"]} if "units" in da.attrs else {}
        data_vars = {
            var: back(
                filled,
                var,
                {**da.attrs, "ancillary_variables": f"{var}_spread {var}_mask"},
            ),
            f"{var}_spread": back(
                spread,
                f"{var}_spread",
                {
                    **units,
                    "long_name": f"predictive standard deviation of {var} ({self.method})",
                    "comment": "0 at observed cells; NaN where the method gives no uncertainty",
                },
            ),
            f"{var}_mask": back(
                keep.astype(np.int8),
                f"{var}_mask",
                {**MASK_ATTRS, "comment": "cells observed in the input (kept bit for bit)"},
            ),
        }
        for name, (values, what) in (extra or {}).items():
            data_vars[name] = back(values, name, {**da.attrs, "long_name": f"filled {var}, {what}"})
        if ensemble is not None:
            ens = ensemble.reshape(ensemble.shape[0], -1)
            data_vars[f"{var}_members"] = back(
                ens,
                f"{var}_members",
                {**da.attrs, "long_name": f"ensemble of filled {var}"},
                extra_dim="member",
            ).assign_coords(member=np.arange(ens.shape[0]))
        for name in list(data_vars):
            for cname, coord in da.coords.items():
                if cname not in data_vars[name].coords and set(coord.dims) <= set(
                    data_vars[name].dims
                ):
                    data_vars[name] = data_vars[name].assign_coords({cname: coord})
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        settings = self._fill_settings()
        history = f"{stamp} climgen {climgen_version()}: Infiller({self.method!r}).fill"
        attrs = dict(ds_attrs)
        attrs.update(
            {
                "history": f"{history}\n{attrs.get('history', '')}".strip(),
                "climgen_version": climgen_version(),
                "climgen_fill_method": self.method,
                "climgen_fill_options": json.dumps(settings),
                "climgen_fill_members": int(members) if ensemble is not None else 1,
                "climgen_fill_seed": info["seed"],
            }
        )
        if self.run_dir is not None:
            attrs["climgen_run_dir"] = str(self.run_dir)
        if self.checkpoint_step is not None:
            attrs["climgen_checkpoint_step"] = int(self.checkpoint_step)
        if "values" in info:
            attrs["climgen_fill_values"] = (
                f"{info['values']}; the run was trained on anomalies from its climatology.nc"
            )
        if "regrid" in info:
            attrs["climgen_fill_regrid"] = info["regrid"]
        if ensemble is not None and self.spread_inflation != 1.0:
            attrs["climgen_fill_spread_inflation"] = self.spread_inflation
        if "nugget" in info:
            attrs["climgen_oi_nugget"] = info["nugget"]  # τ² / mean variance actually used
        if info.get("kernels"):
            attrs["climgen_kriging_kernels"] = "; ".join(info["kernels"][:12])
        return xr.Dataset(data_vars, attrs=attrs)

    def _fill_settings(self) -> dict:
        """The options that shape a fill (for the output's ``climgen_fill_options``)."""
        settings = {k: v for k, v in self.options.items() if _jsonable(v)}
        if self.method in TRAINED:
            settings.update(context=self.context, roll_fields=self.roll_fields)
        if self.method == "partialconv":
            settings["fill_rolls"] = self.fill_rolls
        if self.method == "cvae":
            settings["likelihood_noise"] = self.likelihood_noise
        if self.prior is not None:
            settings.update(prior=self.prior, prior_options=self.prior_options)
        return settings

    # -- persistence -----------------------------------------------------------------------
    def _save_settings(self) -> None:
        settings = {
            "method": self.method,
            "variable": self.variable,
            "time_dim": self.time_dim,
            "context": self.context,
            "roll_fields": self.roll_fields,
            "fill_rolls": self.fill_rolls,
            "likelihood_noise": self.likelihood_noise,
            "spread_inflation": self.spread_inflation,
            "units": self.units,
            "sample_step": self.sample_step,
        }
        if self.method == OI:
            settings["options"] = {
                k: self.options[k] for k in get_method(OI).options if k in self.options
            }
        if self.prior is not None:
            settings.update(prior=self.prior, prior_options=self.prior_options)
        if self.gaussian is not None:
            self.gaussian.save(self.run_dir / _OI_MODEL)
        (self.run_dir / _SETTINGS).write_text(json.dumps(settings, indent=2))
        if self.normalizer is not None:
            self.normalizer.to_json(self.run_dir / _NORMALIZER)
        write_fields(self.template.to_dataset(name=self.variable), self.run_dir / _TEMPLATE)
        if self.aux is not None:
            write_fields(
                xr.Dataset({"aux": (("channel", "y", "x"), self.aux)}), self.run_dir / _AUX
            )

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, which: str = "latest", ema: bool = True):
        """Reload a trained infiller from the run directory ``fit`` wrote."""
        run_dir = Path(run_dir)
        if not (run_dir / _SETTINGS).exists():
            raise ClimgenInputError(
                f"{run_dir} is not a gap-filling run directory (no {_SETTINGS}); give the "
                "directory that Infiller.fit or `climgen train` wrote"
            )
        settings = json.loads((run_dir / _SETTINGS).read_text())
        inf = cls(
            settings["method"],
            variable=settings["variable"],
            time_dim=settings["time_dim"],
            context=settings["context"],
            roll_fields=settings.get("roll_fields", False),
            fill_rolls=settings.get("fill_rolls", 1),
            likelihood_noise=settings["likelihood_noise"],
            spread_inflation=settings.get("spread_inflation", 1.0),
            prior=settings.get("prior"),
            prior_options=settings.get("prior_options"),
            **settings.get("options", {}),
        )
        inf.units = settings.get("units")
        inf.sample_step = settings.get("sample_step")
        if (run_dir / _OI_MODEL).exists():
            inf.gaussian = load_field_model(run_dir / _OI_MODEL)
        if inf.method != OI:
            inf.family, ckpt = load_family(run_dir, which=which, ema=ema)
            inf.checkpoint_step = int(ckpt.step)
            inf.normalizer = Normalizer.from_json(run_dir / _NORMALIZER)
        template = load_run_file(run_dir / _TEMPLATE)
        inf.template = template[settings["variable"]]
        if (run_dir / _AUX).exists():
            inf.aux = load_run_file(run_dir / _AUX)["aux"].values
        if (run_dir / CLIMATOLOGY).exists():
            clim = load_run_file(run_dir / CLIMATOLOGY)
            inf.anomaly_climatology = clim[list(clim.data_vars)[0]]
        inf.run_dir = run_dir
        return inf

    def __repr__(self) -> str:
        state = f"run_dir={str(self.run_dir)!r}" if self.run_dir else "no run dir"
        return f"Infiller(method={self.method!r}, variable={self.variable!r}, {state})"


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _as_dict(train) -> dict:
    if isinstance(train, TrainConfig):
        return train.to_dict()
    return dict(train or {})
