"""GAN family: networks, the loss zoo, statistical constraints, two-player optimisers, the family.

Importing this package registers the family "gan" (:func:`climgen.families.build_family`).
The two-player optimisers are offered to the trainer as :data:`TWO_PLAYER_OPTIMIZERS`
(kind → ``factory(spec)``); families sit below ``climgen.train`` in the layer rules, so the
trainer reads that dict rather than this package calling ``register_optimizer``.
"""

from .constraints import *  # noqa: F403
from .constraints import __all__ as _constraints_all
from .family import *  # noqa: F403
from .family import __all__ as _family_all
from .losses import *  # noqa: F403
from .losses import __all__ as _losses_all
from .nets import *  # noqa: F403
from .nets import __all__ as _nets_all
from .optim import *  # noqa: F403
from .optim import __all__ as _optim_all

__all__ = [*_family_all, *_losses_all, *_nets_all, *_constraints_all, *_optim_all]
