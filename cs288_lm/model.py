"""A decoder-only transformer language model, built from scratch (Part 2).

The architecture is the modern "Llama-style" one: pre-norm blocks with RMSNorm, causal multi-head
self-attention with rotary position embeddings (RoPE), and a SwiGLU feed-forward network; no
biases anywhere, untied input and output embeddings.

    tokens (batch, seq)
      -> token_embeddings                                   (batch, seq, d_model)
      -> num_layers x TransformerBlock:
             x = x + attn(ln1(x))
             x = x + ffn(ln2(x))
      -> final_ln -> output (Linear d_model -> vocab_size)   (batch, seq, vocab_size) logits

Shapes are written as jaxtyping annotations: ``Float[Tensor, "batch seq d_model"]``. You may use
``torch`` tensor operations and ``einops``, but not ``torch.nn.functional`` or the ``torch.nn``
layers (``nn.Linear``, ``nn.Embedding``, ...): ``nn.Module``, ``nn.Parameter``, ``nn.ModuleList``
and ``nn.init`` are fine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from cs288_lm.nn_utils import softmax

AttentionBackend = Literal["reference", "torch"]
ATTENTION_BACKENDS: tuple[str, ...] = ("reference", "torch")


class Linear(nn.Module):
    """``y = x W^T`` with no bias; ``weight`` has shape ``(d_out, d_in)``.

    Initialisation: truncated normal with mean 0, std ``sqrt(2 / (d_in + d_out))``, cut at
    +-3 std (``nn.init.trunc_normal_``).
    """

    def __init__(self, d_in: int, d_out: int, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        # BEGIN SOLUTION
        std = math.sqrt(2.0 / (d_in + d_out))
        self.weight = nn.Parameter(torch.empty(d_out, d_in, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)
        # END SOLUTION

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """Apply the map to the last dimension of ``x``; leading dimensions are kept."""
        # BEGIN SOLUTION
        return x @ self.weight.T
        # END SOLUTION


class Embedding(nn.Module):
    """A lookup table: ``token_ids`` -> rows of ``weight``, shape ``(vocab_size, d_model)``.

    Initialisation: truncated normal with mean 0, std 1, cut at +-3.
    """

    def __init__(
        self, vocab_size: int, d_model: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ):
        super().__init__()
        # BEGIN SOLUTION
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)
        # END SOLUTION

    def forward(self, token_ids: Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        """The embedding vector of each id; the output adds a last dimension of size d_model."""
        # BEGIN SOLUTION
        return self.weight[token_ids]
        # END SOLUTION


class RMSNorm(nn.Module):
    """Root-mean-square layer norm: ``x / sqrt(mean(x^2) + eps) * weight``, over the last dim.

    ``weight`` (the gain, shape ``(d_model,)``) starts at ones. The computation is done in float32
    and the result cast back to the input's dtype, so bf16/fp16 inputs do not lose precision in the
    mean of squares.
    """

    def __init__(
        self, d_model: int, eps: float = 1e-5, device: torch.device | None = None, dtype: torch.dtype | None = None
    ):
        super().__init__()
        self.eps = eps
        # BEGIN SOLUTION
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        # END SOLUTION

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """Normalize each vector along the last dimension; same shape and dtype as ``x``."""
        # BEGIN SOLUTION
        input_dtype = x.dtype
        x = x.float()
        inverse_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x * inverse_rms * self.weight.float()).to(input_dtype)
        # END SOLUTION


def silu(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """SiLU (swish): ``x * sigmoid(x)``. ``torch.sigmoid`` is allowed."""
    # BEGIN SOLUTION
    return x * torch.sigmoid(x)
    # END SOLUTION


class SwiGLU(nn.Module):
    """The gated feed-forward network ``w2(silu(w1 x) * w3 x)``.

    ``w1`` (the gate) and ``w3`` (the up projection) map d_model -> d_ff; ``w2`` (the down
    projection) maps d_ff -> d_model. All three are :class:`Linear` without bias.
    """

    def __init__(self, d_model: int, d_ff: int, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        # BEGIN SOLUTION
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)
        # END SOLUTION

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """``w2(silu(w1 x) * w3 x)``, with ``*`` elementwise."""
        # BEGIN SOLUTION
        return self.w2(silu(self.w1(x)) * self.w3(x))
        # END SOLUTION


class RotaryPositionEmbedding(nn.Module):
    """Rotary position embeddings (RoPE, Su et al. 2021), applied to queries or keys.

    Each pair of dimensions ``(i, j)`` of a vector at position ``p`` is rotated by the angle
    ``p * theta ** (-2k / d_k)`` for the k-th pair, k = 0 .. d_k/2 - 1:
    ``(x_i, x_j) -> (x_i cos - x_j sin, x_i sin + x_j cos)``.

    Pairing: by default dimension ``k`` is paired with ``k + d_k/2`` ("rotate half", GPT-NeoX and
    Hugging Face Llama style; the course's snapshots use it). With ``interleaved=True``, dimension
    ``2k`` is paired with ``2k + 1`` (Meta's original Llama and CS336 style).

    ``cos`` and ``sin`` for every position below ``max_seq_len`` are computed once in ``__init__``
    and kept as non-persistent buffers (they move with ``.to(device)`` but are not saved in the
    state dict).
    """

    def __init__(
        self,
        d_k: int,
        max_seq_len: int,
        theta: float = 10000.0,
        interleaved: bool = False,
        device: torch.device | None = None,
    ):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even d_k, got {d_k}")
        self.d_k, self.max_seq_len, self.theta, self.interleaved = d_k, max_seq_len, theta, interleaved
        # BEGIN SOLUTION
        inverse_frequencies = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float32) / d_k)
        angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inverse_frequencies)
        self.cos: Tensor  # declared for type checkers: buffers are reached through nn.Module.__getattr__
        self.sin: Tensor
        self.register_buffer("cos", torch.cos(angles), persistent=False)  # (max_seq_len, d_k / 2)
        self.register_buffer("sin", torch.sin(angles), persistent=False)
        # END SOLUTION

    def _position_error(self, position: int) -> ValueError:
        return ValueError(
            f"RoPE position {position} is outside [0, {self.max_seq_len}); raise max_seq_len (the context length)"
        )

    def forward(
        self, x: Float[Tensor, "... seq d_k"], token_positions: Int[Tensor, "... seq"] | None = None
    ) -> Float[Tensor, "... seq d_k"]:
        """Rotate ``x`` by its positions.

        ``token_positions`` (default ``0 .. seq-1``) must broadcast against ``x.shape[:-1]``; for
        ``x`` of shape (batch, heads, seq, d_k), pass (seq,), (1, 1, seq) or (batch, 1, seq).
        Positions outside ``[0, max_seq_len)`` raise a ValueError naming the offending value.
        """
        if token_positions is None:
            # Implicit positions 0 .. seq-1 are checked from the shape: no host sync in training.
            if x.shape[-2] > self.max_seq_len:
                raise self._position_error(x.shape[-2] - 1)
            token_positions = torch.arange(x.shape[-2], device=x.device)
        elif token_positions.numel():
            # Given positions are read once (one host sync) to name an offending value.
            low, high = torch.stack((token_positions.min(), token_positions.max())).tolist()
            if high >= self.max_seq_len or low < 0:
                raise self._position_error(high if high >= self.max_seq_len else low)
        # BEGIN SOLUTION
        cos, sin = self.cos[token_positions], self.sin[token_positions]  # (..., seq, d_k / 2)
        if self.interleaved:
            first, second = x[..., 0::2], x[..., 1::2]
        else:
            first, second = x[..., : self.d_k // 2], x[..., self.d_k // 2 :]
        rotated_first = first * cos - second * sin
        rotated_second = first * sin + second * cos
        if self.interleaved:
            return torch.stack((rotated_first, rotated_second), dim=-1).flatten(-2).to(x.dtype)
        return torch.cat((rotated_first, rotated_second), dim=-1).to(x.dtype)
        # END SOLUTION


def scaled_dot_product_attention(
    Q: Float[Tensor, "... queries d_k"],
    K: Float[Tensor, "... keys d_k"],
    V: Float[Tensor, "... keys d_v"],
    mask: Bool[Tensor, "... queries keys"] | None = None,
) -> Float[Tensor, "... queries d_v"]:
    """``softmax(Q K^T / sqrt(d_k)) V`` with an optional boolean mask.

    ``mask[..., i, j]`` True means query i may attend to key j; False positions get zero weight.
    A query that may attend to nothing (a fully masked row) gets a zero output, not NaN. Any
    leading dimensions (batch, heads, ...) are allowed and broadcast. Use :func:`softmax` from
    ``nn_utils``.
    """
    # BEGIN SOLUTION
    d_k = Q.shape[-1]
    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)
    if mask is None:
        return softmax(scores, dim=-1) @ V
    # A large finite fill keeps fully masked rows finite (uniform weights), zeroed just below.
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = softmax(scores, dim=-1) * mask.any(dim=-1, keepdim=True)
    return weights @ V
    # END SOLUTION


def causal_mask(seq_len: int, device: torch.device | None = None) -> Bool[Tensor, "seq seq"]:
    """``mask[i, j] = j <= i``: each position may attend to itself and the positions before it."""
    # BEGIN SOLUTION
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    # END SOLUTION


def attend(
    q: Float[Tensor, "... heads seq d_head"],
    k: Float[Tensor, "... heads seq d_head"],
    v: Float[Tensor, "... heads seq d_head"],
    backend: AttentionBackend = "reference",
    dropout: float = 0.0,
) -> Float[Tensor, "... heads seq d_head"]:
    """Causal attention with the chosen backend (given).

    ``"reference"`` runs your :func:`scaled_dot_product_attention` with :func:`causal_mask`;
    ``"torch"`` runs ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``, which
    uses FlashAttention or memory-efficient kernels where available (the fast path for training).
    Both give the same outputs within 1e-5 in float32. Attention-weight dropout needs "torch".
    """
    if backend == "torch":
        # Imported here: the modules students write keep torch.nn.functional out of their scope.
        import torch.nn.functional as F

        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
    if backend != "reference":
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {ATTENTION_BACKENDS}")
    if dropout:
        raise ValueError("attention dropout needs attention_backend='torch'")
    return scaled_dot_product_attention(q, k, v, causal_mask(q.shape[-2], device=q.device))


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention (Vaswani et al. 2017), optionally with RoPE.

    ``q_proj``, ``k_proj``, ``v_proj`` and ``output_proj`` are :class:`Linear` (d_model -> d_model,
    no bias). The projections are split into ``num_heads`` heads of ``d_head = d_model / num_heads``
    contiguous features: head ``h`` takes features ``h * d_head : (h + 1) * d_head`` of each
    projection. Each head attends causally (:func:`causal_mask`, or :func:`attend` for the backend
    switch); the heads' outputs are concatenated in head order (head ``h`` back at those features)
    and projected by ``output_proj``. With ``rope`` given, queries and keys (not values) are rotated
    per head before attending.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        rope: RotaryPositionEmbedding | None = None,
        attention_backend: AttentionBackend = "reference",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {attention_backend!r}; choose one of {ATTENTION_BACKENDS}")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.rope = rope
        self.attention_backend = attention_backend
        # BEGIN SOLUTION
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        # END SOLUTION

    def forward(
        self, x: Float[Tensor, "... seq d_model"], token_positions: Int[Tensor, "... seq"] | None = None
    ) -> Float[Tensor, "... seq d_model"]:
        """Causal self-attention over the sequence dimension of ``x``.

        ``token_positions`` (default ``0 .. seq-1``) are the positions RoPE uses, shape (..., seq)
        matching the leading dimensions of ``x``; they are ignored without RoPE.
        """
        # BEGIN SOLUTION
        q, k, v = (
            rearrange(projection(x), "... seq (heads d) -> ... heads seq d", heads=self.num_heads)
            for projection in (self.q_proj, self.k_proj, self.v_proj)
        )
        if self.rope is not None:
            if token_positions is not None:
                token_positions = token_positions.unsqueeze(-2)  # broadcast over the heads
            q, k = self.rope(q, token_positions), self.rope(k, token_positions)
        out = attend(q, k, v, backend=self.attention_backend)
        return self.output_proj(rearrange(out, "... heads seq d -> ... seq (heads d)"))
        # END SOLUTION


class MultiHeadSelfAttentionWithRoPE(MultiHeadSelfAttention):
    """:class:`MultiHeadSelfAttention` that owns a RoPE of ``d_head`` dimensions (given)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        max_seq_len: int,
        theta: float = 10000.0,
        attention_backend: AttentionBackend = "reference",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        rope = RotaryPositionEmbedding(d_model // num_heads, max_seq_len, theta, device=device)
        super().__init__(d_model, num_heads, rope, attention_backend, device=device, dtype=dtype)


class TransformerBlock(nn.Module):
    """A pre-norm block: ``x + attn(ln1(x))``, then ``y + ffn(ln2(y))``.

    ``ln1``, ``ln2``: :class:`RMSNorm`; ``attn``: :class:`MultiHeadSelfAttentionWithRoPE`;
    ``ffn``: :class:`SwiGLU`.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        max_seq_len: int,
        theta: float = 10000.0,
        attention_backend: AttentionBackend = "reference",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        # BEGIN SOLUTION
        self.ln1 = RMSNorm(d_model, device=device, dtype=dtype)
        self.attn = MultiHeadSelfAttentionWithRoPE(
            d_model, num_heads, max_seq_len, theta, attention_backend, device=device, dtype=dtype
        )
        self.ln2 = RMSNorm(d_model, device=device, dtype=dtype)
        self.ffn = SwiGLU(d_model, d_ff, device=device, dtype=dtype)
        # END SOLUTION

    def forward(
        self, x: Float[Tensor, "batch seq d_model"], token_positions: Int[Tensor, "... seq"] | None = None
    ) -> Float[Tensor, "batch seq d_model"]:
        """Apply the block; ``token_positions`` are passed on to the attention's RoPE."""
        # BEGIN SOLUTION
        x = x + self.attn(self.ln1(x), token_positions)
        return x + self.ffn(self.ln2(x))
        # END SOLUTION


# Other checkpoints' names for the same weights; load_weights accepts them too (CS336 naming).
_KEY_ALIASES = {"ln_final.weight": "final_ln.weight", "lm_head.weight": "output.weight"}


class TransformerLM(nn.Module):
    """The language model: ``token_embeddings``, ``layers`` (a ``nn.ModuleList`` of
    :class:`TransformerBlock`), ``final_ln`` (:class:`RMSNorm`) and ``output`` (:class:`Linear`,
    d_model -> vocab_size, not tied to the embeddings).

    ``forward(in_indices)`` returns next-token logits (not probabilities) for every position.
    Inputs longer than ``context_length`` raise a ValueError.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_ff: int,
        rope_theta: float = 10000.0,
        attention_backend: AttentionBackend = "reference",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        # BEGIN SOLUTION
        self.token_embeddings = Embedding(vocab_size, d_model, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model=d_model,
                num_heads=num_heads,
                d_ff=d_ff,
                max_seq_len=context_length,
                theta=rope_theta,
                attention_backend=attention_backend,
                device=device,
                dtype=dtype,
            )
            for _ in range(num_layers)
        )
        self.final_ln = RMSNorm(d_model, device=device, dtype=dtype)
        self.output = Linear(d_model, vocab_size, device=device, dtype=dtype)
        # END SOLUTION

    def hidden_states(self, in_indices: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq d_model"]:
        """The final hidden states, after ``final_ln`` and before ``output``."""
        check_sequence_length(in_indices, self.context_length)
        # BEGIN SOLUTION
        x = self.token_embeddings(in_indices)
        for layer in self.layers:
            x = layer(x)
        return self.final_ln(x)
        # END SOLUTION

    def forward(self, in_indices: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq vocab_size"]:
        """Next-token logits at every position (position t sees tokens 0..t only)."""
        # BEGIN SOLUTION
        return self.output(self.hidden_states(in_indices))
        # END SOLUTION

    def load_weights(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load weights named as ours (``final_ln``, ``output``) or as CS336's (``ln_final``,
        ``lm_head``). Missing, unexpected or mis-shaped entries raise a ValueError listing them."""
        renamed = {_KEY_ALIASES.get(key, key): value for key, value in state_dict.items()}
        load_state_dict_strictly(self, renamed)


def check_sequence_length(in_indices: Tensor, context_length: int) -> None:
    if in_indices.shape[-1] > context_length:
        raise ValueError(
            f"input has {in_indices.shape[-1]} tokens but the model's context_length is {context_length}; "
            "crop the input (keep the last context_length tokens) or build a model with a longer context"
        )


def load_state_dict_strictly(module: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """``module.load_state_dict`` with an error that lists every missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{key}: expected {tuple(expected[key].shape)}, got {tuple(state_dict[key].shape)}"
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shapes: {'; '.join(mis_shaped)}")
    if problems:
        raise ValueError(f"cannot load weights into {type(module).__name__}: " + " | ".join(problems))
    module.load_state_dict(dict(state_dict))


# ---------------------------------------------------------------------------------------------
# Accounting
# ---------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """The number of trainable scalars (a parameter shared by two modules counts once)."""
    # BEGIN SOLUTION
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    # END SOLUTION


def count_flops_per_token(
    vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int, d_ff: int
) -> int:
    """Forward-pass FLOPs per token of :class:`TransformerLM`, attending over the full context.

    Convention: a multiply-add is 2 FLOPs; only matrix multiplications count (norms, softmax,
    SiLU, RoPE and residual additions are lower-order and left out). Per layer and token:
    the Q, K, V and output projections (4 matrices of d_model x d_model), the attention scores
    ``Q K^T`` and the weighted sum of values (each ``context_length x d_model`` multiply-adds,
    whatever the number of heads), and the SwiGLU (3 matrices of d_model x d_ff). After the
    layers, the output projection (d_model x vocab_size). The embedding lookup is free.
    A training step (forward and backward) costs about 3x this.
    """
    # BEGIN SOLUTION
    projections = 2 * 4 * d_model * d_model
    attention = 2 * 2 * context_length * d_model
    feed_forward = 2 * 3 * d_model * d_ff
    return num_layers * (projections + attention + feed_forward) + 2 * d_model * vocab_size
    # END SOLUTION


def estimate_memory_bytes(vocab_size: int, d_model: int, num_layers: int, d_ff: int, dtype_bytes: int = 4) -> int:
    """Bytes taken by the parameters of :class:`TransformerLM` stored with ``dtype_bytes`` each.

    Parameters: the token embeddings and the output projection (vocab_size x d_model each), the
    final RMSNorm gain (d_model), and per layer two RMSNorm gains (2 d_model), the four attention
    projections (4 d_model^2) and the SwiGLU (3 d_model d_ff).
    """
    # BEGIN SOLUTION
    per_layer = 2 * d_model + 4 * d_model * d_model + 3 * d_model * d_ff
    parameters = 2 * vocab_size * d_model + d_model + num_layers * per_layer
    return parameters * dtype_bytes
    # END SOLUTION


def adamw_state_bytes(parameter_bytes: int) -> dict[str, int]:
    """Bytes of the parameters, their gradients (one copy) and AdamW's first and second moments (two
    copies), given the bytes of the parameters (given)."""
    return {"parameters": parameter_bytes, "gradients": parameter_bytes, "optimizer_state": 2 * parameter_bytes}


def estimate_training_memory_bytes(
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    batch_size: int,
    dtype_bytes: int = 4,
) -> dict[str, int]:
    """Training memory of :class:`TransformerLM` with AdamW, everything in one dtype (given).

    Parameters and gradients take one copy each, AdamW two (first and second moments).
    Activations are the tensors kept for the backward pass, per layer and token: the inputs of
    the two RMSNorms (2 d_model), Q, K and V (3 d_model), the attention scores and their softmax
    (2 num_heads context_length, the T x T maps), the heads' output and the output projection's
    output (2 d_model), the SwiGLU's w1 and w3 outputs, SiLU and product (4 d_ff) and its output
    (d_model); then the final RMSNorm (d_model) and the logits with their softmax (2 vocab_size).
    Real frameworks save somewhat more or less; this is the textbook account (CS336 style).
    """
    parameters = estimate_memory_bytes(vocab_size, d_model, num_layers, d_ff, dtype_bytes)
    tokens = batch_size * context_length
    per_layer = 8 * d_model + 2 * num_heads * context_length + 4 * d_ff
    activations = tokens * (num_layers * per_layer + d_model + 2 * vocab_size) * dtype_bytes
    memory = {**adamw_state_bytes(parameters), "activations": activations}
    memory["total"] = sum(memory.values())
    return memory
