"""Translation: map fields of one climate (domain A) to another (domain B).

- :mod:`~climgen.tasks.translate.translator` — :class:`Translator` (quantile mapping, pix2pix,
  CycleGAN, augmented CycleGAN), :class:`QuantileMapping`;
- :mod:`~climgen.tasks.translate.networks` — the networks' training pairs, training and
  translation;
- :mod:`~climgen.tasks.translate.recipe` — ``task: translate`` in recipes.
"""

from climgen.tasks.translate.translator import *  # noqa: F403
from climgen.tasks.translate.translator import __all__ as _translator_all

__all__ = [*_translator_all]
