"""Hidden tests for the training utilities (Part 3).

Same references as the public tests (``torch.nn.functional``, ``clip_grad_norm_``,
``torch.optim.AdamW``, formulas written out here), on inputs the public tests do not use: other
shapes and values, a single position, a vocabulary of one, padding everywhere, huge and infinite
negative logits, bfloat16 and float64 inputs, parameters that get no gradient on some steps,
hyperparameters changed mid-run, the smallest datasets ``get_batch`` accepts, ``.npy`` memmaps,
file objects for checkpoints and resuming a run exactly.

Graded values: where two correct implementations give different numbers (the windows
``get_batch`` draws with a seed, the initial weights of a model), the tests record what every
correct implementation shares instead: statistics of the draws (checked against the test's own
bounds), differences that must be 0 (a window and the data it came from, a run resumed from a
checkpoint and the run without interruption), the batch of a dataset that holds one window only,
and the logits of a restored model whose weights the test pinned by parameter name.
"""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import adapters
from tests.common import (
    flat_parameters,
    lm_training_step,
    max_parameter_difference,
    pin_weights,
    state_differences,
    window_mismatches,
)
from tests.graded import check_close, check_equal

# torch.testing.assert_close's own tolerances for float32, kept where these tests relied on them
FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}

# --------------------------------------------------------------------------- log_softmax
#
# np.testing.assert_allclose, which these tests used, compares values whatever their dtype, with
# rtol=1e-7 unless told otherwise: arrays are compared as float64 with that rtol here.


def test_log_softmax_hidden_other_dims_and_dtypes():
    generator = torch.Generator().manual_seed(10)
    x = torch.randn(3, 2, 9, 4, generator=generator, dtype=torch.float64) * 5
    for dim in (-2, 2, 0):
        check_close(adapters.run_log_softmax(x, dim).double(), F.log_softmax(x, dim), atol=1e-10, rtol=1e-7)
    vector = torch.randn(17, generator=generator)
    check_close(adapters.run_log_softmax(vector, 0).double(), F.log_softmax(vector, 0).double(), atol=1e-5, rtol=1e-7)


def test_log_softmax_hidden_extreme_values():
    x = torch.tensor([[-1e4, -1e4 - 3.0, -3e4], [5e3, -5e3, 0.0], [-1e30, -1e30, -1e30]])
    result = adapters.run_log_softmax(x, -1)
    check_equal(bool(torch.isfinite(result).all()), True, message="extreme inputs must not give inf or NaN")
    check_close(result.double(), F.log_softmax(x, -1).double(), atol=1e-4, rtol=1e-7)
    check_close(torch.logsumexp(result, -1).double(), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=1e-7)


def test_log_softmax_hidden_masked_entries():
    x = torch.tensor([[0.5, float("-inf"), 2.0, float("-inf")], [float("-inf"), 1.0, 1.0, 1.0]])
    result = adapters.run_log_softmax(x, -1)
    expected = F.log_softmax(x, -1)
    check_equal(torch.isneginf(result), torch.isneginf(expected))
    finite = torch.isfinite(expected)
    check_equal(int(torch.isnan(result).sum()), 0, message="masked entries must not give NaN")
    check_close(result[finite].double(), expected[finite].double(), atol=1e-6, rtol=1e-7)


# --------------------------------------------------------------------------- cross_entropy


def _reference_cross_entropy(logits, targets, ignore_index=None):
    vocab = logits.shape[-1]
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    return F.cross_entropy(logits.reshape(-1, vocab).double(), targets.reshape(-1), **kwargs)


def test_cross_entropy_hidden_single_position():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, 0.0]])
    for target in range(5):
        targets = torch.tensor([target])
        expected = -F.log_softmax(logits.double(), -1)[0, target]
        check_close(adapters.run_cross_entropy(logits, targets).item(), expected.item(), rtol=1e-6, atol=0)


def test_cross_entropy_hidden_vocabulary_of_one():
    logits = torch.randn(4, 3, 1, generator=torch.Generator().manual_seed(11)) * 10
    loss = adapters.run_cross_entropy(logits, torch.zeros(4, 3, dtype=torch.long))
    check_close(loss.item(), 0.0, atol=1e-6, rtol=0)
    # the same logits beside a second word of logit 0: no longer certain
    pair = torch.cat([logits, torch.zeros_like(logits)], -1)
    loss = adapters.run_cross_entropy(pair, torch.zeros(4, 3, dtype=torch.long))
    check_close(
        loss.item(), _reference_cross_entropy(pair, torch.zeros(4, 3, dtype=torch.long)).item(), rtol=1e-5, atol=0
    )


def test_cross_entropy_hidden_four_leading_dims_non_contiguous():
    generator = torch.Generator().manual_seed(12)
    logits = torch.randn(3, 5, 2, 4, 31, generator=generator).transpose(0, 1)  # (5, 3, 2, 4, 31), not contiguous
    targets = torch.randint(0, 31, (5, 3, 2, 4), generator=generator)
    assert not logits.is_contiguous()
    expected = _reference_cross_entropy(logits, targets)
    check_close(adapters.run_cross_entropy(logits, targets).item(), expected.item(), rtol=1e-5, atol=0)


