"""Incremental decoding with a key/value cache, for :class:`TransformerLM` and :class:`GPT2LM` (given).

Generating n tokens by calling ``model(prefix)`` again after every token re-encodes the whole
prefix each time: O(n^2) token-layer computations for n tokens. But in a causal model the keys
and values of a position never change once computed (position t attends to 0..t only), so they
can be kept: after one pass over the prompt (:meth:`IncrementalDecoder.prefill`), each new token
(:meth:`IncrementalDecoder.step`) runs through the layers alone, and its query attends to the
cached keys and values of every earlier position.

Why this lives outside the model you write: your modules' ``forward`` takes a whole sequence and
returns a whole sequence, which keeps them simple and easy to test. A cache needs a different
forward (a new token's positions, a key/value store per layer, a padding mask), so this module
re-uses your model's weights and sub-modules -- projections, norms, RoPE, feed-forward networks,
embeddings, output layer -- and only re-does the attention step around the cache. It works with
any correct implementation of Part 2 and changes none of it.

Batches of prompts of different lengths are padded on the **left** (``pad_token_id``): padding
tokens are masked out of attention and each row's positions count from its first real token, so a
padded row gives what it would alone. Prompts longer than ``context_length`` keep their last
``context_length`` tokens. Once prompt + generated tokens exceed ``context_length``, every step
re-encodes the last ``context_length`` tokens: their positions have all shifted by one, so the
cached keys (rotated or offset by their old positions) no longer apply. The results equal
re-running the model on the same window (up to float rounding, about 1e-6).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from cs288_lm.model import TransformerBlock, TransformerLM
from cs288_lm.models.gpt2_model import GPT2LM, GPT2Block

# The models whose computation this module takes apart layer by layer (model_parts): those the decoder
# and the analyses (cs288_lm.analysis) read.
LanguageModel = TransformerLM | GPT2LM


class _LlamaParts:
    """Where :class:`TransformerLM` keeps each piece of the computation."""

    def __init__(self, model: TransformerLM):
        self.model = model
        # nn.ModuleList yields plain Modules to a type checker; the model builds its layers as blocks.
        self.layers = cast("list[TransformerBlock]", list(model.layers))
        self.num_heads = self.layers[0].attn.num_heads if self.layers else 1
        self.d_head = model.token_embeddings.weight.shape[1] // self.num_heads
        # One matrix multiplication for queries, keys and values instead of three (a Linear's
        # ``weight`` is (d_out, d_in)): at one token per step, per-call overhead is most of the cost.
        self.qkv_weights = [
            torch.cat([layer.attn.q_proj.weight, layer.attn.k_proj.weight, layer.attn.v_proj.weight]).T.contiguous()
            for layer in self.layers
        ]

    def embed(self, tokens: Int[Tensor, "batch seq"], positions: Int[Tensor, "batch seq"]) -> Tensor:
        return self.model.token_embeddings(tokens)  # positions enter through RoPE

    def qkv(self, index: int, x: Tensor, positions: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.layers[index].attn
        h = self.layers[index].ln1(x)
        q, k, v = (split_heads(part, self.num_heads) for part in (h @ self.qkv_weights[index]).chunk(3, dim=-1))
        if attn.rope is not None:
            # Queries and keys share their positions: rotate both in one call (per-call overhead dominates).
            rotated = attn.rope(torch.cat([q, k], dim=1), positions[:, None, :])
            q, k = rotated.split(self.num_heads, dim=1)
        return q, k, v

    def finish_layer(self, index: int, x: Tensor, attended: Float[Tensor, "batch seq d"]) -> Tensor:
        layer = self.layers[index]
        x = x + layer.attn.output_proj(attended)
        return x + layer.ffn(layer.ln2(x))

    def logits(self, x: Float[Tensor, "batch d"]) -> Float[Tensor, "batch vocab"]:
        return self.model.output(self.model.final_ln(x))


class _GPT2Parts:
    """Where :class:`GPT2LM` keeps each piece of the computation (dropout is off in eval mode)."""

    def __init__(self, model: GPT2LM):
        self.model = model
        self.layers = cast("list[GPT2Block]", list(model.h))
        self.num_heads = self.layers[0].attn.num_heads if self.layers else 1
        self.d_head = model.wte.weight.shape[1] // self.num_heads

    def embed(self, tokens: Int[Tensor, "batch seq"], positions: Int[Tensor, "batch seq"]) -> Tensor:
        return self.model.drop(self.model.wte(tokens) + self.model.wpe(positions))

    def qkv(self, index: int, x: Tensor, positions: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor, Tensor]:
        block = self.layers[index]
        q, k, v = block.attn.c_attn(block.ln_1(x)).chunk(3, dim=-1)
        return split_heads(q, self.num_heads), split_heads(k, self.num_heads), split_heads(v, self.num_heads)

    def finish_layer(self, index: int, x: Tensor, attended: Float[Tensor, "batch seq d"]) -> Tensor:
        block = self.layers[index]
        x = x + block.attn.resid_dropout(block.attn.c_proj(attended))
        return x + block.mlp(block.ln_2(x))

    def logits(self, x: Float[Tensor, "batch d"]) -> Float[Tensor, "batch vocab"]:
        return self.model.lm_head(self.model.ln_f(x))


# Plain views rather than einops: at one token per step, per-call overhead is most of the cost.
def split_heads(x: Float[Tensor, "batch seq d_model"], num_heads: int) -> Float[Tensor, "batch heads seq d_head"]:
    return x.view(x.shape[0], x.shape[1], num_heads, -1).transpose(1, 2)


def merge_heads(x: Float[Tensor, "batch heads seq d_head"]) -> Float[Tensor, "batch seq d_model"]:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def model_parts(model: nn.Module) -> _LlamaParts | _GPT2Parts:
    """The pieces of ``model``'s computation, layer by layer (embed, qkv, finish_layer, logits): what
    the decoder below runs, and what the attention analysis (:mod:`cs288_lm.analysis.attention`)
    runs to keep every head's weights."""
    if isinstance(model, TransformerLM):
        return _LlamaParts(model)
    if isinstance(model, GPT2LM):
        return _GPT2Parts(model)
    raise TypeError(f"IncrementalDecoder supports TransformerLM and GPT2LM, not {type(model).__name__}")


