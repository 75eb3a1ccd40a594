"""Super-resolution family: EDSR-style nets, conservation layers, regression SR and SRGAN.

Importing this package registers the family "superres" (:func:`climgen.families.build_family`).
"""

from .conserve import *  # noqa: F403
from .conserve import __all__ as _conserve_all
from .family import *  # noqa: F403
from .family import __all__ as _family_all
from .nets import *  # noqa: F403
from .nets import __all__ as _nets_all

__all__ = [*_family_all, *_nets_all, *_conserve_all]
