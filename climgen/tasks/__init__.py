"""Tasks: where xarray meets models (emulation; gap filling and downscaling follow)."""

from .emulate import *  # noqa: F403
from .emulate import __all__ as _emulate_all

__all__ = [*_emulate_all]
