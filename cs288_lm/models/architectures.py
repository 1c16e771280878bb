"""Choosing a model by configuration: the Llama-style TransformerLM or GPT-2 (given)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cs288_lm.model import ATTENTION_BACKENDS, AttentionBackend, SwiGLU, TransformerLM
from cs288_lm.models.gpt2_model import GPT2LM

Architecture = Literal["llama", "gpt2"]


def default_d_ff(d_model: int) -> int:
    """SwiGLU width: about 8/3 d_model (same parameters as a 4x GELU MLP), a multiple of 64."""
    return max(64, round(8 * d_model / 3 / 64) * 64)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a language model. ``d_ff=None`` picks the architecture's default."""

    architecture: Architecture = "llama"
    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int | None = None
    rope_theta: float = 10_000.0  # llama only
    dropout: float = 0.0  # gpt2 only
    # "reference": every part as the student modules write it; "torch": torch's fused kernels where
    # they are faster (scaled_dot_product_attention, and SiLU in the Llama MLP), same function.
    attention_backend: AttentionBackend = "torch"

    def __post_init__(self):
        if self.architecture not in ("llama", "gpt2"):
            raise ValueError(f"unknown architecture {self.architecture!r}; choose 'llama' or 'gpt2'")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {self.attention_backend!r}; choose one of {ATTENTION_BACKENDS}")
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.architecture == "gpt2" and self.d_ff not in (None, 4 * self.d_model):
            raise ValueError(f"GPT-2's MLP is 4 x d_model = {4 * self.d_model} wide; got d_ff={self.d_ff}")
        if self.architecture == "llama" and self.dropout:
            raise ValueError("the llama architecture has no dropout; use architecture='gpt2'")

    @property
    def resolved_d_ff(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        return 4 * self.d_model if self.architecture == "gpt2" else default_d_ff(self.d_model)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def build_model(config: ModelConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """A freshly initialised model for ``config`` (use ``torch.manual_seed`` first for reproducibility)."""
    if config.architecture == "gpt2":
        return GPT2LM(
            config.vocab_size,
            config.context_length,
            config.d_model,
            config.num_layers,
            config.num_heads,
            config.dropout,
            config.attention_backend,
            device=device,
            dtype=dtype,
        )
    model = TransformerLM(
        config.vocab_size,
        config.context_length,
        config.d_model,
        config.num_layers,
        config.num_heads,
        config.resolved_d_ff,
        config.rope_theta,
        config.attention_backend,
        device=device,
        dtype=dtype,
    )
    if config.attention_backend == "torch":
        for layer in model.layers:
            layer.ffn = FusedSwiGLU(layer.ffn)
    return model


class FusedSwiGLU(nn.Module):
    """The student's :class:`SwiGLU`, with torch's fused SiLU kernel in place of ``x * sigmoid(x)``.

    Same weights (the same ``w1``, ``w2``, ``w3`` modules, so the same state-dict keys) and the
    same function. The fused kernel makes one pass over the ``d_ff``-wide activations where the
    plain version makes two (three in the backward pass), and keeps one of them for the backward
    pass instead of two: about 2% of a training step of the default model on a CPU.
    """

    def __init__(self, swiglu: SwiGLU):
        super().__init__()
        self.w1, self.w2, self.w3 = swiglu.w1, swiglu.w2, swiglu.w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., d_model) -> (..., d_model)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
