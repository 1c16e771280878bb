"""Part 2: the transformer (public tests).

Every test goes through ``adapters.py``. Inputs and weights are drawn from seeded
``torch.Generator``s, so they are the same on every run. Three kinds of checks:

* snapshots: the output of each component for fixed inputs, compared with ``tests/_snapshots``;
* references: the same computation written with ``torch.nn.functional`` in this file;
* properties: causality, RoPE's relative-position property, truncation, batch independence,
  error messages, parameter and FLOP accounting, initialisation statistics.

Select a part with ``pytest -k``: ``linear``, ``embedding``, ``rmsnorm``, ``silu``, ``swiglu``,
``rope``, ``attention``, ``transformer_block``, ``transformer_lm``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

import adapters
from tests.common import generator
from tests.graded import check_close, check_equal

# The small model every test uses (vocab_size differs from d_model and d_ff from d_model, so a
# transposed weight does not load silently).
VOCAB_SIZE = 100
CONTEXT_LENGTH = 16
D_MODEL = 64
NUM_LAYERS = 2
NUM_HEADS = 4
D_FF = 128
THETA = 10000.0
BATCH = 2
SEQ = 12
EPS = 1e-5  # RMSNorm's default eps
LM_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "context_length": CONTEXT_LENGTH,
    "d_model": D_MODEL,
    "num_layers": NUM_LAYERS,
    "num_heads": NUM_HEADS,
    "d_ff": D_FF,
    "rope_theta": THETA,
}
ATTENTION_KEYS = ("q_proj", "k_proj", "v_proj", "output_proj")


# ---------------------------------------------------------------------------------------------
# Seeded data
# ---------------------------------------------------------------------------------------------


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=generator(seed)) * scale


def block_shapes(d_model: int = D_MODEL, d_ff: int = D_FF) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"ln1.weight": (d_model,)}
    shapes.update({f"attn.{name}.weight": (d_model, d_model) for name in ATTENTION_KEYS})
    shapes["ln2.weight"] = (d_model,)
    shapes.update({"ffn.w1.weight": (d_ff, d_model), "ffn.w2.weight": (d_model, d_ff)})
    shapes["ffn.w3.weight"] = (d_ff, d_model)
    return shapes


def lm_shapes(
    vocab_size: int = VOCAB_SIZE, d_model: int = D_MODEL, num_layers: int = NUM_LAYERS, d_ff: int = D_FF
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"token_embeddings.weight": (vocab_size, d_model)}
    for layer in range(num_layers):
        shapes.update({f"layers.{layer}.{key}": shape for key, shape in block_shapes(d_model, d_ff).items()})
    shapes.update({"final_ln.weight": (d_model,), "output.weight": (vocab_size, d_model)})
    return shapes


def make_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Norm gains near 1, embeddings N(0, 1), matrices N(0, 1 / d_in): activations stay O(1)."""
    g = generator(seed)
    weights = {}
    for name, shape in shapes.items():
        values = torch.randn(shape, generator=g)
        if len(shape) == 1:
            weights[name] = 1.0 + 0.1 * values
        elif name.startswith("token_embeddings"):
            weights[name] = values
        else:
            weights[name] = values / math.sqrt(shape[1])
    return weights


def attention_weights(seed: int, d_model: int = D_MODEL) -> dict[str, torch.Tensor]:
    """Keyword arguments ``q_proj_weight`` ... ``o_proj_weight`` for the attention adapters."""
    g = generator(seed)
    names = ("q_proj_weight", "k_proj_weight", "v_proj_weight", "o_proj_weight")
    return {name: torch.randn(d_model, d_model, generator=g) / math.sqrt(d_model) for name in names}


@pytest.fixture(scope="module")
def lm_weights() -> dict[str, torch.Tensor]:
    return make_weights(lm_shapes(), seed=0)


@pytest.fixture(scope="module")
def block_weights(lm_weights) -> dict[str, torch.Tensor]:
    return {key.removeprefix("layers.0."): value for key, value in lm_weights.items() if key.startswith("layers.0.")}


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB_SIZE, (BATCH, SEQ), generator=generator(1))


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return randn(BATCH, SEQ, D_MODEL, seed=2)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """A graded check: ``actual`` (from the code under test) close to ``expected``; graded against the reference."""
    __tracebackhide__ = True  # a failure shows the test's line
    check_close(actual, expected, atol=atol, rtol=rtol)


