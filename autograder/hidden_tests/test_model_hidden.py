"""Hidden tests for the transformer (Part 2): layers, attention, RoPE, the LM and the accounting.

Everything goes through ``adapters.py``. The references are written here and are independent of
``cs288_lm``: float64 computations straight from the definitions (a per-query attention loop, a
per-head loop for multi-head attention, RoPE as explicit 2x2 rotation matrices built from
``math.cos``/``math.sin``, one-hot embedding lookups), ``torch.nn.functional`` where it has the
same operation, properties that any correct model has (causality, RoPE's dependence on relative
positions only, batch rows not mixing), hand-computed parameter/FLOP/memory counts, and a few
``.npz`` snapshots of the reference solution. Inputs differ from the public tests: d_model 48
with 3 or 6 heads, odd vocabularies, 1 or 3 layers, seq_len 1, batch 1, no batch dimension or
extra leading dimensions, non-contiguous views, shifted/shuffled/per-batch token positions,
theta 500 and 1e6, float64 and bfloat16 inputs, huge and tiny magnitudes, random, broadcast and
fully masked attention masks.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

import adapters
from tests.common import generator
from tests.graded import check_close, check_equal

# Configuration used by the block and LM tests (the public tests use other sizes).
D_MODEL, D_FF = 48, 80
VOCAB = 37  # odd, prime
CONTEXT = 10


def randn(g: torch.Generator, *shape: int, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype) * scale


# --------------------------------------------------------------------------- independent references


def reference_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.double()
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight.double()


def reference_silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def reference_swiglu(x, w1, w2, w3) -> torch.Tensor:
    x = x.double()
    return (reference_silu(x @ w1.double().T) * (x @ w3.double().T)) @ w2.double().T


@functools.cache
def rotation_matrix(position: int, d: int, theta: float) -> torch.Tensor:
    """The d x d matrix of RoPE at ``position``: dimension k rotates with k + d/2 by p * theta^(-2k/d)."""
    matrix = torch.zeros(d, d, dtype=torch.float64)
    half = d // 2
    for k in range(half):
        angle = position * theta ** (-2 * k / d)
        c, s = math.cos(angle), math.sin(angle)
        matrix[k, k], matrix[k, k + half] = c, -s
        matrix[k + half, k], matrix[k + half, k + half] = s, c
    return matrix


def reference_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate every vector of ``x`` (..., seq, d) by the matrix of its own position (float64)."""
    d = x.shape[-1]
    rows = x.double().reshape(-1, d)
    flat_positions = torch.broadcast_to(positions, x.shape[:-1]).reshape(-1).tolist()
    matrices = torch.stack([rotation_matrix(int(p), d, float(theta)) for p in flat_positions])
    return torch.einsum("rij,rj->ri", matrices, rows).reshape(x.shape)


def reference_attention(Q, K, V, mask=None) -> torch.Tensor:
    """softmax(q.k / sqrt(d_k)) over the allowed keys, one query at a time; no allowed key -> zeros."""
    Q, K, V = Q.double(), K.double(), V.double()
    n_queries, n_keys, d_k, d_v = Q.shape[-2], K.shape[-2], Q.shape[-1], V.shape[-1]
    if mask is None:
        mask = torch.ones(n_queries, n_keys, dtype=torch.bool)
    lead = torch.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2], mask.shape[:-2])
    Q = Q.expand(*lead, n_queries, d_k).reshape(-1, n_queries, d_k)
    K = K.expand(*lead, n_keys, d_k).reshape(-1, n_keys, d_k)
    V = V.expand(*lead, n_keys, d_v).reshape(-1, n_keys, d_v)
    mask = mask.expand(*lead, n_queries, n_keys).reshape(-1, n_queries, n_keys)
    rows = []
    for b in range(Q.shape[0]):
        for i in range(n_queries):
            allowed = mask[b, i]
            if not allowed.any():
                rows.append(torch.zeros(d_v, dtype=torch.float64))
                continue
            scores = K[b][allowed] @ Q[b, i] / math.sqrt(d_k)
            weights = torch.exp(scores - scores.max())
            rows.append(weights / weights.sum() @ V[b][allowed])
    return torch.stack(rows).reshape(*lead, n_queries, d_v)


def reference_mha(x, wq, wk, wv, wo, num_heads, theta=None, positions=None) -> torch.Tensor:
    """Causal multi-head self-attention with one explicit loop over the heads (float64)."""
    x = x.double()
    seq, d_model = x.shape[-2], x.shape[-1]
    d_head = d_model // num_heads
    q, k, v = x @ wq.double().T, x @ wk.double().T, x @ wv.double().T
    if positions is None:
        positions = torch.arange(seq)
    causal = torch.tensor([[j <= i for j in range(seq)] for i in range(seq)])
    heads = []
    for h in range(num_heads):
        part = slice(h * d_head, (h + 1) * d_head)
        qh, kh, vh = q[..., part], k[..., part], v[..., part]
        if theta is not None:
            qh, kh = reference_rope(qh, positions, theta), reference_rope(kh, positions, theta)
        heads.append(reference_attention(qh, kh, vh, causal))
    return torch.cat(heads, dim=-1) @ wo.double().T


def reference_block(x, weights, num_heads, theta, prefix="") -> torch.Tensor:
    w = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
    x = x.double()
    attention_in = reference_rmsnorm(x, w["ln1.weight"], 1e-5)
    x = x + reference_mha(
        attention_in,
        w["attn.q_proj.weight"],
        w["attn.k_proj.weight"],
        w["attn.v_proj.weight"],
        w["attn.output_proj.weight"],
        num_heads,
        theta,
    )
    ffn_in = reference_rmsnorm(x, w["ln2.weight"], 1e-5)
    return x + reference_swiglu(ffn_in, w["ffn.w1.weight"], w["ffn.w2.weight"], w["ffn.w3.weight"])


def reference_lm(tokens, weights, num_layers, num_heads, theta) -> torch.Tensor:
    """Logits from CS336-named weights: one-hot embedding, blocks, ln_final, lm_head (float64)."""
    embeddings = weights["token_embeddings.weight"].double()
    x = F.one_hot(tokens.long(), embeddings.shape[0]).double() @ embeddings
    for layer in range(num_layers):
        x = reference_block(x, weights, num_heads, theta, prefix=f"layers.{layer}.")
    x = reference_rmsnorm(x, weights["ln_final.weight"], 1e-5)
    return x @ weights["lm_head.weight"].double().T


# --------------------------------------------------------------------------- weights


