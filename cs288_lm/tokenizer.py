"""A byte-level BPE tokenizer (Part 1).

Encoding text:

1. split out special tokens (longest first), each becoming its own id;
2. cut the rest into GPT-2 pre-tokens (:func:`cs288_lm.common.pretokenization.pretokenize`);
3. turn each pre-token into ids: if its bytes are one token of the vocabulary, that token;
   otherwise start from its single bytes and apply the merges in the order they were learned.

With the GPT-2 vocabulary and merges this gives exactly tiktoken's ``gpt2`` ids.

Speed (optional, not graded): text repeats itself, so ``self._cache`` (given) remembers the ids of
each pre-token it has seen; :func:`cs288_lm.common.pretokenization.split_into_words` lets you go
further and remember whole words with their punctuation, skipping step 2 for words seen before.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from cs288_lm.common.gpt2_format import load_vocab_and_merges, save_vocab_and_merges
from cs288_lm.common.pretokenization import (
    normalize_special_tokens,
    pretokenize,
    special_token_splitter,
    split_into_words,
    split_on_special_tokens,
)

VOCAB_FILENAME = "vocab.json"
MERGES_FILENAME = "merges.txt"
SPECIAL_TOKENS_FILENAME = "special_tokens.txt"


class Tokenizer:
    """Byte-level BPE: ``encode`` text to ids and ``decode`` ids back to text.

    Args:
        vocab: id -> token bytes. Must contain all 256 single bytes.
        merges: ``(left, right)`` token bytes in the order they were learned; both sides and their
            concatenation must be in ``vocab``.
        special_tokens: strings that always encode to one id and are never split or merged. Those
            missing from ``vocab`` are appended with new ids (``max(vocab) + 1``, ...).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Sequence[str] | None = None,
    ):
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self.special_tokens: list[str] = normalize_special_tokens(special_tokens)

        # Special tokens take the first id holding their bytes, or a new id. When several ids hold
        # those bytes (a special token "a" beside the byte "a"), the others stay regular tokens; a
        # lone id (GPT-2's "|") serves as both.
        by_bytes: dict[bytes, list[int]] = {}
        for token_id in sorted(self.vocab):
            by_bytes.setdefault(self.vocab[token_id], []).append(token_id)
        self.special_token_ids: dict[str, int] = {}
        for token in self.special_tokens:
            ids = by_bytes.get(token.encode("utf-8"))
            if ids:
                self.special_token_ids[token] = ids.pop(0) if len(ids) > 1 else ids[0]
            else:
                self.special_token_ids[token] = max(self.vocab, default=-1) + 1
                self.vocab[self.special_token_ids[token]] = token.encode("utf-8")
        self.token_ids: dict[bytes, int] = {token: ids[0] for token, ids in by_bytes.items() if ids}
        missing = [byte for byte in range(256) if bytes([byte]) not in self.token_ids]
        if missing:
            raise ValueError(f"the vocabulary lacks {len(missing)} single-byte token(s), e.g. {bytes(missing[:5])!r}")

        # (left id, right id) -> (rank, merged id): the data the BPE loop needs.
        self.merge_ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merges):
            for part in (left, right, left + right):
                if part not in self.token_ids:
                    raise ValueError(
                        f"merge {rank} ({left!r}, {right!r}) uses {part!r}, which is not in the vocabulary"
                    )
            pair = (self.token_ids[left], self.token_ids[right])
            self.merge_ranks.setdefault(pair, (rank, self.token_ids[left + right]))

        self._special_splitter = special_token_splitter(self.special_tokens)
        self._special_prefixes = {token[:end] for token in self.special_tokens for end in range(1, len(token) + 1)}
        self._longest_special = max(map(len, self.special_tokens), default=0)
        # pre-token -> ids; encode_pretoken fills it on first use of each pre-token.
        self._cache = PretokenCache(self.encode_pretoken)

    # ------------------------------------------------------------------ construction and files

    @classmethod
    def from_files(
        cls,
        vocab_path: str | os.PathLike,
        merges_path: str | os.PathLike,
        special_tokens: Sequence[str] | None = None,
    ) -> Tokenizer:
        """Load a tokenizer from GPT-2-format ``vocab.json`` and ``merges.txt`` files."""
        special_tokens = normalize_special_tokens(special_tokens)
        vocab, merges = load_vocab_and_merges(vocab_path, merges_path, special_tokens)
        return cls(vocab, merges, special_tokens)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer written by :meth:`save`."""
        directory = Path(directory)
        specials_path = directory / SPECIAL_TOKENS_FILENAME
        special_tokens = specials_path.read_text(encoding="utf-8").splitlines() if specials_path.is_file() else []
        return cls.from_files(directory / VOCAB_FILENAME, directory / MERGES_FILENAME, special_tokens)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``vocab.json``, ``merges.txt`` (GPT-2 format) and ``special_tokens.txt`` (one per line)."""
        directory = Path(directory)
        save_vocab_and_merges(
            self.vocab, self.merges, self.special_tokens, directory / VOCAB_FILENAME, directory / MERGES_FILENAME
        )
        (directory / SPECIAL_TOKENS_FILENAME).write_text(
            "".join(f"{t}\n" for t in self.special_tokens), encoding="utf-8"
        )

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __reduce__(self):
        # Rebuild from the defining data, so tokenizers can be sent to worker processes.
        return Tokenizer, (self.vocab, self.merges, self.special_tokens)

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str) -> list[int]:
        """Encode ``text`` into token ids (see the module docstring for the three steps)."""
        # BEGIN SOLUTION
        return self._encode_split(split_on_special_tokens(text, self._special_splitter))
        # END SOLUTION

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily encode a stream of text chunks, such as the lines of an open file.

        The ids are exactly ``encode("".join(iterable))``, however the text is cut into chunks:
        a chunk may end inside a word, a run of spaces or a special token. Memory stays bounded by
        the chunk size, not the stream's length, so this can encode files larger than RAM.

        Hint: after each chunk, hold back a suffix of the buffered text that could begin a special
        token, split the rest on special tokens and into pre-tokens, and emit the ids of all but
        the pre-tokens that can still change when more text arrives: the last one (``" wor"`` may
        become ``" world"``) and any starting in the last two characters (``"'l"`` may become
        ``"'ll"``). Those and the held-back suffix are the new buffer. Emit the pre-tokens as split
        here: re-encoding their joined text on its own can split whitespace differently
        (``"\\n\\n"`` before ``"🙂"`` is two pre-tokens, at the end of a text one).
        """
        # BEGIN SOLUTION
        buffer = ""
        for chunk in iterable:
            buffer += chunk
            final_ids, buffer = self._encode_final_part(buffer)
            yield from final_ids
        yield from self.encode(buffer)
        # END SOLUTION

    def encode_pretoken(self, pretoken: str) -> tuple[int, ...]:
        """Encode one pre-token (no special tokens inside) into ids.

        If the pre-token's UTF-8 bytes are a single token of the vocabulary, return that token
        (tiktoken does the same). Otherwise start from its single bytes and repeatedly merge the
        adjacent pair whose merge was learned earliest (lowest rank in ``self.merge_ranks``),
        replacing all its occurrences left to right, until no adjacent pair has a merge.

        >>> tokenizer.encode_pretoken(" cat")  # with merges (" ", "c"), ("a", "t"), (" c", "at")
        (token id of b" cat",)
        """
        # BEGIN SOLUTION
        data = pretoken.encode("utf-8")
        whole = self.token_ids.get(data)
        if whole is not None:
            return (whole,)
        ids = [self.token_ids[data[i : i + 1]] for i in range(len(data))]
        ranks = self.merge_ranks
        # (rank, merged id) of each adjacent pair, kept up to date as pairs merge.
        pair_merges = [ranks.get(pair, NO_MERGE) for pair in itertools.pairwise(ids)]
        while pair_merges:
            best = min(pair_merges)  # tuples compare by rank first: the earliest merge
            if best == NO_MERGE:
                break
            # Merge its occurrences left to right. Each rank belongs to one pair, and no pair with
            # the new token can be that pair again, so index() finds the next occurrence each time.
            while best in pair_merges:
                position = pair_merges.index(best)
                ids[position : position + 2] = [best[1]]
                del pair_merges[position]
                # Only the pairs with the new token changed: the one before it and the one after it.
                if position > 0:
                    pair_merges[position - 1] = ranks.get((ids[position - 1], ids[position]), NO_MERGE)
                if position < len(pair_merges):
                    pair_merges[position] = ranks.get((ids[position], ids[position + 1]), NO_MERGE)
        return tuple(ids)
        # END SOLUTION

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into text. Byte sequences that are not valid UTF-8 become U+FFFD.

        Raises:
            ValueError: for an id not in the vocabulary; the message contains
                ``"unknown token id N"`` (N that id).
        """
        # BEGIN SOLUTION
        try:
            data = b"".join(self.vocab[token_id] for token_id in ids)
        except KeyError as error:
            raise ValueError(
                f"cannot decode unknown token id {error.args[0]!r} (vocabulary size {len(self.vocab)})"
            ) from None
        return data.decode("utf-8", errors="replace")
        # END SOLUTION

    # BEGIN SOLUTION
    def _encode_split(self, pieces: list[str]) -> list[int]:
        """Encode alternating [plain, special, plain, ...] pieces."""
        ids: list[int] = []
        for index, piece in enumerate(pieces):
            if index % 2:
                ids.append(self.special_token_ids[piece])
            elif piece:
                ids.extend(self._encode_plain(piece))
        return ids

    def _encode_plain(self, text: str) -> Iterator[int]:
        """Ids of text without special tokens, looking up whole words where it can."""
        words = split_into_words(text)
        if words is None:
            return itertools.chain.from_iterable(map(self._cache.__getitem__, pretokenize(text)))
        # Prose repeats its words far more often than new ones appear: one dict lookup per word
        # with its punctuation (" time,") replaces the regular expression and two lookups.
        first = itertools.chain.from_iterable(map(self._cache.__getitem__, pretokenize(words[0])))
        rest = itertools.chain.from_iterable(map(self._word_cache.__getitem__, itertools.islice(words, 1, None)))
        return itertools.chain(first, rest)

    @functools.cached_property
    def _word_cache(self) -> PretokenCache:
        """Later piece of :func:`split_into_words` -> ids of the text it stands for."""
        return PretokenCache(self._encode_word)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        text = word if word.startswith("\n") else " " + word
        if word.isascii() and word.isalpha():  # " " + letters: one pre-token, maybe cached already
            return self._cache[text]
        return tuple(itertools.chain.from_iterable(map(self._cache.__getitem__, pretokenize(text))))

    def _encode_final_part(self, text: str) -> tuple[list[int], str]:
        """Encode the prefix of ``text`` that no continuation can change; return (ids, rest)."""
        hold = len(text)
        for start in range(max(0, len(text) - self._longest_special), len(text)):
            if text[start:] in self._special_prefixes:
                hold = start
                break
        pieces = split_on_special_tokens(text[:hold], self._special_splitter)
        pretokens = pretokenize(pieces[-1])
        # Keep the last pre-token, and any starting in the last two characters ("'l" -> "'ll").
        keep = min(1, len(pretokens))
        kept_length = len(pretokens[-1]) if pretokens else 0
        while keep < len(pretokens) and kept_length + len(pretokens[-keep - 1]) <= 2:
            keep += 1
            kept_length += len(pretokens[-keep])
        # Encode the final pre-tokens as they are: re-splitting their joined text could differ
        # ("\n\n" before "🙂" is two pre-tokens, at the end of a text it is one).
        ids = self._encode_split(pieces[:-1] + [""])
        ids.extend(itertools.chain.from_iterable(map(self._cache.__getitem__, pretokens[: len(pretokens) - keep])))
        return ids, "".join(pretokens[len(pretokens) - keep :]) + text[hold:]

    # END SOLUTION


# BEGIN SOLUTION
# Rank of a pair that has no merge: after every real merge.
NO_MERGE = (float("inf"), -1)
# END SOLUTION


class PretokenCache(dict):
    """A dict of pre-token -> ids that computes missing entries with ``compute``.

    It is cleared when it reaches ``max_entries``, so memory stays bounded on any input.
    """

    def __init__(self, compute: Callable[[str], tuple[int, ...]], max_entries: int = 1 << 17):
        super().__init__()
        self.compute = compute
        self.max_entries = max_entries

    def __missing__(self, pretoken: str) -> tuple[int, ...]:
        if len(self) >= self.max_entries:
            self.clear()
        ids = self[pretoken] = self.compute(pretoken)
        return ids
