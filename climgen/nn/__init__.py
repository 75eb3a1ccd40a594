"""Building blocks shared by the families: periodic-aware convolutions, residual blocks, U-Nets."""

from .blocks import *  # noqa: F403
from .blocks import __all__ as _blocks_all
from .padding import *  # noqa: F403
from .padding import __all__ as _padding_all
from .partialconv import *  # noqa: F403
from .partialconv import __all__ as _partialconv_all

__all__ = [*_padding_all, *_blocks_all, *_partialconv_all]