def block_weights(g: torch.Generator, d_model: int = D_MODEL, d_ff: int = D_FF, prefix: str = "") -> dict:
    s, s_ff = d_model**-0.5, d_ff**-0.5
    return {
        f"{prefix}attn.q_proj.weight": randn(g, d_model, d_model, scale=s),
        f"{prefix}attn.k_proj.weight": randn(g, d_model, d_model, scale=s),
        f"{prefix}attn.v_proj.weight": randn(g, d_model, d_model, scale=s),
        f"{prefix}attn.output_proj.weight": randn(g, d_model, d_model, scale=s),
        f"{prefix}ln1.weight": 1 + randn(g, d_model, scale=0.2),
        f"{prefix}ln2.weight": 1 + randn(g, d_model, scale=0.2),
        f"{prefix}ffn.w1.weight": randn(g, d_ff, d_model, scale=s),
        f"{prefix}ffn.w2.weight": randn(g, d_model, d_ff, scale=s_ff),
        f"{prefix}ffn.w3.weight": randn(g, d_ff, d_model, scale=s),
    }


def lm_weights(seed: int, num_layers: int, vocab: int = VOCAB, d_model: int = D_MODEL, d_ff: int = D_FF) -> dict:
    """Random LM weights under CS336's names (``ln_final``, ``lm_head``)."""
    g = generator(seed)
    weights = {"token_embeddings.weight": randn(g, vocab, d_model)}
    for layer in range(num_layers):
        weights.update(block_weights(g, d_model, d_ff, prefix=f"layers.{layer}."))
    weights["ln_final.weight"] = 1 + randn(g, d_model, scale=0.2)
    weights["lm_head.weight"] = randn(g, vocab, d_model, scale=d_model**-0.5)
    return weights


def to_our_names(weights: dict) -> dict:
    renames = {"ln_final.weight": "final_ln.weight", "lm_head.weight": "output.weight"}
    return {renames.get(key, key): value for key, value in weights.items()}


def attention_weights(g: torch.Generator, d_model: int = D_MODEL) -> list[torch.Tensor]:
    return [randn(g, d_model, d_model, scale=d_model**-0.5) for _ in range(4)]


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """``actual`` (from student code) is ``expected`` within tolerance, same shape; compared in float64.

    Graded against the reference solution's ``actual``.
    """
    check_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


def agree(a: torch.Tensor, b: torch.Tensor, shape: tuple[int, ...], rtol: float, atol: float) -> None:
    """Two outputs of the student's own code agree: ``|a - b| <= atol + rtol * |b|`` (shape ``shape``).

    For properties (causality, one row at a time, key names) checked at tolerances below the float32
    rounding that separates two correct implementations: what is recorded is how far ``a`` is from
    ``b`` beyond the relative allowance, judged against zeros (``against="expected"``), rather than
    ``a`` itself against the reference solution's ``a``.
    """
    a, b = a.double(), b.double()
    excess = ((a - b).abs() - rtol * b.abs()).clamp(min=0)
    check_close(excess, torch.zeros(shape, dtype=torch.float64), rtol=0, atol=atol, against="expected")


def check_within(name: str, value: float, low: float, high: float) -> None:
    """``low <= value <= high`` for a statistic of randomly initialised weights.

    Two correct models draw different numbers, so this is graded against the bounds
    (``against="expected"``), not against the reference solution's own draw.
    """
    check_close({name: value}, {name: (low + high) / 2}, rtol=0, atol=(high - low) / 2, against="expected")


def non_finite(t: torch.Tensor) -> int:
    return int((~torch.isfinite(t)).sum())


# --------------------------------------------------------------------------- Linear and Embedding


def test_linear_with_extra_leading_dims_and_odd_sizes():
    g = generator(1)
    weight, x = randn(g, 13, 7), randn(g, 2, 3, 5, 7)
    out = adapters.run_linear(7, 13, weight, x)
    close(out, F.linear(x.double(), weight.double()))


def test_linear_on_non_contiguous_input_and_single_output():
    g = generator(2)
    weight = randn(g, 1, 9)
    x = randn(g, 9, 4, 3).permute(2, 1, 0)  # (3, 4, 9), not contiguous
    assert not x.is_contiguous()
    out = adapters.run_linear(9, 1, weight, x)
    close(out, (x.double() * weight.double()[0]).sum(-1, keepdim=True))


def test_linear_on_a_single_vector():
    g = generator(3)
    weight, x = randn(g, 5, 11), randn(g, 11)
    close(adapters.run_linear(11, 5, weight, x), weight.double() @ x.double())


def test_embedding_odd_vocab_with_3d_ids_and_repeats():
    g = generator(4)
    weight = randn(g, 31, 5)
    ids = torch.randint(0, 31, (3, 4, 2), generator=g)
    ids[0, 0, 0], ids[-1, -1, -1], ids[1, 2, 1] = 0, 30, ids[0, 1, 0]
    out = adapters.run_embedding(31, 5, weight, ids)
    close(out, F.one_hot(ids, 31).double() @ weight.double(), rtol=0, atol=0)


def test_embedding_of_scalar_id_and_non_contiguous_ids():
    g = generator(5)
    weight = randn(g, 19, 6)
    close(adapters.run_embedding(19, 6, weight, torch.tensor(18)), weight[18], rtol=0, atol=0)
    ids = torch.randint(0, 19, (7, 2), generator=g).T
    assert not ids.is_contiguous()
    close(adapters.run_embedding(19, 6, weight, ids), F.embedding(ids, weight), rtol=0, atol=0)


# --------------------------------------------------------------------------- RMSNorm, SiLU, SwiGLU


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rmsnorm_eps_inside_the_square_root_with_tiny_inputs(eps):
    g = generator(6)
    weight = 1 + randn(g, 24, scale=0.3)
    x = randn(g, 3, 24, scale=1e-4)  # mean(x^2) ~ 1e-8: eps dominates
    out = adapters.run_rmsnorm(24, eps, weight, x)
    close(out, reference_rmsnorm(x, weight, eps), rtol=1e-5, atol=1e-7)


def test_rmsnorm_huge_magnitude_inputs():
    g = generator(7)
    weight = randn(g, 32)
    x = randn(g, 2, 5, 32, scale=1e15)
    out = adapters.run_rmsnorm(32, 1e-6, weight, x)
    check_equal(non_finite(out), 0)
    close(out, reference_rmsnorm(x, weight, 1e-6), rtol=1e-5, atol=1e-6)


def test_rmsnorm_mixed_magnitudes_per_row():
    """Each row is normalized by its own RMS: rows of magnitude 0.1 .. 1e6 all come out with unit RMS."""
    g = generator(8)
    weight = torch.ones(16)
    scales = torch.tensor([0.1, 1.0, 1e3, 1e6]).unsqueeze(-1)
    x = randn(g, 4, 16) * scales
    out = adapters.run_rmsnorm(16, 1e-6, weight, x)
    close(out, reference_rmsnorm(x, weight, 1e-6), rtol=1e-5, atol=1e-5)
    close(out.pow(2).mean(-1), torch.ones(4), rtol=1e-3, atol=1e-3)


def test_rmsnorm_on_single_vector_without_batch_dims():
    g = generator(9)
    weight, x = randn(g, 10), randn(g, 10)
    out = adapters.run_rmsnorm(10, 1e-5, weight, x)
    close(out, reference_rmsnorm(x, weight, 1e-5))


