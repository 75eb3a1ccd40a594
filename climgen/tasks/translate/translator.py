"""Domain translation: map fields of climate A onto climate B (bias correction, model → model).

``Translator(method=...)`` offers, in one API (:func:`available_translate_methods`):

- ``"quantile-mapping"``: the standard statistical bias correction. Per grid point and
  variable, the empirical quantile functions Q_A, Q_B of the training fields give the map
  ``T(x) = Q_B(F_A(x))`` (F_A = Q_A⁻¹, piecewise linear between ``n_quantiles`` evenly spaced
  probability levels; values outside A's training range keep the end values of Q_B).
  ``fit`` only computes the quantiles (no training); unpaired data are fine.
  Reference: Panofsky & Brier (1968); Themeßl et al. 2011, Int. J. Climatol. 31, 1530.
- ``"pix2pix"``: paired translation, U-Net generator + conditional PatchGAN critic, L1 +
  adversarial loss (:class:`climgen.families.translation.Pix2Pix`; Isola et al. 2017).
  ``ds_a`` and ``ds_b`` must hold as many fields, the i-th of A paired with the i-th of B.
- ``"cyclegan"``: unpaired translation, two generators, two critics, cycle-consistency and
  identity losses (:class:`climgen.families.translation.CycleGAN`; Zhu et al. 2017). Each
  batch draws B's fields independently of A's.
- ``"augmented-cyclegan"``: unpaired and many-to-many: generators take latent codes z ~ N(0, I)
  and encoders infer them (:class:`climgen.families.translation.AugmentedCycleGAN`;
  Almahairi et al. 2018); ``translate(ds_a, members=M)`` draws M translations per field.

Networks see each domain normalised by its own :class:`climgen.data.normalize.Normalizer`
(one centre and scale per variable); translated fields are returned in B's units.
``translate(ds_a)`` returns a Dataset on ``ds_a``'s grid (coordinates of ``ds_a``, variable
attributes of B's training data, global attributes of ``ds_a`` plus provenance).

Example
-------
>>> import climgen as cg                                                    # doctest: +SKIP
>>> out = cg.Translator("quantile-mapping").fit(model_hist, obs).translate(model_future)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid
from climgen.data.io import as_dataset, climgen_version, load_run_file, write_fields
from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError
from climgen.families import translation as _translation  # noqa: F401  (registers families)
from climgen.families.base import check_family_options
from climgen.tasks._common import (
    field_variables,
    fields_dataset,
    provenance_attrs,
    utc_stamp,
    zero_template,
)
from climgen.tasks.quantile_mapping import QuantileMapping
from climgen.tasks.translate.networks import (
    FAMILY,
    STOCHASTIC,
    TEMPLATE,
    canonical_values,
    fit_network,
    network_reconstruct,
    network_translate,
)
from climgen.train import TrainConfig, load_family

__all__ = [
    "Translator",
    "available_translate_methods",
    "TRANSLATE_METHODS",
    "QuantileMapping",
]

TRANSLATE_METHODS: dict[str, str] = {
    "quantile-mapping": "per grid point empirical quantile mapping (bias-correction baseline)",
    "pix2pix": "paired: U-Net generator + conditional PatchGAN, L1 + adversarial loss",
    "cyclegan": "unpaired: two generators, two PatchGAN critics, cycle + identity losses",
    "augmented-cyclegan": "unpaired, many-to-many: CycleGAN with latent codes and encoders",
}
_QUANTILES = "quantiles.npz"


def available_translate_methods() -> list[str]:
    """Names accepted as ``Translator(method=...)``: the baseline first, then networks."""
    return list(TRANSLATE_METHODS)


class Translator:
    """Translate gridded fields from domain A to domain B with any registered method.

    Parameters
    ----------
    method : one of :func:`available_translate_methods`.
    variables : variables to translate (networks: jointly, as channels); default: all.
    sample_dim : the dim of independent fields (default "time").
    normalization : "standard" or "robust" (networks).
    **method_options : ``n_quantiles`` for quantile mapping; family options for networks
        (e.g. ``base_channels=8``, ``gan_loss="hinge"``, ``cycle_weight=5``).
    """

    def __init__(
        self,
        method: str = "quantile-mapping",
        *,
        variables=None,
        sample_dim: str = "time",
        normalization: str = "standard",
        **method_options,
    ):
        if method not in TRANSLATE_METHODS:
            raise ClimgenInputError(
                f"unknown translation method {method!r}; choose one of "
                f"{', '.join(available_translate_methods())}"
            )
        self.method = method
        self.variables = [variables] if isinstance(variables, str) else variables
        self.sample_dim = sample_dim
        self.normalization = normalization
        self.method_options = dict(method_options)
        if method == "quantile-mapping":
            unknown = sorted(set(method_options) - {"n_quantiles"})
            if unknown:
                raise ClimgenInputError(
                    f"method 'quantile-mapping' takes only n_quantiles, not {unknown}"
                )
        else:
            check_family_options(FAMILY[method], method_options)
        self.family = None
        self.mapping: QuantileMapping | None = None
        self.norm_a: Normalizer | None = None
        self.norm_b: Normalizer | None = None
        self.b_template: xr.Dataset | None = None
        self.shape: tuple[int, int] | None = None
        self.run_dir: Path | None = None
        self.result = None

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        ds_a,
        ds_b,
        *,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        train: TrainConfig | dict | None = None,
        callbacks=(),
        **train_options,
    ) -> Translator:
        """Learn the map A → B from fields ``ds_a`` and ``ds_b`` on one grid; returns ``self``.

        Quantile mapping only computes quantiles (``run_dir``, if given, receives them).
        Networks train with :class:`climgen.train.Trainer`; ``train`` / ``train_options`` are
        :class:`~climgen.train.TrainConfig` fields (``max_steps``, ``batch_size``, ``seed``...).
        """
        ds_a, ds_b = as_dataset(ds_a, self.variables), as_dataset(ds_b, self.variables)
        variables = self.variables or field_variables(ds_a)
        for where, ds in (("domain A", ds_a), ("domain B", ds_b)):
            missing = [v for v in variables if v not in ds.data_vars]
            if missing:
                raise ClimgenInputError(f"variable(s) {missing} not found in the {where} data")
            if self.sample_dim not in ds[variables[0]].dims:
                raise ClimgenInputError(
                    f"the {where} data have no sample dim '{self.sample_dim}' (dims: "
                    f"{ds[variables[0]].dims}); pass sample_dim=..."
                )
            for v in variables:
                if not np.isfinite(ds[v].values).all():
                    raise ClimgenInputError(
                        f"variable '{v}' of the {where} data has NaN/inf values; translation "
                        "needs complete fields"
                    )
        self.variables = variables
        shape_a = _spatial_shape(ds_a, variables)
        if _spatial_shape(ds_b, variables) != shape_a:
            raise ClimgenInputError(
                f"domains A and B must share one grid: A is {shape_a}, B is "
                f"{_spatial_shape(ds_b, variables)} (regrid one of them first)"
            )
        self.shape = shape_a
        self.b_template = zero_template(ds_b, variables, self.sample_dim)
        self.run_dir = Path(run_dir) if run_dir else None
        if self.method == "quantile-mapping":
            n_q = self.method_options.get("n_quantiles", 100)
            self.mapping = QuantileMapping(n_q).fit(
                self._flat(ds_a, variables), self._flat(ds_b, variables)
            )
            if self.run_dir is not None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                np.savez(self.run_dir / _QUANTILES, **self.mapping.state())
                write_fields(self.b_template, self.run_dir / TEMPLATE)
            return self
        return fit_network(self, ds_a, ds_b, variables, resume, train, callbacks, train_options)

    # -- translation -----------------------------------------------------------------------
    def translate(
        self, ds_a, members: int | None = None, *, seed: int = 0, batch_size: int = 32
    ) -> xr.Dataset:
        """Domain-B fields for the domain-A fields ``ds_a`` (same grid as the training data).

        ``members=M`` (augmented-cyclegan only) draws M translations per field with latent
        codes seeded by ``seed`` and adds a ``member`` dim; the other methods are
        deterministic maps, so ``members`` must be None or 1 for them.
        """
        stochastic = self.method in STOCHASTIC
        if members is not None and (
            isinstance(members, bool) or not isinstance(members, int) or members < 1
        ):
            raise ClimgenInputError(f"members must be a positive int or None, got {members!r}")
        if members not in (None, 1) and not stochastic:
            raise ClimgenInputError(
                f"members={members!r}: method {self.method!r} is a deterministic map (one "
                "output per input); leave members=None or use method='augmented-cyclegan'"
            )
        ds, has_sample = self._prepare_input(ds_a)
        if self.mapping is not None:
            flat = self.mapping.transform(self._flat(ds, self.variables))
            outs = [flat.reshape(flat.shape[0], len(self.variables), *self.shape)]
        else:
            outs = [
                network_translate(self, ds, batch_size, int(seed) * 100_003 + m)
                for m in range(members or 1)
            ]
        result = self._assemble(outs, ds, has_sample, stacked=members is not None)
        for v in self.variables:
            result[v].attrs = dict(self.b_template[v].attrs)
        return self._provenance(result, ds)

    def reconstruct(self, ds_a, *, seed: int = 0, batch_size: int = 32) -> xr.Dataset:
        """The A → B → A cycle of ``ds_a`` in A's units (cyclegan, augmented-cyclegan).

        CycleGAN: a' = G_BA(G_AB(a)); Augmented CycleGAN: a' = G_BA(b̃, E_A(a, b̃)) with
        b̃ = G_AB(a, z), z drawn with ``seed``. The cycle error |a' − a| tells how much of
        the input the translation keeps (0: the translation is invertible on these fields).
        Same grid, coordinates and attributes as ``ds_a``.
        """
        if self.method not in ("cyclegan", "augmented-cyclegan"):
            raise ClimgenInputError(
                f"method {self.method!r} has no inverse generator: reconstruct needs "
                "'cyclegan' or 'augmented-cyclegan'"
            )
        ds, has_sample = self._prepare_input(ds_a)
        out = network_reconstruct(self, ds, batch_size, int(seed) * 100_003)
        result = self._assemble([out], ds, has_sample, stacked=False)
        for v in self.variables:
            result[v].attrs = dict(ds[v].attrs)
        return self._provenance(result, ds, call="reconstruct")

    def report(
        self,
        ds_a,
        ds_b,
        directory: str | os.PathLike,
        *,
        fit_a=None,
        fit_b=None,
        members: int | None = None,
        seed: int = 0,
        factor: float = 2.0,
    ) -> Path:
        """Translate held-out A fields ``ds_a``, score them against held-out B fields ``ds_b``
        and write the report page ``directory/index.html`` (returned).

        The page (:func:`climgen.report.translate_page.write_translate_page`) compares
        translated A, untranslated A and the quantile-mapping baseline with B: PDFs,
        spectra, EOF variance, maps, the score table (spectral log-error, W1, covariance
        error, KS, each with B's noise floor) and, for cycle methods, the cycle error.
        The baseline is fitted on ``fit_a``, ``fit_b`` (the training fields: give them for a
        fair comparison); without them it is fitted on ``ds_a``, ``ds_b`` themselves, an
        in-sample best case for quantile mapping, and the page says so.
        """
        from climgen.report.translate_page import write_translate_page

        translated = self.translate(ds_a, members=members, seed=seed)
        ds_a = as_dataset(ds_a, self.variables)
        ds_b = as_dataset(ds_b, self.variables)
        notes, baselines = [], {}
        if self.method != "quantile-mapping":
            if (fit_a is None) != (fit_b is None):
                raise ClimgenInputError("give both fit_a and fit_b (training fields) or neither")
            in_sample = fit_a is None
            qm = Translator(
                "quantile-mapping", variables=self.variables, sample_dim=self.sample_dim
            ).fit(ds_a if in_sample else fit_a, ds_b if in_sample else fit_b)
            baselines["quantile mapping"] = qm.translate(ds_a)
            notes.append(
                "Quantile mapping was fitted on the evaluation fields themselves (in-sample: its "
                "best case); pass fit_a/fit_b to fit it on the training fields."
                if in_sample
                else "Quantile mapping was fitted on the training fields of A and B."
            )
        reconstructed = None
        if self.method in ("cyclegan", "augmented-cyclegan"):
            reconstructed = self.reconstruct(ds_a, seed=seed)
        provenance = {
            "method": self.method,
            "options": dict(self.method_options) or "defaults",
            "run directory": str(self.run_dir) if self.run_dir else "not saved",
            "domain A": str(ds_a.attrs.get("title", "")) or "(no title)",
            "domain B": str(ds_b.attrs.get("title", "")) or "(no title)",
            "climgen version": climgen_version(),
            "date": utc_stamp(),
        }
        return write_translate_page(
            directory,
            a=ds_a,
            b=ds_b,
            translated=translated,
            method=self.method,
            baselines=baselines,
            reconstructed=reconstructed,
            variables=self.variables,
            factor=factor,
            provenance=provenance,
            notes=notes,
        )

    def _prepare_input(self, ds_a) -> tuple[xr.Dataset, bool]:
        """Checked domain-A input with a sample dim, and whether the caller's had one."""
        if self.mapping is None and self.family is None:
            raise ClimgenInputError(
                f"method {self.method!r} must be fitted first: call fit(ds_a, ds_b) or "
                "Translator.load(run_dir)"
            )
        ds = as_dataset(ds_a, self.variables)
        missing = [v for v in self.variables if v not in ds.data_vars]
        if missing:
            raise ClimgenInputError(f"variable(s) {missing} not found in the input data")
        if _spatial_shape(ds, self.variables) != tuple(self.shape):
            raise ClimgenInputError(
                f"the input grid {_spatial_shape(ds, self.variables)} differs from the "
                f"training grid {tuple(self.shape)}"
            )
        has_sample = self.sample_dim in ds[self.variables[0]].dims
        if not has_sample:
            ds = ds.expand_dims(self.sample_dim)
        for v in self.variables:
            if not np.isfinite(ds[v].values).all():
                raise ClimgenInputError(f"variable '{v}' of the input has NaN/inf values")
        return ds, has_sample

    def _assemble(self, outs, ds: xr.Dataset, has_sample: bool, stacked: bool) -> xr.Dataset:
        """(N, C, H, W) canonical arrays → a Dataset on ``ds``'s grid (``member`` dim if
        ``stacked``)."""
        # The input's own layout (latitude order, longitude convention) is restored, which
        # may differ from B's training data.
        return fields_dataset(
            [out.astype(np.float32) for out in outs],
            zero_template(ds, self.variables, self.sample_dim),
            ds,
            self.variables,
            self.sample_dim,
            stacked=stacked,
            has_sample=has_sample,
        )

    def _flat(self, ds: xr.Dataset, variables) -> np.ndarray:
        values = canonical_values(ds, variables, self.sample_dim)
        return values.reshape(values.shape[0], -1)

    def _provenance(self, out: xr.Dataset, ds: xr.Dataset, call: str = "translate") -> xr.Dataset:
        """The output's own global attributes (:func:`~climgen.tasks._common.provenance_attrs`:
        only the CF descriptive ones are kept from ``ds``)."""
        out.attrs = provenance_attrs(
            ds.attrs,
            f"Translator(method={self.method!r}).{call}",
            method=self.method,
            task="translate",
            run_dir=None if self.run_dir is None else str(self.run_dir),
        )
        return out

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, which: str = "latest", ema: bool = True):
        """Reload a fitted translator from the run directory ``fit`` wrote."""
        run_dir = Path(run_dir)
        if not (run_dir / TEMPLATE).exists():
            raise ClimgenInputError(
                f"{run_dir} is not a translation run directory (no {TEMPLATE}); give the "
                "directory that Translator.fit(..., run_dir=...) wrote"
            )
        template = load_run_file(run_dir / TEMPLATE)
        if (run_dir / _QUANTILES).exists():
            tr = cls("quantile-mapping", variables=list(template.data_vars))
            with np.load(run_dir / _QUANTILES) as state:
                tr.mapping = QuantileMapping.from_state(dict(state))
        else:
            family, ckpt = load_family(run_dir, which=which, ema=ema)
            card = ckpt.card
            tr = cls(card["method"], variables=card["variables"], sample_dim=card["sample_dim"])
            tr.family = family.eval()
            tr.norm_a = Normalizer.from_state_dict(card["normalizer_a"])
            tr.norm_b = Normalizer.from_state_dict(card["normalizer_b"])
        tr.b_template = template
        tr.shape = _spatial_shape(template, tr.variables)
        tr.run_dir = run_dir
        return tr

    def __repr__(self) -> str:
        fitted = self.mapping is not None or self.family is not None
        return f"Translator(method={self.method!r}{'' if fitted else ', not fitted'})"


def _spatial_shape(ds: xr.Dataset, variables) -> tuple[int, int]:
    grid = detect_grid(ds[variables[0]])
    return tuple(int(ds.sizes[d]) for d in (grid.y_dim, grid.x_dim))
