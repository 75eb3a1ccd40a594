"""Gap filling: complete fields observed on a partial coverage mask.

- :mod:`~climgen.tasks.fill.infiller` — :class:`Infiller` (fit, fill, save/load), all methods;
- :mod:`~climgen.tasks.fill.methods` — the registry of fill methods (:func:`get_method`);
- :mod:`~climgen.tasks.fill.networks` — partialconv and cvae: training items, training, filling;
- :mod:`~climgen.tasks.fill.gaussian` — fitting and filling by optimal interpolation;
- :mod:`~climgen.tasks.fill.output` — the filled Dataset (spread, mask, members, provenance);
- :mod:`~climgen.tasks.fill.run_dir` — the run directory: settings, ``load_infiller``;
- :mod:`~climgen.tasks.fill.baselines` — nearest neighbour, zonal mean, kriging, CRPS;
- :mod:`~climgen.tasks.fill.oi` — optimal interpolation with a fitted Gaussian field model;
- :mod:`~climgen.tasks.fill.oi_reduced` — reduced-space (EOF + diagonal) OI for any grid size;
- :mod:`~climgen.tasks.fill.masks` — synthetic and observed coverage masks, pairing;
- :mod:`~climgen.tasks.fill.prepare` — regridding, anomalies, coverage masks from files;
- :mod:`~climgen.tasks.fill.cross_validation` — scores on hidden observed points, spread
  calibration, the report;
- :mod:`~climgen.tasks.fill.recipe` — ``task: fill`` in recipes.
"""

from climgen.tasks.fill.cross_validation import *  # noqa: F403
from climgen.tasks.fill.cross_validation import __all__ as _cv_all
from climgen.tasks.fill.infiller import *  # noqa: F403
from climgen.tasks.fill.infiller import OI  # noqa: F401
from climgen.tasks.fill.infiller import __all__ as _infiller_all
from climgen.tasks.fill.methods import (  # noqa: F401
    FillMethod,
    fill_method_names,
    get_method,
    register_fill_method,
)

__all__ = [*_infiller_all, *_cv_all]
