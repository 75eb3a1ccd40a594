"""2D Rayleigh–Bénard convection snapshots from Dedalus 3 (optional extra ``sim``).

Equations (Boussinesq, free-fall units: length = layer depth ``Lz``, buoyancy = ΔT,
time = sqrt(Lz / (α g ΔT))):

.. math::  ∇·\\mathbf u = 0, \\qquad
           ∂_t b - κ ∇²b = -\\mathbf u·∇b, \\qquad
           ∂_t \\mathbf u - ν ∇²\\mathbf u + ∇p - b\\,\\mathbf e_z = -\\mathbf u·∇\\mathbf u,

with κ = (Ra Pr)^{-1/2}, ν = (Ra/Pr)^{-1/2}; periodic in x (length ``Lx = aspect``), no-slip
walls ``u = w = 0`` at z = 0, 1, ``b = 1`` at the bottom and ``b = 0`` at the top. This is the
set-up of Dedalus's own example ``examples/ivp_2d_rayleigh_benard`` (first-order tau
formulation, RealFourier × ChebyshevT bases with 3/2 dealiasing, RK222, CFL safety 0.5; the
initial condition b = 1 − z + N(0, 10⁻³) z(1 − z) from ``fill_random`` with ``seed``).

Diagnostics (every snapshot interval, volume means ⟨·⟩ over the box):
``Nu_vol = 1 + ⟨w b⟩/κ``; ``Nu_bot``, ``Nu_top`` = −∂b/∂z averaged along the bottom / top
wall; ``KE = ⟨u² + w²⟩/2``. The spin-up ends at the first multiple of ``interval`` after
``min_spinup`` where the means of Nu_vol over the last two ``window``-long stretches differ by
less than 5 % (KE: 10 %) and the means of Nu_vol and Nu_top agree within 10 %.

Output: fields are interpolated exactly (the Chebyshev polynomial of the solution evaluated)
from the Gauss–Chebyshev grid to the uniform cell-centred grid z_k = (k + ½) Lz/nz, walls
excluded; x is the Fourier collocation grid x_i = i Lx/nx. References: Burns et al. (2020),
*Dedalus: A flexible framework for numerical simulations with spectral methods*, Phys. Rev.
Research 2, 023068; Ahlers, Grossmann & Lohse (2009), Rev. Mod. Phys. 81, 503.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError, require

__all__ = ["simulate_rbc", "chebyshev_to_uniform_matrix", "RBC_VARIABLES"]

RBC_VARIABLES = ("b", "u", "w", "vorticity")

_STEADY_NU_TOL = 0.05
_STEADY_KE_TOL = 0.1
_WALL_NU_TOL = 0.1
_DT_HEADROOM = 1.15
_MAX_DT = 0.125  # free-fall times: the Dedalus example's max_timestep

_VARIABLE_ATTRS = {
    "b": {
        "units": "nondimensional",
        "long_name": "buoyancy (nondimensional temperature), b=1 at bottom wall, b=0 at top wall",
    },
    "u": {"units": "nondimensional", "long_name": "horizontal velocity (free-fall units)"},
    "w": {
        "units": "nondimensional",
        "long_name": "vertical velocity (free-fall units), positive upward",
    },
    "vorticity": {
        "units": "nondimensional",
        "long_name": "vorticity omega_y = du/dz - dw/dx (free-fall units)",
    },
}
_GRID_NOTE = (
    "x: Fourier collocation grid; z: spectral interpolation from Gauss-Chebyshev grid to "
    "uniform grid"
)


def _import_dedalus():
    # Dedalus runs one process per core and warns (rightly) when OpenMP threading is on;
    # this only affects libraries that are loaded after this point.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    require("dedalus", "sim", "climgen data rbc (Rayleigh-Benard convection)")
    import dedalus
    import dedalus.public as d3

    return d3, getattr(dedalus, "__version__", "3")


@contextlib.contextmanager
def _quiet_dedalus():
    """Hide Dedalus's INFO log lines (matrix builds at every dt change); tqdm shows progress."""
    names = ("subsystems", "solvers", "timesteppers", "evaluator", "problems", "distributor")
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def chebyshev_to_uniform_matrix(nodes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Matrix ``M`` (len(targets) × len(nodes)) with ``M @ f(nodes) = p(targets)``.

    ``p`` is the unique polynomial of degree < len(nodes) through the values at ``nodes``
    (points in [0, 1]); written in the Chebyshev basis on ζ = 2z − 1, whose Vandermonde matrix
    at Gauss–Chebyshev nodes is well conditioned. For a Chebyshev-spectral solution sampled at
    its own nodes this is the exact spectral interpolant.
    """
    from numpy.polynomial import chebyshev

    nodes = np.asarray(nodes, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    degree = nodes.size - 1
    at_nodes = chebyshev.chebvander(2.0 * nodes - 1.0, degree)
    at_targets = chebyshev.chebvander(2.0 * targets - 1.0, degree)
    return np.linalg.solve(at_nodes.T, at_targets.T).T


def _check_options(rayleigh, prandtl, nx, nz, aspect, spinup, n_snapshots, interval, variables):
    for name, value in (("rayleigh", rayleigh), ("prandtl", prandtl), ("aspect", aspect)):
        if not (np.isfinite(value) and value > 0):
            raise ClimgenInputError(f"{name} must be positive and finite, got {value!r}")
    if not (np.isfinite(interval) and interval > 0):
        raise ClimgenInputError(f"interval must be a positive time, got {interval!r}")
    for name, value, low in (("nx", nx, 8), ("nz", nz, 8), ("n_snapshots", n_snapshots, 1)):
        if int(value) != value or value < low:
            raise ClimgenInputError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if nx % 2:
        raise ClimgenInputError(f"nx must be even (RealFourier basis), got {nx}")
    if not (spinup == "auto" or (isinstance(spinup, (int, float)) and spinup >= 0)):
        raise ClimgenInputError(f"spinup must be 'auto' or a time ≥ 0, got {spinup!r}")
    unknown = [v for v in variables if v not in RBC_VARIABLES]
    if unknown or not variables:
        raise ClimgenInputError(
            f"variables: unknown {unknown or '(none given)'}; choose from {list(RBC_VARIABLES)}"
        )


class _Run:
    """The Dedalus problem of Dedalus's 2D RBC example, with diagnostics and output operators."""

    def __init__(self, d3, rayleigh, prandtl, nx, nz, aspect, seed, max_dt):
        self.lx, self.lz = float(aspect), 1.0
        self.nx, self.nz, self.rayleigh, self.max_dt = nx, nz, rayleigh, max_dt
        coords = d3.CartesianCoordinates("x", "z")
        dist = d3.Distributor(coords, dtype=np.float64)
        xbasis = d3.RealFourier(coords["x"], size=nx, bounds=(0, self.lx), dealias=3 / 2)
        zbasis = d3.ChebyshevT(coords["z"], size=nz, bounds=(0, self.lz), dealias=3 / 2)
        x, z = dist.local_grids(xbasis, zbasis)
        self.x = np.asarray(x).ravel()
        self.z_nodes = np.asarray(z).ravel()

        p = dist.Field(name="p", bases=(xbasis, zbasis))
        b = dist.Field(name="b", bases=(xbasis, zbasis))
        u = dist.VectorField(coords, name="u", bases=(xbasis, zbasis))
        tau_p = dist.Field(name="tau_p")
        tau_b1 = dist.Field(name="tau_b1", bases=xbasis)
        tau_b2 = dist.Field(name="tau_b2", bases=xbasis)
        tau_u1 = dist.VectorField(coords, name="tau_u1", bases=xbasis)
        tau_u2 = dist.VectorField(coords, name="tau_u2", bases=xbasis)

        kappa = (rayleigh * prandtl) ** (-1 / 2)
        nu = (rayleigh / prandtl) ** (-1 / 2)
        ex, ez = coords.unit_vector_fields(dist)
        lift_basis = zbasis.derivative_basis(1)

        def lift(a):
            return d3.Lift(a, lift_basis, -1)

        grad_u = d3.grad(u) + ez * lift(tau_u1)
        grad_b = d3.grad(b) + ez * lift(tau_b1)
        namespace = {
            "p": p, "b": b, "u": u, "tau_p": tau_p, "tau_b1": tau_b1, "tau_b2": tau_b2,
            "tau_u1": tau_u1, "tau_u2": tau_u2, "kappa": kappa, "nu": nu, "ez": ez,
            "lift": lift, "grad_u": grad_u, "grad_b": grad_b, "Lz": self.lz,
        }  # fmt: skip
        problem = d3.IVP([p, b, u, tau_p, tau_b1, tau_b2, tau_u1, tau_u2], namespace=namespace)
        problem.add_equation("trace(grad_u) + tau_p = 0")
        problem.add_equation("dt(b) - kappa*div(grad_b) + lift(tau_b2) = - u@grad(b)")
        problem.add_equation("dt(u) - nu*div(grad_u) + grad(p) - b*ez + lift(tau_u2) = - u@grad(u)")
        problem.add_equation("b(z=0) = 1")
        problem.add_equation("u(z=0) = 0")
        problem.add_equation("b(z=Lz) = 0")
        problem.add_equation("u(z=Lz) = 0")
        problem.add_equation("integ(p) = 0")
        self.solver = problem.build_solver(d3.RK222)

        b.fill_random("g", seed=seed, distribution="normal", scale=1e-3)
        b["g"] *= z * (self.lz - z)
        b["g"] += self.lz - z

        self.cfl = d3.CFL(
            self.solver, initial_dt=max_dt, cadence=10, safety=0.5, threshold=0.05,
            max_change=1.5, min_change=0.5, max_dt=max_dt,
        )  # fmt: skip
        self.cfl.add_velocity(u)

        volume = self.lx * self.lz

        def mean(a):
            return d3.Integrate(d3.Integrate(a, "x"), "z") / volume

        w = u @ ez
        ux = u @ ex
        dz_b = d3.Differentiate(b, coords["z"])
        self.diagnostics = {
            "Nu_vol": 1 + mean(w * b) / kappa,
            "Nu_bot": -d3.Integrate(dz_b(z=0), "x") / self.lx,
            "Nu_top": -d3.Integrate(dz_b(z=self.lz), "x") / self.lx,
            "KE": mean(u @ u) / 2,
        }
        self.outputs = {
            "b": b,
            "u": ux,
            "w": w,
            "vorticity": d3.Differentiate(ux, coords["z"]) - d3.Differentiate(w, coords["x"]),
        }
        self.kappa, self.nu = kappa, nu

    def diagnose(self) -> dict[str, float]:
        return {k: float(op.evaluate()["g"].ravel()[0]) for k, op in self.diagnostics.items()}

    def fields(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Grid values (nx, nz) on the solver's own (non-dealiased) grid."""
        out = {}
        for name in names:
            field = self.outputs[name]
            field = field if name == "b" else field.evaluate()
            field.change_scales(1)
            out[name] = np.array(field["g"], dtype=np.float64, copy=True)
        return out

    def advance_to(self, t_target: float, dt: float) -> tuple[float, int]:
        """Step to ``t_target`` exactly with steps ≤ the CFL limit; return (dt, steps)."""
        solver = self.solver
        steps = 0
        while True:
            remaining = t_target - solver.sim_time
            if remaining <= 1e-9 * max(1.0, abs(t_target)):
                break
            dt_cfl = self.cfl.compute_timestep()
            dt = _next_dt(dt, remaining, dt_cfl)
            solver.step(dt)
            steps += 1
            if not np.isfinite(solver.sim_time) or steps > 10_000_000:
                raise RuntimeError("Rayleigh-Benard run: the time step collapsed")
        solver.sim_time = t_target
        return dt, steps


def _next_dt(dt: float, remaining: float, dt_cfl: float) -> float:
    """A step that lands exactly on the next snapshot time and respects the CFL limit.

    The current ``dt`` is kept while it divides ``remaining`` into whole steps, is below the
    CFL limit and is not far (> 15 % twice over) below it: changing dt refactorises the
    solver's matrices, so dt changes rarely (hysteresis with 15 % head-room).
    """
    steps_left = remaining / dt
    whole = abs(steps_left - round(steps_left)) < 1e-6 and round(steps_left) >= 1
    if whole and dt <= dt_cfl and dt * _DT_HEADROOM**2 > dt_cfl:
        return dt
    n = max(1, math.ceil(_DT_HEADROOM * remaining / dt_cfl))
    return remaining / n


def _is_steady(times: np.ndarray, series: dict[str, list[float]], window: float):
    """Steadiness test on the last two ``window``-long stretches of the diagnostics."""
    t_end = times[-1]
    last = times > t_end - window
    prev = (times > t_end - 2 * window) & ~last
    if prev.sum() < 2 or times[0] > t_end - 2 * window + 1e-9:
        return False, ""
    nu = np.asarray(series["Nu_vol"])
    ke = np.asarray(series["KE"])
    top = np.asarray(series["Nu_top"])
    bot = np.asarray(series["Nu_bot"])
    d_nu = abs(nu[last].mean() - nu[prev].mean()) / abs(nu[last].mean())
    d_ke = abs(ke[last].mean() - ke[prev].mean()) / max(abs(ke[last].mean()), 1e-300)
    means = np.array([nu[last].mean(), bot[last].mean(), top[last].mean()])
    spread = abs(means[0] - means[2]) / abs(means[0])
    ok = d_nu < _STEADY_NU_TOL and d_ke < _STEADY_KE_TOL and spread < _WALL_NU_TOL
    note = (
        f"window {window}: dNu={d_nu:.3f} dKE={d_ke:.3f} "
        f"Nu(vol,bot,top)=({means[0]:.2f},{means[1]:.2f},{means[2]:.2f}) spread={spread:.3f}"
    )
    return ok, note


@dataclasses.dataclass
class _SpinUp:
    time: float
    criterion: str
    dt: float
    steps: int


def _blow_up_check(diag: dict[str, float], t: float, run: _Run) -> None:
    if not np.isfinite(diag["KE"]):
        raise ClimgenInputError(
            f"the Rayleigh-Benard run blew up at t={t:g} (non-finite kinetic energy): the "
            f"resolution nx={run.nx}, nz={run.nz} is too coarse for rayleigh={run.rayleigh:g}; "
            "raise nx and nz or lower rayleigh"
        )


def _spin_up(run, spinup, interval, min_spinup, max_spinup, window, bar) -> _SpinUp:
    """Run the spin-up: a fixed time, or until :func:`_is_steady` passes (``"auto"``)."""
    auto = spinup == "auto"
    target = float(max_spinup if auto else spinup)
    times: list[float] = []
    series: dict[str, list[float]] = {k: [] for k in run.diagnostics}
    dt, t_now, steps, k = run.max_dt, 0.0, 0, 0
    while t_now < target - 1e-9:
        k += 1
        t_next = min(k * interval, target)
        dt, n = run.advance_to(t_next, dt)
        steps += n
        bar.update(t_next - t_now)
        t_now = t_next
        diag = run.diagnose()
        _blow_up_check(diag, t_now, run)
        bar.set_postfix(Nu=f"{diag['Nu_vol']:.2f}", dt=f"{dt:.2e}")
        times.append(t_now)
        for key, value in diag.items():
            series[key].append(value)
        if auto and t_now >= min_spinup - 1e-9:
            ok, note = _is_steady(np.asarray(times), series, window)
            if ok:
                criterion = (
                    f"after t>={min_spinup}: |mean Nu_vol (last {window}) - mean (previous "
                    f"{window})| < {_STEADY_NU_TOL} rel., same for KE < {_STEADY_KE_TOL}, and "
                    f"volume/top Nu means within {_WALL_NU_TOL} rel.; result: {note}"
                )
                return _SpinUp(t_now, criterion, dt, steps)
    if auto:
        raise ClimgenInputError(
            f"the Rayleigh-Benard run (rayleigh={run.rayleigh:g}) was not statistically steady "
            f"by t={max_spinup:g}: pass a larger max_spinup or a fixed spinup time"
        )
    return _SpinUp(t_now, f"fixed spin-up time {target:g}", dt, steps)


def _sample(run, snap_times, variables, dt, bar):
    """Snapshots at ``snap_times`` on the uniform cell-centred z grid, and the diagnostics."""
    z_out = (np.arange(run.nz) + 0.5) * run.lz / run.nz
    interp = chebyshev_to_uniform_matrix(run.z_nodes / run.lz, z_out / run.lz)
    snaps = {v: np.empty((len(snap_times), run.nz, run.nx), np.float32) for v in variables}
    series: dict[str, list[float]] = {k: [] for k in run.diagnostics}
    steps = 0
    t_prev = run.solver.sim_time
    for i, t_next in enumerate(snap_times):
        dt, n = run.advance_to(float(t_next), dt)
        steps += n
        bar.update(t_next - t_prev)
        t_prev = t_next
        diag = run.diagnose()
        _blow_up_check(diag, t_next, run)
        bar.set_postfix(Nu=f"{diag['Nu_vol']:.2f}", dt=f"{dt:.2e}")
        for key, value in diag.items():
            series[key].append(value)
        for name, grid in run.fields(variables).items():
            snaps[name][i] = interp @ grid.T  # (nx, nz_solver) -> (nz_out, nx)
    return z_out, snaps, series, steps


def simulate_rbc(
    *,
    rayleigh: float = 2e6,
    prandtl: float = 1.0,
    nx: int = 256,
    nz: int = 64,
    aspect: float = 4.0,
    spinup: float | str = "auto",
    n_snapshots: int = 260,
    interval: float = 0.5,
    seed: int = 11,
    variables: Sequence[str] = ("b",),
    progress: bool = True,
    min_spinup: float = 40.0,
    max_spinup: float = 400.0,
    window: float = 15.0,
    series: bool = False,
    max_dt: float | None = None,
) -> xr.Dataset:
    """Run 2D Rayleigh–Bénard convection with Dedalus 3 and return snapshots as a Dataset.

    See the module docstring for the equations, boundary conditions, numerics and the
    diagnostics. Needs the optional extra ``sim`` (``pip install 'climgen[sim]'``, which
    builds Dedalus against MPI and FFTW; see docs/data-recipes.md).

    Parameters
    ----------
    rayleigh, prandtl:
        Ra and Pr. The default resolution 256 × 64 resolves Ra = 2×10⁶ (the Ra of Dedalus's
        example at that size); higher Ra needs more points (buoyancy overshooting [0, 1] and
        a pile-up at the top of the Chebyshev spectrum are the signs of under-resolution).
    nx, nz:
        Fourier modes in x and Chebyshev modes in z; the output grid is nz × nx.
    aspect:
        Lx / Lz.
    spinup:
        ``"auto"``: run until the steadiness test passes (checked every ``interval`` from
        ``min_spinup`` on, over stretches of length ``window``; error if it has not passed by
        ``max_spinup``). A number: discard exactly that much time.
    n_snapshots, interval:
        Number of snapshots kept after the spin-up and the time between them (free-fall
        units); the time steps land exactly on the snapshot times.
    seed:
        Seed of the initial buoyancy noise.
    variables:
        Any of ``"b"``, ``"u"``, ``"w"``, ``"vorticity"``.
    progress:
        Show a tqdm bar over simulated time with the live Nusselt number.
    series:
        Also return the diagnostics ``Nu_vol``, ``Nu_bot``, ``Nu_top``, ``KE`` at the snapshot
        times as 1-D variables.
    max_dt:
        Largest time step (default ``min(interval / 4, 0.125)``: 0.125 free-fall times is the
        Dedalus example's cap; a cap tied to the snapshot interval alone let the onset
        transient blow up with ``interval=2``, for every seed tried).

    Returns
    -------
    xarray.Dataset
        Variables ``(time, z, x)`` in float32 with CF attributes; global attributes give Ra,
        Pr, the box, the resolution, the spin-up time and criterion, the snapshot spacing and
        the Nusselt number and kinetic energy (mean and std over the snapshots).

    Raises
    ------
    ClimgenInputError
        Bad options; a run that blows up (resolution too coarse for ``rayleigh``); no
        steady state by ``max_spinup``.
    MissingDependencyError
        Dedalus is not installed.
    """
    variables = tuple(variables)
    _check_options(rayleigh, prandtl, nx, nz, aspect, spinup, n_snapshots, interval, variables)
    d3, version = _import_dedalus()
    from tqdm.auto import tqdm

    max_dt = float(max_dt) if max_dt is not None else min(interval / 4, _MAX_DT)
    auto = spinup == "auto"
    start_wall = time.perf_counter()
    total_guess = (max_spinup if auto else spinup) + n_snapshots * interval
    bar = tqdm(total=round(total_guess, 6), disable=not progress, unit="t", desc="RBC")
    try:
        with _quiet_dedalus():
            run = _Run(d3, rayleigh, prandtl, int(nx), int(nz), aspect, int(seed), max_dt)
            spin = _spin_up(run, spinup, interval, min_spinup, max_spinup, window, bar)
            bar.total = round(spin.time + n_snapshots * interval, 6)
            sim_start = time.perf_counter()
            snap_times = spin.time + interval * np.arange(1, n_snapshots + 1)
            z_out, snaps, diag_series, n_steps = _sample(run, snap_times, variables, spin.dt, bar)
    finally:
        bar.close()
    n_steps += spin.steps
    spinup_time, criterion = spin.time, spin.criterion
    wall = time.perf_counter() - start_wall
    sampled_time = snap_times[-1] - spinup_time

    ds = _to_dataset(snaps, snap_times, z_out, run.x, diag_series if series else None)
    stats = {k: np.asarray(v) for k, v in diag_series.items()}
    call = (
        f"climgen.sim.simulate_rbc(rayleigh={rayleigh:g}, prandtl={prandtl:g}, nx={nx}, "
        f"nz={nz}, aspect={aspect:g}, spinup={spinup!r}, n_snapshots={n_snapshots}, "
        f"interval={interval:g}, seed={seed}, variables={list(variables)})"
    )
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": "2D Rayleigh-Benard convection snapshots (Dedalus 3)",
        "institution": "generated locally",
        "source": (
            f"Dedalus {version} IVP (setup of examples/ivp_2d_rayleigh_benard), "
            "climgen.sim.rbc, single process, float64 solver"
        ),
        "history": f"created {now} by {call}",
        "Rayleigh": float(rayleigh),
        "Prandtl": float(prandtl),
        "Lx": run.lx,
        "Lz": run.lz,
        "aspect_ratio": float(aspect),
        "boundary_conditions": "periodic in x; no-slip (u=w=0) at z=0,1; b=1 at z=0, b=0 at z=1",
        "nondimensionalisation": (
            "free-fall: kappa=(Ra*Pr)^-1/2, nu=(Ra/Pr)^-1/2; length Lz, buoyancy DeltaT"
        ),
        "solver_resolution": f"Nx={nx} RealFourier x Nz={nz} ChebyshevT, dealias 3/2",
        "solver_Nx": int(nx),
        "solver_Nz": int(nz),
        "dealias": 1.5,
        "output_grid": (
            f"{nz} x {nx} (z, x); z uniform cell-centred, dz={run.lz / nz:g}, "
            f"dx={run.lx / nx:g}; z values obtained by exact spectral (Chebyshev polynomial) "
            f"interpolation from the {nz}-point Gauss-Chebyshev grid; walls are not included"
        ),
        "timestepper": (
            f"RK222, CFL safety 0.5, max dt {max_dt:g}, dt = snapshot_dt/n (exact snapshot "
            f"times), dt hysteresis with {round((_DT_HEADROOM - 1) * 100)}% head-room"
        ),
        "seed": int(seed),
        "initial_condition": (
            f"b = 1 - z + N(0,0.001) * z(1-z) (numpy default_rng via Dedalus fill_random, "
            f"seed {seed}); u=0"
        ),
        "snapshot_dt": float(interval),
        "spinup_time": float(spinup_time),
        "spinup_criterion": criterion,
        "float_type": "float32 (solver float64)",
        "n_snapshots": int(n_snapshots),
        "time_steps": int(n_steps),
    }
    for key, values in stats.items():
        ds.attrs[f"{key}_mean"] = float(values.mean())
        ds.attrs[f"{key}_std"] = float(values.std())
    ds.attrs["Nusselt"] = float(stats["Nu_vol"].mean())
    ds.attrs["wall_seconds_production"] = float(wall)
    ds.attrs["seconds_per_sim_time_unit"] = float((time.perf_counter() - sim_start) / sampled_time)
    ds.attrs["status"] = "complete"
    return ds


def _to_dataset(snaps, times, z, x, diag_series) -> xr.Dataset:
    coords = {
        "time": (
            "time",
            np.asarray(times, dtype=np.float64),
            {
                "units": "nondimensional",
                "long_name": (
                    "simulation time in free-fall units sqrt(Lz/(alpha*g*DeltaT)), measured "
                    "from the start of the run"
                ),
                "axis": "T",
            },
        ),
        "z": (
            "z",
            z,
            {
                "units": "nondimensional",
                "long_name": (
                    "vertical coordinate (units of layer depth), uniform cell-centred grid "
                    "z_k=(k+1/2)/nz, walls at 0 and 1"
                ),
                "axis": "Z",
                "positive": "up",
            },
        ),
        "x": (
            "x",
            np.asarray(x, dtype=np.float64),
            {
                "units": "nondimensional",
                "long_name": (
                    "horizontal coordinate (units of layer depth Lz), periodic, Fourier grid "
                    "x_i = i*Lx/Nx"
                ),
                "axis": "X",
            },
        ),
    }
    data_vars = {
        name: (("time", "z", "x"), values, {**_VARIABLE_ATTRS[name], "grid": _GRID_NOTE})
        for name, values in snaps.items()
    }
    if diag_series is not None:
        notes = {
            "Nu_vol": "Nusselt number 1 + <w b>/kappa (volume mean)",
            "Nu_bot": "Nusselt number -db/dz averaged along the bottom wall",
            "Nu_top": "Nusselt number -db/dz averaged along the top wall",
            "KE": "kinetic energy <u^2 + w^2>/2 (volume mean)",
        }
        for key, values in diag_series.items():
            data_vars[key] = (
                ("time",),
                np.asarray(values, dtype=np.float64),
                {"units": "nondimensional", "long_name": notes[key]},
            )
    return xr.Dataset(data_vars, coords=coords)
