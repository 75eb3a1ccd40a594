"""The optimal-interpolation method's name and options, for the modules the fill-method
registry imports (:mod:`climgen.tasks.fill.methods`). Which methods exist, their kind and
whether they are trained: the registry (:func:`~climgen.tasks.fill.methods.fill_method_names`),
the one source of truth."""

from __future__ import annotations

__all__ = ["OI", "OI_OPTIONS"]

OI = "optimal-interpolation"
OI_OPTIONS = frozenset({"nugget", "hemispheric", "solver", "rank"})  # optimal interpolation
