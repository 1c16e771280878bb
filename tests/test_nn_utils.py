"""Part 2: numerical utilities (public tests). ``softmax`` is compared with ``torch.softmax``."""

from __future__ import annotations

import pytest
import torch

import adapters
from tests.graded import check_close, check_equal

# torch.testing.assert_close's own tolerances for float32, kept where these tests relied on them
FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_softmax_matches_snapshot(numpy_snapshot):
    numpy_snapshot.assert_match(adapters.run_softmax(randn(3, 4, 10, seed=0, scale=2.0), dim=-1), "softmax")


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_softmax_matches_torch_softmax(dim):
    x = randn(3, 4, 5, seed=1, scale=3.0)
    out = adapters.run_softmax(x, dim=dim)
    check_equal((tuple(out.shape), out.dtype), (tuple(x.shape), x.dtype))
    check_close(out, torch.softmax(x, dim=dim), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_slices_sum_to_one(dim):
    out = adapters.run_softmax(randn(6, 7, seed=2, scale=5.0), dim=dim)
    check_equal(int((out < 0).sum()), 0, message="softmax gave negative probabilities")
    check_close(out.sum(dim=dim), torch.ones(7 if dim == 0 else 6), **FLOAT32)


def test_softmax_is_stable_for_large_inputs():
    x = torch.tensor(
        [
            [1000.0, 1000.0, -1000.0],
            [-1000.0, -1000.0, -1000.0],
            [1000.0, 0.0, -1000.0],
            [3e38, 3e38, 0.0],
            [-1000.0, -999.0, -1001.0],
        ]
    )
    out = adapters.run_softmax(x, dim=-1)
    check_equal(bool(torch.isfinite(out).all()), True, message="large inputs must not give inf or NaN")
    check_close(out, torch.softmax(x, dim=-1), **FLOAT32)
    check_close(out[0], torch.tensor([0.5, 0.5, 0.0]), **FLOAT32)
    check_close(out[1], torch.full((3,), 1 / 3), **FLOAT32)


def test_softmax_is_invariant_to_adding_a_constant():
    x = randn(4, 9, seed=3)
    check_close(adapters.run_softmax(x + 500.0, dim=-1), adapters.run_softmax(x, dim=-1), **FLOAT32)


def test_softmax_keeps_float64():
    x = randn(5, 8, seed=4).double()
    out = adapters.run_softmax(x, dim=-1)
    check_equal(out.dtype, torch.float64)
    check_close(out, torch.softmax(x, dim=-1), atol=1e-12, rtol=1e-12)