def test_cross_entropy_hidden_float64_precision():
    generator = torch.Generator().manual_seed(13)
    logits = torch.randn(6, 7, 50, generator=generator, dtype=torch.float64) * 4
    targets = torch.randint(0, 50, (6, 7), generator=generator)
    expected = _reference_cross_entropy(logits, targets)
    check_close(adapters.run_cross_entropy(logits, targets).item(), expected.item(), rtol=1e-6, atol=0)


def test_cross_entropy_hidden_shift_invariance():
    generator = torch.Generator().manual_seed(14)
    logits = torch.randn(10, 12, generator=generator)
    targets = torch.randint(0, 12, (10,), generator=generator)
    shifts = torch.linspace(-100, 100, 10).unsqueeze(-1)
    check_close(
        adapters.run_cross_entropy(logits + shifts, targets).item(),
        adapters.run_cross_entropy(logits, targets).item(),
        rtol=1e-4,
        atol=0,
    )


def test_cross_entropy_hidden_huge_logits():
    generator = torch.Generator().manual_seed(15)
    logits = torch.randn(5, 3, 8, generator=generator) * 1e4
    targets = torch.randint(0, 8, (5, 3), generator=generator)
    loss = adapters.run_cross_entropy(logits, targets)
    check_equal(bool(torch.isfinite(loss)), True, message="huge logits must not give inf or NaN")
    check_close(loss.item(), _reference_cross_entropy(logits, targets).item(), rtol=1e-5, atol=0)


def test_cross_entropy_hidden_huge_negative_logits():
    # every logit hugely negative: exp underflows everywhere, the loss must still be right (to the
    # float32 resolution of logits this large: logsumexp(x) - x[target] is a valid way to compute it)
    logits = torch.tensor([[-3e4, -3e4, -3e4, -3e4], [-5e4, -5e4 - 2.0, -5e4 - 1.0, -6e4], [-1e4, 0.0, -2e4, -3.0]])
    targets = torch.tensor([2, 1, 0])
    loss = adapters.run_cross_entropy(logits, targets)
    check_equal(bool(torch.isfinite(loss)), True, message="huge negative logits must not give inf or NaN")
    rows = [math.log(4), 2.0 + math.log(1 + math.exp(-2.0) + math.exp(-1.0)), 1e4 + math.log(1 + math.exp(-3.0))]
    expected = sum(rows) / 3
    check_close(loss.item(), expected, rtol=1e-6, atol=5e-3)
    check_close(loss.item(), _reference_cross_entropy(logits, targets).item(), rtol=1e-6, atol=5e-3)
    # the loss of each row alone
    for row, value in enumerate(rows):
        single = adapters.run_cross_entropy(logits[row : row + 1], targets[row : row + 1])
        check_close(single.item(), value, atol=1e-2, rtol=1e-7)


def test_cross_entropy_hidden_ignore_index_all_positions_is_zero():
    logits = torch.randn(3, 4, 9, generator=torch.Generator().manual_seed(16))
    targets = torch.full((3, 4), -100)
    loss = adapters.run_cross_entropy(logits, targets, ignore_index=-100)
    check_equal(loss.numel(), 1)
    check_equal(bool(torch.isfinite(loss)), True, message="all positions ignored must not give inf or NaN")
    check_equal(loss.item(), 0.0)
    targets[2, 1] = 5  # one position left: its loss alone
    loss = adapters.run_cross_entropy(logits, targets, ignore_index=-100)
    check_close(loss.item(), -F.log_softmax(logits[2, 1].double(), -1)[5].item(), rtol=1e-5, atol=0)


def test_cross_entropy_hidden_ignore_index_all_but_one():
    logits = torch.randn(2, 6, 9, generator=torch.Generator().manual_seed(17))
    targets = torch.full((2, 6), 3)  # ignore_index is a real vocabulary id here
    targets[1, 4] = 7
    expected = -F.log_softmax(logits[1, 4].double(), -1)[7]
    actual = adapters.run_cross_entropy(logits, targets, ignore_index=3)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)


def test_cross_entropy_hidden_ignore_index_absent_and_negative():
    generator = torch.Generator().manual_seed(18)
    logits = torch.randn(4, 5, 11, generator=generator)
    targets = torch.randint(0, 11, (4, 5), generator=generator)
    check_close(
        adapters.run_cross_entropy(logits, targets, ignore_index=-1).item(),
        adapters.run_cross_entropy(logits, targets).item(),
        rtol=1e-6,
        atol=0,
    )
    targets[targets % 3 == 0] = -1
    expected = _reference_cross_entropy(logits, targets, ignore_index=-1)
    actual = adapters.run_cross_entropy(logits, targets, ignore_index=-1)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)


