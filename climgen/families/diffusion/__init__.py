"""Diffusion family: U-Net denoiser, noise schedules, objectives, samplers and the family.

Importing this package registers the family "diffusion" (:func:`climgen.families.build_family`).
Network (:mod:`.unet`), schedule (:mod:`.schedules`), objective (:mod:`.losses`) and sampler
(:mod:`.samplers`) are separate objects; :mod:`.denoisers` adapts networks (or exact analytic
models) to the callables the samplers take.
"""

from .denoisers import *  # noqa: F403
from .denoisers import __all__ as _denoisers_all
from .family import *  # noqa: F403
from .family import __all__ as _family_all
from .losses import *  # noqa: F403
from .losses import __all__ as _losses_all
from .samplers import *  # noqa: F403
from .samplers import __all__ as _samplers_all
from .schedules import *  # noqa: F403
from .schedules import __all__ as _schedules_all
from .unet import *  # noqa: F403
from .unet import __all__ as _unet_all

__all__ = [
    *_family_all,
    *_unet_all,
    *_schedules_all,
    *_losses_all,
    *_samplers_all,
    *_denoisers_all,
]
