"""Statistics of a layer's inputs on hand-made stores with known answers: excess kurtosis of random projections
(0 for Gaussian data, -1.2 Σ u_i⁴ for independent uniform coordinates), the participation ratio of the covariance
(1 for rank one, d for isotropic, 2 for two equal directions), the largest group of identical rows and its share of
Var(y), the shares of special and padded rows; one pass whatever the block size."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from secret_moe.input_stats import compare_with_twin, input_stats, projection_directions
from secret_moe.rows import PAD, SPECIAL, TOKEN

ROWS = 40_000
# The sample excess kurtosis of n Gaussian draws has standard error sqrt(24 / n) (0.024 here); a mean or median
# over directions errs no more than one direction does, so 5 standard errors leave a 1-in-a-million false alarm.
KURTOSIS_TOLERANCE = 5 * np.sqrt(24 / ROWS)


def store(make_store, tmp_path, x, y=None, **kwargs):
    y = x[:, ::-1] ** 2 if y is None else y
    return zarr.open_group(str(make_store(tmp_path / "store.zarr", x, y, chunk_rows=4096, **kwargs)), mode="r")


def test_gaussian_inputs_have_no_excess_kurtosis(make_store, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, 16)) @ rng.standard_normal((16, 16)) + 5.0  # correlated, far from the origin
    stats = input_stats(store(make_store, tmp_path, x))
    assert abs(stats["kurtosis_mean"]) < KURTOSIS_TOLERANCE
    assert abs(stats["kurtosis_median"]) < KURTOSIS_TOLERANCE


def test_independent_uniform_coordinates_give_the_cumulant_sum(make_store, tmp_path):
    """κ4(u·x) = Σ u_i⁴ κ4(x_i) and Var(u·x) = 1 for unit u and unit-variance x_i: excess kurtosis −1.2 Σ u_i⁴."""
    d = 4
    x = np.random.default_rng(1).uniform(-np.sqrt(3), np.sqrt(3), (ROWS, d))
    stats = input_stats(store(make_store, tmp_path, x), projections=32, seed=7)
    expected = -1.2 * (projection_directions(d, 32, seed=7) ** 4).sum(axis=0)
    assert stats["kurtosis_mean"] == pytest.approx(expected.mean(), abs=0.03)
    assert stats["kurtosis_median"] == pytest.approx(np.median(expected), abs=0.03)
    assert stats["kurtosis_mean"] < -0.3  # clearly not Gaussian


def test_participation_ratio_counts_the_directions_of_the_covariance(make_store, tmp_path):
    rng = np.random.default_rng(2)
    direction = rng.standard_normal(16)
    rank_one = rng.standard_normal((2000, 1)) * direction + 3.0
    assert input_stats(store(make_store, tmp_path / "a", rank_one))["participation_ratio"] == pytest.approx(1, rel=1e-4)
    isotropic = rng.standard_normal((ROWS, 16))
    # Marchenko-Pastur: the sample covariance of n draws of N(0, I_d) has tr(C²) ≈ d (1 + d / n)
    ratio = input_stats(store(make_store, tmp_path / "b", isotropic))["participation_ratio"]
    assert ratio == pytest.approx(16 / (1 + 16 / ROWS), rel=0.01)
    two = np.zeros((ROWS, 16))
    two[:, :2] = rng.standard_normal((ROWS, 2))
    assert input_stats(store(make_store, tmp_path / "c", two))["participation_ratio"] == pytest.approx(2, rel=0.01)


def test_largest_group_of_identical_rows_and_its_share_of_var_y(make_store, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 8)).astype(np.float32)
    x[[5, 17, 40, 41, 99]] = x[5]  # a group of 5 identical inputs (as BOS rows are)
    x[[1, 2]] = x[1]  # and a smaller one
    y = rng.standard_normal((100, 8))
    y[[5, 17, 40, 41, 99]] = y[5] + 4.0  # y is a function of x: one value per group
    stats = input_stats(store(make_store, tmp_path, x, y), block_rows=7)
    spread = ((y - y.mean(axis=0)) ** 2).sum()
    assert stats["largest_group_rows"] == 5 and stats["largest_group_row_share"] == 0.05
    expected = 5 * ((y[5] - y.mean(axis=0)) ** 2).sum() / spread
    assert stats["largest_group_variance_share"] == pytest.approx(expected, rel=1e-5)
    assert expected > 0.3  # the shifted group carries much of Var(y)


def test_row_kind_shares_and_none_without_kinds(make_store, tmp_path):
    x = np.random.default_rng(4).standard_normal((50, 4))
    kind = np.full(50, TOKEN, dtype=np.uint8)
    kind[:5], kind[-10:] = SPECIAL, PAD
    stats = input_stats(store(make_store, tmp_path / "a", x, rows={"kind": kind}))
    assert stats["special_share"] == pytest.approx(0.1) and stats["pad_share"] == pytest.approx(0.2)
    samples = input_stats(store(make_store, tmp_path / "b", x, attrs={"rows": "samples"}))
    assert samples["special_share"] is None and samples["pad_share"] is None


def test_one_pass_gives_the_same_numbers_whatever_the_block_size(make_store, tmp_path):
    rng = np.random.default_rng(5)
    group = store(make_store, tmp_path, rng.laplace(size=(3000, 6)) + 100.0)
    whole, blocks = input_stats(group, block_rows=3000), input_stats(group, block_rows=97)
    assert whole.keys() == blocks.keys()
    for key, value in whole.items():
        assert blocks[key] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-12)), key
    assert whole["kurtosis_mean"] > 0.5  # Laplace tails: far from Gaussian


def test_a_store_against_its_gaussian_twin(make_store, tmp_path):
    """Real-like inputs (heavy tails, a repeated row, BOS rows) against samples with their mean and covariance:
    the twin loses the tails and the repeats, keeps the participation ratio."""
    rng = np.random.default_rng(6)
    x = rng.standard_t(df=4, size=(ROWS, 8)) @ rng.standard_normal((8, 8))
    x[::20] = x[0]  # a BOS-like row at every 20th position
    kind = np.full(ROWS, TOKEN, dtype=np.uint8)
    kind[::20] = SPECIAL
    real = store(make_store, tmp_path / "real", x, rows={"kind": kind})
    mean, cov = x.mean(axis=0), np.cov(x, rowvar=False, bias=True)
    twin_x = rng.multivariate_normal(mean, cov, size=ROWS)
    twin = store(make_store, tmp_path / "twin", twin_x, attrs={"rows": "samples"})
    table = compare_with_twin(real, twin, projections=16, seed=0)
    assert [row["data"] for row in table] == ["activations", "gaussian"]
    real_stats, twin_stats = table
    assert real_stats["kurtosis_median"] > 1 and abs(twin_stats["kurtosis_median"]) < KURTOSIS_TOLERANCE
    assert real_stats["participation_ratio"] == pytest.approx(twin_stats["participation_ratio"], rel=0.05)
    assert real_stats["largest_group_row_share"] == pytest.approx(0.05) and twin_stats["largest_group_rows"] == 1
    assert real_stats["special_share"] == pytest.approx(0.05) and twin_stats["special_share"] is None
