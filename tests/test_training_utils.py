"""Part 3: training utilities (public tests).

``log_softmax``, ``cross_entropy``, ``perplexity``, ``token_accuracy`` and ``gradient_clipping``
are compared with ``torch.nn.functional`` and ``torch.nn.utils.clip_grad_norm_``; ``AdamW`` with
``torch.optim.AdamW``; the cosine schedule with hand-computed values; ``get_batch`` with the
properties its docstring promises (shapes, shift by one, every start in range, uniform starts);
checkpoints by a save/load round trip that must continue training identically.

Graded values: where two correct implementations give different numbers (the windows
``get_batch`` draws with a seed, the initial weights of a model), the tests record what every
correct implementation shares instead: statistics of the draws (checked against the test's own
bounds), differences that must be 0 (a window and the data it came from, a model and the model
restored from its checkpoint), the batch of a dataset that holds one window only, and the logits
of a restored model whose weights the test pinned by parameter name.
"""

from __future__ import annotations

import copy
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import adapters
from tests.common import (
    REPO_ROOT,
    flat_parameters,
    lm_training_step,
    max_parameter_difference,
    pin_weights,
    state_differences,
    window_mismatches,
)
from tests.graded import check_close, check_equal

# --------------------------------------------------------------------------- log_softmax, cross_entropy
#
# np.testing.assert_allclose, which these tests used, compares values whatever their dtype, with
# rtol=1e-7 unless told otherwise: arrays are compared as float64 with that rtol here.


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_log_softmax_matches_torch(dim):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5) * 3
    check_close(adapters.run_log_softmax(x, dim).double(), F.log_softmax(x, dim).double(), atol=1e-5, rtol=1e-7)


def test_log_softmax_large_inputs_stay_finite():
    x = torch.tensor([[1000.0, 999.0, 0.0, -1000.0], [-1000.0, -1001.0, -2000.0, -999.0]])
    result = adapters.run_log_softmax(x, -1)
    check_equal(bool(torch.isfinite(result).all()), True, message="large inputs must not give inf or NaN")
    check_close(result.double(), F.log_softmax(x, -1).double(), atol=1e-4, rtol=1e-7)


def test_cross_entropy_matches_torch_2d():
    torch.manual_seed(1)
    logits = torch.randn(8, 11)
    targets = torch.randint(0, 11, (8,))
    expected = F.cross_entropy(logits, targets)
    actual = adapters.run_cross_entropy(logits, targets)
    check_equal(tuple(actual.shape), ())
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("leading", [(3, 5), (2, 3, 4)])
def test_cross_entropy_matches_torch_leading_dims(leading):
    torch.manual_seed(2)
    vocab = 13
    logits = torch.randn(*leading, vocab) * 2
    targets = torch.randint(0, vocab, leading)
    expected = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    actual = adapters.run_cross_entropy(logits, targets)
    check_equal(actual.numel(), 1)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)


def test_cross_entropy_large_logits_stable():
    torch.manual_seed(3)
    logits = torch.randn(6, 9) * 1000
    targets = torch.randint(0, 9, (6,))
    actual = adapters.run_cross_entropy(logits, targets)
    check_equal(bool(torch.isfinite(actual)), True, message="large logits must not give inf or NaN")
    check_close(actual.item(), F.cross_entropy(logits, targets).item(), rtol=1e-5, atol=0)


def test_cross_entropy_ignore_index_matches_torch():
    torch.manual_seed(4)
    logits = torch.randn(4, 7, 10)
    targets = torch.randint(0, 10, (4, 7))
    targets[0, :3] = -100
    targets[2, 5:] = -100
    expected = F.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1), ignore_index=-100)
    actual = adapters.run_cross_entropy(logits, targets, ignore_index=-100)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)
    # the ignored positions must really be left out of the mean, not counted as 0: the loss with
    # them counted (as token 0) is another number, and it is torch's too
    clamped = targets.clamp_min(0)
    expected_clamped = F.cross_entropy(logits.reshape(-1, 10), clamped.reshape(-1))
    assert not math.isclose(expected.item(), expected_clamped.item())  # the test tells the two apart
    check_close(adapters.run_cross_entropy(logits, clamped).item(), expected_clamped.item(), rtol=1e-5, atol=0)


