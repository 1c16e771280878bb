"""Part 1: BPE training (public tests).

Run one of them with, for example, ``pytest -k naive``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

import adapters
from tests.common import DATA, EOT, naive_train_bpe
from tests.graded import check_equal, time_limit

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


def _warned(caught, pattern: str) -> bool:
    """Whether a UserWarning whose message matches ``pattern`` is among the ``caught`` warnings."""
    return any(issubclass(w.category, UserWarning) and re.search(pattern, str(w.message)) for w in caught)


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
    check_equal(merges, expected_merges)
    check_equal(vocab, expected_vocab)


def test_vocab_id_order_is_specials_then_bytes_then_merges(tmp_path):
    vocab, merges = _train_text(tmp_path, "low lower lowest " * 20, 262, ["<|a|>", "<|b|>", "<|a|>"])
    check_equal([vocab[0], vocab[1]], [b"<|a|>", b"<|b|>"])
    check_equal([vocab[2 + b] for b in range(256)], [bytes([b]) for b in range(256)])
    # Each merge's id holds its two sides joined (both the vocab entries and the merges are recorded).
    check_equal(
        [(vocab[258 + i], left + right) for i, (left, right) in enumerate(merges)],
        [(left + right, left + right) for left, right in merges],
    )
    check_equal(len(vocab), 262)


def test_every_occurrence_of_a_pair_counts(tmp_path):
    # "aaaa" (x1) holds (a, a) three times; "ab" (x2) holds (a, b) twice. Counting a pair once
    # per word would pick (a, b) first.
    _vocab, merges = _train_text(tmp_path, "aaaa ab ab", 257, [])
    check_equal(merges, [(b"a", b"a")])


def test_ties_go_to_the_lexicographically_greatest_pair(tmp_path):
    # Pre-tokens "ab", " cd", " ab", " cd": (a, b), (" ", c) and (c, d) all occur twice.
    _vocab, merges = _train_text(tmp_path, "ab cd ab cd", 257, [])
    check_equal(merges, [(b"c", b"d")])


def test_merges_never_cross_special_tokens_or_pretokens(tmp_path):
    vocab, merges = _train_text(tmp_path, _train_head(20_000), 600, [EOT])
    check_equal(vocab[0], EOT.encode())
    tokens = list(vocab.values())[1:]
    check_equal([token for token in tokens if b"<|" in token or b"|>" in token], [])
    # A pre-token holds a space only at its start, unless it is all whitespace.
    check_equal([token for token in tokens if b" " in token[1:] and not token.isspace()], [])
    check_equal(merges, naive_train_bpe(_train_head(20_000), 600, [EOT])[1])  # the merges themselves


def test_same_merges_with_one_and_two_workers(tmp_path):
    text = _train_head(200_000)
    path = _write(tmp_path, text)
    one = adapters.run_train_bpe(path, 600, SPECIALS, workers=1)
    two = adapters.run_train_bpe(path, 600, SPECIALS, workers=2)
    check_equal([one, two], [one, one], message="two workers learned a different (vocab, merges) than one")


def test_training_speed(tmp_path):
    """The course's public bar: ~130 KB of English to vocab 500 in under 1.5 s (ours: ~0.1 s)."""
    path = _write(tmp_path, _train_head(130_000))
    with time_limit(1.5):
        _vocab, merges = adapters.run_train_bpe(path, 500, SPECIALS)
    check_equal(merges, naive_train_bpe(_train_head(130_000), 500, SPECIALS)[1])  # fast, and right


def test_missing_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path: the recorded message holds no temporary folder
    missing = Path("no_such_corpus.txt")
    with pytest.raises(FileNotFoundError, match="no_such_corpus.txt"):
        adapters.run_train_bpe(missing, 300, SPECIALS)
    # once the file is there, the same call trains on it
    missing.write_bytes(_train_head(3_000).encode("utf-8"))
    check_equal(adapters.run_train_bpe(missing, 300, SPECIALS), naive_train_bpe(_train_head(3_000), 300, SPECIALS))


def test_vocab_size_too_small(tmp_path):
    path = _write(tmp_path, "hello")
    with pytest.raises(ValueError, match="vocab_size=256"):
        adapters.run_train_bpe(path, 256, SPECIALS)
    vocab, merges = adapters.run_train_bpe(path, 257, SPECIALS)
    check_equal(len(vocab), 257)
    check_equal(merges, [])
    # one more entry is one merge
    check_equal(adapters.run_train_bpe(path, 258, SPECIALS), naive_train_bpe("hello", 258, SPECIALS))


def test_invalid_utf8_says_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path: the recorded message holds no temporary folder
    path = Path("broken.txt")
    path.write_bytes(b"Once upon a time\nthere was a \xff\xfe bad byte.\n")
    with pytest.raises(ValueError, match=r"UTF-8.*offset 29"):
        adapters.run_train_bpe(path, 300, SPECIALS)
    # without the bad bytes the same file trains
    path.write_bytes(b"Once upon a time\nthere was a bad byte.\n")
    trained = adapters.run_train_bpe(path, 270, SPECIALS)
    check_equal(trained, naive_train_bpe("Once upon a time\nthere was a bad byte.\n", 270, SPECIALS))


def test_empty_file_gives_the_base_vocabulary(tmp_path):
    path = _write(tmp_path, "")
    with pytest.warns(UserWarning, match="ran out of pairs") as caught:
        vocab, merges = adapters.run_train_bpe(path, 300, SPECIALS)
    check_equal(_warned(caught, "ran out of pairs"), True)
    check_equal(merges, [])
    check_equal(sorted(vocab.values()), sorted([EOT.encode()] + [bytes([b]) for b in range(256)]))


def test_running_out_of_pairs_stops_and_warns(tmp_path):
    with pytest.warns(UserWarning, match="ran out of pairs to merge after 3 merges") as caught:
        vocab, merges = _train_text(tmp_path, "abcd", 1000, [])
    check_equal(_warned(caught, "ran out of pairs to merge after 3 merges"), True)
    check_equal(merges, [(b"c", b"d"), (b"b", b"cd"), (b"a", b"bcd")])
    check_equal(len(vocab), 259)


def test_no_warning_when_the_vocabulary_is_reached(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vocab, merges = _train_text(tmp_path, _train_head(5_000), 300)
    check_equal(len(vocab), 300)
    check_equal((vocab, merges), naive_train_bpe(_train_head(5_000), 300, SPECIALS))