def check_input_ids(input_ids: Tensor) -> None:
    """Prompts must be a 2-D tensor of integer token ids with at least one token per row."""
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or input_ids.shape[1] == 0:
        shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a tensor of shape (batch, seq) with seq >= 1, got {shape}")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")


def leading_pad_counts(input_ids: Int[Tensor, "batch seq"], pad_token_id: int | None) -> Int[Tensor, " batch"]:
    """How many tokens equal to ``pad_token_id`` start each row (zeros without a pad token)."""
    if pad_token_id is None:
        return torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    real = input_ids != pad_token_id
    empty = ~real.any(dim=1)
    if empty.any():
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"prompt rows {rows} hold only padding (pad_token_id={pad_token_id})")
    return real.int().argmax(dim=1)  # the first real token's index


class IncrementalDecoder:
    """Next-token logits for a batch of prompts, one new token at a time.

    ``input_ids`` (batch, seq) holds the prompts, left-padded with ``pad_token_id`` when their
    lengths differ (leading tokens equal to ``pad_token_id`` are padding). Call :meth:`prefill`
    once, then :meth:`step` with each chosen token; both return the logits of the next token.
    ``use_cache=False`` re-encodes the whole (cropped) prefix at every call instead: the same
    numbers, slower; it is the baseline that tests and benchmarks compare the cache with.

    The cache holds keys and values for ``context_length`` positions per layer, allocated up front
    (2 x layers x batch x context_length x d_model numbers). The model should be in eval mode
    (``generate`` takes care of it) and is not modified.
    """

    def __init__(
        self,
        model: nn.Module,
        input_ids: Int[Tensor, "batch seq"],
        pad_token_id: int | None = None,
        use_cache: bool = True,
    ):
        check_input_ids(input_ids)
        self.parts = model_parts(model)
        self.context_length = self.parts.model.context_length
        self.use_cache = use_cache
        parameter = next(model.parameters())
        input_ids = input_ids.to(parameter.device)
        # The window: the last context_length tokens; starts[b] is row b's first real token in it.
        starts = leading_pad_counts(input_ids, pad_token_id)
        crop = max(0, input_ids.shape[1] - self.context_length)
        self.tokens = input_ids[:, crop:]
        self.starts = (starts - crop).clamp(min=0)
        self.padded = bool(self.starts.any())
        self.indices = torch.arange(self.context_length, device=parameter.device)
        self.cache_valid = False
        if use_cache:
            # Preallocated so that a step writes one slot instead of concatenating whole tensors.
            shape = (input_ids.shape[0], self.parts.num_heads, self.context_length, self.parts.d_head)
            self.keys = [torch.empty(shape, dtype=parameter.dtype, device=parameter.device) for _ in self.parts.layers]
            self.values = [torch.empty_like(keys) for keys in self.keys]

    @torch.inference_mode()
    def prefill(self) -> Float[Tensor, "batch vocab"]:
        """Encode the prompts; the logits of the token that follows each."""
        return self._encode_window()

    @torch.inference_mode()
    def step(self, next_tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch vocab"]:
        """Append one token to every row; the logits of the token after it."""
        if next_tokens.shape != (self.tokens.shape[0],):
            raise ValueError(f"next_tokens must have shape ({self.tokens.shape[0]},), got {tuple(next_tokens.shape)}")
        self.tokens = torch.cat([self.tokens, next_tokens.to(self.tokens)[:, None]], dim=1)
        if self.tokens.shape[1] > self.context_length:
            # The window slides: every position shifts, so the cache no longer applies.
            self.tokens = self.tokens[:, 1:]
            self.starts = (self.starts - 1).clamp(min=0)
            self.padded = bool(self.starts.any())
            self.cache_valid = False
        if not self.cache_valid:
            return self._encode_window()
        return self._decode_last()

    def _positions(self, indices: Int[Tensor, " seq"]) -> Int[Tensor, "batch seq"]:
        """RoPE / learned positions count from each row's first real token (padding gets 0)."""
        return (indices[None, :] - self.starts[:, None]).clamp(min=0)

    def _encode_window(self) -> Float[Tensor, "batch vocab"]:
        """Run the whole window through the layers (filling the cache when there is one)."""
        length = self.tokens.shape[1]
        indices = self.indices[:length]
        mask = None
        if self.padded:
            # Causal, real keys only; a padding query attends to itself so that its row has no NaN.
            keys, queries = indices[None, None, :], indices[None, :, None]
            real_from = torch.minimum(self.starts[:, None, None], queries)
            mask = ((keys <= queries) & (keys >= real_from))[:, None]  # (batch, 1, seq, seq)
        # A full window slides at the next step, which invalidates the cache: do not fill it then.
        fill_cache = self.use_cache and length < self.context_length
        positions = self._positions(indices)
        x = self.parts.embed(self.tokens, positions)
        for index in range(len(self.parts.layers)):
            q, k, v = self.parts.qkv(index, x, positions)
            if fill_cache:
                self.keys[index][:, :, :length] = k
                self.values[index][:, :, :length] = v
            x = self.parts.finish_layer(index, x, self._attend(q, k, v, mask, causal=mask is None))
        self.cache_valid = fill_cache
        return self.parts.logits(x[:, -1])

    def _decode_last(self) -> Float[Tensor, "batch vocab"]:
        """Run only the newest token, attending to the cached keys and values."""
        length = self.tokens.shape[1]
        positions = self._positions(self.indices[length - 1 : length])
        mask = None
        if self.padded:
            mask = (self.indices[None, :length] >= self.starts[:, None])[:, None, None, :]  # (batch, 1, 1, length)
        x = self.parts.embed(self.tokens[:, -1:], positions)
        for index in range(len(self.parts.layers)):
            q, k, v = self.parts.qkv(index, x, positions)
            self.keys[index][:, :, length - 1 : length] = k
            self.values[index][:, :, length - 1 : length] = v
            cached_k, cached_v = self.keys[index][:, :, :length], self.values[index][:, :, :length]
            x = self.parts.finish_layer(index, x, self._attend(q, cached_k, cached_v, mask, causal=False))
        return self.parts.logits(x[:, -1])

    @staticmethod
    def _attend(
        q: Float[Tensor, "batch heads queries d"],
        k: Float[Tensor, "batch heads keys d"],
        v: Float[Tensor, "batch heads keys d"],
        mask: Bool[Tensor, "batch 1 queries keys"] | None,
        causal: bool,
    ) -> Float[Tensor, "batch queries d_model"]:
        return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal))