def test_cross_entropy_ignore_index_that_is_a_vocabulary_id():
    torch.manual_seed(5)
    logits = torch.randn(20, 6)
    targets = torch.randint(0, 6, (20,))
    targets[::3] = 0
    expected = F.cross_entropy(logits, targets, ignore_index=0)
    actual = adapters.run_cross_entropy(logits, targets, ignore_index=0)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)


def test_cross_entropy_gradient_matches_torch():
    torch.manual_seed(6)
    logits = torch.randn(3, 4, 8)
    targets = torch.randint(0, 8, (3, 4))
    targets[1, 2] = -100
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    adapters.run_cross_entropy(ours, targets, ignore_index=-100).backward()
    F.cross_entropy(theirs.reshape(-1, 8), targets.reshape(-1), ignore_index=-100).backward()
    check_close(ours.grad, theirs.grad, atol=1e-6, rtol=1e-7)


def test_perplexity_is_exp_of_cross_entropy():
    torch.manual_seed(7)
    logits = torch.randn(2, 5, 12)
    targets = torch.randint(0, 12, (2, 5))
    targets[1, 4] = -1
    expected = torch.exp(F.cross_entropy(logits.reshape(-1, 12), targets.reshape(-1), ignore_index=-1))
    actual = adapters.run_perplexity(logits, targets, ignore_index=-1)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)
    # uniform logits: perplexity equals the vocabulary size
    uniform = adapters.run_perplexity(torch.zeros(3, 12), torch.tensor([0, 5, 11]))
    check_close(uniform.item(), 12.0, rtol=1e-5, atol=0)


def test_token_accuracy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([1, 0, 1, 2])
    check_close(adapters.run_token_accuracy(logits, targets).item(), 0.75, rtol=1e-7, atol=0)
    padded = torch.tensor([1, -100, 1, -100])
    check_close(adapters.run_token_accuracy(logits, padded, ignore_index=-100).item(), 0.5, rtol=1e-7, atol=0)


# --------------------------------------------------------------------------- gradient clipping


def _parameters_with_gradients(seed: int, shapes, scale: float) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    parameters = []
    for shape in shapes:
        parameter = torch.nn.Parameter(torch.randn(shape, generator=generator))
        parameter.grad = torch.randn(shape, generator=generator) * scale
        parameters.append(parameter)
    return parameters


def test_gradient_clipping_matches_torch():
    ours = _parameters_with_gradients(0, [(5, 3), (3,), (2, 2, 4)], scale=2.0)
    theirs = copy.deepcopy(ours)
    for a, b in zip(ours, theirs, strict=True):
        b.grad = a.grad.clone()
    max_norm = 1.0
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert expected_norm > max_norm  # the test must actually clip
    norm = adapters.run_gradient_clipping(ours, max_norm)
    check_close(float(norm), expected_norm.item(), rtol=1e-5, atol=0)
    check_close([a.grad for a in ours], [b.grad for b in theirs], atol=1e-6, rtol=1e-7)
    clipped = torch.sqrt(sum((p.grad**2).sum() for p in ours))
    check_close(clipped.item(), max_norm, rtol=1e-4, atol=0)


def test_gradient_clipping_skips_parameters_without_gradient():
    ours = _parameters_with_gradients(1, [(4, 4), (6,), (2, 3)], scale=1.5)
    ours.insert(1, torch.nn.Parameter(torch.randn(7)))  # no .grad at all
    theirs = copy.deepcopy(ours)
    for a, b in zip(ours, theirs, strict=True):
        b.grad = None if a.grad is None else a.grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, 0.5)
    norm = adapters.run_gradient_clipping(ours, 0.5)
    check_close(float(norm), expected_norm.item(), rtol=1e-5, atol=0)
    check_equal([a.grad is None for a in ours], [False, True, False, False], message="which parameters have no .grad")
    check_close(
        [a.grad for a in ours if a.grad is not None],
        [b.grad for b in theirs if b.grad is not None],
        atol=1e-6,
        rtol=1e-7,
    )


