"""Part 3: training utilities (public tests).

``log_softmax``, ``cross_entropy``, ``perplexity``, ``token_accuracy`` and ``gradient_clipping``
are compared with ``torch.nn.functional`` and ``torch.nn.utils.clip_grad_norm_``; ``AdamW`` with
``torch.optim.AdamW``; the cosine schedule with hand-computed values; ``get_batch`` with the
properties its docstring promises (shapes, shift by one, every start in range, uniform starts);
checkpoints by a save/load round trip that must continue training identically.
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

# --------------------------------------------------------------------------- log_softmax, cross_entropy


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_log_softmax_matches_torch(dim):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5) * 3
    np.testing.assert_allclose(adapters.run_log_softmax(x, dim).numpy(), F.log_softmax(x, dim).numpy(), atol=1e-5)


def test_log_softmax_large_inputs_stay_finite():
    x = torch.tensor([[1000.0, 999.0, 0.0, -1000.0], [-1000.0, -1001.0, -2000.0, -999.0]])
    result = adapters.run_log_softmax(x, -1)
    assert torch.isfinite(result).all()
    np.testing.assert_allclose(result.numpy(), F.log_softmax(x, -1).numpy(), atol=1e-4)


def test_cross_entropy_matches_torch_2d():
    torch.manual_seed(1)
    logits = torch.randn(8, 11)
    targets = torch.randint(0, 11, (8,))
    expected = F.cross_entropy(logits, targets)
    actual = adapters.run_cross_entropy(logits, targets)
    assert actual.shape == ()
    np.testing.assert_allclose(actual.item(), expected.item(), rtol=1e-5)


@pytest.mark.parametrize("leading", [(3, 5), (2, 3, 4)])
def test_cross_entropy_matches_torch_leading_dims(leading):
    torch.manual_seed(2)
    vocab = 13
    logits = torch.randn(*leading, vocab) * 2
    targets = torch.randint(0, vocab, leading)
    expected = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    actual = adapters.run_cross_entropy(logits, targets)
    assert actual.numel() == 1
    np.testing.assert_allclose(actual.item(), expected.item(), rtol=1e-5)


def test_cross_entropy_large_logits_stable():
    torch.manual_seed(3)
    logits = torch.randn(6, 9) * 1000
    targets = torch.randint(0, 9, (6,))
    actual = adapters.run_cross_entropy(logits, targets)
    assert torch.isfinite(actual)
    np.testing.assert_allclose(actual.item(), F.cross_entropy(logits, targets).item(), rtol=1e-5)


def test_cross_entropy_ignore_index_matches_torch():
    torch.manual_seed(4)
    logits = torch.randn(4, 7, 10)
    targets = torch.randint(0, 10, (4, 7))
    targets[0, :3] = -100
    targets[2, 5:] = -100
    expected = F.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1), ignore_index=-100)
    actual = adapters.run_cross_entropy(logits, targets, ignore_index=-100)
    np.testing.assert_allclose(actual.item(), expected.item(), rtol=1e-5)
    # the ignored positions must really be left out of the mean, not counted as 0
    assert not math.isclose(actual.item(), adapters.run_cross_entropy(logits, targets.clamp_min(0)).item())


def test_cross_entropy_ignore_index_that_is_a_vocabulary_id():
    torch.manual_seed(5)
    logits = torch.randn(20, 6)
    targets = torch.randint(0, 6, (20,))
    targets[::3] = 0
    expected = F.cross_entropy(logits, targets, ignore_index=0)
    actual = adapters.run_cross_entropy(logits, targets, ignore_index=0)
    np.testing.assert_allclose(actual.item(), expected.item(), rtol=1e-5)


def test_cross_entropy_gradient_matches_torch():
    torch.manual_seed(6)
    logits = torch.randn(3, 4, 8)
    targets = torch.randint(0, 8, (3, 4))
    targets[1, 2] = -100
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    adapters.run_cross_entropy(ours, targets, ignore_index=-100).backward()
    F.cross_entropy(theirs.reshape(-1, 8), targets.reshape(-1), ignore_index=-100).backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), atol=1e-6)


def test_perplexity_is_exp_of_cross_entropy():
    torch.manual_seed(7)
    logits = torch.randn(2, 5, 12)
    targets = torch.randint(0, 12, (2, 5))
    targets[1, 4] = -1
    expected = torch.exp(F.cross_entropy(logits.reshape(-1, 12), targets.reshape(-1), ignore_index=-1))
    actual = adapters.run_perplexity(logits, targets, ignore_index=-1)
    np.testing.assert_allclose(actual.item(), expected.item(), rtol=1e-5)
    # uniform logits: perplexity equals the vocabulary size
    uniform = adapters.run_perplexity(torch.zeros(3, 12), torch.tensor([0, 5, 11]))
    np.testing.assert_allclose(uniform.item(), 12.0, rtol=1e-5)


def test_token_accuracy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([1, 0, 1, 2])
    np.testing.assert_allclose(adapters.run_token_accuracy(logits, targets).item(), 0.75)
    padded = torch.tensor([1, -100, 1, -100])
    np.testing.assert_allclose(adapters.run_token_accuracy(logits, padded, ignore_index=-100).item(), 0.5)


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
    for a, b in zip(ours, theirs):
        b.grad = a.grad.clone()
    max_norm = 1.0
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert expected_norm > max_norm  # the test must actually clip
    norm = adapters.run_gradient_clipping(ours, max_norm)
    np.testing.assert_allclose(float(norm), expected_norm.item(), rtol=1e-5)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-6)
    clipped = torch.sqrt(sum((p.grad**2).sum() for p in ours))
    np.testing.assert_allclose(clipped.item(), max_norm, rtol=1e-4)


def test_gradient_clipping_skips_parameters_without_gradient():
    ours = _parameters_with_gradients(1, [(4, 4), (6,), (2, 3)], scale=1.5)
    ours.insert(1, torch.nn.Parameter(torch.randn(7)))  # no .grad at all
    theirs = copy.deepcopy(ours)
    for a, b in zip(ours, theirs):
        b.grad = None if a.grad is None else a.grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, 0.5)
    norm = adapters.run_gradient_clipping(ours, 0.5)
    np.testing.assert_allclose(float(norm), expected_norm.item(), rtol=1e-5)
    assert ours[1].grad is None
    for a, b in zip(ours, theirs):
        if b.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-6)


def test_gradient_clipping_below_threshold_leaves_gradients_unchanged():
    parameters = _parameters_with_gradients(2, [(3, 3), (5,)], scale=0.1)
    before = [p.grad.clone() for p in parameters]
    true_norm = torch.sqrt(sum((g**2).sum() for g in before)).item()
    norm = adapters.run_gradient_clipping(parameters, max_l2_norm=10.0)
    np.testing.assert_allclose(float(norm), true_norm, rtol=1e-5)
    for p, g in zip(parameters, before):
        assert torch.equal(p.grad, g)


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


def _lockstep(ours, our_optimizer, theirs, their_optimizer, steps: int, seed: int, lr_at=None) -> float:
    """Train both models on the same batches; the largest parameter difference seen after any step."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
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
        worst = max(worst, _max_difference(ours, theirs))
    return worst


