"""Generative families: each a network + its loss + its sampler, driven by the one trainer."""

from .base import *  # noqa: F403
from .base import __all__ as _base_all

__all__ = [*_base_all]