def test_gradient_clipping_below_threshold_leaves_gradients_unchanged():
    parameters = _parameters_with_gradients(2, [(3, 3), (5,)], scale=0.1)
    before = [p.grad.clone() for p in parameters]
    true_norm = torch.sqrt(sum((g**2).sum() for g in before)).item()
    norm = adapters.run_gradient_clipping(parameters, max_l2_norm=10.0)
    check_close(float(norm), true_norm, rtol=1e-5, atol=0)
    for p, g in zip(parameters, before, strict=True):
        check_equal(p.grad, g)


# --------------------------------------------------------------------------- AdamW
#
# The problem is least squares on a linear model with fresh random data at every step: the
# gradients stay of order 1 and the dynamics forget small differences, so an update rule equal to
# torch's stays within float32 rounding of it for thousands of steps, while a wrong one drifts.
# Parameters are compared after every step, so early-step errors (bias correction) are caught too.


class _TwoHeads(torch.nn.Module):
    """``a(x) + b(x)``: two linear maps, so that there are four parameters to put in groups."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.a = torch.nn.Linear(d_in, d_out)
        self.b = torch.nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.a(x) + self.b(x)


def _model(seed: int, d_in: int = 8, d_out: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _TwoHeads(d_in, d_out)


def _lockstep(ours, our_optimizer, theirs, their_optimizer, steps: int, seed: int, lr_at=None):
    """Train both models on the same batches; the parameters of each after every step (one row a step)."""
    generator = torch.Generator().manual_seed(seed)
    our_path, their_path = [], []
    for step in range(steps):
        inputs = torch.randn(16, ours.a.in_features, generator=generator)
        outputs = torch.randn(16, ours.a.out_features, generator=generator) + 2.0
        for model, optimizer in ((ours, our_optimizer), (theirs, their_optimizer)):
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
            optimizer.zero_grad()
            ((model(inputs) - outputs) ** 2).mean().backward()
            optimizer.step()
        our_path.append(flat_parameters(ours.parameters()))
        their_path.append(flat_parameters(theirs.parameters()))
    return torch.stack(our_path), torch.stack(their_path)


def test_adamw_matches_torch_1000_steps():
    ours = _model(0)
    theirs, start = copy.deepcopy(ours), copy.deepcopy(ours)
    hyper = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.parameters(), **hyper), 1000, seed=0,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)
    # the parameters really moved (ours too: they follow torch's)
    assert max_parameter_difference(theirs.parameters(), start.parameters()) > 0.5


def test_adamw_default_hyperparameters_match_torch():
    ours = _model(1)
    theirs = copy.deepcopy(ours)
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.parameters(), lr=5e-3),
        theirs, torch.optim.AdamW(theirs.parameters(), lr=5e-3), 200, seed=1,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)


def test_adamw_param_groups():
    ours = _model(2)
    theirs = copy.deepcopy(ours)

    def groups(model):
        return [
            {"params": [model.a.weight, model.b.weight], "lr": 5e-3, "weight_decay": 0.2},
            {"params": [model.a.bias], "lr": 2e-2, "weight_decay": 0.0},
            {"params": [model.b.bias], "betas": (0.8, 0.99)},  # the defaults for the rest
        ]

    hyper = {"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.05}
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(groups(ours), **hyper),
        theirs, torch.optim.AdamW(groups(theirs), **hyper), 300, seed=2,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)


def test_adamw_learning_rate_changed_by_schedule():
    ours = _model(3)
    theirs = copy.deepcopy(ours)

    def lr_at(step):  # warmup then cosine, written out here so this test depends only on AdamW
        if step < 20:
            return 2e-2 * step / 20
        return 1e-3 + (2e-2 - 1e-3) * (1 + math.cos(math.pi * min(1.0, (step - 20) / 180))) / 2

    hyper = {"lr": 0.5, "weight_decay": 0.05}  # the initial lr must be overwritten by the schedule
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.parameters(), **hyper), 250, seed=3, lr_at=lr_at,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)


def test_adamw_state_dict_round_trip_continues_identically():
    AdamW = adapters.get_adamw_cls()
    model = _model(4)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    reference = copy.deepcopy(model)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
    check_close(*_lockstep(model, optimizer, reference, reference_optimizer, 30, seed=4), atol=1e-6, rtol=0)

    def resume():
        copied = copy.deepcopy(model)
        copied_optimizer = AdamW(copied.parameters(), lr=1e-2, weight_decay=0.1)
        copied_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        return copied, copied_optimizer

    fresh = copy.deepcopy(model)
    fresh_optimizer = AdamW(fresh.parameters(), lr=1e-2, weight_decay=0.1)
    fresh_against_torch = copy.deepcopy(model)
    torch_fresh_optimizer = torch.optim.AdamW(fresh_against_torch.parameters(), lr=1e-2, weight_decay=0.1)
    resumed, resumed_optimizer = resume()
    resumed_against_torch, its_optimizer = resume()
    # the resumed optimizer continues exactly like the original one (recorded: the difference, 0) ...
    original_path, resumed_path = _lockstep(model, optimizer, resumed, resumed_optimizer, 30, seed=5)
    check_equal(resumed_path - original_path, torch.zeros_like(original_path))
    # ... and like torch's: it kept its step counts and moments
    check_close(
        *_lockstep(resumed_against_torch, its_optimizer, reference, reference_optimizer, 30, seed=5), atol=1e-6, rtol=0
    )
    # while a fresh optimizer (state lost) does not: it takes the step a fresh torch.optim.AdamW takes
    fresh_path, torch_fresh_path = _lockstep(
        fresh, fresh_optimizer, fresh_against_torch, torch_fresh_optimizer, 1, seed=6
    )
    resumed_path, torch_resumed_path = _lockstep(
        resumed_against_torch, its_optimizer, reference, reference_optimizer, 1, seed=6
    )
    assert (torch_fresh_path - torch_resumed_path).abs().max() > 1e-5  # the test tells the two apart
    check_close(fresh_path, torch_fresh_path, atol=1e-6, rtol=0)
    check_close(resumed_path, torch_resumed_path, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- cosine schedule


def test_cosine_schedule_known_values():
    expected = [
        0.0, 0.14285714285714285, 0.2857142857142857, 0.42857142857142855, 0.5714285714285714,
        0.7142857142857143, 0.8571428571428571, 1.0, 0.9887175604818206, 0.9554359905560885,
        0.9018241671106134, 0.8305704108364301, 0.7452476826029011, 0.6501344202803414, 0.55,
        0.44986557971965857, 0.3547523173970989, 0.26942958916356996, 0.19817583288938662,
        0.14456400944391146, 0.11128243951817937, 0.1, 0.1, 0.1, 0.1,
    ]  # CS336's values for max 1, min 0.1, warmup 7, cycle 21  # fmt: skip
    actual = [float(adapters.run_get_lr_cosine_schedule(it, 1.0, 0.1, 7, 21)) for it in range(25)]
    check_close(actual, expected, rtol=1e-9, atol=1e-12)


def test_cosine_schedule_without_warmup():
    max_lr, min_lr, cycle = 3e-4, 3e-5, 10
    actual, expected = [], []
    for it in range(15):
        expected.append(min_lr if it > cycle else min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * it / cycle)) / 2)
        actual.append(float(adapters.run_get_lr_cosine_schedule(it, max_lr, min_lr, 0, cycle)))
    check_close(actual, expected, rtol=1e-9, atol=0)
    check_close(float(adapters.run_get_lr_cosine_schedule(0, max_lr, min_lr, 0, cycle)), max_lr, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- get_batch
#
# The docstring fixes which starts may be drawn and that they are uniform and independent, not
# how the generator is used to draw them: two correct implementations give different windows for
# the same seed. So the tests record what every correct implementation shares (shapes, dtypes,
# how far each row is from being a window of the data, 0) and statistics of the starts checked
# against bounds the tests compute themselves (against="expected"). Each test also records the
# batch drawn from the last ``context_length + 1`` tokens of its data, where only one window fits:
# every correct implementation returns that window, whatever the generator draws.


def _check_only_window(dataset, batch_size: int, context_length: int, rng) -> None:
    """Record get_batch on the last ``context_length + 1`` tokens of ``dataset`` (one window)."""
    inputs, targets = adapters.run_get_batch(dataset[-context_length - 1 :], batch_size, context_length, "cpu", rng=rng)
    window = torch.as_tensor(np.asarray(dataset[-context_length - 1 :], dtype=np.int64))
    check_equal(inputs, window[:-1].repeat(batch_size, 1), message="the only window of the data was not drawn")
    check_equal(targets, window[1:].repeat(batch_size, 1), message="the only window's targets were not drawn")


def test_get_batch_shapes_dtype_and_shift():
    dataset = np.arange(100)
    inputs, targets = adapters.run_get_batch(dataset, 8, 12, "cpu", rng=np.random.default_rng(0))
    check_equal((tuple(inputs.shape), tuple(targets.shape)), ((8, 12), (8, 12)))
    check_equal((inputs.dtype, targets.dtype), (torch.int64, torch.int64))
    check_equal((inputs.device.type, targets.device.type), ("cpu", "cpu"))
    check_equal(targets - inputs, torch.ones(8, 12, dtype=torch.int64))  # consecutive windows of arange
    check_equal(inputs[:, 1:] - targets[:, :-1], torch.zeros(8, 11, dtype=torch.int64))


def test_get_batch_windows_come_from_the_data():
    rng = np.random.default_rng(1)
    dataset = rng.integers(0, 5000, size=300).astype(np.int32)
    inputs, targets = adapters.run_get_batch(dataset, 16, 20, "cpu", rng=np.random.default_rng(2))
    check_equal(
        window_mismatches(dataset, 20, inputs, targets), [0] * 16,
        message="a row is not a window of the dataset (inputs) followed by the next tokens (targets)",
    )  # fmt: skip
    _check_only_window(dataset, 16, 20, np.random.default_rng(2))


def test_get_batch_starts_in_range_and_uniform():
    length, context = 1000, 16
    dataset = np.arange(length)
    rng = np.random.default_rng(3)
    starts = np.concatenate(
        [adapters.run_get_batch(dataset, 500, context, "cpu", rng=rng)[0][:, 0].numpy() for _ in range(40)]
    )
    count, high = len(starts), length - context  # valid starts: 0 .. high - 1
    check_equal(int(((starts < 0) | (starts > high - 1)).sum()), 0, message="starts out of range were drawn")
    expected_mean = (high - 1) / 2
    standard_error = math.sqrt((high**2 - 1) / 12 / count)
    check_close(float(starts.mean()), expected_mean, atol=4 * standard_error, rtol=0, against="expected")
    # neither end of the range is favoured or starved
    check_close(float((starts < high // 4).mean()), 0.25, atol=0.02, rtol=0, against="expected")
    check_close(float((starts >= high - high // 4).mean()), 0.25, atol=0.02, rtol=0, against="expected")
    _check_only_window(dataset, 5, context, rng)  # the last valid start, high - 1


def test_get_batch_every_start_drawn_on_tiny_dataset():
    dataset = np.arange(10)
    context = 4  # valid starts: 0 .. 5
    rng = np.random.default_rng(4)
    starts = np.concatenate(
        [adapters.run_get_batch(dataset, 50, context, "cpu", rng=rng)[0][:, 0].numpy() for _ in range(20)]
    )
    counts = np.bincount(starts, minlength=6)
    check_equal(len(counts), 6, message=f"a start beyond 5 was drawn: {sorted(set(starts.tolist()))}")
    check_equal(int((counts == 0).sum()), 0, message=f"some start was never drawn: {counts}", against="expected")
    check_close(counts.astype(np.float64), np.full(6, 1000 / 6), atol=60, rtol=0, against="expected")
    _check_only_window(dataset, 50, context, rng)  # the last valid start, 5


def test_get_batch_memmap(tmp_path):
    path = tmp_path / "tokens.bin"
    data = np.memmap(path, dtype=np.uint16, mode="w+", shape=(5000,))
    data[:] = (np.arange(5000) * 7) % 60000
    data.flush()
    del data
    dataset = np.memmap(path, dtype=np.uint16, mode="r", shape=(5000,))
    inputs, targets = adapters.run_get_batch(dataset, 4, 32, "cpu", rng=np.random.default_rng(5))
    check_equal((inputs.dtype, tuple(inputs.shape)), (torch.int64, (4, 32)))
    check_equal(window_mismatches(dataset, 32, inputs, targets), [0] * 4, message="a row is not a window of the data")


def test_get_batch_rng_reproducible():
    dataset = np.arange(10_000)
    first = adapters.run_get_batch(dataset, 6, 64, "cpu", rng=np.random.default_rng(123))
    second = adapters.run_get_batch(dataset, 6, 64, "cpu", rng=np.random.default_rng(123))
    other = adapters.run_get_batch(dataset, 6, 64, "cpu", rng=np.random.default_rng(124))
    # the windows themselves depend on how the generator is used: recorded, their differences (0)
    check_equal(second[0] - first[0], torch.zeros(6, 64, dtype=torch.int64))
    check_equal(second[1] - first[1], torch.zeros(6, 64, dtype=torch.int64))
    check_equal(torch.equal(first[0], other[0]), False, message="another seed must give other windows")
    _check_only_window(dataset, 6, 64, np.random.default_rng(123))


def test_get_batch_too_short_dataset_raises():
    with pytest.raises(ValueError):
        adapters.run_get_batch(np.arange(8), 2, 8, "cpu", rng=np.random.default_rng(0))
    _check_only_window(np.arange(9) * 5 + 3, 2, 8, np.random.default_rng(0))  # one token more is enough


# --------------------------------------------------------------------------- checkpointing
#
# The weights of a model depend on how its initialisation draws random numbers, which differs
# between correct implementations, so the tests redraw them by parameter name (``pin_weights``):
# every correct implementation then restores the same model. The tests record how the restored
# model and its training differ from the saved one (nothing: {} and 0), the iteration, and the
# logits of the restored model.


def _small_lm():
    return adapters.create_transformer_lm(
        vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64, rope_theta=10000.0
    )


def _trained_lm(seed: int, steps: int):
    torch.manual_seed(seed)
    model = pin_weights(_small_lm(), seed)
    optimizer = adapters.get_adamw_cls()(model.parameters(), lr=3e-3, weight_decay=0.1)
    tokens = torch.randint(0, 50, (4, 17), generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        lm_training_step(model, optimizer, tokens)
    return model, optimizer, tokens


def _assert_restored(model, optimizer, tokens, restored, restored_optimizer):
    check_equal(state_differences(model, restored), {}, message="the restored weights differ")
    check_close(restored(tokens[:, :-1]), model(tokens[:, :-1]), atol=1e-4, rtol=1e-4)  # the restored logits
    check_equal(int((model(tokens[:, :-1]) != restored(tokens[:, :-1])).sum()), 0, message="the outputs differ")
    # the optimizer state came back too: the next steps are identical (loss differences 0)
    losses = [
        lm_training_step(model, optimizer, tokens) - lm_training_step(restored, restored_optimizer, tokens)
        for _ in range(2)
    ]
    check_equal(losses, [0.0, 0.0], message="the losses of the next steps differ")
    check_equal(
        state_differences(dict(model.named_parameters()), dict(restored.named_parameters())), {},
        message="the parameters differ after the next steps",
    )  # fmt: skip


def _fresh_copy(seed: int):
    torch.manual_seed(seed)
    model = pin_weights(_small_lm(), seed)
    return model, adapters.get_adamw_cls()(model.parameters(), lr=3e-3, weight_decay=0.1)


# A checkpoint is a file: a fresh process, which shares no memory with the one that saved it,
# restores it and prints the restored model's logits and the next step's loss.
_FRESH_PROCESS_LOAD = """
import json, sys
sys.path.insert(0, {root!r})
import torch
import adapters
from tests.common import lm_training_step
from tests.test_training_utils import _fresh_copy

