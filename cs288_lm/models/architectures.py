"""Choosing a model by configuration: the Llama-style TransformerLM or GPT-2 (given).

A new model setting is a field of :class:`ModelConfig` (with its help text) and the code that uses
it (:func:`build_model` or the model's class); the JSON configs, the checkpoints and the flags of
the programs take it from the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cs288_lm.common.setting import setting
from cs288_lm.model import ATTENTION_BACKENDS, AttentionBackend, SwiGLU, TransformerLM
from cs288_lm.models.gpt2_model import GPT2LM
from cs288_lm.models.kv_cache import LanguageModel

Architecture = Literal["llama", "gpt2"]
# The student modules' name for the choice is attention_backend (their API); a model's "torch"
# kernels also replace the Llama MLP's SiLU (FusedSwiGLU), so the configuration names it for both.
Kernels = AttentionBackend


def default_d_ff(d_model: int) -> int:
    """SwiGLU width: about 8/3 d_model (same parameters as a 4x GELU MLP), a multiple of 64."""
    return max(64, round(8 * d_model / 3 / 64) * 64)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything needed to build a language model, by keyword. Each field's help is its flag's
    ``--help`` text in the programs that train one (see :mod:`cs288_lm.training.settings`)."""

    architecture: Architecture = setting(
        "llama", "llama (RoPE, RMSNorm, SwiGLU) or gpt2 (learned positions, LayerNorm, GELU)"
    )
    vocab_size: int = setting(10_000, "tokens in the vocabulary (the trainer takes it from the tokenizer)")
    context_length: int = setting(256, "tokens per training sequence, and the longest the model reads")
    d_model: int = setting(512, "width of the residual stream")
    num_layers: int = setting(4, "transformer blocks")
    num_heads: int = setting(16, "attention heads per block (must divide d_model)")
    d_ff: int | None = setting(
        None, "hidden width of the MLP; none: the architecture's own (llama about 8/3 d_model, gpt2 4 d_model)"
    )
    rope_theta: float = setting(10_000.0, "RoPE base (llama only)")
    dropout: float = setting(0.0, "dropout probability (gpt2 only)")
    kernels: Kernels = setting(
        "torch",
        "reference: every part as the student modules write it; torch: torch's fused kernels where they are "
        "faster (scaled_dot_product_attention, and SiLU in the Llama MLP), same function",
    )

    def __post_init__(self):
        if self.architecture not in ("llama", "gpt2"):
            raise ValueError(f"unknown architecture {self.architecture!r}; choose 'llama' or 'gpt2'")
        if self.kernels not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown kernels {self.kernels!r}; choose one of {ATTENTION_BACKENDS}")
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


def build_model(
    config: ModelConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> LanguageModel:
    """A freshly initialised model for ``config`` (use ``torch.manual_seed`` first for reproducibility)."""
    device = torch.device(device) if isinstance(device, str) else device
    if config.architecture == "gpt2":
        return GPT2LM(
            vocab_size=config.vocab_size,
            context_length=config.context_length,
            d_model=config.d_model,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            dropout=config.dropout,
            attention_backend=config.kernels,
            device=device,
            dtype=dtype,
        )
    model = TransformerLM(
        vocab_size=config.vocab_size,
        context_length=config.context_length,
        d_model=config.d_model,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        d_ff=config.resolved_d_ff,
        rope_theta=config.rope_theta,
        attention_backend=config.kernels,
        device=device,
        dtype=dtype,
    )
    if config.kernels == "torch":
        for layer in model.layers:
            assert isinstance(layer.ffn, SwiGLU)
            layer.ffn = FusedSwiGLU(layer.ffn)
    return model


class FusedSwiGLU(nn.Module):
    """The student's :class:`SwiGLU`, with torch's fused SiLU kernel in place of ``x * sigmoid(x)``.

    Same weights (the same ``w1``, ``w2``, ``w3`` modules, so the same state-dict keys) and the
    same function. The fused kernel makes one pass over the ``d_ff``-wide activations where the
    plain version makes two (three in the backward pass), and keeps one of them for the backward
    pass instead of two.
    """

    def __init__(self, swiglu: SwiGLU):
        super().__init__()
        self.w1, self.w2, self.w3 = swiglu.w1, swiglu.w2, swiglu.w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., d_model) -> (..., d_model)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