def test_cross_entropy_hidden_ignored_positions_get_no_gradient():
    generator = torch.Generator().manual_seed(19)
    logits = torch.randn(2, 5, 6, generator=generator)
    targets = torch.randint(0, 6, (2, 5), generator=generator)
    targets[0, 1] = targets[1, 3] = targets[1, 4] = 99
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().double().requires_grad_(True)
    adapters.run_cross_entropy(ours, targets, ignore_index=99).backward()
    F.cross_entropy(theirs.reshape(-1, 6), targets.reshape(-1), ignore_index=99).backward()
    check_close(ours.grad.double(), theirs.grad, atol=1e-6, rtol=1e-7)
    check_equal(torch.cat([ours.grad[0, 1], ours.grad[1, 3:].reshape(-1)]), torch.zeros(18))


def test_cross_entropy_hidden_bfloat16():
    generator = torch.Generator().manual_seed(20)
    logits = (torch.randn(4, 8, 64, generator=generator) * 3).to(torch.bfloat16)
    targets = torch.randint(0, 64, (4, 8), generator=generator)
    targets[0, :2] = -100
    loss = adapters.run_cross_entropy(logits, targets, ignore_index=-100)
    check_equal(bool(torch.isfinite(loss.float())), True, message="bfloat16 logits must not give inf or NaN")
    expected = _reference_cross_entropy(logits.float(), targets, ignore_index=-100)  # same values, exact arithmetic
    check_close(loss.float().item(), expected.item(), rtol=3e-2, atol=0)


# --------------------------------------------------------------------------- perplexity, token accuracy


def test_perplexity_hidden():
    generator = torch.Generator().manual_seed(21)
    logits = torch.randn(3, 4, 20, generator=generator)
    targets = torch.randint(0, 20, (3, 4), generator=generator)
    targets[2] = 5
    expected = torch.exp(_reference_cross_entropy(logits, targets, ignore_index=5))
    actual = adapters.run_perplexity(logits, targets, ignore_index=5)
    check_close(actual.item(), expected.item(), rtol=1e-5, atol=0)
    # a model sure of the right answer has perplexity 1
    confident = F.one_hot(targets, 20).float() * 50
    check_close(adapters.run_perplexity(confident, targets).item(), 1.0, atol=1e-5, rtol=1e-7)
    # everything ignored: the loss is 0, so the perplexity is 1
    everything_ignored = adapters.run_perplexity(logits, torch.full((3, 4), -100), ignore_index=-100)
    check_close(everything_ignored.item(), 1.0, rtol=1e-7, atol=0)


def test_token_accuracy_hidden():
    generator = torch.Generator().manual_seed(22)
    logits = torch.randn(5, 6, 7, generator=generator)
    targets = torch.randint(0, 7, (5, 6), generator=generator)
    targets[:, 0] = logits[:, 0].argmax(-1)  # some certainly right
    targets[0, 2:] = -100
    keep = targets != -100
    expected = ((logits.argmax(-1) == targets) & keep).sum().item() / keep.sum().item()
    actual = adapters.run_token_accuracy(logits, targets, ignore_index=-100)
    check_close(actual.item(), expected, rtol=1e-6, atol=0)
    check_equal(adapters.run_token_accuracy(logits, logits.argmax(-1)).item(), 1.0)
    check_equal(float(adapters.run_token_accuracy(logits, torch.full((5, 6), -100), ignore_index=-100)), 0.0)


# --------------------------------------------------------------------------- gradient clipping


def _with_gradients(shapes, scale, seed, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    parameters = []
    for shape in shapes:
        parameter = torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype))
        parameter.grad = torch.randn(shape, generator=generator, dtype=dtype) * scale
        parameters.append(parameter)
    return parameters


def _copy_with_gradients(parameters):
    copies = copy.deepcopy(parameters)
    for original, duplicate in zip(parameters, copies, strict=True):
        duplicate.grad = None if original.grad is None else original.grad.clone()
    return copies


def test_gradient_clipping_hidden_single_huge_gradient():
    ours = _with_gradients([(10, 10)], scale=1e3, seed=30)
    theirs = _copy_with_gradients(ours)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 2.5)
    norm = adapters.run_gradient_clipping(ours, 2.5)
    check_close(float(norm), expected.item(), rtol=1e-5, atol=0)
    check_close(ours[0].grad, theirs[0].grad, rtol=1e-5, atol=1e-7)
    check_close(ours[0].grad.norm().item(), 2.5, rtol=1e-5, atol=0)


def test_gradient_clipping_hidden_uses_the_epsilon():
    # a tiny norm makes the 1e-6 in max / (norm + 1e-6) visible
    ours = _with_gradients([(3,), (2, 2)], scale=1e-5, seed=31, dtype=torch.float64)
    before = [p.grad.clone() for p in ours]
    total = math.sqrt(sum((g**2).sum().item() for g in before))
    max_norm = total / 4
    norm = adapters.run_gradient_clipping(ours, max_norm)
    check_close(float(norm), total, rtol=1e-6, atol=0)
    scale = max_norm / (total + 1e-6)
    assert abs(scale - 0.25) > 3e-3  # the test distinguishes the epsilon
    check_close([p.grad for p in ours], [g * scale for g in before], rtol=1e-5, atol=0)