model, optimizer = _fresh_copy(99)
iteration = adapters.run_load_checkpoint(sys.argv[1], model, optimizer)
tokens = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    logits = model(tokens[:, :-1])
loss = lm_training_step(model, optimizer, tokens)
print(json.dumps({{"iteration": iteration, "logits": logits.tolist(), "loss": loss}}))
"""


def test_checkpoint_loads_in_a_fresh_process(tmp_path):
    """What load_checkpoint restores comes from the file, not from the process that saved it."""
    model, optimizer, tokens = _trained_lm(0, 5)
    path = tmp_path / "checkpoint.pt"
    adapters.run_save_checkpoint(model, optimizer, 5, path)
    script = tmp_path / "load.py"
    script.write_text(_FRESH_PROCESS_LOAD.format(root=str(REPO_ROOT)), encoding="utf-8")
    loaded = subprocess.run(
        [sys.executable, str(script), str(path), json.dumps(tokens.tolist())],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    check_equal(loaded.returncode, 0, message=loaded.stderr[-2000:])
    report = json.loads(loaded.stdout.strip().splitlines()[-1]) if loaded.returncode == 0 else {}
    check_equal(report.get("iteration"), 5)
    with torch.no_grad():
        expected_logits = model(tokens[:, :-1])
    check_close(torch.tensor(report.get("logits", [])), expected_logits, atol=1e-4, rtol=1e-4)
    check_close(report.get("loss"), lm_training_step(model, optimizer, tokens), atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_path(tmp_path):
    model, optimizer, tokens = _trained_lm(0, 5)
    path = tmp_path / "checkpoint.pt"
    adapters.run_save_checkpoint(model, optimizer, 5, path)
    check_equal(path.is_file(), True, message="no checkpoint file was written")
    restored, restored_optimizer = _fresh_copy(99)
    check_equal(
        torch.equal(model(tokens[:, :-1]), restored(tokens[:, :-1])), False, message="the test needs another model"
    )
    check_equal(adapters.run_load_checkpoint(path, restored, restored_optimizer), 5)
    _assert_restored(model, optimizer, tokens, restored, restored_optimizer)


def test_checkpoint_round_trip_string_path(tmp_path):
    model, optimizer, tokens = _trained_lm(1, 3)
    path = str(tmp_path / "checkpoint_str.pt")
    adapters.run_save_checkpoint(model, optimizer, 1234, path)
    restored, restored_optimizer = _fresh_copy(98)
    check_equal(adapters.run_load_checkpoint(path, restored, restored_optimizer), 1234)
    _assert_restored(model, optimizer, tokens, restored, restored_optimizer)


def test_checkpoint_round_trip_bytesio():
    model, optimizer, tokens = _trained_lm(2, 4)
    buffer = io.BytesIO()
    adapters.run_save_checkpoint(model, optimizer, 42, buffer)
    check_equal(buffer.getbuffer().nbytes > 0, True, message="nothing was written to the buffer")
    buffer.seek(0)
    restored, restored_optimizer = _fresh_copy(97)
    check_equal(adapters.run_load_checkpoint(buffer, restored, restored_optimizer), 42)
    _assert_restored(model, optimizer, tokens, restored, restored_optimizer)
