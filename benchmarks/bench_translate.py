"""Benchmark: domain translation between two climates, networks vs quantile mapping.

Run:  .venv/bin/python benchmarks/bench_translate.py --budget-cpu-s 240 --threads 1 \
          --json translate.json
      .venv/bin/python benchmarks/bench_translate.py --pair heldsuarez --variable omega500 \
          --b-file hs_dty40.nc ...

``--pair heldsuarez``: two Held–Suarez climates with different forcing. Domain A: the shared
standard run (``heldsuarez_train.nc``, ΔT_y = 60 K, 200 days); domain B: a run of the
project's recipe with a weaker equator-to-pole gradient, ``climgen data heldsuarez -o
hs_dty40.nc --delta-t-y 40 --days 250 --seed 3`` (``--b-file``; the recipe needs the ``gcm``
extra). Both 64 × 128 Gaussian grids are conservatively coarsened 2× to 32 × 64 (cos-lat
area weights; more steps per CPU second), ``--variable`` omega500 or tas. The climates differ
in jet latitude, eddy amplitude and eddy size, so the covariance structure (not only the
marginals) differs — what a per-point quantile map cannot change. The statistics are
zonally homogeneous, so the ``homogeneous`` covariance estimator below applies along
longitude.

``--pair rbc`` (default). Domain A: our own Dedalus run at Ra = 1e6, 32 × 128 (the bundled sample,
``climgen.data.bundled.bundled_path("rbc")``, 300 snapshots). Domain B: the shared RBC run at
Ra = 2e6 (``rbc_ra2e6_train.nc``, 64 × 256, 260 snapshots) **conservatively coarsened 2× to
32 × 128** (:func:`climgen.data.coarsen.coarsen`); B is therefore the coarsened higher-Ra run,
not a native 32 × 128 simulation. B gets A's coordinates: coarse z equals A's z; coarse x is
shifted by half a fine cell (0.0078) from A's x, irrelevant for statistics in the periodic,
homogeneous x direction. Data are unpaired (different runs).

Split per domain: the first 80 % of the snapshots train, the last 20 % (held-out times) are
the test set. Every method translates the held-out A fields, and the translations are scored
against the held-out B fields with :func:`climgen.report.translate_page.score_translations`
(spectral log-error, W1, covariance error, KS of :func:`climgen.report.evaluate.evaluate`),
each with B's own noise floor (two halves of held-out B). Rows: B's training fields
(what B itself scores: a realistic best case), A untranslated (the A-vs-B distance),
quantile mapping fitted on the training fields, and the networks.

Networks train through ``climgen.Translator`` for a fixed budget of **process CPU seconds**
(``time.process_time()``, torch 1 thread; ``TrainConfig(max_time_s, time_clock="cpu")``
ends training at the first step past the budget), so contention from other processes does
not change the budget. The cycle error mean|G_BA(G_AB(a)) − a| / std(a) on held-out A is
reported for cycle methods.

**Is a covariance difference real?** (``--bootstrap N``, default 1000; 0 switches it off.)
With 52 held-out B fields the covariance error of every row lies within 2× B's noise floor,
so the table alone cannot rank the methods. :func:`covariance_bootstrap` draws N paired
moving-block bootstrap resamples (Künsch 1989; blocks of ``--block`` consecutive snapshots,
default 10 = 5 free-fall times, about the decorrelation time of the leading PCs): one resample
of the held-out A indices, shared by every candidate translated from A (the same input fields
for quantile mapping and the networks), and one of held-out B, shared by all. It reports per
row the error with its 95 % percentile interval, the paired difference Δ = d(row) − d(quantile
mapping) with its 95 % interval and P(Δ < 0), and d / floor with the floor recomputed on each
resample of B (first vs second half of the resampled blocks). Two estimators of the covariance:

- ``eof10``: the evaluation's :func:`climgen.metrics.covariance_error` on B's 10 leading EOFs.
- ``homogeneous``: the relative Frobenius error of the covariance averaged over all periodic
  shifts in x (:func:`homogeneous_covariance_error`). RBC statistics are invariant under x
  shifts, so this is the same population quantity estimated from N_x times more (correlated)
  samples: it removes the dependence on where the convection rolls of the few held-out
  snapshots happen to sit, which dominates ``eof10`` here. It is blind to statistics that
  are *not* shift-invariant (e.g. an x-dependence added by a per-grid-point map).

``--cov-inputs all`` also scores translations of all A fields (training + held-out: more
inputs, but the first 80 % were seen in training by every method).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from climgen.data.bundled import bundled_path
from climgen.data.coarsen import coarsen
from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import open_fields
from climgen.metrics import covariance_error
from climgen.report.eval_measures import block_splits
from climgen.report.translate_page import (
    IDENTITY,
    SCORE_DISTANCES,
    _canonical_samples,
    cycle_errors,
    score_rows,
    score_translations,
    verdict_vs_baseline,
)
from climgen.tasks.translate.translator import Translator

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
B_FILE = "rbc_ra2e6_train.nc"
HS_A_FILE = "heldsuarez_train.nc"
SCORE_KEY = "field"  # the variables dict key of the summary's verdicts
TRAIN_FRACTION = 0.8
FACTOR = 2.0
QM = "quantile mapping"
B_TRAIN = "B training fields (B itself)"

_NET = dict(base_channels=16, depth=2, disc_channels=16, disc_layers=2, lr=5e-4, lr_d=5e-4)
# key: (label, method, options)
MODELS = {
    "cyclegan": ("CycleGAN (lsgan, λ_cyc 10, λ_id 5)", "cyclegan", dict(_NET)),
    "cyclegan-spec": (
        "CycleGAN + spectral term (λ_spec 1)",
        "cyclegan",
        dict(_NET, spectral_weight=1.0),
    ),
    "cyclegan-id0.5": (
        "CycleGAN, λ_id 0.5",
        "cyclegan",
        dict(_NET, identity_weight=0.5),
    ),
    "cyclegan-noise-spec": (
        "CycleGAN + 2 noise channels + spectral term (λ_spec 1)",
        "cyclegan",
        dict(_NET, noise_channels=2, spectral_weight=1.0),
    ),
    "cyclegan-noise-spec5-id0": (
        "CycleGAN + noise + spectral term (λ_spec 5), λ_id 0",
        "cyclegan",
        dict(_NET, noise_channels=2, spectral_weight=5.0, identity_weight=0.0),
    ),
    "cyclegan-noise-spec5-id0-cyc1": (
        "CycleGAN + noise + spectral term (λ_spec 5), λ_id 0, λ_cyc 1",
        "cyclegan",
        dict(_NET, noise_channels=2, spectral_weight=5.0, identity_weight=0.0, cycle_weight=1.0),
    ),
    "cyclegan-noise-spec5-id0-cyc1-cov1": (
        "CycleGAN + noise + spectral term (λ_spec 5) + covariance term (λ_cov 1), λ_id 0, λ_cyc 1",
        "cyclegan",
        dict(
            _NET,
            noise_channels=2,
            spectral_weight=5.0,
            covariance_weight=1.0,
            identity_weight=0.0,
            cycle_weight=1.0,
        ),
    ),
    "cyclegan-coord": (
        "CycleGAN + coordinate channels",
        "cyclegan",
        dict(_NET, coord_channels=True),
    ),
    "cyclegan-noise-coord-spec5-id0-cyc1": (
        "CycleGAN + noise + coordinate channels + spectral term (λ_spec 5), λ_id 0, λ_cyc 1",
        "cyclegan",
        dict(
            _NET,
            noise_channels=2,
            coord_channels=True,
            spectral_weight=5.0,
            identity_weight=0.0,
            cycle_weight=1.0,
        ),
    ),
    "cyclegan-hinge": ("CycleGAN hinge loss", "cyclegan", dict(_NET, gan_loss="hinge")),
    "augcyclegan": (
        "Augmented CycleGAN (latent 4)",
        "augmented-cyclegan",
        dict(_NET, latent_dim=4),
    ),
}


def _coarsened(ds, variable: str, note: str):
    out = coarsen(ds[variable], 2).to_dataset(name=variable)
    out[variable].attrs = dict(ds[variable].attrs)
    out.attrs = dict(ds.attrs, climgen_note=note)
    return out


def load_domains(args):
    """(A train, A test, B train, B test) Datasets on one grid (module docstring)."""
    variable = args.variable
    if args.pair == "rbc":
        a = open_fields(bundled_path("rbc"), variable).load()
        fine = open_fields(args.data_dir / B_FILE, variable).load()
        b = _coarsened(fine, variable, "conservatively coarsened 2x to 32 x 128")
        b = b.assign_coords(z=a["z"], x=a["x"])
    else:
        a_fine = open_fields(args.data_dir / HS_A_FILE, variable).load()
        b_fine = open_fields(args.b_file, variable).load()
        if b_fine[variable].shape[1:] != a_fine[variable].shape[1:]:
            raise SystemExit(
                f"--b-file {args.b_file}: grid {b_fine[variable].shape[1:]} is not A's "
                f"{a_fine[variable].shape[1:]}"
            )
        note = "conservatively coarsened 2x to 32 x 64"
        a = _coarsened(a_fine, variable, note)
        b = _coarsened(b_fine, variable, note).assign_coords(lat=a["lat"], lon=a["lon"])

    def split(ds):
        n = ds.sizes["time"]
        k = int(round(TRAIN_FRACTION * n))
        return ds.isel(time=slice(0, k)), ds.isel(time=slice(k, n))

    return (*split(a), *split(b))


def _label(key: str, seed: int) -> str:
    """The row name of a network: its MODELS label, plus the seed when it is not 0."""
    return MODELS[key][0] + (f" [seed {seed}]" if seed else "")


def run_network(key, a_tr, a_te, b_tr, args, root: Path) -> tuple[dict, object, object]:
    _, method, options = MODELS[key]
    label = _label(key, args.seed)
    tr = Translator(method, variables=[args.variable], **options)
    c0, w0 = time.process_time(), time.perf_counter()
    tr.fit(
        a_tr,
        b_tr,
        run_dir=root / key,
        max_time_s=args.budget_cpu_s,
        time_clock="cpu",
        max_steps=10**9,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
        checkpoint_every=0,
        log_every=50,
    )
    info = {
        "model": label,
        "key": key,
        "method": method,
        "options": options,
        "seed": args.seed,
        "steps": tr.result.step,
        "train_cpu_s": time.process_time() - c0,
        "train_wall_s": time.perf_counter() - w0,
        "losses": {k: float(v) for k, v in tr.result.losses.items()},
    }
    out = tr.translate(a_te, seed=args.seed + 1)
    rec = tr.reconstruct(a_te, seed=args.seed + 1)
    info["cycle_error"] = cycle_errors(a_te, rec, [args.variable])[args.variable]
    return info, out, tr


def collect_run(run: Path, a_te, seed: int, variable: str) -> tuple[dict, object, Translator]:
    """Reload a network saved by ``--keep`` and translate the held-out A fields again.

    Steps and CPU time come from ``info.json`` when the run wrote one, else the steps from the
    last checkpoint (the CPU time is then only known to be the budget: the first step past it).
    """
    key = run.name
    tr = Translator.load(run)
    if (run / "info.json").exists():
        info = json.loads((run / "info.json").read_text())
        info["model"] = _label(key, int(info.get("seed", 0)))
    else:
        from climgen.train import load_family

        label, method, options = MODELS[key]
        step = load_family(run)[1].step
        info = {
            "model": label,
            "key": key,
            "method": method,
            "options": options,
            "steps": int(step),
            "train_cpu_s": None,
        }
    out = tr.translate(a_te, seed=seed + 1)
    info["cycle_error"] = cycle_errors(a_te, tr.reconstruct(a_te, seed=seed + 1), [variable])[
        variable
    ]
    return info, out, tr


def block_bootstrap_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of one moving-block bootstrap resample of n ordered samples (Künsch 1989).

    ceil(n / block) blocks of ``block`` consecutive indices, each starting uniformly in
    [0, n − block], concatenated and cut to n: autocorrelation within a block is kept, so the
    spread of a statistic over resamples is not shrunk by treating neighbours as independent.
    """
    block = max(1, min(int(block), n))
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    return (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]


