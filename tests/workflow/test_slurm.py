"""The workflow on a real Slurm cluster through profiles/slurm (snakemake-executor-plugin-slurm).

A one-node cluster with accounting (munge, MariaDB, slurmdbd, slurmctld, slurmd from Debian's packages)
runs on localhost for this module, started by tests/slurm/start.sh and stopped by PID. The real Snakefile
runs on the tiny model with the real Slurm profile, changed only where the test cluster differs from a
real one: its partition and account, and a 2 s first status check instead of 40 s. sacct (served by
slurmdbd) then says what Slurm itself ran.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from secret_moe import workflow_rules
from secret_moe.testing import (
    TINY_MOE,
    run_snakemake,
    save_tiny_model,
    snakemake_command,
    tiny_config,
    write_config,
    write_tiny_corpus,
)

REPO = Path(__file__).resolve().parents[2]
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
SLURM_SCRIPTS = REPO / "tests" / "slurm"
SNAKEMAKE_SECONDS = 1200  # ends a hung status loop; one run took 3-11 min on a busy 2-core machine
LOCAL_RULES = set(workflow_rules.LOCAL_RULES)
STUDENTS = ("mlp_h4", TINY_MOE)  # the main grid of tiny_config at one MLP width
BAD_LR = 1e15  # Adam steps this large overflow float32 at once: the trainer raises NonFiniteLossError

pytestmark = pytest.mark.slow


def unavailable(reason: str) -> None:
    """Skip the cluster tests on a developer's machine; fail them where CI=true (.ci/run sets it), so that CI
    cannot go green without having run them."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, but the Slurm tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """Start the cluster; yields the environment for Slurm clients and the partition and account to use."""
    if not all(shutil.which(daemon) for daemon in ("munged", "slurmctld", "slurmd", "slurmdbd", "mariadbd")):
        unavailable("Slurm is not installed: run tests/slurm/install.sh (Debian/Ubuntu, as root)")
    if os.geteuid() != 0:
        unavailable("starting a Slurm cluster needs root (its daemons run as root, munged as user munge)")
    # the munge user must reach its socket, so not under pytest's private (mode 700) tmp_path
    run_dir = Path(tempfile.mkdtemp(prefix="secret-moe-slurm-"))
    run_dir.chmod(0o755)
    slurm_env = {**os.environ, "SLURM_CONF": str(run_dir / "slurm.conf")}
    try:
        started = subprocess.run(
            ["bash", SLURM_SCRIPTS / "start.sh", run_dir], check=False, capture_output=True, text=True, timeout=120
        )
        if started.returncode != 0:
            unavailable(f"a Slurm cluster could not be started here:\n{started.stderr[-3000:]}")
        settings = dict(item.split("=", 1) for item in started.stdout.splitlines()[-1].split())
        # jobs start Python and Snakemake from PATH (the plugin exports this environment to them)
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        yield {
            "env": {**slurm_env, "PATH": path},
            "partition": settings["SLURM_PARTITION"],
            "account": settings["SLURM_ACCOUNT"],
        }
    finally:
        # a test stopped half-way may leave jobs whose processes outlive slurmd
        subprocess.run(
            ["scancel", "--full", "--user=root"], check=False, env=slurm_env, capture_output=True, timeout=30
        )
        subprocess.run(["bash", SLURM_SCRIPTS / "stop.sh", run_dir], timeout=120, check=True)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def paper_run(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny workflow (2 students x 2 data x 2 learning rates) run to its figures on the cluster."""
    root = tmp_path_factory.mktemp("slurm")
    profile = cluster_profile(root, cluster)
    workdir = root / "work"
    (workdir / "corpus").mkdir(parents=True)
    corpus = write_tiny_corpus(workdir / "corpus", {"train": 400, "validation": 100})
    config = tiny_config(
        save_tiny_model(workdir / "model"),
        corpus,
        experiments={"shared_split": {"enabled": False}, "router_rank": {"enabled": False}},
    )
    config["distill"].update(learning_rates=[0.001, 0.003], mlp_widths=[4])
    write_config(workdir / "config.yaml", config)
    result = slurm_snakemake(workdir, profile, cluster["env"])
    return {"workdir": workdir, "profile": profile, "config": config, "result": result}


def cluster_profile(root: Path, cluster: dict[str, Any]) -> Path:
    """The real Slurm profile with the test cluster's partition and account and a 2 s first status check."""
    profile = root / "profile"
    profile.mkdir()
    config = {
        **PROFILE,
        "default-resources": {
            **PROFILE["default-resources"],
            "slurm_partition": cluster["partition"],
            "slurm_account": cluster["account"],
        },
    }
    config["slurm-init-seconds-before-status-checks"] = 2
    (profile / "config.yaml").write_text(yaml.safe_dump(config))
    return profile


