"""``climgen data rbc|heldsuarez``: run a real solver and write int16-packed netCDF;
``climgen data join``: several runs (seeds) of one recipe as one ensemble file.

The main ``climgen`` parser calls :func:`add_parser`, which sets ``func=run`` on the parsed
namespace. The solvers live in :mod:`climgen.sim` and are imported only when a recipe runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from climgen.cli._argtypes import add_quiet, positive_float, positive_int
from climgen.errors import ClimgenInputError

__all__ = ["add_parser", "run"]

_RBC_EXAMPLES = """\
examples:
  climgen data rbc -o rbc.nc
  climgen data rbc -o rbc_small.nc --rayleigh 1e6 --nx 128 --nz 32 --snapshots 300
  climgen data rbc -o rbc_uvw.nc --variables b u w vorticity --series --no-pack

Needs the optional extra 'sim' (Dedalus 3): see docs/data-recipes.md for the apt packages
(OpenMPI, FFTW) and the pip command. The default (Ra = 2e6, 256 x 64, 260 snapshots after an
automatic spin-up) takes about 7 minutes of one core.
"""

_HS_EXAMPLES = """\
examples:
  climgen data heldsuarez -o hs.nc
  climgen data heldsuarez -o hs_t21.nc --truncation T21 --spinup-days 100 --days 100
  climgen data heldsuarez -o hs_dty40.nc --delta-t-y 40    # a weaker-gradient climate

