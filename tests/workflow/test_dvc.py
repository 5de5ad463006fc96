"""DVC versions the workflow's outputs: a finished run pushed to a remote comes back in a fresh clone (issue 6).

The module runs the real Snakefile once on two tiny models, records it with `dvc commit`, pushes it to a DVC
remote in a temporary folder, and every test then works in its own fresh `git clone` of that repository with
the documented restore command (`python -m secret_moe.restore`).  Real git, DVC and Snakemake; no mocks.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from secret_moe import layout
from secret_moe.testing import run_snakemake, save_tiny_model, tiny_config, write_config, write_tiny_corpus

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIRS = ("results", "resources", "figures")
SNAKEMAKE_SECONDS = 1800  # ends a hung run; the module's run took over 900 s on a loaded 2-core machine

slow = pytest.mark.slow

ENV = {
    **os.environ,
    # `dvc repro` runs the commands of dvc.yaml, which call snakemake and python from PATH
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "DVC_NO_ANALYTICS": "1",
}


def sh(*args: str | Path, cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        command = " ".join(map(str, args))
        pytest.fail(f"{command} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def py(*args: str | Path, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", *args, cwd=cwd, **kwargs)


def project_files() -> list[str]:
    """The working tree as a commit would hold it: tracked and new files, not ignored ones, nor the default
    config's dvc.lock (this module records its own run)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [f for f in listed if f and f != "dvc.lock" and (REPO / f).is_file()]


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under the output folders, by path relative to `root`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in OUTPUT_DIRS
        if (root / d).exists()
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def planned_jobs(cwd: Path, *targets: str) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` would run ({} when there is nothing to do)."""
    out = run_snakemake(None, "-n", *targets, snakefile=None, cwd=cwd, env=ENV, timeout=300, check=True).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def snakemake_stale_stages(cwd: Path) -> set[str]:
    """The dvc.yaml stages of the jobs `snakemake -n figures/all` would run (stage group and model, from
    secret_moe.layout.STAGES)."""
    out = run_snakemake(None, "-n", "figures/all", snakefile=None, cwd=cwd, env=ENV, timeout=300, check=True).stdout
    controls = set(yaml.safe_load((cwd / "config.yaml").read_text()).get("padding_controls") or {})
    group_of = {rule: name for name, stage in layout.STAGES.items() for rule in stage.rules}
    stages = set()
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", out, re.MULTILINE):
        if rule == "all":
            continue
        group = group_of[rule]
        if not layout.STAGES[group].per_model:
            stages.add(group)
            continue
        model = re.search(r"wildcards: .*?model=([\w.-]+)", body).group(1)
        stages.add(f"{layout.CONTROL_PREFIX if model in controls else ''}{group}@{model}")
    return stages


def dvc_stale(cwd: Path) -> set[str]:
    out = py("dvc", "status", "--json", cwd=cwd).stdout
    return set(yaml.safe_load(out) or {})


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A git repository of the workflow, its tiny run finished, committed to DVC and pushed to a local remote."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("dvc")
    origin = tmp / "origin"
    for name in project_files():
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, origin / name)
    (tmp / "corpus").mkdir()
    corpus = write_tiny_corpus(tmp / "corpus", {"train": 300, "validation": 80})
    config = tiny_config(
        save_tiny_model(tmp / "gpt-neox", "gpt_neox"),
        corpus,
        experiments={"shared_split": {"enabled": False}, "router_rank": {"enabled": False}},
        gaussian={"block_rows": 16384, "split_seeds": {"train": 0, "validation": 1}},
        verdict={"confidence": 0.95},
        scan={"projections": 64, "block_rows": 16384, "timing_steps": 3},
    )  # every key dvc.yaml lists must be in config.yaml, defaults included (DVC does not read the schema)
    config["distill"]["learning_rates"] = [0.003]  # 3 students x 2 data per model
    config["models"]["tiny2"] = {
        **config["models"]["tiny"],
        "path": str(save_tiny_model(tmp / "llama", "llama")),
        "hf_id": "local/tiny-llama",
        "layers": [1],
    }
    config["padding_controls"] = {
        "tiny-padded": {"same_as": "tiny", "batch_lines": 4, "layers": [1], "max_tokens": {"train": 1500}}
    }
    write_config(origin / "config.yaml", config)

    sh("git", "init", "-q", cwd=origin)
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "workflow", cwd=origin)
    if not (origin / ".dvc").is_dir():
        py("dvc", "init", "-q", cwd=origin)
    run_snakemake(
        None, "--cores", "2", "figures/all", snakefile=None, cwd=origin, env=ENV, timeout=SNAKEMAKE_SECONDS, check=True
    )
    py("dvc", "commit", "-f", cwd=origin)  # record the finished run in dvc.lock and the cache
    remote = tmp / "remote"
    py("dvc", "remote", "add", "-d", "store", remote, cwd=origin)
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "results", cwd=origin)
    py("dvc", "push", cwd=origin)
    return SimpleNamespace(tmp=tmp, origin=origin, remote=remote, hashes=file_hashes(origin))


def clone(pushed: SimpleNamespace, name: str) -> Path:
    path = pushed.tmp / name
    sh("git", "clone", "-q", pushed.origin, path, cwd=pushed.tmp)
    return path


def restore(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return py("secret_moe.restore", *args, cwd=cwd, check=check)


@pytest.fixture(scope="module")
def restored(pushed: SimpleNamespace) -> Path:
    """A fresh clone after the documented restore command."""
    path = clone(pushed, "restored")
    restore(path)
    return path


@slow
def test_run_was_recorded(pushed):
    lock = yaml.safe_load((pushed.origin / "dvc.lock").read_text())["stages"]
    assert {
        "tokenizer@tiny",
        "tokens@tiny",
        "model@tiny",
        "activations@tiny",
        "gaussian@tiny",
        "distill@tiny",
        "tokenizer@tiny2",
        "distill@tiny2",
        "padded_activations@tiny-padded",
        "padded_gaussian@tiny-padded",
        "padded_distill@tiny-padded",
        "aggregate",
        "scan@tiny",
        "padded_scan@tiny-padded",
        "figures",
    } <= set(lock)
    assert not any(stage.endswith("@tiny-padded") and not stage.startswith("padded_") for stage in lock)
    assert lock["tokens@tiny"]["params"]["config.yaml"]["corpus"]["max_length"] == 48
    assert py("dvc", "status", cwd=pushed.origin).stdout.strip() == "Data and pipelines are up to date."


@slow
def test_restore_brings_the_run_back_without_recomputing(pushed, restored):
    assert planned_jobs(restored, "figures/all") == {}
    assert file_hashes(restored) == pushed.hashes  # every file, byte for byte
    # no job ran: every job logs to its log file (the touch leaves them empty) and benchmarks its run
    assert not any(f.stat().st_size for f in (restored / "logs").rglob("*") if f.is_file())
    assert not (restored / "logs" / "benchmarks").exists()
    assert py("dvc", "status", cwd=restored).stdout.strip() == "Data and pipelines are up to date."


@slow
def test_pull_one_model_activations_only(pushed):
    path = clone(pushed, "one-model")
    restore(path, "activations@tiny2")
    pulled = file_hashes(path)
    wanted = ("results/activations/tiny2/", "results/teacher/tiny2/")
    assert pulled and set(pulled) == {p for p in pushed.hashes if p.startswith(wanted)}  # those and nothing else
    assert all(pushed.hashes[p] == h for p, h in pulled.items())
    # the cache holds these files only (plus the two directory listings): nothing else was fetched
    cached = [p.name for p in (path / ".dvc" / "cache").rglob("*") if p.is_file()]
    assert len([n for n in cached if n.endswith(".dir")]) == 2
    assert len([n for n in cached if not n.endswith(".dir")]) == len(set(pulled.values()))  # one per content
    # work downstream of the pulled stores starts from them: upstream is not remade
    assert planned_jobs(path, "results/gaussian/tiny2/layer1/moments.npz") == {"fit_gaussian": 1}

    # one layer of the other model, by path
    restore(path, "results/activations/tiny/layer1")
    layer = {p for p in file_hashes(path) if "/tiny/" in p}
    assert layer and all(p.startswith("results/activations/tiny/layer1/") for p in layer)
    assert planned_jobs(path, "results/gaussian/tiny/layer1/moments.npz") == {"fit_gaussian": 1}


def _object(root: Path, relpath: str) -> str:
    """Path of a file's object inside a DVC cache or remote (files/md5/ab/cdef...)."""
    digest = hashlib.md5((root / relpath).read_bytes()).hexdigest()
    return f"files/md5/{digest[:2]}/{digest[2:]}"


def _corrupt(path: Path) -> None:
    path.chmod(0o644)  # DVC keeps its objects read-only
    path.write_bytes(b"corrupted\n")


@slow
def test_corrupted_file_on_the_remote_is_refused(pushed):
    broken = pushed.tmp / "broken-remote"
    shutil.copytree(pushed.remote, broken)
    inside = "results/tokens/tiny/train.zarr/zarr.json"  # one file inside a directory output
    _corrupt(broken / _object(pushed.origin, inside))
    path = clone(pushed, "from-broken-remote")
    py("dvc", "remote", "add", "--local", "broken", broken, cwd=path)

    done = restore(path, "-r", "broken", "tokens@tiny", check=False)
    assert done.returncode != 0
    assert "Checkout failed" in done.stderr and "results/tokens/tiny" in done.stderr
    assert not any(h == hashlib.sha256(b"corrupted\n").hexdigest() for h in file_hashes(path).values())
    assert not (path / ".snakemake" / "metadata").exists()  # nothing was touched

    # the same clone restores from the intact remote
    restore(path, "tokens@tiny")
    assert all(pushed.hashes[p] == h for p, h in file_hashes(path).items())


@slow
def test_corrupted_file_in_the_local_cache_is_detected_and_replaced(pushed):
    path = clone(pushed, "broken-cache")
    restore(path, "tokens@tiny")
    inside = "results/tokens/tiny/validation.zarr/zarr.json"
    cached = path / ".dvc" / "cache" / _object(pushed.origin, inside)
    _corrupt(cached)
    shutil.rmtree(path / "results" / "tokens" / "tiny")

    assert "not in cache" in py("dvc", "status", "tokens@tiny", cwd=path).stdout  # DVC's hash check reports it
    restore(path, "tokens@tiny")  # dvc pull fetches the object again
    assert cached.read_bytes() == (pushed.origin / inside).read_bytes()
    assert (path / inside).read_bytes() == (pushed.origin / inside).read_bytes()  # the corrupted copy is not used
    assert all(pushed.hashes[p] == h for p, h in file_hashes(path).items())


@slow
@pytest.mark.parametrize("where", ["config.yaml", "schema default"])
def test_dvc_and_snakemake_find_the_same_stages_stale_after_a_gaussian_seed_change(pushed, where):
    """`gaussian.split_seeds` reaches sample_gaussian's params.  Changed in config.yaml, both tools name the
    Gaussian stages and everything after them; changed as a schema default, neither reruns anything, since
    config.yaml writes the value out (tests/workflow/test_dag_map.py checks that every default is)."""
    path = clone(pushed, f"seed-change-{where.replace(' ', '-')}")
    restore(path)
    if where == "config.yaml":
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["gaussian"]["split_seeds"]["validation"] = 5
        write_config(path / "config.yaml", config)
    else:
        schema = path / "config" / "schema.yaml"
        text = schema.read_text()
        edited = text.replace("default: {train: 0, validation: 1}", "default: {train: 0, validation: 5}")
        schema.write_text(
            edited.replace(
                "validation: {type: integer, minimum: 0, default: 1}",
                "validation: {type: integer, minimum: 0, default: 5}",
            )
        )
        assert schema.read_text() != text
    by_snakemake, by_dvc = snakemake_stale_stages(path), dvc_stale(path)
    assert by_dvc == by_snakemake, (by_dvc, by_snakemake)
    if where == "config.yaml":
        gaussian = {f"{g}@{m}" for g in ("gaussian", "distill") for m in ("tiny", "tiny2")}
        controls = {f"padded_{g}@tiny-padded" for g in ("gaussian", "distill")}
        scans = {"scan@tiny", "scan@tiny2", "padded_scan@tiny-padded"}  # describe_inputs reads the Gaussian stores
        assert by_dvc == gaussian | controls | scans | {"aggregate", "figures"}
    else:
        assert by_dvc == set()


@slow
def test_config_change_marks_the_stage_and_its_descendants_stale(pushed):
    """Changes the config of a clone of its own, after the documented restore."""
    restored = clone(pushed, "changed-config")
    restore(restored)
    config = yaml.safe_load((restored / "config.yaml").read_text())
    config["corpus"]["max_length"] = 40
    write_config(restored / "config.yaml", config)

    downstream = {
        "tokenise_corpus",
        "capture_activations",
        "fit_gaussian",
        "sample_gaussian",
        "train_students",
        "collect_run",
        "aggregate_runs",
        "plot_figure",
        "plot_control",
        "plot_verdict",
        "plot_what_fvu_measures",  # the padding control's figure
        "describe_inputs",  # the layer profile (docs/scan.md): every model's, on every config
        "profile_layers",
        "plot_scan",
        "all_figures",
    }
    jobs = planned_jobs(restored, "figures/all")
    assert set(jobs) == downstream, jobs  # not prepare_tokenizer, prepare_model, export_teacher
    assert jobs["tokenise_corpus"] == 2
    stale = dvc_stale(restored)
    assert stale == {
        f"{group}@{model}" for group in ("tokens", "activations", "gaussian", "distill") for model in ("tiny", "tiny2")
    } | {f"padded_{group}@tiny-padded" for group in ("activations", "gaussian", "distill", "scan")} | {
        "scan@tiny",
        "scan@tiny2",
        "aggregate",
        "figures",
    }, stale

    # restoring over a changed config is refused: the pulled files would not match it
    refused = restore(restored, "tokens@tiny", check=False)
    assert refused.returncode != 0 and "differ from dvc.lock" in refused.stderr

    # dvc.yaml's command for one stage runs Snakemake for that stage only, and records it
    py("dvc", "repro", "--single-item", "tokens@tiny", cwd=restored, timeout=SNAKEMAKE_SECONDS)
    stale = dvc_stale(restored)
    assert "tokens@tiny" not in stale and "tokens@tiny2" in stale and "activations@tiny" in stale
    assert not {"model@tiny", "tokenizer@tiny", "model@tiny2", "tokenizer@tiny2"} & stale
    assert planned_jobs(restored, "results/tokens/tiny/train.zarr", "results/tokens/tiny2/train.zarr") == {
        "tokenise_corpus": 1
    }
    assert (
        yaml.safe_load((restored / "dvc.lock").read_text())["stages"]["tokens@tiny"]["params"]["config.yaml"]["corpus"][
            "max_length"
        ]
        == 40
    )
