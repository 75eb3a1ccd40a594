"""Network methods of the Downscaler ("regression", "srgan"): a super-resolution family
(:class:`climgen.families.superres.SuperResolution`) trained on (fine, coarse) pairs, run on
whole fields or in tiles, then the optional spectral calibration and conservation layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.data.dataset import FieldDataset
from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import as_dataset, load_run_file, write_fields
from climgen.data.normalize import Normalizer
from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError
from climgen.families.base import check_family_options
from climgen.families.superres import conserve as conserve_layer
from climgen.families.superres import conserve_additive
from climgen.tasks._common import (
    build_seeded,
    check_neighbours,
    default_run_dir,
    fields_dataset,
    sample_step,
    train_config,
    train_family,
    zero_template,
)
from climgen.tasks.downscale.calibration import calibrate_tensor
from climgen.tasks.downscale.conservation import row_weights, smooth_correction
from climgen.tasks.downscale.methods import (
    COARSE_TEMPLATE,
    FINE_TEMPLATE,
    NORMALIZER,
    STATIC,
    check_finite,
)
from climgen.tasks.downscale.pairs import PairDataset, context_indices
from climgen.tasks.downscale.tiles import auto_tile, tiled_apply
from climgen.train import TrainConfig, load_family

__all__ = ["NetworkMethod"]


class NetworkMethod:
    """The kind "network": a ``superres`` family trained by :meth:`fit`; :meth:`draw` gives
    one member's normalised fine fields (the generator's output)."""

    trained = True
    patches = True  # may train on crops (patch_size)

    def configure(self, down, method: str, method_options: dict, static) -> None:
        down.method_options = {**down.spec.defaults, **method_options}
        check_family_options("superres", down.method_options)

    @staticmethod
    def load_run(down_cls, run_dir: Path, *, which: str = "latest", ema: bool = True):
        """A trained network (or CorrDiff) downscaler from its run directory."""
        import climgen.families.superres  # noqa: F401  (registers the family)

        corrdiff = (run_dir / "diffusion").is_dir()
        reg_dir = run_dir / "regression" if corrdiff else run_dir
        family, ckpt = load_family(reg_dir, which=which, ema=ema)
        card = ckpt.card
        ds = down_cls(
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
        ds.fine_template = load_run_file(run_dir / FINE_TEMPLATE)
        ds.coarse_template = load_run_file(run_dir / COARSE_TEMPLATE)
        state = card.get("static")
        if state:
            static = load_run_file(run_dir / STATIC)
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

    def regression_dir(self, down) -> Path:
        """Where the super-resolution network's checkpoints go."""
        return down.run_dir

    def after_regression(self, down, pairs, grid, shape, config, callbacks, resume) -> None:
        """A later training stage (none for a plain network)."""

    def downscale(self, down, ds, members, seed, batch_size, calibrated, progress=False):
        down._check_fitted()
        down._check_has(ds, down.variables, "the coarse input")
        if down.context and down.sample_dim in ds.coords:
            check_neighbours(
                ds[down.sample_dim].values,
                down.context,
                step=down.sample_step,
                what="coarse fields",
                hint="give consecutive coarse fields (a few beyond the wanted ones)",
            )
        return self.network_downscale(
            down, ds, members or 1, seed, batch_size, calibrated, show=progress
        )

    def draw(self, down, cond: torch.Tensor, gen, batch_size, cache: dict) -> torch.Tensor:
        """One member's fine fields (normalised) for the conditioning ``cond``."""
        return self.generate(down, cond, gen, batch_size, cache)

    def fit(
        self,
        down,
        data,
        fine=None,
        *,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        train: TrainConfig | dict | None = None,
        callbacks=(),
        **train_options,
    ):
        """:meth:`Downscaler.fit` of a network: normaliser, pairs, family, trainer."""
        if fine is None:
            ds_fine, ds_coarse = as_dataset(data, down.variables), None
        else:
            ds_coarse, ds_fine = as_dataset(data, down.variables), as_dataset(fine, down.variables)
        variables = down._pick_variables(ds_fine, "the fine training data")
        times = ds_fine[down.sample_dim].values if down.sample_dim in ds_fine.coords else None
        down.sample_step = sample_step(times)
        if ds_coarse is not None:
            down._check_has(ds_coarse, variables, "the coarse training data")
            if down.augment:
                raise ClimgenInputError(
                    f"augment={list(down.augment)} transforms fine fields before coarsening "
                    "them; with paired data (fit(ds_coarse, ds_fine)) the coarse fields are "
                    "given, so drop augment"
                )
        f = down.factor
        grid = detect_grid(ds_fine[variables[0]])
        if "shift" in down.augment and not (grid.periodic_y or grid.periodic_x):
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
        down.run_dir = Path(run_dir) if run_dir else default_run_dir("downscale", down.method)
        down.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and (down.run_dir / NORMALIZER).exists():
            down.normalizer = Normalizer.from_json(down.run_dir / NORMALIZER)
        else:
            down.normalizer = Normalizer.fit(ds_fine, variables, method=down.normalization)
            down.normalizer.to_json(down.run_dir / NORMALIZER)
        fine_set = FieldDataset(
            ds_fine, variables, sample_dim=down.sample_dim, normalizer=down.normalizer
        )
        shape = fine_set.shape
        canon_fine, _ = to_canonical(ds_fine[variables[0]], grid)
        weights = row_weights(canon_fine)
        coarse_set = None
        if ds_coarse is not None:
            coarse_set = FieldDataset(
                ds_coarse, variables, sample_dim=down.sample_dim, normalizer=down.normalizer
            )
            want = (shape[0] // f, shape[1] // f)
            if coarse_set.shape != want or len(coarse_set) != len(fine_set):
                raise ClimgenInputError(
                    f"paired data do not match: coarse grid {coarse_set.shape} with "
                    f"{len(coarse_set)} fields, fine grid {shape} with {len(fine_set)} fields; "
                    f"with factor {f} the coarse grid must be {want} with as many fields"
                )
            down.coarse_template = zero_template(ds_coarse, variables, down.sample_dim)
        else:
            one = ds_fine[variables].isel({down.sample_dim: 0}, drop=True)
            down.coarse_template = zero_template(down.coarsen(one), variables, down.sample_dim)
        down.fine_template = zero_template(ds_fine, variables, down.sample_dim)
        static_state = prepare_static(down, grid, canon_fine) if down.static is not None else None
        options = dict(down.method_options)
        options.setdefault("spectral_spacing", [grid.dy, grid.dx])
        periodic = (grid.periodic_y, grid.periodic_x)
        net_shape = self.patch_shape(down, shape, periodic, weights, options)
        if options.get("constraint") == "additive" and weights is not None:
            options.setdefault("row_weights", [float(w) for w in weights])
        down.family = build_seeded(
            config.seed,
            "superres",
            channels=len(variables),
            shape=net_shape,
            periodic=(grid.periodic_y, grid.periodic_x),
            factor=f,
            static_channels=0 if down.static_tensor is None else down.static_tensor.shape[0],
            context_channels=2 * down.context * len(variables),
            **options,
        )
        write_fields(down.fine_template, down.run_dir / FINE_TEMPLATE)
        write_fields(down.coarse_template, down.run_dir / COARSE_TEMPLATE)
        if down.static is not None:
            write_fields(down.static, down.run_dir / STATIC)
        card = {
            "task": "downscale",
            "method": down.method,
            "factor": f,
            "conserve": down.conserve,
            "variables": variables,
            "sample_dim": down.sample_dim,
            "patch_size": None if down.patch_size is None else list(down.patch_size),
            "augment": list(down.augment),
            "context": down.context,
            "sample_step": down.sample_step,
            "normalizer": down.normalizer.state_dict(),
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
        pairs = PairDataset(
            fine_set,
            f,
            w_t,
            coarse_set,
            down.static_tensor,
            down.patch_size,
            periodic,
            down.augment,
            down.context,
        )
        reg_dir = self.regression_dir(down)
        down.family, down.result = train_family(
            down.family, config, reg_dir, pairs, resume=resume, callbacks=callbacks, card=card
        )
        down.checkpoint_step = int(down.result.step)
        self.after_regression(down, pairs, grid, shape, config, callbacks, resume)
        return down

    def patch_shape(self, down, shape, periodic, weights, options) -> tuple[int, int]:
        """The fine shape the family trains on: the whole grid, or the patch's."""
        if down.patch_size is None:
            return shape
        f = down.factor
        for n, p, per, axis in zip(shape, down.patch_size, periodic, ("rows", "columns")):
            if p < 1 or (not per and p > n // f):
                raise ClimgenInputError(
                    f"patch_size {down.patch_size} does not fit the coarse grid "
                    f"{(shape[0] // f, shape[1] // f)}: {axis} must be 1..{n // f} "
                    "on a bounded axis"
                )
        if options.get("constraint") == "additive" and weights is not None:
            raise ClimgenInputError(
                "patch_size with constraint='additive' needs a planar grid (the latitude "
                "weights of the in-model layer depend on the patch); use conserve=True instead"
            )
        return (down.patch_size[0] * f, down.patch_size[1] * f)

    def check_coarse_grid(self, down, ds: xr.Dataset) -> None:
        for v in down.variables:
            have, _ = to_canonical(ds[v])
            want, _ = to_canonical(down.coarse_template[v])
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
                        f"coarsen the fine training grid by factor {down.factor} to match"
                    )

    def network_downscale(
        self, down, ds, members: int, seed: int, batch_size, calibrated: bool = False, show=False
    ) -> xr.Dataset:
        self.check_coarse_grid(down, ds)
        for v in down.variables:
            check_finite(ds[v], "the coarse input")
        has_sample = down.sample_dim in ds[down.variables[0]].dims
        if not has_sample:
            ds = ds.expand_dims(down.sample_dim)
        arrays = [to_canonical(ds[v])[0].transpose(down.sample_dim, ...) for v in down.variables]
        raw = torch.as_tensor(np.stack([a.values for a in arrays], axis=1), dtype=torch.float64)
        cond = down.normalizer.transform(raw).float()
        if down.context:
            n = cond.shape[0]
            cond = torch.cat(
                [cond[context_indices(i, n, down.context)].flatten(0, 1)[None] for i in range(n)]
            )
        w_t = self.fine_row_weights(down)
        cache: dict = {"row_weights": w_t}  # what the members share
        if down.conserve:  # the fine grid, once for all members
            template = to_canonical(down.fine_template[down.variables[0]])[0]
            grid = detect_grid(template)
            periodic = (grid.periodic_y, grid.periodic_x)
        outputs = []
        n_fields = cond.shape[0] * (members + (down.diffusion is not None))
        down._bar = progress_bar(
            total=n_fields, desc=f"downscale ({down.method})", unit="field", enabled=show
        )
        try:
            for m in range(members):
                gen = torch.Generator().manual_seed(int(seed) * 100_003 + m)
                fine_n = self.draw(down, cond, gen, batch_size, cache)
                fine = down.normalizer.inverse_transform(fine_n)
                if calibrated:  # before the layer, which restores the block means it moved
                    fine = calibrate_tensor(down, fine)
                if down.conserve:
                    fine = smooth_correction(
                        fine,
                        raw,
                        down.factor,
                        w_t,
                        periodic,
                        conserve=down.conserve,
                        back_projection=down.back_projection,
                        calibrated=calibrated,
                        template=template,
                    )
                    fine = conserve_layer(fine, raw, down.factor, w_t, down.conserve)
                outputs.append(fine)
        finally:
            down._bar.close()
            down._bar = None
        out = torch.stack(outputs) if members > 1 else outputs[0]
        return self.to_fine_dataset(down, out, ds, members > 1, has_sample)

    def fine_row_weights(self, down) -> torch.Tensor | None:
        fine_canon, _ = to_canonical(down.fine_template[down.variables[0]])
        weights = row_weights(fine_canon)
        return None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def generate(self, down, cond: torch.Tensor, gen, batch_size, cache=None) -> torch.Tensor:
        """The SR generator's fine fields (normalised, float64), tiled when memory requires
        (``cache``: the call's shared values, e.g. the fine rows' area weights)."""
        family = down.family
        net = family.generator
        n = cond.shape[0]
        halo = down.tile_halo if down.tile_halo is not None else net.receptive_radius
        width = family.config["base_channels"]
        tile, auto_batch = auto_tile(tuple(cond.shape[-2:]), down.factor, width, halo, n_fields=n)
        if down.tile_size is not None:
            tile = down.tile_size or None
        batch = batch_size or auto_batch
        w_t = None
        if family.config["constraint"] == "additive":
            shared = cache is not None and "row_weights" in cache
            w_t = cache["row_weights"] if shared else self.fine_row_weights(down)
        static = down.static_tensor
        chunks = []
        for start in range(0, n, batch):
            c = cond[start : start + batch]
            if down._bar is not None:
                down._bar.update(c.shape[0])
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
                        down.factor,
                        tile=int(tile),
                        halo=int(halo),
                        periodic=family.periodic,
                    )
                if family.config["constraint"] == "additive":
                    centre = c[:, : family.channels].double()
                    y = conserve_additive(y.double(), centre, down.factor, w_t)
            chunks.append(y.double())
        return torch.cat(chunks)

    def to_fine_dataset(self, down, out: torch.Tensor, ds, has_members: bool, has_sample: bool):
        pieces = out if has_members else out[None]
        fine = fields_dataset(
            [member.float().numpy() for member in pieces],
            down.fine_template,
            ds,
            down.variables,
            down.sample_dim,
            stacked=has_members,
            has_sample=has_sample,
        )
        for v in down.variables:
            fine[v].attrs = dict(ds[v].attrs)
        return fine


def prepare_static(down, grid, canon_fine: xr.DataArray) -> dict:
    """Normalise the static inputs of ``down`` (on the fine grid) into ``down.static_tensor``;
    returns their variables, centres and scales for the run card."""
    static = down.static
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
                dim not in canon.coords or np.allclose(canon[dim].values, canon_fine[dim].values)
            )
            if not ok:
                raise ClimgenInputError(
                    f"static variable '{v}' is not on the fine grid: dim '{dim}' differs "
                    f"({canon.sizes[dim]} vs {canon_fine.sizes[dim]} cells)"
                )
        check_finite(da, "the static inputs")
        values = canon.values.astype(np.float64)
        center[v], scale[v] = float(values.mean()), float(values.std() or 1.0)
        tensors.append((values - center[v]) / scale[v])
    down.static_tensor = torch.as_tensor(np.stack(tensors), dtype=torch.float32)
    return {"variables": names, "center": center, "scale": scale}
