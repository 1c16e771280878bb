"""Encode a whole text file into a numpy array of token ids, using every core.

The file is cut into ranges at safe boundaries (see :mod:`cs288_lm.common.pretokenization`); worker
processes encode the ranges, streaming each in blocks and appending ids to a part file, and the
parts are copied chunk by chunk behind a ``.npy`` header (``uint16`` when the vocabulary fits,
else ``uint32``). The result equals ``tokenizer.encode(whole_text)`` for any number of workers,
and memory stays bounded by the block size and the copy chunk, not the file size, so the 2.1 GB
TinyStories training file works on a laptop. Part files and the temporary output are removed
whether or not the run succeeds; the output appears only when complete (atomic rename).

The command line is :mod:`cs288_lm.pipelines.encode_file`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from cs288_lm.common.pretokenization import iter_text_blocks, map_in_workers, plan_file_ranges
from cs288_lm.tokenizer import Tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id of the vocabulary."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_file(
    tokenizer: Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Encode the UTF-8 text file ``input_path`` into the ``.npy`` file ``output_path``.

    ``workers=None`` uses one process for small files and one per core otherwise. ``progress`` is
    called with (bytes done, total bytes). The output is written under a temporary name and renamed
    at the end, so an interrupted run never leaves a truncated array behind.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"text file to encode not found: {input_path}")
    size = input_path.stat().st_size
    workers, boundaries = plan_file_ranges(input_path, workers, tokenizer.special_tokens)
    dtype = token_dtype(max(tokenizer.vocab) + 1)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    parts = [output_path.with_name(f"{output_path.name}.part{index}") for index in range(len(boundaries) - 1)]
    tasks = [
        (str(input_path), start, end, str(part), dtype.str)
        for start, end, part in zip(boundaries[:-1], boundaries[1:], parts, strict=True)
    ]
    temporary = output_path.with_name(output_path.name + ".tmp")
    try:
        counts = []
        # closing(): on an error here the pool must stop (and its workers stop writing parts)
        # before the parts are deleted below, not whenever the generator is collected.
        with closing(map_in_workers(_encode_range, tasks, workers, _set_worker_tokenizer, (tokenizer,))) as results:
            for (_, _, end, _, _), count in zip(tasks, results, strict=True):
                counts.append(count)
                if progress:
                    progress(end, size)
        _join_parts(parts, sum(counts), dtype, temporary)
        os.replace(temporary, output_path)
    finally:
        _set_worker_tokenizer(None)
        for path in (*parts, temporary):
            path.unlink(missing_ok=True)
    return output_path


# Bytes copied at a time when joining the parts: the join's memory, whatever the file size.
COPY_CHUNK_BYTES = 1 << 20


def _join_parts(parts: Sequence[Path], count: int, dtype: np.dtype, destination: Path) -> None:
    """Write the ``.npy`` file ``destination`` holding the raw ids of ``parts`` (``count`` in all).

    Writes the header np.save would write, then streams each part's bytes after it, deleting
    each part once copied so that the disk holds the ids about once, not twice.
    """
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
    with open(destination, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)
            part.unlink()


_worker_tokenizer: Tokenizer | None = None


def _set_worker_tokenizer(tokenizer: Tokenizer | None) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_range(task: tuple[str, int, int, str, str]) -> int:
    path, start, end, part, dtype = task
    tokenizer = _worker_tokenizer
    if tokenizer is None:
        raise RuntimeError("_encode_range ran in a worker started without _set_worker_tokenizer")
    count = 0
    with open(part, "wb") as out:
        for block in iter_text_blocks(path, tokenizer.special_tokens, start, end):
            # The list of ids is freed here, not kept alive while the next block is encoded.
            ids = _to_array(tokenizer.encode(block), dtype)
            ids.tofile(out)
            count += len(ids)
    return count


def _to_array(ids: list[int], dtype: str) -> np.ndarray:
    # With a count, fromiter fills the array in one pass: about twice as fast as np.asarray.
    return np.fromiter(ids, dtype=dtype, count=len(ids))
