"""The diffusion method of the Downscaler ("diffusion", CorrDiff; Mardani et al. 2025): the
regression network gives the mean μ(c); an EDM diffusion model
(:class:`climgen.families.diffusion.Diffusion`) of the residual r = (x − μ)/s, conditioned on
μ (and the static fields), draws the members x = μ + s·r.
"""

from __future__ import annotations

from pathlib import Path

import torch

from climgen.errors import ClimgenInputError
from climgen.families.base import check_family_options
from climgen.tasks._common import build_seeded, train_family
from climgen.tasks.downscale.methods import CORRDIFF_OPTIONS, DOWNSCALE_METHODS
from climgen.tasks.downscale.network_method import NetworkMethod
from climgen.tasks.downscale.pairs import ResidualDataset

__all__ = ["DiffusionMethod"]


class DiffusionMethod(NetworkMethod):
    """The kind "corrdiff": the regression network of :class:`NetworkMethod` (in the run
    directory's ``regression/``), then a residual diffusion model (in ``diffusion/``)."""

    patches = False  # the diffusion stage trains on whole fields

    def configure(self, down, method: str, method_options: dict, static) -> None:
        unknown = sorted(set(method_options) - set(CORRDIFF_OPTIONS))
        if unknown:
            raise ClimgenInputError(
                f"method 'diffusion' takes regression_options={{...}} and "
                f"diffusion_options={{...}}, not {unknown}"
            )
        down.method_options = {
            **DOWNSCALE_METHODS["regression"].defaults,
            **dict(method_options.get("regression_options") or {}),
        }
        down.diffusion_options = dict(method_options.get("diffusion_options") or {})
        check_family_options("diffusion", down.diffusion_options)
        check_family_options("superres", down.method_options)

    def regression_dir(self, down) -> Path:
        return down.run_dir / "regression"

    def after_regression(self, down, pairs, grid, shape, config, callbacks, resume) -> None:
        """CorrDiff stage 2: an EDM diffusion of r = (x − μ(c)) / s given μ(c) (and statics)."""
        residuals = ResidualDataset(pairs, down.family, 1.0)
        probe = torch.stack([residuals[i]["x"] for i in range(min(len(residuals), 64))])
        down.residual_scale = float(probe.std()) or 1.0
        residuals.scale = down.residual_scale
        static_channels = 0 if down.static_tensor is None else down.static_tensor.shape[0]
        down.diffusion = build_seeded(
            config.seed,
            "diffusion",
            channels=len(down.variables),
            shape=shape,
            periodic=(grid.periodic_y, grid.periodic_x),
            cond_channels=len(down.variables) + static_channels,
            **down.diffusion_options,
        )
        card = {"task": "downscale-residual", "residual_scale": down.residual_scale}
        down.diffusion, down.result = train_family(
            down.diffusion,
            config,
            down.run_dir / "diffusion",
            residuals,
            resume=resume,
            callbacks=callbacks,
            card=card,
        )

    def draw(self, down, cond: torch.Tensor, gen, batch_size, cache: dict) -> torch.Tensor:
        """μ(c) (computed once, kept in ``cache``) plus a residual drawn with ``gen``."""
        if "mean" not in cache:
            cache["mean"] = self.generate(down, cond, None, batch_size, cache)
        mean = cache["mean"]
        return mean + down.residual_scale * self.sample_residual(down, mean, gen, batch_size)

    def sample_residual(self, down, mean: torch.Tensor, gen, batch_size) -> torch.Tensor:
        """CorrDiff residuals (normalised by ``residual_scale``) drawn given the mean."""
        batch = batch_size or 16
        static = down.static_tensor
        chunks = []
        for start in range(0, mean.shape[0], batch):
            mu = mean[start : start + batch].float()
            if down._bar is not None:
                down._bar.update(mu.shape[0])
            cond = (
                mu
                if static is None
                else torch.cat([mu, static[None].expand(mu.shape[0], -1, -1, -1)], 1)
            )
            chunks.append(down.diffusion.sample(mu.shape[0], generator=gen, cond=cond).double())
        return torch.cat(chunks)
