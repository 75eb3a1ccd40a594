"""climgen: deep generative models for gridded Earth-system data, judged by physics.

Subpackages: :mod:`climgen.data` (xarray/dask → torch), :mod:`climgen.metrics` (physical
diagnostics), :mod:`climgen.report` (evaluation reports). ``climgen.evaluate`` compares a
generated set with a reference, every distance next to the reference's own noise floor.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "evaluate",
    "Emulator",
    "Downscaler",
    "Infiller",
    "Translator",
    "available_translate_methods",
    "cross_validate",
    "available_fill_methods",
    "available_families",
    "available_downscale_methods",
    "available_gan_losses",
    "data",
    "metrics",
    "report",
    "train",
    "families",
    "tasks",
]

_LAZY = {
    "evaluate": ("climgen.report.evaluate", "evaluate"),
    "Emulator": ("climgen.tasks.emulate", "Emulator"),
    "Downscaler": ("climgen.tasks.downscale", "Downscaler"),
    "Infiller": ("climgen.tasks.fill", "Infiller"),
    "Translator": ("climgen.tasks.translate", "Translator"),
    "available_translate_methods": (
        "climgen.tasks.translate",
        "available_translate_methods",
    ),
    "cross_validate": ("climgen.tasks.fill", "cross_validate"),
    "available_fill_methods": ("climgen.tasks.fill", "available_fill_methods"),
    "available_downscale_methods": (
        "climgen.tasks.downscale",
        "available_downscale_methods",
    ),
    "available_families": ("climgen.families.base", "available_families"),
    "available_gan_losses": ("climgen.families.gan.losses", "available_gan_losses"),
}


def __getattr__(name):
    # Lazy: `import climgen` stays fast and the CLI starts quickly.
    import importlib

    if name in ("data", "metrics", "report", "train", "families", "tasks"):
        return importlib.import_module(f"climgen.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'climgen' has no attribute {name!r}")