# SIGINT, not SIGTERM, when a run hangs: Snakemake then cancels its Slurm jobs and exits
TIMEOUT = ("timeout", "-s", "INT", str(SNAKEMAKE_SECONDS))


def slurm_snakemake(workdir: Path, profile: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Snakemake through the Slurm profile on the run in `workdir` (its config.yaml), to `figures/all`."""
    return run_snakemake(
        workdir,
        "--workflow-profile",
        profile,
        *args,
        "figures/all",
        configfile=workdir / "config.yaml",
        prefix=TIMEOUT,
        env=env,
        timeout=SNAKEMAKE_SECONDS + 60,
    )


def job_counts(output: str) -> Counter:
    """The 'Job stats' table Snakemake prints before it starts: jobs per rule."""
    table = output.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    return Counter({rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)})


def sacct(output: str, env: dict[str, str]) -> list[dict[str, str]]:
    """Slurm's record of every job this Snakemake output says it submitted; `name` is the rule or group."""
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    if not ids:
        return []
    fields = ["JobID", "State", "Comment", "AllocTRES"]
    lines = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(fields)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    jobs = [dict(zip(fields, line.split("|"), strict=False)) for line in lines]
    assert sorted(job["JobID"] for job in jobs) == sorted(ids)
    for job in jobs:  # the plugin's comment: rule_<rule>_wildcards_<values>, or rule_<group name>
        job["name"] = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
    return jobs


def scheduled_runs(output: str) -> set[str]:
    """Run folders of the collect_run jobs (one per distillation run) in Snakemake's output (a dry run lists
    them all; a real run only those that started, so not the runs of a bundle that failed)."""
    return set(re.findall(r"output: (results/distill/\S+)/metrics\.json", output))


def runs(learning_rates: list[float]) -> set[str]:
    return {
        f"results/distill/tiny/layer1/{data}/{student}/e2_lr{lr}_seed0"
        for data in ("activations", "gaussian")
        for student in STUDENTS
        for lr in learning_rates
    }


def test_every_job_runs_as_a_slurm_job_and_distillation_runs_share_submissions(
    paper_run: dict[str, Any], cluster: dict[str, Any]
) -> None:
    result, workdir = paper_run["result"], paper_run["workdir"]
    assert result.returncode == 0, result.stderr[-5000:]
    figures = (workdir / "figures" / "all").read_text().split()
    assert figures and all((workdir / figure).stat().st_size > 0 for figure in figures)

    counts = job_counts(result.stderr)
    jobs = sacct(result.stderr, cluster["env"])
    assert {job["State"] for job in jobs} == {"COMPLETED"}, jobs
    submitted = Counter(job["name"] for job in jobs)
    # one submission per job of the other rules, one per bundle of distillation runs, none for local rules
    expected = {rule: count for rule, count in counts.items() if rule not in LOCAL_RULES}
    assert submitted == expected
    assert counts["train_students"] < counts["collect_run"]  # runs share a submission
    # the profile's GPU requests reached Slurm
    gpu_rules = {"capture_activations", "train_students"}
    assert {job["name"] for job in jobs if "gres/gpu=1" in job["AllocTRES"]} == gpu_rules
    assert all("gres/gpu" not in job["AllocTRES"] for job in jobs if job["name"] not in gpu_rules)


def test_failed_run_names_its_log_and_rerun_submits_only_what_is_missing(
    paper_run: dict[str, Any], cluster: dict[str, Any], tmp_path: Path
) -> None:
    assert paper_run["result"].returncode == 0
    # a copy of the finished run (copytree keeps the files' times), so that the module's run stays as it was
    workdir, profile, config = tmp_path / "work", paper_run["profile"], copy.deepcopy(paper_run["config"])
    shutil.copytree(paper_run["workdir"], workdir, symlinks=True)

    # extend the grid with a good and a diverging learning rate: only the new runs are scheduled
    config["distill"]["learning_rates"] = [0.001, 0.003, 0.01, BAD_LR]
    write_config(workdir / "config.yaml", config)
    plan = slurm_snakemake(workdir, profile, cluster["env"], "-n")
    assert plan.returncode == 0, plan.stderr[-5000:]
    assert scheduled_runs(plan.stdout + plan.stderr) == runs([0.01, BAD_LR])
    failed = slurm_snakemake(workdir, profile, cluster["env"])
    assert failed.returncode != 0
    assert "FAILED" in {job["State"] for job in sacct(failed.stderr, cluster["env"])}
    # Snakemake names the log of the failed bundle, which names the diverging run and why
    bundle_logs = set(re.findall(r"logs/train_students/\S+\.log", failed.stderr))
    assert bundle_logs
    assert any(
        "NonFiniteLossError" in (workdir / log).read_text() and f"/{BAD_LR}/" in (workdir / log).read_text()
        for log in bundle_logs
    )
    # a failure ends its bundle, so good runs trained with it did not finish: they are missing too
    missing = {run for run in runs([0.01]) if not (workdir / run / "metrics.json").exists()}

    # fix the config: drop the diverging learning rate
    config["distill"]["learning_rates"] = [0.001, 0.003, 0.01]
    write_config(workdir / "config.yaml", config)
    plan = slurm_snakemake(workdir, profile, cluster["env"], "-n")
    assert scheduled_runs(plan.stdout + plan.stderr) == missing
    rerun = slurm_snakemake(workdir, profile, cluster["env"])
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    assert scheduled_runs(rerun.stderr) == missing
    assert set(job_counts(rerun.stderr)) <= LOCAL_RULES | ({"train_students"} if missing else set())
    assert {job["State"] for job in sacct(rerun.stderr, cluster["env"])} <= {"COMPLETED"}
    assert all((workdir / run / "metrics.json").exists() for run in runs([0.001, 0.003, 0.01]))


RESUME_EPOCHS = 1500  # a bundle of two tiny students trains for 1-3 minutes here: long enough to be stopped twice


def wait_until(found: Callable[[], Any], process: subprocess.Popen, what: str, seconds: float = 900) -> Any:
    """Poll `found()` until it gives something true; fail, naming `what`, if Snakemake ends or time runs out."""
    deadline = time.monotonic() + seconds
    while not (value := found()):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"Snakemake ended (exit {process.poll()}) or {seconds} s passed before {what}")
        time.sleep(0.2)
    return value


