"""GAN family: networks, the loss zoo, statistical constraints, the family.

Importing this package registers the family "gan" (:func:`climgen.families.build_family`).
The two-player optimisers it can name by kind ("optimistic-adam", "extragradient", "cgd") are
the trainer's: :mod:`climgen.train.two_player`.
"""

from .constraints import *  # noqa: F403
from .constraints import __all__ as _constraints_all
from .family import *  # noqa: F403
from .family import __all__ as _family_all
from .losses import *  # noqa: F403
from .losses import __all__ as _losses_all
from .nets import *  # noqa: F403
from .nets import __all__ as _nets_all

__all__ = [*_family_all, *_losses_all, *_nets_all, *_constraints_all]
