"""Helpers shared by the public and hidden tests: paths, reference implementations, corpora.

The references here are deliberately simple and independent of ``cs288_lm``: a naive BPE trainer
that recounts every pair after each merge, and tiktoken's ``gpt2`` encoding built from the GPT-2
files in ``tests/fixtures/gpt2`` (tiktoken cannot download them offline). The objects the tests
build from the package (tokenizers, tiny models) are built here through ``adapters.py``, once for
the public and the hidden tests (which the grader lays over the handout, next to ``tests/``).
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import regex
import tiktoken
import torch
import torch.nn.functional as F

import adapters

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = REPO_ROOT / "data" / "tinystories"
GPT2_VOCAB = FIXTURES / "gpt2" / "gpt2_vocab.json"
GPT2_MERGES = FIXTURES / "gpt2" / "gpt2_merges.txt"
TOKENIZER_DIR = REPO_ROOT / "data" / "tokenizer"  # the bundled tokenizer (4,096 tokens, trained on TinyStories)
EOT = adapters.EOT  # "<|endoftext|>": ends each story of the data files and is GPT-2's special token
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=1)
def _gpt2_byte_decoder() -> dict[str, int]:
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    characters = {byte: chr(byte) for byte in printable}
    for extra, byte in enumerate(b for b in range(256) if b not in characters):
        characters[byte] = chr(256 + extra)
    return {character: byte for byte, character in characters.items()}


def _to_bytes(text: str) -> bytes:
    decoder = _gpt2_byte_decoder()
    return bytes(decoder[character] for character in text)


@functools.lru_cache(maxsize=1)
def gpt2_vocab_and_merges() -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """The GPT-2 vocabulary and merges as bytes, read straight from the fixture files."""
    encoder = json.loads(GPT2_VOCAB.read_text(encoding="utf-8"))
    vocab = {token_id: (text.encode() if text == EOT else _to_bytes(text)) for text, token_id in encoder.items()}
    merges = []
    for line in GPT2_MERGES.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#version"):
            left, right = line.split(" ")
            merges.append((_to_bytes(left), _to_bytes(right)))
    return vocab, merges


@functools.lru_cache(maxsize=1)
def gpt2_tiktoken() -> tiktoken.Encoding:
    """tiktoken's ``gpt2`` encoding, built offline from the fixture files."""
    vocab, _ = gpt2_vocab_and_merges()
    ranks = {token: token_id for token_id, token in vocab.items() if token != EOT.encode()}
    return tiktoken.Encoding(
        name="gpt2_offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256}
    )


def tiktoken_from_vocab(vocab: dict[int, bytes], special_tokens: list[str], name: str = "trained") -> tiktoken.Encoding:
    """A tiktoken encoding over a vocabulary trained by us (special tokens by their ids)."""
    special_ids = {token: next(i for i, b in vocab.items() if b == token.encode()) for token in special_tokens}
    ranks = {token: token_id for token_id, token in vocab.items() if token_id not in special_ids.values()}
    return tiktoken.Encoding(name=name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=special_ids)