def test_gradient_clipping_hidden_generator_of_module_parameters():
    torch.manual_seed(32)
    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 4))
    frozen = torch.nn.Linear(3, 3)  # never used: its parameters have no gradient
    model.append(frozen)
    inputs = torch.randn(32, 6)
    (model[:3](inputs) ** 2).sum().backward()
    reference = copy.deepcopy(model)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        b.grad = None if a.grad is None else a.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.3)
    norm = adapters.run_gradient_clipping(model.parameters(), 0.3)  # a one-shot generator
    check_close(float(norm), expected.item(), rtol=1e-5, atol=0)
    check_equal(
        [a.grad is None for a in model.parameters()], [b.grad is None for b in reference.parameters()],
        message="which parameters have no .grad",
    )  # fmt: skip
    check_close(
        [a.grad for a in model.parameters() if a.grad is not None],
        [b.grad for b in reference.parameters() if b.grad is not None],
        rtol=1e-5,
        atol=1e-8,
    )


def test_gradient_clipping_hidden_just_below_threshold_and_zero_gradients():
    parameters = _with_gradients([(4, 5), (5,)], scale=1.0, seed=33)
    parameters[1].grad.zero_()
    before = [p.grad.clone() for p in parameters]
    total = math.sqrt(sum((g.double() ** 2).sum().item() for g in before))
    norm = adapters.run_gradient_clipping(parameters, total * 1.001)
    check_close(float(norm), total, rtol=1e-5, atol=0)
    for p, g in zip(parameters, before, strict=True):
        check_equal(p.grad, g)


def test_gradient_clipping_hidden_no_gradients_at_all():
    parameters = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
    check_equal(float(adapters.run_gradient_clipping(parameters, 1.0)), 0.0)
    check_equal([p.grad is None for p in parameters], [True, True], message="no .grad may be created")
    # then one parameter gets a gradient: the norm is its norm alone, and it is clipped to 1
    gradient = torch.randn(2, 2, generator=torch.Generator().manual_seed(34)) * 3
    parameters[1].grad = gradient.clone()
    norm = adapters.run_gradient_clipping(parameters, 1.0)
    check_close(float(norm), gradient.norm().item(), rtol=1e-5, atol=0)
    check_close(parameters[1].grad, gradient / gradient.norm(), rtol=1e-5, atol=1e-6)
    check_equal(parameters[0].grad is None, True, message="no .grad may be created")


# --------------------------------------------------------------------------- AdamW


class _Problem:
    """Least squares on linear maps, fresh data every step (stable, so float rounding does not grow)."""

    def __init__(self, seed: int, d_in: int, d_out: int, heads: int = 2, scale: float = 1.0, dtype=torch.float32):
        torch.manual_seed(seed)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(d_in, d_out, dtype=dtype) for _ in range(heads))
        with torch.no_grad():
            for parameter in self.heads.parameters():
                parameter.mul_(scale)
        self.d_in, self.d_out, self.scale, self.dtype = d_in, d_out, scale, dtype

    def loss(self, inputs, outputs, used=None):
        used = range(len(self.heads)) if used is None else used
        prediction = sum(self.heads[i](inputs) for i in used)
        return ((prediction - outputs) ** 2).mean()


def _lockstep(ours, our_optimizer, theirs, their_optimizer, steps, seed, before_step=None, used_at=None):
    """Train both on the same batches; the parameters of each after every step (one row a step)."""
    generator = torch.Generator().manual_seed(seed)
    our_path, their_path = [], []
    for step in range(steps):
        inputs = torch.randn(12, ours.d_in, generator=generator, dtype=ours.dtype)
        outputs = (torch.randn(12, ours.d_out, generator=generator, dtype=ours.dtype) - 1.5) * ours.scale
        for problem, optimizer in ((ours, our_optimizer), (theirs, their_optimizer)):
            if before_step is not None:
                before_step(step, optimizer)
            optimizer.zero_grad(set_to_none=True)
            problem.loss(inputs, outputs, None if used_at is None else used_at(step)).backward()
            optimizer.step()
        our_path.append(flat_parameters(ours.heads.parameters()))
        their_path.append(flat_parameters(theirs.heads.parameters()))
    return torch.stack(our_path), torch.stack(their_path)


def test_adamw_hidden_1000_steps_other_hyperparameters():
    ours = _Problem(40, d_in=5, d_out=7, heads=2)
    theirs, start = copy.deepcopy(ours), copy.deepcopy(ours)
    hyper = {"lr": 3e-3, "betas": (0.85, 0.98), "eps": 1e-7, "weight_decay": 0.02}
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.heads.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.heads.parameters(), **hyper), 1000, seed=40,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)
    # the parameters really moved (ours too: they follow torch's)
    assert max_parameter_difference(theirs.heads.parameters(), start.heads.parameters()) > 0.3


def test_adamw_hidden_large_epsilon_small_gradients():
    # eps comparable to sqrt(v_hat): only the update rule of the docstring (and torch) gets this right
    ours = _Problem(41, d_in=5, d_out=4, heads=1, scale=1e-3)
    theirs = copy.deepcopy(ours)
    hyper = {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-3, "weight_decay": 0.0}
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.heads.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.heads.parameters(), **hyper), 300, seed=41,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-7, rtol=0)


