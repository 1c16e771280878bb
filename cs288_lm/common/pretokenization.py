"""Pre-tokenization: cutting text into the pieces that BPE works inside (given to students).

BPE never merges across a pre-token boundary. We use GPT-2's rule: a regular expression splits
text into words with their leading space, runs of digits, runs of punctuation and runs of
whitespace. Special tokens such as ``<|endoftext|>`` are split out before the regex runs, so
they are never merged with anything.

This module also streams large UTF-8 files in blocks that end at *safe boundaries*: places where
cutting the text changes neither the special-token split nor the regex split. The BPE trainer
and the whole-file encoder use them to work in bounded memory and in parallel.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import regex

T = TypeVar("T")
R = TypeVar("R")

# The special token that ends each document of the TinyStories files (and of GPT-2's training text).
EOT = "<|endoftext|>"

GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

_UNICODE_SPLITTER = regex.compile(GPT2_SPLIT_PATTERN)
# On pure-ASCII text \p{L} is [A-Za-z], \p{N} is [0-9] and \s is [ \t\n\v\f\r], so the standard
# library's engine gives the very same pieces about twice as fast. Tests check the equivalence.
# Words come first here, as they are most pre-tokens: the engine tries fewer alternatives, and
# the order does not change the result, because no other alternative can match where a word
# starts (the contraction alternative needs "'", which is not a letter).
_ASCII_SPLITTER = re.compile(r""" ?[A-Za-z]+|'(?:[sdmt]|ll|ve|re)| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)


def pretokenize(text: str) -> list[str]:
    """Split ``text`` (containing no special tokens) into GPT-2 pre-tokens.

    >>> pretokenize("Hi there,  you!\\n")
    ['Hi', ' there', ',', ' ', ' you', '!', '\\n']
    """
    splitter = _ASCII_SPLITTER if text.isascii() else _UNICODE_SPLITTER
    return splitter.findall(text)


_TWO_WHITESPACE = regex.compile(r"\s\s")


def split_into_words(text: str) -> list[str] | None:
    """Cut ``text`` before every space and newline, so that each piece pre-tokenizes on its own.

    Returns None when ``text`` has two whitespace characters in a row (``"a  b"``, ``"a\\n\\nb"``):
    the regular expression may group such runs differently. Otherwise each space and newline
    has other characters (or the text's edge) on both sides, so a space starts a pre-token
    (``" ?\\p{L}+"`` and its siblings take it), a newline is a pre-token of its own, and the
    pre-token before either ends there. The pre-tokens of ``text`` are then those of each piece
    in turn, where the first piece stands for itself and each later piece for ``" " + piece``,
    or for itself when it starts with ``"\\n"`` (the newline took the space's place). Prose
    repeats its words, so an encoder can cache the ids of whole pieces (``"time,"`` for
    ``" time,"``) and skip the regular expression for the text it has seen before.

    >>> split_into_words("Once upon a time,\\nTom ran.")
    ['Once', 'upon', 'a', 'time,', '\\nTom', 'ran.']
    >>> split_into_words("two  spaces") is None
    True
    """
    if text.isascii():
        # ASCII whitespace is " \t\n\r\x0b\x0c". Substring searches are several times faster than
        # the regular expression, which runs only when one of the rarer kinds occurs.
        if "  " in text or " \n" in text or "\n " in text or "\n\n" in text:
            return None
        if ("\t" in text or "\r" in text or "\x0b" in text or "\x0c" in text) and _TWO_WHITESPACE.search(text):
            return None
    elif _TWO_WHITESPACE.search(text):
        return None
    return text.replace("\n", " \n").split(" ")


def normalize_special_tokens(special_tokens: Sequence[str] | None) -> list[str]:
    """Return the special tokens without duplicates, in their first order; reject empty ones."""
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, not the string {special_tokens!r}")
    result: list[str] = []
    for token in special_tokens or []:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special tokens must be non-empty strings, got {token!r}")
        if token not in result:
            result.append(token)
    return result


