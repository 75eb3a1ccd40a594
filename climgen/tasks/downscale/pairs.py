"""Training pairs for downscaling: (fine, coarse) items, crops, augmentations, context.

:class:`PairDataset` yields ``{"x": fine, "cond": coarse[, "static"]}`` items (normalised,
canonical orientation), coarsening the fine field itself unless paired coarse fields are
given; :class:`ResidualDataset` the CorrDiff residual items built from them;
:func:`context_indices` the samples a field is conditioned on.
"""

from __future__ import annotations

import numpy as np
import torch

from climgen.data.coarsen import coarsen_tensor
from climgen.data.dataset import FieldDataset
from climgen.errors import ClimgenInputError

__all__ = [
    "AUGMENTATIONS",
    "context_indices",
    "check_context",
    "check_augment",
    "PairDataset",
    "ResidualDataset",
]


AUGMENTATIONS = ("shift", "mirror-y", "mirror-x")


def context_indices(i: int, n: int, context: int) -> list[int]:
    """Sample indices of field ``i`` and its temporal context: ``[i, i−k, …, i−1, i+1, …,
    i+k]`` for k = ``context``, clamped to ``[0, n − 1]`` (a series end repeats its last
    field)."""
    offsets = [0, *range(-context, 0), *range(1, context + 1)]
    return [min(max(i + o, 0), n - 1) for o in offsets]


def check_context(context) -> int:
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ClimgenInputError(
            f"context must be an integer ≥ 0 (coarse fields each side in time), got {context!r}"
        )
    return int(context)


def check_augment(augment) -> tuple[str, ...]:
    names = (augment,) if isinstance(augment, str) else tuple(augment or ())
    unknown = [a for a in names if a not in AUGMENTATIONS]
    if unknown:
        raise ClimgenInputError(
            f"unknown augment {unknown}; choose from {', '.join(AUGMENTATIONS)}"
        )
    return names


class PairDataset(torch.utils.data.Dataset):
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


class ResidualDataset(torch.utils.data.Dataset):
    """CorrDiff items ``{"x": (fine − μ)/scale, "cond": [μ, static]}`` from a pair dataset."""

    def __init__(self, pairs: PairDataset, regression, scale: float):
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
