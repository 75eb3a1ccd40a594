"""climgen: deep generative models for gridded Earth-system data, judged by physics.

Subpackages: :mod:`climgen.data` (xarray/dask → torch), :mod:`climgen.metrics` (physical
diagnostics), :mod:`climgen.report` (evaluation reports). ``climgen.evaluate`` compares a
generated set with a reference, every distance next to the reference's own noise floor.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "data", "metrics", "report"]


def __getattr__(name):
    # Lazy: `import climgen` stays fast and the CLI starts quickly.
    import importlib

    if name in ("data", "metrics", "report"):
        return importlib.import_module(f"climgen.{name}")
    if name == "evaluate":
        from climgen.report.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'climgen' has no attribute {name!r}")