def test_adamw_hidden_float64_parameters():
    ours = _Problem(42, d_in=6, d_out=3, heads=2, dtype=torch.float64)
    theirs = copy.deepcopy(ours)
    hyper = {"lr": 2e-2, "betas": (0.9, 0.999), "weight_decay": 0.3}
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.heads.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.heads.parameters(), **hyper), 200, seed=42,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-10, rtol=0)
    check_equal([p.dtype for p in ours.heads.parameters()], [torch.float64] * 4)


def test_adamw_hidden_parameters_without_gradient_on_some_steps():
    # head 1 is used on even steps only, head 2 never: their step counts differ from head 0's,
    # and a parameter with no gradient is not touched at all (not even by weight decay)
    ours = _Problem(43, d_in=4, d_out=3, heads=3)
    theirs, start = copy.deepcopy(ours), copy.deepcopy(ours)
    hyper = {"lr": 1e-2, "betas": (0.9, 0.95), "weight_decay": 0.1}

    def used_at(step):
        return [0, 1] if step % 2 == 0 else [0]

    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(ours.heads.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.heads.parameters(), **hyper), 101, seed=43, used_at=used_at,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)
    check_equal(flat_parameters(ours.heads[2].parameters()), flat_parameters(start.heads[2].parameters()))


def test_adamw_hidden_every_hyperparameter_changed_mid_run():
    ours = _Problem(44, d_in=3, d_out=5, heads=2)
    theirs = copy.deepcopy(ours)

    def groups(problem):
        return [
            {"params": list(problem.heads[0].parameters()), "lr": 4e-3},
            {"params": list(problem.heads[1].parameters()), "lr": 1e-2, "betas": (0.8, 0.9), "eps": 1e-6},
        ]

    def before_step(step, optimizer):
        if step == 40:
            optimizer.param_groups[0].update(betas=(0.95, 0.9999), weight_decay=0.5)
            optimizer.param_groups[1].update(eps=1e-4, weight_decay=0.0)
        if step >= 40:
            optimizer.param_groups[0]["lr"] = 4e-3 * (1 - (step - 40) / 100)
        if step == 70:
            optimizer.param_groups[1]["lr"] = 0.0

    hyper = {"lr": 1e-3, "weight_decay": 0.05}
    our_path, their_path = _lockstep(
        ours, adapters.get_adamw_cls()(groups(ours), **hyper),
        theirs, torch.optim.AdamW(groups(theirs), **hyper), 120, seed=44, before_step=before_step,
    )  # fmt: skip
    check_close(our_path, their_path, atol=1e-6, rtol=0)


def test_adamw_hidden_zero_learning_rate_changes_nothing():
    problem = _Problem(45, d_in=4, d_out=2, heads=1)
    start = copy.deepcopy(problem)
    optimizer = adapters.get_adamw_cls()(problem.heads.parameters(), lr=0.0, weight_decay=0.5)
    inputs, outputs = torch.randn(8, 4), torch.randn(8, 2)
    for _ in range(5):
        optimizer.zero_grad()
        problem.loss(inputs, outputs).backward()
        optimizer.step()
    check_equal(flat_parameters(problem.heads.parameters()), flat_parameters(start.heads.parameters()))


# --------------------------------------------------------------------------- cosine schedule


def _cosine_reference(it, max_lr, min_lr, warmup, cycle):
    if it < warmup:
        return it / warmup * max_lr
    if it > cycle:
        return min_lr
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * (it - warmup) / (cycle - warmup))) / 2


def test_cosine_schedule_hidden_long_run():
    max_lr, min_lr, warmup, cycle = 6e-4, 6e-5, 100, 1000
    iterations = [0, 1, 50, 99, 100, 101, 333, 550, 999, 1000, 1001, 5000]
    actual = [float(adapters.run_get_lr_cosine_schedule(it, max_lr, min_lr, warmup, cycle)) for it in iterations]
    expected = [_cosine_reference(it, max_lr, min_lr, warmup, cycle) for it in iterations]
    check_close(actual, expected, rtol=1e-9, atol=1e-15)
    check_equal(float(adapters.run_get_lr_cosine_schedule(0, max_lr, min_lr, warmup, cycle)), 0.0)
    at_warmup = float(adapters.run_get_lr_cosine_schedule(warmup, max_lr, min_lr, warmup, cycle))
    check_close(at_warmup, max_lr, rtol=1e-12, atol=0)
    halfway = float(adapters.run_get_lr_cosine_schedule(550, max_lr, min_lr, warmup, cycle))
    check_close(halfway, (max_lr + min_lr) / 2, rtol=1e-9, atol=0)
    at_cycle = float(adapters.run_get_lr_cosine_schedule(cycle, max_lr, min_lr, warmup, cycle))
    check_close(at_cycle, min_lr, rtol=1e-9, atol=0)


