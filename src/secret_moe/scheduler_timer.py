"""One pending wake-up of Snakemake's scheduling loop at a time, instead of one more per finished job.

Snakemake's command line always sets a job-rate limiter (`--max-jobs-per-timespan`, default 100/1s). While jobs
wait for cores, every pass of its scheduling loop (`JobScheduler.schedule`) then arms a `threading.Timer` that
wakes the loop again one timespan later, and that pass arms the next. A finished job wakes the loop too, and that
pass arms a timer of its own, so each finished job starts one more chain of timers that never ends while jobs
wait: after n finished jobs the loop runs about n times a second, and each pass checks the inputs of every ready
job. In `secret-moe scan gemma3-270m` (836 jobs, 2 cores) the main Snakemake process held 127 waiting timers after
257 finished jobs and took 45-48% of one core away from the training jobs (upstream: snakemake/snakemake#3744 and
#2354). One pending timer is enough for what the timer is for, a pass one timespan after the rate limit stopped
one: when it fires, that pass arms the next if jobs still wait. `benchmarks/bench_scheduler_loop.py` measures
both. The timer is a daemon thread, so it never holds Snakemake's exit back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

PENDING = "_secret_moe_reevaluation"  # the attribute of the scheduler that holds its one pending timer


def _wake(scheduler: Any) -> None:
    setattr(scheduler, PENDING, None)  # cleared first, so that the pass this wakes may arm the next timer
    scheduler._open_jobs.release()


def schedule_one_reevaluation(scheduler: Any, delay: float) -> None:
    """Wake the scheduling loop in `delay` seconds, unless a wake-up is already pending."""
    if getattr(scheduler, PENDING, None) is not None:
        return
    timer = threading.Timer(delay, _wake, args=(scheduler,))
    timer.daemon = True
    setattr(scheduler, PENDING, timer)
    timer.start()


def one_reevaluation_timer() -> bool:
    """Make Snakemake's scheduler keep one pending wake-up; True if it took (False on a Snakemake without it)."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        log.warning("snakemake.scheduling.job_scheduler not found: the scheduling loop's timers are left as they are")
        return False
    if not hasattr(JobScheduler, "_schedule_reevalutation"):  # Snakemake's own spelling
        log.warning("JobScheduler._schedule_reevalutation not found: the scheduling loop's timers are left as they are")
        return False
    JobScheduler._schedule_reevalutation = schedule_one_reevaluation
    return True