def slurm_job_of(rule: str, env: dict[str, str]) -> str | None:
    """The id of the queued or running Slurm job of `rule` (the plugin's comment: rule_<rule>_wildcards_...)."""
    lines = subprocess.run(
        ["squeue", "-h", "-o", "%i|%k"], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return next(
        (job for job, comment in (line.split("|", 1) for line in lines) if comment.startswith(f"rule_{rule}_")), None
    )


def test_a_preempted_then_timed_out_bundle_resumes_from_its_checkpoint(cluster: dict[str, Any], tmp_path: Path) -> None:
    """A training job requeued by Slurm, as preemption requeues it (`scontrol requeue`; the profile's
    `slurm-requeue`), starts again and continues from its checkpoint; cut by its time limit, it is submitted again by
    Snakemake (the profile's `retries`) and continues again, to the end."""
    env, profile, workdir = cluster["env"], cluster_profile(tmp_path, cluster), tmp_path / "work"
    (workdir / "corpus").mkdir(parents=True)
    corpus = write_tiny_corpus(workdir / "corpus", {"train": 400, "validation": 100})
    config = tiny_config(save_tiny_model(workdir / "model"), corpus, experiments={})
    config["distill"].update(data=["activations"], learning_rates=[0.003], mlp_widths=[4])
    config["distill"].update(epochs=RESUME_EPOCHS, checkpoint_minutes=0)
    write_config(workdir / "config.yaml", config)
    target = f"results/distill/tiny/layer1/activations/mlp_h4/e{RESUME_EPOCHS}_lr0.003_seed0/metrics.json"
    output = tmp_path / "snakemake.log"
    with output.open("w") as stream:
        process = subprocess.Popen(
            snakemake_command(
                workdir, "--workflow-profile", profile, target, configfile=workdir / "config.yaml", prefix=TIMEOUT
            ),
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    try:
        checkpoint = wait_until(
            lambda: next((workdir / "results/checkpoints").rglob("*.pt"), None), process, "a checkpoint"
        )
        log = workdir / "logs/train_students" / checkpoint.relative_to(workdir / "results/checkpoints")
        log = log.with_suffix(".log")
        job = wait_until(lambda: slurm_job_of("train_students", env), process, "the training job in squeue")
        subprocess.run(["scontrol", "requeue", job], env=env, check=True)  # what preemption with requeue does
        wait_until(
            lambda: log.is_file() and "resumed from epoch" in log.read_text(), process, "the requeued job resumed"
        )
        subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=0:1"], env=env, check=True)
        assert process.wait(timeout=SNAKEMAKE_SECONDS) == 0, output.read_text()[-5000:]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
    text = output.read_text()
    trains = [j for j in sacct(text, env) if j["name"] == "train_students"]
    assert [j["State"] for j in trains] == ["TIMEOUT", "COMPLETED"], trains  # one job requeued, then cut; a retry
    requeued = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-D", "-j", job, "-o", "State"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert requeued[0] == "REQUEUED" and requeued[-1] == "TIMEOUT", requeued
    final = log.read_text()  # the last submission's log
    assert re.search(r"resumed from epoch \d+", final), final[-3000:]
    trained = re.search(r"(\d+) epochs trained in this process, (\d+) in all", final)
    assert trained and int(trained.group(1)) < int(trained.group(2)) == RESUME_EPOCHS
    assert (workdir / target).is_file() and not checkpoint.exists()
