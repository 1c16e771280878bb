"""Language-modeling data: token files on disk and random training batches.

:func:`prepare_token_file` (given) encodes a text file once into a ``.npy`` array of token ids,
cached under the hashes of the text and of the tokenizer, so the second run reuses it.
:func:`get_batch` (Part 3) samples training windows from such an array.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from jaxtyping import Int
from torch import Tensor

from cs288_lm.encode_file import encode_file
from cs288_lm.tokenizer import MERGES_FILENAME, SPECIAL_TOKENS_FILENAME, VOCAB_FILENAME, Tokenizer


def get_batch(
    dataset: npt.NDArray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    rng: np.random.Generator | None = None,
) -> tuple[Int[Tensor, "batch_size context_length"], Int[Tensor, "batch_size context_length"]]:
    """Sample ``batch_size`` random windows of a 1-D token array: inputs and next-token targets.

    Each window starts at an index drawn uniformly from ``0 .. len(dataset) - context_length - 1``
    (every start whose target window fits), independently for each row. Returns
    ``(inputs, targets)``, int64 tensors of shape (batch_size, context_length) on ``device``, with
    ``targets[i, j] == inputs[i, j + 1]`` wherever both exist. ``dataset`` may be a ``np.memmap``:
    read only the windows, never the whole array. ``rng`` (default: numpy's global generator)
    makes the batches reproducible. A dataset shorter than ``context_length + 1`` is a ValueError.
    """
    # BEGIN SOLUTION
    if len(dataset) < context_length + 1:
        raise ValueError(
            f"the dataset has {len(dataset)} tokens; a window of context_length={context_length} needs at least "
            f"{context_length + 1}"
        )
    high = len(dataset) - context_length
    starts = rng.integers(0, high, size=batch_size) if rng is not None else np.random.randint(0, high, size=batch_size)
    windows = np.asarray(dataset[starts[:, None] + np.arange(context_length + 1)], dtype=np.int64)
    batch = torch.from_numpy(windows)
    if torch.device(device).type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    return batch[:, :-1], batch[:, 1:]
    # END SOLUTION


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
    Encoding streams the text in parallel workers (see :func:`cs288_lm.encode_file.encode_file`).
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
        print(f"[data] encoded {text_path} into {cached}: {count:,} tokens in {time.perf_counter() - start:.1f}s",
              file=sys.stderr)
    return cached
