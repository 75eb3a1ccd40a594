"""The Dataset a fill returns: the filled field with the observed cells bit for bit, its
spread, the observation mask, the members, the extra absolute/anomaly variable, and
provenance attributes (CF ``ancillary_variables``; global ones by
:func:`climgen.tasks._common.provenance_attrs`).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from climgen.data.grids import restore
from climgen.data.masks import MASK_ATTRS
from climgen.tasks._common import provenance_attrs
from climgen.tasks.fill.methods import get_method

__all__ = ["assemble", "fill_settings"]


def assemble(
    inf,
    canon,
    state,
    var,
    da,
    ds_attrs,
    filled,
    spread,
    keep,
    ensemble,
    members,
    info,
    extra=None,
):
    shape = canon.shape

    def back(values, name, attrs, extra_dim=None):
        values = values.reshape(((values.shape[0],) if extra_dim else ()) + shape)
        dims = ((extra_dim,) if extra_dim else ()) + canon.dims
        coords = {d: canon[d] for d in canon.dims if d in canon.coords}
        out = xr.DataArray(values, dims=dims, coords=coords, name=name, attrs=attrs)
        return restore(out, state)

    units = {"units": da.attrs["units"]} if "units" in da.attrs else {}
    data_vars = {
        var: back(
            filled,
            var,
            {**da.attrs, "ancillary_variables": f"{var}_spread {var}_mask"},
        ),
        f"{var}_spread": back(
            spread,
            f"{var}_spread",
            {
                **units,
                "long_name": f"predictive standard deviation of {var} ({inf.method})",
                "comment": "0 at observed cells; NaN where the method gives no uncertainty",
            },
        ),
        f"{var}_mask": back(
            keep.astype(np.int8),
            f"{var}_mask",
            {**MASK_ATTRS, "comment": "cells observed in the input (kept bit for bit)"},
        ),
    }
    for name, (values, what) in (extra or {}).items():
        data_vars[name] = back(values, name, {**da.attrs, "long_name": f"filled {var}, {what}"})
    if ensemble is not None:
        ens = ensemble.reshape(ensemble.shape[0], -1)
        data_vars[f"{var}_members"] = back(
            ens,
            f"{var}_members",
            {**da.attrs, "long_name": f"ensemble of filled {var}"},
            extra_dim="member",
        ).assign_coords(member=np.arange(ens.shape[0]))
    for name in list(data_vars):
        for cname, coord in da.coords.items():
            if cname not in data_vars[name].coords and set(coord.dims) <= set(data_vars[name].dims):
                data_vars[name] = data_vars[name].assign_coords({cname: coord})
    kernels = info.get("kernels")
    attrs = provenance_attrs(
        ds_attrs,
        f"Infiller({inf.method!r}).fill",
        fill_method=inf.method,
        fill_options=json.dumps(fill_settings(inf)),
        fill_members=int(members) if ensemble is not None else 1,
        fill_seed=info["seed"],
        run_dir=None if inf.run_dir is None else str(inf.run_dir),
        checkpoint_step=None if inf.checkpoint_step is None else int(inf.checkpoint_step),
        fill_values=(
            f"{info['values']}; the run was trained on anomalies from its climatology.nc"
            if "values" in info
            else None
        ),
        fill_regrid=info.get("regrid"),
        fill_units=info.get("units"),
        fill_spread_inflation=(
            inf.spread_inflation if ensemble is not None and inf.spread_inflation != 1.0 else None
        ),
        oi_nugget=info.get("nugget"),  # τ² / mean variance actually used
        oi_nugget_method=(
            "ml: maximum marginal likelihood of the observed cells (nugget and covariance scale)"
            if info.get("nugget_method") == "ml"
            else None
        ),
        oi_covariance_scale=info.get("oi_scale"),  # s of the learned covariance (nugget ml)
        kriging_kernels="; ".join(kernels[:12]) if kernels else None,
    )
    return xr.Dataset(data_vars, attrs=attrs)


def fill_settings(inf) -> dict:
    """The options that shape a fill (for the output's ``climgen_fill_options``)."""
    settings = {k: v for k, v in inf.options.items() if _jsonable(v)}
    if get_method(inf.method).trained:
        settings.update(
            context=inf.context, roll_fields=inf.roll_fields, flip_fields=inf.flip_fields
        )
    if inf.method == "partialconv":
        settings["fill_rolls"] = inf.fill_rolls
    if inf.method == "cvae":
        settings["likelihood_noise"] = inf.likelihood_noise
    if inf.prior is not None:
        settings.update(prior=inf.prior, prior_options=inf.prior_options, residual=inf.residual)
        settings["member_noise"] = inf.member_noise
    return settings


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
