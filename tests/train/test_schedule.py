"""Learning-rate schedules: the formulas, the trainer applying them, resume, validation."""

from __future__ import annotations

import csv
import math
import signal
import sys
from pathlib import Path

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.train import TrainConfig, Trainer, TrainingInterrupted
from climgen.train.schedule import apply_lr_factor, lr_factor

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import (  # noqa: E402
    SignalAt,
    ToyGAN,
    assert_same_state,
    config,
    make_data,
    make_family,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (tests/conftest.py)


@pytest.mark.parametrize("r", [0.0, 0.1])
def test_cosine_and_linear_factors_follow_their_formulas(r):
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        cos = r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p))
        assert lr_factor("cosine", p, 10**6, min_lr_ratio=r) == pytest.approx(cos, abs=1e-12)
        assert lr_factor("linear", p, 10**6, min_lr_ratio=r) == pytest.approx(
            r + (1 - r) * (1 - p), abs=1e-12
        )
        assert lr_factor("constant", p, 10**6) == 1.0
    assert lr_factor("cosine", 0.5, 0, min_lr_ratio=r) == pytest.approx((1 + r) / 2)
    assert lr_factor("cosine", 2.0, 0, min_lr_ratio=r) == pytest.approx(r)  # clipped to p = 1


def test_warmup_rises_linearly_to_the_schedule():
    w = [lr_factor("constant", 0.0, s, warmup_steps=4) for s in range(7)]
    assert w == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])


def test_apply_keeps_the_ratio_between_groups_and_the_initial_rate():
    a = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
    b = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    for f in (0.5, 0.25, 1.0):
        apply_lr_factor({"d": a, "g": b}, f)
        assert a.param_groups[0]["lr"] == pytest.approx(4e-4 * f)
        assert b.param_groups[0]["lr"] == pytest.approx(1e-4 * f)
    assert a.state_dict()["param_groups"][0]["initial_lr"] == 4e-4


def _logged_lrs(run: Path, group: str) -> list[tuple[int, float]]:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return [(int(r["step"]), float(r[f"lr_{group}"])) for r in rows]


def test_trainer_decays_every_group_on_a_cosine_and_the_loss_still_falls(tmp_path):
    cfg = config(max_steps=40, log_every=5, lr_schedule="cosine", min_lr_ratio=0.05)
    Trainer(make_family("gan"), cfg, tmp_path).fit(make_data())
    for group in ("generator", "discriminator"):
        logged = _logged_lrs(tmp_path, group)
        # the row of step s shows the rate used for the step s (s - 1 steps completed)
        for step, lr in logged:
            expected = 1e-3 * lr_factor("cosine", (step - 1) / 40, step - 1, 0, 0.05)
            assert lr == pytest.approx(expected, rel=1e-9), (group, step)
        rates = [lr for _, lr in logged]
        assert rates == sorted(rates, reverse=True) and rates[-1] < 0.1e-3


def test_time_budget_drives_the_schedule_to_its_end(tmp_path):
    cfg = config(
        max_steps=10**6, log_every=1, lr_schedule="linear", max_time_s=0.3, checkpoint_every=0
    )
    result = Trainer(make_family("ae"), cfg, tmp_path).fit(make_data())
    assert result.step < 10**6
    last = _logged_lrs(tmp_path, "main")[-1][1]
    assert last < 0.2 * _logged_lrs(tmp_path, "main")[0][1]


def test_resume_mid_schedule_is_bit_identical(tmp_path):
    cfg = dict(ema_decay=0.9, lr_schedule="cosine", warmup_steps=5)
    run = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        Trainer(
            make_family("gan"), config(**cfg), run, callbacks=[SignalAt(17, signal.SIGTERM)]
        ).fit(make_data())
    straight = Trainer(make_family("gan"), config(**cfg), tmp_path / "straight")
    straight.fit(make_data())
    resumed = Trainer(ToyGAN(), config(**cfg), run)
    assert resumed.fit(make_data(), resume=True).step == 40
    assert_same_state(straight, resumed)
    for group in resumed.optimizers:
        assert resumed.optimizers[group].param_groups[0]["lr"] == pytest.approx(
            straight.optimizers[group].param_groups[0]["lr"]
        )


@pytest.mark.parametrize(
    "field, value",
    [("lr_schedule", "step"), ("min_lr_ratio", 1.0), ("min_lr_ratio", -0.1), ("warmup_steps", -1)],
)
def test_bad_schedule_options_name_the_field(field, value):
    with pytest.raises(ClimgenInputError, match=field):
        TrainConfig(**{field: value})