def assert_same(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    """``actual`` within ``atol`` of ``expected``, both computed by the code under test.

    What is recorded is the difference ``actual - expected``: it is graded against the reference's
    difference (about zero), so the property holds whatever values the two sides have (e.g. when
    they come from a randomly initialised model, or must agree exactly).
    """
    __tracebackhide__ = True  # a failure shows the test's line
    check_close(actual - expected, torch.zeros_like(expected), atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# References written with torch.nn.functional (independent of cs288_lm)
# ---------------------------------------------------------------------------------------------


def reference_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE: dimension k is paired with k + d_k/2, angle ``p * theta^(-2k/d_k)``."""
    d_k = x.shape[-1]
    inverse_frequencies = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
    angles = positions.to(torch.float64)[..., None] * inverse_frequencies
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
    first, second = x[..., : d_k // 2], x[..., d_k // 2 :]
    rotated_half = torch.cat((-second, first), dim=-1)
    return (x.double() * cos + rotated_half.double() * sin).to(x.dtype)


def reference_attention(
    x: torch.Tensor,
    weights: dict[str, torch.Tensor],
    num_heads: int,
    theta: float | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal multi-head self-attention; ``weights`` keyed ``q_proj`` ... ``output_proj``."""
    *lead, seq, d_model = x.shape
    d_head = d_model // num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(*lead, seq, num_heads, d_head).transpose(-3, -2)

    q, k, v = (heads(F.linear(x, weights[name])) for name in ("q_proj", "k_proj", "v_proj"))
    if theta is not None:
        positions = torch.arange(seq) if positions is None else positions
        positions = positions.unsqueeze(-2)  # broadcast over the heads
        q, k = reference_rope(q, positions, theta), reference_rope(k, positions, theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(-3, -2).reshape(*lead, seq, d_model), weights["output_proj"])


def reference_block(x: torch.Tensor, weights: dict[str, torch.Tensor], num_heads: int, theta: float) -> torch.Tensor:
    d_model = x.shape[-1]
    attention = {name: weights[f"attn.{name}.weight"] for name in ATTENTION_KEYS}
    x = x + reference_attention(F.rms_norm(x, (d_model,), weights["ln1.weight"], EPS), attention, num_heads, theta)
    h = F.rms_norm(x, (d_model,), weights["ln2.weight"], EPS)
    gated = F.silu(F.linear(h, weights["ffn.w1.weight"])) * F.linear(h, weights["ffn.w3.weight"])
    return x + F.linear(gated, weights["ffn.w2.weight"])


def reference_lm(tokens: torch.Tensor, weights: dict[str, torch.Tensor], num_layers: int = NUM_LAYERS) -> torch.Tensor:
    x = F.embedding(tokens, weights["token_embeddings.weight"])
    for layer in range(num_layers):
        prefix = f"layers.{layer}."
        block = {key.removeprefix(prefix): value for key, value in weights.items() if key.startswith(prefix)}
        x = reference_block(x, block, NUM_HEADS, THETA)
    x = F.rms_norm(x, (x.shape[-1],), weights["final_ln.weight"], EPS)
    return F.linear(x, weights["output.weight"])


def run_lm(weights: dict[str, torch.Tensor], tokens: torch.Tensor, **overrides) -> torch.Tensor:
    config = {**LM_CONFIG, **overrides}
    return adapters.run_transformer_lm(**config, weights=weights, in_indices=tokens)


# ---------------------------------------------------------------------------------------------
# Linear and Embedding
# ---------------------------------------------------------------------------------------------


def test_linear_matches_snapshot(numpy_snapshot, features):
    weight = randn(24, D_MODEL, seed=10, scale=D_MODEL**-0.5)  # (d_out, d_in)
    numpy_snapshot.assert_match(adapters.run_linear(D_MODEL, 24, weight, features), "linear")


def test_linear_matches_functional_linear():
    # Weight shape (d_out, d_in) = (24, 40); leading dimensions of the input are kept.
    weight = randn(24, 40, seed=11)
    x = randn(3, 2, 5, 40, seed=12)
    out = adapters.run_linear(40, 24, weight, x)
    check_equal(tuple(out.shape), (3, 2, 5, 24))
    assert_close(out, F.linear(x, weight))


def test_linear_weight_has_shape_d_out_by_d_in():
    weight = randn(7, 5, seed=13)  # (d_out, d_in): loads into Linear(d_in=5, d_out=7)
    out = adapters.run_linear(5, 7, weight, torch.ones(5))
    check_equal(tuple(out.shape), (7,))
    assert_close(out, weight.sum(dim=1))


# A test of Linear, Embedding or RoPE that needs the whole TransformerLM is named test_transformer_lm_*:
# it belongs to that problem, so finishing Linear is not reported incomplete until Part 2 is done.
def test_transformer_lm_linear_weights_are_d_out_by_d_in():
    state = adapters.create_transformer_lm(**LM_CONFIG).state_dict()
    check_equal(tuple(state["output.weight"].shape), (VOCAB_SIZE, D_MODEL))
    check_equal(tuple(state["layers.0.ffn.w1.weight"].shape), (D_FF, D_MODEL))
    check_equal(tuple(state["layers.0.ffn.w2.weight"].shape), (D_MODEL, D_FF))


def test_embedding_matches_snapshot(numpy_snapshot, tokens):
    weight = randn(VOCAB_SIZE, D_MODEL, seed=14)
    numpy_snapshot.assert_match(adapters.run_embedding(VOCAB_SIZE, D_MODEL, weight, tokens), "embedding")


def test_embedding_matches_functional_embedding():
    weight = randn(VOCAB_SIZE, 8, seed=15)
    ids = torch.randint(0, VOCAB_SIZE, (2, 3, 4), generator=generator(16))
    out = adapters.run_embedding(VOCAB_SIZE, 8, weight, ids)
    check_equal(tuple(out.shape), (2, 3, 4, 8))
    check_equal(out, F.embedding(ids, weight))
    check_equal(adapters.run_embedding(VOCAB_SIZE, 8, weight, torch.tensor(VOCAB_SIZE - 1)), weight[-1])


def _check_truncated_normal(weight: torch.Tensor, std: float) -> None:
    """Mean 0, std of a normal cut at +-3 std (0.9866 std), nothing beyond 3 std, normal tails.

    Statistics of random draws: graded against the bounds written here (``against="expected"``),
    since two correct initialisations draw different values. A range [lo, hi] is checked as
    ``(lo + hi) / 2`` with ``atol = (hi - lo) / 2``.
    """
    values = weight.detach().double().flatten()
    check_close(values.mean().item(), 0.0, atol=0.05 * std, rtol=0, against="expected")
    check_close(values.std().item(), 0.9866 * std, rtol=0.03, atol=0, against="expected")
    bound = 3 * std * (1 + 1e-5)  # |values| <= bound: the max of |values| in [0, bound]
    check_close(values.abs().max().item(), bound / 2, atol=bound / 2, rtol=0, against="expected")
    # A normal has 0.043 of its values beyond 2 std: the fraction in [0.03, 0.06].
    beyond_two_std = (values.abs() > 2 * std).double().mean().item()
    check_close(beyond_two_std, 0.045, atol=0.015, rtol=0, against="expected")


def test_transformer_lm_initialises_linear_and_embedding_weights():
    vocab_size, d_model, d_ff = 512, 128, 512
    torch.manual_seed(0)
    lm = adapters.create_transformer_lm(vocab_size, 64, d_model, 1, 4, d_ff)
    state = lm.state_dict()
    _check_truncated_normal(state["token_embeddings.weight"], 1.0)
    _check_truncated_normal(state["output.weight"], math.sqrt(2 / (d_model + vocab_size)))
    _check_truncated_normal(state["layers.0.ffn.w1.weight"], math.sqrt(2 / (d_model + d_ff)))
    _check_truncated_normal(state["layers.0.attn.q_proj.weight"], math.sqrt(2 / (2 * d_model)))
    for key in ("layers.0.ln1.weight", "layers.0.ln2.weight", "final_ln.weight"):
        check_equal(state[key], torch.ones(d_model))  # norm gains start at ones
    # The statistics above are the draw's: the layers' outputs on known weights of these sizes are not.
    weight, x = randn(d_ff, d_model, seed=100, scale=d_model**-0.5), randn(3, d_model, seed=101)
    assert_close(adapters.run_linear(d_model, d_ff, weight, x), F.linear(x, weight))
    table, ids = randn(vocab_size, d_model, seed=102), torch.tensor([[0, 7, vocab_size - 1]])
    check_equal(adapters.run_embedding(vocab_size, d_model, table, ids), F.embedding(ids, table))


# ---------------------------------------------------------------------------------------------
# RMSNorm, SiLU, SwiGLU
# ---------------------------------------------------------------------------------------------


def test_rmsnorm_matches_snapshot(numpy_snapshot, features, lm_weights):
    out = adapters.run_rmsnorm(D_MODEL, EPS, lm_weights["layers.0.ln1.weight"], features)
    numpy_snapshot.assert_match(out, "rmsnorm")


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_rmsnorm_matches_functional_rms_norm(eps):
    weight = 1 + 0.1 * randn(D_MODEL, seed=20)
    x = randn(3, 5, D_MODEL, seed=21, scale=0.3)
    out = adapters.run_rmsnorm(D_MODEL, eps, weight, x)
    check_equal(tuple(out.shape), tuple(x.shape))
    assert_close(out, F.rms_norm(x, (D_MODEL,), weight, eps))


def test_rmsnorm_zero_input_gives_zero():
    out = adapters.run_rmsnorm(8, EPS, torch.ones(8), torch.zeros(2, 8))
    check_equal(out, torch.zeros(2, 8))
    # Near zero, eps dominates the mean square: the output stays small, not normalised to unit scale.
    weight, x = 1 + 0.1 * randn(8, seed=103), randn(2, 8, seed=104, scale=1e-3)
    assert_close(adapters.run_rmsnorm(8, EPS, weight, x), F.rms_norm(x, (8,), weight, EPS))


def test_rmsnorm_bfloat16_returns_bfloat16_computed_in_float32():
    weight = 1 + 0.1 * randn(D_MODEL, seed=22)
    x = randn(4, 7, D_MODEL, seed=23, scale=3.0).to(torch.bfloat16)
    out = adapters.run_rmsnorm(D_MODEL, EPS, weight, x)
    check_equal(out.dtype, torch.bfloat16)
    x32 = x.float()
    expected = (x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + EPS) * weight).to(torch.bfloat16)
    # The float32 results round to the same bfloat16 value, or a neighbour at a rounding boundary.
    check_close(out.detach().float(), expected.float(), rtol=2**-7, atol=1e-6)


def test_rmsnorm_float16_large_inputs_do_not_overflow():
    # 300^2 = 90000 overflows float16 (max 65504): the mean of squares must be taken in float32.
    x = torch.tensor([[300.0, -300.0, 600.0, 0.0]], dtype=torch.float16)
    out = adapters.run_rmsnorm(4, EPS, torch.ones(4), x)
    check_equal(out.dtype, torch.float16)
    expected = x.float() / math.sqrt((300**2 + 300**2 + 600**2) / 4)
    check_close(out.detach().float(), expected, rtol=1e-3, atol=1e-3)


def test_silu_matches_snapshot(numpy_snapshot):
    numpy_snapshot.assert_match(adapters.run_silu(randn(4, 16, seed=30, scale=3.0)), "silu")


def test_silu_matches_functional_silu():
    x = torch.cat([randn(200, seed=31, scale=4.0), torch.tensor([0.0, -100.0, 100.0, -1000.0, 1000.0])])
    out = adapters.run_silu(x)
    check_equal((tuple(out.shape), out.dtype), (tuple(x.shape), x.dtype))
    check_equal(bool(torch.isfinite(out).all()), True, message="silu gives inf or NaN")  # out is recorded below
    assert_close(out, F.silu(x), atol=1e-6, rtol=1e-6)


def test_swiglu_matches_snapshot(numpy_snapshot, features, block_weights):
    w1, w2, w3 = (block_weights[f"ffn.{name}.weight"] for name in ("w1", "w2", "w3"))
    numpy_snapshot.assert_match(adapters.run_swiglu(D_MODEL, D_FF, w1, w2, w3, features), "swiglu")


def test_swiglu_matches_functional_reference():
    d_model, d_ff = 16, 40
    weights = make_weights({"w1": (d_ff, d_model), "w2": (d_model, d_ff), "w3": (d_ff, d_model)}, seed=32)
    x = randn(3, 5, d_model, seed=33)
    out = adapters.run_swiglu(d_model, d_ff, weights["w1"], weights["w2"], weights["w3"], x)
    expected = F.linear(F.silu(F.linear(x, weights["w1"])) * F.linear(x, weights["w3"]), weights["w2"])
    check_equal(tuple(out.shape), tuple(x.shape))
    assert_close(out, expected)


def test_swiglu_gate_is_w1_not_w3():
    # With w1 = 0 the gate silu(0) = 0 shuts the output whatever w3 is.
    d_model, d_ff = 8, 16
    x, w2, w3 = randn(4, d_model, seed=34), randn(d_model, d_ff, seed=35), randn(d_ff, d_model, seed=36)
    zero = torch.zeros(d_ff, d_model)
    check_equal(adapters.run_swiglu(d_model, d_ff, zero, w2, w3, x), torch.zeros(4, d_model))
    # w3 = 2 w1: the output is w2 (silu(h) * 2h), not w2 (silu(2h) * h) as with the roles swapped.
    eye = torch.eye(d_ff, d_model)
    out = adapters.run_swiglu(d_model, d_ff, eye, w2, 2 * eye, x)
    hidden = F.linear(x, eye)
    assert_close(out, F.linear(F.silu(hidden) * 2 * hidden, w2))


# ---------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------


def test_rope_matches_snapshot(numpy_snapshot):
    x = randn(BATCH, SEQ, 16, seed=40)
    out = adapters.run_rope(16, THETA, CONTEXT_LENGTH, x, torch.arange(SEQ))
    numpy_snapshot.assert_match(out, "rope")


def test_rope_with_positions_per_batch_matches_snapshot(numpy_snapshot):
    # (batch, heads, seq, d_k) rotated by positions of shape (batch, 1, seq): one row per sequence.
    x = randn(BATCH, 2, SEQ, 16, seed=41)
    positions = torch.randint(0, CONTEXT_LENGTH, (BATCH, 1, SEQ), generator=generator(42))
    out = adapters.run_rope(16, THETA, CONTEXT_LENGTH, x, positions)
    numpy_snapshot.assert_match(out, "rope_positions")


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_matches_rotate_half_reference(theta):
    x = randn(3, 10, 32, seed=43)
    positions = torch.randint(0, 64, (3, 10), generator=generator(44))
    out = adapters.run_rope(32, theta, 64, x, positions)
    check_equal((tuple(out.shape), out.dtype), (tuple(x.shape), x.dtype))
    assert_close(out, reference_rope(x, positions, theta))


def test_rope_pairs_dimension_k_with_k_plus_half():
    d_k, theta, position = 8, 100.0, 3
    for k in range(d_k // 2):
        unit = torch.zeros(1, d_k)
        unit[0, k] = 1.0
        out = adapters.run_rope(d_k, theta, 16, unit, torch.tensor([position])).detach()
        angle = position * theta ** (-2 * k / d_k)
        expected = torch.zeros(1, d_k)
        expected[0, k], expected[0, k + d_k // 2] = math.cos(angle), math.sin(angle)
        assert_close(out, expected, atol=1e-6)


def test_rope_position_zero_is_identity_and_norms_are_kept():
    x = randn(2, 9, 16, seed=45)
    out = adapters.run_rope(16, THETA, 32, x, torch.arange(9)).detach()
    assert_close(out[:, 0], x[:, 0])
    assert_close(out.norm(dim=-1), x.norm(dim=-1))
    # The other positions are rotated (they differ from x): pinned by the reference.
    assert_close(out[:, 1:], reference_rope(x, torch.arange(9), THETA)[:, 1:])


def test_rope_relative_position_property():
    # <R_m q, R_n k> depends only on m - n: the same at (m + s, n + s).
    d_k, max_seq_len = 16, 64
    q, k = randn(d_k, seed=46), randn(d_k, seed=47)

    def score(m: int, n: int) -> float:
        positions = torch.tensor([m, n])
        rotated_q = adapters.run_rope(d_k, THETA, max_seq_len, q.expand(2, d_k), positions)[0]
        rotated_k = adapters.run_rope(d_k, THETA, max_seq_len, k.expand(2, d_k), positions)[1]
        return float(rotated_q @ rotated_k)

    def reference_score(m: int, n: int) -> float:
        rotated_q = reference_rope(q[None], torch.tensor([m]), THETA)[0]
        rotated_k = reference_rope(k[None], torch.tensor([n]), THETA)[0]
        return float(rotated_q @ rotated_k)

    for m, n in [(5, 2), (0, 7), (9, 9), (30, 1)]:
        base = score(m, n)
        for shift in (1, 4, 20):
            check_close(score(m + shift, n + shift), base, atol=1e-4, rtol=0)
    # The score depends on the distance: the scores at distances 3 and 2 differ (pinned by the reference).
    check_close(score(5, 2), reference_score(5, 2), atol=1e-4, rtol=0)
    check_close(score(5, 3), reference_score(5, 3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("bad_position", [16, 37, -1])
def test_rope_positions_outside_max_seq_len_raise(bad_position):
    positions = torch.arange(8)
    positions[5] = bad_position
    with pytest.raises(ValueError, match=re.escape(str(bad_position))):
        adapters.run_rope(8, THETA, 16, randn(8, 8, seed=48), positions)
    # The same call with the last allowed position instead rotates as the reference does.
    positions[5] = 15
    x = randn(8, 8, seed=48)
    assert_close(adapters.run_rope(8, THETA, 16, x, positions), reference_rope(x, positions, THETA))


def test_rope_last_position_is_allowed():
    x = randn(1, 8, seed=49)
    out = adapters.run_rope(8, THETA, 16, x, torch.tensor([15]))
    assert_close(out, reference_rope(x, torch.tensor([15]), THETA))


def test_transformer_lm_state_dict_holds_no_rope_buffers():
    state = adapters.create_transformer_lm(**LM_CONFIG).state_dict()
    message = "the state dict should hold exactly the parameters (RoPE buffers are non-persistent)"
    check_equal(sorted(state), sorted(lm_shapes()), message=message)
    for key, shape in lm_shapes().items():
        check_equal(tuple(state[key].shape), shape, message=key)


# ---------------------------------------------------------------------------------------------
# Scaled dot-product attention
# ---------------------------------------------------------------------------------------------


def sdpa_inputs(*lead: int, seed: int, queries: int = 5, keys: int = 7, d_k: int = 16, d_v: int = 8):
    Q = randn(*lead, queries, d_k, seed=seed)
    return Q, randn(*lead, keys, d_k, seed=seed + 1), randn(*lead, keys, d_v, seed=seed + 2)


def random_mask(*shape: int, seed: int) -> torch.Tensor:
    mask = torch.rand(shape, generator=generator(seed)) < 0.6
    mask[..., 0] = True  # every query may attend to something
    return mask


def test_scaled_dot_product_attention_matches_snapshot(numpy_snapshot):
    Q, K, V = sdpa_inputs(BATCH, seed=50)
    numpy_snapshot.assert_match(adapters.run_scaled_dot_product_attention(Q, K, V), "scaled_dot_product_attention")


def test_scaled_dot_product_attention_masked_matches_snapshot(numpy_snapshot):
    Q, K, V = sdpa_inputs(BATCH, seed=50)
    mask = random_mask(BATCH, 5, 7, seed=53)
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    numpy_snapshot.assert_match(out, "scaled_dot_product_attention_masked")


def test_scaled_dot_product_attention_4d_matches_snapshot(numpy_snapshot):
    Q, K, V = sdpa_inputs(BATCH, 3, seed=54)
    mask = random_mask(BATCH, 3, 5, 7, seed=57)
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    numpy_snapshot.assert_match(out, "scaled_dot_product_attention_4d")


@pytest.mark.parametrize("lead", [(), (BATCH,), (BATCH, 3)], ids=["2d", "3d", "4d"])
@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
def test_scaled_dot_product_attention_matches_functional(lead, masked):
    Q, K, V = sdpa_inputs(*lead, seed=58)
    mask = random_mask(*lead, 5, 7, seed=61) if masked else None
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    check_equal(tuple(out.shape), (*lead, 5, 8))
    assert_close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask))


def test_scaled_dot_product_attention_mask_broadcasts_over_batch_and_heads():
    Q, K, V = sdpa_inputs(BATCH, 3, seed=62)
    mask = random_mask(5, 7, seed=65)
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask)
    assert_close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask))