def test_cosine_schedule_hidden_edge_cases():
    # warmup of one step, minimum 0
    values = [float(adapters.run_get_lr_cosine_schedule(it, 2.0, 0.0, 1, 5)) for it in range(8)]
    check_close(values, [_cosine_reference(it, 2.0, 0.0, 1, 5) for it in range(8)], atol=1e-12, rtol=1e-7)
    check_equal(values[0], 0.0)
    check_close(values[1], 2.0, rtol=1e-9, atol=0)
    check_close(values[5], 0.0, atol=1e-12, rtol=0)
    # no warmup: starts at the maximum, monotone decreasing to the minimum
    values = [float(adapters.run_get_lr_cosine_schedule(it, 1e-3, 1e-4, 0, 40)) for it in range(50)]
    check_close(values[0], 1e-3, rtol=1e-9, atol=0)
    increases = [it for it in range(1, 50) if values[it] > values[it - 1]]
    check_equal(increases, [], message="the learning rate went up at these iterations")
    check_close(values[40:], [1e-4] * 10, rtol=1e-9, atol=0)
    # min == max: flat after warmup
    values = [float(adapters.run_get_lr_cosine_schedule(it, 0.5, 0.5, 3, 9)) for it in range(3, 15)]
    check_close(values, [0.5] * 12, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- get_batch
#
# The docstring fixes which starts may be drawn and that they are uniform and independent, not
# how the generator is used to draw them: two correct implementations give different windows for
# the same seed. So the tests record what every correct implementation shares (shapes, dtypes,
# how far each row is from being a window of the data, 0) and statistics of the starts checked
# against bounds the tests compute themselves (against="expected"). Tests that draw with a seed
# also record the batch drawn from the last ``context_length + 1`` tokens of their data, where
# only one window fits: every correct implementation returns it, whatever the generator draws.


def _check_only_window(dataset, batch_size: int, context_length: int, rng=None) -> None:
    """Record get_batch on the last ``context_length + 1`` tokens of ``dataset`` (one window);
    ``rng=None`` draws from numpy's global generator."""
    inputs, targets = adapters.run_get_batch(dataset[-context_length - 1 :], batch_size, context_length, "cpu", rng=rng)
    window = torch.as_tensor(np.asarray(dataset[-context_length - 1 :], dtype=np.int64))
    check_equal(inputs, window[:-1].repeat(batch_size, 1), message="the only window of the data was not drawn")
    check_equal(targets, window[1:].repeat(batch_size, 1), message="the only window's targets were not drawn")


def test_get_batch_hidden_single_position():
    dataset = np.array([41, 7], dtype=np.int64)
    inputs, targets = adapters.run_get_batch(dataset, 5, 1, "cpu", rng=np.random.default_rng(50))
    check_equal((tuple(inputs.shape), tuple(targets.shape)), ((5, 1), (5, 1)))
    check_equal((inputs.tolist(), targets.tolist()), ([[41]] * 5, [[7]] * 5))


def test_get_batch_hidden_exactly_one_window():
    dataset = np.array([9, 3, 5, 1, 8, 2, 6], dtype=np.int32)  # context 6: the only start is 0
    inputs, targets = adapters.run_get_batch(dataset, 3, 6, torch.device("cpu"), rng=np.random.default_rng(51))
    check_equal((inputs.dtype, targets.dtype), (torch.int64, torch.int64))
    check_equal(inputs.tolist(), [dataset[:-1].tolist()] * 3)
    check_equal(targets.tolist(), [dataset[1:].tolist()] * 3)


@pytest.mark.parametrize("length, context", [(6, 6), (3, 10), (0, 1)])
def test_get_batch_hidden_too_short_raises(length, context):
    with pytest.raises(ValueError):
        adapters.run_get_batch(np.arange(length, dtype=np.int64), 1, context, "cpu", rng=np.random.default_rng(0))
    # one token more than the shortest refused dataset is enough
    _check_only_window(np.arange(context + 1, dtype=np.int64) * 7 + 2, 2, context, np.random.default_rng(0))


def test_get_batch_hidden_batch_of_one_and_large_token_ids():
    dataset = np.array([65535, 65534, 40000, 32768, 1, 0, 50256, 65535], dtype=np.uint16)
    kinds, mismatches, seen = [], [], set()
    rng = np.random.default_rng(52)
    for _ in range(60):
        inputs, targets = adapters.run_get_batch(dataset, 1, 3, "cpu", rng=rng)
        kinds.append((tuple(inputs.shape), inputs.dtype))
        mismatches += window_mismatches(dataset, 3, inputs, targets)
        found = (s for s in range(5) if np.array_equal(dataset[s : s + 3].astype(np.int64), inputs[0].numpy()))
        seen.add(next(found, None))
    check_equal(kinds, [((1, 3), torch.int64)] * 60)
    check_equal(mismatches, [0] * 60, message="a row is not a window of the data")
    check_equal(sorted(seen, key=str), [0, 1, 2, 3, 4], against="expected")  # 60 draws reach every start


def test_get_batch_hidden_npy_memmap(tmp_path):
    path = tmp_path / "tokens.npy"
    values = (np.arange(20_000, dtype=np.int64) * 2654435761) % 50_000
    np.save(path, values.astype(np.uint32))
    dataset = np.load(path, mmap_mode="r")
    assert isinstance(dataset, np.memmap)
    inputs, targets = adapters.run_get_batch(dataset, 32, 48, "cpu", rng=np.random.default_rng(53))
    check_equal((tuple(inputs.shape), inputs.dtype), ((32, 48), torch.int64))
    assert len(set(values.tolist())) == len(values)  # every value occurs once, so each window's start is known
    check_equal(window_mismatches(dataset, 48, inputs, targets), [0] * 32, message="a row is not a window of the data")


def test_get_batch_hidden_uniform_chi_square_and_independent_rows():
    length, context = 257, 32
    high = length - context  # 225 valid starts
    dataset = np.arange(length)
    rng = np.random.default_rng(54)
    batches = np.stack(
        [adapters.run_get_batch(dataset, 4, context, "cpu", rng=rng)[0][:, 0].numpy() for _ in range(9000)]
    )
    starts = batches.reshape(-1)
    check_equal((int(starts.min()), int(starts.max())), (0, high - 1), against="expected")
    counts = np.bincount(starts, minlength=high)
    check_equal(len(counts), high, message="a start out of range was drawn")
    expected = len(starts) / high
    chi_square = ((counts - expected) ** 2 / expected).sum()
    dof = high - 1
    # chi-square for uniform counts: dof on average, standard deviation sqrt(2 dof)
    check_close(float(chi_square), float(dof), atol=5 * math.sqrt(2 * dof), rtol=0, against="expected")
    # rows of one batch are drawn independently: not equal, not consecutive, uncorrelated
    check_close(float((batches[:, 0] != batches[:, 1]).mean()), 1.0, atol=0.02, rtol=0, against="expected")
    for a, b in [(0, 1), (1, 2), (0, 3)]:
        correlation = np.corrcoef(batches[:, a], batches[:, b])[0, 1]
        check_close(float(correlation), 0.0, atol=0.05, rtol=0, against="expected")
        check_close(float(((batches[:, b] - batches[:, a]) == 1).mean()), 0.0, atol=0.02, rtol=0, against="expected")
    _check_only_window(dataset, 4, context, rng)  # the last valid start, high - 1


def test_get_batch_hidden_default_generator_is_numpys_global():
    dataset = np.arange(5000)
    np.random.seed(55)
    first = adapters.run_get_batch(dataset, 8, 16, "cpu")
    np.random.seed(55)
    second = adapters.run_get_batch(dataset, 8, 16, "cpu")
    # the windows themselves depend on how the generator is used: recorded, their differences (0)
    check_equal(second[0] - first[0], torch.zeros(8, 16, dtype=torch.int64))
    check_equal(second[1] - first[1], torch.zeros(8, 16, dtype=torch.int64))
    third = adapters.run_get_batch(dataset, 8, 16, "cpu")
    check_equal(torch.equal(first[0], third[0]), False, message="the global generator must move on")
    _check_only_window(dataset, 8, 16)


def test_get_batch_hidden_given_rng_is_the_only_randomness():
    dataset = np.arange(5000)
    np.random.seed(1)
    first = adapters.run_get_batch(dataset, 8, 16, "cpu", rng=np.random.default_rng(56))
    np.random.seed(2)
    torch.manual_seed(3)
    second = adapters.run_get_batch(dataset, 8, 16, "cpu", rng=np.random.default_rng(56))
    check_equal(second[0] - first[0], torch.zeros(8, 16, dtype=torch.int64))
    # the same generator goes on to new windows
    rng = np.random.default_rng(56)
    a = adapters.run_get_batch(dataset, 8, 16, "cpu", rng=rng)
    b = adapters.run_get_batch(dataset, 8, 16, "cpu", rng=rng)
    check_equal(a[0] - first[0], torch.zeros(8, 16, dtype=torch.int64))
    check_equal(torch.equal(a[0], b[0]), False, message="the generator must move on to new windows")
    _check_only_window(dataset, 8, 16, rng)


# --------------------------------------------------------------------------- checkpointing
#
# The weights of a model depend on how its initialisation draws random numbers, which differs
# between correct implementations, so the tests redraw them by parameter name (``pin_weights``):
# every correct implementation then restores the same model. The tests record how the restored
# model and its training differ from the saved one or the uninterrupted run (nothing: {} and 0),
# the iteration, and the logits of the restored model.


def _lm(seed: int):
    torch.manual_seed(seed)
    model = adapters.create_transformer_lm(
        vocab_size=37, context_length=12, d_model=24, num_layers=1, num_heads=3, d_ff=40, rope_theta=500.0
    )
    return pin_weights(model, seed)


def _batches(seed: int, count: int):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 37, (3, 13), generator=generator) for _ in range(count)]


