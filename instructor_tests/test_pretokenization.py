"""The given pre-tokenization helpers: the ASCII fast path, words, and streaming at safe boundaries."""

from __future__ import annotations

import itertools
import random

import regex

from cs288_lm.common.pretokenization import (
    GPT2_SPLIT_PATTERN,
    find_range_boundaries,
    iter_text_blocks,
    pretokenize,
    special_token_splitter,
    split_into_words,
    split_on_special_tokens,
)
from cs288_lm.tokenizer import Tokenizer
from tests.common import GPT2_MERGES, GPT2_VOCAB, gpt2_tiktoken

EOT = "<|endoftext|>"


def reference_pieces(text: str, special_tokens=(EOT,)) -> list[str]:
    """Special tokens and pre-tokens of ``text``, computed in one pass with the ``regex`` engine."""
    pieces = []
    for index, piece in enumerate(split_on_special_tokens(text, special_token_splitter(list(special_tokens)))):
        pieces += [piece] if index % 2 else regex.findall(GPT2_SPLIT_PATTERN, piece)
    return pieces


def test_ascii_fast_path_equals_the_unicode_pattern():
    rng = random.Random(0)
    alphabet = "ab Z9'sldvetrm \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f!?.,-_\x00\x7f"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert pretokenize(text) == regex.findall(GPT2_SPLIT_PATTERN, text), repr(text)


def test_unicode_text_uses_the_unicode_pattern():
    text = "Grüße\u00a0and\u2028then\u0085x ½ ٣"
    # The ASCII pattern would call "ü" punctuation and miss the non-ASCII spaces.
    assert pretokenize(text) == regex.findall(GPT2_SPLIT_PATTERN, text)


# Every kind of whitespace the pattern knows (and \x1c, which str.isspace calls whitespace but \s
# does not), letters, digits, contractions and punctuation, ASCII and not.
WORD_ALPHABETS = [
    "ab Z9's\n!,.\"",
    "ab Z9'sldvetrm   \t\n\r\x0b\x0c\x1c!?.,-é½٣\u00a0\u2028\u0085",
    "a \n\n'.\t",
]


def test_split_into_words_gives_the_pretokens_of_the_whole_text():
    rng = random.Random(2)
    regular = 0
    for alphabet in WORD_ALPHABETS:
        for _ in range(6000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            words = split_into_words(text)
            if words is None:
                assert regex.search(r"\s\s", text), repr(text)
                continue
            regular += 1
            stands_for = words[:1] + [word if word.startswith("\n") else " " + word for word in words[1:]]
            assert "".join(stands_for) == text
            assert [p for piece in stands_for for p in pretokenize(piece)] == regex.findall(GPT2_SPLIT_PATTERN, text)
    assert regular > 3000  # most random texts take the word path, so the check above ran


def test_reference_word_cache_gives_tiktoken_ids():
    """The reference encoder looks up whole words where split_into_words allows: same ids."""
    rng = random.Random(3)
    tokenizer = Tokenizer.from_files(GPT2_VOCAB, GPT2_MERGES, [EOT])
    for alphabet in WORD_ALPHABETS:
        for _ in range(300):
            parts = [rng.choice(["Tom", "time", "they'll", "ﬁsh", "42"] + list(alphabet)) for _ in range(60)]
            text = "".join(rng.choice([EOT, ""]) + part for part in parts)
            assert tokenizer.encode(text) == gpt2_tiktoken().encode(text, allowed_special="all"), repr(text)
    assert len(tokenizer._word_cache) > 100  # the texts took the word path


def _random_document(rng: random.Random) -> str:
    words = ["Once", "upon", "a", "time", "they'll", "go", "home", "\n", "\n\n", "  ", EOT, "x\ny", "é", "!", "42"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(50, 400)))


def test_blocks_and_ranges_split_exactly_like_one_pass(tmp_path):
    rng = random.Random(1)
    for trial in range(20):
        text = "".join(_random_document(rng) for _ in range(20))
        path = tmp_path / f"doc{trial}.txt"
        path.write_text(text, encoding="utf-8")
        size = path.stat().st_size
        for special_tokens in ([EOT], []):
            boundaries = find_range_boundaries(path, rng.randint(2, 9), special_tokens)
            assert boundaries[0] == 0 and boundaries[-1] == size and boundaries == sorted(set(boundaries))
            blocks = [
                block
                for start, end in itertools.pairwise(boundaries)
                for block in iter_text_blocks(path, special_tokens, start, end, block_bytes=rng.randint(16, 600))
            ]
            assert "".join(blocks) == text
            streamed = [piece for block in blocks for piece in reference_pieces(block, special_tokens)]
            assert streamed == reference_pieces(text, special_tokens)
