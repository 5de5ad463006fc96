"""secret_moe.scheduler_timer: Snakemake's scheduling loop keeps one pending wake-up, not one more per finished job."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from secret_moe.scheduler_timer import PENDING, schedule_one_reevaluation

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_scheduler_loop import WAYS, one_run  # noqa: E402


class Loop:
    """What the timer touches of Snakemake's JobScheduler: the semaphore its loop waits on."""

    def __init__(self) -> None:
        self._open_jobs = threading.Semaphore(0)


def test_however_often_armed_one_wake_up_is_pending_and_it_comes_once() -> None:
    loop = Loop()
    for _ in range(20):
        schedule_one_reevaluation(loop, 0.2)
    timer = getattr(loop, PENDING)
    assert timer.daemon  # never holds Snakemake's exit back
    assert sum(t is timer for t in threading.enumerate()) == 1
    assert loop._open_jobs.acquire(timeout=5)  # the wake-up comes
    assert not loop._open_jobs.acquire(timeout=0.5)  # once, not twenty times
    assert getattr(loop, PENDING) is None
    schedule_one_reevaluation(loop, 0.05)  # the pass it woke may arm the next
    assert loop._open_jobs.acquire(timeout=5)


def test_a_real_snakemake_run_holds_one_timer_where_as_shipped_it_piles_them_up(tmp_path: Path) -> None:
    shipped, fixed = (one_run(tmp_path / f"run{i}", fix, jobs=12, sleep=0.3) for i, fix in enumerate(WAYS.values()))
    assert shipped["timers"] >= 5  # one more chain of wake-ups per finished job
    assert fixed["timers"] <= 1
    assert len(list((tmp_path / "run1" / "out").iterdir())) == 12  # and every job still ran


def test_the_workflow_applies_it() -> None:
    common = (REPO / "rules" / "common.smk").read_text()
    assert "\none_reevaluation_timer()\n" in common