def test_rmsnorm_bf16_input_keeps_dtype_and_is_accurate():
    g = generator(10)
    weight = 1 + randn(g, 64, scale=0.5)
    x = (randn(g, 2, 5, 64, scale=30.0) + 5).to(torch.bfloat16)
    out = adapters.run_rmsnorm(64, 1e-5, weight, x)
    check_equal(out.dtype, torch.bfloat16)
    expected = reference_rmsnorm(x, weight, 1e-5)
    close(out, expected, rtol=1e-2, atol=1e-2)


def test_rmsnorm_float64_input_keeps_dtype():
    g = generator(11)
    weight = randn(g, 12)
    x = randn(g, 4, 12, dtype=torch.float64)
    out = adapters.run_rmsnorm(12, 1e-5, weight, x)
    check_equal(out.dtype, torch.float64)
    close(out, reference_rmsnorm(x, weight, 1e-5), rtol=1e-5, atol=1e-6)


def test_rmsnorm_non_contiguous_input():
    g = generator(12)
    weight = randn(g, 8)
    x = randn(g, 8, 6).T
    assert not x.is_contiguous()
    close(adapters.run_rmsnorm(8, 1e-5, weight, x), reference_rmsnorm(x, weight, 1e-5))


def test_silu_float64_over_a_wide_range():
    x = torch.cat([torch.linspace(-50, 50, 201, dtype=torch.float64), torch.tensor([0.0, -1e-8, 1e-8])])
    out = adapters.run_silu(x)
    check_equal(out.dtype, torch.float64)
    close(out, F.silu(x), rtol=1e-12, atol=1e-14)


def test_silu_extreme_float32_values_are_finite():
    x = torch.tensor([-1e4, -200.0, -90.0, 90.0, 200.0, 1e4])
    out = adapters.run_silu(x)
    check_equal(non_finite(out), 0)
    close(out, torch.tensor([0.0, 0.0, 0.0, 90.0, 200.0, 1e4]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, D_MODEL), (3, D_MODEL), (2, 2, 4, D_MODEL)])
def test_swiglu_odd_d_ff_and_various_leading_dims(shape):
    g = generator(13)
    d_ff = 77
    w1, w2, w3 = randn(g, d_ff, D_MODEL, scale=0.15), randn(g, D_MODEL, d_ff, scale=0.1), randn(g, d_ff, D_MODEL)
    x = randn(g, *shape)
    out = adapters.run_swiglu(D_MODEL, d_ff, w1, w2, w3, x)
    close(out, reference_swiglu(x, w1, w2, w3), rtol=1e-5, atol=1e-4)


def test_swiglu_gate_and_up_projections_are_not_interchangeable():
    """w1 goes through SiLU and w3 does not: swapping them changes the output."""
    g = generator(14)
    w1, w2, w3 = randn(g, 20, 6), randn(g, 6, 20), randn(g, 20, 6)
    x = randn(g, 4, 6)
    out = adapters.run_swiglu(6, 20, w1, w2, w3, x)
    close(out, reference_swiglu(x, w1, w2, w3), rtol=1e-5, atol=1e-4)
    swapped = adapters.run_swiglu(6, 20, w3, w2, w1, x)
    close(swapped, reference_swiglu(x, w3, w2, w1), rtol=1e-5, atol=1e-4)  # differs from out by far more


# --------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("dim", [0, 1, -2, 2])
def test_softmax_float64_along_each_dimension(dim):
    x = randn(generator(15), 3, 4, 5, scale=3.0, dtype=torch.float64)
    out = adapters.run_softmax(x, dim)
    check_equal(out.dtype, torch.float64)
    close(out, torch.softmax(x, dim=dim), rtol=1e-12, atol=1e-14)


def test_softmax_huge_values_and_negative_infinity():
    x = torch.tensor(
        [
            [1e4, 1e4 - 1, -1e4, float("-inf")],
            [-1e4, -1e4, -1e4 + 2, float("-inf")],
            [3e38, 3e38, 0.0, -3e38],
        ]
    )
    out = adapters.run_softmax(x, -1)
    check_equal(non_finite(out), 0)
    close(out, torch.softmax(x.double(), dim=-1), rtol=1e-5, atol=1e-7)