Needs the optional extra 'gcm' (dinosaur + JAX). T42 with the defaults (200-day spin-up,
200 daily snapshots) takes on the order of 15 minutes on one CPU core.
"""


def _spinup(text: str):
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a time >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a time >= 0, got {value}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="netCDF file to write"
    )
    parser.add_argument(
        "--no-pack",
        action="store_true",
        help="write float32 instead of int16 CF packing (about 2x larger, no quantisation)",
    )
    add_quiet(parser, help="no progress bar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``data`` with its subcommands ``rbc`` and ``heldsuarez`` to ``subparsers``.

    Sets ``func=run`` on the parsed namespace.
    """
    data = subparsers.add_parser(
        "data",
        help="make simulation data with a real solver (optional extras 'sim', 'gcm')",
        description="Run a real solver and write snapshots to netCDF (int16 CF packing).",
    )
    recipes = data.add_subparsers(dest="recipe", metavar="RECIPE")
    recipes.required = True

    rbc = recipes.add_parser(
        "rbc",
        help="2D Rayleigh-Benard convection (Dedalus 3)",
        description="2D Rayleigh-Benard convection, the set-up of Dedalus's own example: "
        "periodic x, no-slip walls, Fourier x Chebyshev, RK222.",
        epilog=_RBC_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(rbc)
    rbc.add_argument(
        "--rayleigh",
        type=positive_float,
        default=2e6,
        metavar="RA",
        help="Rayleigh number (default: %(default)g)",
    )
    rbc.add_argument(
        "--prandtl",
        type=positive_float,
        default=1.0,
        metavar="PR",
        help="Prandtl number (default: %(default)g)",
    )
    rbc.add_argument("--nx", type=positive_int, default=256, help="Fourier modes (default: 256)")
    rbc.add_argument("--nz", type=positive_int, default=64, help="Chebyshev modes (default: 64)")
    rbc.add_argument("--aspect", type=positive_float, default=4.0, help="Lx/Lz (default: 4)")
    rbc.add_argument(
        "--spinup",
        type=_spinup,
        default="auto",
        metavar="T|auto",
        help="spin-up time to discard, or 'auto' (steadiness test; default)",
    )
    rbc.add_argument(
        "--snapshots",
        type=positive_int,
        default=260,
        metavar="N",
        help="snapshots kept after the spin-up (default: %(default)s)",
    )
    rbc.add_argument(
        "--interval",
        type=positive_float,
        default=0.5,
        metavar="DT",
        help="free-fall times between snapshots (default: %(default)s)",
    )
    rbc.add_argument("--seed", type=int, default=11, help="initial-noise seed (default: 11)")
    rbc.add_argument(
        "--variables",
        nargs="+",
        default=["b"],
        metavar="NAME",
        choices=["b", "u", "w", "vorticity"],
        help="fields to write: b u w vorticity (default: b)",
    )
    rbc.add_argument(
        "--series",
        action="store_true",
        help="also write the Nusselt number and kinetic-energy series",
    )

    hs = recipes.add_parser(
        "heldsuarez",
        help="Held-Suarez idealised GCM (dinosaur + JAX)",
        description="Held-Suarez (1994) dry dynamical core test with dinosaur; daily "
        "omega500 and lowest-level temperature after a spin-up.",
        epilog=_HS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(hs)
    hs.add_argument(
        "--truncation",
        default="T42",
        choices=["T21", "T31", "T42", "T85"],
        help="spectral truncation (default: T42, 64 x 128 Gaussian grid)",
    )
    hs.add_argument(
        "--levels", type=positive_int, default=12, help="equally spaced sigma levels (default: 12)"
    )
    hs.add_argument(
        "--spinup-days",
        type=int,
        default=200,
        metavar="D",
        help="model days discarded (default: 200)",
    )
    hs.add_argument(
        "--days",
        type=positive_int,
        default=200,
        metavar="N",
        help="daily snapshots kept (default: 200)",
    )
    hs.add_argument(
        "--dt-minutes",
        type=positive_float,
        default=30.0,
        metavar="MIN",
        help="time step in minutes (default: 30)",
    )
    hs.add_argument("--seed", type=int, default=1, help="initial-perturbation seed (default: 1)")
    hs.add_argument(
        "--delta-t-y",
        type=float,
        default=60.0,
        metavar="K",
        help="equator-to-pole radiative-equilibrium temperature difference (default: 60, HS94)",
    )
    hs.add_argument(
        "--variables",
        nargs="+",
        default=["omega500", "tas"],
        metavar="NAME",
        choices=["omega500", "tas"],
        help="fields to write: omega500 tas (default: both)",
    )
    join = recipes.add_parser(
        "join",
        help="join runs of one recipe with other seeds into an ensemble file",
        description="Join independent runs of one data recipe (one file per seed) along "
        "time into one int16-packed ensemble file: snapshots numbered 0..N-1, each with its "
        "model time and run seed as coordinates, the seeds listed in the 'seed' attribute. "
        "An ensemble reference puts run-to-run variability into the noise floor "
        "(docs/emulation.md).",
        epilog="examples:\n  climgen data join -o rbc_ens.nc rbc_seed12.nc rbc_seed14.nc "
        "rbc_seed15.nc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(join)
    join.add_argument("runs", nargs="+", metavar="FILE", help="the runs, one file per seed")
    data.set_defaults(func=run)
    return data


def _command_line(args) -> str:
    """The full ``climgen data`` command that reproduces ``args`` (for the history attr)."""
    skip = {"command", "recipe", "func", "output", "quiet", "_argv"}
    parts = ["climgen data", args.recipe, "-o", str(args.output)]
    for key, value in sorted(vars(args).items()):
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.extend([flag, *map(str, value)])
        else:
            parts.extend([flag, f"{value:g}" if isinstance(value, float) else str(value)])
    return " ".join(parts)


def run(args) -> int:
    """Run the recipe named by ``args.recipe``, write ``args.output``, print the path."""
    from climgen.sim.pack import write_packed

    start = time.perf_counter()
    if args.recipe == "join":
        from climgen.sim.ensemble import join_runs

        out = Path(args.output)
        if any(Path(p).resolve() == out.resolve() for p in args.runs):
            raise ClimgenInputError(f"-o {out} is one of the runs: give a new file")
        ds = join_runs(args.runs)
        ds.attrs["history"] = f"written by climgen data join -o {out} {' '.join(args.runs)}"
    elif args.recipe == "rbc":
        from climgen.sim.rbc import simulate_rbc

        ds = simulate_rbc(
            rayleigh=args.rayleigh,
            prandtl=args.prandtl,
            nx=args.nx,
            nz=args.nz,
            aspect=args.aspect,
            spinup=args.spinup,
            n_snapshots=args.snapshots,
            interval=args.interval,
            seed=args.seed,
            variables=tuple(args.variables),
            series=args.series,
            progress=not args.quiet,
        )
    elif args.recipe == "heldsuarez":
        from climgen.sim.heldsuarez import simulate_heldsuarez

        if args.spinup_days < 0:
            raise ClimgenInputError(f"--spinup-days must be >= 0, got {args.spinup_days}")
        ds = simulate_heldsuarez(
            truncation=args.truncation,
            levels=args.levels,
            spinup_days=args.spinup_days,
            n_days=args.days,
            dt_minutes=args.dt_minutes,
            seed=args.seed,
            variables=tuple(args.variables),
            delta_t_y=args.delta_t_y,
            progress=not args.quiet,
        )
    else:  # argparse restricts the choices; kept for callers building namespaces by hand
        raise ClimgenInputError(f"unknown data recipe {args.recipe!r}: use rbc or heldsuarez")

    if args.recipe != "join":
        ds.attrs["history"] = f"{ds.attrs.get('history', '')}; written by {_command_line(args)}"
    out = Path(args.output)
    if args.no_pack:
        out.parent.mkdir(parents=True, exist_ok=True)
        encoding = {name: {"_FillValue": None} for name in ds.coords}
        encoding.update({name: {"zlib": True, "complevel": 4} for name in ds.data_vars})
        ds.to_netcdf(out, encoding=encoding, engine="netcdf4")
    else:
        write_packed(ds, out)
    if not args.quiet:
        print(f"{args.recipe}: {dict(ds.sizes)} in {time.perf_counter() - start:.0f} s")
    print(out)
    return 0
