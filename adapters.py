"""The only door the tests use into ``cs288_lm``.

Each adapter builds an object from the package or calls one function and returns the result, with
no logic of its own, so the tests stay the same whatever the internal layout of the package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cs288_lm.bpe import train_bpe
from cs288_lm.encode_file import encode_file
from cs288_lm.tokenizer import Tokenizer


def run_train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str],
    **kwargs,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train byte-level BPE on a text file; returns ``(vocab, merges)``.

    Keyword arguments (such as ``workers``) are passed on to :func:`cs288_lm.bpe.train_bpe`.
    """
    return train_bpe(input_path, vocab_size, special_tokens, **kwargs)


def get_tokenizer(
    vocab: dict[int, bytes],
    merges: list[tuple[bytes, bytes]],
    special_tokens: Sequence[str] | None = None,
) -> Tokenizer:
    """A tokenizer with ``encode``, ``decode``, ``encode_iterable`` and ``save``."""
    return Tokenizer(vocab, merges, special_tokens)


def get_tokenizer_from_files(
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
    special_tokens: Sequence[str] | None = None,
) -> Tokenizer:
    """A tokenizer loaded from GPT-2-format ``vocab.json`` and ``merges.txt``."""
    return Tokenizer.from_files(vocab_path, merges_path, special_tokens)


def get_tokenizer_from_directory(directory: str | os.PathLike) -> Tokenizer:
    """A tokenizer loaded from a folder written by ``Tokenizer.save``."""
    return Tokenizer.from_directory(directory)


def run_encode_file(
    tokenizer: Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    workers: int | None = None,
):
    """Encode a whole text file into a ``.npy`` array of token ids; returns the output path."""
    return encode_file(tokenizer, input_path, output_path, workers=workers)
