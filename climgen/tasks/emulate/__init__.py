"""Emulation: learn the distribution of fields and draw new samples.

- :mod:`~climgen.tasks.emulate.emulator` — :class:`Emulator` (fit, sample, save/load);
- :mod:`~climgen.tasks.emulate.spectral_calibration` — :class:`SpectralCalibration`, the
  fitted spectral gain (and optional quantile map) applied to generated fields;
- :mod:`~climgen.tasks.emulate.scoring` — scoring against an independent run (samples,
  packing, reports with reference rows, the seed check);
- :mod:`~climgen.tasks.emulate.recipe` — ``task: emulate`` in recipes.
"""

from climgen.tasks.emulate.emulator import *  # noqa: F403
from climgen.tasks.emulate.emulator import __all__ as _emulator_all

__all__ = [*_emulator_all]
