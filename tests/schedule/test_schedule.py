"""Learning-rate schedules: the rate at every step, the ladder's budgets, and refused settings."""

from __future__ import annotations

import pytest

from secret_moe.errors import ConfigError
from secret_moe.schedule import Schedule


def test_wsd_rate_warms_up_holds_then_cools_down_to_zero():
    schedule = Schedule(kind="wsd", warmup_epochs=1, cooldown_fraction=0.25, rungs=1)
    steps, budget = 4, 8  # 32 steps: warmup 4, trunk until step 24, cooldown over the last 8
    rates = [schedule.factor(step, steps, budget) for step in range(budget * steps)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert rates[4:24] == [1.0] * 20
    assert rates[24:] == pytest.approx([1 - i / 8 for i in range(1, 9)])
    assert rates[-1] == 0.0


def test_the_trunk_is_the_same_for_every_budget():
    schedule = Schedule(kind="wsd", warmup_epochs=2, cooldown_fraction=0.2, rungs=3)
    budgets = schedule.budgets(40)
    assert budgets == [10, 20, 40]
    assert [schedule.cooldown_start(b) for b in budgets] == [8, 16, 32]
    for budget in budgets:
        trunk = [schedule.factor(step, 3, budget) for step in range(schedule.cooldown_start(budget) * 3)]
        assert trunk == [schedule.factor(step, 3, 40) for step in range(len(trunk))]


def test_footprint_is_the_trunk_plus_every_cooldown():
    schedule = Schedule(kind="wsd", cooldown_fraction=0.2, rungs=3)
    # trunk to 32, cooldowns of 2, 4 and 8 epochs
    assert schedule.footprint(40) == 32 + 2 + 4 + 8
    assert Schedule().footprint(40) == 40


def test_cooldown_is_at_least_one_epoch():
    schedule = Schedule(kind="wsd", cooldown_fraction=0.1, rungs=2)
    assert schedule.budgets(4) == [2, 4]
    assert schedule.cooldown_epochs(2) == 1 and schedule.cooldown_start(2) == 1


@pytest.mark.parametrize(
    ("settings", "epochs", "message"),
    [
        ({"kind": "linear"}, 4, "distill.schedule.kind"),
        ({"kind": "cosine", "rungs": 2}, 4, "needs kind: wsd"),
        ({"kind": "wsd", "rungs": 3}, 6, "not divisible by 2^(rungs-1) = 4"),
        ({"kind": "wsd", "rungs": 2, "warmup_epochs": 4}, 8, "before its warmup"),
        ({"kind": "wsd", "cooldown_fraction": 0}, 4, "cooldown_fraction"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, epochs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        Schedule(**settings).budgets(epochs)
