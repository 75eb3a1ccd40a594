"""Held–Suarez idealised dry GCM snapshots from dinosaur (optional extra ``gcm``).

The model is dinosaur's sigma-coordinate primitive-equation core
(``dinosaur.primitive_equations.PrimitiveEquations``) with the Held & Suarez (1994) forcing
(``dinosaur.held_suarez.HeldSuarezForcingSigma``, standard parameters: Newtonian cooling to
a zonally symmetric radiative-equilibrium temperature with time scales 40 d / 4 d, Rayleigh
friction 1/day below σ_b = 0.7), on a flat planet, as in dinosaur's own Held–Suarez notebook:
an isothermal (288 K) resting atmosphere at p0 = 1000 hPa plus a 50 hPa localised surface
pressure perturbation whose position is drawn from ``jax.random.PRNGKey(seed)``; equally spaced
σ levels; the notebook's scale-selective filter (exponential, τ = 0.0087504 nondimensional,
order 1.5, cutoff 0.8).

Time stepping (``time_stepping``): ``"leapfrog"`` (default, dt = 30 min): dinosaur's
semi-implicit leapfrog with a Robert–Asselin filter r = 0.05, started by one
``imex_rk_sil3`` step; ``"imex_rk_sil3"`` (the notebook's integrator, dt = 10 min there):
three times the cost per step.

Diagnostics at 00 UTC of each model day after ``spinup_days`` (instantaneous):

* ``omega500`` (Pa s⁻¹): ω/p on each layer with the model's own discretisation of the
  continuity equation (``PrimitiveEquationsSigma._t_omega_over_sigma_sp`` with T = 1:
  ω/p = v·∇ln pₛ − (1/σ)∫₀^σ (D + v·∇ln pₛ) dσ), then ω = (ω/p) σ pₛ, linearly interpolated in
  pressure to 500 hPa in each column (positive = descending).
* ``tas`` (K): temperature on the lowest model level.

References: Held, I. M. & Suarez, M. J. (1994), *A proposal for the intercomparison of the
dynamical cores of atmospheric general circulation models*, BAMS 75, 1825–1830; Kochkov et
al. (2024), *Neural general circulation models for weather and climate*, Nature 632,
1060–1066 (dinosaur).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError, require

__all__ = ["simulate_heldsuarez", "interpolate_to_pressure", "HS_VARIABLES"]

HS_VARIABLES = ("omega500", "tas")
_TRUNCATIONS = ("T21", "T31", "T42", "T85")
_STEPPERS = ("leapfrog", "imex_rk_sil3")
_FILTER = {"tau": 0.0087504, "order": 1.5, "cutoff": 0.8}
_ROBERT_ASSELIN = 0.05


def _import_dinosaur():
    require("jax", "gcm", "climgen data heldsuarez (Held-Suarez GCM)")
    require("dinosaur", "gcm", "climgen data heldsuarez (Held-Suarez GCM)")
    import dinosaur
    import jax

    return dinosaur, jax


def interpolate_to_pressure(field, pressure, target: float, xp=np):
    """Linear interpolation in pressure of ``field`` (levels first) to ``target``, per column.

    ``pressure`` has the shape of ``field`` and increases along axis 0 (top → surface).
    Columns where ``target`` lies outside [p_top, p_bottom] take the nearest level's value.
    ``xp`` is the array module (numpy or jax.numpy).
    """
    n_levels = pressure.shape[0]
    below = xp.sum(pressure < target, axis=0)  # levels above the target (p < target)
    upper = xp.clip(below - 1, 0, n_levels - 2)
    lower = upper + 1
    p_up = xp.take_along_axis(pressure, upper[None], axis=0)[0]
    p_lo = xp.take_along_axis(pressure, lower[None], axis=0)[0]
    f_up = xp.take_along_axis(field, upper[None], axis=0)[0]
    f_lo = xp.take_along_axis(field, lower[None], axis=0)[0]
    weight = xp.clip((target - p_up) / (p_lo - p_up), 0.0, 1.0)
    return f_up + weight * (f_lo - f_up)


def _check_options(truncation, levels, spinup_days, n_days, dt_minutes, variables, stepper):
    if truncation not in _TRUNCATIONS:
        raise ClimgenInputError(
            f"truncation {truncation!r} is not supported; choose from {list(_TRUNCATIONS)}"
        )
    if int(levels) != levels or levels < 3:
        raise ClimgenInputError(f"levels must be an integer ≥ 3, got {levels!r}")
    if int(spinup_days) != spinup_days or spinup_days < 0:
        raise ClimgenInputError(f"spinup_days must be an integer ≥ 0, got {spinup_days!r}")
    if int(n_days) != n_days or n_days < 1:
        raise ClimgenInputError(f"n_days must be an integer ≥ 1, got {n_days!r}")
    if not (np.isfinite(dt_minutes) and dt_minutes > 0) or (24 * 60) % dt_minutes:
        raise ClimgenInputError(
            f"dt_minutes must divide one day (1440 minutes) into whole steps, got {dt_minutes!r}"
        )
    if stepper not in _STEPPERS:
        raise ClimgenInputError(
            f"time_stepping {stepper!r} is unknown; choose from {list(_STEPPERS)}"
        )
    unknown = [v for v in variables if v not in HS_VARIABLES]
    if unknown or not variables:
        raise ClimgenInputError(
            f"variables: unknown {unknown or '(none given)'}; choose from {list(HS_VARIABLES)}"
        )


class _Model:
    """dinosaur's Held–Suarez set-up: coordinates, initial state, one-day step, diagnostics."""

    def __init__(self, dinosaur, jax, truncation, levels, dt_minutes, seed, stepper, delta_t_y):
        units = dinosaur.scales.units
        self.jax = jax
        self.coords = dinosaur.coordinate_systems.CoordinateSystem(
            horizontal=getattr(dinosaur.spherical_harmonic.Grid, truncation)(),
            vertical=dinosaur.sigma_coordinates.SigmaCoordinates.equidistant(levels),
        )
        self.specs = dinosaur.primitive_equations.PrimitiveEquationsSpecs.from_si()
        p0 = 100e3 * units.pascal
        init_fn, aux = dinosaur.primitive_equations_states.isothermal_rest_atmosphere(
            coords=self.coords, physics_specs=self.specs, p0=p0, p1=5e3 * units.pascal
        )
        self.ref_temps = np.asarray(aux[dinosaur.xarray_utils.REF_TEMP_KEY])
        orography = dinosaur.primitive_equations.truncated_modal_orography(
            aux[dinosaur.xarray_utils.OROGRAPHY], self.coords
        )
        self.equations = dinosaur.primitive_equations.PrimitiveEquations(
            self.ref_temps, orography, self.coords, self.specs
        )
        forcing = dinosaur.held_suarez.HeldSuarezForcingSigma(
            coords=self.coords,
            physics_specs=self.specs,
            reference_temperature=self.ref_temps,
            p0=p0,
            dTy=delta_t_y * units.degK,
        )
        equation = dinosaur.time_integration.compose_equations([self.equations, forcing])
        dt = self.specs.nondimensionalize(dt_minutes * units.minute)
        steps_per_day = round(24 * 60 / dt_minutes)
        ti = dinosaur.time_integration
        grid = self.coords.horizontal
        state = init_fn(jax.random.PRNGKey(seed))
        rk_step = ti.imex_rk_sil3(equation, dt)
        if stepper == "leapfrog":
            lf = dinosaur.leapfrog_utils
            step = ti.step_with_filters(
                lf.semi_implicit_leapfrog(equation, dt),
                [
                    lf.robert_asselin_leapfrog_filter(_ROBERT_ASSELIN),
                    lf.exponential_leapfrog_step_filter(grid, dt, **_FILTER),
                ],
            )
            self.state = (state, jax.jit(rk_step)(state))
            self._current = lambda s: s[1]
        else:
            step = ti.step_with_filters(rk_step, [ti.exponential_step_filter(grid, dt, **_FILTER)])
            self.state = state
            self._current = lambda s: s
        self.advance_day = jax.jit(ti.repeated(step, steps_per_day))
        self.diagnose = jax.jit(self._diagnose)
        self.omega_units = units.pascal / units.second
        self.pa, self.kelvin = units.pascal, units.degK

    def _diagnose(self, state):
        """(omega500 in Pa/s, lowest-level temperature in K), nodal (lon, lat)."""
        import jax.numpy as jnp
        from dinosaur import primitive_equations as pe

        state = self._current(state)
        coords, specs = self.coords, self.specs
        aux = pe.compute_diagnostic_state_sigma(state, coords)
        g_full = aux.u_dot_grad_log_sp + aux.divergence
        omega_over_p = self.equations._t_omega_over_sigma_sp(
            jnp.ones_like(g_full), g_full, aux.u_dot_grad_log_sp
        )
        ps = jnp.exp(coords.horizontal.to_nodal(state.log_surface_pressure))  # (1, lon, lat)
        sigma = jnp.asarray(coords.vertical.centers)[:, None, None]
        pressure = sigma * ps
        omega = omega_over_p * pressure
        target = specs.nondimensionalize(500e2 * self.pa)
        omega500 = interpolate_to_pressure(omega, pressure, target, xp=jnp)
        temperature = self.ref_temps[-1] + aux.temperature_variation[-1]
        scale_omega = specs.dimensionalize(1.0, self.omega_units).magnitude
        scale_t = specs.dimensionalize(1.0, self.kelvin).magnitude
        return omega500 * scale_omega, temperature * scale_t


