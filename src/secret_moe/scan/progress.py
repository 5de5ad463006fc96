"""One line per finished job of a Snakemake run, from Snakemake's own output (its job blocks name each job's rule,
id and wildcards; "Finished jobid: N (Rule: R)" and "k of M steps (x%) done" follow when it ends)."""

from __future__ import annotations

import re

JOB = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")
JOBID = re.compile(r"^\s+jobid: (\d+)\s*$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")
PROGRESS = re.compile(r"(\d+) of (\d+) steps \([^)]*\) done")
SHOWN = ("layer", "data", "split")  # the wildcards a summary names


class JobSummaries:
    """Feed Snakemake's output lines to `feed`; it returns a summary line when a job has finished, else None."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, str]] = {}  # jobid -> rule and wildcards
        self._current: str | None = None  # the rule of the job block being read
        self._jobid: str | None = None
        self._finished: tuple[str, str] | None = None  # (jobid, rule) waiting for its progress line

    def feed(self, line: str) -> str | None:
        if match := JOB.match(line):
            self._current, self._jobid = match[1], None
        elif (match := JOBID.match(line)) and self._current:
            self._jobid = match[1]
            self.jobs[self._jobid] = {"rule": self._current}
        elif (match := WILDCARDS.match(line)) and self._jobid:
            pairs = (item.split("=", 1) for item in match[1].split(", ") if "=" in item)
            self.jobs[self._jobid].update({key: value for key, value in pairs})
        elif match := FINISHED.search(line):
            self._finished = (match[1], match[2])
        elif (match := PROGRESS.search(line)) and self._finished:
            jobid, rule = self._finished
            self._finished = None
            wildcards = self.jobs.get(jobid, {})
            where = ", ".join(f"{key} {wildcards[key]}" for key in SHOWN if key in wildcards)
            return f"[scan] {match[1]}/{match[2]} done: {rule}" + (f" ({where})" if where else "")
        return None
