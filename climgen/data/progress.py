"""The progress bar every long loop shows (training, evaluation, filling, downscaling).

:func:`progress` wraps an iterable (or counts ``total`` steps) in a tqdm bar on stderr. With
``enabled=True`` the bar shows only when stderr is a terminal (tqdm's ``disable=None``), so
logs and pipes stay clean; ``enabled=False`` (``-q`` on the command line) never shows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress"]


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
) -> Any:
    """A tqdm bar over ``iterable`` (or of ``total`` steps to ``update``); see the module doc."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled else True)