def simulate_heldsuarez(
    *,
    truncation: str = "T42",
    levels: int = 12,
    spinup_days: int = 200,
    n_days: int = 200,
    dt_minutes: float = 30.0,
    seed: int = 1,
    variables: Sequence[str] = HS_VARIABLES,
    time_stepping: str = "leapfrog",
    delta_t_y: float = 60.0,
    progress: bool = True,
) -> xr.Dataset:
    """Run the Held–Suarez test with dinosaur and return daily snapshots as a Dataset.

    See the module docstring for the model, forcing, numerics and diagnostics. Needs the
    optional extra ``gcm`` (``pip install 'climgen[gcm]'``: dinosaur + JAX, CPU is enough).

    Parameters
    ----------
    truncation:
        ``"T21"`` (32 × 64 Gaussian grid), ``"T31"`` (48 × 96), ``"T42"`` (64 × 128) or
        ``"T85"`` (128 × 256).
    levels:
        Number of equally spaced σ layers.
    spinup_days, n_days:
        Model days discarded, then daily snapshots kept (time = day since initialisation).
    dt_minutes:
        Time step; must divide a day.
    seed:
        Seed of the initial surface-pressure perturbation (``jax.random.PRNGKey``).
    variables:
        Any of ``"omega500"``, ``"tas"``.
    time_stepping:
        ``"leapfrog"`` or ``"imex_rk_sil3"``.
    delta_t_y:
        Equator-to-pole difference ΔT_y (K) of the radiative-equilibrium temperature,
        T_eq = max(200 K, [315 K − ΔT_y sin²φ − Δθ_z log(p/p0) cos²φ](p/p0)^κ); 60 K is
        HS94's standard. A smaller ΔT_y gives a weaker jet and weaker, larger eddies: a
        second climate of the same model (e.g. for domain translation).
    progress:
        Show a tqdm bar over model days.

    Returns
    -------
    xarray.Dataset
        Variables ``(time, lat, lon)`` in float32, lat south → north (Gaussian latitudes),
        lon from 0° east; CF attributes; global attributes describe the model set-up.

    Raises
    ------
    ClimgenInputError
        Bad options, or a run that produced non-finite values (time step too long).
    MissingDependencyError
        dinosaur or JAX is not installed.
    """
    variables = tuple(variables)
    _check_options(truncation, levels, spinup_days, n_days, dt_minutes, variables, time_stepping)
    if isinstance(delta_t_y, bool) or not (np.isfinite(delta_t_y) and 0 <= delta_t_y <= 115):
        raise ClimgenInputError(
            f"delta_t_y (equator-to-pole ΔT_y) must be in [0, 115] K, got {delta_t_y!r}"
        )
    dinosaur, jax = _import_dinosaur()
    from tqdm.auto import tqdm

    start = time.perf_counter()
    model = _Model(
        dinosaur, jax, truncation, int(levels), dt_minutes, int(seed), time_stepping, delta_t_y
    )
    state = model.state
    bar = tqdm(total=spinup_days + n_days, disable=not progress, unit="day", desc="Held-Suarez")
    try:
        for _ in range(spinup_days):
            state = model.advance_day(state)
            bar.update(1)
        jax.block_until_ready(state)
        sample_start = time.perf_counter()
        omega, tas = [], []
        for _ in range(n_days):
            state = model.advance_day(state)
            w, t = model.diagnose(state)
            omega.append(w)
            tas.append(t)
            bar.update(1)
        omega = np.asarray(jax.device_get(omega), dtype=np.float32)
        tas = np.asarray(jax.device_get(tas), dtype=np.float32)
    finally:
        bar.close()
    if not (np.isfinite(omega).all() and np.isfinite(tas).all()):
        raise ClimgenInputError(
            "the Held-Suarez run produced non-finite values: dt_minutes="
            f"{dt_minutes:g} is too long for truncation={truncation}; use a smaller dt_minutes"
        )
    per_day = (time.perf_counter() - sample_start) / n_days
    ds = _to_dataset(model, omega, tas, variables, spinup_days, n_days)
    sigma = np.asarray(model.coords.vertical.centers)
    grid = model.coords.horizontal
    now = datetime.now(timezone.utc)
    stepping = (
        f"leapfrog, dt={dt_minutes} min, Robert-Asselin r={_ROBERT_ASSELIN}, leapfrog started "
        "with one imex_rk_sil3 step"
        if time_stepping == "leapfrog"
        else f"imex_rk_sil3, dt={dt_minutes} min"
    )
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": "Held-Suarez (1994) idealised dry atmosphere",
        "source": (
            f"dinosaur {getattr(dinosaur, '__version__', '')} (Google differentiable spectral "
            f"primitive-equation core), jax {jax.__version__}, float32, "
            f"{jax.default_backend().upper()}"
        ),
        "model": (
            "dinosaur.primitive_equations.PrimitiveEquations (sigma coordinates) + "
            "dinosaur.held_suarez.HeldSuarezForcingSigma ("
            + ("standard HS94 parameters" if delta_t_y == 60 else f"HS94 with dTy={delta_t_y:g} K")
            + ", flat planet, p0=1000 hPa)"
        ),
        "resolution": (
            f"{truncation} spectral truncation, {grid.latitude_nodes}x{grid.longitude_nodes} "
            f"Gaussian grid, {levels} equally spaced sigma layers"
        ),
        "sigma_centres": sigma.astype(np.float64),
        "time_stepping": stepping,
        "spectral_filter": (
            f"exponential_step_filter tau={_FILTER['tau']} (nondim), order={_FILTER['order']}, "
            f"cutoff={_FILTER['cutoff']} (as dinosaur HS notebook)"
        ),
        "initial_condition": (
            "isothermal (288 K) resting atmosphere, ps=1000 hPa + 50 hPa localised "
            "wavenumber-4 surface-pressure perturbation whose position is drawn from "
            f"jax.random.PRNGKey({seed}) (dinosaur isothermal_rest_atmosphere)"
        ),
        "seed": int(seed),
        "delta_t_y_K": float(delta_t_y),
        "spinup_days": int(spinup_days),
        "spinup_note": (
            "first spinup_days model days discarded; time coordinate counts days since "
            "initialisation"
        ),
        "snapshot_interval": "1 day (instantaneous)",
        "n_snapshots": int(n_days),
        "seconds_per_simulated_day": float(per_day),
        "wall_seconds_production": float(time.perf_counter() - start),
        "history": (
            f"created {now.isoformat(timespec='seconds')} by climgen.sim.simulate_heldsuarez("
            f"truncation={truncation!r}, levels={levels}, spinup_days={spinup_days}, "
            f"n_days={n_days}, dt_minutes={dt_minutes:g}, seed={seed}, "
            f"time_stepping={time_stepping!r}, delta_t_y={delta_t_y:g})"
        ),
        "status": "complete",
    }
    return ds


