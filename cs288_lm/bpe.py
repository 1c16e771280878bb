"""Training a byte-level BPE tokenizer (Part 1).

Vocabulary id order (what :func:`train_bpe` returns):

* ids ``0 .. S-1``: the special tokens, in the order given (duplicates dropped);
* ids ``S .. S+255``: the 256 single bytes, byte value ``b`` at id ``S + b``;
* ids ``S+256 ..``: one new token per merge, in the order the merges were learned.

Training has two stages. Counting pre-tokens reads the file in blocks and, for large files, in
parallel worker processes (given). Learning merges repeatedly merges the most frequent adjacent
pair of tokens inside pre-tokens (you write this: :func:`iter_bpe_merges`).
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cs288_lm.common.pretokenization import (
    iter_text_blocks,
    map_in_workers,
    normalize_special_tokens,
    plan_file_ranges,
    pretokenize,
    special_token_splitter,
    split_on_special_tokens,
)

NUM_BASE_BYTES = 256


def iter_bpe_merges(word_counts: dict[tuple[int, ...], int], vocab: dict[int, bytes]) -> Iterator[tuple[int, int]]:
    """Learn BPE merges one at a time, most frequent pair first.

    Args:
        word_counts: each distinct pre-token as a tuple of token ids, with how often it occurs in
            the corpus. Initially every id is a single byte's id.
        vocab: id -> bytes for every id that can occur. Used to break ties, and extended in place:
            each merge adds the new token ``vocab[new_id] = vocab[left] + vocab[right]`` with
            ``new_id = max(vocab) + 1`` *before* the merge is yielded.

    Yields:
        ``(left, right)``: the ids of the pair merged at this step. The caller decides how many
        merges it wants and stops iterating; the generator ends when no pair is left.

    Rules:
        * A pair is two adjacent tokens inside one pre-token; pairs never cross pre-tokens.
        * Every occurrence counts, times the pre-token's frequency: ``(a, a, a, a)`` with count 2
          holds the pair ``(a, a)`` 6 times.
        * The pair with the highest count is merged. Ties go to the lexicographically greatest
          pair of bytes, comparing ``(vocab[left], vocab[right])`` as a tuple of bytes.
        * Merging replaces the occurrences of the pair left to right without overlap: merging
          ``(a, a)`` in ``a a a`` gives ``aa a``.
        * Update the counts incrementally: after a merge, only the pre-tokens that contained the
          pair change; do not recount the whole corpus (it would take hours on TinyStories).
    """
    # BEGIN SOLUTION
    words = [list(word) for word in word_counts]
    frequencies = list(word_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    words_with_pair: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, frequency) in enumerate(zip(words, frequencies, strict=True)):
        for pair in itertools.pairwise(word):
            pair_counts[pair] += frequency
            words_with_pair[pair].add(index)

    # A max-heap of pairs by (count, bytes). heapq is a min-heap, so entries hold -count and the
    # bytes in an order-reversing form; stale entries are skipped when popped.
    reversed_bytes = {token_id: _order_reversing_key(token) for token_id, token in vocab.items()}

    def heap_entry(pair: tuple[int, int], count: int) -> tuple:
        return (-count, reversed_bytes[pair[0]], reversed_bytes[pair[1]], pair)

    heap = [heap_entry(pair, count) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    new_id = max(vocab)

    while heap:
        negative_count, _, _, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative_count:
            continue  # stale: the count changed after this entry was pushed
        left, right = pair
        new_id += 1
        vocab[new_id] = vocab[left] + vocab[right]
        reversed_bytes[new_id] = _order_reversing_key(vocab[new_id])

        # Only the pairs around each merged occurrence change: subtract the old ones, add the new
        # ones, and leave the rest of the word alone.
        changed: dict[tuple[int, int], int] = defaultdict(int)
        for index in words_with_pair.pop(pair):
            old_word = words[index]
            new_word, old_starts, new_starts = _merge_pair(old_word, left, right, new_id)
            if not new_starts:
                continue  # the word lost this pair in an earlier merge (its index is not removed)
            words[index] = new_word
            frequency = frequencies[index]
            for start in set(old_starts):
                if 0 <= start < len(old_word) - 1:
                    changed[old_word[start], old_word[start + 1]] -= frequency
            for start in set(new_starts):
                if 0 <= start < len(new_word) - 1:
                    new_pair = (new_word[start], new_word[start + 1])
                    changed[new_pair] += frequency
                    words_with_pair[new_pair].add(index)

        for changed_pair, delta in changed.items():
            if delta == 0:
                continue
            count = pair_counts[changed_pair] + delta
            if count > 0:
                pair_counts[changed_pair] = count
                heapq.heappush(heap, heap_entry(changed_pair, count))
            else:
                del pair_counts[changed_pair]
                words_with_pair.pop(changed_pair, None)
        yield left, right
    # END SOLUTION


# BEGIN SOLUTION
def _merge_pair(word: list[int], left: int, right: int, new_id: int) -> tuple[list[int], list[int], list[int]]:
    """Replace each non-overlapping occurrence of (left, right) in ``word``, scanning left to right.

    Returns the new word and where pairs changed: the start index of every pair of the old word
    that touched a merged occurrence, and of every pair of the new word that touches ``new_id``
    (with repeats, and indexes one beyond either end that the caller skips).
    """
    merged: list[int] = []
    old_starts: list[int] = []
    new_starts: list[int] = []
    position = 0
    while position < len(word):
        if position + 1 < len(word) and word[position] == left and word[position + 1] == right:
            old_starts += (position - 1, position, position + 1)
            new_starts += (len(merged) - 1, len(merged))
            merged.append(new_id)
            position += 2
        else:
            merged.append(word[position])
            position += 1
    return merged, old_starts, new_starts


def _order_reversing_key(token: bytes) -> tuple[int, ...]:
    """A key whose ascending order is the descending lexicographic order of the bytes.

    Negated bytes reverse the order at the first difference; the trailing 1 is larger than every
    negated byte, so a token sorts after its own extensions (``b"ab"`` > ``b"a"``).
    """
    return (*(-byte for byte in token), 1)


# END SOLUTION


def count_pretokens(
    input_path: str | os.PathLike,
    special_tokens: Sequence[str],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Count the pre-tokens of a UTF-8 file, leaving special tokens out (they are never merged).

    The file is streamed in blocks that end at safe boundaries, so memory stays bounded. With
    ``workers > 1`` the file is cut into ranges counted by worker processes; the result is the
    same for any number of workers. ``workers=None`` picks one process for small files and one per
    CPU core otherwise. ``progress`` is called with the number of bytes done so far.
    """
    workers, boundaries = plan_file_ranges(input_path, workers, special_tokens)
    tasks = [(str(input_path), tuple(special_tokens), start, end) for start, end in itertools.pairwise(boundaries)]
    counts: Counter[str] = Counter()
    for (_, _, _, end), range_counts in zip(tasks, map_in_workers(_count_range, tasks, workers), strict=True):
        counts.update(range_counts)
        if progress:
            progress(end)
    return counts


