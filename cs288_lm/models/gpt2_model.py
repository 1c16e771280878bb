"""The GPT-2 architecture, built from the same pieces as :mod:`cs288_lm.model` (given).

Differences from the Llama-style :class:`~cs288_lm.model.TransformerLM`: learned absolute
position embeddings (``wpe``), LayerNorm with bias instead of RMSNorm, a GELU MLP of width
4 x d_model instead of SwiGLU, biases in every linear layer, dropout on the embeddings, the
attention weights and the residual branches, and an output layer tied to the token embeddings.

Parameter names follow Hugging Face's ``GPT2LMHeadModel`` (``wte``, ``wpe``, ``h.{i}.ln_1``,
``h.{i}.attn.c_attn``, ``h.{i}.attn.c_proj``, ``h.{i}.ln_2``, ``h.{i}.mlp.c_fc``,
``h.{i}.mlp.c_proj``, ``ln_f``) so that :meth:`GPT2LM.load_hf_state_dict` can load an OpenAI
GPT-2 checkpoint saved locally.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs288_lm.model import (
    AttentionBackend,
    Embedding,
    Linear,
    attend,
    check_sequence_length,
    load_state_dict_strictly,
)

# Hugging Face's GPT-2 stores these weights as Conv1D, shape (d_in, d_out): transpose on load.
_HF_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class LinearWithBias(Linear):
    """:class:`~cs288_lm.model.Linear` plus a bias vector (zeros at initialisation)."""

    def __init__(self, d_in: int, d_out: int, device=None, dtype=None):
        super().__init__(d_in, d_out, device=device, dtype=dtype)
        self.bias = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype))

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return super().forward(x) + self.bias


class LayerNorm(nn.Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last dim, computed in float32.

    This given code uses torch's fused kernel (about 10% of a GPT-2 training step on CPU).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        normalized = F.layer_norm(x.float(), (x.shape[-1],), self.weight.float(), self.bias.float(), self.eps)
        return normalized.to(x.dtype)


def gelu(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GELU, tanh approximation (what GPT-2 was trained with): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return F.gelu(x, approximate="tanh")


class GPT2MLP(nn.Module):
    def __init__(self, d_model: int, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        self.c_fc = LinearWithBias(d_model, 4 * d_model, device=device, dtype=dtype)
        self.c_proj = LinearWithBias(4 * d_model, d_model, device=device, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.dropout(self.c_proj(gelu(self.c_fc(x))))


class GPT2Attention(nn.Module):
    """Causal self-attention with a fused query/key/value projection ``c_attn`` and biases."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        attention_backend: AttentionBackend = "reference",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads, self.dropout, self.attention_backend = num_heads, dropout, attention_backend
        self.c_attn = LinearWithBias(d_model, 3 * d_model, device=device, dtype=dtype)
        self.c_proj = LinearWithBias(d_model, d_model, device=device, dtype=dtype)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "... seq d_model"]) -> Float[Tensor, "... seq d_model"]:
        q, k, v = rearrange(
            self.c_attn(x), "... seq (three heads d) -> three ... heads seq d", three=3, heads=self.num_heads
        )
        dropout = self.dropout if self.training else 0.0
        out = attend(q, k, v, backend=self.attention_backend, dropout=dropout)
        return self.resid_dropout(self.c_proj(rearrange(out, "... heads seq d -> ... seq (heads d)")))


class GPT2Block(nn.Module):
    def __init__(
        self, d_model: int, num_heads: int, dropout: float, attention_backend: AttentionBackend, device=None, dtype=None
    ):
        super().__init__()
        self.ln_1 = LayerNorm(d_model, device=device, dtype=dtype)
        self.attn = GPT2Attention(d_model, num_heads, dropout, attention_backend, device=device, dtype=dtype)
        self.ln_2 = LayerNorm(d_model, device=device, dtype=dtype)
        self.mlp = GPT2MLP(d_model, dropout, device=device, dtype=dtype)

    def forward(self, x: Float[Tensor, "... seq d_model"]) -> Float[Tensor, "... seq d_model"]:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2LM(nn.Module):
    """GPT-2 (Radford et al. 2019) with the same interface as :class:`~cs288_lm.model.TransformerLM`.

    Initialisation follows GPT-2: weights normal with std 0.02, the projections that write into
    the residual stream (``c_proj``) scaled by ``1 / sqrt(2 num_layers)``, biases zero.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        dropout: float = 0.0,
        attention_backend: AttentionBackend = "reference",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.wte = Embedding(vocab_size, d_model, device=device, dtype=dtype)
        self.wpe = Embedding(context_length, d_model, device=device, dtype=dtype)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(
            GPT2Block(d_model, num_heads, dropout, attention_backend, device=device, dtype=dtype)
            for _ in range(num_layers)
        )
        self.ln_f = LayerNorm(d_model, device=device, dtype=dtype)
        self.lm_head = Linear(d_model, vocab_size, device=device, dtype=dtype)
        self.lm_head.weight = self.wte.weight  # tied input and output embeddings
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        for name, module in self.named_modules():
            if isinstance(module, (Linear, Embedding)):
                std = 0.02 / math.sqrt(2 * num_layers) if name.endswith("c_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)

    def hidden_states(self, in_indices: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq d_model"]:
        """The final hidden states, after ``ln_f`` and before ``lm_head``."""
        check_sequence_length(in_indices, self.context_length)
        positions = torch.arange(in_indices.shape[-1], device=in_indices.device)
        x = self.drop(self.wte(in_indices) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)

    def forward(self, in_indices: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq vocab_size"]:
        return self.lm_head(self.hidden_states(in_indices))

    def load_hf_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a Hugging Face ``GPT2LMHeadModel`` (or ``GPT2Model``) state dict.

        Strips the ``transformer.`` prefix, drops the causal-mask buffers (``attn.bias``,
        ``attn.masked_bias``) and the tied ``lm_head.weight``, and transposes the Conv1D weights.
        """
        converted = {}
        for key, value in state_dict.items():
            key = key.removeprefix("transformer.")
            if key == "lm_head.weight" or key.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            converted[key] = value.t() if key.endswith(_HF_CONV1D_SUFFIXES) else value
        converted["lm_head.weight"] = converted.get("wte.weight", torch.empty(0))
        load_state_dict_strictly(self, converted)