def test_scaled_dot_product_attention_causal_mask():
    Q, K, V = sdpa_inputs(BATCH, seed=66, queries=6, keys=6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    out = adapters.run_scaled_dot_product_attention(Q, K, V, causal)
    assert_close(out, F.scaled_dot_product_attention(Q, K, V, is_causal=True))
    assert_close(out[:, 0], V[:, 0])  # the first query sees only the first key


def test_scaled_dot_product_attention_fully_masked_row_gives_zeros():
    Q, K, V = sdpa_inputs(BATCH, seed=69)
    mask = random_mask(BATCH, 5, 7, seed=72)
    mask[0, 2] = False  # query 2 of the first sequence may attend to nothing
    out = adapters.run_scaled_dot_product_attention(Q, K, V, mask).detach()
    # out is recorded below; the property itself:
    check_equal(bool(torch.isnan(out).any()), False, message="a fully masked row must not give NaN")
    check_equal(out[0, 2], torch.zeros(8))
    expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    keep = torch.ones(BATCH, 5, dtype=torch.bool)
    keep[0, 2] = False
    assert_close(out[keep], expected[keep])


def test_scaled_dot_product_attention_large_scores_are_stable():
    Q, K, V = sdpa_inputs(BATCH, seed=73)
    Q = Q * 1000.0  # scores in the thousands: a naive exp overflows
    mask = random_mask(BATCH, 5, 7, seed=76)
    for m in (None, mask):
        out = adapters.run_scaled_dot_product_attention(Q, K, V, m)
        check_equal(bool(torch.isfinite(out).all()), True, message="inf or NaN")  # out is recorded below
        assert_close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=m), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Multi-head self-attention