def naive_train_bpe(
    text: str, vocab_size: int, special_tokens: list[str]
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Obviously correct BPE training: recount every pair after every merge.

    Id order: special tokens, the 256 bytes, then merges. Ties: greatest (left, right) bytes.
    """
    if special_tokens:
        alternatives = "|".join(regex.escape(t) for t in sorted(special_tokens, key=len, reverse=True))
        pieces = regex.split(alternatives, text)
    else:
        pieces = [text]
    frequency = Counter(word for piece in pieces for word in regex.findall(GPT2_PATTERN, piece))
    words = {word: [bytes([b]) for b in word.encode("utf-8")] for word in frequency}
    vocab = {i: token.encode("utf-8") for i, token in enumerate(special_tokens)}
    vocab.update({len(special_tokens) + b: bytes([b]) for b in range(256)})
    merges = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, tokens in words.items():
            for pair in zip(tokens, tokens[1:], strict=False):
                pairs[pair] += frequency[word]
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        for word, tokens in words.items():
            merged, i = [], 0
            while i < len(tokens):
                if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) == best:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(tokens[i])
                    i += 1
            words[word] = merged
    return vocab, merges


def read_stories(*splits: str) -> list[str]:
    """The stories of the bundled TinyStories splits, each without its ``<|endoftext|>`` line."""
    stories = []
    for split in splits:
        text = (DATA / f"{split}.txt").read_text(encoding="utf-8")
        stories += [story.strip("\n") for story in text.split(EOT) if story.strip()]
    return stories


def write_story_corpus(path: Path, stories: list[str], target_bytes: int, seed: int) -> Path:
    """Write shuffled copies of ``stories`` separated by ``<|endoftext|>`` lines until ``target_bytes``."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < target_bytes:
        order = stories[:]
        rng.shuffle(order)
        for story in order:
            parts.append(f"{story}\n{EOT}\n")
            size += len(parts[-1].encode("utf-8"))
            if size >= target_bytes:
                break
    path.write_text("".join(parts), encoding="utf-8")
    return path


def pin_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraw every weight matrix here, in the order of the parameter names, from the spec's
    truncated normal (std 1 for embeddings, sqrt(2 / (d_in + d_out)) otherwise).

    The spec fixes each weight's distribution but not the order in which a model creates its
    layers, so ``torch.manual_seed`` alone gives two correct models different weights. Vectors
    (norm gains, biases) start at constants and are kept.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if parameter.dim() < 2:
                continue
            embedding = name.rpartition(".")[0].endswith(("token_embeddings", "wte", "wpe"))
            std = 1.0 if embedding else math.sqrt(2 / sum(parameter.shape))
            values = torch.nn.init.trunc_normal_(torch.empty(parameter.shape), 0.0, std, -3 * std, 3 * std, generator)
            parameter.copy_(values)
    return model


def state_differences(state_a, state_b) -> dict:
    """The entries in which two state dicts (or modules') differ: {name: how many values differ}.

    ``{}`` when they are identical; "missing" for a name only one of them has, "shape" for a shape
    that differs.
    """
    if isinstance(state_a, torch.nn.Module):
        state_a = state_a.state_dict()
    if isinstance(state_b, torch.nn.Module):
        state_b = state_b.state_dict()
    differences = {}
    for name in sorted(state_a.keys() | state_b.keys()):
        if name not in state_a or name not in state_b:
            differences[name] = "missing"
        elif state_a[name].shape != state_b[name].shape:
            differences[name] = "shape"
        elif not torch.equal(state_a[name], state_b[name]):
            differences[name] = int((state_a[name] != state_b[name]).sum())
    return differences


def window_mismatches(dataset, context_length: int, inputs, targets) -> list[int]:
    """For get_batch's rows: 0 for a valid window of ``dataset``, else how many of its tokens differ.

    A valid window starts at ``s`` in ``0 .. len(dataset) - context_length - 1``: inputs
    ``dataset[s : s + context_length]``, targets ``dataset[s + 1 : s + context_length + 1]``. A
    row is compared with the valid windows that start with its first token (with all of them if
    none does); -1 for a row of the wrong length.
    """
    data = np.asarray(dataset, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(data, context_length + 1)  # one row per valid start
    mismatches = []
    for row_in, row_out in zip(inputs.numpy(), targets.numpy(), strict=True):
        if row_in.shape != (context_length,) or row_out.shape != (context_length,):
            mismatches.append(-1)
            continue
        candidates = np.flatnonzero(windows[:, 0] == row_in[0])
        near = windows[candidates] if len(candidates) else windows
        differing = (near[:, :-1] != row_in).sum(axis=1) + (near[:, 1:] != row_out).sum(axis=1)
        mismatches.append(int(differing.min()))
    return mismatches


def write_utf8(path: Path, text: str) -> Path:
    """Write ``text`` byte for byte (no newline translation, so "\\r\\n" stays as it is)."""
    path.write_bytes(text.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# Objects built through the adapters
# ---------------------------------------------------------------------------------------------


def gpt2_tokenizer():
    """The student's tokenizer with GPT-2's vocabulary and merges and ``<|endoftext|>`` special."""
    vocab, merges = gpt2_vocab_and_merges()
    return adapters.get_tokenizer(vocab, merges, [EOT])


def bundled_tokenizer():
    """The student's tokenizer loaded from the bundled ``data/tokenizer`` directory."""
    return adapters.get_tokenizer_from_directory(TOKENIZER_DIR)


def generator(seed: int) -> torch.Generator:
    """A CPU random number generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def pinned_lm(
    architecture: str,
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """A tiny language model in eval mode: ``"llama"`` (TransformerLM, SwiGLU of width ``d_ff``) or
    ``"gpt2"`` (GPT2LM), with every weight matrix drawn by :func:`pin_weights` from ``seed``."""
    torch.manual_seed(seed)
    if architecture == "llama":
        model = adapters.create_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff)
    elif architecture == "gpt2":
        model = adapters.create_gpt2_lm(vocab_size, context_length, d_model, num_layers, num_heads)
    else:
        raise ValueError(f"unknown architecture {architecture!r}")
    return pin_weights(model, seed).eval()


def lm_training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor) -> float:
    """One optimizer step of next-token cross-entropy on ``tokens`` (batch, seq + 1); the loss."""
    optimizer.zero_grad()
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    return loss.item()


def flat_parameters(parameters) -> torch.Tensor:
    """Every value of ``parameters`` (an iterable of tensors), detached, in one vector."""
    return torch.cat([parameter.detach().reshape(-1) for parameter in parameters])


def max_parameter_difference(parameters_a, parameters_b) -> float:
    """The largest absolute difference between corresponding tensors of two iterables."""
    return max((a - b).abs().max().item() for a, b in zip(parameters_a, parameters_b, strict=True))


# ---------------------------------------------------------------------------------------------
# Checks and references shared by the public and hidden tests
# ---------------------------------------------------------------------------------------------


def distinct_allowed(values: list[int], allowed: set[int]) -> list[int]:
    """The distinct ``values`` that are in ``allowed``, sorted: the expected value of
    ``check_equal(sorted(set(values)), distinct_allowed(values, allowed))``, which checks that every
    value is allowed. (A test passes it to ``check_equal`` itself, so that the grader's sandbox,
    which drops the expected values of a test module's checks, drops ``allowed`` too.)"""
    return sorted(set(values) & set(allowed))


def reference_pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pooling of right-padded hidden states (batch, seq, d) over each row's real positions, in
    float64: the last real position, their mean or their element-wise maximum; zeros for a row
    without real positions."""
    rows = []
    for states, row_mask in zip(hidden.double(), mask, strict=True):
        real = states[: int(row_mask.sum())]
        if len(real) == 0:
            rows.append(torch.zeros(states.shape[-1], dtype=torch.float64))
            continue
        rows.append({"last": real[-1], "mean": real.sum(0) / len(real), "max": real.max(0).values}[pooling])
    return torch.stack(rows)


@torch.no_grad()
def reference_log_probs(model, tokenizer, prompt: str, continuation: str) -> torch.Tensor:
    """log p(continuation token t | everything before it) in float64, from ``model.forward`` on the
    joined ids cropped from the left to the context length. The prompt must encode to at least
    one token (the first continuation token is read from its last one)."""
    prompt_ids, continuation_ids = tokenizer.encode(prompt), tokenizer.encode(continuation)
    if not prompt_ids or not 0 < len(continuation_ids) < model.context_length:
        raise ValueError(
            "reference_log_probs needs a prompt of 1 token or more and a continuation of 1 to context_length - 1 "
            f"tokens, got {prompt!r} + {continuation!r}"
        )
    ids = (prompt_ids + continuation_ids)[-model.context_length :]
    log_probs = torch.log_softmax(model(torch.tensor([ids]))[0].double(), dim=-1)
    start = len(ids) - len(continuation_ids)
    return log_probs[torch.arange(start - 1, len(ids) - 1), torch.tensor(continuation_ids)]