def _max_difference(model_a, model_b) -> float:
    return max((a - b).abs().max().item() for a, b in zip(model_a.parameters(), model_b.parameters()))


def test_adamw_matches_torch_1000_steps():
    ours = _model(0)
    theirs, start = copy.deepcopy(ours), copy.deepcopy(ours)
    hyper = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    worst = _lockstep(
        ours, adapters.get_adamw_cls()(ours.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.parameters(), **hyper), 1000, seed=0,
    )  # fmt: skip
    assert worst < 1e-6
    assert _max_difference(ours, start) > 0.5  # the parameters really moved


def test_adamw_default_hyperparameters_match_torch():
    ours = _model(1)
    theirs = copy.deepcopy(ours)
    worst = _lockstep(
        ours, adapters.get_adamw_cls()(ours.parameters(), lr=5e-3),
        theirs, torch.optim.AdamW(theirs.parameters(), lr=5e-3), 200, seed=1,
    )  # fmt: skip
    assert worst < 1e-6


def test_adamw_param_groups():
    ours = _model(2)
    theirs = copy.deepcopy(ours)

    def groups(model):
        return [
            {"params": [model.a.weight, model.b.weight], "lr": 5e-3, "weight_decay": 0.2},
            {"params": [model.a.bias], "lr": 2e-2, "weight_decay": 0.0},
            {"params": [model.b.bias], "betas": (0.8, 0.99)},  # the defaults for the rest
        ]

    hyper = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05)
    worst = _lockstep(
        ours, adapters.get_adamw_cls()(groups(ours), **hyper),
        theirs, torch.optim.AdamW(groups(theirs), **hyper), 300, seed=2,
    )  # fmt: skip
    assert worst < 1e-6


