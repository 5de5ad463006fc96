"""The Gaussian control: streamed moments equal numpy's, and samples have them, with y = teacher(x)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from secret_moe.gaussian import fit_moments, sampler_matrix, write_gaussian_store
from secret_moe.models.teacher import TeacherConfig, TeacherMLP
from secret_moe.store import open_store, partial_path


def correlated(rows: int, d: int, offset: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d))
    return (offset + rng.standard_normal(d) + rng.standard_normal((rows, d)) @ mix).astype(np.float32)


@pytest.mark.parametrize("block_rows", [64, 100, 1000, 5000])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_fit_moments_equals_numpy(block_rows, offset):
    x = correlated(1000, 6, offset, seed=1)  # 1000 rows: several blocks, the last one partial
    mean, cov, rows = fit_moments(x, block_rows)
    x64 = x.astype(np.float64)
    assert rows == 1000
    np.testing.assert_allclose(mean, np.mean(x64, axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cov, np.cov(x64, rowvar=False, bias=True), rtol=1e-9, atol=1e-9)
    assert mean.dtype == cov.dtype == np.float64


def test_fit_moments_streams_over_a_zarr_array(tmp_path, make_store):
    x = correlated(777, 5, 3.0, seed=2)
    store = make_store(tmp_path / "s.zarr", x, x, chunk_rows=50)
    mean, cov, rows = fit_moments(open_store(store)["x"], block_rows=128)
    assert rows == 777
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-9, atol=1e-12)


def test_sampler_matrix_factors_the_covariance_even_when_singular():
    rng = np.random.default_rng(3)
    low = rng.standard_normal((5, 2))
    cov = low @ low.T  # rank 2
    a = sampler_matrix(cov)
    np.testing.assert_allclose(a @ a.T, cov, atol=1e-10)
    assert np.all(np.isfinite(a))


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    return TeacherMLP(TeacherConfig(d_model=6, d_hidden=12, gated=True, activation="gelu_pytorch_tanh", bias=False))


def test_gaussian_samples_have_the_fitted_moments_and_teacher_outputs(tmp_path, teacher):
    rng = np.random.default_rng(4)
    d, rows = 6, 40_000
    mix = rng.standard_normal((d, d))
    cov = mix @ mix.T / d + 0.1 * np.eye(d)
    mean = rng.standard_normal(d) * 3
    out = tmp_path / "gaussian.zarr"
    attrs = {"data": "gaussian", "layer": 2}
    write_gaussian_store(
        out, mean=mean, cov=cov, teacher=teacher, rows=rows, chunk_rows=3000, seed=7, device="cpu", attrs=attrs
    )
    assert not partial_path(out).exists()
    group = open_store(out, attrs)
    assert group["x"].shape == group["y"].shape == (rows, d)
    assert group["x"].chunks == (3000, d)
    x = group["x"][:].astype(np.float64)

    # mean: each coordinate within 5 standard errors
    standard_error = np.sqrt(np.diag(cov) / rows)
    assert np.all(np.abs(x.mean(axis=0) - mean) < 5 * standard_error)
    # covariance: Var(x_i x_j) = S_ii S_jj + S_ij^2 for a Gaussian, so the error of each entry is ~ sqrt(that / n)
    sample_cov = np.cov(x, rowvar=False, bias=True)
    cov_error = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / rows)
    assert np.all(np.abs(sample_cov - cov) < 5 * cov_error)
    # ... and the test is sharp enough to tell a wrong covariance apart
    assert not np.all(np.abs(sample_cov - 1.1 * cov) < 5 * cov_error)

    with torch.no_grad():
        expected = teacher(torch.from_numpy(group["x"][:])).numpy()
    np.testing.assert_allclose(group["y"][:], expected, rtol=1e-6, atol=1e-6)


def test_gaussian_store_is_reproducible_from_its_seed(tmp_path, teacher):
    kwargs = {
        "mean": np.zeros(6),
        "cov": np.eye(6),
        "teacher": teacher,
        "rows": 500,
        "chunk_rows": 128,
        "device": "cpu",
        "attrs": {},
    }
    write_gaussian_store(tmp_path / "a.zarr", seed=1, **kwargs)
    write_gaussian_store(tmp_path / "b.zarr", seed=1, **kwargs)
    write_gaussian_store(tmp_path / "c.zarr", seed=2, **kwargs)
    a, b, c = (zarr.open_group(str(tmp_path / f"{n}.zarr"), mode="r")["x"][:] for n in "abc")
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
