"""Names of the fill methods by kind, shared by the modules of the gap-filling wing (the
registry of what each does is :mod:`climgen.tasks.fill.methods`)."""

from __future__ import annotations

from climgen.tasks.fill.baselines import BASELINES

__all__ = ["NETWORKS", "OI", "OI_OPTIONS", "TRAINED", "BASELINES", "FILL_METHODS"]

NETWORKS = ("partialconv", "cvae")
OI = "optimal-interpolation"
OI_OPTIONS = frozenset({"nugget", "hemispheric", "solver", "rank"})  # optimal interpolation
TRAINED = (*NETWORKS, OI)  # methods that need ``fit`` (and a run directory) before ``fill``
FILL_METHODS = (*NETWORKS, OI, *BASELINES)
