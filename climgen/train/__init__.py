"""One trainer for every generative family: loop, optimisers, EMA, checkpoints, callbacks.

``Trainer(family, TrainConfig(...), run_dir).fit(dataset)`` trains any
:class:`climgen.families.base.Family`; see docs/training.md for the loop, the checkpoint
layout, resume and determinism.
"""

from .callbacks import *  # noqa: F403
from .callbacks import __all__ as _callbacks_all
from .checkpoint import *  # noqa: F403
from .checkpoint import __all__ as _checkpoint_all
from .context import *  # noqa: F403
from .context import __all__ as _context_all
from .trainer import *  # noqa: F403
from .trainer import __all__ as _trainer_all

__all__ = [*_trainer_all, *_context_all, *_checkpoint_all, *_callbacks_all]
