"""The Gaussian control: streamed moments equal numpy's, and samples have them, with y = teacher(x)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
import zarr

from secret_moe.gaussian import (
    Z_BITS,
    Z_LIMIT,
    fit_moments,
    gaussian_rows,
    on_grid,
    sampler_matrix,
    write_gaussian_store,
)
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


def test_sampler_matrix_is_the_symmetric_root_even_when_singular():
    rng = np.random.default_rng(3)
    low = rng.standard_normal((5, 2))
    cov = low @ low.T  # rank 2
    root = sampler_matrix(cov)
    np.testing.assert_array_equal(root, root.T)
    np.testing.assert_allclose(root @ root, cov, atol=1e-10)
    assert np.linalg.eigvalsh(root).min() > -1e-7  # the PSD root, the one that is unique


def degenerate_covariance(d: int, seed: int) -> np.ndarray:
    """Half the eigenvalues equal: LAPACK may return any rotation of their eigenvectors."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eigvals = np.concatenate([rng.gamma(1.0, 1.0, d // 2), np.full(d - d // 2, 0.01)])
    cov = (basis * eigvals) @ basis.T
    return (cov + cov.T) / 2


def test_sampler_matrix_does_not_depend_on_how_the_eigenvectors_come_out():
    cov = degenerate_covariance(32, seed=5)
    order = np.random.default_rng(6).permutation(32)
    permuted = sampler_matrix(cov[np.ix_(order, order)])  # another eigendecomposition of the same matrix
    unpermuted = np.empty_like(permuted)
    unpermuted[np.ix_(order, order)] = permuted
    np.testing.assert_allclose(unpermuted, sampler_matrix(cov), atol=1e-12)
    np.testing.assert_allclose(sampler_matrix(cov), scipy.linalg.sqrtm(cov).real, atol=1e-8)  # Schur, not eigh


def test_a_constant_dimension_stays_exactly_at_its_mean():
    """A dimension of zero variance (Gemma-3-270M layer 9 has one) is drawn as its mean, not as rounding noise."""
    cov = degenerate_covariance(12, seed=8)
    cov[4, :] = cov[:, 4] = 0.0
    mean = np.linspace(-2, 2, 12)
    root = sampler_matrix(cov)
    assert not root[4].any() and not root[:, 4].any()
    x = np.concatenate(list(gaussian_rows(mean, cov, rows=300, chunk_rows=64, seed=1)))
    assert np.all(x[:, 4] == np.float32(mean[4]))
    np.testing.assert_allclose(root @ root, cov, atol=1e-10)


def test_the_product_on_the_grids_is_exact_in_any_order_of_summation():
    """z and each column of S on their grids (gaussian.Z_BITS): every partial sum is exact, so summing the D
    products in another order (what another BLAS kernel does) gives the same bytes; off the grids it does not."""
    rng = np.random.default_rng(9)
    d = 640
    root = on_grid(sampler_matrix(degenerate_covariance(d, seed=9)))
    z = np.round(np.clip(rng.standard_normal((256, d)), -Z_LIMIT, Z_LIMIT) * 2.0**Z_BITS) / 2.0**Z_BITS
    order = rng.permutation(d)
    assert (z @ root).tobytes() == (z[:, order] @ root[order]).tobytes()
    assert (z @ root).tobytes() == np.einsum("nd,de->ne", z[:, order], root[order], optimize=False).tobytes()
    off_grid = sampler_matrix(degenerate_covariance(d, seed=9))
    z_raw = rng.standard_normal((256, d))
    assert (z_raw @ off_grid).tobytes() != (z_raw[:, order] @ off_grid[order]).tobytes()


def test_the_grids_change_the_covariance_by_far_less_than_its_sampling_error():
    cov = degenerate_covariance(64, seed=10)
    root = on_grid(sampler_matrix(cov))
    assert np.linalg.norm(root.T @ root - cov) / np.linalg.norm(cov) < 1e-7


DRAW = """
import hashlib, sys
import numpy as np
from secret_moe.gaussian import gaussian_rows
fitted = np.load(sys.argv[1])
mean, cov = fitted["mean"], fitted["cov"]
x = np.concatenate(list(gaussian_rows(mean, cov, rows=500, chunk_rows=128, seed=11)))
eigvals, eigvecs = np.linalg.eigh(cov)  # the earlier factor, to show the two code paths differ at all
factor = eigvecs * np.sqrt(np.clip(eigvals, 0, None))
old = mean + np.random.default_rng(11).standard_normal((500, len(mean))) @ factor.T
np.savez(sys.argv[2], x=x, old=old.astype(np.float32))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS core types named for x86-64")
def test_the_draw_is_the_same_on_two_blas_code_paths(tmp_path):
    """Two OpenBLAS kernel sets (what two CPUs pick) give the same Gaussian sample, byte for byte."""
    moments = tmp_path / "moments.npz"
    cov = degenerate_covariance(48, seed=7)
    cov[5, :] = cov[:, 5] = 0.0  # a constant dimension, as in Gemma's layer 9
    np.savez(moments, mean=np.linspace(-1, 1, 48), cov=cov)
    draws = {}
    for coretype in ("Haswell", "Sandybridge"):
        out = tmp_path / f"{coretype}.npz"
        env = {**os.environ, "OPENBLAS_CORETYPE": coretype}
        subprocess.run([sys.executable, "-c", DRAW, str(moments), str(out)], check=True, env=env)
        draws[coretype] = np.load(out)
    old_gap = np.abs(draws["Haswell"]["old"] - draws["Sandybridge"]["old"]).max()
    assert old_gap > 1e-2, "the two kernel sets gave the same eigenvectors: this test cannot tell the roots apart"
    assert draws["Haswell"]["x"].tobytes() == draws["Sandybridge"]["x"].tobytes()


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
