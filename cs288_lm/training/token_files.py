"""Token files: a text file encoded once into a cached ``.npy`` array of token ids (given).

:func:`prepare_token_file` encodes a text file with a saved tokenizer (in parallel workers, see
:func:`cs288_lm.training.encoding.encode_file`) into a file named after the hashes of the text
and of the tokenizer, so the second run reuses it; :func:`load_tokens` memory-maps such a file for
:func:`cs288_lm.data.get_batch`; :func:`tokenizer_fingerprint` identifies a saved tokenizer (the
trainer and the main job refuse checkpoints made with another one).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from cs288_lm.tokenizer import MERGES_FILENAME, SPECIAL_TOKENS_FILENAME, VOCAB_FILENAME, Tokenizer
from cs288_lm.training.encoding import encode_file


def load_tokens(path: str | os.PathLike) -> np.ndarray:
    """A token file (``.npy``) memory-mapped read-only: nothing is read until it is indexed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file not found: {path}")
    array = np.load(path, mmap_mode="r")
    if array.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D array of token ids, got shape {array.shape}")
    return array


def file_sha256(path: str | os.PathLike, block_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer_dir: str | os.PathLike) -> str:
    """A hash of the files that define a saved tokenizer."""
    digest = hashlib.sha256()
    for name in (VOCAB_FILENAME, MERGES_FILENAME, SPECIAL_TOKENS_FILENAME):
        path = Path(tokenizer_dir) / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()


def prepare_token_file(
    text_path: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    workers: int | None = None,
    verbose: bool = True,
) -> Path:
    """Encode ``text_path`` with the tokenizer saved in ``tokenizer_dir`` into a cached ``.npy``.

    The cache file is named after the text's name and the hashes of its content and of the
    tokenizer files, so editing either makes a new one and an unchanged pair is never encoded twice.
    Encoding streams the text in parallel workers (see :func:`cs288_lm.training.encoding.encode_file`).
    """
    text_path = Path(text_path)
    if not text_path.is_file():
        raise FileNotFoundError(f"text file not found: {text_path}")
    key = f"{file_sha256(text_path)[:16]}-{tokenizer_fingerprint(tokenizer_dir)[:16]}"
    cached = Path(cache_dir) / f"{text_path.stem}-{key}.npy"
    if cached.is_file():
        if verbose:
            print(f"[data] reusing {cached} ({len(load_tokens(cached)):,} tokens)", file=sys.stderr)
        return cached
    start = time.perf_counter()
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    encode_file(tokenizer, text_path, cached, workers=workers)
    if verbose:
        count = len(load_tokens(cached))
        print(
            f"[data] encoded {text_path} into {cached}: {count:,} tokens in {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
        )
    return cached
