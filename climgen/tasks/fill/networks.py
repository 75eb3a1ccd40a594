"""The network methods of gap filling ("partialconv", "cvae"): training items (a complete
field under a random coverage mask), training, and filling field by field or in batches.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import climgen.families.infill  # noqa: F401 - registers the "partialconv" family
from climgen.data.dataset import FieldDataset
from climgen.data.grids import area_weights, to_canonical
from climgen.data.normalize import Normalizer
from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError
from climgen.tasks._common import build_seeded, default_run_dir, train_family
from climgen.tasks.downscale.tiles import auto_tile
from climgen.tasks.fill.gaussian import check_plausible, conditioning_model, fit_gaussian
from climgen.tasks.fill.masks import (
    canonical_mask_array,
    pair_masks,
    roll_longitude,
    synthetic_masks,
)
from climgen.tasks.fill.run_dir import as_mask, save_settings
from climgen.tasks.fill.tiled import tiled_unet_infill
from climgen.train import TrainConfig

LOGGER = logging.getLogger(__name__)

__all__ = [
    "MaskedFields",
    "PriorMeans",
    "prior_layout",
    "prior_inputs",
    "fit_network",
    "fill_network",
]


class MaskedFields(torch.utils.data.Dataset):
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
        flip=False,
    ):
        self.fields, self.bank, self.context, self.style = fields, bank, context, style
        self.aux = None if aux is None else torch.from_numpy(aux.astype(np.float32))
        self.seed, self.draws, self.roll, self.flip = int(seed), 0, bool(roll), bool(flip)
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
        cond, cond_mask, around = [], [], []  # around: (day, its mask's bank entry and roll)
        for j in [*range(-self.context, 0), *range(1, self.context + 1)]:
            if 0 <= i + j < len(self.fields):
                cond.append(field(i + j))
                around.append([i + j])
                cond_mask.append(self._mask(rng, around[-1]).expand_as(x))
            else:
                cond.append(torch.zeros_like(x))
                cond_mask.append(torch.zeros_like(x))
                around.append(None)
        if self.aux is not None:
            cond.append(self.aux)
            cond_mask.append(torch.ones_like(self.aux))
        if self.prior is not None:
            values, masks = self.prior.channels(i, shift, which, around)
            cond.append(torch.from_numpy(values))
            cond_mask.append(torch.from_numpy(masks))
        item = network_item(x, mask, cond, cond_mask, self.style)
        # flip_fields: the whole item mirrored about the equator (rows reversed); the OI
        # prior's channels stay exact because its covariance is hemispherically symmetric.
        if self.flip and rng.random() < 0.5:
            item = {k: torch.flip(v, dims=(-2,)) for k, v in item.items()}
        return item


class PriorMeans:
    """Normalised optimal-interpolation means of the training fields under the training masks,
    the ``prior`` input channel of a partial-conv infiller, cached per (mask, roll).

    Field i rolled by ``shift`` under bank mask b rolled by q: with a zonally homogeneous
    covariance (``roll_fields``, the only case with shift ≠ 0),
    fill(S_s x, S_q m) = S_s fill(x, S_(q−s) m), so one factorisation per
    (b, (q − s) mod W) serves every field and every shift. ``max_entries`` bounds the cache
    (each entry holds T fields).

    ``residual=True`` (an infiller that corrects the estimate, :func:`prior_layout`): the
    channels are also the OI standard deviation (÷ scale; it depends on the mask only) and
    the OI means of the ``context`` neighbours on each side under their own masks.
    """

    def __init__(
        self, model, fields, bank, center, scale, max_entries: int = 256, residual: bool = False
    ):
        self.model, self.fields, self.bank = model, fields, bank
        self.center, self.scale, self.max_entries = center, scale, max_entries
        self.residual = residual
        self.cache: dict = {}
        self.spreads: dict = {}

    def _key(self, shift: int, b: int, q: int) -> tuple[int, int]:
        return b, (q - shift) % self.bank.shape[-1]

    def _mask(self, key) -> np.ndarray:
        return roll_longitude(self.bank[key[0]][None], key[1])[0] > 0

    def __call__(self, i: int, shift: int, b: int, q: int) -> np.ndarray:
        key = self._key(shift, b, q)
        if key not in self.cache:
            if len(self.cache) >= self.max_entries:
                self.cache.pop(next(iter(self.cache)))
            means = self.model.conditional_means(self.fields, self._mask(key))
            self.cache[key] = ((means - self.center) / self.scale).astype(np.float32)
        return np.roll(self.cache[key][i], shift, axis=-1)

    def spread(self, shift: int, b: int, q: int) -> np.ndarray:
        """The OI standard deviation ÷ scale under bank mask b rolled by q (field rolled by
        ``shift``)."""
        key = self._key(shift, b, q)
        if key not in self.spreads:
            std = self.model.condition(self.fields[0], self._mask(key))[1]
            self.spreads[key] = (std / self.scale).astype(np.float32)
        return np.roll(self.spreads[key], shift, axis=-1)

    def channels(self, i: int, shift: int, which, around) -> tuple[np.ndarray, np.ndarray]:
        """The prior channels of training item i and their masks, (P, H, W) each: ``which``
        the target's (bank entry, roll), ``around`` per neighbour ``[day, entry, roll]`` or
        None outside the record."""
        values = [self(i, shift, *which)]
        if self.residual:
            values.append(self.spread(shift, *which))
            zeros = np.zeros_like(values[0])
            values += [zeros if a is None else self(a[0], shift, *a[1:]) for a in around]
        masks = [np.ones_like(values[0])] * 2 + [
            np.full_like(values[0], a is not None) for a in around
        ]
        return np.stack(values), np.stack(masks[: len(values)])


def prior_layout(inf) -> int:
    """Number of prior channels: the OI mean; with ``residual`` also the OI std and the OI
    means of the 2·context neighbours."""
    if inf.prior is None:
        return 0
    return 2 + 2 * inf.context if inf.residual else 1


def oi_conditionals(model, gappy, keep, targets, members: int = 0, seed: int = 0) -> list:
    """``model.condition`` of each field of ``targets``: ``(mean, std, draws)`` with
    ``members`` draws (``np.random.default_rng([seed, 1])``, in the order of ``targets``;
    None without members). One solve per field, shared by a residual net's prior channels
    (:func:`prior_inputs`) and ``member_noise="oi"`` (:func:`recentre_on`)."""
    rng = np.random.default_rng([int(seed), 1]) if members else None
    values = np.nan_to_num(gappy)
    return [model.condition(values[t], keep[t], members=members, rng=rng) for t in targets]


def prior_inputs(
    inf, gappy, keep, targets, model=None, conditionals=None
) -> tuple[np.ndarray, np.ndarray]:
    """The prior channels (n, P, H, W) of the fields ``targets`` at fill time and their masks,
    as :meth:`PriorMeans.channels` builds them in training (a neighbour outside the record
    or with nothing observed: zeros, masked); the OI model is
    :func:`~climgen.tasks.fill.gaussian.conditioning_model`'s (``nugget="ml"``: estimated
    from the observations; pass it as ``model`` when the caller has it), its means checked by
    :func:`~climgen.tasks.fill.gaussian.check_plausible`. A residual net's OI mean and std
    are ``conditionals`` (:func:`oi_conditionals` of ``targets``) when the caller has them."""
    v = inf.variable
    center, scale = inf.normalizer.center[v], inf.normalizer.scale[v]
    if model is None:
        model, _ = conditioning_model(inf, gappy, keep, targets)
    if inf.residual and conditionals is None:
        conditionals = oi_conditionals(model, gappy, keep, targets)
    n = gappy.shape[0]
    values = np.nan_to_num(gappy)
    shape = (len(targets), prior_layout(inf), *gappy.shape[1:])
    out, masks = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    means: dict = {}

    def mean(t: int) -> np.ndarray:
        if t not in means:
            means[t] = (model.conditional_means(values[t][None], keep[t])[0] - center) / scale
        return means[t]

    offsets = [*range(-inf.context, 0), *range(1, inf.context + 1)]
    for row, t in enumerate(targets):
        if not inf.residual:
            out[row, 0], masks[row, 0] = mean(t), 1
            continue
        m, std, _ = conditionals[row]
        means[t] = (m - center) / scale
        out[row, 0], out[row, 1], masks[row, :2] = means[t], std / scale, 1
        for c, j in enumerate(offsets, start=2):
            if 0 <= t + j < n and keep[t + j].any():
                out[row, c], masks[row, c] = mean(t + j), 1
    # an exploded OI estimate (observations with errors, a nugget of error-free training
    # fields) is one clear error here too, not a network input thousands of σ off
    check_plausible(model, out[:, 0] * scale + center, keep[targets])
    return out, masks


def network_item(x, mask, cond, cond_mask, style) -> dict:
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


def fit_network(
    inf,
    ds,
    da,
    canon,
    grid,
    values,
    masks,
    aux,
    run_dir,
    resume,
    train,
    seed,
    callbacks,
    train_options,
):
    """:meth:`Infiller.fit` of a network (partialconv, cvae): masks, training items, family,
    trainer. ``values``: the canonical training fields (T, H, W), loaded only for a prior."""
    var = inf.variable
    shape = (canon.sizes[grid.y_dim], canon.sizes[grid.x_dim])
    bank = mask_bank(inf, masks, da, shape, seed)
    inf.aux = aux_array(inf, aux, da)
    if inf.roll_fields and (inf.aux is not None or not grid.periodic_x):
        why = (
            "aux inputs are fixed in space"
            if inf.aux is not None
            else (f"the grid ({grid.shape_name}) is not periodic in longitude")
        )
        raise ClimgenInputError(f"roll_fields=True cannot be used here: {why}")
    if inf.flip_fields:
        check_flip(inf, canon, grid)
    inf.run_dir = Path(run_dir) if run_dir else default_run_dir("fill", inf.method)
    inf.run_dir.mkdir(parents=True, exist_ok=True)
    inf.normalizer = Normalizer.fit(ds, [var])
    fields = FieldDataset(ds, [var], sample_dim=inf.time_dim, normalizer=inf.normalizer)
    prior = None
    if inf.prior is not None:
        fit_gaussian(inf, values, grid, None, inf.prior_options)
        center, scale = inf.normalizer.center[var], inf.normalizer.scale[var]
        prior = PriorMeans(inf.gaussian, values, bank, center, scale, residual=inf.residual)
    dataset = MaskedFields(
        fields,
        bank,
        context=inf.context,
        aux=inf.aux,
        style=inf.method,
        seed=seed,
        roll=inf.roll_fields,
        prior=prior,
        flip=inf.flip_fields,
    )
    n_cond = 2 * inf.context + (0 if inf.aux is None else len(inf.aux))
    first_prior = n_cond  # the OI mean: the first prior channel
    n_cond += prior_layout(inf)
    periodic = (grid.periodic_y, grid.periodic_x)
    if inf.method == "partialconv":
        options = {"cond_channels": n_cond, **inf.options}
        if inf.residual:
            options["residual_channel"] = first_prior
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
        options = {"cond_channels": 2 + 2 * n_cond, **inf.options}
    config = TrainConfig.from_dict({**as_dict(train), **train_options})
    inf.family = build_seeded(
        config.seed, inf.method, channels=1, shape=shape, periodic=periodic, **options
    )
    check_member_noise(inf.member_noise, inf.residual, {}, stochastic=inf.is_ensemble)
    save_settings(inf)
    card = {
        "task": "fill",
        "method": inf.method,
        "variables": [var],
        "sample_dim": inf.time_dim,
        "normalizer": inf.normalizer.state_dict(),
        "grid": {"kind": grid.kind, "dims": list(grid.spatial_dims), "shape": list(shape)},
    }
    inf.family, inf.result = train_family(
        inf.family, config, inf.run_dir, dataset, resume=resume, callbacks=callbacks, card=card
    )
    inf.checkpoint_step = int(inf.result.step)
    return inf


def check_flip(inf, canon, grid) -> None:
    """``flip_fields`` needs a lat/lon grid symmetric about the equator, no ``aux`` inputs
    (fixed in space) and, with a prior, its hemispherically symmetric covariance."""
    lat = canon[grid.y_dim].values if grid.y_dim in canon.coords else None
    if grid.kind != "latlon" or lat is None or not np.allclose(lat[::-1], -lat, atol=1e-6):
        why = f"the grid ({grid.shape_name}) is not a lat/lon grid symmetric about the equator"
    elif inf.aux is not None:
        why = "aux inputs are fixed in space"
    elif inf.prior is not None and not inf.prior_options.get("hemispheric", False):
        why = "the prior's covariance is not symmetric: set prior_options hemispheric: true"
    else:
        return
    raise ClimgenInputError(f"flip_fields=True cannot be used here: {why}")


def mask_bank(inf, masks, da, shape, seed) -> np.ndarray:
    if masks is None or (isinstance(masks, str) and masks == "synthetic"):
        return synthetic_masks(
            inf.n_synthetic, shape, kind=inf.mask_kind, coverage=inf.coverage, seed=seed
        )
    mask = as_mask(masks)
    like = da.isel({inf.time_dim: 0}, drop=True)
    if inf.time_dim in mask.dims:
        stacked = [
            pair_masks(mask.isel({inf.time_dim: [k]}), like)
            for k in range(mask.sizes[inf.time_dim])
        ]
        mask = xr.concat(stacked, inf.time_dim)
    else:
        mask = pair_masks(mask, like)
    bank = canonical_mask_array(mask)
    if not bank.any(axis=(1, 2)).all():
        raise ClimgenInputError("some training masks observe nothing; drop the empty ones")
    return bank


def aux_array(inf, aux, da) -> np.ndarray | None:
    if aux is None:
        return None
    items = list(aux.data_vars.values()) if isinstance(aux, xr.Dataset) else aux
    items = [items] if isinstance(items, xr.DataArray) else list(items)
    like = da.isel({inf.time_dim: 0}, drop=True)
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


def fill_network(
    inf,
    gappy,
    keep,
    members,
    seed,
    batch_size,
    targets,
    show=False,
    tile_size=None,
    tile_halo=None,
):
    """The network fills of ``targets`` (means, spread, members); the partial-conv U-Net runs
    tile by tile when ``tile_size`` says so or, with None, when a batch does not fit in a
    quarter of the available memory (:func:`unet_tiling`)."""
    v = inf.variable
    center, scale = inf.normalizer.center[v], inf.normalizer.scale[v]
    x_all = torch.from_numpy(np.nan_to_num((gappy - center) / scale).astype(np.float32))
    m_all = torch.from_numpy(keep.astype(np.float32))
    aux = None if inf.aux is None else torch.from_numpy(inf.aux.astype(np.float32))
    prior = conditionals = None
    if inf.prior is not None:  # the prior channels of the fields filled (not of the context)
        model, _ = conditioning_model(inf, gappy, keep, targets)  # once: "ml" estimates
        if inf.residual:  # one OI solve per field, with member_noise="oi" its draws too
            draws = members if inf.member_noise == "oi" else 0
            conditionals = oi_conditionals(model, gappy, keep, targets, draws, seed)
        values, masks = prior_inputs(inf, gappy, keep, targets, model, conditionals)
        rows = {int(t): r for r, t in enumerate(targets)}
        prior = (torch.from_numpy(values), torch.from_numpy(masks), rows)
    n = len(targets)
    generator = torch.Generator().manual_seed(int(seed))
    outs = []  # per batch: (T_b, H, W) means, or (M, T_b, H, W) members
    step = batch_size if inf.method == "partialconv" else 1
    bar = progress_bar(total=n, desc=f"fill ({inf.method})", unit="field", enabled=show)
    with torch.no_grad(), bar:
        for start in range(0, n, step):
            items = [
                fill_item(inf, x_all, m_all, aux, int(i), prior)
                for i in targets[start : start + step]
            ]
            bar.update(len(items))
            if inf.method == "partialconv":
                batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
                tiles = unet_tiling(inf, x_all.shape[-2:], len(items), tile_size, tile_halo)
                if inf.is_ensemble:
                    out = torch.stack(
                        [
                            rolled_infill(inf, batch, generator, member=k, tiles=tiles)
                            for k in range(members)
                        ]
                    )[:, :, 0]
                else:
                    out = rolled_infill(inf, batch, tiles=tiles)[:, 0]
            else:
                cond = items[0]["cond"][None]
                draws = inf.family.sample(members, generator, cond=cond)
                if inf.likelihood_noise:
                    s = inf.family.log_scale.exp().view(1, -1, 1, 1)
                    draws = draws + s * torch.randn(draws.shape, generator=generator)
                out = draws  # (M, 1, H, W): the member axis, then one field
            outs.append(out.numpy().astype(np.float64) * scale + center)
    if not inf.is_ensemble:
        return np.concatenate(outs), None, None
    ens = np.concatenate(outs, axis=1)  # (M, T, H, W)
    if inf.member_noise == "oi":  # the draws of the prior channels' OI solves
        ens = recentre_on(ens.mean(axis=0), conditionals)
    keep, gappy = keep[targets], gappy[targets]
    ens = np.where(keep[None], gappy, ens)
    if inf.spread_inflation != 1.0:
        centre = ens.mean(axis=0, keepdims=True)
        ens = np.where(keep[None], gappy, centre + inf.spread_inflation * (ens - centre))
    std = ens.std(axis=0, ddof=1) if members > 1 else np.full(ens.shape[1:], np.nan)
    return ens.mean(axis=0), std, ens


def check_member_noise(member_noise, residual: bool, options: dict, stochastic=None) -> str:
    """The ``member_noise`` option, checked: "network", or "oi" for a residual CRPS net
    (``stochastic``: the built family's, when known; else the ``reconstruction`` option)."""
    if member_noise not in ("network", "oi"):
        raise ClimgenInputError(f"member_noise must be 'network' or 'oi', got {member_noise!r}")
    if stochastic is None:  # a run loaded from its directory has its family's options only
        stochastic = options.get("reconstruction", "crps") == "crps"
    if member_noise == "oi" and not (residual and stochastic):
        raise ClimgenInputError(
            "member_noise='oi' needs residual=True and reconstruction='crps' (a network "
            "ensemble on top of optimal interpolation)"
        )
    return member_noise


def recentre_on(centre, conditionals) -> np.ndarray:
    """Members ``x̄ + √(M/(M−1)) (ξ_i − ξ̄)`` (M, T, H, W): the OI conditional draws ξ_i of each
    field (``conditionals``: :func:`oi_conditionals` with M members) re-centred on ``centre``
    x̄ (T, H, W), the network's ensemble mean.

    The deviations ξ_i − ξ̄ from the draws' own mean have the OI posterior covariance
    (× (M−1)/M, undone by the factor) and sum to zero, so the members' mean is x̄ exactly;
    they are 0 at observed cells. Re-centring an ensemble of perturbations on a better
    analysis is how hybrid data assimilation builds its ensembles (Clayton, Lorenc & Barker
    2013, QJRMS 139, 1445). Members=1: the draw minus the conditional mean."""
    members = len(conditionals[0][2])
    out = np.empty((members, *centre.shape))
    for i, (mean, _, draws) in enumerate(conditionals):
        if members > 1:
            dev = (draws - draws.mean(axis=0)) * np.sqrt(members / (members - 1))
        else:
            dev = draws - mean
        out[:, i] = centre[i] + dev
    return out


def unet_tiling(inf, shape, n_fields: int, tile_size=None, tile_halo=None):
    """(tile, halo) for the partial-conv U-Net on a grid ``shape``, or None (whole fields).

    ``tile_size`` 0: never tile; an int: that core tile (grid cells); None: tile only when
    ``n_fields`` fields do not fit in a quarter of the available memory, the forward pass
    holding ≈ 32 maps of ``base_channels`` float32 values per cell (measured: 26–34).
    ``tile_halo`` defaults to the net's receptive radius (tiled = untiled to rounding); when
    even one tile with that halo does not fit, the auto tiling takes the tile and halo that
    do (core ≥ halo, else core = 2 halos: an approximation whose seams the blending
    softens, said in the log).
    """
    if tile_size == 0:
        return None
    net = inf.family.net
    halo = net.receptive_radius if tile_halo is None else int(tile_halo)
    if tile_size is not None:
        return int(tile_size), halo
    width = inf.family.config["base_channels"] * n_fields
    side, _ = auto_tile(tuple(shape), 1, width, 0, maps=32)  # the largest tile that fits
    if side is None:
        return None
    tile = max(side - 2 * halo, 8)
    if side - 2 * halo < halo and tile_halo is None:  # the exact halo does not fit: shrink it
        tile, halo = side // 2, side // 4
        LOGGER.warning(
            "partialconv fill in tiles of %d cells with a halo of %d < the net's receptive "
            "radius %d (memory): tiled fills approximate the whole-field fill at the seams",
            tile,
            halo,
            net.receptive_radius,
        )
    return tile, halo


def rolled_infill(inf, batch: dict, generator=None, member: int | None = None, tiles=None):
    """Partial-conv infill of ``batch``, averaged over ``fill_rolls`` longitude rolls; for
    ``member`` k of a stochastic infiller, one draw under roll ``k mod fill_rolls``;
    ``tiles`` (tile, halo): tile by tile (:func:`~climgen.tasks.fill.tiled.tiled_unet_infill`)."""
    width = batch["x"].shape[-1]
    shifts = sorted({round(k * width / inf.fill_rolls) % width for k in range(inf.fill_rolls)})
    if member is not None:
        shifts = [shifts[member % len(shifts)]]
    total = None
    for shift in shifts:
        b = {k: torch.roll(v, shift, dims=-1) for k, v in batch.items()}
        args = (b["x"], b["mask"], b.get("cond"), b.get("cond_mask"))
        if tiles is None:
            out = inf.family.infill(*args, generator=generator)
        else:
            out = tiled_unet_infill(
                inf.family, *args, tile=tiles[0], halo=tiles[1], generator=generator
            )
        out = torch.roll(out, -shift, dims=-1)
        total = out if total is None else total + out
    return total / len(shifts)


def fill_item(inf, x_all, m_all, aux, i, prior=None) -> dict:
    n = x_all.shape[0]
    x, mask = x_all[i][None], m_all[i][None]
    cond, cond_mask = [], []
    for j in [*range(-inf.context, 0), *range(1, inf.context + 1)]:
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
        values, masks, rows = prior
        cond.append(values[rows[i]])
        cond_mask.append(masks[rows[i]])
    return network_item(x, mask, cond, cond_mask, inf.method)


def as_dict(train) -> dict:
    if isinstance(train, TrainConfig):
        return train.to_dict()
    return dict(train or {})
