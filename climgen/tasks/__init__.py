"""Tasks: where xarray meets models, one package ("wing") per task.

:mod:`~climgen.tasks.emulate`, :mod:`~climgen.tasks.fill`, :mod:`~climgen.tasks.downscale`,
:mod:`~climgen.tasks.translate`; :mod:`~climgen.tasks.recipe` reads and runs recipes for all
of them.
"""

from climgen.tasks.downscale import *  # noqa: F403
from climgen.tasks.downscale import __all__ as _downscale_all
from climgen.tasks.emulate import *  # noqa: F403
from climgen.tasks.emulate import __all__ as _emulate_all
from climgen.tasks.fill import *  # noqa: F403
from climgen.tasks.fill import __all__ as _fill_all
from climgen.tasks.translate import *  # noqa: F403
from climgen.tasks.translate import __all__ as _translate_all

__all__ = [*_emulate_all, *_downscale_all, *_fill_all, *_translate_all]
