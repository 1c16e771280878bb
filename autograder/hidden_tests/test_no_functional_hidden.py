"""Hidden tests: Parts 2 and 3 without torch.nn.functional, the torch.nn layers or torch's shortcuts.

Each adapter runs inside :func:`tests.test_no_functional.forbidden_shortcuts`, where
``torch.nn.functional``, the ``forward`` of every ``torch.nn`` layer, ``torch.softmax`` and its
aliases, ``clip_grad_norm_`` and ``torch.optim``'s Adam(W) raise, also when reached through a
reference kept from before the block (a torch function mode, a dispatch mode and a profile
function see them below the attributes). The expected values are computed
before the block, in float64 where the check needs it, from the definitions or with
``torch.nn.functional``. Inputs differ from the public tests: float64 and bfloat16, no batch
dimension or extra leading dimensions, non-contiguous views, per-batch token positions, fully
masked attention rows, infinite logits, ignored targets, parameters without gradients, and AdamW
with two parameter groups and a changing learning rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import adapters
from tests.graded import check_close, check_equal
from tests.test_no_functional import forbidden_shortcuts

D_MODEL, NUM_HEADS, D_FF, VOCAB, THETA = 24, 6, 40, 29, 500.0


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (torch.randn(shape, generator=generator(seed), dtype=torch.float64) * scale).to(dtype)


def scaled_matrices(seed: int, *shapes: tuple[int, int]) -> list[torch.Tensor]:
    g = generator(seed)
    return [torch.randn(shape, generator=g) / math.sqrt(shape[1]) for shape in shapes]


def rope_float64(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE from its definition in float64: pair k with k + d/2, angle position * theta^(-2k/d)."""
    d = x.shape[-1]
    pairs = torch.arange(d // 2, dtype=torch.float64)
    angles = positions.double().unsqueeze(-1) * torch.pow(torch.tensor(theta, dtype=torch.float64), -2 * pairs / d)
    low, high = x.double().split(d // 2, dim=-1)
    return torch.cat((low * angles.cos() - high * angles.sin(), low * angles.sin() + high * angles.cos()), -1)


def attention_float64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked attention in float64; a query that sees no key gets zeros."""
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    weights = torch.exp(scores - scores.amax(-1, keepdim=True)) * mask
    total = weights.sum(-1, keepdim=True)
    return torch.where(total > 0, weights / total.clamp_min(1e-300), torch.zeros_like(weights)) @ v.double()


def self_attention_float64(x, wq, wk, wv, wo, num_heads, theta=None, positions=None) -> torch.Tensor:
    """Causal multi-head self-attention, one head at a time, in float64."""
    x = x.double()
    seq, d_head = x.shape[-2], x.shape[-1] // num_heads
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    outputs = []
    for head in range(num_heads):
        rows = slice(head * d_head, (head + 1) * d_head)
        q, k, v = (x @ w[rows].double().T for w in (wq, wk, wv))
        if theta is not None:
            where = torch.arange(seq) if positions is None else positions
            q, k = rope_float64(q, where, theta), rope_float64(k, where, theta)
        outputs.append(attention_float64(q, k, v, causal))
    return torch.cat(outputs, dim=-1) @ wo.double().T


def rms_norm_float64(x: torch.Tensor, gain: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.double()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain.double()


def block_float64(x: torch.Tensor, w: dict[str, torch.Tensor], theta: float) -> torch.Tensor:
    wq, wk, wv, wo = (w[f"attn.{name}.weight"] for name in ("q_proj", "k_proj", "v_proj", "output_proj"))
    h = x.double() + self_attention_float64(rms_norm_float64(x, w["ln1.weight"]), wq, wk, wv, wo, NUM_HEADS, theta)
    n = rms_norm_float64(h, w["ln2.weight"])
    up, gate = n @ w["ffn.w3.weight"].double().T, n @ w["ffn.w1.weight"].double().T
    return h + (gate * torch.sigmoid(gate) * up) @ w["ffn.w2.weight"].double().T


def block_weights(seed: int) -> dict[str, torch.Tensor]:
    shapes = {f"attn.{name}.weight": (D_MODEL, D_MODEL) for name in ("q_proj", "k_proj", "v_proj", "output_proj")}
    shapes.update(
        {"ffn.w1.weight": (D_FF, D_MODEL), "ffn.w2.weight": (D_MODEL, D_FF), "ffn.w3.weight": (D_FF, D_MODEL)}
    )
    weights = dict(zip(shapes, scaled_matrices(seed, *shapes.values()), strict=True))
    weights["ln1.weight"] = 1.0 + randn(D_MODEL, seed=seed + 1, scale=0.2)
    weights["ln2.weight"] = 1.0 + randn(D_MODEL, seed=seed + 2, scale=0.2)
    return weights


# ---------------------------------------------------------------------------------------------
# Part 2
# ---------------------------------------------------------------------------------------------


def test_linear_without_functional_leading_dims_and_views():
    weight = randn(7, D_MODEL, seed=1)
    x = randn(2, 3, D_MODEL, 5, seed=2).transpose(-1, -2)  # (2, 3, 5, d), a view
    expected = torch.einsum("...i,oi->...o", x.double(), weight.double())
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_linear(D_MODEL, 7, weight, x)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_embedding_without_functional_ids_of_any_shape():
    weight = randn(VOCAB, D_MODEL, seed=3)
    for shape in [(), (5,), (2, 3, 4)]:
        ids = torch.randint(0, VOCAB, shape, generator=generator(4))
        expected = F.one_hot(ids, VOCAB).double() @ weight.double()
        with forbidden_shortcuts("Part 2"):
            actual = adapters.run_embedding(VOCAB, D_MODEL, weight, ids)
        check_close(actual, expected.float(), rtol=0, atol=0)


def test_rmsnorm_without_functional_bfloat16_and_tiny_values():
    gain = 1.0 + randn(D_MODEL, seed=5, scale=0.3)
    x = randn(3, D_MODEL, seed=6, scale=4.0, dtype=torch.bfloat16)
    tiny = randn(2, 4, D_MODEL, seed=7, scale=1e-3)
    expected = rms_norm_float64(x, gain)
    expected_tiny = rms_norm_float64(tiny, gain)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_rmsnorm(D_MODEL, 1e-5, gain, x)
        actual_tiny = adapters.run_rmsnorm(D_MODEL, 1e-5, gain, tiny)
    check_equal(actual.dtype, torch.bfloat16)
    check_close(actual.double(), expected, rtol=2**-7, atol=1e-2)
    check_close(actual_tiny.double(), expected_tiny, rtol=1e-5, atol=1e-7)


def test_silu_without_functional_extremes_and_float64():
    x = torch.tensor([-1000.0, -30.0, -1.0, 0.0, 1e-8, 2.5, 30.0, 1000.0], dtype=torch.float64)
    expected = x / (1 + torch.exp(-x))
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_silu(x)
    check_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_swiglu_without_functional_no_batch_dimension():
    w1, w2, w3 = scaled_matrices(8, (D_FF, D_MODEL), (D_MODEL, D_FF), (D_FF, D_MODEL))
    x = randn(D_MODEL, seed=9)
    gate, up = w1.double() @ x.double(), w3.double() @ x.double()
    expected = w2.double() @ (gate * torch.sigmoid(gate) * up)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_swiglu(D_MODEL, D_FF, w1, w2, w3, x)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_rope_without_functional_per_batch_positions():
    x = randn(2, 3, 5, 12, seed=10)
    positions = torch.tensor([[[0, 7, 3, 19, 19]], [[4, 5, 6, 7, 8]]])  # (batch, 1, seq)
    expected = rope_float64(x, positions, THETA)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_rope(12, THETA, 20, x, positions)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_softmax_without_functional_float64_and_infinite_logits():
    x = randn(4, 6, seed=11, scale=30.0, dtype=torch.float64)
    x[0, :3] = -math.inf
    x[1, 2] = 1e300
    expected = torch.exp(x - x.amax(0, keepdim=True))
    expected = expected / expected.sum(0, keepdim=True)
    expected_rows = torch.exp(x - x.amax(-1, keepdim=True))
    expected_rows = expected_rows / expected_rows.sum(-1, keepdim=True)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_softmax(x, 0)
        actual_rows = adapters.run_softmax(x, -1)
    check_close(actual, expected, rtol=1e-12, atol=1e-15)
    check_close(actual_rows, expected_rows, rtol=1e-12, atol=1e-15)


def test_sdpa_without_functional_fully_masked_rows_and_broadcast_mask():
    q, k, v = randn(3, 2, 5, 4, seed=12), randn(3, 2, 6, 4, seed=13), randn(3, 2, 6, 3, seed=14)
    mask = torch.rand(3, 1, 5, 6, generator=generator(15)) > 0.5  # broadcast over the heads
    mask[1, 0, 2] = False  # a query that sees nothing: zeros
    expected = attention_float64(q, k, v, mask)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_scaled_dot_product_attention(q, k, v, mask)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-6)


def test_mha_without_functional_six_heads_and_no_batch():
    weights = scaled_matrices(16, *[(D_MODEL, D_MODEL)] * 4)
    x = randn(7, D_MODEL, seed=17)
    expected = self_attention_float64(x, *weights, NUM_HEADS)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, *weights, x)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_mha_rope_without_functional_shifted_positions():
    weights = scaled_matrices(18, *[(D_MODEL, D_MODEL)] * 4)
    x = randn(3, 6, D_MODEL, seed=19)
    positions = torch.tensor([[10, 11, 12, 13, 14, 15], [0, 2, 4, 6, 8, 10], [1, 1, 2, 3, 5, 8]])
    expected = torch.stack(
        [self_attention_float64(x[row], *weights, NUM_HEADS, THETA, positions[row]) for row in range(3)]
    )
    expected_implicit = self_attention_float64(x, *weights, NUM_HEADS, THETA)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_multihead_self_attention_with_rope(
            D_MODEL, NUM_HEADS, 16, THETA, *weights, x, token_positions=positions
        )
        actual_implicit = adapters.run_multihead_self_attention_with_rope(D_MODEL, NUM_HEADS, 6, THETA, *weights, x)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-5)
    check_close(actual_implicit.double(), expected_implicit, rtol=1e-5, atol=1e-5)


def test_transformer_block_without_functional_one_token_and_full_context():
    weights = block_weights(20)
    x = randn(4, 1, D_MODEL, seed=21)
    expected = block_float64(x, weights, THETA)
    x_full = randn(1, 8, D_MODEL, seed=22)
    expected_full = block_float64(x_full, weights, THETA)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_transformer_block(D_MODEL, NUM_HEADS, D_FF, 8, THETA, weights, x)
        actual_full = adapters.run_transformer_block(D_MODEL, NUM_HEADS, D_FF, 8, THETA, weights, x_full)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-5)
    check_close(actual_full.double(), expected_full, rtol=1e-5, atol=1e-5)


def test_transformer_lm_without_functional_one_layer_odd_vocabulary_cs336_names():
    weights = {f"layers.0.{key}": value for key, value in block_weights(23).items()}
    weights["token_embeddings.weight"] = randn(VOCAB, D_MODEL, seed=24)
    weights["ln_final.weight"] = 1.0 + randn(D_MODEL, seed=25, scale=0.2)
    (weights["lm_head.weight"],) = scaled_matrices(26, (VOCAB, D_MODEL))
    tokens = torch.randint(0, VOCAB, (3, 10), generator=generator(27))
    layer = {key.removeprefix("layers.0."): value for key, value in weights.items() if key.startswith("layers.0.")}
    hidden = block_float64(weights["token_embeddings.weight"][tokens], layer, THETA)
    expected = rms_norm_float64(hidden, weights["ln_final.weight"]) @ weights["lm_head.weight"].double().T
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_transformer_lm(VOCAB, 10, D_MODEL, 1, NUM_HEADS, D_FF, THETA, weights, tokens)
    check_close(actual.double(), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Part 3
# ---------------------------------------------------------------------------------------------


def test_log_softmax_without_functional_first_dimension_and_huge_logits():
    x = randn(5, 3, 4, seed=30, scale=1000.0)
    expected = x.double() - torch.logsumexp(x.double(), dim=0, keepdim=True)
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_log_softmax(x, 0)
    check_close(actual.double(), expected, rtol=1e-6, atol=1e-3)


def test_cross_entropy_without_functional_ignored_targets_and_huge_logits():
    logits = randn(2, 3, 4, 9, seed=31, scale=1e4)
    targets = torch.randint(0, 9, (2, 3, 4), generator=generator(32))
    targets[1] = 7  # ignored
    shifted = logits.double() - logits.double().amax(-1, keepdim=True)
    losses = torch.logsumexp(shifted, -1) - shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    expected = losses[targets != 7].mean()  # class 7 is the ignored one, wherever it appears
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_cross_entropy(logits, targets, ignore_index=7)
        all_ignored = adapters.run_cross_entropy(logits, torch.full_like(targets, 7), ignore_index=7)
    check_close(actual.double(), expected, rtol=1e-5, atol=1e-3)
    check_close(all_ignored.double(), torch.tensor(0.0, dtype=torch.float64), rtol=0, atol=0)


def test_perplexity_without_functional_ignored_targets():
    logits = randn(4, 6, seed=33, scale=2.0)
    targets = torch.tensor([0, 5, -1, 2])
    log_probabilities = logits.double().log_softmax(-1)
    kept = [row for row in range(4) if targets[row] >= 0]
    expected = torch.exp(-torch.stack([log_probabilities[row, targets[row]] for row in kept]).mean())
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_perplexity(logits, targets, ignore_index=-1)
    check_close(actual.double(), expected, rtol=1e-5, atol=0)


def test_token_accuracy_without_functional_every_position():
    logits = randn(2, 5, 4, seed=34)
    targets = torch.randint(0, 4, (2, 5), generator=generator(35))
    expected = (logits.argmax(-1) == targets).double().mean()
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_token_accuracy(logits, targets)
    check_close(actual.double(), expected, rtol=1e-6, atol=1e-7)


def test_gradient_clipping_without_clip_grad_norm_missing_gradients_and_small_norms():
    g = generator(36)
    parameters = [nn.Parameter(torch.randn(shape, generator=g)) for shape in [(3, 3), (4,), (2, 5)]]
    parameters[0].grad = torch.randn(3, 3, generator=g) * 5.0
    parameters[2].grad = torch.randn(2, 5, generator=g) * 5.0  # parameters[1] has no gradient
    gradients = [parameters[0].grad.clone().double(), parameters[2].grad.clone().double()]
    expected_norm = torch.sqrt(sum((gradient**2).sum() for gradient in gradients))
    factor = 2.0 / (expected_norm + 1e-6)
    small = [nn.Parameter(torch.zeros(4))]
    small[0].grad = torch.full((4,), 0.01)
    with forbidden_shortcuts("Part 3"):
        norm = adapters.run_gradient_clipping(parameters, 2.0)
        small_norm = adapters.run_gradient_clipping(small, 1.0)
    check_close(float(norm), float(expected_norm), rtol=1e-5, atol=0)
    check_equal(parameters[1].grad is None, True)
    check_close(
        [parameters[0].grad.double(), parameters[2].grad.double()],
        [gradient * factor for gradient in gradients],
        rtol=1e-5,
        atol=1e-6,
    )
    check_close(float(small_norm), 0.02, rtol=1e-5, atol=0)
    check_equal(small[0].grad, torch.full((4,), 0.01))


def test_adamw_without_torch_optim_two_groups_and_a_changing_learning_rate():
    g = generator(37)
    start = [torch.randn(4, 3, generator=g), torch.randn(3, generator=g)]
    ours = [nn.Parameter(t.clone()) for t in start]
    theirs = [nn.Parameter(t.clone()) for t in start]
    gradients = [[torch.randn(t.shape, generator=g) for t in start] for _ in range(5)]

    def groups(parameters):
        return [{"params": [parameters[0]], "weight_decay": 0.05}, {"params": [parameters[1]], "weight_decay": 0.0}]

    reference = torch.optim.AdamW(groups(theirs), lr=0.02, betas=(0.9, 0.99), eps=1e-7)
    for step, step_gradients in enumerate(gradients):
        for group in reference.param_groups:
            group["lr"] = 0.02 / (step + 1)
        for parameter, gradient in zip(theirs, step_gradients, strict=True):
            parameter.grad = gradient.clone()
        reference.step()
    optimizer = adapters.get_adamw_cls()(groups(ours), lr=0.02, betas=(0.9, 0.99), eps=1e-7)
    with forbidden_shortcuts("Part 3"):
        for step, step_gradients in enumerate(gradients):
            for group in optimizer.param_groups:
                group["lr"] = 0.02 / (step + 1)
            for parameter, gradient in zip(ours, step_gradients, strict=True):
                parameter.grad = gradient.clone()
            optimizer.step()
    check_close([p.detach() for p in ours], [p.detach() for p in theirs], rtol=1e-6, atol=1e-6)
