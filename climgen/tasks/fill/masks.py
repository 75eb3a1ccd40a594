"""Coverage masks for gap filling: real masks paired with fields, synthetic masks, augmentation.

Masks are 1 = observed, 0 = missing (int8), as in :mod:`climgen.data.masks`, whose
:func:`~climgen.data.masks.load_mask`, :func:`~climgen.data.masks.mask_from_nans` and
:func:`~climgen.data.masks.check_mask` this module builds on.

- :func:`pair_masks`: a mask of any time length against a field: one mask broadcast to every
  time, masks paired time by time, or (for training) cycled through.
- Synthetic masks for training, in canonical orientation (lat south → north, lon ascending),
  all vectorised over the masks:

  * :func:`blob_masks` — thresholded smooth Gaussian random fields (periodic in longitude):
    irregular observed "islands" with an exact coverage fraction;
  * :func:`band_masks` — observed latitude bands (e.g. the well-sampled northern mid-latitudes
    of the 19th century) with ragged edges;
  * :func:`track_masks` — ship-track-like stripes: cells within a half-width of random
    great-circle arcs.
  * :func:`synthetic_masks` mixes the three.
- :func:`roll_longitude` — augmentation: shift masks in longitude (periodic), which keeps
  their realism (the coverage pattern of a real month, moved east or west).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid, to_canonical
from climgen.data.masks import MASK_ATTRS, check_mask
from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError

__all__ = [
    "pair_masks",
    "canonical_mask_array",
    "blob_masks",
    "band_masks",
    "track_masks",
    "synthetic_masks",
    "roll_longitude",
    "SYNTHETIC_KINDS",
]

SYNTHETIC_KINDS = ("blobs", "bands", "tracks", "mixed")


def _check_values(mask: xr.DataArray) -> xr.DataArray:
    values = np.asarray(mask.values)
    if values.dtype != bool:
        finite = np.where(np.isfinite(values), values, 0) if values.dtype.kind == "f" else values
        bad = ~((finite == 0) | (finite == 1))
        if bad.any():
            raise ClimgenInputError(
                f"mask '{mask.name}' has {int(bad.sum())} value(s) that are not 0/1 "
                f"(e.g. {np.unique(finite[bad])[:5].tolist()}); a mask must be 1 = observed, "
                "0 = missing"
            )
        values = finite
    out = mask.copy(data=values.astype(np.int8))
    out.attrs = {**mask.attrs, **MASK_ATTRS}
    return out


def pair_masks(
    mask: xr.DataArray, like: xr.DataArray, *, time_dim: str = "time", mode: str = "auto"
) -> xr.DataArray:
    """``mask`` made to match ``like`` (int8, 1 = observed), on ``like``'s grid and time axis.

    Modes
    -----
    ``"auto"``: a mask without ``time_dim`` or with one time step is broadcast to every time of
    ``like``; a mask with as many times as ``like`` is paired time by time (position-wise,
    taking ``like``'s time coordinate); anything else is an error naming both lengths.
    ``"broadcast"``: require a single mask. ``"paired"``: require equal lengths.
    ``"cycle"``: mask ``i`` goes with field ``i mod n_masks`` (training on more fields than
    real masks).

    Raises :class:`ClimgenInputError` for a grid mismatch (via
    :func:`~climgen.data.masks.check_mask`), values other than 0/1, or lengths that do not fit
    the mode.
    """
    if mode not in ("auto", "broadcast", "paired", "cycle"):
        raise ClimgenInputError(
            f"unknown mask pairing mode {mode!r}; use auto, broadcast, paired or cycle"
        )
    mask = _check_values(mask)
    n_mask = mask.sizes.get(time_dim, 1)
    has_time = time_dim in like.dims
    n_like = like.sizes[time_dim] if has_time else 1
    if time_dim in mask.dims and (n_mask == 1 or not has_time):
        if n_mask != 1:
            raise ClimgenInputError(
                f"mask '{mask.name}' has {n_mask} times but the field '{like.name}' has no "
                f"'{time_dim}' dim: select one mask, e.g. mask.isel({time_dim}=0)"
            )
        mask = mask.isel({time_dim: 0}, drop=True)
    if time_dim not in mask.dims:
        if mode in ("paired",) and has_time and n_like != 1:
            raise ClimgenInputError(
                f"mode='paired' needs one mask per time ({n_like}), mask '{mask.name}' has one"
            )
        return check_mask(mask, like)
    if mode == "broadcast":
        raise ClimgenInputError(
            f"mode='broadcast' needs a single mask, mask '{mask.name}' has {n_mask} times"
        )
    if mode == "cycle":
        mask = mask.isel({time_dim: np.arange(n_like) % n_mask})
    elif n_mask != n_like:
        raise ClimgenInputError(
            f"mask '{mask.name}' has {n_mask} times and field '{like.name}' has {n_like}: "
            "give one mask, one per time, or pair them with mode='cycle'"
        )
    mask = mask.drop_vars(time_dim, errors="ignore")
    if time_dim in like.coords:
        mask = mask.assign_coords({time_dim: like[time_dim].values})
    return check_mask(mask, like)


def canonical_mask_array(mask: xr.DataArray) -> np.ndarray:
    """Mask values as int8 ``(N, H, W)``, canonical orientation (lat ascending, lon in [0, 360))."""
    canon, _ = to_canonical(mask, detect_grid(mask))
    values = np.asarray(canon.values).astype(np.int8)
    return values.reshape(-1, *values.shape[-2:])


def _coverage_pairs(coverage, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = (coverage, coverage) if np.isscalar(coverage) else coverage
    if not 0 < lo <= hi <= 1:
        raise ClimgenInputError(
            f"coverage must be in (0, 1] (or a (low, high) pair), got {coverage}"
        )
    return rng.uniform(lo, hi, n)


def blob_masks(
    n: int, shape: tuple[int, int], *, coverage=(0.1, 0.6), smoothness: float = -4.0, seed=None
) -> np.ndarray:
    """``n`` masks (int8, (n, H, W)) of irregular observed blobs with the given coverage.

    Each mask is a Gaussian random field with spectrum ``k**smoothness``
    (:func:`~climgen.data.samples.make_grf`, periodic in both index directions) thresholded at
    its own ``1 − coverage`` quantile, so exactly ``round(coverage · H · W)`` cells (± ties) are
    observed. ``coverage``: a fraction or a (low, high) range drawn uniformly per mask.
    """
    rng = np.random.default_rng(seed)
    frac = _coverage_pairs(coverage, n, rng)
    field = make_grf(n, *shape, slope=smoothness, seed=rng).reshape(n, -1)
    size = field.shape[1]
    n_observed = np.clip(np.round(frac * size).astype(int), 1, size)
    thresholds = np.sort(field, axis=1)[np.arange(n), size - n_observed]
    return (field >= thresholds[:, None]).reshape(n, *shape).astype(np.int8)


def band_masks(
    n: int, shape: tuple[int, int], *, coverage=(0.1, 0.6), raggedness: float = 0.1, seed=None
) -> np.ndarray:
    """``n`` masks with one observed latitude band each (int8, (n, H, W)).

    The band covers a random contiguous set of rows whose count is ``coverage · H``; its edges
    move by up to ``raggedness · H`` rows along longitude (a smooth random wiggle), as coverage
    does at the edge of a sampled region.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    frac = _coverage_pairs(coverage, n, rng)
    width = np.clip(np.round(frac * h), 1, h)
    start = rng.uniform(0, h - width + 1e-9)
    wiggle = make_grf(n, 2, w, slope=-3.0, seed=rng)[:, 0]
    wiggle = raggedness * h * wiggle / np.abs(wiggle).max(axis=1, keepdims=True).clip(1e-12)
    rows = np.arange(h)[None, :, None]
    lo = (start[:, None] + wiggle)[:, None, :]
    hi = lo + width[:, None, None]
    return ((rows >= lo) & (rows < hi)).astype(np.int8)


def track_masks(
    n: int,
    shape: tuple[int, int],
    *,
    tracks: int | tuple[int, int] = (3, 12),
    half_width_deg: float = 4.0,
    seed=None,
) -> np.ndarray:
    """``n`` ship-track-like masks (int8, (n, H, W)) on a global cell-centred lat/lon grid.

    Each track is an arc of a random great circle (random pole, random start, length 30°–150°);
    a cell is observed when its great-circle distance to the circle is below
    ``half_width_deg`` and it lies within the arc. The number of tracks per mask is drawn
    from ``tracks`` (an int or an inclusive range). Vectorised over masks × tracks × cells.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    lo_n, hi_n = (tracks, tracks) if np.isscalar(tracks) else tracks
    max_tracks = int(hi_n)
    active = np.arange(max_tracks)[None, :] < rng.integers(lo_n, hi_n + 1, n)[:, None]
    lat = np.deg2rad(-90 + 180 * (np.arange(h) + 0.5) / h)
    lon = np.deg2rad(360 * (np.arange(w) + 0.5) / w)
    cells = np.stack(
        np.broadcast_arrays(
            np.cos(lat)[:, None] * np.cos(lon)[None],
            np.cos(lat)[:, None] * np.sin(lon)[None],
            np.sin(lat)[:, None],
        ),
        axis=-1,
    )  # (H, W, 3)
    pole = rng.standard_normal((n, max_tracks, 3))
    pole /= np.linalg.norm(pole, axis=-1, keepdims=True)
    # Orthonormal basis (a, b) of the great circle with pole p; angle along it from a.
    helper = np.where(np.abs(pole[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0])
    a = np.cross(pole, helper)
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b = np.cross(pole, a)
    dist_to_circle = np.abs(np.arcsin(np.clip(np.einsum("ntk,hwk->nthw", pole, cells), -1, 1)))
    angle = np.arctan2(np.einsum("ntk,hwk->nthw", b, cells), np.einsum("ntk,hwk->nthw", a, cells))
    start = rng.uniform(-np.pi, np.pi, (n, max_tracks))[..., None, None]
    length = np.deg2rad(rng.uniform(30, 150, (n, max_tracks)))[..., None, None]
    along = np.mod(angle - start, 2 * np.pi) <= length
    on_track = (dist_to_circle <= np.deg2rad(half_width_deg)) & along
    return (on_track & active[..., None, None]).any(axis=1).astype(np.int8)


def synthetic_masks(
    n: int, shape: tuple[int, int], *, kind: str = "mixed", coverage=(0.1, 0.6), seed=None
) -> np.ndarray:
    """``n`` synthetic masks (int8, (n, H, W)) of ``kind`` in :data:`SYNTHETIC_KINDS`.

    ``"mixed"`` draws each mask's kind uniformly from blobs, bands and tracks; a third of the
    mixed masks are the union of a blob mask and a track mask (land stations plus ships).
    """
    if kind not in SYNTHETIC_KINDS:
        raise ClimgenInputError(f"unknown synthetic mask kind {kind!r}; use {SYNTHETIC_KINDS}")
    rng = np.random.default_rng(seed)
    if kind == "blobs":
        return blob_masks(n, shape, coverage=coverage, seed=rng)
    if kind == "bands":
        return band_masks(n, shape, coverage=coverage, seed=rng)
    if kind == "tracks":
        return track_masks(n, shape, seed=rng)
    which = rng.integers(0, 3, n)
    out = np.empty((n, *shape), np.int8)
    for k, make in enumerate((blob_masks, band_masks)):
        idx = np.flatnonzero(which == k)
        if idx.size:
            out[idx] = make(idx.size, shape, coverage=coverage, seed=rng)
    idx = np.flatnonzero(which == 2)
    if idx.size:
        low = coverage if np.isscalar(coverage) else coverage[0]
        blobs = blob_masks(idx.size, shape, coverage=(min(low, 0.3),) * 2, seed=rng)
        out[idx] = track_masks(idx.size, shape, seed=rng) | blobs
    return out


def roll_longitude(masks: np.ndarray, shifts, *, axis: int = -1) -> np.ndarray:
    """Masks ``(N, H, W)`` each rolled by its own number of longitude cells ``shifts`` (N,).

    A periodic shift east (positive) or west: an augmentation that keeps a real mask's
    structure while moving it over the globe. Vectorised with one gather.
    """
    masks = np.asarray(masks)
    shifts = np.broadcast_to(np.asarray(shifts, dtype=np.int64), masks.shape[:1])
    w = masks.shape[axis]
    cols = (np.arange(w)[None, :] - shifts[:, None]) % w  # (N, W)
    index = cols.reshape(masks.shape[0], *([1] * (masks.ndim - 2)), w)
    moved = np.moveaxis(masks, axis, -1)
    return np.moveaxis(np.take_along_axis(moved, index, axis=-1), -1, axis)