def test_softmax_over_a_dimension_of_size_one_is_one():
    x = randn(generator(16), 4, 1, 3, scale=100.0)
    close(adapters.run_softmax(x, 1), torch.ones(4, 1, 3), rtol=0, atol=0)
    # Over the dimension of size 3 of the same tensor (scaled down) the softmax is not trivial.
    close(adapters.run_softmax(x / 100, 2), torch.softmax(x.double() / 100, dim=2), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- scaled dot-product attention


def qkv(seed, lead, n_queries=5, n_keys=7, d_k=6, d_v=3, dtype=torch.float64, scale=1.0):
    g = generator(seed)
    return (
        randn(g, *lead, n_queries, d_k, dtype=dtype, scale=scale),
        randn(g, *lead, n_keys, d_k, dtype=dtype, scale=scale),
        randn(g, *lead, n_keys, d_v, dtype=dtype),
    )


def test_sdpa_extra_leading_dims_more_keys_than_queries_float64():
    Q, K, V = qkv(17, (2, 3))
    out = adapters.run_scaled_dot_product_attention(Q, K, V)
    check_equal(out.dtype, torch.float64)
    close(out, reference_attention(Q, K, V), rtol=1e-10, atol=1e-12)


def test_sdpa_without_leading_dims():
    Q, K, V = qkv(18, (), n_queries=4, n_keys=4, d_k=8, d_v=8)
    close(adapters.run_scaled_dot_product_attention(Q, K, V), reference_attention(Q, K, V), rtol=1e-10, atol=1e-12)


def test_sdpa_random_mask_broadcast_against_batch_and_heads():
    Q, K, V = qkv(19, (2, 3))
    mask = torch.rand(5, 7, generator=generator(20)) < 0.6
    mask[:, 0] = True  # no fully masked row here
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    close(out, reference_attention(Q, K, V, mask), rtol=1e-10, atol=1e-12)


def test_sdpa_per_batch_mask_broadcast_over_heads():
    Q, K, V = qkv(21, (2, 3))
    mask = torch.rand(2, 1, 5, 7, generator=generator(22)) < 0.5
    mask[..., 3] = True
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    close(out, reference_attention(Q, K, V, mask), rtol=1e-10, atol=1e-12)


def test_sdpa_fully_masked_rows_give_zeros_not_nan():
    Q, K, V = qkv(23, (2,), dtype=torch.float32)
    mask = torch.rand(2, 5, 7, generator=generator(24)) < 0.5
    mask[0, 1] = False
    mask[1, 4] = False
    mask[0, 0] = True
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    check_equal(non_finite(out), 0)
    check_equal(out[0, 1].double(), torch.zeros(3, dtype=torch.float64))
    check_equal(out[1, 4].double(), torch.zeros(3, dtype=torch.float64))
    close(out, reference_attention(Q, K, V, mask), rtol=1e-5, atol=1e-6)


def test_sdpa_single_allowed_key_copies_its_value():
    Q, K, V = qkv(25, (3,), n_queries=4, n_keys=4)
    allowed = torch.tensor([2, 0, 3, 3])
    mask = F.one_hot(allowed, 4).bool()  # (4, 4): query i sees only key allowed[i]
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    close(out, V[:, allowed], rtol=1e-12, atol=1e-12)


def test_sdpa_single_query_and_key_returns_the_value():
    Q, K, V = qkv(26, (1,), n_queries=1, n_keys=1, dtype=torch.float32)
    close(adapters.run_scaled_dot_product_attention(Q, K, V), V, rtol=1e-6, atol=1e-6)
    # A second key and value: the single query now mixes the two values.
    _, K2, V2 = qkv(100, (1,), n_queries=1, n_keys=1, dtype=torch.float32)
    K, V = torch.cat((K, K2), dim=-2), torch.cat((V, V2), dim=-2)
    close(adapters.run_scaled_dot_product_attention(Q, K, V), reference_attention(Q, K, V), rtol=1e-5, atol=1e-6)


def test_sdpa_large_scores_are_stable():
    Q, K, V = qkv(27, (2,), dtype=torch.float32, scale=40.0)  # scores in the hundreds/thousands
    mask = torch.ones(5, 7, dtype=torch.bool).tril()
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    check_equal(non_finite(out), 0)
    close(out, reference_attention(Q, K, V, mask), rtol=1e-4, atol=1e-4)


def test_sdpa_non_contiguous_inputs():
    g = generator(28)
    Q = randn(g, 2, 6, 5, dtype=torch.float64).transpose(-1, -2)  # (2, 5, 6)
    K = randn(g, 7, 2, 6, dtype=torch.float64).transpose(0, 1)  # (2, 7, 6)
    V = randn(g, 2, 3, 7, dtype=torch.float64).transpose(-1, -2)  # (2, 7, 3)
    assert not (Q.is_contiguous() or K.is_contiguous() or V.is_contiguous())
    out = adapters.run_scaled_dot_product_attention(Q, K, V)
    close(out, reference_attention(Q, K, V), rtol=1e-10, atol=1e-12)


def test_sdpa_matches_torch_functional_with_boolean_mask():
    Q, K, V = qkv(29, (4,), n_queries=6, n_keys=6, d_k=16, d_v=16, dtype=torch.float32)
    mask = torch.rand(6, 6, generator=generator(30)) < 0.7
    mask.fill_diagonal_(True)
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- RoPE


def test_rope_extra_leading_dims_theta_500(numpy_snapshot):
    x = randn(generator(31), 2, 3, 9, 8)
    positions = torch.arange(9)
    out = adapters.run_rope(8, 500.0, 16, x, positions)
    close(out, reference_rope(x, positions, 500.0), rtol=1e-5, atol=1e-5)
    numpy_snapshot.assert_match(out, "hidden_rope_theta500_leading_dims")


def test_rope_with_offset_and_shuffled_positions():
    g = generator(32)
    x = randn(g, 2, 7, 12)
    for positions in (torch.arange(20, 27), torch.randperm(30, generator=g)[:7], torch.tensor([5, 5, 0, 29, 1, 5, 3])):
        out = adapters.run_rope(12, 10000.0, 30, x, positions)
        close(out, reference_rope(x, positions, 10000.0), rtol=1e-5, atol=1e-5)


def test_rope_with_per_batch_positions():
    g = generator(33)
    x = randn(g, 3, 6, 12)
    positions = torch.stack([torch.arange(6), torch.arange(10, 16), torch.randperm(16, generator=g)[:6]])
    out = adapters.run_rope(12, 500.0, 16, x, positions)
    close(out, reference_rope(x, positions, 500.0), rtol=1e-5, atol=1e-5)
    for b in range(3):
        agree(out[b], adapters.run_rope(12, 500.0, 16, x[b], positions[b]), (6, 12), rtol=1e-6, atol=1e-6)


def test_rope_per_batch_positions_broadcast_over_heads():
    g = generator(34)
    x = randn(g, 2, 3, 5, 8)  # (batch, heads, seq, d_k)
    positions = torch.tensor([[[0, 1, 2, 3, 4]], [[7, 3, 9, 1, 2]]])  # (batch, 1, seq)
    out = adapters.run_rope(8, 10000.0, 12, x, positions)
    close(out, reference_rope(x, positions, 10000.0), rtol=1e-5, atol=1e-5)


def test_rope_theta_one_million_at_high_positions():
    x = randn(generator(35), 2, 48, 16)
    positions = torch.arange(2000, 2048)
    out = adapters.run_rope(16, 1e6, 2048, x, positions)
    # cos/sin of angles up to ~2000 rad in float32: allow a few 1e-4.
    close(out, reference_rope(x, positions, 1e6), rtol=0, atol=5e-4)


def test_rope_position_zero_and_seq_len_one():
    g = generator(36)
    x = randn(g, 1, 1, 10)
    close(adapters.run_rope(10, 10000.0, 8, x, torch.tensor([0])), x, rtol=1e-6, atol=1e-6)
    out = adapters.run_rope(10, 10000.0, 8, x, torch.tensor([7]))
    close(out, reference_rope(x, torch.tensor([7]), 10000.0), rtol=1e-5, atol=1e-5)


def test_rope_pairs_dimension_k_with_k_plus_half():
    """A vector with only dimension 1 set rotates into dimension 1 + d/2 (rotate-half pairing)."""
    d = 8
    x = torch.zeros(1, d)
    x[0, 1] = 1.0
    angle = 3 * 10000.0 ** (-2 / d)
    out = adapters.run_rope(d, 10000.0, 4, x, torch.tensor([3]))
    expected = torch.zeros(1, d)
    expected[0, 1], expected[0, 1 + d // 2] = math.cos(angle), math.sin(angle)
    close(out, expected, rtol=1e-5, atol=1e-6)


def test_rope_preserves_the_norm_of_each_rotated_pair():
    x = randn(generator(37), 4, 11, 14)
    positions = torch.arange(11) * 3
    out = adapters.run_rope(14, 500.0, 40, x, positions)

    def pair_norms(t):  # |(x_k, x_{k+7})|^2 for k = 0 .. 6
        return t[..., :7] ** 2 + t[..., 7:] ** 2

    close(pair_norms(out), pair_norms(x), rtol=1e-5, atol=1e-5)


def test_rope_dot_products_depend_only_on_relative_position():
    g = generator(38)
    q, k = randn(g, 1, 16), randn(g, 1, 16)

    def score(m, n):
        rq = adapters.run_rope(16, 10000.0, 64, q, torch.tensor([m]))
        rk = adapters.run_rope(16, 10000.0, 64, k, torch.tensor([n]))
        return float((rq * rk).sum())

    def reference_score(m, n):
        return float(
            (reference_rope(q, torch.tensor([m]), 10000.0) * reference_rope(k, torch.tensor([n]), 10000.0)).sum()
        )

    base = score(5, 2)
    for shift in (1, 17, 50):
        # |base| ~ 1.26 > 1, so rtol 1e-4 alone is pytest.approx(base, rel=1e-4, abs=1e-4)
        check_close(score(5 + shift, 2 + shift), base, rtol=1e-4, atol=0)
    # a different offset gives a different score (~ -2.12 against ~ -1.26)
    check_close(score(9, 2), reference_score(9, 2), rtol=1e-4, atol=0)


def test_rope_float64_and_non_contiguous_input():
    g = generator(39)
    x = randn(g, 6, 5, 2, dtype=torch.float64).permute(2, 1, 0)  # (2, 5, 6)
    assert not x.is_contiguous()
    positions = torch.tensor([4, 0, 3, 1, 2])
    out = adapters.run_rope(6, 500.0, 5, x, positions)
    check_equal(out.dtype, torch.float64)
    close(out, reference_rope(x, positions, 500.0), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- multi-head self-attention


@pytest.mark.parametrize("num_heads", [3, 6])
def test_mha_matches_per_head_loop(num_heads):
    g = generator(40 + num_heads)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, 2, 9, D_MODEL)
    out = adapters.run_multihead_self_attention(D_MODEL, num_heads, wq, wk, wv, wo, x)
    close(out, reference_mha(x, wq, wk, wv, wo, num_heads), rtol=1e-4, atol=1e-5)


def test_mha_number_of_heads_changes_the_result():
    g = generator(41)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, 1, 6, D_MODEL)
    three = adapters.run_multihead_self_attention(D_MODEL, 3, wq, wk, wv, wo, x)
    six = adapters.run_multihead_self_attention(D_MODEL, 6, wq, wk, wv, wo, x)
    # the two references differ by far more than the tolerance
    close(three, reference_mha(x, wq, wk, wv, wo, 3), rtol=1e-4, atol=1e-5)
    close(six, reference_mha(x, wq, wk, wv, wo, 6), rtol=1e-4, atol=1e-5)


def test_mha_single_token_is_output_of_value_projection():
    """With one token, each head attends only to itself: out = W_o W_v x."""
    g = generator(42)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, 1, 1, D_MODEL)
    out = adapters.run_multihead_self_attention(D_MODEL, 6, wq, wk, wv, wo, x)
    close(out, x.double() @ wv.double().T @ wo.double().T, rtol=1e-5, atol=1e-5)


