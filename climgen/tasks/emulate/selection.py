"""Choose an emulator's checkpoint on a **validation run**, never on the test run.

A long training run keeps many checkpoints; which one to ship is a model-selection decision,
and taking it on the run the results are reported against would flatter the result. The
three-run protocol (issue 23, docs/emulation.md):

- training run (seed a): the weights are fitted on it;
- validation run (seed b): :func:`choose_checkpoint` scores every candidate checkpoint on it;
- test run (seed c): the chosen checkpoint is scored once, by the benchmark or the demo.

A checkpoint's score is the number of distances of the evaluation report within ``factor``
times their noise floor (the two halves of the validation run), ties broken by the smallest
largest ratio (the verdict "matches" needs every distance, so the worst one decides), then by
the smallest typical ratio exp(mean log r) over the finite ratios (a distance whose floor is
0 has an infinite ratio for every checkpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.tasks.emulate.scoring import check_independent, packed_like

__all__ = ["CheckpointScore", "choose_checkpoint", "report_score"]


@dataclass(frozen=True)
class CheckpointScore:
    """One checkpoint's score on the validation run."""

    step: int
    matches: int
    n_distances: int
    largest_ratio: float
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def typical_ratio(self) -> float:
        """exp(mean log r) over the finite, positive ratios (inf when there are none)."""
        logs = [math.log(r) for r in self.ratios.values() if 0 < r < math.inf]
        return math.exp(sum(logs) / len(logs)) if logs else math.inf

    @property
    def key(self) -> tuple[int, float, float]:
        """Sort key, larger is better: (distances within the factor, −largest ratio,
        −typical ratio)."""
        return self.matches, -self.largest_ratio, -self.typical_ratio

    def __str__(self) -> str:
        return (
            f"step {self.step}: {self.matches}/{self.n_distances} within, "
            f"largest ratio {self.largest_ratio:.3g}, typical {self.typical_ratio:.3g}"
        )


def report_score(report, variables, step: int = -1) -> CheckpointScore:
    """:class:`CheckpointScore` of ``report`` (a :func:`~climgen.report.evaluate.evaluate`
    result) over ``variables`` (a name or a list; ratios keyed ``variable/distance`` when
    there are several): a non-finite ratio counts as infinitely far."""
    names = [variables] if isinstance(variables, str) else list(variables)
    distances = {
        (k if len(names) == 1 else f"{v}/{k}"): d
        for v in names
        for k, d in report.variables[v].distances.items()
    }
    ratios = {k: (d.ratio if math.isfinite(d.ratio) else math.inf) for k, d in distances.items()}
    return CheckpointScore(
        step=step,
        matches=sum(d.status == "matches" for d in distances.values()),
        n_distances=len(distances),
        largest_ratio=max(ratios.values()),
        ratios=ratios,
    )


def _step_of(path: Path) -> int:
    return int(path.name.split("_")[-1])


def choose_checkpoint(
    emulator,
    run_dir: str | Path,
    train: xr.Dataset,
    validation: xr.Dataset,
    *,
    n_samples: int = 150,
    seed: int = 1,
    steps: list[int] | None = None,
    every: int = 1,
    calibrate: dict | None = None,
    packing: dict[str, tuple[float, float]] | None = None,
    sample_options: dict | None = None,
    log=print,
) -> tuple[CheckpointScore, dict[int, CheckpointScore]]:
    """Score checkpoints of ``run_dir`` on ``validation`` and leave the best in ``emulator``.

    ``emulator``: the run's :class:`~climgen.tasks.emulate.Emulator` (``Emulator.load``);
    its family's weights are replaced by each candidate's (EMA weights when the checkpoint has
    them) and finally by the chosen one's, with ``checkpoint_step`` set. ``train`` and
    ``validation`` carry the emulator's sample dim; ``validation`` must come from another run
    (its ``seed`` attribute, :func:`check_independent`). ``steps`` (or every ``every``-th
    checkpoint) restricts the candidates. ``calibrate``: keyword arguments of
    :meth:`~climgen.tasks.emulate.Emulator.calibrate_spectrum` (fitted on ``train`` for each
    candidate; None: the raw network is scored and any calibration is dropped). ``packing``:
    the training file's int16 packing, applied to the samples (:func:`packed_like`).
    ``sample_options`` go to the family's sampler (e.g. ``steps`` of a diffusion sampler).

    Returns ``(best, {step: score})``.
    """
    from climgen.report.evaluate import evaluate
    from climgen.train.checkpoint import list_checkpoints

    if every < 1:
        raise ClimgenInputError(f"every must be a positive integer, got {every!r}")
    check_independent(validation, train, where="validation run")
    every_checkpoint = list_checkpoints(run_dir)
    candidates = every_checkpoint[::every]
    if steps is not None:
        wanted = {int(s) for s in steps}
        missing = wanted - {_step_of(p) for p in every_checkpoint}
        if missing:
            raise ClimgenInputError(
                f"{run_dir}: no checkpoint at step(s) {sorted(missing)}; it has "
                f"{[_step_of(p) for p in every_checkpoint]}"
            )
        candidates = [p for p in every_checkpoint if _step_of(p) in wanted]
    if not candidates:
        raise ClimgenInputError(f"{run_dir}: no checkpoints to choose from")
    dim = emulator.sample_dim
    reference = validation.rename({dim: "sample"})
    scores: dict[int, CheckpointScore] = {}
    for path in candidates:
        _load(emulator, path, train, calibrate)
        samples = emulator.sample(n_samples, seed=seed, **(sample_options or {}))
        if packing:
            samples = packed_like(samples, packing)
        report = evaluate(samples, reference, variables=emulator.variables, progress=False)
        scores[emulator.checkpoint_step] = report_score(
            report, emulator.variables, step=emulator.checkpoint_step
        )
        log(str(scores[emulator.checkpoint_step]))
    best = max(scores.values(), key=lambda s: s.key)
    path = next(p for p in candidates if _step_of(p) == best.step)
    _load(emulator, path, train, calibrate)
    return best, scores


def _load(emulator, path: Path, train: xr.Dataset, calibrate: dict | None) -> None:
    """Put the checkpoint at ``path`` into ``emulator`` (and its calibration, if asked)."""
    from climgen.train.checkpoint import load_family

    emulator.family, ckpt = load_family(path)
    emulator.checkpoint_step = ckpt.step
    emulator.calibration = None
    if calibrate is not None:
        emulator.calibrate_spectrum(train, **calibrate)
