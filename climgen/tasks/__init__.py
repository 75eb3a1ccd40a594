"""Tasks: where xarray meets models (emulation, gap filling, downscaling, translation)."""

from .downscale import *  # noqa: F403
from .downscale import __all__ as _downscale_all
from .emulate import *  # noqa: F403
from .emulate import __all__ as _emulate_all
from .fill import *  # noqa: F403
from .fill import __all__ as _fill_all
from .fill_cv import *  # noqa: F403
from .fill_cv import __all__ as _fill_cv_all
from .translate import *  # noqa: F403
from .translate import __all__ as _translate_all

__all__ = [*_emulate_all, *_downscale_all, *_fill_all, *_fill_cv_all, *_translate_all]