def special_token_splitter(special_tokens: Sequence[str]) -> re.Pattern[str] | None:
    """A pattern whose ``split`` keeps special tokens as separate items (odd positions).

    Longer tokens come first in the alternation, so with ``<|endoftext|>`` and
    ``<|endoftext|><|endoftext|>`` the double token wins where it occurs.
    """
    if not special_tokens:
        return None
    alternatives = sorted(special_tokens, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(token) for token in alternatives) + ")")


def split_on_special_tokens(text: str, splitter: re.Pattern[str] | None) -> list[str]:
    """Split ``text`` into alternating [plain, special, plain, special, ..., plain] pieces.

    Plain pieces may be empty strings; specials are at the odd indices.
    """
    return [text] if splitter is None else splitter.split(text)


# ---------------------------------------------------------------------------------------------
# Streaming files in blocks that end at safe boundaries.
#
# Two kinds of boundary are safe:
#  * just after a "\n" whose neighbours are both visible ASCII characters ("x\nY"): the "\n" is a
#    whitespace pre-token of its own whether or not text follows, and the regex restarts at "Y"
#    (only valid when no special token contains a newline);
#  * the start of a special-token match, found scanning left to right from a safe boundary.
# ---------------------------------------------------------------------------------------------

_NEWLINE_BOUNDARY = re.compile(rb"[\x21-\x7e]\n(?=[\x21-\x7e])")
DEFAULT_BLOCK_BYTES = 4 << 20
# Below this size one process is faster than starting workers.
PARALLEL_MIN_BYTES = 4 << 20
# Each range costs its worker a task and a result sent back; smaller ranges cost more than they
# balance (on the 2.4 MB sample, 2 ranges for 2 workers count 15% faster than 8).
MIN_RANGE_BYTES = 1 << 20


