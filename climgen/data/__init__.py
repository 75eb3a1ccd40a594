"""xarray/dask → torch data layer: grids, I/O, normalisation, datasets, masks, coarsening.

Note: ``climgen.data.coarsen`` as an attribute is the function :func:`coarsen`, which shadows
its submodule; ``from climgen.data.coarsen import coarsen_tensor`` still imports the module.
"""

import sys as _sys

from .coarsen import *  # noqa: F403
from .dataset import *  # noqa: F403
from .grids import *  # noqa: F403
from .io import *  # noqa: F403
from .masks import *  # noqa: F403
from .normalize import *  # noqa: F403
from .patches import *  # noqa: F403
from .samples import *  # noqa: F403

__all__ = [
    name
    for _module in ("grids", "io", "normalize", "dataset", "masks", "coarsen", "patches", "samples")
    for name in _sys.modules[f"{__name__}.{_module}"].__all__
]