def _to_dataset(model, omega, tas, variables, spinup_days, n_days) -> xr.Dataset:
    lon_axis, sin_lat_axis = model.coords.horizontal.nodal_axes
    lat = np.degrees(np.arcsin(np.asarray(sin_lat_axis, dtype=np.float64)))
    lon = np.degrees(np.asarray(lon_axis, dtype=np.float64))
    order = np.argsort(lat)  # south → north
    lowest = float(np.asarray(model.coords.vertical.centers)[-1])
    fields = {
        "omega500": (
            omega,
            {
                "long_name": "vertical pressure velocity (omega = Dp/Dt) at 500 hPa",
                "standard_name": "lagrangian_tendency_of_air_pressure",
                "units": "Pa s-1",
                "comment": (
                    "Diagnosed from the spectral state with the model's own sigma-coordinate "
                    "continuity discretisation (omega/p = v.grad ln ps - (1/sigma) "
                    "int_0^sigma (D + v.grad ln ps) dsigma, dinosaur "
                    "PrimitiveEquationsSigma._t_omega_over_sigma_sp), omega = "
                    "(omega/p)*sigma*ps, then linearly interpolated in pressure to 500 hPa per "
                    "column. Instantaneous value at 00 UTC of each model day. Positive = "
                    "descending."
                ),
            },
        ),
        "tas": (
            tas,
            {
                "long_name": f"air temperature on lowest model level (sigma={lowest:.4f})",
                "standard_name": "air_temperature",
                "units": "K",
                "comment": "Instantaneous value at 00 UTC of each model day.",
            },
        ),
    }
    data_vars = {
        name: (
            ("time", "lat", "lon"),
            np.swapaxes(fields[name][0], 1, 2)[:, order],
            fields[name][1],
        )
        for name in variables
    }
    coords = {
        "time": (
            "time",
            np.arange(spinup_days + 1, spinup_days + n_days + 1, dtype=np.float64),
            {
                "long_name": "model time since initialisation from rest",
                "standard_name": "time",
                "axis": "T",
                "units": "days since 2000-01-01",
                "calendar": "360_day",
            },
        ),
        "lat": (
            "lat",
            lat[order],
            {
                "long_name": "latitude (Gaussian grid)",
                "standard_name": "latitude",
                "units": "degrees_north",
                "axis": "Y",
            },
        ),
        "lon": (
            "lon",
            lon,
            {
                "long_name": "longitude",
                "standard_name": "longitude",
                "units": "degrees_east",
                "axis": "X",
            },
        ),
    }
    return xr.Dataset(data_vars, coords=coords)