def _count_range(task: tuple[str, tuple[str, ...], int, int]) -> Counter[str]:
    path, special_tokens, start, end = task
    splitter = special_token_splitter(special_tokens)
    counts: Counter[str] = Counter()
    for block in iter_text_blocks(path, special_tokens, start, end):
        pieces = split_on_special_tokens(block, splitter)
        for plain in pieces[::2]:
            counts.update(pretokenize(plain))
    return counts


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    workers: int | None = None,
    verbose: bool = False,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a UTF-8 text file.

    Args:
        input_path: the training text.
        vocab_size: the final vocabulary size, special tokens and the 256 bytes included.
        special_tokens: strings kept whole and never merged (e.g. ``"<|endoftext|>"``).
        workers: processes for counting pre-tokens (None: automatic). Never changes the result.
        verbose: print progress to stderr.

    Returns:
        ``(vocab, merges)``: id -> token bytes in the order described in this module's docstring,
        and the merges ``(left_bytes, right_bytes)`` in the order they were learned. If the corpus
        runs out of pairs first, training stops early with a warning and the vocabulary is smaller.
    """
    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"BPE training input not found: {path}")
    special_tokens = normalize_special_tokens(special_tokens)
    minimum = NUM_BASE_BYTES + len(special_tokens)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the 256 byte tokens and {len(special_tokens)} special "
            f"token(s) already need {minimum}"
        )

    report = _Reporter(verbose)
    size = path.stat().st_size
    counts = count_pretokens(path, special_tokens, workers, lambda done: report.bytes_counted(done, size))
    report.done_counting(len(counts))

    vocab = {token_id: token.encode("utf-8") for token_id, token in enumerate(special_tokens)}
    offset = len(vocab)
    vocab.update({offset + byte: bytes([byte]) for byte in range(NUM_BASE_BYTES)})
    word_counts = {tuple(offset + byte for byte in word.encode("utf-8")): count for word, count in counts.items()}
    del counts

    num_merges = vocab_size - len(vocab)
    merges = []
    for left, right in itertools.islice(iter_bpe_merges(word_counts, vocab), num_merges):
        merges.append((vocab[left], vocab[right]))
        report.merged(len(merges), num_merges)
    if len(merges) < num_merges:
        warnings.warn(
            f"BPE training ran out of pairs to merge after {len(merges)} merges: the vocabulary has "
            f"{len(vocab)} tokens, not the {vocab_size} asked for (the corpus is too small)",
            stacklevel=2,
        )
    return vocab, merges


class _Reporter:
    """Progress lines on stderr for long runs: bytes counted, then merges learned, with ETA."""

    def __init__(self, enabled: bool, every_seconds: float = 2.0):
        self.enabled = enabled
        self.every_seconds = every_seconds
        self.start = self.phase_start = self.last = time.perf_counter()

    def _due(self, final: bool) -> bool:
        now = time.perf_counter()
        if self.enabled and (final or now - self.last >= self.every_seconds):
            self.last = now
            return True
        return False

    def _eta(self, fraction: float) -> str:
        elapsed = time.perf_counter() - self.phase_start
        return f"{elapsed * (1 - fraction) / fraction:.0f}s" if fraction > 0 else "?"

    def bytes_counted(self, done: int, total: int) -> None:
        if self._due(done >= total):
            elapsed = time.perf_counter() - self.phase_start
            print(
                f"[bpe] pre-tokenizing: {done / 1e6:.1f}/{total / 1e6:.1f} MB "
                f"({done / 1e6 / max(elapsed, 1e-9):.1f} MB/s, ETA {self._eta(done / max(total, 1))})",
                file=sys.stderr,
            )

    def done_counting(self, distinct: int) -> None:
        if self.enabled:
            print(f"[bpe] {distinct} distinct pre-tokens in {time.perf_counter() - self.start:.1f}s", file=sys.stderr)
        self.phase_start = time.perf_counter()

    def merged(self, done: int, total: int) -> None:
        if self._due(done == total):
            print(f"[bpe] merges: {done}/{total} (ETA {self._eta(done / total)})", file=sys.stderr)