def test_mha_extra_leading_dims_and_no_batch_dim():
    g = generator(43)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, 2, 3, 5, D_MODEL)
    out = adapters.run_multihead_self_attention(D_MODEL, 3, wq, wk, wv, wo, x)
    close(out, reference_mha(x, wq, wk, wv, wo, 3), rtol=1e-4, atol=1e-5)
    single = adapters.run_multihead_self_attention(D_MODEL, 3, wq, wk, wv, wo, x[1, 2])
    close(single, reference_mha(x[1, 2], wq, wk, wv, wo, 3), rtol=1e-4, atol=1e-5)


def test_mha_non_contiguous_input():
    g = generator(44)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, D_MODEL, 6, 2).permute(2, 1, 0)
    assert not x.is_contiguous()
    out = adapters.run_multihead_self_attention(D_MODEL, 6, wq, wk, wv, wo, x)
    close(out, reference_mha(x, wq, wk, wv, wo, 6), rtol=1e-4, atol=1e-5)


def test_mha_is_causal():
    g = generator(45)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, 2, 8, D_MODEL)
    changed = x.clone()
    changed[:, 5] = randn(g, 2, D_MODEL)
    before = adapters.run_multihead_self_attention(D_MODEL, 3, wq, wk, wv, wo, x)
    after = adapters.run_multihead_self_attention(D_MODEL, 3, wq, wk, wv, wo, changed)
    agree(after[:, :5], before[:, :5], (2, 5, D_MODEL), rtol=1e-6, atol=1e-6)
    # from position 5 on the outputs follow the change (the references differ by far more than the tolerance)
    close(after[:, 5:], reference_mha(changed, wq, wk, wv, wo, 3)[:, 5:], rtol=1e-4, atol=1e-5)
    close(before[:, 5:], reference_mha(x, wq, wk, wv, wo, 3)[:, 5:], rtol=1e-4, atol=1e-5)


def test_mha_torch_backend_matches_reference_backend():
    g = generator(46)
    wq, wk, wv, wo = attention_weights(g)
    x = randn(g, 3, 7, D_MODEL)
    reference = adapters.run_multihead_self_attention(D_MODEL, 6, wq, wk, wv, wo, x, attention_backend="reference")
    fast = adapters.run_multihead_self_attention(D_MODEL, 6, wq, wk, wv, wo, x, attention_backend="torch")
    close(fast, reference, rtol=1e-5, atol=1e-5)


def run_mha_rope(num_heads, theta, max_seq_len, weights, x, positions):
    return adapters.run_multihead_self_attention_with_rope(
        D_MODEL, num_heads, max_seq_len, theta, *weights, x, positions
    )


def test_mha_rope_default_positions_theta_500(numpy_snapshot):
    g = generator(47)
    weights = attention_weights(g)
    x = randn(g, 2, 9, D_MODEL)
    out = run_mha_rope(3, 500.0, 9, weights, x, None)
    close(out, reference_mha(x, *weights, 3, theta=500.0), rtol=1e-4, atol=1e-5)
    numpy_snapshot.assert_match(out, "hidden_mha_rope_theta500")


def test_mha_rope_with_offset_positions():
    g = generator(48)
    weights = attention_weights(g)
    x = randn(g, 1, 8, D_MODEL)
    positions = torch.arange(30, 38)
    out = run_mha_rope(6, 10000.0, 64, weights, x, positions)
    close(out, reference_mha(x, *weights, 6, theta=10000.0, positions=positions), rtol=1e-4, atol=1e-5)


def test_mha_rope_is_invariant_to_shifting_all_positions():
    """Scores depend on position differences only and values are not rotated."""
    g = generator(49)
    weights = attention_weights(g)
    x = randn(g, 2, 7, D_MODEL)
    base = run_mha_rope(3, 10000.0, 128, weights, x, torch.arange(7))
    shifted = run_mha_rope(3, 10000.0, 128, weights, x, torch.arange(7) + 100)
    close(shifted, base, rtol=1e-4, atol=1e-4)
    no_rope = adapters.run_multihead_self_attention(D_MODEL, 3, *weights, x)
    # RoPE changes the output (the references differ by far more than the tolerance)
    close(base, reference_mha(x, *weights, 3, theta=10000.0), rtol=1e-4, atol=1e-5)
    close(no_rope, reference_mha(x, *weights, 3), rtol=1e-4, atol=1e-5)


