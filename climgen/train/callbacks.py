"""Trainer callbacks: hooks into the loop, and the spectral/PDF evaluation callback.

A callback subclasses :class:`Callback` and overrides any of the hooks. State that must
survive a resume goes through ``state_dict()`` / ``load_state_dict()`` (saved in the
checkpoint's ``trainer_state.pt``; plain Python numbers, strings, lists, dicts and tensors
only, since it is read with ``weights_only=True``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from climgen.errors import ClimgenInputError

if TYPE_CHECKING:  # pragma: no cover
    from climgen.train.trainer import Trainer, TrainResult

__all__ = ["Callback", "SpectralEvalCallback"]


class Callback:
    """Base class: every hook is a no-op."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, step: int, losses: dict[str, torch.Tensor]) -> None:
        """After each training step; ``step`` = completed steps; losses are device tensors."""

    def on_eval(self, trainer: Trainer, step: int) -> None:
        """Every ``eval_every`` steps: log with ``trainer.log_eval``, flag ``trainer.mark_best``."""

    def on_checkpoint(self, trainer: Trainer, path) -> None: ...

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SpectralEvalCallback(Callback):
    """Sample from the family and compare spectra and value distributions with a reference.

    Logged (``eval.csv``; lower is better):

    - ``lsd``: log-spectral distance sqrt(mean_k (log10 P̄_gen(k) − log10 P̄_ref(k))²) in
      decades over all channels' bins with k > 0 and both powers positive, P̄ the sample-mean
      spectrum;
    - ``w1``: Wasserstein-1 distance of the pooled values (:func:`climgen.metrics.wasserstein1`),
      averaged over channels, in normalised units.

    With the fields' grid known (``like``, or validation data given as a
    :class:`~climgen.data.dataset.FieldDataset`) these are the report's measures
    (:func:`climgen.evaluate`): the spectrum of the grid (:func:`climgen.metrics.field_spectrum`:
    spherical-harmonic C_ℓ on a global lat/lon grid, x-spectrum on a channel, rings of |k|
    on a periodic plane) and area-weighted values (w ∝ cos φ), so the checkpoint marked "best"
    is best by the report's numbers. Without a grid: the planar ring spectrum
    (:func:`climgen.metrics.rapsd`, unit spacing) and unweighted values.

    Parameters
    ----------
    reference : (N, C, H, W) tensor/array in normalised units; ``None`` takes a batch of the
        trainer's ``val_data``.
    n_samples : fields to draw (default: N).
    seed : seed of the sampling generator (the same noise at every evaluation; the global
        RNG is untouched so evaluation never perturbs training).
    use_ema : sample with the EMA weights when the trainer keeps them.
    best_by : "lsd", "w1" or "sum" — the score whose improvement marks the checkpoint "best";
        ``None`` never marks.
    like : a DataArray on the fields' grid (spatial dims and coordinates; any orientation);
        default: the grid of the validation FieldDataset, if any.
    """

    def __init__(
        self,
        reference=None,
        n_samples: int | None = None,
        *,
        seed: int = 0,
        use_ema: bool = True,
        best_by: str | None = "lsd",
        like=None,
    ):
        if best_by not in ("lsd", "w1", "sum", None):
            raise ClimgenInputError(f"best_by must be 'lsd', 'w1', 'sum' or None, got {best_by!r}")
        if n_samples is not None and (not isinstance(n_samples, int) or n_samples < 1):
            raise ClimgenInputError(f"n_samples must be a positive int, got {n_samples!r}")
        self.reference = None if reference is None else self._as_reference(reference)
        self.n_samples = n_samples
        self.seed = seed
        self.use_ema = use_ema
        self.best_by = best_by
        self.best_score = math.inf
        self.history: list[dict[str, float]] = []
        self.like = like
        self._grid = None  # (canonical template, area weights (H, W)), set on first use
        self._ref_spectrum = None  # (reference, grid, (k, P̄_ref)), set on first use

    @staticmethod
    def _as_reference(ref) -> torch.Tensor:
        t = torch.as_tensor(ref).detach().to("cpu", torch.float64)
        if t.ndim != 4:
            raise ClimgenInputError(
                f"SpectralEvalCallback reference must be (N, C, H, W), got shape {tuple(t.shape)}"
            )
        return t

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.reference is None:
            batch = trainer.val_batch(self.n_samples or 64)
            if batch is None:
                raise ClimgenInputError(
                    "SpectralEvalCallback has no reference: pass reference=... or "
                    "fit(..., val_data=...)"
                )
            self.reference = self._as_reference(batch)
        if self.like is None:
            template = getattr(trainer.val_data, "template", None)
            self.like = template() if callable(template) else None

    def _grid_of(self, shape) -> tuple | None:
        if self.like is None:
            return None
        if self._grid is None:
            from climgen.data.grids import area_weights, detect_grid, to_canonical

            grid = detect_grid(self.like)
            canon, _ = to_canonical(self.like, grid)
            canon = canon.isel({d: 0 for d in canon.dims if d not in grid.spatial_dims})
            weights = area_weights(canon, grid).values
            self._grid = (
                canon.drop_vars([c for c in canon.coords if c not in canon.dims]),
                weights,
            )
        canon = self._grid[0]
        if tuple(canon.shape) != tuple(shape):
            raise ClimgenInputError(
                f"SpectralEvalCallback: fields of shape {tuple(shape)} on a grid 'like' of "
                f"shape {tuple(canon.shape)}"
            )
        return self._grid

    def scores(self, samples: torch.Tensor) -> dict[str, float]:
        """``{"lsd", "w1"}`` of ``samples`` (n, C, H, W) against the reference."""
        from climgen.metrics import log_spectral_distance, mean_spectrum, rapsd, wasserstein1

        gen = samples.detach().to("cpu", torch.float64)
        ref = self.reference
        if gen.shape[1:] != ref.shape[1:]:
            raise ClimgenInputError(
                f"samples have shape {tuple(gen.shape[1:])} per field, the reference "
                f"{tuple(ref.shape[1:])}"
            )
        grid = self._grid_of(gen.shape[-2:])
        k, p_ref = self._reference_spectrum(grid)
        if grid is None:
            p_gen, weights = rapsd(gen)[1].mean(0), None
        else:
            canon, weights = grid
            p_gen = torch.as_tensor(
                np.concatenate(
                    [mean_spectrum(_on_grid(gen[:, c], canon))[1] for c in range(gen.shape[1])]
                )
            )
            weights = torch.as_tensor(weights)
        keep = k > 0  # the mean (k = 0) is the report's distribution measures' business
        lsd = float(log_spectral_distance(p_gen[keep], p_ref[keep]))
        w1 = 0.0
        for c in range(gen.shape[1]):
            a, b = gen[:, c], ref[:, c]
            if weights is None:
                w1 += float(wasserstein1(a, b))
            else:
                w1 += float(
                    wasserstein1(
                        a, b, weights_a=weights.expand_as(a), weights_b=weights.expand_as(b)
                    )
                )
        return {"lsd": lsd, "w1": w1 / gen.shape[1]}

    def _reference_spectrum(self, grid) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, P̄_ref)`` of the reference, flattened over channels as :meth:`scores` uses
        them; computed once per reference and grid (the reference is fixed for a run)."""
        from climgen.metrics import mean_spectrum, rapsd

        ref, cached = self.reference, self._ref_spectrum
        if cached is not None and cached[0] is ref and cached[1] is grid:
            return cached[2]
        if grid is None:
            k, p_ref = rapsd(ref)
            p_ref = p_ref.mean(0)
            k = torch.as_tensor(k).expand_as(p_ref)
        else:
            spectra = [mean_spectrum(_on_grid(ref[:, c], grid[0])) for c in range(ref.shape[1])]
            k = torch.as_tensor(np.concatenate([s[0] for s in spectra]))
            p_ref = torch.as_tensor(np.concatenate([s[1] for s in spectra]))
        self._ref_spectrum = (ref, grid, (k, p_ref))
        return k, p_ref

    def on_eval(self, trainer: Trainer, step: int) -> None:
        n = self.n_samples or self.reference.shape[0]
        generator = torch.Generator(device=trainer.device).manual_seed(self.seed)
        with trainer.sampling_mode(use_ema=self.use_ema):
            samples = trainer.family.sample(n, generator=generator)
        result = self.scores(samples)
        result["sum"] = result["lsd"] + result["w1"]
        self.history.append({"step": step, **result})
        trainer.log_eval(step, {"lsd": result["lsd"], "w1": result["w1"]})
        if self.best_by is not None and math.isfinite(result[self.best_by]):
            if result[self.best_by] < self.best_score:
                self.best_score = result[self.best_by]
                trainer.mark_best()

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = float(state.get("best_score", math.inf))


def _on_grid(values: torch.Tensor, canon) -> Any:
    """(n, H, W) values as a DataArray on the canonical template's grid (sample dim first)."""
    import xarray as xr

    return xr.DataArray(
        values.numpy(),
        dims=("sample", *canon.dims),
        coords={d: canon[d] for d in canon.dims if d in canon.coords},
        name=canon.name,
    )
