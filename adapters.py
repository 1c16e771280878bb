"""The only door the tests use into ``cs288_lm``.

Each adapter builds an object from the package or calls one function and returns the result, with
no logic of its own, so the tests stay the same whatever the internal layout of the package.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from cs288_lm import bpe as _bpe
from cs288_lm import checkpointing as _checkpointing
from cs288_lm import data as _data
from cs288_lm import model as _model
from cs288_lm import nn_utils
from cs288_lm import optimizer as _optimizer
from cs288_lm import qa_model as _qa_model
from cs288_lm import sampling as _sampling
from cs288_lm import tokenizer as _tokenizer
from cs288_lm.common.predictions import PredictionsError as PredictionsError
from cs288_lm.common.predictions import accuracy as accuracy
from cs288_lm.common.predictions import load_grading_rules as load_grading_rules
from cs288_lm.common.predictions import load_predictions as load_predictions
from cs288_lm.common.predictions import part4_points as part4_points
from cs288_lm.common.predictions import save_predictions as save_predictions
from cs288_lm.common.predictions import validate_predictions as validate_predictions
from cs288_lm.common.pretokenization import EOT as EOT
from cs288_lm.common.qa_audit import FileTexts as FileTexts
from cs288_lm.common.qa_audit import audit_split as audit_split
from cs288_lm.common.qa_audit import feature_matrix as feature_matrix
from cs288_lm.common.qa_audit import fit_conditional_logit as fit_conditional_logit
from cs288_lm.common.qa_data import BLANK as BLANK
from cs288_lm.common.qa_data import QuestionFileError as QuestionFileError
from cs288_lm.common.qa_data import build_lexicon as build_lexicon
from cs288_lm.common.qa_data import leak_pattern as leak_pattern
from cs288_lm.common.qa_data import load_questions as load_questions
from cs288_lm.common.qa_data import make_questions as make_questions
from cs288_lm.common.qa_data import save_questions as save_questions
from cs288_lm.common.qa_data import split_sentences as split_sentences
from cs288_lm.common.qa_data import split_stories as split_stories
from cs288_lm.common.qa_data import word_stem as word_stem
from cs288_lm.common.qa_rules import FREQUENCY_RULES as FREQUENCY_RULES
from cs288_lm.common.qa_rules import BigramModel as BigramModel
from cs288_lm.common.qa_rules import question_stats as question_stats
from cs288_lm.datasets import CLOZE_TEMPLATE as CLOZE_TEMPLATE
from cs288_lm.datasets import MultipleChoiceQADataset as MultipleChoiceQADataset
from cs288_lm.datasets import PretrainingDataset as PretrainingDataset
from cs288_lm.datasets import collate_multiple_choice as collate_multiple_choice
from cs288_lm.model import TransformerLM as TransformerLM
from cs288_lm.models import kv_cache as _kv_cache
from cs288_lm.models.architectures import ModelConfig as _ModelConfig
from cs288_lm.models.architectures import build_model as _build_model
from cs288_lm.prompting import PromptingPipeline as PromptingPipeline
from cs288_lm.prompting import PromptTemplate as PromptTemplate
from cs288_lm.prompting import ScoringSetup as ScoringSetup
from cs288_lm.qa_model import POOLINGS as POOLINGS
from cs288_lm.qa_model import TransformerForMultipleChoice as TransformerForMultipleChoice
from cs288_lm.training import encoding as _encoding


def run_train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str],
    **kwargs,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train byte-level BPE on a text file; returns ``(vocab, merges)``.

    Keyword arguments (such as ``workers``) are passed on to :func:`cs288_lm.bpe.train_bpe`.
    """
    return _bpe.train_bpe(input_path, vocab_size, special_tokens, **kwargs)


def get_tokenizer(
    vocab: dict[int, bytes],
    merges: list[tuple[bytes, bytes]],
    special_tokens: Sequence[str] | None = None,
) -> _tokenizer.Tokenizer:
    """A tokenizer with ``encode``, ``decode``, ``encode_iterable`` and ``save``."""
    return _tokenizer.Tokenizer(vocab, merges, special_tokens)


def get_tokenizer_from_files(
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
    special_tokens: Sequence[str] | None = None,
) -> _tokenizer.Tokenizer:
    """A tokenizer loaded from GPT-2-format ``vocab.json`` and ``merges.txt``."""
    return _tokenizer.Tokenizer.from_files(vocab_path, merges_path, special_tokens)


