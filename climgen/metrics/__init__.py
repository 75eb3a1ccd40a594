"""Physics diagnostics: spectra, distributions, structure, morphology, ensembles, skill, floors.

Each metric accepts numpy arrays, torch tensors or xarray DataArrays (numpy in → floats /
numpy out; torch in → torch out, differentiable where a loss could use it). Definitions,
units and references are in each function's docstring; conventions and the
definitions side by side in docs/diagnostics.md.
"""

from .band_spectra import *  # noqa: F403
from .band_spectra import __all__ as _band_spectra_all
from .distributions import *  # noqa: F403
from .distributions import __all__ as _distributions_all
from .ensemble import *  # noqa: F403
from .ensemble import __all__ as _ensemble_all
from .floor import *  # noqa: F403
from .floor import __all__ as _floor_all
from .gaps import *  # noqa: F403
from .gaps import __all__ as _gaps_all
from .memorisation import *  # noqa: F403
from .memorisation import __all__ as _memorisation_all
from .morphology import *  # noqa: F403
from .morphology import __all__ as _morphology_all
from .physics import *  # noqa: F403
from .physics import __all__ as _physics_all
from .skill import *  # noqa: F403
from .skill import __all__ as _skill_all
from .spectra import *  # noqa: F403
from .spectra import __all__ as _spectra_all
from .spectral_filter import *  # noqa: F403
from .spectral_filter import __all__ as _spectral_filter_all
from .structure import *  # noqa: F403
from .structure import __all__ as _structure_all
from .surrogate import *  # noqa: F403
from .surrogate import __all__ as _surrogate_all

__all__ = [
    *_spectra_all,
    *_spectral_filter_all,
    *_distributions_all,
    *_structure_all,
    *_morphology_all,
    *_band_spectra_all,
    *_memorisation_all,
    *_surrogate_all,
    *_ensemble_all,
    *_skill_all,
    *_physics_all,
    *_floor_all,
    *_gaps_all,
]
