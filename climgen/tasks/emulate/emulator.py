"""Emulation: learn the distribution of simulated fields and draw new, statistically faithful ones.

``Emulator(family=...).fit(ds)`` normalises the chosen variables (statistics streamed with
dask and saved with the model), stacks them as channels, builds the family for the data's grid
(shape and periodic axes), and trains it with the one trainer. ``sample(n)`` returns an
``xr.Dataset`` on the training grid: same coordinates, latitude order, longitude convention and
attributes, a ``sample`` dim, and provenance (``history``, ``climgen_version``, family).

A run directory holds everything needed to reload: checkpoints (safetensors + model card with
the normaliser, variables and grid), ``template.nc`` (one all-zero sample carrying the
coordinates and attributes) and ``normalizer.json``.

Example
-------
>>> import climgen as cg
>>> from climgen.data.samples import grf_dataarray
>>> da = grf_dataarray(64, 16, 32, seed=0, name="psi")
>>> em = cg.Emulator("vae", latent_dim=8, base_channels=8).fit(
...     da, run_dir=str(tmp), max_steps=5, batch_size=16, progress=False)   # doctest: +SKIP
>>> em.sample(4).psi.dims                                                  # doctest: +SKIP
('sample', 'y', 'x')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.data.dataset import FieldDataset, to_xarray
from climgen.data.io import as_dataset, load_run_file, write_fields
from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError
from climgen.tasks._common import (
    build_seeded,
    default_run_dir,
    provenance_attrs,
    train_config,
    train_family,
    zero_template,
)
from climgen.train import TrainConfig, load_family
from climgen.train.distributed import is_main_process

__all__ = ["Emulator"]

_TEMPLATE = "template.nc"
_NORMALIZER = "normalizer.json"
_CALIBRATION = "spectral_calibration.json"


class Emulator:
    """Generative emulator of gridded fields, with any registered family.

    Parameters
    ----------
    family : family name (``climgen.available_families()``: "ae", "vae", "gan", ...).
    variables : variables to emulate jointly (channels); default: every data variable that
        has the sample dim.
    sample_dim : the dim that indexes independent fields (default ``"time"``).
    normalization : ``"standard"`` (area-weighted mean/std) or ``"robust"`` (median/IQR).
    **family_options : passed to the family constructor (e.g. ``loss="wgan-gp"``,
        ``latent_dim=64``); unknown options raise an error listing the valid ones.
    """

    def __init__(
        self,
        family: str = "vae",
        *,
        variables=None,
        sample_dim: str = "time",
        normalization: str = "standard",
        **family_options,
    ):
        self.family_name = family
        self.variables = [variables] if isinstance(variables, str) else variables
        self.sample_dim = sample_dim
        self.normalization = normalization
        self.family_options = family_options
        self.family = None
        self.normalizer: Normalizer | None = None
        self.template: xr.Dataset | None = None
        self.run_dir: Path | None = None
        self.result = None
        self.checkpoint_step: int | None = None
        self.calibration = None

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        data,
        *,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        train: TrainConfig | dict | None = None,
        callbacks=(),
        **train_options,
    ) -> Emulator:
        """Train on ``data`` (Dataset, DataArray or file paths); returns ``self``.

        ``train`` / ``train_options`` are :class:`climgen.train.TrainConfig` fields
        (``max_steps``, ``batch_size``, ``seed``, ...). ``run_dir`` defaults to
        ``runs/emulate-<family>-<time>``; ``resume=True`` continues its latest checkpoint.
        """
        ds = as_dataset(data, self.variables)
        variables = self.variables or [
            str(v) for v in ds.data_vars if self.sample_dim in ds[v].dims
        ]
        if not variables:
            raise ClimgenInputError(
                f"no data variable has the sample dim '{self.sample_dim}' "
                f"(variables: {list(ds.data_vars)}); pass sample_dim=..."
            )
        self.variables = variables
        check_all_finite(ds, variables, self.sample_dim)
        config = train_config(train, train_options)
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("emulate", self.family_name)
        main = is_main_process()  # under torchrun only rank 0 writes files
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and (self.run_dir / _NORMALIZER).exists():
            self.normalizer = Normalizer.from_json(self.run_dir / _NORMALIZER)
        else:
            self.normalizer = Normalizer.fit(ds, variables, method=self.normalization)
            if main:
                self.normalizer.to_json(self.run_dir / _NORMALIZER)
        dataset = FieldDataset(
            ds, variables, sample_dim=self.sample_dim, normalizer=self.normalizer
        )
        grid = dataset.grid
        shape = (ds.sizes[grid.y_dim], ds.sizes[grid.x_dim])
        self.template = zero_template(ds, variables, self.sample_dim)
        if main:
            write_fields(self.template, self.run_dir / _TEMPLATE)
        self.family = build_seeded(
            config.seed,
            self.family_name,
            channels=len(variables),
            shape=shape,
            periodic=(grid.periodic_y, grid.periodic_x),
            **self.family_options,
        )
        card = {
            "task": "emulate",
            "variables": variables,
            "sample_dim": self.sample_dim,
            "normalizer": self.normalizer.state_dict(),
            "grid": {
                "kind": grid.kind,
                "dims": list(grid.spatial_dims),
                "shape": list(shape),
                "periodic": [grid.periodic_y, grid.periodic_x],
            },
            "data": {
                "source": str(ds.encoding.get("source", "in-memory")),
                "n_samples": int(ds.sizes[self.sample_dim]),
                "title": str(ds.attrs.get("title", "")),
            },
        }
        # Sample with the averaged weights (if any), as a reloaded emulator does.
        self.family, self.result = train_family(
            self.family,
            config,
            self.run_dir,
            dataset,
            resume=resume,
            callbacks=callbacks,
            card=card,
        )
        self.checkpoint_step = int(self.result.step)
        return self

    def calibrate_spectrum(
        self,
        data,
        *,
        n_samples: int = 256,
        seed: int = 2**20,
        max_gain: float = 1e3,
        per_row: bool = False,
        marginal: bool = False,
        sample_options: dict | None = None,
    ) -> Emulator:
        """Fit a :class:`~climgen.tasks.emulate.spectral_calibration.SpectralCalibration`
        against ``data`` (the training data) from ``n_samples`` raw samples; later :meth:`sample`
        calls apply it.

        The gain g(k) = sqrt(P_data(k) / P_model(k)) per wavenumber of the diagnostics' basis
        gives calibrated samples the data's mean spectrum. Saved in the run dir
        (``spectral_calibration.json``) and reloaded by :meth:`load`. ``per_row=True`` adds a
        first gain per row and x-wavenumber (zonal spectrum per latitude; x-spectrum per
        height), which also carries the variance profile and the structure functions along x.
        ``marginal=True`` adds an empirical quantile mapping per row onto the data's one-point
        distribution (tails, kurtosis) before the isotropic gain. ``sample_options`` go to
        the family's sampler (e.g. fewer diffusion ``steps``: calibrate the sampler you use).
        Returns ``self``.
        """
        from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

        self._check_fitted()
        ds = as_dataset(data, self.variables)
        raw = self.sample(n_samples, seed=seed, calibrated=False, **(sample_options or {}))
        self.calibration = SpectralCalibration.fit(
            raw,
            ds,
            self.variables,
            data_sample_dim=self.sample_dim,
            max_gain=max_gain,
            per_row=per_row,
            marginal=marginal,
        )
        if self.run_dir is not None and is_main_process():
            self.calibration.save(self.run_dir / _CALIBRATION)
        return self

    # -- sampling --------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        batch_size: int = 64,
        calibrated: bool | None = None,
        **sample_options,
    ) -> xr.Dataset:
        """Draw ``n`` fields; returns a Dataset on the training grid with a ``sample`` dim.

        ``calibrated``: apply the spectral calibration (default: when one was fitted with
        :meth:`calibrate_spectrum`); ``True`` without one is an error.
        """
        self._check_fitted()
        for name, value in (("n", n), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ClimgenInputError(f"{name} must be a positive integer, got {value!r}")
        n, batch_size = int(n), int(batch_size)
        if calibrated is None:
            calibrated = self.calibration is not None
        if calibrated and self.calibration is None:
            raise ClimgenInputError(
                "calibrated=True but this emulator has no spectral calibration: call "
                "calibrate_spectrum(training_data) first"
            )
        generator = torch.Generator().manual_seed(seed if seed is not None else 0)
        chunks = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                x = self.family.sample(m, generator=generator, **sample_options)
                chunks.append(x.detach().float().cpu())
        x = torch.cat(chunks)
        if not torch.isfinite(x).all():
            raise ClimgenInputError(
                f"the {self.family_name} model produced non-finite samples; "
                "the training may have diverged (check metrics.csv in the run dir)"
            )
        x = self.normalizer.inverse_transform(x)
        out = to_xarray(x.numpy(), self.template, variables=self.variables, sample_dim="sample")
        out = out.assign_coords(sample=np.arange(n))
        out.attrs = self._raw_sample_attrs(n, seed)
        return self.apply_calibration(out) if calibrated else out

    def apply_calibration(self, raw: xr.Dataset) -> xr.Dataset:
        """Calibrate raw samples of this emulator (``sample(..., calibrated=False)``): the same
        fields and attributes as ``sample(..., calibrated=True)`` with the same seed, without
        drawing them again (a report of the raw network beside the calibrated one costs one
        sampling, not two)."""
        if self.calibration is None:
            raise ClimgenInputError(
                "apply_calibration needs a spectral calibration: call "
                "calibrate_spectrum(training_data) first"
            )
        if raw.attrs.get("climgen_calibrated") != "false":
            raise ClimgenInputError(
                "apply_calibration takes raw samples of the emulator (sample(..., "
                "calibrated=False)); these are calibrated already or not its samples"
            )
        out = self.calibration.apply(raw)
        calibration = {k: v for k, v in out.attrs.items() if k.startswith("climgen_spectral")}
        out.attrs = {**raw.attrs, "climgen_calibrated": "true", **calibration}
        return out

    def _raw_sample_attrs(self, n: int, seed: int | None) -> dict:
        """Global attributes of ``n`` raw samples drawn with ``seed`` (apply_calibration
        marks calibrated ones)."""
        trained_on = self.template.attrs.get("title", "unnamed data")
        attrs = provenance_attrs(
            self.template.attrs,
            f"Emulator({self.family_name}).sample({n})",
            model=self.family_name,
            run_dir=None if self.run_dir is None else str(self.run_dir),
            checkpoint_step=self.checkpoint_step,
            seed=seed if seed is not None else 0,
            calibrated=False,
        )
        # The training data's title names the data, not these samples of a model of them.
        attrs["title"] = f"samples of a climgen {self.family_name} emulator"
        attrs["source"] = f"climgen {self.family_name} emulator trained on {trained_on}"
        return attrs

    # -- persistence -----------------------------------------------------------------------
    @classmethod
    def load(
        cls, run_dir: str | os.PathLike, *, which: str = "latest", ema: bool = True
    ) -> Emulator:
        """Reload an emulator from its run directory (no code is executed from files)."""
        run_dir = Path(run_dir)
        if not (run_dir / _TEMPLATE).exists():
            raise ClimgenInputError(
                f"{run_dir} is not an emulator run directory (no {_TEMPLATE}); "
                "give the directory that `climgen train` or Emulator.fit wrote"
            )
        family, ckpt = load_family(run_dir, which=which, ema=ema)
        card = ckpt.card
        em = cls(card["family"], variables=card["variables"], sample_dim=card["sample_dim"])
        em.family = family
        em.family_options = dict(card.get("config", {}))
        em.normalizer = Normalizer.from_state_dict(card["normalizer"])
        em.template = load_run_file(run_dir / _TEMPLATE)
        em.run_dir = run_dir
        em.checkpoint_step = int(ckpt.step)
        if (run_dir / _CALIBRATION).exists():
            from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

            em.calibration = SpectralCalibration.load(run_dir / _CALIBRATION)
        return em

    def export(self, dest: str | os.PathLike, *, extras: dict | None = None) -> Path:
        """Write a sample-only, shareable copy of this emulator into the new folder ``dest``.

        One checkpoint holding the weights :meth:`sample` uses (the EMA average when the
        emulator was trained with one), without the optimiser state or the raw weights, plus
        the template, normaliser and calibration: about a third of a training checkpoint.
        Absolute paths of this machine (the training file in the model card and the
        template's ``history``) are cut to file names. :meth:`load` reads ``dest`` like a run
        directory. ``extras`` (JSON-ready: data seeds, steps, CPU time, ...) go into the model
        card under ``exported``. Returns ``dest``.
        """
        import re
        import shutil

        from climgen.train.checkpoint import export_checkpoint

        self._check_fitted()
        dest = Path(dest)
        if self.run_dir is None or self.checkpoint_step is None:
            raise ClimgenInputError("export needs a trained or loaded emulator (a run dir)")
        if dest.exists():
            raise ClimgenInputError(f"{dest} exists: export writes a new folder; remove it first")

        def names_only(text: str) -> str:  # "/a/b/c.nc" -> "c.nc"
            return re.sub(r"(?<![\w.])/(?:[^\s/'\"]+/)+", "", text)

        def shareable(card: dict) -> dict:  # the training file by its name only
            data = {**card.get("data", {})}
            data["source"] = names_only(str(data.get("source", "")))
            return {**card, "data": data}

        export_checkpoint(
            self.run_dir,
            self.checkpoint_step,
            self.family,
            dest,
            extras=extras,
            edit_card=shareable,
        )
        template = self.template.copy()
        template.attrs["history"] = names_only(str(template.attrs.get("history", "")))
        write_fields(template, dest / _TEMPLATE)
        for name in (_NORMALIZER, _CALIBRATION):
            if (self.run_dir / name).exists():
                shutil.copy2(self.run_dir / name, dest / name)
        return dest

    def _check_fitted(self) -> None:
        if self.family is None:
            raise ClimgenInputError("the emulator is not trained: call fit(...) or load(run_dir)")

    def __repr__(self) -> str:
        state = f"run_dir={str(self.run_dir)!r}" if self.run_dir else "not fitted"
        return f"Emulator(family={self.family_name!r}, variables={self.variables}, {state})"


def check_all_finite(ds: xr.Dataset, variables, sample_dim: str, *, where: str = "") -> None:
    """Fail before training, not at the batch that happens to hold a NaN (one streamed pass).
    ``where`` (e.g. the recipe and which data) prefixes the error."""
    counts = {v: (~np.isfinite(ds[v].data)).sum() for v in variables}
    if any(hasattr(c, "compute") for c in counts.values()):
        import dask

        counts = dict(zip(counts, dask.compute(*counts.values())))
    for v, count in counts.items():
        if int(count):
            raise ClimgenInputError(
                f"{where + ': ' if where else ''}"
                f"variable '{v}' holds {int(count)} NaN/inf value(s) out of {ds[v].size}; an "
                f"emulator trains on complete fields: fill them, or drop the affected "
                f"'{sample_dim}' entries (ds.dropna('{sample_dim}'))"
            )
