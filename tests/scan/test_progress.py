"""One summary line per finished job, read from Snakemake's own output (job blocks, then its finish lines)."""

from __future__ import annotations

from secret_moe.scan.progress import JobSummaries

OUTPUT = """\
[Wed Dec  2 02:00:00 2026]
rule describe_inputs:
    input: results/activations/tiny/layer1/train.zarr, results/gaussian/tiny/layer1/train.zarr
    output: results/scan/tiny/input_stats/layer1.csv
    log: logs/describe_inputs/tiny/layer1.log
    jobid: 7
    benchmark: logs/benchmarks/describe_inputs/tiny/layer1.tsv
    reason: Missing output files: results/scan/tiny/input_stats/layer1.csv
    wildcards: model=tiny, layer=1
    resources: tmpdir=/tmp, mem_mb=2000
[Wed Dec  2 02:00:00 2026]
localrule profile_layers:
    jobid: 3
    wildcards: model=tiny
[Wed Dec  2 02:00:05 2026]
Finished jobid: 7 (Rule: describe_inputs)
5 of 9 steps (56%) done
[Wed Dec  2 02:00:06 2026]
Finished jobid: 3 (Rule: profile_layers)
6 of 9 steps (67%) done
"""


def test_each_finished_job_gets_one_line_with_its_layer():
    summaries = JobSummaries()
    lines = [s for line in OUTPUT.splitlines(keepends=True) if (s := summaries.feed(line)) is not None]
    assert lines == ["[scan] 5/9 done: describe_inputs (layer 1)", "[scan] 6/9 done: profile_layers"]
    assert summaries.jobs["7"] == {"rule": "describe_inputs", "model": "tiny", "layer": "1"}


def test_a_progress_line_without_a_finished_job_says_nothing():
    assert JobSummaries().feed("1 of 9 steps (11%) done\n") is None