# ---------------------------------------------------------------------------------------------


def by_layer_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(
        zip(
            ATTENTION_KEYS,
            (weights[f"{name}_weight"] for name in ("q_proj", "k_proj", "v_proj", "o_proj")),
            strict=True,
        )
    )


def test_multihead_self_attention_matches_snapshot(numpy_snapshot, features):
    out = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, **attention_weights(80), in_features=features)
    numpy_snapshot.assert_match(out, "multihead_self_attention")


def test_multihead_self_attention_matches_functional_reference(features):
    weights = attention_weights(80)
    out = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, **weights, in_features=features)
    check_equal(tuple(out.shape), tuple(features.shape))
    assert_close(out, reference_attention(features, by_layer_names(weights), NUM_HEADS))


def test_multihead_self_attention_heads_are_split_contiguously():
    # Head h takes the features h * d_head .. (h + 1) * d_head of each projection, for 1, 2 and 4 heads.
    weights = attention_weights(81, d_model=16)
    x = randn(1, 6, 16, seed=82)
    for heads in (1, 2, 4):
        out = adapters.run_multihead_self_attention(16, heads, **weights, in_features=x)
        assert_close(out, reference_attention(x, by_layer_names(weights), heads))


def test_multihead_self_attention_is_causal(features):
    weights = attention_weights(83)
    out = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, **weights, in_features=features)
    changed = features.clone()
    changed[:, 7:] = randn(BATCH, SEQ - 7, D_MODEL, seed=84)
    out_changed = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, **weights, in_features=changed)
    assert_close(out_changed[:, :7], out[:, :7])
    # The later outputs do change (pinned by the reference).
    assert_close(out_changed[:, 7:], reference_attention(changed, by_layer_names(weights), NUM_HEADS)[:, 7:])