def plan_file_ranges(
    path: str | os.PathLike, workers: int | None, special_tokens: Sequence[str]
) -> tuple[int, list[int]]:
    """Choose the number of worker processes and the range boundaries for processing a file.

    ``workers=None`` means one process for small files and one per core otherwise. Large files get
    a few ranges per worker, so that all cores stay busy until the end and progress is
    fine-grained; small ones one range per worker.
    """
    size = os.path.getsize(path)
    if workers is None:
        workers = 1 if size < PARALLEL_MIN_BYTES else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    num_ranges = 1 if workers == 1 else max(workers, min(workers * 4, size // MIN_RANGE_BYTES))
    return workers, find_range_boundaries(path, num_ranges, special_tokens)


def map_in_workers(
    function: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Generator[R, None, None]:
    """``map(function, tasks)`` in order, in worker processes when ``workers > 1``.

    ``initializer(*initargs)`` runs once per process first (in this process when ``workers == 1``):
    the way to hand large read-only data, such as a tokenizer, to the workers once. Workers are
    forked on Linux (fast start) and spawned elsewhere (fork is unsafe on macOS).
    """
    if workers == 1 or len(tasks) <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, tasks)
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    # Forked workers share this process's memory until they write to it, and a garbage collection
    # in a worker writes to every object it visits. Frozen objects are never visited, so freezing
    # them while the workers start spares the workers copying pages of objects they do not use.
    gc.freeze()
    try:
        pool = context.Pool(min(workers, len(tasks)), initializer, initargs)
    finally:
        gc.unfreeze()
    with pool:
        yield from pool.imap(function, tasks)


class InvalidUTF8Error(ValueError):
    """A training or encoding input is not valid UTF-8; the message names the byte offset."""


def _newline_boundaries_allowed(special_tokens: Sequence[str]) -> bool:
    return not any("\n" in token for token in special_tokens)


def _last_safe_boundary(data: bytes, special_tokens: Sequence[str]) -> int:
    """The largest safe cut position in ``data`` (0 when there is none).

    ``data`` must start at a safe boundary. Cutting there keeps data[:cut] final: nothing read
    later can change how it is split.
    """
    best = 0
    if _newline_boundaries_allowed(special_tokens):
        position = len(data) - 1
        while position >= 1:
            position = data.rfind(b"\n", 0, position)
            if position >= 1 and 0x21 <= data[position - 1] <= 0x7E and 0x21 <= data[position + 1] <= 0x7E:
                best = position + 1
                break
    if special_tokens:
        longest = max(len(token.encode("utf-8")) for token in special_tokens)
        for match in _special_bytes_pattern(tuple(special_tokens)).finditer(data):
            # Final only if the longest special token starting here would still fit in data.
            if match.start() + longest <= len(data):
                best = max(best, match.start())
    return best


_SPECIAL_BYTES_CACHE: dict[tuple[str, ...], re.Pattern[bytes]] = {}


def _special_bytes_pattern(special_tokens: tuple[str, ...]) -> re.Pattern[bytes]:
    if special_tokens not in _SPECIAL_BYTES_CACHE:
        alternatives = sorted((token.encode("utf-8") for token in special_tokens), key=len, reverse=True)
        _SPECIAL_BYTES_CACHE[special_tokens] = re.compile(b"|".join(re.escape(a) for a in alternatives))
    return _SPECIAL_BYTES_CACHE[special_tokens]


def _decode(data: bytes, path: Path, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 4]
        raise InvalidUTF8Error(
            f"{path}: invalid UTF-8 at byte offset {offset + error.start} "
            f"(bytes {bad!r}: {error.reason}); the input must be UTF-8 text"
        ) from None


def iter_text_blocks(
    path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
    start: int = 0,
    end: int | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[str]:
    """Yield the text of bytes ``[start, end)`` of a UTF-8 file in blocks cut at safe boundaries.

    ``start`` must itself be a safe boundary (0, or a value from :func:`find_range_boundaries`).
    Each block is about ``block_bytes`` long (longer only when no safe boundary occurs), so memory
    stays bounded however large the file. Concatenating the blocks gives the whole range, and
    pre-tokenizing block by block gives the same pieces as pre-tokenizing it in one go.
    """
    path = Path(path)
    end = os.path.getsize(path) if end is None else end
    with open(path, "rb") as file:
        file.seek(start)
        carry = b""
        carry_offset = start
        remaining = end - start
        while remaining > 0:
            chunk = file.read(min(block_bytes, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            data = carry + chunk
            cut = len(data) if remaining <= 0 else _last_safe_boundary(data, special_tokens)
            if cut == 0:
                carry = data
                continue
            yield _decode(data[:cut], path, carry_offset)
            carry, carry_offset = data[cut:], carry_offset + cut
        if carry:
            yield _decode(carry, path, carry_offset)


def find_range_boundaries(path: str | os.PathLike, num_ranges: int, special_tokens: Sequence[str] = ()) -> list[int]:
    """Byte offsets ``[0, ..., size]`` that cut a file into up to ``num_ranges`` independent ranges.

    Cuts are placed at the first newline boundary after each even split point, so the ranges can
    be pre-tokenized in parallel with exactly the result of a single pass. Ranges may be fewer than
    asked for (small files, no newline boundaries, or special tokens that contain newlines).
    """
    size = os.path.getsize(path)
    if num_ranges <= 1 or size == 0 or not _newline_boundaries_allowed(special_tokens):
        return [0, size]
    boundaries = [0]
    window = 1 << 16
    with open(path, "rb") as file:
        for index in range(1, num_ranges):
            position = max(size * index // num_ranges, boundaries[-1])
            while position < size:
                file.seek(max(position - 1, 0))
                data = file.read(window + 2)
                match = _NEWLINE_BOUNDARY.search(data)
                if match:
                    position = max(position - 1, 0) + match.end()
                    break
                position += window
            if boundaries[-1] < position < size:
                boundaries.append(position)
    boundaries.append(size)
    return boundaries