def test_adamw_learning_rate_changed_by_schedule():
    ours = _model(3)
    theirs = copy.deepcopy(ours)

    def lr_at(step):  # warmup then cosine, written out here so this test depends only on AdamW
        if step < 20:
            return 2e-2 * step / 20
        return 1e-3 + (2e-2 - 1e-3) * (1 + math.cos(math.pi * min(1.0, (step - 20) / 180))) / 2

    hyper = dict(lr=0.5, weight_decay=0.05)  # the initial lr must be overwritten by the schedule
    worst = _lockstep(
        ours, adapters.get_adamw_cls()(ours.parameters(), **hyper),
        theirs, torch.optim.AdamW(theirs.parameters(), **hyper), 250, seed=3, lr_at=lr_at,
    )  # fmt: skip
    assert worst < 1e-6


def test_adamw_state_dict_round_trip_continues_identically():
    AdamW = adapters.get_adamw_cls()
    model = _model(4)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    reference = copy.deepcopy(model)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
    assert _lockstep(model, optimizer, reference, reference_optimizer, 30, seed=4) < 1e-6

    def resume():
        copied = copy.deepcopy(model)
        copied_optimizer = AdamW(copied.parameters(), lr=1e-2, weight_decay=0.1)
        copied_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        return copied, copied_optimizer

    fresh = copy.deepcopy(model)
    fresh_optimizer = AdamW(fresh.parameters(), lr=1e-2, weight_decay=0.1)
    resumed, resumed_optimizer = resume()
    resumed_against_torch, its_optimizer = resume()
    # the resumed optimizer continues exactly like the original one ...
    assert _lockstep(model, optimizer, resumed, resumed_optimizer, 30, seed=5) == 0.0
    # ... and like torch's: it kept its step counts and moments
    assert _lockstep(resumed_against_torch, its_optimizer, reference, reference_optimizer, 30, seed=5) < 1e-6
    # while a fresh optimizer (state lost) does not
    assert _lockstep(fresh, fresh_optimizer, resumed_against_torch, its_optimizer, 1, seed=6) > 1e-5


# --------------------------------------------------------------------------- cosine schedule


def test_cosine_schedule_known_values():
    expected = [
        0.0, 0.14285714285714285, 0.2857142857142857, 0.42857142857142855, 0.5714285714285714,
        0.7142857142857143, 0.8571428571428571, 1.0, 0.9887175604818206, 0.9554359905560885,
        0.9018241671106134, 0.8305704108364301, 0.7452476826029011, 0.6501344202803414, 0.55,
        0.44986557971965857, 0.3547523173970989, 0.26942958916356996, 0.19817583288938662,
        0.14456400944391146, 0.11128243951817937, 0.1, 0.1, 0.1, 0.1,
    ]  # CS336's values for max 1, min 0.1, warmup 7, cycle 21  # fmt: skip
    actual = [adapters.run_get_lr_cosine_schedule(it, 1.0, 0.1, 7, 21) for it in range(25)]
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