def test_multihead_self_attention_torch_backend_agrees(features):
    weights = attention_weights(85)
    reference = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, **weights, in_features=features)
    fast = adapters.run_multihead_self_attention(
        D_MODEL, NUM_HEADS, **weights, in_features=features, attention_backend="torch"
    )
    assert_close(fast, reference)


def test_multihead_self_attention_with_rope_matches_snapshot(numpy_snapshot, features):
    out = adapters.run_multihead_self_attention_with_rope(
        D_MODEL, NUM_HEADS, CONTEXT_LENGTH, THETA, **attention_weights(86), in_features=features
    )
    numpy_snapshot.assert_match(out, "multihead_self_attention_with_rope")


def test_multihead_self_attention_with_rope_token_positions_match_snapshot(numpy_snapshot, features):
    positions = torch.randint(0, 64, (BATCH, SEQ), generator=generator(87))
    out = adapters.run_multihead_self_attention_with_rope(
        D_MODEL, NUM_HEADS, 64, THETA, **attention_weights(86), in_features=features, token_positions=positions
    )
    numpy_snapshot.assert_match(out, "multihead_self_attention_with_rope_positions")


@pytest.mark.parametrize("positions", [None, "shared", "per_sequence"])
def test_multihead_self_attention_with_rope_matches_functional_reference(features, positions):
    weights = attention_weights(88)
    if positions == "shared":
        positions = torch.arange(SEQ) + 3
    elif positions == "per_sequence":
        positions = torch.randint(0, 64, (BATCH, SEQ), generator=generator(89))
    out = adapters.run_multihead_self_attention_with_rope(
        D_MODEL, NUM_HEADS, 64, THETA, **weights, in_features=features, token_positions=positions
    )
    assert_close(out, reference_attention(features, by_layer_names(weights), NUM_HEADS, THETA, positions))