def get_tokenizer_from_directory(directory: str | os.PathLike) -> _tokenizer.Tokenizer:
    """A tokenizer loaded from a folder written by ``Tokenizer.save``."""
    return _tokenizer.Tokenizer.from_directory(directory)


def run_encode_file(
    tokenizer: _tokenizer.Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    workers: int | None = None,
):
    """Encode a whole text file into a ``.npy`` array of token ids; returns the output path."""
    return _encoding.encode_file(tokenizer, input_path, output_path, workers=workers)


# ---------------------------------------------------------------------------------------------
# Part 2: the transformer
# ---------------------------------------------------------------------------------------------


def run_linear(
    d_in: int, d_out: int, weights: Float[Tensor, "d_out d_in"], in_features: Float[Tensor, "... d_in"]
) -> Float[Tensor, "... d_out"]:
    layer = _model.Linear(d_in, d_out)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_embedding(
    vocab_size: int, d_model: int, weights: Float[Tensor, "vocab_size d_model"], token_ids: Int[Tensor, ...]
) -> Float[Tensor, "... d_model"]:
    layer = _model.Embedding(vocab_size, d_model)
    layer.load_state_dict({"weight": weights})
    return layer(token_ids)


def run_rmsnorm(
    d_model: int, eps: float, weights: Float[Tensor, " d_model"], in_features: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_model"]:
    layer = _model.RMSNorm(d_model, eps)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_silu(in_features: Float[Tensor, ...]) -> Float[Tensor, ...]:
    return _model.silu(in_features)


def run_swiglu(
    d_model: int,
    d_ff: int,
    w1_weight: Float[Tensor, "d_ff d_model"],
    w2_weight: Float[Tensor, "d_model d_ff"],
    w3_weight: Float[Tensor, "d_ff d_model"],
    in_features: Float[Tensor, "... d_model"],
) -> Float[Tensor, "... d_model"]:
    layer = _model.SwiGLU(d_model, d_ff)
    layer.load_state_dict({"w1.weight": w1_weight, "w2.weight": w2_weight, "w3.weight": w3_weight})
    return layer(in_features)


def run_rope(
    d_k: int,
    theta: float,
    max_seq_len: int,
    in_query_or_key: Float[Tensor, "... seq d_k"],
    token_positions: Int[Tensor, "... seq"],
) -> Float[Tensor, "... seq d_k"]:
    return _model.RotaryPositionEmbedding(d_k, max_seq_len, theta)(in_query_or_key, token_positions)


def run_softmax(in_features: Float[Tensor, ...], dim: int) -> Float[Tensor, ...]:
    return nn_utils.softmax(in_features, dim)


def run_scaled_dot_product_attention(
    Q: Float[Tensor, "... queries d_k"],
    K: Float[Tensor, "... keys d_k"],
    V: Float[Tensor, "... keys d_v"],
    mask: Bool[Tensor, "... queries keys"] | None = None,
) -> Float[Tensor, "... queries d_v"]:
    return _model.scaled_dot_product_attention(Q, K, V, mask)


def _attention_state(q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight) -> dict[str, Tensor]:
    return {
        "q_proj.weight": q_proj_weight,
        "k_proj.weight": k_proj_weight,
        "v_proj.weight": v_proj_weight,
        "output_proj.weight": o_proj_weight,
    }


def run_multihead_self_attention(
    d_model: int,
    num_heads: int,
    q_proj_weight: Float[Tensor, "d_model d_model"],
    k_proj_weight: Float[Tensor, "d_model d_model"],
    v_proj_weight: Float[Tensor, "d_model d_model"],
    o_proj_weight: Float[Tensor, "d_model d_model"],
    in_features: Float[Tensor, "... seq d_model"],
    attention_backend: _model.AttentionBackend = "reference",
) -> Float[Tensor, "... seq d_model"]:
    layer = _model.MultiHeadSelfAttention(d_model, num_heads, attention_backend=attention_backend)
    layer.load_state_dict(_attention_state(q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight))
    return layer(in_features)


def run_multihead_self_attention_with_rope(
    d_model: int,
    num_heads: int,
    max_seq_len: int,
    theta: float,
    q_proj_weight: Float[Tensor, "d_model d_model"],
    k_proj_weight: Float[Tensor, "d_model d_model"],
    v_proj_weight: Float[Tensor, "d_model d_model"],
    o_proj_weight: Float[Tensor, "d_model d_model"],
    in_features: Float[Tensor, "... seq d_model"],
    token_positions: Int[Tensor, "... seq"] | None = None,
    attention_backend: _model.AttentionBackend = "reference",
) -> Float[Tensor, "... seq d_model"]:
    layer = _model.MultiHeadSelfAttentionWithRoPE(d_model, num_heads, max_seq_len, theta, attention_backend)
    layer.load_state_dict(_attention_state(q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight))
    return layer(in_features, token_positions)


def run_transformer_block(
    d_model: int,
    num_heads: int,
    d_ff: int,
    max_seq_len: int,
    theta: float,
    weights: dict[str, Tensor],
    in_features: Float[Tensor, "batch seq d_model"],
    attention_backend: _model.AttentionBackend = "reference",
) -> Float[Tensor, "batch seq d_model"]:
    """``weights`` uses the block's names: ``attn.q_proj.weight``, ..., ``ln1.weight``, ``ffn.w1.weight``, ..."""
    block = _model.TransformerBlock(d_model, num_heads, d_ff, max_seq_len, theta, attention_backend)
    _model.load_state_dict_strictly(block, weights)
    return block(in_features)


def run_transformer_lm(
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    rope_theta: float,
    weights: dict[str, Tensor],
    in_indices: Int[Tensor, "batch seq"],
    attention_backend: _model.AttentionBackend = "reference",
) -> Float[Tensor, "batch seq vocab_size"]:
    """``weights`` may use our names (``final_ln``, ``output``) or CS336's (``ln_final``, ``lm_head``)."""
    lm = TransformerLM(
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_ff=d_ff,
        rope_theta=rope_theta,
        attention_backend=attention_backend,
    )
    lm.load_weights(weights)
    return lm(in_indices)


def create_transformer_lm(
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    rope_theta: float = 10000.0,
) -> TransformerLM:
    return TransformerLM(
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_ff=d_ff,
        rope_theta=rope_theta,
    )


def run_count_parameters(model: torch.nn.Module) -> int:
    return _model.count_parameters(model)


def run_count_flops_per_token(
    vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int, d_ff: int
) -> int:
    return _model.count_flops_per_token(vocab_size, context_length, d_model, num_layers, num_heads, d_ff)


def run_estimate_memory_bytes(vocab_size: int, d_model: int, num_layers: int, d_ff: int, dtype_bytes: int = 4) -> int:
    return _model.estimate_memory_bytes(vocab_size, d_model, num_layers, d_ff, dtype_bytes)


# ---------------------------------------------------------------------------------------------
# Part 3: training utilities
# ---------------------------------------------------------------------------------------------


def run_cross_entropy(
    inputs: Float[Tensor, "... vocab_size"], targets: Int[Tensor, ...], ignore_index: int | None = None
) -> Float[Tensor, ""]:
    return nn_utils.cross_entropy(inputs, targets, ignore_index)


def run_log_softmax(in_features: Float[Tensor, ...], dim: int) -> Float[Tensor, ...]:
    return nn_utils.log_softmax(in_features, dim)


def run_perplexity(
    inputs: Float[Tensor, "... vocab_size"], targets: Int[Tensor, ...], ignore_index: int | None = None
) -> Float[Tensor, ""]:
    return nn_utils.perplexity(inputs, targets, ignore_index)


def run_token_accuracy(
    inputs: Float[Tensor, "... vocab_size"], targets: Int[Tensor, ...], ignore_index: int | None = None
) -> Float[Tensor, ""]:
    return nn_utils.token_accuracy(inputs, targets, ignore_index)


def run_gradient_clipping(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float) -> Tensor:
    """Clips in place; returns the global norm before clipping."""
    return nn_utils.gradient_clipping(parameters, max_l2_norm)


def get_adamw_cls() -> type[_optimizer.AdamW]:
    return _optimizer.AdamW


def run_get_lr_cosine_schedule(
    it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    return nn_utils.get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


def run_get_batch(
    dataset: npt.NDArray, batch_size: int, context_length: int, device: str, rng: np.random.Generator | None = None
) -> tuple[Tensor, Tensor]:
    return _data.get_batch(dataset, batch_size, context_length, device, rng)


def run_save_checkpoint(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, iteration: int, out: str | os.PathLike | BinaryIO
) -> None:
    _checkpointing.save_checkpoint(model, optimizer, iteration, out)


def run_load_checkpoint(
    src: str | os.PathLike | BinaryIO, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    return _checkpointing.load_checkpoint(src, model, optimizer)


# ---------------------------------------------------------------------------------------------
# Part 4: sampling
# ---------------------------------------------------------------------------------------------


def create_gpt2_lm(
    vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int
) -> torch.nn.Module:
    """A randomly initialised :class:`cs288_lm.models.gpt2_model.GPT2LM` (no dropout)."""
    config = _ModelConfig(
        architecture="gpt2",
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
    )
    return _build_model(config)


def run_top_k_filter(logits: Float[Tensor, "... vocab"], k: int) -> Float[Tensor, "... vocab"]:
    return _sampling.top_k_filter(logits, k)


def run_top_p_filter(logits: Float[Tensor, "... vocab"], p: float) -> Float[Tensor, "... vocab"]:
    return _sampling.top_p_filter(logits, p)


def run_sample_next_token(
    logits: Float[Tensor, "batch vocab"],
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, " batch"]:
    return _sampling.sample_next_token(logits, temperature, top_k, top_p, generator)


def get_incremental_decoder(
    model: torch.nn.Module, input_ids: Int[Tensor, "batch seq"], pad_token_id: int | None = None, use_cache: bool = True
) -> _kv_cache.IncrementalDecoder:
    """The given KV-cache decoder: ``prefill()`` then ``step(next_tokens)``, each returning (batch, vocab) logits."""
    return _kv_cache.IncrementalDecoder(model, input_ids, pad_token_id, use_cache)


def generate(
    model: torch.nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Int[Tensor, "batch new"]:
    """Only the new tokens (at most ``max_new_tokens`` columns; fewer when every row stopped at EOS)."""
    return _sampling.generate(
        model,
        input_ids,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        eos_token_id,
        pad_token_id,
        seed,
        generator,
        use_cache,
    )


def greedy_decode(
    model: torch.nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Int[Tensor, "batch total"]:
    """The prompt followed by the new tokens."""
    return _sampling.greedy_decode(model, input_ids, max_new_tokens, eos_token_id, pad_token_id)


def top_k_decode(
    model: torch.nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    k: int = 50,
    temperature: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
) -> Int[Tensor, "batch total"]:
    """The prompt followed by the new tokens."""
    return _sampling.top_k_decode(model, input_ids, max_new_tokens, k, temperature, eos_token_id, pad_token_id, seed)


def nucleus_decode(
    model: torch.nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    p: float = 0.9,
    temperature: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
) -> Int[Tensor, "batch total"]:
    """The prompt followed by the new tokens."""
    return _sampling.nucleus_decode(model, input_ids, max_new_tokens, p, temperature, eos_token_id, pad_token_id, seed)


# ---------------------------------------------------------------------------------------------
# Part 4: datasets, the multiple-choice model, prompting and predictions
# ---------------------------------------------------------------------------------------------


def run_pool_hidden_states(
    hidden: Float[Tensor, "batch seq d_model"], attention_mask: Int[Tensor, "batch seq"], pooling: _qa_model.Pooling
) -> Float[Tensor, "batch d_model"]:
    return _qa_model.pool_hidden_states(hidden, attention_mask, pooling)


def _exported(value: object) -> bool:
    """An adapter of this file or a class, function or constant of ``cs288_lm`` (a constant has no
    ``__module__``); not a module and not a helper of the standard library or a third party."""
    module = getattr(value, "__module__", __name__) or ""
    return not inspect.ismodule(value) and module.split(".")[0] in (__name__, "cs288_lm")


# What `from adapters import *` gives (the course's tests import that way): every adapter above and
# the given names the tests use as they are, imported as themselves (`import X as X` marks a
# re-export). What an adapter wraps is imported under a private name, so that a test module's own
# names (torch's softmax, a Tokenizer) are not replaced by the student's. tests/test_qa.py checks
# that every name the tests reach here is given.
__all__ = sorted(name for name, value in list(globals().items()) if not name.startswith("_") and _exported(value))
