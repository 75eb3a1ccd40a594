"""Exceptions raised on bad input: each names the file, variable, dimension or option at fault."""

from __future__ import annotations

__all__ = ["ClimgenInputError", "MissingDependencyError", "require"]


class ClimgenInputError(ValueError):
    """Input that climgen cannot use, with a message naming the culprit and how to fix it."""


class MissingDependencyError(ImportError):
    """An optional dependency is needed for the requested feature."""


def require(module: str, extra: str, feature: str):
    """Import an optional module or raise :class:`MissingDependencyError` with an install hint.

    >>> np = require("numpy", "dev", "arrays")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingDependencyError(
            f"{feature} needs the optional package '{module}': "
            f"pip install 'climgen[{extra}]' (or pip install {module})"
        ) from exc
