"""Units by meaning: UDUNITS-2 (``cf_units``, the CF conventions' units library).

:func:`to_units` brings a field to another set's units: the same unit spelled differently
('K' and 'kelvin', 'm s-1' and 'm/s') passes unchanged; convertible units (degC → K:
x + 273.15, hPa → Pa: 100 x) are converted and a note says so; incompatible units (K vs
m s-1) or text that is no UDUNITS unit raise one :class:`~climgen.errors.ClimgenInputError`
naming the variable, both units and both sources. Used by ``evaluate`` (generated data to the
reference's units) and ``Infiller.fill`` (observations to the run's units).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = ["affine", "to_units"]


def _parse(text: str, label: str, name: str, src: str):
    from cf_units import Unit

    try:
        return Unit(text)
    except ValueError:
        raise ClimgenInputError(
            f"variable '{name}': units '{text}' of the {label} ({src}) are not a UDUNITS "
            "unit (CF conventions), so they cannot be compared; fix the 'units' attribute "
            "(e.g. 'K', 'degC', 'm s-1', '1')"
        ) from None


def affine(units_from, units_to) -> tuple[float, float]:
    """``(a, b)`` with ``x [units_to] = a x [units_from] + b`` (UDUNITS-2); (1, 0) when either
    is None or they cannot be parsed or converted (:func:`to_units` raises for those)."""
    from cf_units import Unit

    if units_from is None or units_to is None:
        return 1.0, 0.0
    try:
        uf, ut = Unit(" ".join(str(units_from).split())), Unit(" ".join(str(units_to).split()))
        b = float(uf.convert(0.0, ut))
        return float(uf.convert(1.0, ut)) - b, b
    except ValueError:
        return 1.0, 0.0


def to_units(
    name: str,
    da: xr.DataArray,
    units,
    *,
    src: str,
    target_src: str,
    role: str = "generated data",
    target_role: str = "reference",
    difference: bool = False,
) -> tuple[xr.DataArray, str | None]:
    """``da`` in ``units``, and a note when it had to be converted (None when not).

    ``role`` / ``src`` describe ``da`` ("generated data", its file), ``target_role`` /
    ``target_src`` the set whose ``units`` it must match ("reference", its file); they only
    word the note and the errors. Either units None (no ``units`` attribute): nothing to
    compare, ``da`` is returned unchanged. A conversion ``x ↦ a x + b`` is applied
    elementwise in float64 with ``cf_units.Unit.convert``; lazily loaded data stay lazy.
    ``difference=True``: ``da`` holds differences (anomalies), converted by ``x ↦ a x``
    (an anomaly of 1 degC is one of 1 K).
    """
    d_units = da.attrs.get("units")
    if d_units is None or units is None:
        return da, None
    d_text, t_text = " ".join(str(d_units).split()), " ".join(str(units).split())
    if d_text == t_text:
        return da, None
    ud = _parse(d_text, role, name, src)
    t_label = f"{target_role} data" if target_role == "reference" else target_role
    ut = _parse(t_text, t_label, name, target_src)
    if ud == ut:
        return da, None
    if not ud.is_convertible(ut):
        raise ClimgenInputError(
            f"variable '{name}': units differ: '{d_units}' in the {role} ({src}) "
            f"but '{units}' in the {target_role} ({target_src}), and one cannot be converted "
            "to the other; check that both hold the same quantity"
        )
    scale, offset = affine(d_text, t_text)
    shift = offset if difference else 0.0  # a difference does not take the offset
    offset -= shift
    converted = xr.apply_ufunc(
        lambda v: ud.convert(np.asarray(v, dtype=np.float64), ut) - shift,
        da,
        dask="parallelized",
        output_dtypes=[np.float64],
        keep_attrs=True,
    )
    converted.attrs["units"] = str(units)
    formula = ("x" if scale == 1 else f"{scale:.10g} x") + (
        f" {'+' if offset >= 0 else '−'} {abs(offset):.10g}" if offset else ""
    )
    what = " (differences: no offset)" if difference and shift else ""
    note = f"{role}{what} converted from '{d_units}' to the {target_role}'s '{units}'"
    note += f" (x ↦ {formula})"
    return converted, note
