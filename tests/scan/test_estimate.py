"""The wall-time estimate of a scan: timed steps are positive, and the estimate is their sum over the batches of every
run (its footprint under the ladder), shared among the parallel jobs, so it grows with the runs."""

from __future__ import annotations

import math

import pytest

from secret_moe.scan.estimate import StepTimes, estimate_seconds, time_students
from secret_moe.schedule import Schedule

STUDENTS = ["mlp_h8", "moe_lowrank_r8_m16_s2_k2"]


def runs(count: int, epochs: int = 4) -> list[dict]:
    return [{"student": STUDENTS[i % 2], "epochs": epochs} for i in range(count)]


def test_every_student_kind_gets_a_positive_time():
    times = time_students(STUDENTS, d_model=16, batch_size=64, steps=2, learning_rate=1e-3, threads=1)
    assert set(times) == set(STUDENTS)
    assert all(t.train > 0 and t.evaluate > 0 for t in times.values())


def test_the_estimate_is_positive_and_scales_with_the_runs_and_the_jobs():
    times = {name: StepTimes(train=0.01 * (i + 1), evaluate=0.001) for i, name in enumerate(STUDENTS)}
    rows = {"train": 1000, "validation": 300}
    cosine = Schedule()
    one = estimate_seconds(runs(4), times, rows, 256, cosine, parallel_jobs=1)
    # 4 epochs of 4 train and 2 validation batches per run, two runs of each student
    assert one == pytest.approx(4 * 2 * ((4 * 0.01 + 2 * 0.001) + (4 * 0.02 + 2 * 0.001)))
    assert estimate_seconds(runs(8), times, rows, 256, cosine, parallel_jobs=1) == pytest.approx(2 * one)
    assert estimate_seconds(runs(4), times, rows, 256, cosine, parallel_jobs=2) == pytest.approx(one / 2)
    ladder = Schedule(kind="wsd", rungs=2, cooldown_fraction=0.5)  # 2 and 4 epochs: trunk 2 + cooldowns 1 + 2
    assert ladder.footprint(4) == 5
    assert estimate_seconds(runs(4), times, rows, 256, ladder, parallel_jobs=1) == pytest.approx(one * 5 / 4)
    assert math.isclose(estimate_seconds([], times, rows, 256, cosine, 1), 0.0)


def test_timed_students_feed_the_estimate():
    times = time_students(STUDENTS, d_model=16, batch_size=64, steps=1, learning_rate=1e-3, threads=1)
    seconds = estimate_seconds(runs(6), times, {"train": 640, "validation": 64}, 64, Schedule(), parallel_jobs=2)
    assert seconds > 0