def _x_spectra(fields: np.ndarray) -> np.ndarray:
    """(n, ny, nx//2+1) complex: rfft along x of each field minus the set's mean y-profile."""
    return np.fft.rfft(fields - fields.mean(axis=(0, 2), keepdims=True), axis=-1)


def _cross_spectra(spec: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(nk, ny, ny) Ĉ_k = mean_i X̂_i(·, k) X̂_i(·, k)^H over the samples ``idx`` (k = 0 re-centred
    on the resample's own mean, as a covariance of the resampled set)."""
    x = spec[idx]
    x = np.concatenate([x[..., :1] - x[..., :1].mean(0, keepdims=True), x[..., 1:]], axis=-1)
    xk = np.ascontiguousarray(x.transpose(2, 1, 0))  # (nk, ny, n): one batched matmul
    return xk @ xk.conj().transpose(0, 2, 1) / len(idx)


def _homogeneous_from_spectra(cg: np.ndarray, cr: np.ndarray, nx: int) -> float:
    # rfft holds k = 0 … nx/2; every other k appears twice (k and nx − k) in Parseval's sum.
    w = np.full(cg.shape[0], 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    diff = (w * (np.abs(cg - cr) ** 2).sum((1, 2))).sum()
    ref = (w * (np.abs(cr) ** 2).sum((1, 2))).sum()
    return float(np.sqrt(diff / ref))


def homogeneous_covariance_error(gen: np.ndarray, ref: np.ndarray) -> float:
    r"""‖Σ̄_gen − Σ̄_ref‖_F / ‖Σ̄_ref‖_F of covariances averaged over all periodic x-shifts.

    For fields x_i(y, x_j) (n, ny, nx), periodic in x, Σ̄ is the covariance of the set of all
    n·nx circularly shifted copies: Σ̄((y, j), (y', j')) = c(y, y', j' − j) with
    c(y, y', Δ) = mean_i mean_j x̃_i(y, j) x̃_i(y', j + Δ), x̃ the anomaly from the set's mean
    y-profile. By Parseval in Δ, ‖Σ̄‖²_F ∝ Σ_k ‖Ĉ_k‖²_F with the cross-spectral matrices
    Ĉ_k(y, y') = mean_i X̂_i(y, k) X̂_i*(y', k) (X̂ the DFT along x), so the error is computed
    from Ĉ_k (O(n·ny²·nx)) without forming the (ny·nx)² matrix. Equal to
    ``covariance_error(aug(gen), aug(ref))`` (full field, 1/n normalisation) for aug = all
    shifts. For statistically x-homogeneous data (RBC, zonal bands) Σ̄ estimates the same
    population covariance as Σ, with far less sampling noise. No area weights: on lat/lon
    pass fields scaled by sqrt(cos φ) per row (as :func:`bootstrap_sections` does).
    """
    sg, sr = _x_spectra(gen), _x_spectra(ref)
    return _homogeneous_from_spectra(
        _cross_spectra(sg, np.arange(len(gen))),
        _cross_spectra(sr, np.arange(len(ref))),
        gen.shape[-1],
    )


def _centre_gram(k: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """C_r K[rows][:, cols] C_c, C = I − 11ᵀ/n: the Gram matrix of the centred resamples."""
    sub = k[np.ix_(rows, cols)]
    return sub - sub.mean(0, keepdims=True) - sub.mean(1, keepdims=True) + sub.mean()


def _eof_error_from_grams(
    k_gr: np.ndarray, k_rr: np.ndarray, gi: np.ndarray, ri: np.ndarray, n_eofs: int = 10
) -> float:
    """:func:`climgen.metrics.covariance_error` (``n_eofs``, uniform weights) of the resamples
    G[gi], R[ri] from the Gram matrices K_GR = G Rᵀ and K_RR = R Rᵀ alone.

    With R_c = U Λ^½ Vᵀ (thin SVD of the centred reference resample; U, Λ from the eigen-
    decomposition of its n × n Gram matrix), the k leading EOFs are V_k = R_cᵀ U_k Λ_k^{-½};
    the reference projects to U_k Λ_k^½ (covariance Λ_k / (n_r − 1)) and the candidate to
    G_c V_k = (G_c R_cᵀ) U_k Λ_k^{-½}. Every step is O(n²), not O(n·D): thousands of
    bootstrap draws cost seconds. Equal to the evaluation's value (tested in the bench run).
    """
    krr = _centre_gram(k_rr, ri, ri)
    evals, u = np.linalg.eigh(krr)
    evals, u = evals[::-1][:n_eofs], u[:, ::-1][:, :n_eofs]
    keep = evals > evals[0] * np.finfo(float).eps * max(krr.shape[0], 1) * 10
    evals, u = evals[keep], u[:, keep]
    proj = _centre_gram(k_gr, gi, ri) @ u / np.sqrt(evals)
    cov_g = proj.T @ proj / (len(gi) - 1)
    cov_r = np.diag(evals) / (len(ri) - 1)
    return float(np.linalg.norm(cov_g - cov_r) / np.linalg.norm(cov_r))


def covariance_bootstrap(
    from_a: dict[str, np.ndarray],
    others: dict[str, np.ndarray],
    ref: np.ndarray,
    *,
    baseline: str = QM,
    n_boot: int = 1000,
    block: int = 10,
    seed: int = 0,
    estimators: tuple[str, ...] = ("eof10", "homogeneous"),
) -> dict[str, dict]:
    """Paired moving-block bootstrap of the covariance error of each candidate against ``ref``.

    ``from_a``: name → (n_a, ny, nx) translations of the *same* A fields in the same order
    (untranslated A, quantile mapping, networks): one index resample per draw is shared by all
    of them, so Δ = d(cand) − d(baseline) is paired. ``others``: name → fields not aligned
    with A (e.g. B's training fields), resampled on their own. ``ref``: the held-out B fields
    (one resample per draw, shared by all candidates). Per estimator returns
    {"floor": evaluate-style floor (mean over the block splits of the evaluation),
    "floor_ci", "rows": {name: {value, ci, ratio_ci, [delta, delta_ci, p_better]}}} with
    95 % percentile intervals; ``ratio`` = d / floor of the same resample of ``ref``.
    """
    rng = np.random.default_rng(seed)
    n_ref, nx = ref.shape[0], ref.shape[-1]
    w = np.ones(ref.shape[-2:])
    names = [*from_a, *others]
    sets = {**from_a, **others}
    draws_a = [block_bootstrap_indices(len(next(iter(from_a.values()))), block, rng)]
    draws_o = {k: [block_bootstrap_indices(len(v), block, rng)] for k, v in others.items()}
    draws_r = [block_bootstrap_indices(n_ref, block, rng)]
    for _ in range(n_boot - 1):
        draws_a.append(block_bootstrap_indices(len(next(iter(from_a.values()))), block, rng))
        for k, v in others.items():
            draws_o[k].append(block_bootstrap_indices(len(v), block, rng))
        draws_r.append(block_bootstrap_indices(n_ref, block, rng))
    out = {}
    for est in estimators:
        if est == "eof10":
            flat_r = ref.reshape(n_ref, -1)
            prepared = {k: v.reshape(len(v), -1) @ flat_r.T for k, v in sets.items()}
            prepared_ref = flat_r @ flat_r.T
            # The Gram route reproduces the evaluation's function on the full sets.
            for k, v in sets.items():
                full = _eof_error_from_grams(
                    prepared[k], prepared_ref, np.arange(len(v)), np.arange(n_ref)
                )
                direct = float(covariance_error(v, ref, n_eofs=10, weights=w))
                if not np.isclose(full, direct, rtol=1e-6, atol=1e-9):
                    raise RuntimeError(f"eof10 Gram route {full} ≠ covariance_error {direct}")

            def dist(g, r, gi, ri):
                return _eof_error_from_grams(g, r, gi, ri)
        elif est == "homogeneous":
            prepared = {k: _x_spectra(v) for k, v in sets.items()}
            prepared_ref = _x_spectra(ref)
            cache: dict[bytes, np.ndarray] = {}  # the reference side, shared by all candidates

            def dist(g, r, gi, ri, _cache=cache):
                key = ri.tobytes()
                if key not in _cache:
                    _cache[key] = _cross_spectra(r, ri)
                return _homogeneous_from_spectra(_cross_spectra(g, gi), _cache[key], nx)

        else:
            raise ValueError(f"unknown estimator {est!r}")
        full_r = np.arange(n_ref)
        floor = float(
            np.mean(
                [
                    dist(prepared_ref, prepared_ref, o[: n_ref // 2], o[n_ref // 2 :])
                    for o in block_splits(n_ref)
                ]
            )
        )
        floors = np.array(
            [dist(prepared_ref, prepared_ref, r[: n_ref // 2], r[n_ref // 2 :]) for r in draws_r]
        )
        values = {}
        for name in names:
            full = np.arange(len(sets[name]))
            idx = draws_o[name] if name in others else draws_a
            values[name] = (
                dist(prepared[name], prepared_ref, full, full_r),
                np.array([dist(prepared[name], prepared_ref, i, r) for i, r in zip(idx, draws_r)]),
            )
        rows = {}
        for name in names:
            value, boot = values[name]
            row = {
                "value": value,
                "ci": np.percentile(boot, [2.5, 97.5]).tolist(),
                "ratio": value / floor,
                "ratio_ci": np.percentile(boot / floors, [2.5, 97.5]).tolist(),
            }
            if name in from_a and name != baseline and baseline in from_a:
                delta = boot - values[baseline][1]
                row.update(
                    delta=value - values[baseline][0],
                    delta_ci=np.percentile(delta, [2.5, 97.5]).tolist(),
                    p_better=float(np.mean(delta < 0)),
                )
            rows[name] = row
        out[est] = {
            "floor": floor,
            "floor_ci": np.percentile(floors, [2.5, 97.5]).tolist(),
            "rows": rows,
        }
    return out


def bootstrap_table(boot: dict, baseline: str = QM, factor: float = FACTOR) -> str:
    """Markdown table of :func:`covariance_bootstrap` (one block per estimator)."""
    lines = []
    for est, res in boot.items():
        lo, hi = res["floor_ci"]
        lines += [
            f"**{est}** — floor {res['floor']:.3g} (resampled: [{lo:.3g}, {hi:.3g}])",
            "",
            f"| method | covariance error [95 % CI] | error / floor [95 % CI] | Δ vs {baseline} "
            "[95 % CI] | P(Δ < 0) |",
            "|---|---|---|---|---|",
        ]
        for name, r in res["rows"].items():
            ratio = f"{r['ratio']:.2f} [{r['ratio_ci'][0]:.2f}, {r['ratio_ci'][1]:.2f}]"
            if r["ratio_ci"][1] <= factor:
                ratio += f" ≤ {factor:g}"
            elif r["ratio_ci"][0] > factor:
                ratio += f" > {factor:g}"
            if "delta" in r:
                lo, hi = r["delta_ci"]
                sign = " **better**" if hi < 0 else (" **worse**" if lo > 0 else "")
                delta, p = f"{r['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]{sign}", f"{r['p_better']:.3f}"
            else:
                delta, p = "—", "—"
            lines.append(
                f"| {name} | {r['value']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {ratio} | "
                f"{delta} | {p} |"
            )
        lines.append("")
    return "\n".join(lines)


def cell(d: dict) -> str:
    text = f"{d['value']:.3g} ({d['floor']:.2g})"
    return f"**{text}**" if d["ratio"] <= FACTOR else text


def table(rows: list[dict]) -> str:
    head = ["method", "steps", "CPU s", "cycle error"] + [
        SCORE_DISTANCES[k].split(" [")[0] for k in SCORE_DISTANCES
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["model"],
            "—" if r.get("steps") is None else str(r["steps"]),
            "—" if r.get("train_cpu_s") is None else f"{r['train_cpu_s']:.0f}",
            "—" if r.get("cycle_error") is None else f"{r['cycle_error']:.3f}",
        ]
        cells += [cell(r["scores"][k]) for k in SCORE_DISTANCES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    by = {r["model"]: r for r in rows}
    scores = {r["model"]: {SCORE_KEY: r["scores"]} for r in rows}
    parts = []
    for r in rows:
        if r.get("steps") is None:
            continue
        v = verdict_vs_baseline(scores, r["model"], QM, SCORE_KEY, FACTOR)
        met = v["spectra"] and v["covariance"] and v["marginals"]
        parts.append(
            f"{r['model']}: {'MEETS' if met else 'misses'} the target (beats QM on spectra: "
            f"{'yes' if v['spectra'] else 'no'}, on covariance: "
            f"{'yes' if v['covariance'] else 'no'}, matches QM's W1: "
            f"{'yes' if v['marginals'] else 'no'})"
        )
    q = by.get(QM)
    if q:
        ident = by[IDENTITY]["scores"]
        parts.append(
            "quantile mapping vs identity: spectral log-error "
            f"{q['scores']['spectrum_lsd']['value']:.3g} vs {ident['spectrum_lsd']['value']:.3g}, "
            f"W1 {q['scores']['wasserstein1']['value']:.3g} vs "
            f"{ident['wasserstein1']['value']:.3g}, covariance "
            f"{q['scores']['covariance_error']['value']:.3g} vs "
            f"{ident['covariance_error']['value']:.3g}"
        )
    return "\n".join(f"- {p}" for p in parts)


def homogeneous_summary(rows: list[dict], boot: dict) -> str:
    """The target's verdict with the covariance part decided by the paired bootstrap of the
    ``homogeneous`` estimator: beaten when the 95 % interval of Δ vs quantile mapping lies
    below 0 (spectra and W1 as in :func:`summary`). For statistically x-homogeneous data
    (RBC, Held–Suarez) this is the covariance estimate that sampling noise does not swamp."""
    scores = {r["model"]: {SCORE_KEY: r["scores"]} for r in rows}
    hom = boot["homogeneous"]["rows"]
    parts = []
    for r in rows:
        row = hom.get(r["model"], {})
        if r.get("steps") is None or "delta_ci" not in row:
            continue
        v = verdict_vs_baseline(scores, r["model"], QM, SCORE_KEY, FACTOR)
        lo, hi = row["delta_ci"]
        cov = hi < 0
        met = v["spectra"] and cov and v["marginals"]
        parts.append(
            f"{r['model']}: {'MEETS' if met else 'misses'} the target with the homogeneous "
            f"covariance (spectra: {'yes' if v['spectra'] else 'no'}; covariance Δ vs QM "
            f"{row['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {'yes' if cov else 'no'}; W1 "
            f"matches: {'yes' if v['marginals'] else 'no'})"
        )
    return "\n".join(f"- {p}" for p in parts)


def bootstrap_sections(candidates, translators, a_tr, a_te, b_te, args) -> dict[str, dict]:
    """:func:`covariance_bootstrap` of the held-out translations (and, with ``--cov-inputs
    all``, of translations of all A fields)."""
    import xarray as xr

    def canon(ds):
        # On lat/lon, both estimators are area-weighted like the evaluation's covariance
        # error: rows scaled by sqrt(cos φ) turn the plain covariance into W^½ Σ W^½.
        values = _canonical_samples(ds, args.variable)
        grid = detect_grid(ds[args.variable])
        if grid.kind == "latlon":
            lat = to_canonical(ds[args.variable])[0][grid.y_dim].values
            values = values * np.sqrt(np.cos(np.deg2rad(lat)).clip(min=0))[:, None]
        return values

    ref = canon(b_te)
    others = {B_TRAIN: canon(candidates[B_TRAIN])}
    from_a = {k: canon(v) for k, v in candidates.items() if k != B_TRAIN}
    kw = dict(n_boot=args.bootstrap, block=args.block, seed=args.seed)
    out = {
        f"held-out A inputs ({a_te.sizes['time']}), held-out B reference "
        f"({b_te.sizes['time']}); {args.bootstrap} draws, blocks of {args.block}": (
            covariance_bootstrap(from_a, others, ref, **kw)
        )
    }
    if args.cov_inputs == "all":
        a_all = xr.concat([a_tr, a_te], "time")
        all_a = {IDENTITY: canon(a_all)}
        for name, tr in translators.items():
            seed = {} if name == QM else {"seed": args.seed + 1}
            all_a[name] = canon(tr.translate(a_all, **seed))
        out[
            f"all A inputs ({a_all.sizes['time']}; 80 % seen in training), held-out B "
            f"reference ({b_te.sizes['time']}); {args.bootstrap} draws, blocks of {args.block}"
        ] = covariance_bootstrap(all_a, others, ref, **kw)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-cpu-s", type=float, default=240.0, help="CPU s per network")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--pair",
        choices=("rbc", "heldsuarez"),
        default="rbc",
        help="the two climates (module docstring); heldsuarez needs --b-file",
    )
    parser.add_argument(
        "--variable", default=None, help="rbc: b (default); heldsuarez: omega500 (default) or tas"
    )
    parser.add_argument(
        "--b-file",
        type=Path,
        default=None,
        help="heldsuarez: domain B, e.g. from `climgen data heldsuarez --delta-t-y 40`",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="keep run dirs + outputs here")
    parser.add_argument(
        "--table", nargs="+", type=Path, default=None, help="only print the table of JSON files"
    )
    parser.add_argument(
        "--collect",
        nargs="+",
        type=Path,
        default=None,
        help="score saved runs instead of training: folders of --keep runs (one sub-folder "
        "per network, named by its key)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 CPU s, 1 network")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="paired block-bootstrap draws of the covariance errors (0: off)",
    )
    parser.add_argument("--block", type=int, default=10, help="bootstrap block (snapshots)")
    parser.add_argument(
        "--cov-inputs",
        choices=("test", "all"),
        default="test",
        help="'all': also bootstrap the covariance of translations of all A fields",
    )
    args = parser.parse_args(argv)
    if args.table:
        rows, seen = [], set()
        for path in args.table:
            for r in json.loads(path.read_text())["rows"]:
                if r["model"] not in seen:
                    rows.append(r)
                    seen.add(r["model"])
        print(table(rows) + "\n\n" + summary(rows))
        return
    if args.quick:
        args.budget_cpu_s = 5.0
        args.models = args.models if len(args.models) < len(MODELS) else ["cyclegan"]
    if args.threads:
        torch.set_num_threads(args.threads)
        # numpy's OpenBLAS too: its idle threads spin, and on a shared machine that costs
        # tens of times the CPU of the small eigen-problems of the bootstrap.
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
    warnings.filterwarnings("ignore", category=UserWarning)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); budget {args.budget_cpu_s:g} "
        f"CPU s/network, batch {args.batch_size}; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    args.variable = args.variable or ("b" if args.pair == "rbc" else "omega500")
    if args.pair == "heldsuarez" and args.b_file is None:
        parser.error("--pair heldsuarez needs --b-file (a `climgen data heldsuarez` run)")
    path_b = args.data_dir / (B_FILE if args.pair == "rbc" else HS_A_FILE)
    if not path_b.exists():
        print(f"skipping: {path_b} not found (the shared data is not here)")
        return
    a_tr, a_te, b_tr, b_te = load_domains(args)
    names = (
        ("Ra 1e6, bundled", "Ra 2e6 coarsened 2x")
        if args.pair == "rbc"
        else ("Held-Suarez ΔT_y 60 K", f"{args.b_file.name}")
    )
    print(
        f"A ({names[0]}): {a_tr.sizes['time']} train / {a_te.sizes['time']} test; "
        f"B ({names[1]}): {b_tr.sizes['time']} train / {b_te.sizes['time']} test; "
        f"variable {args.variable}",
        flush=True,
    )
    qm = Translator("quantile-mapping").fit(a_tr, b_tr)
    candidates = {B_TRAIN: b_tr, IDENTITY: a_te, QM: qm.translate(a_te)}
    infos = {name: {"model": name} for name in candidates}
    translators = {QM: qm}
    if args.collect:
        for folder in args.collect:
            for run in sorted(p for p in folder.iterdir() if p.name in MODELS):
                info, out, tr = collect_run(run, a_te, args.seed, args.variable)
                candidates[info["model"]] = out
                infos[info["model"]] = info
                translators[info["model"]] = tr
        args.models = []
    root = args.keep or Path(tempfile.mkdtemp(prefix="climgen-bench-translate-"))
    try:
        for key in args.models:
            try:
                info, out, tr = run_network(key, a_tr, a_te, b_tr, args, root)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{MODELS[key][0]} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            candidates[info["model"]] = out
            infos[info["model"]] = info
            translators[info["model"]] = tr
            one = score_rows(score_translations({"x": out}, b_te, variables=args.variable))["x"]
            print(
                f"  {info['model']}: {info['steps']} steps, {info['train_cpu_s']:.0f} CPU s "
                f"({info['train_wall_s']:.0f} wall s), cycle {info['cycle_error']:.3f}, "
                + ", ".join(f"{k} {one[args.variable][k]['value']:.3g}" for k in SCORE_DISTANCES),
                flush=True,
            )
            if args.keep:
                (root / key / "info.json").write_text(json.dumps(info, default=float))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    scores = score_rows(
        score_translations(candidates, b_te, variables=args.variable, factor=FACTOR)
    )
    rows = [dict(infos[name], scores=scores[name][args.variable]) for name in candidates]
    print("\n" + table(rows) + "\n\n" + summary(rows), flush=True)
    boot = {}
    if args.bootstrap > 0:
        boot = bootstrap_sections(candidates, translators, a_tr, a_te, b_te, args)
        for title, res in boot.items():
            print(f"\n### Covariance, paired block bootstrap: {title}\n", flush=True)
            print(bootstrap_table(res), flush=True)
        first = next(iter(boot.values()))
        print("\n" + homogeneous_summary(rows, first), flush=True)
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"budget_cpu_s": args.budget_cpu_s, "rows": rows, "covariance_bootstrap": boot},
                indent=1,
                default=float,
            )
        )


if __name__ == "__main__":
    main()
