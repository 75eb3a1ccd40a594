"""The network methods of translation ("pix2pix", "cyclegan", "augmented-cyclegan"): training
pairs, training, and translating with the trained generator A → B.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from climgen.data.dataset import FieldDataset
from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import write_fields
from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError
from climgen.families import translation as _translation  # noqa: F401  (registers families)
from climgen.tasks._common import build_seeded, default_run_dir, train_config, train_family

__all__ = [
    "TranslationPairs",
    "fit_network",
    "network_translate",
    "network_reconstruct",
    "canonical_values",
]

FAMILY = {m: m for m in ("pix2pix", "cyclegan", "augmented-cyclegan")}
STOCHASTIC = ("augmented-cyclegan",)
TEMPLATE = "b_template.nc"  # the run directory's template of domain B


class TranslationPairs(torch.utils.data.Dataset):
    """Items ``{"x": A field, "y": B field}``: paired by index, or B drawn at random.

    Unpaired draws use numpy's global RNG, which the trainer seeds, so runs are reproducible.
    """

    def __init__(self, a: FieldDataset, b: FieldDataset, paired: bool):
        self.a, self.b, self.paired = a, b, paired

    def __len__(self) -> int:
        return len(self.a) if self.paired else max(len(self.a), len(self.b))

    def __getitem__(self, i: int) -> dict:
        if self.paired:
            return {"x": self.a[i], "y": self.b[i]}
        return {"x": self.a[i % len(self.a)], "y": self.b[int(np.random.randint(len(self.b)))]}


def fit_network(tr, ds_a, ds_b, variables, resume, train, callbacks, train_options):
    """:meth:`Translator.fit` of a network: normalisers, pairs, family, trainer; returns ``tr``."""
    config = train_config(train, train_options)
    paired = tr.method == "pix2pix"
    if paired and ds_a.sizes[tr.sample_dim] != ds_b.sizes[tr.sample_dim]:
        raise ClimgenInputError(
            f"pix2pix needs paired data: domain A has {ds_a.sizes[tr.sample_dim]} fields, "
            f"domain B {ds_b.sizes[tr.sample_dim]} along '{tr.sample_dim}'"
        )
    if tr.run_dir is None:
        tr.run_dir = default_run_dir("translate", tr.method)
    tr.run_dir.mkdir(parents=True, exist_ok=True)
    tr.norm_a = Normalizer.fit(ds_a, variables, method=tr.normalization)
    tr.norm_b = Normalizer.fit(ds_b, variables, method=tr.normalization)
    set_a = FieldDataset(ds_a, variables, sample_dim=tr.sample_dim, normalizer=tr.norm_a)
    set_b = FieldDataset(ds_b, variables, sample_dim=tr.sample_dim, normalizer=tr.norm_b)
    grid = detect_grid(ds_a[variables[0]])
    tr.family = build_seeded(
        config.seed,
        FAMILY[tr.method],
        channels=len(variables),
        shape=set_a.shape,
        periodic=(grid.periodic_y, grid.periodic_x),
        **tr.method_options,
    )
    write_fields(tr.b_template, tr.run_dir / TEMPLATE)
    card = {
        "task": "translate",
        "method": tr.method,
        "variables": variables,
        "sample_dim": tr.sample_dim,
        "normalizer_a": tr.norm_a.state_dict(),
        "normalizer_b": tr.norm_b.state_dict(),
        "grid": {
            "kind": grid.kind,
            "dims": list(grid.spatial_dims),
            "shape": list(set_a.shape),
            "periodic": [grid.periodic_y, grid.periodic_x],
        },
        "data": {
            "paired": paired,
            "n_samples_a": len(set_a),
            "n_samples_b": len(set_b),
            "title_a": str(ds_a.attrs.get("title", "")),
            "title_b": str(ds_b.attrs.get("title", "")),
        },
    }
    tr.family, tr.result = train_family(
        tr.family,
        config,
        tr.run_dir,
        TranslationPairs(set_a, set_b, paired),
        resume=resume,
        callbacks=callbacks,
        card=card,
    )
    return tr


def network_translate(tr, ds: xr.Dataset, batch_size: int, seed: int) -> np.ndarray:
    """The trained network's B fields (physical units, canonical (N, C, H, W)) for ``ds``."""
    if tr.method in ("cyclegan", *STOCHASTIC):  # noise / codes drawn with gen
        return _batched(tr, ds, batch_size, seed, tr.family.translate, tr.norm_b)
    return _batched(tr, ds, batch_size, seed, lambda x, gen: tr.family.translate(x), tr.norm_b)


def network_reconstruct(tr, ds: xr.Dataset, batch_size: int, seed: int) -> np.ndarray:
    """The A → B → A cycle of ``ds`` (A's physical units, canonical (N, C, H, W))."""
    return _batched(tr, ds, batch_size, seed, tr.family.reconstruct, tr.norm_a)


def _batched(tr, ds, batch_size: int, seed: int, step, norm_out) -> np.ndarray:
    """``step(x, gen)`` over batches of ``ds``'s normalised A fields (``gen`` seeded with
    ``seed``, shared by the batches), de-normalised with ``norm_out``."""
    x = torch.as_tensor(canonical_values(ds, tr.variables, tr.sample_dim), dtype=torch.float64)
    x = tr.norm_a.transform(x).float()
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunks.append(step(x[start : start + batch_size], gen).double())
    return norm_out.inverse_transform(torch.cat(chunks)).numpy()


def canonical_values(ds: xr.Dataset, variables, sample_dim: str) -> np.ndarray:
    """(N, C, H, W) values in canonical orientation (what networks and to_xarray use)."""
    arrays = [to_canonical(ds[v])[0].transpose(sample_dim, ...) for v in variables]
    return np.stack([a.values for a in arrays], axis=1)