def test_checkpoint_hidden_resume_equals_uninterrupted_run(tmp_path):
    AdamW = adapters.get_adamw_cls()
    batches = _batches(60, 6)
    straight = _lm(60)
    straight_optimizer = AdamW(straight.parameters(), lr=5e-3, betas=(0.9, 0.95), weight_decay=0.1)
    straight_losses = [lm_training_step(straight, straight_optimizer, b) for b in batches]

    first = _lm(60)
    first_optimizer = AdamW(first.parameters(), lr=5e-3, betas=(0.9, 0.95), weight_decay=0.1)
    losses = [lm_training_step(first, first_optimizer, b) for b in batches[:3]]
    with open(tmp_path / "run.ckpt", "wb") as file:  # a file object, not a path
        adapters.run_save_checkpoint(first, first_optimizer, 3, file)
    del first, first_optimizer

    second = _lm(61)
    second_optimizer = AdamW(second.parameters(), lr=5e-3, betas=(0.9, 0.95), weight_decay=0.1)
    with open(tmp_path / "run.ckpt", "rb") as file:
        iteration = adapters.run_load_checkpoint(file, second, second_optimizer)
    check_equal(iteration, 3)
    losses += [lm_training_step(second, second_optimizer, b) for b in batches[iteration:]]
    check_equal(
        [ours - straight for ours, straight in zip(losses, straight_losses, strict=False)], [0.0] * 6,
        message="the losses differ from the uninterrupted run",
    )  # fmt: skip
    check_equal(state_differences(second, straight), {}, message="the weights differ from the uninterrupted run")
    check_close(second(batches[0][:, :-1]), straight(batches[0][:, :-1]), atol=1e-4, rtol=1e-4)


