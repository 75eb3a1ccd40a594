"""A gap-filling run directory: the files ``fit`` writes, the settings that shape a fill,
and :func:`load_infiller` (no code is run from files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import xarray as xr

from climgen.data.io import load_run_file, write_fields
from climgen.data.masks import load_mask
from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError
from climgen.tasks.fill.names import OI, OI_OPTIONS
from climgen.tasks.fill.oi_reduced import load_field_model
from climgen.train import load_family

__all__ = ["CLIMATOLOGY", "save_settings", "load_infiller", "as_mask"]

_TEMPLATE, _NORMALIZER, _AUX, _SETTINGS = "template.nc", "normalizer.json", "aux.nc", "fill.json"
_OI_MODEL = "gaussian.npz"
CLIMATOLOGY = "climatology.nc"  # a run trained on anomalies: the climatology they are from


def as_mask(masks) -> xr.DataArray:
    if isinstance(masks, (str, os.PathLike)):
        return load_mask(masks)
    if isinstance(masks, xr.Dataset):
        names = list(masks.data_vars)
        if len(names) != 1:
            raise ClimgenInputError(f"mask Dataset holds {names}; pass the mask DataArray")
        return masks[names[0]]
    if isinstance(masks, xr.DataArray):
        return masks
    raise ClimgenInputError(
        f"masks must be a DataArray, a file path or 'synthetic', got {type(masks).__name__}"
    )


def save_settings(inf) -> None:
    settings = {
        "method": inf.method,
        "variable": inf.variable,
        "time_dim": inf.time_dim,
        "context": inf.context,
        "roll_fields": inf.roll_fields,
        "fill_rolls": inf.fill_rolls,
        "flip_fields": inf.flip_fields,
        "likelihood_noise": inf.likelihood_noise,
        "spread_inflation": inf.spread_inflation,
        "units": inf.units,
        "sample_step": inf.sample_step,
    }
    if inf.method == OI:
        settings["options"] = {k: inf.options[k] for k in OI_OPTIONS if k in inf.options}
    if inf.prior is not None:
        settings.update(prior=inf.prior, prior_options=inf.prior_options, residual=inf.residual)
        settings["member_noise"] = inf.member_noise
    if inf.gaussian is not None:
        inf.gaussian.save(inf.run_dir / _OI_MODEL)
    (inf.run_dir / _SETTINGS).write_text(json.dumps(settings, indent=2))
    if inf.normalizer is not None:
        inf.normalizer.to_json(inf.run_dir / _NORMALIZER)
    write_fields(inf.template.to_dataset(name=inf.variable), inf.run_dir / _TEMPLATE)
    if inf.aux is not None:
        write_fields(xr.Dataset({"aux": (("channel", "y", "x"), inf.aux)}), inf.run_dir / _AUX)


def load_infiller(
    infiller_cls, run_dir: str | os.PathLike, *, which: str = "latest", ema: bool = True
):
    """Reload a trained infiller from the run directory ``fit`` wrote."""
    run_dir = Path(run_dir)
    if not (run_dir / _SETTINGS).exists():
        raise ClimgenInputError(
            f"{run_dir} is not a gap-filling run directory (no {_SETTINGS}); give the "
            "directory that Infiller.fit or `climgen train` wrote"
        )
    settings = json.loads((run_dir / _SETTINGS).read_text())
    inf = infiller_cls(
        settings["method"],
        variable=settings["variable"],
        time_dim=settings["time_dim"],
        context=settings["context"],
        roll_fields=settings.get("roll_fields", False),
        fill_rolls=settings.get("fill_rolls", 1),
        flip_fields=settings.get("flip_fields", False),
        likelihood_noise=settings["likelihood_noise"],
        spread_inflation=settings.get("spread_inflation", 1.0),
        prior=settings.get("prior"),
        prior_options=settings.get("prior_options"),
        residual=settings.get("residual", False),
        member_noise=settings.get("member_noise", "network"),
        **settings.get("options", {}),
    )
    inf.units = settings.get("units")
    inf.sample_step = settings.get("sample_step")
    if (run_dir / _OI_MODEL).exists():
        inf.gaussian = load_field_model(run_dir / _OI_MODEL)
    if inf.method != OI:
        inf.family, ckpt = load_family(run_dir, which=which, ema=ema)
        inf.checkpoint_step = int(ckpt.step)
        inf.normalizer = Normalizer.from_json(run_dir / _NORMALIZER)
    template = load_run_file(run_dir / _TEMPLATE)
    inf.template = template[settings["variable"]]
    if (run_dir / _AUX).exists():
        inf.aux = load_run_file(run_dir / _AUX)["aux"].values
    if (run_dir / CLIMATOLOGY).exists():
        clim = load_run_file(run_dir / CLIMATOLOGY)
        inf.anomaly_climatology = clim[list(clim.data_vars)[0]]
    inf.run_dir = run_dir
    return inf
