"""Part 1: BPE training (public tests).

Run one of them with, for example, ``pytest -k naive``.
"""

from __future__ import annotations

import time
import warnings

import pytest

import adapters
from tests.common import DATA, EOT, naive_train_bpe

SPECIALS = [EOT]


def _write(tmp_path, text: str, name: str = "corpus.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _train_text(tmp_path, text: str, vocab_size: int, special_tokens=SPECIALS, **kwargs):
    return adapters.run_train_bpe(_write(tmp_path, text), vocab_size, special_tokens, **kwargs)


def _train_head(num_bytes: int) -> str:
    text = (DATA / "train.txt").read_text(encoding="utf-8")
    return text[:num_bytes]


@pytest.mark.parametrize(
    ("name", "text", "vocab_size", "special_tokens"),
    [
        ("tinystories_20k", _train_head(20_000), 420, SPECIALS),
        ("no_special_tokens", _train_head(8_000).replace(EOT, ""), 330, []),
        ("repeated_letters", "aaaa aaaa aaa aa a aaaaaaa baaab abab ababab\n" * 7, 271, []),
        ("two_specials", _train_head(6_000).replace("\n\n", "\n<|sep|>\n"), 320, [EOT, "<|sep|>"]),
    ],
)
def test_merges_match_naive_trainer(tmp_path, name, text, vocab_size, special_tokens):
    vocab, merges = _train_text(tmp_path, text, vocab_size, special_tokens)
    expected_vocab, expected_merges = naive_train_bpe(text, vocab_size, special_tokens)
    assert merges == expected_merges
    assert vocab == expected_vocab


def test_vocab_id_order_is_specials_then_bytes_then_merges(tmp_path):
    vocab, merges = _train_text(tmp_path, "low lower lowest " * 20, 262, ["<|a|>", "<|b|>", "<|a|>"])
    assert vocab[0] == b"<|a|>" and vocab[1] == b"<|b|>"
    assert [vocab[2 + b] for b in range(256)] == [bytes([b]) for b in range(256)]
    assert [vocab[258 + i] for i in range(len(merges))] == [left + right for left, right in merges]
    assert len(vocab) == 262


def test_every_occurrence_of_a_pair_counts(tmp_path):
    # "aaaa" (x1) holds (a, a) three times; "ab" (x2) holds (a, b) twice. Counting a pair once
    # per word would pick (a, b) first.
    vocab, merges = _train_text(tmp_path, "aaaa ab ab", 257, [])
    assert merges == [(b"a", b"a")]


def test_ties_go_to_the_lexicographically_greatest_pair(tmp_path):
    # Pre-tokens "ab", " cd", " ab", " cd": (a, b), (" ", c) and (c, d) all occur twice.
    vocab, merges = _train_text(tmp_path, "ab cd ab cd", 257, [])
    assert merges == [(b"c", b"d")]


def test_merges_never_cross_special_tokens_or_pretokens(tmp_path):
    vocab, merges = _train_text(tmp_path, _train_head(20_000), 600, [EOT])
    assert vocab[0] == EOT.encode()
    for token in list(vocab.values())[1:]:
        assert b"<|" not in token and b"|>" not in token, token
        # A pre-token holds a space only at its start, unless it is all whitespace.
        assert b" " not in token[1:] or token.isspace(), token


def test_same_merges_with_one_and_two_workers(tmp_path):
    text = _train_head(200_000)
    path = _write(tmp_path, text)
    one = adapters.run_train_bpe(path, 600, SPECIALS, workers=1)
    two = adapters.run_train_bpe(path, 600, SPECIALS, workers=2)
    assert one == two


def test_training_speed(tmp_path):
    """The course's public bar: ~130 KB of English to vocab 500 in under 1.5 s (ours: ~0.1 s)."""
    path = _write(tmp_path, _train_head(130_000))
    start = time.perf_counter()
    adapters.run_train_bpe(path, 500, SPECIALS)
    assert time.perf_counter() - start < 1.5


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "no_such_corpus.txt"
    with pytest.raises(FileNotFoundError, match="no_such_corpus.txt"):
        adapters.run_train_bpe(missing, 300, SPECIALS)


def test_vocab_size_too_small(tmp_path):
    path = _write(tmp_path, "hello")
    with pytest.raises(ValueError, match="vocab_size=256"):
        adapters.run_train_bpe(path, 256, SPECIALS)
    vocab, merges = adapters.run_train_bpe(path, 257, SPECIALS)
    assert len(vocab) == 257 and merges == []


def test_invalid_utf8_says_where(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_bytes(b"Once upon a time\nthere was a \xff\xfe bad byte.\n")
    with pytest.raises(ValueError, match=r"UTF-8.*offset 29"):
        adapters.run_train_bpe(path, 300, SPECIALS)


def test_empty_file_gives_the_base_vocabulary(tmp_path):
    path = _write(tmp_path, "")
    with pytest.warns(UserWarning, match="ran out of pairs"):
        vocab, merges = adapters.run_train_bpe(path, 300, SPECIALS)
    assert merges == []
    assert sorted(vocab.values()) == sorted([EOT.encode()] + [bytes([b]) for b in range(256)])


def test_running_out_of_pairs_stops_and_warns(tmp_path):
    with pytest.warns(UserWarning, match="ran out of pairs to merge after 3 merges"):
        vocab, merges = _train_text(tmp_path, "abcd", 1000, [])
    assert merges == [(b"c", b"d"), (b"b", b"cd"), (b"a", b"bcd")]
    assert len(vocab) == 259


def test_no_warning_when_the_vocabulary_is_reached(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vocab, _ = _train_text(tmp_path, _train_head(5_000), 300)
    assert len(vocab) == 300
