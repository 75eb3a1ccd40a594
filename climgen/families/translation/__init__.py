"""Domain translation: pix2pix, CycleGAN and Augmented CycleGAN families, their networks and
losses (see :mod:`climgen.families.translation.families`)."""

from .families import *  # noqa: F403
from .families import __all__ as _families_all
from .losses import *  # noqa: F403
from .losses import __all__ as _losses_all
from .nets import *  # noqa: F403
from .nets import __all__ as _nets_all

__all__ = [*_families_all, *_nets_all, *_losses_all]
