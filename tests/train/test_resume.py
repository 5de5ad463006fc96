"""A training process killed with SIGKILL and run again continues from its checkpoint: it trains only the epochs
left and ends in the bytes of a run never interrupted (metrics.json and the weights), under the cosine schedule and
on a wsd ladder killed while a cooldown branch is in progress; the checkpoint is gone at the end, and one of other
settings is not used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from secret_moe.schedule import Schedule
from secret_moe.testing import kill_after_checkpoint, start_training, write_mlp_store

pytestmark = pytest.mark.slow  # real processes, each paying Python and torch start-up

STUDENTS = ("mlp_h8", "moe_lowrank_r4_m32_s2_k2")
EPOCHS = 16
# 16 epochs: under wsd the rungs of 8 and 16 epochs, the first a cooldown branch over epochs 7-8 off the trunk
SCHEDULES = {"cosine": {}, "wsd": {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.25, "rungs": 2}}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Stores big enough that an epoch lasts long past the moment the test sees its checkpoint and kills."""
    folder = tmp_path_factory.mktemp("stores")
    return [
        str(write_mlp_store(folder / f"{split}.zarr", rows, 32, 256, seed))
        for split, rows, seed in (("train", 8192, 0), ("validation", 1024, 1))
    ]


def arguments(stores: list[str], folder: Path, schedule: str, lr: float = 3e-3, checkpoint: bool = True) -> dict:
    runs = [
        {"model": "tiny", "layer": 1, "data": "activations", "student": s, "epochs": EPOCHS, "lr": lr, "seed": 0}
        for s in STUDENTS
    ]
    return {
        "train_store": stores[0],
        "val_store": stores[1],
        "bundle_dir": str(folder / "bundle"),
        "runs": runs,
        "distill": {"batch_size": 64, "group_chunks": 2, "in_memory": True, "schedule": SCHEDULES[schedule]},
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "checkpoint": str(folder / "checkpoint.pt") if checkpoint else None,
        "checkpoint_minutes": 0,  # after every epoch
    }


def train_to_the_end(args: dict, log: Path) -> None:
    process = start_training(args, log)
    assert process.wait() == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(stores: list[str], tmp_path_factory: pytest.TempPathFactory):
    """The bundle's folder after a run without interruption and without a checkpoint, once per schedule."""
    done: dict[str, Path] = {}

    def folder(schedule: str) -> Path:
        if schedule not in done:
            out = tmp_path_factory.mktemp(f"uninterrupted_{schedule}")
            train_to_the_end(arguments(stores, out, schedule, checkpoint=False), out / "log")
            done[schedule] = out / "bundle"
        return done[schedule]

    return folder


def outputs(bundle: Path) -> dict[str, bytes]:
    """Every run's metrics.json and weights (timing.json holds wall-clock numbers: not reproducible)."""
    return {
        str(path.relative_to(bundle)): path.read_bytes()
        for path in sorted(bundle.rglob("*"))
        if path.is_file() and path.name != "timing.json"
    }


@pytest.mark.parametrize(
    "schedule, kill_after, position",
    [
        ("cosine", 5, r"the trunk at epoch [56], 0 rungs finished"),
        # 6 trunk epochs, then the cooldown branch of the 8-epoch rung: killed in it (7) or at its end (8)
        ("wsd", 7, r"the trunk at epoch 6, a cooldown branch at epoch [78], 0 rungs finished"),
    ],
)
def test_a_killed_run_resumes_where_it_stopped_to_the_same_bytes(
    stores, uninterrupted, tmp_path, schedule, kill_after, position
):
    args, log = arguments(stores, tmp_path, schedule), tmp_path / "log"
    kill_after_checkpoint(start_training(args, log), log, kill_after)
    assert (tmp_path / "checkpoint.pt").is_file() and not (tmp_path / "bundle").exists()
    killed_at = len(log.read_text())
    train_to_the_end(args, log)
    rerun = log.read_text()[killed_at:]
    assert re.search(r"resumed from epoch \d+ .*: \d+ epochs trained before, " + position, rerun), rerun[-3000:]
    before = int(re.search(r"(\d+) epochs trained before", rerun).group(1))
    footprint = Schedule(**SCHEDULES[schedule]).footprint(EPOCHS)
    assert f"{footprint - before} epochs trained in this process, {footprint} in all" in rerun
    assert outputs(tmp_path / "bundle") == outputs(uninterrupted(schedule))
    assert len(outputs(tmp_path / "bundle")) == 2 * len(STUDENTS)
    assert not (tmp_path / "checkpoint.pt").exists()  # deleted at the end


def test_a_checkpoint_of_other_settings_is_not_used(stores, uninterrupted, tmp_path):
    """A killed run at another learning rate leaves its checkpoint where this bundle's goes: ignored, named,
    replaced, and removed at the end; the bundle trains from its first epoch to the bytes of a fresh run."""
    log = tmp_path / "log"
    kill_after_checkpoint(start_training(arguments(stores, tmp_path, "cosine", lr=1e-3), log), log, 2)
    killed_at = len(log.read_text())
    train_to_the_end(arguments(stores, tmp_path, "cosine"), log)
    rerun = log.read_text()[killed_at:]
    assert f"checkpoint {tmp_path / 'checkpoint.pt'} is of other settings" in rerun
    assert "resumed" not in rerun and f"{EPOCHS} epochs trained in this process, {EPOCHS} in all" in rerun
    assert outputs(tmp_path / "bundle") == outputs(uninterrupted("cosine"))
    assert not (tmp_path / "checkpoint.pt").exists()