def test_multihead_self_attention_with_rope_is_shift_invariant(features):
    # Queries and keys are rotated, values are not: shifting every position changes nothing.
    weights = attention_weights(90)
    default = adapters.run_multihead_self_attention_with_rope(
        D_MODEL, NUM_HEADS, 64, THETA, **weights, in_features=features
    )
    shifted = adapters.run_multihead_self_attention_with_rope(
        D_MODEL, NUM_HEADS, 64, THETA, **weights, in_features=features, token_positions=torch.arange(SEQ) + 30
    )
    assert_close(shifted, default, atol=1e-4, rtol=1e-4)
    without_rope = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, **weights, in_features=features)
    # RoPE changes the output: both outputs are pinned by the reference.
    assert_close(default, reference_attention(features, by_layer_names(weights), NUM_HEADS, THETA))
    assert_close(without_rope, reference_attention(features, by_layer_names(weights), NUM_HEADS))


def test_multihead_self_attention_with_rope_positions_out_of_range_raise(features):
    with pytest.raises(ValueError, match="16"):
        adapters.run_multihead_self_attention_with_rope(
            D_MODEL,
            NUM_HEADS,
            CONTEXT_LENGTH,
            THETA,
            **attention_weights(91),
            in_features=features,
            token_positions=torch.arange(SEQ) + 5,
        )
    # Shifted one less, every position is inside the context: the output is the reference's.
    weights, positions = attention_weights(91), torch.arange(SEQ) + 4
    out = adapters.run_multihead_self_attention_with_rope(
        D_MODEL, NUM_HEADS, CONTEXT_LENGTH, THETA, **weights, in_features=features, token_positions=positions
    )
    assert_close(out, reference_attention(features, by_layer_names(weights), NUM_HEADS, THETA, positions))


# ---------------------------------------------------------------------------------------------
# Transformer block
# ---------------------------------------------------------------------------------------------


