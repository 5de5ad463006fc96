"""Checkpoints: a run resumed from one ends as it would have, one of other settings or unreadable is ignored and
named, the random number generators come back, and the file is replaced whole."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from secret_moe.batches import ActivationBatches, output_variance
from secret_moe.checkpoint import Checkpoint
from secret_moe.schedule import Schedule
from secret_moe.store import open_store
from secret_moe.students import build_student, parse_student
from secret_moe.testing import write_mlp_store
from secret_moe.train import TrainConfig, fit_together, starting_progress

D = 8
STUDENTS = ("mlp_h8", "moe_lowrank_r4_m16_s2_k2")


def loaders(folder, device):
    """Training and validation batches of two small stores on `device`."""
    out = []
    for split, rows, seed in (("train", 512, 0), ("validation", 128, 1)):
        group = open_store(write_mlp_store(folder / f"{split}.zarr", rows, D, 64, seed))
        out.append(
            ActivationBatches(
                group, 64, shuffle=split == "train", seed=0, group_chunks=2, in_memory=True, device=device
            )
        )
    return out


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    return loaders(tmp_path_factory.mktemp("stores"), "cpu")


def train(batches, schedule, precision, checkpoint):
    """Fresh students (the same start every time) trained together for 4 epochs on the batches' device."""
    train_batches, val = batches
    students = []
    for name in STUDENTS:
        torch.manual_seed(0)
        students.append(build_student(parse_student(name), D).to(train_batches.device))
    configs = [TrainConfig(4, 3e-3, name, precision) for name in STUDENTS]
    results = fit_together(
        students, train_batches, val, configs, output_variance(val), schedule=schedule, checkpoint=checkpoint
    )
    return students, results


def without_time(results):
    return [{k: v for k, v in result.items() if k not in ("seconds", "samples_per_second")} for result in results]


@pytest.mark.parametrize(
    "schedule, precision",
    [(Schedule(), "float16"), (Schedule("wsd", 1, 0.5, 2), "float32")],
    ids=["cosine-float16", "wsd-ladder"],
)
def test_a_run_resumed_from_its_last_checkpoint_ends_as_it_did(batches, tmp_path, caplog, schedule, precision):
    """The last checkpoint holds the run at its end: a rerun restores students, Adam, scalers, schedulers and
    histories from it and trains nothing."""
    checkpoint = tmp_path / "bundle.pt"
    students, results = train(batches, schedule, precision, Checkpoint(checkpoint, "these settings"))
    assert checkpoint.is_file() and not (tmp_path / "bundle.pt.tmp").exists()
    with caplog.at_level(logging.INFO):
        again, resumed = train(batches, schedule, precision, Checkpoint(checkpoint, "these settings"))
    assert "resumed from epoch 4" in caplog.text and "0 epochs trained in this process" in caplog.text
    assert without_time(resumed) == without_time(results)
    for student, restored in zip(students, again, strict=True):
        trained, loaded = student.state_dict(), restored.state_dict()
        assert all(torch.equal(trained[key], loaded[key]) for key in trained)


def test_a_checkpoint_of_other_settings_is_ignored_and_named(batches, tmp_path, caplog):
    checkpoint = tmp_path / "bundle.pt"
    _, results = train(batches, Schedule(), "float32", Checkpoint(checkpoint, "other settings"))
    with caplog.at_level(logging.INFO):
        _, fresh = train(batches, Schedule(), "float32", Checkpoint(checkpoint, "these settings"))
    assert f"checkpoint {checkpoint} is of other settings" in caplog.text
    assert "resumed" not in caplog.text and "4 epochs trained in this process, 4 in all" in caplog.text
    assert without_time(fresh) == without_time(results)  # the same training, from its first epoch
    assert torch.load(checkpoint, weights_only=True)["fingerprint"] == "these settings"  # replaced


def test_an_unreadable_checkpoint_is_ignored_and_named(batches, tmp_path, caplog):
    checkpoint = tmp_path / "bundle.pt"
    checkpoint.write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.INFO):
        train(batches, Schedule(), "float32", Checkpoint(checkpoint, "these settings"))
    assert f"checkpoint {checkpoint} is unreadable" in caplog.text and "resumed" not in caplog.text


def test_the_random_number_generators_come_back(batches, tmp_path):
    students, _ = train(batches, Schedule(), "float32", None)
    checkpoint = Checkpoint(tmp_path / "bundle.pt", "these settings")
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random()  # each generator part-way, numpy's with a cached Gaussian
    np.random.standard_normal()
    torch.randn(1)
    checkpoint.write(progress_of(students, batches))
    drawn = (random.random(), np.random.standard_normal(3).tolist(), torch.randn(3).tolist())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    assert checkpoint.resume(progress_of(students, batches))
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.randn(3).tolist()) == drawn


def test_writes_follow_the_minutes_and_removal_takes_a_half_written_file_too(batches, tmp_path):
    students, _ = train(batches, Schedule(), "float32", None)
    path = tmp_path / "bundle.pt"
    Checkpoint(path, "these settings", minutes=60).offer(progress_of(students, batches))
    assert not path.exists()  # the first write comes an hour after the start
    checkpoint = Checkpoint(path, "these settings", minutes=0)
    checkpoint.offer(progress_of(students, batches))
    assert path.is_file()
    (tmp_path / "bundle.pt.tmp").write_bytes(b"a write cut off by a kill")
    assert checkpoint.resume(progress_of(students, batches))  # the complete file, not the temporary one
    checkpoint.remove()
    assert list(tmp_path.iterdir()) == []


def progress_of(students, batches):
    """The progress at the start of a cosine run of these students, as fit_together makes it."""
    configs = [TrainConfig(4, 3e-3, name) for name in STUDENTS]
    return starting_progress(students, configs, batches[0], Schedule(), 4)


@pytest.mark.cuda
def test_on_cuda_a_checkpoint_restores_the_students_scalers_and_the_cuda_generator(tmp_path, caplog):
    """On a GPU (float16 with its CUDA gradient scaler): the last checkpoint restores the run at its end, and the
    CUDA generator's state comes back with the others."""
    batches = loaders(tmp_path, "cuda")
    path = tmp_path / "bundle.pt"
    students, results = train(batches, Schedule(), "float16", Checkpoint(path, "these settings"))
    assert "cuda" in torch.load(path, weights_only=True)["rng"]
    torch.cuda.manual_seed(5)
    Checkpoint(tmp_path / "now.pt", "these settings").write(progress_of(students, batches))
    drawn = torch.randn(3, device="cuda").tolist()
    torch.cuda.manual_seed(9)
    assert Checkpoint(tmp_path / "now.pt", "these settings").resume(progress_of(students, batches))
    assert torch.randn(3, device="cuda").tolist() == drawn
    with caplog.at_level(logging.INFO):
        again, resumed = train(batches, Schedule(), "float16", Checkpoint(path, "these settings"))
    assert "0 epochs trained in this process" in caplog.text
    assert without_time(resumed) == without_time(results)
    for student, restored in zip(students, again, strict=True):
        trained, loaded = student.state_dict(), restored.state_dict()
        assert all(torch.equal(trained[key], loaded[key]) for key in trained)
