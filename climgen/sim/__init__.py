"""Real-solver data recipes: Rayleigh–Bénard (Dedalus) and Held–Suarez (dinosaur), int16 packing.

The solvers are optional extras (``pip install 'climgen[sim]'`` for Dedalus,
``'climgen[gcm]'`` for dinosaur + JAX); importing this package needs neither: each recipe
raises :class:`climgen.errors.MissingDependencyError` with the install command when called
without its solver.
"""

from .heldsuarez import *  # noqa: F403
from .heldsuarez import __all__ as _hs_all
from .pack import *  # noqa: F403
from .pack import __all__ as _pack_all
from .rbc import *  # noqa: F403
from .rbc import __all__ as _rbc_all

__all__ = [*_rbc_all, *_hs_all, *_pack_all]