def test_cosine_schedule_without_warmup():
    max_lr, min_lr, cycle = 3e-4, 3e-5, 10
    for it in range(15):
        expected = min_lr if it > cycle else min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * it / cycle)) / 2
        assert math.isclose(adapters.run_get_lr_cosine_schedule(it, max_lr, min_lr, 0, cycle), expected, rel_tol=1e-9)
    assert math.isclose(adapters.run_get_lr_cosine_schedule(0, max_lr, min_lr, 0, cycle), max_lr, rel_tol=1e-12)


# --------------------------------------------------------------------------- get_batch


def test_get_batch_shapes_dtype_and_shift():
    dataset = np.arange(100)
    inputs, targets = adapters.run_get_batch(dataset, 8, 12, "cpu", rng=np.random.default_rng(0))
    assert inputs.shape == (8, 12) and targets.shape == (8, 12)
    assert inputs.dtype == torch.int64 and targets.dtype == torch.int64
    assert inputs.device.type == "cpu" and targets.device.type == "cpu"
    assert torch.equal(targets, inputs + 1)  # consecutive windows of arange
    assert torch.equal(inputs[:, 1:], targets[:, :-1])


def test_get_batch_windows_come_from_the_data():
    rng = np.random.default_rng(1)
    dataset = rng.integers(0, 5000, size=300).astype(np.int32)
    inputs, targets = adapters.run_get_batch(dataset, 16, 20, "cpu", rng=np.random.default_rng(2))
    for row_in, row_out in zip(inputs.numpy(), targets.numpy()):
        matches = [s for s in range(len(dataset) - 20) if np.array_equal(dataset[s : s + 20], row_in)]
        assert matches, "an input window is not a slice of the dataset"
        assert any(np.array_equal(dataset[s + 1 : s + 21], row_out) for s in matches)


