"""Downscaling: coarse fields in, fine fields out (interpolation, networks, diffusion).

- :mod:`~climgen.tasks.downscale.downscaler` — :class:`Downscaler` (fit, downscale, save/load);
- :mod:`~climgen.tasks.downscale.interpolation` — bilinear/bicubic/conservative interpolation
  matrices and cell bounds;
- :mod:`~climgen.tasks.downscale.tiles` — tiled application with blended overlaps;
- :mod:`~climgen.tasks.downscale.covariance_correction` — the spectral covariance correction
  that keeps block means;
- :mod:`~climgen.tasks.downscale.scoring` — scores against the fine truth and the report;
- :mod:`~climgen.tasks.downscale.recipe` — ``task: downscale`` in recipes.
"""

from climgen.tasks.downscale.downscaler import *  # noqa: F403
from climgen.tasks.downscale.downscaler import __all__ as _downscaler_all

__all__ = [*_downscaler_all]
