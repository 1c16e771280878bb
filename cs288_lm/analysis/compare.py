"""A pretrained GPT-2 from a local Hugging Face directory, in our GPT-2 architecture (given).

A directory written by ``GPT2LMHeadModel.save_pretrained(DIR)`` and
``GPT2Tokenizer.save_pretrained(DIR)`` (or downloaded from the hub: ``gpt2``, ``distilgpt2``, ...)
holds ``config.json``, the weights (``model.safetensors``, sharded safetensors with an index, or
``pytorch_model.bin``) and the tokenizer as ``vocab.json`` and ``merges.txt``.
:func:`load_hf_gpt2` reads them into :class:`~cs288_lm.models.gpt2_model.GPT2LM` (through
:meth:`~cs288_lm.models.gpt2_model.GPT2LM.load_hf_state_dict`) and our
:class:`~cs288_lm.tokenizer.Tokenizer`. Reading safetensors needs the ``safetensors`` package
(transformers installs it); nothing is downloaded.

:func:`score_models` puts several models side by side on one text: per-token loss and perplexity
(which depend on the tokenizer) and bits per byte (which do not).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cs288_lm.analysis import require
from cs288_lm.analysis.metrics import score_text, scoring_ids
from cs288_lm.common.pretokenization import EOT
from cs288_lm.model import count_parameters
from cs288_lm.models.gpt2_model import GPT2LM, LayerNorm
from cs288_lm.tokenizer import Tokenizer

# Hugging Face options our GPT-2 does not implement, with the value it assumes.
_UNSUPPORTED = {"scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "add_cross_attention": False}
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


@dataclass
class PretrainedGPT2:
    """A loaded GPT-2: our module (eval mode), its tokenizer, its end-of-text id and its config.json."""

    name: str
    model: GPT2LM
    tokenizer: Tokenizer
    eos: int | None
    config: dict


def load_hf_gpt2(directory: str | os.PathLike, device: torch.device | str = "cpu") -> PretrainedGPT2:
    """Load a Hugging Face GPT-2 directory; a clear ValueError or FileNotFoundError for anything else."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"GPT-2 directory not found: {directory}")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ValueError(
            f"{directory} is not a Hugging Face model directory (no config.json); write one with "
            "GPT2LMHeadModel.save_pretrained(DIR) and GPT2Tokenizer.save_pretrained(DIR)"
        )
    config = _read_json(config_path)
    _check_config(config, config_path)
    state = _read_weights(directory)
    embeddings = state.get("transformer.wte.weight", state.get("wte.weight"))
    if embeddings is None:
        raise ValueError(f"{directory}: the weights have no wte.weight (token embeddings): not a GPT-2 checkpoint")
    vocab_size, d_model = config["vocab_size"], config["n_embd"]
    if tuple(embeddings.shape) != (vocab_size, d_model):
        raise ValueError(
            f"{directory}: config.json says vocab_size={vocab_size} and n_embd={d_model}, but the token "
            f"embeddings in the weights are {tuple(embeddings.shape)}"
        )
    tokenizer, eos = _read_tokenizer(directory)
    tokenizer_size = max(tokenizer.vocab) + 1
    if tokenizer_size != vocab_size:
        raise ValueError(
            f"{directory}: the tokenizer (vocab.json) has {tokenizer_size} tokens but the model's vocabulary "
            f"size is {vocab_size}; the tokenizer and the weights must come from the same model"
        )
    model = GPT2LM(vocab_size, config["n_positions"], d_model, config["n_layer"], config["n_head"])
    model.load_hf_state_dict({key: value.float() for key, value in state.items()})
    for module in model.modules():
        if isinstance(module, LayerNorm):
            module.eps = float(config.get("layer_norm_epsilon", 1e-5))
    name = config.get("_name_or_path") or directory.name
    return PretrainedGPT2(str(name) or directory.name, model.to(device).eval(), tokenizer, eos, config)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def _check_config(config: dict, path: Path) -> None:
    if config.get("model_type") != "gpt2":
        raise ValueError(
            f"{path}: model_type is {config.get('model_type')!r}; only GPT-2 checkpoints ('gpt2') load here"
        )
    missing = [key for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head") if key not in config]
    if missing:
        raise ValueError(f"{path}: missing settings {missing}")
    activation = config.get("activation_function", "gelu_new")
    if activation not in _TANH_GELU:
        raise ValueError(f"{path}: activation_function={activation!r}; our GPT-2 uses the tanh GELU ('gelu_new')")
    if config.get("n_inner") not in (None, 4 * config["n_embd"]):
        raise ValueError(f"{path}: n_inner={config['n_inner']}; our GPT-2's MLP is 4 x n_embd wide")
    for key, expected in _UNSUPPORTED.items():
        if config.get(key, expected) != expected:
            raise ValueError(f"{path}: {key}={config[key]} is not supported (our GPT-2 assumes {expected})")


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file() or index.is_file():
        safetensors_torch = require(
            "safetensors.torch", "safetensors", "reading a Hugging Face GPT-2 (model.safetensors)"
        )
        if single.is_file():
            return safetensors_torch.load_file(str(single))
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(safetensors_torch.load_file(str(directory / shard)))
        return state
    binary = directory / "pytorch_model.bin"
    if binary.is_file():
        return torch.load(binary, map_location="cpu", weights_only=True)
    raise ValueError(f"{directory}: no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)")


def _read_tokenizer(directory: Path) -> tuple[Tokenizer, int | None]:
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        raise ValueError(
            f"{directory}: no vocab.json and merges.txt; save the tokenizer beside the model "
            "(GPT2Tokenizer.from_pretrained(...).save_pretrained(DIR))"
        )
    encoder = _read_json(vocab_path)
    specials = [EOT] if isinstance(encoder, dict) and EOT in encoder else []
    tokenizer = Tokenizer.from_files(vocab_path, merges_path, specials)
    return tokenizer, tokenizer.special_token_ids.get(EOT)


@dataclass(frozen=True)
class Contestant:
    """A model to compare: its name, module, tokenizer and end-of-text id."""

    name: str
    model: nn.Module
    tokenizer: Tokenizer
    eos: int | None


def score_models(contestants: Sequence[Contestant], text: str, batch_size: int = 8) -> list[dict]:
    """Per-token loss, perplexity and bits per byte of each model on ``text`` (each with its tokenizer
    and its own context length)."""
    rows = []
    for contestant in contestants:
        ids, num_bytes = scoring_ids(contestant.tokenizer, text, contestant.eos)
        score = score_text(contestant.model, ids, num_bytes, batch_size)
        rows.append(
            {
                "model": contestant.name,
                "parameters": count_parameters(contestant.model),
                "vocab_size": contestant.model.vocab_size,
                "context_length": contestant.model.context_length,
                "tokens": score.tokens,
                "bytes": score.num_bytes,
                "bytes_per_token": score.bytes_per_token,
                "loss_per_token": score.mean_loss,
                "perplexity_per_token": score.perplexity,
                "bits_per_byte": score.bits_per_byte,
            }
        )
    return rows