def run_block(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return adapters.run_transformer_block(D_MODEL, NUM_HEADS, D_FF, CONTEXT_LENGTH, THETA, weights, x)


def test_transformer_block_matches_snapshot(numpy_snapshot, block_weights, features):
    numpy_snapshot.assert_match(run_block(block_weights, features), "transformer_block", atol=1e-4)


def test_transformer_block_matches_functional_reference(block_weights, features):
    out = run_block(block_weights, features)
    check_equal(tuple(out.shape), tuple(features.shape))
    assert_close(out, reference_block(features, block_weights, NUM_HEADS, THETA), atol=1e-4, rtol=1e-4)


def test_transformer_block_is_causal(block_weights, features):
    out = run_block(block_weights, features)
    changed = features.clone()
    changed[:, 4:] += randn(BATCH, SEQ - 4, D_MODEL, seed=92)
    out_changed = run_block(block_weights, changed)
    assert_close(out_changed[:, :4], out[:, :4])
    # The later outputs do change (pinned by the reference).
    expected_later = reference_block(changed, block_weights, NUM_HEADS, THETA)[:, 4:]
    assert_close(out_changed[:, 4:], expected_later, atol=1e-4, rtol=1e-4)


def test_transformer_block_missing_weight_raises(block_weights, features):
    weights = {key: value for key, value in block_weights.items() if key != "ffn.w3.weight"}
    with pytest.raises(ValueError, match=re.escape("ffn.w3.weight")):
        run_block(weights, features)
    # With every weight the block loads and computes the reference's output.
    out = run_block(block_weights, features)
    assert_close(out, reference_block(features, block_weights, NUM_HEADS, THETA), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Transformer LM
# ---------------------------------------------------------------------------------------------


def test_transformer_lm_matches_snapshot(numpy_snapshot, lm_weights, tokens):
    logits = run_lm(lm_weights, tokens)
    check_equal(tuple(logits.shape), (BATCH, SEQ, VOCAB_SIZE))
    numpy_snapshot.assert_match(logits, "transformer_lm", atol=1e-4)


def test_transformer_lm_truncated_input_matches_snapshot(numpy_snapshot, lm_weights, tokens):
    logits = run_lm(lm_weights, tokens[:, :5])
    check_equal(tuple(logits.shape), (BATCH, 5, VOCAB_SIZE))
    numpy_snapshot.assert_match(logits, "transformer_lm_truncated", atol=1e-4)


def test_transformer_lm_matches_functional_reference(lm_weights, tokens):
    assert_close(run_lm(lm_weights, tokens), reference_lm(tokens, lm_weights), atol=1e-4, rtol=1e-4)


def test_transformer_lm_truncated_input_gives_prefix_of_full_output(lm_weights, tokens):
    full = run_lm(lm_weights, tokens)
    for length in (1, 5, SEQ - 1):
        assert_close(run_lm(lm_weights, tokens[:, :length]), full[:, :length], atol=1e-5)


def test_transformer_lm_is_causal(lm_weights, tokens):
    full = run_lm(lm_weights, tokens)
    for t in (0, 3, 8):
        changed = tokens.clone()
        changed[:, t + 1 :] = (tokens[:, t + 1 :] + 1 + torch.arange(SEQ - t - 1)) % VOCAB_SIZE
        out = run_lm(lm_weights, changed)
        assert_close(out[:, : t + 1], full[:, : t + 1], atol=1e-5)
        # The later logits do change (pinned by the reference).
        assert_close(out[:, t + 1 :], reference_lm(changed, lm_weights)[:, t + 1 :], atol=1e-4, rtol=1e-4)


def test_transformer_lm_batch_elements_do_not_interact(lm_weights, tokens):
    full = run_lm(lm_weights, tokens)
    for b in range(BATCH):
        assert_close(run_lm(lm_weights, tokens[b : b + 1]), full[b : b + 1], atol=1e-5)
    changed = tokens.clone()
    changed[1] = (changed[1] + 7) % VOCAB_SIZE
    assert_close(run_lm(lm_weights, changed)[0], full[0], atol=1e-5)


def test_transformer_lm_returns_logits_not_probabilities(lm_weights, tokens):
    logits = run_lm(lm_weights, tokens)
    assert_close(logits, reference_lm(tokens, lm_weights), atol=1e-4, rtol=1e-4)
    # With the logits recorded above, the two properties themselves:
    check_equal(bool((logits < 0).any()), True, message="no logit is negative")
    sums_to_one = torch.allclose(logits.sum(-1), torch.ones(BATCH, SEQ), atol=1e-2)
    check_equal(sums_to_one, False, message="the outputs sum to 1")


def test_transformer_lm_accepts_full_context_and_rejects_longer_input(lm_weights):
    full_context = torch.randint(0, VOCAB_SIZE, (BATCH, CONTEXT_LENGTH), generator=generator(93))
    check_equal(tuple(run_lm(lm_weights, full_context).shape), (BATCH, CONTEXT_LENGTH, VOCAB_SIZE))
    too_long = torch.randint(0, VOCAB_SIZE, (BATCH, CONTEXT_LENGTH + 1), generator=generator(94))
    with pytest.raises(ValueError):
        run_lm(lm_weights, too_long)


def test_transformer_lm_loads_cs336_key_names(lm_weights, tokens):
    cs336_names = {"final_ln.weight": "ln_final.weight", "output.weight": "lm_head.weight"}
    renamed = {cs336_names.get(key, key): value for key, value in lm_weights.items()}
    assert "ln_final.weight" in renamed and "final_ln.weight" not in renamed
    out = run_lm(renamed, tokens)
    assert_close(out, reference_lm(tokens, lm_weights), atol=1e-4, rtol=1e-4)
    assert_same(out, run_lm(lm_weights, tokens), atol=0)  # exactly the logits of the usual names


def check_full_weights_load(weights: dict[str, torch.Tensor], tokens: torch.Tensor) -> None:
    """Next to a rejected load: the load of exactly the right weights works and gives the reference's logits."""
    assert_close(run_lm(weights, tokens), reference_lm(tokens, weights), atol=1e-4, rtol=1e-4)


def test_transformer_lm_missing_weight_raises_naming_it(lm_weights, tokens):
    weights = {key: value for key, value in lm_weights.items() if key != "layers.1.ffn.w2.weight"}
    with pytest.raises(ValueError, match=re.escape("layers.1.ffn.w2.weight")):
        run_lm(weights, tokens)
    check_full_weights_load(lm_weights, tokens)


def test_transformer_lm_mis_shaped_weight_raises_naming_it(lm_weights, tokens):
    weights = {**lm_weights, "output.weight": lm_weights["output.weight"].T.contiguous()}
    with pytest.raises(ValueError, match=re.escape("output.weight")):
        run_lm(weights, tokens)
    weights = {**lm_weights, "layers.0.ffn.w1.weight": torch.zeros(D_FF + 1, D_MODEL)}
    with pytest.raises(ValueError, match=re.escape("layers.0.ffn.w1.weight")):
        run_lm(weights, tokens)
    check_full_weights_load(lm_weights, tokens)


def test_transformer_lm_unexpected_weight_raises_naming_it(lm_weights, tokens):
    weights = {**lm_weights, "layers.2.ln1.weight": torch.ones(D_MODEL)}
    with pytest.raises(ValueError, match=re.escape("layers.2.ln1.weight")):
        run_lm(weights, tokens)
    check_full_weights_load(lm_weights, tokens)


def test_transformer_lm_created_model_round_trips_its_state_dict(lm_weights, tokens):
    torch.manual_seed(0)
    lm = adapters.create_transformer_lm(**LM_CONFIG)
    check_equal(isinstance(lm, adapters.TransformerLM), True, message=f"a {type(lm).__name__}, not a TransformerLM")
    state = {key: value.clone() for key, value in lm.state_dict().items()}
    with torch.no_grad():
        direct = lm(tokens)
    # The weights are this implementation's random initialisation: record how far apart the two runs are.
    assert_same(run_lm(state, tokens), direct, atol=1e-6)
    # Known weights loaded into the created model: its logits are the reference's.
    lm.load_state_dict(lm_weights)
    with torch.no_grad():
        assert_close(lm(tokens), reference_lm(tokens, lm_weights), atol=1e-4, rtol=1e-4)


def test_transformer_lm_parameter_count():
    for vocab_size, d_model, num_layers, num_heads, d_ff in [(100, 64, 2, 4, 128), (37, 48, 3, 6, 80)]:
        lm = adapters.create_transformer_lm(vocab_size, 32, d_model, num_layers, num_heads, d_ff)
        per_layer = 2 * d_model + 4 * d_model**2 + 3 * d_model * d_ff
        expected = 2 * vocab_size * d_model + d_model + num_layers * per_layer
        check_equal(adapters.run_count_parameters(lm), expected)


def test_count_parameters_counts_trainable_shared_parameters_once():
    shared = torch.nn.Linear(4, 3, bias=False)
    sequential = torch.nn.Sequential(shared, torch.nn.ReLU(), torch.nn.Linear(3, 3))
    check_equal(adapters.run_count_parameters(sequential), 12 + 12)
    check_equal(adapters.run_count_parameters(torch.nn.ModuleList([shared, shared])), 12)
    frozen = torch.nn.Linear(5, 5)
    frozen.weight.requires_grad_(False)
    check_equal(adapters.run_count_parameters(frozen), 5)


def test_count_flops_per_token():
    # GPT-2 small shapes with a SwiGLU of d_ff = 2048, computed by hand from the docstring.
    vocab_size, context_length, d_model, num_layers, num_heads, d_ff = 50257, 1024, 768, 12, 12, 2048
    per_layer = (
        2 * 4 * d_model * d_model  # Q, K, V, output projections
        + 2 * 2 * context_length * d_model  # Q K^T and the weighted sum of V
        + 2 * 3 * d_model * d_ff  # SwiGLU
    )
    expected = num_layers * per_layer + 2 * d_model * vocab_size
    assert expected == 284_812_800
    flops = adapters.run_count_flops_per_token(vocab_size, context_length, d_model, num_layers, num_heads, d_ff)
    check_equal(flops, expected)
    # The number of heads does not change the count.
    check_equal(adapters.run_count_flops_per_token(vocab_size, context_length, d_model, num_layers, 1, d_ff), expected)
    # A small model with every size distinct.
    check_equal(
        adapters.run_count_flops_per_token(100, 16, 64, 2, 4, 128),
        2 * (8 * 64**2 + 4 * 16 * 64 + 6 * 64 * 128) + 2 * 64 * 100,
    )


def test_estimate_memory_bytes():
    vocab_size, d_model, num_layers, d_ff = 50257, 768, 12, 2048
    parameters = 2 * vocab_size * d_model + d_model + num_layers * (2 * d_model + 4 * d_model**2 + 3 * d_model * d_ff)
    assert parameters == 162_148_608
    check_equal(adapters.run_estimate_memory_bytes(vocab_size, d_model, num_layers, d_ff), 4 * parameters)
    half = adapters.run_estimate_memory_bytes(vocab_size, d_model, num_layers, d_ff, dtype_bytes=2)
    check_equal(half, 2 * parameters)
    # It agrees with the parameters of the model of LM_CONFIG, counted from its state dict's shapes
    # (not from a TransformerLM: this problem needs only its own code).
    parameters = sum(math.prod(shape) for shape in lm_shapes().values())
    check_equal(adapters.run_estimate_memory_bytes(VOCAB_SIZE, D_MODEL, NUM_LAYERS, D_FF), 4 * parameters)
