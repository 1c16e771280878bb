"""The Hugging Face ``transformers`` equivalents of our models, built from our :class:`ModelConfig`.

One definition for every benchmark: ``LlamaForCausalLM`` for ``architecture="llama"`` (untied
embeddings, one key/value head per query head, our RMSNorm epsilon and RoPE theta) and
``GPT2LMHeadModel`` for ``architecture="gpt2"`` (MLP 4 x d_model, tied embeddings, our dropout).
Random weights, nothing downloaded; SDPA attention and no key/value cache during training.
Importing this module imports ``transformers`` (requirements-dev.txt).
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cs288_lm.models.architectures import ModelConfig  # noqa: E402

RMS_NORM_EPS = 1e-5  # as our RMSNorm


def hf_llama(config: ModelConfig) -> LlamaForCausalLM:
    """``LlamaForCausalLM`` of the sizes of ``config`` (a llama config; its d_ff resolved as ours)."""
    if config.architecture != "llama":
        raise ValueError(f"hf_llama needs a llama ModelConfig, got architecture={config.architecture!r}")
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.d_model,
            intermediate_size=config.resolved_d_ff,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads,
            max_position_embeddings=config.context_length,
            rope_theta=config.rope_theta,
            rms_norm_eps=RMS_NORM_EPS,
            tie_word_embeddings=False,
            attn_implementation="sdpa",
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
    )


def hf_gpt2(config: ModelConfig) -> GPT2LMHeadModel:
    """``GPT2LMHeadModel`` of the sizes of ``config`` (a gpt2 config)."""
    if config.architecture != "gpt2":
        raise ValueError(f"hf_gpt2 needs a gpt2 ModelConfig, got architecture={config.architecture!r}")
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.context_length,
            n_embd=config.d_model,
            n_layer=config.num_layers,
            n_head=config.num_heads,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            attn_implementation="sdpa",
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def hf_model(config: ModelConfig) -> LlamaForCausalLM | GPT2LMHeadModel:
    """The Hugging Face model of ``config``'s architecture."""
    return hf_llama(config) if config.architecture == "llama" else hf_gpt2(config)
