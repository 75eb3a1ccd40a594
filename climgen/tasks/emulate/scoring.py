"""Score an emulator against reference fields, the way a user means "it emulates the model".

The reference should be an **independent run** of the simulation (another seed than the
training data, :func:`check_independent`): blocks of the training run itself flatter an
emulator of a slowly varying flow, since the held-out block shares the training block's slow
state (docs/emulation.md). :func:`score_emulator` draws samples, puts them through the
training file's int16 packing when it had one (beyond a model's truncation the data's spectral
tail is quantisation noise, :func:`climgen.sim.pack.quantise`), and writes the report with the
reference rows "training data" and "surrogate (IAAFT)"; a calibrated emulator gets a second
report of its raw network beside it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr

from climgen.data.io import write_fields
from climgen.errors import ClimgenInputError

__all__ = ["check_independent", "run_seeds", "score_emulator", "file_packing", "packed_like"]


def run_seeds(ds: xr.Dataset) -> set[int] | None:
    """The run seed(s) of ``ds`` (its ``seed`` attribute: one number, or one per run of an
    ensemble file), or None."""
    import numpy as np

    seed = ds.attrs.get("seed")
    return None if seed is None else {int(s) for s in np.atleast_1d(seed)}


def check_independent(reference: xr.Dataset, train: xr.Dataset, *, where: str = "") -> None:
    """Refuse a reference that shares a run with the training data: a common ``seed``
    attribute (the data recipes write the run's seed; an ensemble of runs lists one per
    run). Warns when either has no ``seed`` attribute, or when the reference is shorter than
    the training data along ``time``."""
    prefix = f"{where}: " if where else ""
    ref_seeds, train_seeds = run_seeds(reference), run_seeds(train)
    if ref_seeds is None or train_seeds is None:
        warnings.warn(
            f"{prefix}the reference or the training data has no 'seed' attribute: cannot "
            "check that the reference is an independent run",
            stacklevel=2,
        )
    elif ref_seeds & train_seeds:
        raise ClimgenInputError(
            f"{prefix}the reference has the training data's seed "
            f"({', '.join(map(str, sorted(ref_seeds & train_seeds)))}): it is the same run, "
            "not an independent one; make another with the data recipe's --seed"
        )
    n_ref, n_train = reference.sizes.get("time"), train.sizes.get("time")
    if n_ref is not None and n_train is not None and n_ref < n_train:
        warnings.warn(
            f"{prefix}the reference run has {n_ref} snapshots, fewer than the training "
            f"data's {n_train}: its noise floor is larger",
            stacklevel=2,
        )


def file_packing(path: str | Path, variables) -> dict[str, tuple[float, float]]:
    """``{name: (scale_factor, add_offset)}`` of the int16-packed ``variables`` of ``path``
    (``{}`` for unpacked data): what :func:`packed_like` puts samples through. A glob
    pattern reads the first file it matches."""
    import glob

    from climgen.sim.pack import packing_of

    path = str(path)
    if any(c in path for c in "*?["):
        path = sorted(glob.glob(path))[0]
    with xr.open_dataset(path) as ds:
        found = {v: packing_of(ds[v]) for v in variables if v in ds}
    return {v: p for v, p in found.items() if p is not None}


def packed_like(samples: xr.Dataset, packing: dict[str, tuple[float, float]]) -> xr.Dataset:
    """``samples`` through the int16 packing of the training data (:func:`file_packing`):
    values rounded to the same quantisation steps."""
    from climgen.sim.pack import quantise

    out = samples.copy()
    for name, (scale, offset) in packing.items():
        if name in out:
            out[name] = quantise(samples[name], scale, offset)
    return out


def score_emulator(
    emulator,
    reference: xr.Dataset,
    train: xr.Dataset,
    out_dir: str | Path,
    *,
    n_samples: int,
    seed: int = 0,
    progress: bool = True,
    packing: dict[str, tuple[float, float]] | None = None,
):
    """Sample ``emulator``, judge the samples against ``reference`` and write the reports.

    Writes ``out_dir/samples.nc`` and ``out_dir/report``; when the emulator is calibrated,
    also ``samples_raw.nc`` and ``report-raw`` (the network without its calibration, same
    seed). ``reference`` and ``train`` carry the emulator's sample dim; ``train`` gives the
    reference rows. ``packing``: the training file's int16 packing (:func:`file_packing`),
    applied to the samples before they are scored. The network is sampled once: the
    calibrated samples are those raw draws calibrated (:meth:`Emulator.apply_calibration`).
    Returns ``(report, raw_report or None)``.
    """
    from climgen.report.evaluate import evaluate

    out_dir = Path(out_dir)
    dim = emulator.sample_dim
    reference = reference.rename({dim: "sample"})
    train = train.rename({dim: "sample"})
    raw = emulator.sample(n_samples, seed=seed, calibrated=False)
    kinds = [("", raw)]
    if emulator.calibration is not None:  # the same draws, calibrated
        kinds = [("", emulator.apply_calibration(raw)), ("_raw", raw)]
    reports = []
    for suffix, samples in kinds:
        if packing:
            samples = packed_like(samples, packing)
        write_fields(samples, out_dir / f"samples{suffix}.nc")
        report = evaluate(
            samples,
            reference,
            variables=emulator.variables,
            sample_dim="sample",
            progress=progress and not suffix,
            train=train,
            seed=seed,
            reuse=reports[0] if reports else None,  # the reference side measured once
        )
        report.to_html(out_dir / f"report{suffix.replace('_', '-')}", overwrite=True)
        reports.append(report)
    return reports[0], (reports[1] if len(reports) > 1 else None)