def test_get_batch_starts_in_range_and_uniform():
    length, context = 1000, 16
    dataset = np.arange(length)
    rng = np.random.default_rng(3)
    starts = np.concatenate(
        [adapters.run_get_batch(dataset, 500, context, "cpu", rng=rng)[0][:, 0].numpy() for _ in range(40)]
    )
    count, high = len(starts), length - context  # valid starts: 0 .. high - 1
    assert starts.min() >= 0 and starts.max() <= high - 1
    expected_mean = (high - 1) / 2
    standard_error = math.sqrt((high**2 - 1) / 12 / count)
    assert abs(starts.mean() - expected_mean) < 4 * standard_error
    # neither end of the range is favoured or starved
    assert abs((starts < high // 4).mean() - 0.25) < 0.02
    assert abs((starts >= high - high // 4).mean() - 0.25) < 0.02


def test_get_batch_every_start_drawn_on_tiny_dataset():
    dataset = np.arange(10)
    context = 4  # valid starts: 0 .. 5
    rng = np.random.default_rng(4)
    starts = np.concatenate(
        [adapters.run_get_batch(dataset, 50, context, "cpu", rng=rng)[0][:, 0].numpy() for _ in range(20)]
    )
    counts = np.bincount(starts, minlength=6)
    assert len(counts) == 6, f"a start beyond 5 was drawn: {sorted(set(starts.tolist()))}"
    assert (counts > 0).all(), f"some start was never drawn: {counts}"
    assert (np.abs(counts - 1000 / 6) < 60).all(), f"start counts far from uniform: {counts}"


def test_get_batch_memmap(tmp_path):
    path = tmp_path / "tokens.bin"
    data = np.memmap(path, dtype=np.uint16, mode="w+", shape=(5000,))
    data[:] = (np.arange(5000) * 7) % 60000
    data.flush()
    del data
    dataset = np.memmap(path, dtype=np.uint16, mode="r", shape=(5000,))
    inputs, targets = adapters.run_get_batch(dataset, 4, 32, "cpu", rng=np.random.default_rng(5))
    assert inputs.dtype == torch.int64 and inputs.shape == (4, 32)
    for row_in, row_out in zip(inputs.numpy(), targets.numpy()):
        start = int(row_in[0]) // 7
        np.testing.assert_array_equal(row_in, dataset[start : start + 32])
        np.testing.assert_array_equal(row_out, dataset[start + 1 : start + 33])


def test_get_batch_rng_reproducible():
    dataset = np.arange(10_000)
    first = adapters.run_get_batch(dataset, 6, 64, "cpu", rng=np.random.default_rng(123))
    second = adapters.run_get_batch(dataset, 6, 64, "cpu", rng=np.random.default_rng(123))
    other = adapters.run_get_batch(dataset, 6, 64, "cpu", rng=np.random.default_rng(124))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_get_batch_too_short_dataset_raises():
    with pytest.raises(ValueError):
        adapters.run_get_batch(np.arange(8), 2, 8, "cpu", rng=np.random.default_rng(0))


# --------------------------------------------------------------------------- checkpointing


def _small_lm():
    return adapters.create_transformer_lm(
        vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64, rope_theta=10000.0
    )


def _lm_step(model, optimizer, tokens):
    optimizer.zero_grad()
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    return loss.item()


def _trained_lm(seed: int, steps: int):
    torch.manual_seed(seed)
    model = _small_lm()
    optimizer = adapters.get_adamw_cls()(model.parameters(), lr=3e-3, weight_decay=0.1)
    tokens = torch.randint(0, 50, (4, 17), generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        _lm_step(model, optimizer, tokens)
    return model, optimizer, tokens


def _assert_restored(model, optimizer, tokens, restored, restored_optimizer):
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(model(tokens[:, :-1]), restored(tokens[:, :-1]))
    # the optimizer state came back too: the next steps are identical
    for _ in range(2):
        assert _lm_step(model, optimizer, tokens) == _lm_step(restored, restored_optimizer, tokens)
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)


def _fresh_copy(seed: int):
    torch.manual_seed(seed)
    model = _small_lm()
    return model, adapters.get_adamw_cls()(model.parameters(), lr=3e-3, weight_decay=0.1)


def test_checkpoint_round_trip_path(tmp_path):
    model, optimizer, tokens = _trained_lm(0, 5)
    path = tmp_path / "checkpoint.pt"
    adapters.run_save_checkpoint(model, optimizer, 5, path)
    assert path.is_file()
    restored, restored_optimizer = _fresh_copy(99)
    assert not torch.equal(model(tokens[:, :-1]), restored(tokens[:, :-1]))
    assert adapters.run_load_checkpoint(path, restored, restored_optimizer) == 5
    _assert_restored(model, optimizer, tokens, restored, restored_optimizer)


def test_checkpoint_round_trip_string_path(tmp_path):
    model, optimizer, tokens = _trained_lm(1, 3)
    path = str(tmp_path / "checkpoint_str.pt")
    adapters.run_save_checkpoint(model, optimizer, 1234, path)
    restored, restored_optimizer = _fresh_copy(98)
    assert adapters.run_load_checkpoint(path, restored, restored_optimizer) == 1234
    _assert_restored(model, optimizer, tokens, restored, restored_optimizer)


def test_checkpoint_round_trip_bytesio():
    model, optimizer, tokens = _trained_lm(2, 4)
    buffer = io.BytesIO()
    adapters.run_save_checkpoint(model, optimizer, 42, buffer)
    assert buffer.getbuffer().nbytes > 0
    buffer.seek(0)
    restored, restored_optimizer = _fresh_copy(97)
    assert adapters.run_load_checkpoint(buffer, restored, restored_optimizer) == 42
    _assert_restored(model, optimizer, tokens, restored, restored_optimizer)