def test_mha_rope_with_shuffled_positions():
    g = generator(50)
    weights = attention_weights(g)
    x = randn(g, 2, 6, D_MODEL)
    positions = torch.tensor([11, 2, 7, 0, 5, 9])
    out = run_mha_rope(6, 500.0, 12, weights, x, positions)
    close(out, reference_mha(x, *weights, 6, theta=500.0, positions=positions), rtol=1e-4, atol=1e-5)


def test_mha_rope_with_per_batch_positions():
    g = generator(51)
    weights = attention_weights(g)
    x = randn(g, 3, 5, D_MODEL)
    positions = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [9, 1, 4, 4, 0]])  # (batch, seq)
    out = run_mha_rope(3, 1e6, 16, weights, x, positions)
    close(out, reference_mha(x, *weights, 3, theta=1e6, positions=positions), rtol=1e-4, atol=1e-5)
    for b in range(3):
        close(out[b : b + 1], run_mha_rope(3, 1e6, 16, weights, x[b : b + 1], positions[b]), rtol=1e-5, atol=1e-5)


def test_mha_rope_single_token_at_any_position():
    g = generator(52)
    weights = attention_weights(g)
    x = randn(g, 1, 1, D_MODEL)
    out = run_mha_rope(6, 10000.0, 32, weights, x, torch.tensor([[23]]))
    close(out, x.double() @ weights[2].double().T @ weights[3].double().T, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- Transformer block


@pytest.mark.parametrize(
    ("num_heads", "batch", "seq", "theta"),
    [(6, 2, 7, 500.0), (3, 1, 1, 10000.0), (3, 3, 12, 1e6)],
)
def test_transformer_block_matches_reference(num_heads, batch, seq, theta):
    g = generator(53)
    weights = block_weights(g)
    x = randn(g, batch, seq, D_MODEL)
    out = adapters.run_transformer_block(D_MODEL, num_heads, D_FF, 12, theta, weights, x)
    close(out, reference_block(x, weights, num_heads, theta), rtol=1e-4, atol=1e-4)


def test_transformer_block_snapshot(numpy_snapshot):
    g = generator(54)
    weights = block_weights(g)
    x = randn(g, 2, 7, D_MODEL)
    out = adapters.run_transformer_block(D_MODEL, 6, D_FF, 16, 1e6, weights, x)
    numpy_snapshot.assert_match(out, "hidden_transformer_block_h6_theta1e6")


def test_transformer_block_torch_backend_matches_reference_backend():
    g = generator(55)
    weights = block_weights(g)
    x = randn(g, 2, 9, D_MODEL)
    reference = adapters.run_transformer_block(D_MODEL, 3, D_FF, 9, 500.0, weights, x, attention_backend="reference")
    fast = adapters.run_transformer_block(D_MODEL, 3, D_FF, 9, 500.0, weights, x, attention_backend="torch")
    close(fast, reference, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- Transformer LM


def run_lm(weights, tokens, num_layers, num_heads=3, theta=1e6, context=CONTEXT, vocab=VOCAB):
    return adapters.run_transformer_lm(vocab, context, D_MODEL, num_layers, num_heads, D_FF, theta, weights, tokens)


def tokens_for(seed, batch=2, seq=CONTEXT, vocab=VOCAB):
    return torch.randint(0, vocab, (batch, seq), generator=generator(seed))


@pytest.mark.parametrize(("num_layers", "num_heads", "theta"), [(1, 3, 1e6), (3, 6, 500.0)])
def test_transformer_lm_matches_reference_with_cs336_key_names(num_layers, num_heads, theta):
    weights = lm_weights(56, num_layers)
    tokens = tokens_for(57)
    logits = run_lm(weights, tokens, num_layers, num_heads, theta)
    check_equal(tuple(logits.shape), (2, CONTEXT, VOCAB))
    close(logits, reference_lm(tokens, weights, num_layers, num_heads, theta), rtol=1e-4, atol=1e-4)


def test_transformer_lm_our_key_names_give_the_same_logits():
    weights = lm_weights(58, 2)
    tokens = tokens_for(59)
    cs336 = run_lm(weights, tokens, 2)
    ours = run_lm(to_our_names(weights), tokens, 2)
    agree(ours, cs336, (2, CONTEXT, VOCAB), rtol=0, atol=0)
    close(ours, reference_lm(tokens, weights, 2, 3, 1e6), rtol=1e-4, atol=1e-4)


def test_transformer_lm_logits_snapshot(numpy_snapshot):
    weights = lm_weights(60, 3)
    tokens = tokens_for(61)
    logits = run_lm(weights, tokens, 3, num_heads=6, theta=500.0)
    numpy_snapshot.assert_match(logits, "hidden_transformer_lm_vocab37_3layers", rtol=1e-4, atol=1e-4)


def test_transformer_lm_single_token_batch_of_one():
    weights = lm_weights(62, 3)
    tokens = torch.tensor([[VOCAB - 1]])
    logits = run_lm(weights, tokens, 3)
    check_equal(tuple(logits.shape), (1, 1, VOCAB))
    close(logits, reference_lm(tokens, weights, 3, 3, 1e6), rtol=1e-4, atol=1e-4)


def test_transformer_lm_shorter_input_equals_prefix_of_longer():
    weights = lm_weights(63, 2)
    tokens = tokens_for(64)
    full = run_lm(weights, tokens, 2)
    short = run_lm(weights, tokens[:, :4], 2)
    close(short, full[:, :4], rtol=1e-5, atol=1e-5)


def test_transformer_lm_is_causal():
    weights = lm_weights(65, 3)
    tokens = tokens_for(66)
    changed = tokens.clone()
    changed[:, 6] = (changed[:, 6] + 1) % VOCAB
    before, after = run_lm(weights, tokens, 3), run_lm(weights, changed, 3)
    agree(after[:, :6], before[:, :6], (2, 6, VOCAB), rtol=1e-6, atol=1e-6)
    # from position 6 on the logits follow the change (the references differ by far more than the tolerance)
    close(after[:, 6:], reference_lm(changed, weights, 3, 3, 1e6)[:, 6:], rtol=1e-4, atol=1e-4)
    close(before[:, 6:], reference_lm(tokens, weights, 3, 3, 1e6)[:, 6:], rtol=1e-4, atol=1e-4)


def test_transformer_lm_batch_rows_are_independent():
    weights = lm_weights(67, 1)
    tokens = tokens_for(68, batch=4)
    together = run_lm(weights, tokens, 1)
    for b in range(4):
        close(together[b : b + 1], run_lm(weights, tokens[b : b + 1], 1), rtol=1e-5, atol=1e-5)


def test_transformer_lm_non_contiguous_token_ids():
    weights = lm_weights(69, 1)
    tokens = tokens_for(70, batch=CONTEXT, seq=3).T  # (3, CONTEXT), a transposed view
    assert not tokens.is_contiguous()
    logits = run_lm(weights, tokens, 1)
    close(logits, reference_lm(tokens, weights, 1, 3, 1e6), rtol=1e-4, atol=1e-4)


def test_transformer_lm_full_context_works_and_longer_input_raises():
    weights = lm_weights(71, 1)
    check_equal(tuple(run_lm(weights, tokens_for(72, seq=CONTEXT), 1).shape), (2, CONTEXT, VOCAB))
    with pytest.raises(ValueError, match="context"):
        run_lm(weights, tokens_for(73, seq=CONTEXT + 1), 1)
    lm = adapters.create_transformer_lm(VOCAB, 4, D_MODEL, 1, 3, D_FF)
    with pytest.raises(ValueError):
        lm(torch.zeros(1, 5, dtype=torch.long))


def expected_lm_shapes(vocab, d_model, num_layers, d_ff):
    shapes = {"token_embeddings.weight": (vocab, d_model)}
    for layer in range(num_layers):
        prefix = f"layers.{layer}."
        for name in ("q_proj", "k_proj", "v_proj", "output_proj"):
            shapes[f"{prefix}attn.{name}.weight"] = (d_model, d_model)
        shapes[f"{prefix}ln1.weight"] = shapes[f"{prefix}ln2.weight"] = (d_model,)
        shapes[f"{prefix}ffn.w1.weight"] = shapes[f"{prefix}ffn.w3.weight"] = (d_ff, d_model)
        shapes[f"{prefix}ffn.w2.weight"] = (d_model, d_ff)
    shapes["final_ln.weight"] = (d_model,)
    shapes["output.weight"] = (vocab, d_model)
    return shapes


def test_transformer_lm_state_dict_names_and_shapes():
    """Exactly the documented weights; RoPE's cos/sin tables are not in the state dict."""
    lm = adapters.create_transformer_lm(VOCAB, CONTEXT, D_MODEL, 3, 6, D_FF, 500.0)
    shapes = {key: tuple(value.shape) for key, value in lm.state_dict().items()}
    check_equal(shapes, expected_lm_shapes(VOCAB, D_MODEL, 3, D_FF))


def test_transformer_lm_initialisation():
    """Embeddings ~ N(0, 1) cut at +-3; Linear ~ N(0, 2 / (d_in + d_out)) cut at 3 std; gains are ones."""
    torch.manual_seed(0)
    d_model, d_ff, vocab = 96, 256, 301
    lm = adapters.create_transformer_lm(vocab, 16, d_model, 1, 4, d_ff)
    state = lm.state_dict()
    embeddings = state["token_embeddings.weight"]
    check_within("max |token_embeddings.weight|", float(embeddings.abs().max()), 0.0, 3.0 + 1e-6)
    check_within("std of token_embeddings.weight", float(embeddings.std()), 0.9, 1.05)
    check_within("mean of token_embeddings.weight", float(embeddings.mean()), -0.02, 0.02)
    for key, (d_out, d_in) in {
        "layers.0.attn.q_proj.weight": (d_model, d_model),
        "layers.0.ffn.w1.weight": (d_ff, d_model),
        "layers.0.ffn.w2.weight": (d_model, d_ff),
        "output.weight": (vocab, d_model),
    }.items():
        std = math.sqrt(2 / (d_in + d_out))
        weight = state[key]
        check_within(f"max |{key}|", float(weight.abs().max()), 0.0, 3 * std + 1e-6)
        check_within(f"std of {key}", float(weight.std()), 0.9 * std, 1.05 * std)
    for key in ("layers.0.ln1.weight", "layers.0.ln2.weight", "final_ln.weight"):
        check_equal(state[key].double(), torch.ones(d_model, dtype=torch.float64))
    # The statistics are the draw's; the same model's logits on known weights are not.
    weights = lm_weights(100, 1, vocab=vocab, d_model=d_model, d_ff=d_ff)
    lm.load_state_dict(to_our_names(weights))
    tokens = tokens_for(101, seq=16, vocab=vocab)
    with torch.no_grad():
        close(lm(tokens), reference_lm(tokens, weights, 1, 4, 10000.0), rtol=1e-4, atol=1e-4)


def test_transformer_lm_gradients_match_reference_for_every_parameter():
    torch.manual_seed(1)
    lm = adapters.create_transformer_lm(VOCAB, CONTEXT, D_MODEL, 3, 6, D_FF, 500.0)
    # Fixed weights, not the model's own initialisation: two correct models draw different initial
    # weights, and the grader compares the loss and the gradients with the reference solution's.
    weights = lm_weights(84, 3)
    our_weights = to_our_names(weights)
    with torch.no_grad():
        for name, parameter in lm.named_parameters():
            parameter.copy_(our_weights[name])
    tokens, targets = tokens_for(74), tokens_for(75)
    loss = F.cross_entropy(lm(tokens).reshape(-1, VOCAB), targets.reshape(-1))
    loss.backward()

    reference_weights = {key: value.double().requires_grad_() for key, value in weights.items()}
    reference_loss = F.cross_entropy(
        reference_lm(tokens, reference_weights, 3, 6, 500.0).reshape(-1, VOCAB), targets.reshape(-1)
    )
    reference_loss.backward()
    # the loss is ~3.9 > 1, so rtol 1e-5 alone is pytest.approx(reference_loss, rel=1e-5)
    check_close(loss.item(), reference_loss.item(), rtol=1e-5, atol=0)

    renames = {"final_ln.weight": "ln_final.weight", "output.weight": "lm_head.weight"}
    gradients = {name: parameter.grad for name, parameter in lm.named_parameters()}
    check_equal(sorted(name for name, grad in gradients.items() if grad is None), [])  # no gradient
    check_equal(sorted(name for name, grad in gradients.items() if non_finite(grad)), [])  # non-finite gradient
    check_equal(sorted(name for name, grad in gradients.items() if not grad.abs().sum() > 0), [])  # zero gradient
    check_close(
        {name: grad.double() for name, grad in gradients.items()},
        {name: reference_weights[renames.get(name, name)].grad for name in gradients},
        rtol=1e-3,
        atol=1e-5,
    )
    check_equal(sorted(gradients), sorted(expected_lm_shapes(VOCAB, D_MODEL, 3, D_FF)))


def check_full_weights_load(weights: dict, tokens: torch.Tensor, num_layers: int) -> None:
    """Next to a rejected load: exactly the right weights load and give the reference's logits."""
    close(run_lm(weights, tokens, num_layers), reference_lm(tokens, weights, num_layers, 3, 1e6), rtol=1e-4, atol=1e-4)


def test_load_weights_rejects_unexpected_key_and_names_it():
    weights = lm_weights(76, 1)
    weights["layers.0.attn.bias"] = torch.zeros(D_MODEL)
    with pytest.raises(ValueError, match=r"layers\.0\.attn\.bias"):
        run_lm(weights, tokens_for(77), 1)
    check_full_weights_load(lm_weights(76, 1), tokens_for(77), 1)


def test_load_weights_rejects_wrong_shape_and_names_it():
    weights = lm_weights(78, 3)
    weights["layers.2.ffn.w2.weight"] = torch.zeros(D_FF, D_MODEL)  # transposed
    with pytest.raises(ValueError, match=r"layers\.2\.ffn\.w2\.weight"):
        run_lm(weights, tokens_for(79), 3)
    check_full_weights_load(lm_weights(78, 3), tokens_for(79), 3)


def test_load_weights_rejects_missing_key_and_names_it():
    weights = lm_weights(80, 3)
    del weights["layers.1.ln2.weight"]
    with pytest.raises(ValueError, match=r"layers\.1\.ln2\.weight"):
        run_lm(weights, tokens_for(81), 3)
    check_full_weights_load(lm_weights(80, 3), tokens_for(81), 3)


def test_load_weights_rejects_too_few_layers():
    """Weights of a 1-layer model cannot be loaded into a 3-layer one."""
    with pytest.raises(ValueError, match=r"layers\.2\."):
        run_lm(lm_weights(82, 1), tokens_for(83), 3)
    check_full_weights_load(lm_weights(82, 3), tokens_for(83), 3)


# --------------------------------------------------------------------------- accounting


def parameters_by_formula(vocab, d_model, num_layers, d_ff):
    return 2 * vocab * d_model + d_model + num_layers * (2 * d_model + 4 * d_model**2 + 3 * d_model * d_ff)


@pytest.mark.parametrize(
    ("vocab", "context", "d_model", "num_layers", "num_heads", "d_ff"),
    [
        (37, 10, 48, 1, 3, 80),
        (101, 16, 48, 3, 6, 128),
        (7, 4, 8, 2, 1, 3),
    ],
)
def test_count_parameters_matches_formula(vocab, context, d_model, num_layers, num_heads, d_ff):
    lm = adapters.create_transformer_lm(vocab, context, d_model, num_layers, num_heads, d_ff)
    count = adapters.run_count_parameters(lm)
    check_equal(count, parameters_by_formula(vocab, d_model, num_layers, d_ff))
    check_equal(count, sum(math.prod(shape) for shape in expected_lm_shapes(vocab, d_model, num_layers, d_ff).values()))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # TinyStories: 2*10000*512 + 512 + 4*(2*512 + 4*512^2 + 3*512*1344) = 10240512 + 4*3113984
        ((10000, 256, 512, 4, 16, 1344), 22_696_448),
        # GPT-2-small-like: 2*50257*768 + 768 + 12*(2*768 + 4*768^2 + 3*768*2048) = 77195520 + 12*7079424
        ((50257, 1024, 768, 12, 12, 2048), 162_148_608),
    ],
)
def test_count_parameters_of_full_size_configs(config, expected):
    """Built on the meta device (shapes only, no memory, no initialisation cost)."""
    with torch.device("meta"):
        lm = adapters.create_transformer_lm(*config)
    check_equal(adapters.run_count_parameters(lm), expected)