def test_checkpoint_hidden_iteration_zero_and_restores_earlier_state():
    model = _lm(62)
    optimizer = adapters.get_adamw_cls()(model.parameters(), lr=1e-2)
    batches = _batches(62, 4)
    lm_training_step(model, optimizer, batches[0])
    saved_state = copy.deepcopy(model.state_dict())
    buffer = io.BytesIO()
    adapters.run_save_checkpoint(model, optimizer, 0, buffer)
    reference = copy.deepcopy(model)
    reference_optimizer = adapters.get_adamw_cls()(reference.parameters(), lr=1e-2)
    reference_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))

    for batch in batches[1:]:  # training goes on after the save ...
        lm_training_step(model, optimizer, batch)
    check_equal(state_differences(model, reference) != {}, True, message="training after the save changed nothing")
    buffer.seek(0)
    check_equal(adapters.run_load_checkpoint(buffer, model, optimizer), 0)  # ... and loading rolls it back
    check_equal(state_differences(model.state_dict(), saved_state), {}, message="the saved weights did not come back")
    check_close(model(batches[0][:, :-1]), reference(batches[0][:, :-1]), atol=1e-4, rtol=1e-4)  # the restored logits
    losses = [
        lm_training_step(model, optimizer, batch) - lm_training_step(reference, reference_optimizer, batch)
        for batch in batches[1:]
    ]
    check_equal(losses, [0.0] * 3, message="the losses after loading differ")
    check_equal(state_differences(model, reference), {})


@pytest.mark.parametrize("optimizer_name", ["torch_adamw", "sgd_momentum"])
def test_checkpoint_hidden_any_optimizer(tmp_path, optimizer_name):
    def make(model):
        if optimizer_name == "torch_adamw":
            return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    batches = _batches(63, 5)
    model = _lm(63)
    optimizer = make(model)
    for batch in batches[:2]:
        lm_training_step(model, optimizer, batch)
    path = tmp_path / "nested" / f"{optimizer_name}.pt"
    path.parent.mkdir()
    adapters.run_save_checkpoint(model, optimizer, 987_654, path)

    restored = _lm(64)
    restored_optimizer = make(restored)
    check_equal(adapters.run_load_checkpoint(path, restored, restored_optimizer), 987_654)
    check_equal(state_differences(model, restored), {}, message="the restored weights differ")
    check_close(restored(batches[0][:, :-1]), model(batches[0][:, :-1]), atol=1e-4, rtol=1e-4)  # the restored logits
    losses = [
        lm_training_step(model, optimizer, batch) - lm_training_step(restored, restored_optimizer, batch)
        for batch in batches[2:]
    ]
    check_equal(losses, [0.0] * 3, message="the losses after loading differ")
    check_equal(state_differences(model, restored), {})


def test_cross_entropy_ignored_row_of_minus_infinity_stays_finite():
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(77))
    logits[1] = -math.inf
    targets = torch.tensor([1, -100, 2])
    expected = F.cross_entropy(logits, targets, ignore_index=-100)
    got = adapters.run_cross_entropy(logits, targets, ignore_index=-100)
    check_equal(bool(torch.isfinite(got)), True, message="an ignored row of -inf must not give inf or NaN")
    check_close(got, expected, **FLOAT32)


def test_cross_entropy_of_equal_huge_logits_is_log_vocab():
    logits = torch.full((2, 4), 1e8)
    got = adapters.run_cross_entropy(logits, torch.tensor([0, 3]))
    check_close(got, torch.tensor(math.log(4.0)), **FLOAT32)
