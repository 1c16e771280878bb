"""Our models and Hugging Face ``transformers``' side by side (given).

* :func:`hf_llama`, :func:`hf_gpt2`, :func:`hf_model`: the Hugging Face equivalent of a
  :class:`~cs288_lm.models.architectures.ModelConfig`, with random weights: ``LlamaForCausalLM`` for
  ``architecture="llama"`` (untied embeddings, one key/value head per query head, our RMSNorm
  epsilon and RoPE theta) and ``GPT2LMHeadModel`` for ``architecture="gpt2"`` (MLP 4 x d_model,
  tied embeddings, our dropout); SDPA attention, no key/value cache unless ``generate`` asks.
* :func:`llama_to_ours`: a ``LlamaForCausalLM`` state dict renamed for
  :class:`~cs288_lm.model.TransformerLM` (GPT-2's conversion is
  :meth:`~cs288_lm.models.gpt2_model.GPT2LM.load_hf_state_dict`).
* :func:`load_hf_gpt2`: a GPT-2 saved locally by ``GPT2LMHeadModel.save_pretrained(DIR)`` and
  ``GPT2Tokenizer.save_pretrained(DIR)`` (or downloaded from the hub: ``gpt2``, ``distilgpt2``,
  ...): ``config.json``, the weights (``model.safetensors``, sharded safetensors with an index, or
  ``pytorch_model.bin``) and the tokenizer as ``vocab.json`` and ``merges.txt``, read into our
  :class:`~cs288_lm.models.gpt2_model.GPT2LM` and :class:`~cs288_lm.tokenizer.Tokenizer`. Nothing
  is downloaded.

Importing this module needs only torch: ``transformers`` (an instructors' tool) and
``safetensors`` (``requirements-tools.txt``) are imported by the functions that use them, through
:func:`~cs288_lm.common.optional.require`, whose error names the missing package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from cs288_lm.common.optional import require
from cs288_lm.common.pretokenization import EOT
from cs288_lm.models.architectures import ModelConfig
from cs288_lm.models.gpt2_model import GPT2LM, LayerNorm
from cs288_lm.tokenizer import Tokenizer

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

RMS_NORM_EPS = 1e-5  # as our RMSNorm
# Hugging Face Llama's module names -> TransformerLM's, inside each layer.
_LLAMA_LAYER_NAMES = {
    "self_attn.q_proj": "attn.q_proj",
    "self_attn.k_proj": "attn.k_proj",
    "self_attn.v_proj": "attn.v_proj",
    "self_attn.o_proj": "attn.output_proj",
    "mlp.gate_proj": "ffn.w1",
    "mlp.down_proj": "ffn.w2",
    "mlp.up_proj": "ffn.w3",
    "input_layernorm": "ln1",
    "post_attention_layernorm": "ln2",
}
# Hugging Face GPT-2 options our GPT-2 does not implement, with the value it assumes.
_UNSUPPORTED = {"scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "add_cross_attention": False}
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def _transformers(purpose: str) -> ModuleType:
    return require("transformers", "transformers", purpose, requirements=None)  # in no file students get


# --- models of a ModelConfig's sizes ------------------------------------------------------------


def hf_llama(config: ModelConfig) -> LlamaForCausalLM:
    """``LlamaForCausalLM`` of the sizes of ``config`` (a llama config; its d_ff resolved as ours)."""
    if config.architecture != "llama":
        raise ValueError(f"hf_llama needs a llama ModelConfig, got architecture={config.architecture!r}")
    transformers = _transformers("a Hugging Face Llama")
    return transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
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
    transformers = _transformers("a Hugging Face GPT-2")
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
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


def llama_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Hugging Face Llama weights to TransformerLM's names (same layout, same RoPE pairing)."""
    ours = {}
    for key, value in state_dict.items():
        if "rotary_emb" in key:
            continue
        key = key.replace("model.embed_tokens", "token_embeddings").replace("model.norm", "final_ln")
        key = key.replace("lm_head", "output").replace("model.layers", "layers")
        for theirs, mine in _LLAMA_LAYER_NAMES.items():
            key = key.replace(theirs, mine)
        ours[key] = value
    return ours


# --- a GPT-2 saved locally ----------------------------------------------------------------------


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