def test_count_parameters_counts_a_shared_parameter_once():
    lm = adapters.create_transformer_lm(VOCAB, CONTEXT, D_MODEL, 2, 3, D_FF)
    lm.output.weight = lm.token_embeddings.weight  # tie input and output embeddings
    check_equal(adapters.run_count_parameters(lm), parameters_by_formula(VOCAB, D_MODEL, 2, D_FF) - VOCAB * D_MODEL)


def test_count_parameters_skips_frozen_parameters():
    lm = adapters.create_transformer_lm(VOCAB, CONTEXT, D_MODEL, 2, 3, D_FF)
    lm.token_embeddings.weight.requires_grad_(False)
    lm.final_ln.weight.requires_grad_(False)
    expected = parameters_by_formula(VOCAB, D_MODEL, 2, D_FF) - VOCAB * D_MODEL - D_MODEL
    check_equal(adapters.run_count_parameters(lm), expected)


def flops_by_formula(vocab, context, d_model, num_layers, d_ff):
    per_layer = 8 * d_model**2 + 4 * context * d_model + 6 * d_model * d_ff
    return num_layers * per_layer + 2 * d_model * vocab


def test_count_flops_tinystories_and_gpt2_small_literals():
    # TinyStories: 4 * (8*512^2 + 4*256*512 + 6*512*1344) + 2*512*10000 = 4*6750208 + 10240000
    check_equal(adapters.run_count_flops_per_token(10000, 256, 512, 4, 16, 1344), 37_240_832)
    # GPT-2-small-like: 12 * (8*768^2 + 4*1024*768 + 6*768*2048) + 2*768*50257 = 12*17301504 + 77194752
    check_equal(adapters.run_count_flops_per_token(50257, 1024, 768, 12, 12, 2048), 284_812_800)


