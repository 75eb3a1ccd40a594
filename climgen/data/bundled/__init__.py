"""Small sample files made by climgen's own data recipes, shipped for offline demos and tests.

``rbc``: ``rbc_small.nc``, 2D Rayleigh–Bénard buoyancy ``b`` (time 300 × z 32 × x 128),
Ra = 10⁶, Pr = 1, every 0.5 free-fall times after an automatic spin-up; int16 CF-packed.
The exact command that made it is in ``README.md`` beside the file and in its ``history``
attribute. ``rbc_ensemble`` and ``rbc_reference``: the same recipe, 75 snapshots every 2
free-fall times from each of five runs (seeds 17–21: the demo emulator's training data) and
of four other runs (seeds 12, 14, 15, 16: its independent reference), joined by
``climgen data join``. ``demo_emulator``: a folder, the demo's small GAN emulator trained on
``rbc_ensemble`` (sample-only weights; model card ``MODEL_CARD.md``); load it with
``climgen.Emulator.load(bundled_path("demo_emulator"))``.

``hadcrut4_tas_1877-09_1893-08``: real observational coverage, the HadCRUT4 median
near-surface temperature anomalies (K) of September 1877 and August 1893 on a 72 × 72 grid
(NaN where nothing was observed); ``hadcrut4_mask_1877-09``: the September-1877 coverage as a
0/1 mask on the same grid. Met Office Hadley Centre / Climatic Research Unit (Morice et al.
2012), Open Government Licence v3; see ``README.md`` beside the files. No solver can make
these, which is why they ship with the package (gap-filling recipes and tests use them).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from climgen.errors import ClimgenInputError

__all__ = ["bundled_path", "available_bundled"]

_FILES = {
    "rbc": "rbc_small.nc",
    "rbc_ensemble": "rbc_small_seeds17-21.nc",
    "rbc_reference": "rbc_small_seeds12-16.nc",
    "demo_emulator": "demo_emulator",
    "hadcrut4_tas_1877-09_1893-08": "hadcrut4_tas_1877-09_1893-08.nc",
    "hadcrut4_mask_1877-09": "hadcrut4_mask_1877-09.nc",
}
_REMAKE = {
    "rbc": "make it with 'climgen data rbc' (see docs/data-recipes.md)",
    "rbc_ensemble": "make it with 'climgen data rbc' and 'climgen data join' (README.md)",
    "rbc_reference": "make it with 'climgen data rbc' and 'climgen data join' (README.md)",
}


def available_bundled() -> list[str]:
    """Names accepted by :func:`bundled_path`."""
    return sorted(_FILES)


def bundled_path(name: str = "rbc") -> Path:
    """Path of the bundled sample ``name`` (see :func:`available_bundled`).

    Raises :class:`ClimgenInputError` for an unknown name, or when the file is missing from
    the installation (it must be installed as package data of ``climgen.data.bundled``).
    """
    if name not in _FILES:
        raise ClimgenInputError(
            f"no bundled sample named {name!r}; available: {available_bundled()}"
        )
    path = Path(str(resources.files(__name__).joinpath(_FILES[name])))
    if not path.exists():
        raise ClimgenInputError(
            f"the bundled sample {name!r} ({_FILES[name]}) is missing from this installation "
            f"(looked in {path.parent}); reinstall climgen"
            + (f", or {_REMAKE[name]}" if name in _REMAKE else "")
        )
    return path