@pytest.mark.parametrize(
    ("vocab", "context", "d_model", "num_layers", "d_ff"),
    [(37, 10, 48, 1, 80), (101, 1, 48, 3, 128), (50257, 1024, 1600, 48, 6400), (3, 7, 2, 5, 1)],
)
def test_count_flops_matches_formula_and_ignores_num_heads(vocab, context, d_model, num_layers, d_ff):
    expected = flops_by_formula(vocab, context, d_model, num_layers, d_ff)
    for num_heads in (1, 2) if d_model == 2 else (1, 3, 6, 16) if d_model % 16 == 0 else (1, 3, 6):
        check_equal(adapters.run_count_flops_per_token(vocab, context, d_model, num_layers, num_heads, d_ff), expected)


def test_count_flops_grows_linearly_with_context():
    a = adapters.run_count_flops_per_token(1000, 100, 64, 3, 4, 192)
    b = adapters.run_count_flops_per_token(1000, 200, 64, 3, 4, 192)
    c = adapters.run_count_flops_per_token(1000, 300, 64, 3, 4, 192)
    check_equal(b - a, 3 * 4 * 100 * 64)
    check_equal(c - b, 3 * 4 * 100 * 64)


def test_estimate_memory_literals():
    # parameters 22,696,448 (TinyStories) and 162,148,608 (GPT-2-small-like with d_ff 2048)
    check_equal(adapters.run_estimate_memory_bytes(10000, 512, 4, 1344), 90_785_792)
    check_equal(adapters.run_estimate_memory_bytes(10000, 512, 4, 1344, dtype_bytes=2), 45_392_896)
    check_equal(adapters.run_estimate_memory_bytes(50257, 768, 12, 2048, dtype_bytes=4), 648_594_432)
    check_equal(adapters.run_estimate_memory_bytes(50257, 768, 12, 2048, dtype_bytes=8), 8 * 162_148_608)


@pytest.mark.parametrize("dtype_bytes", [1, 2, 4])
def test_estimate_memory_equals_counted_parameters_times_bytes(dtype_bytes):
    # The parameters of TransformerLM(101, 16, 48, 3, 6, 128), counted by formula: this problem needs
    # only its own code, not a TransformerLM.
    vocab_size, d_model, num_layers, d_ff = 101, 48, 3, 128
    parameters = 2 * vocab_size * d_model + d_model + num_layers * (2 * d_model + 4 * d_model**2 + 3 * d_model * d_ff)
    check_equal(adapters.run_estimate_memory_bytes(101, 48, 3, 128, dtype_bytes=dtype_bytes), parameters * dtype_bytes)
