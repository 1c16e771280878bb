"""Hidden tests for BPE training (Part 1): ``adapters.run_train_bpe``.

Merges are checked against hand-worked examples and against the naive reference trainer in
``tests/common.py`` on inputs the public tests do not use: multilingual and emoji text, code, odd
whitespace, tricky special tokens, the TinyStories validation split and the end of the train
split (which no public test reads), and a multi-megabyte corpus trained with several worker
processes.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import pytest

import adapters
from autograder.hidden_tests.textgen import random_code, random_text, unseen_stories, unseen_stories_text
from tests.common import DATA, EOT, naive_train_bpe, read_stories, write_story_corpus, write_utf8
from tests.graded import check_equal


def train(path: Path, vocab_size: int, special_tokens: list[str], **kwargs):
    """Run the student trainer, turning "ran out of pairs" warnings into a returned flag."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocab, merges = adapters.run_train_bpe(path, vocab_size, special_tokens, **kwargs)
    ran_out = any(issubclass(w.category, UserWarning) for w in caught)
    return vocab, merges, ran_out


def assert_same_as_naive(path: Path, vocab_size: int, special_tokens: list[str], **kwargs) -> None:
    text = path.read_bytes().decode("utf-8")
    expected_vocab, expected_merges = naive_train_bpe(text, vocab_size, list(dict.fromkeys(special_tokens)))
    vocab, merges, _ = train(path, vocab_size, special_tokens, **kwargs)
    check_equal(merges, expected_merges, message=_first_difference(merges, expected_merges))
    check_equal(vocab, expected_vocab)


def _first_difference(merges: list, expected_merges: list) -> str:
    """Where the merges part from the reference trainer's (for the local failure message)."""
    for step, (got, want) in enumerate(zip(merges, expected_merges, strict=False)):
        if got != want:
            return f"merge {step} is {got!r}, expected {want!r}"
    if len(merges) != len(expected_merges):
        return f"{len(merges)} merges where the reference trainer learns {len(expected_merges)}"
    return ""


def relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """``name`` in ``tmp_path``, as a path relative to it: error messages that name the file then
    hold no temporary folder (the raised message is recorded)."""
    monkeypatch.chdir(tmp_path)
    return Path(name)


def path_free(message: str, tmp_path: Path, path: Path) -> str:
    """``message`` with ``path`` (relative, or as an absolute path in ``tmp_path``) replaced."""
    return message.replace(str(tmp_path / path), "<path>").replace(str(path), "<path>")


# --------------------------------------------------------------------------- hand-worked examples


def test_pair_counts_include_overlapping_occurrences(tmp_path):
    # Pre-tokens: "zzz" x1, " xy" x2. Pair counts: (z,z)=2 (both overlapping occurrences count),
    # (" ",x)=2, (x,y)=2: a three-way tie won by the greatest pair (z,z). Counting (z,z) once
    # would merge (x,y) first.
    path = write_utf8(tmp_path / "corpus.txt", "zzz xy xy")
    vocab, merges, ran_out = train(path, 256 + 10, [])
    check_equal(merges, [(b"z", b"z"), (b"x", b"y"), (b" ", b"xy"), (b"zz", b"z")])
    check_equal(ran_out, True, message="running out of pairs should warn")
    check_equal([vocab[256 + i] for i in range(4)], [b"zz", b"xy", b" xy", b"zzz"])


def test_merging_is_left_to_right_without_overlap(tmp_path):
    # "ooooo" twice: (o,o) -> "oo oo o"; then (oo,oo) and (oo,o) tie at 2 and b"oo" > b"o" picks
    # (oo,oo) -> "oooo o"; finally (oooo,o). Then nothing is left to merge.
    path = write_utf8(tmp_path / "corpus.txt", "ooooo\nooooo")
    vocab, merges, ran_out = train(path, 256 + 50, [])
    check_equal(ran_out, True, message="running out of pairs should warn (UserWarning)")
    check_equal(merges, [(b"o", b"o"), (b"oo", b"oo"), (b"oooo", b"o")])
    check_equal(len(vocab), 256 + 3)
    check_equal(vocab[256 + 2], b"ooooo")


def test_ties_compare_raw_utf8_bytes(tmp_path):
    # All four pairs occur once. "é" is b"\xc3\xa9", so (\xc3,\xa9) is the greatest pair, then
    # (é, a) because its left side starts with \xc3, then (z, q), then (" ", zq).
    path = write_utf8(tmp_path / "corpus.txt", "éa zq")
    _vocab, merges, ran_out = train(path, 256 + 4, [])
    check_equal(merges, [(b"\xc3", b"\xa9"), ("é".encode(), b"a"), (b"z", b"q"), (b" ", b"zq")])
    check_equal(ran_out, False, message="exactly enough merges were possible, no warning expected")


def test_tie_break_compares_token_bytes_not_token_ids(tmp_path):
    # Pre-tokens " a" x3, " ax" x2, " by" x2. First (" ",a)=5. Then (" a",x), (" ",b) and (b,y)
    # all have count 2: b"b" > b" a" > b" " picks (b,y), although " a" has the larger id.
    path = write_utf8(tmp_path / "corpus.txt", " a a a ax ax by by")
    _vocab, merges, _ = train(path, 256 + 4, [])
    check_equal(merges, [(b" ", b"a"), (b"b", b"y"), (b" a", b"x"), (b" ", b"by")])


def test_tie_break_compares_left_token_first_then_right(tmp_path):
    # Pre-tokens "abc" x2, "ab" x1, "ad" x2 (and "\n"). First (a,b)=3. Then (ab,c)=2 ties (a,d)=2:
    # as a tuple (b"ab", b"c") > (b"a", b"d") (the longer left side wins), even though the
    # concatenation b"abc" < b"ad".
    text = "abc\nabc\nab\nad\nad"
    path = write_utf8(tmp_path / "corpus.txt", text)
    vocab, merges, ran_out = train(path, 256 + 20, [])
    check_equal(merges, [(b"a", b"b"), (b"ab", b"c"), (b"a", b"d")])
    check_equal(ran_out, True, message="running out of pairs should warn")
    check_equal((vocab, merges), naive_train_bpe(text, 256 + 20, []))


def test_special_tokens_are_never_merged_with_text(tmp_path):
    # Around the special token only single characters remain: no pair exists at all.
    path = write_utf8(tmp_path / "corpus.txt", "a<|sep|>b<|sep|>a<|sep|><|sep|>")
    vocab, merges, ran_out = train(path, 300, ["<|sep|>"])
    check_equal(ran_out, True, message="running out of pairs should warn (UserWarning)")
    check_equal(merges, [])
    check_equal(vocab, {0: b"<|sep|>", **{1 + b: bytes([b]) for b in range(256)}})


def test_unicode_and_duplicate_special_tokens_id_layout(tmp_path):
    specials = ["🤖", "<|fin|>", "🤖", "[MASK]", "<|fin|>"]
    unique = ["🤖", "<|fin|>", "[MASK]"]
    text = random_text(random.Random(11), 400, unique)
    path = write_utf8(tmp_path / "corpus.txt", text)
    vocab, merges, _ = train(path, 256 + 3 + 40, specials)
    check_equal([vocab[i] for i in range(3)], [token.encode("utf-8") for token in unique])
    check_equal([vocab[3 + b] for b in range(256)], [bytes([b]) for b in range(256)])
    check_equal(sorted(vocab), list(range(256 + 3 + 40)))
    check_equal(len(merges), 40)
    check_equal([vocab[3 + 256 + i] for i in range(len(merges))], [left + right for left, right in merges])
    check_equal((vocab, merges), naive_train_bpe(text, 256 + 3 + 40, unique))


def test_vocab_size_exactly_base_gives_no_merges_and_no_warning(tmp_path):
    path = write_utf8(tmp_path / "corpus.txt", "some text some text some text\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vocab, merges = adapters.run_train_bpe(path, 256 + 2, ["<|a|>", "<|b|>"])
    check_equal(merges, [])
    check_equal(vocab, {0: b"<|a|>", 1: b"<|b|>", **{2 + b: bytes([b]) for b in range(256)}})


# --------------------------------------------------------------------------- errors and empty input


def test_missing_file_raises_file_not_found_naming_the_path(tmp_path, monkeypatch):
    missing = relative_path(tmp_path, monkeypatch, "no_such_dir/corpus_missing_4711.txt")
    with pytest.raises(FileNotFoundError, match=re.escape("corpus_missing_4711.txt")):
        adapters.run_train_bpe(missing, 300, [EOT])
    # once the file is there, the same call trains on it
    missing.parent.mkdir()
    write_utf8(missing, unseen_stories_text(4_000))
    assert_same_as_naive(missing, 300, [EOT])


@pytest.mark.parametrize("specials", [[], [EOT], ["<|a|>", "<|b|>", "<|c|>"]])
def test_vocab_size_below_base_raises_value_error(tmp_path, specials):
    path = write_utf8(tmp_path / "corpus.txt", "hello hello\n")
    with pytest.raises(ValueError):
        adapters.run_train_bpe(path, 256 + len(specials) - 1, specials)
    assert_same_as_naive(path, 256 + len(specials) + 1, specials)  # two entries more: one merge


def test_vocab_size_counts_each_special_token_once(tmp_path):
    path = write_utf8(tmp_path / "corpus.txt", "hello hello\n")
    vocab, merges, _ = train(path, 257, [EOT, EOT, EOT])
    check_equal(merges, [])
    check_equal(vocab[0], EOT.encode())
    check_equal(len(vocab), 257)
    assert_same_as_naive(path, 259, [EOT, EOT, EOT])  # two merges after the one special token


@pytest.mark.parametrize(
    ("prefix_size", "bad"),
    [(0, b"\xff"), (9_973, b"\xc0\xaf"), (31_337, b"\xed\xa0\x80"), (12_345, b"\xe4\xb8")],
    ids=["first-byte", "overlong", "surrogate", "truncated-at-end"],
)
def test_invalid_utf8_reports_byte_offset(tmp_path, monkeypatch, prefix_size, bad):
    rng = random.Random(prefix_size)
    prefix = "".join(rng.choice("abcdefgh \n") for _ in range(prefix_size)).encode()
    suffix = b"" if bad == b"\xe4\xb8" else b" more text after the bad bytes\n" * 50
    path = relative_path(tmp_path, monkeypatch, "bad.txt")
    path.write_bytes(prefix + bad + suffix)
    with pytest.raises(ValueError) as info:
        adapters.run_train_bpe(path, 300, [])
    message = path_free(str(info.value), tmp_path, path)
    # The message is free text: what is recorded is whether it names the offset as a number.
    check_equal(bool(re.search(rf"(?<!\d){prefix_size}(?!\d)", message)), True, message=message)
    path.write_bytes(prefix + suffix)  # without the bad bytes the same file trains
    assert_same_as_naive(path, 300, [])


def test_invalid_utf8_offset_is_exact_with_two_workers(tmp_path, monkeypatch):
    stories = read_stories("valid")
    good = "".join(f"{story}\n{EOT}\n" for story in stories).encode()
    offset = len(good) * 2 // 3
    while good[offset] >= 0x80:  # put the bad byte between characters
        offset += 1
    path = relative_path(tmp_path, monkeypatch, "bad.txt")
    path.write_bytes(good[:offset] + b"\xfe" + good[offset:])
    with pytest.raises(ValueError) as info:
        adapters.run_train_bpe(path, 400, [EOT], workers=2)
    message = path_free(str(info.value), tmp_path, path)
    check_equal(bool(re.search(rf"(?<!\d){offset}(?!\d)", message)), True, message=message)
    path.write_bytes(good)  # without the bad byte the same file trains
    assert_same_as_naive(path, 400, [EOT], workers=2)


def test_empty_file_gives_base_vocab_and_warns(tmp_path):
    path = write_utf8(tmp_path / "empty.txt", "")
    vocab, merges, ran_out = train(path, 1000, ["<|x|>", EOT])
    check_equal(ran_out, True, message="running out of pairs should warn (UserWarning)")
    check_equal(merges, [])
    check_equal(vocab, {0: b"<|x|>", 1: EOT.encode(), **{2 + b: bytes([b]) for b in range(256)}})


def test_file_of_only_special_tokens_learns_nothing(tmp_path):
    path = write_utf8(tmp_path / "specials.txt", EOT * 100 + "<|pad|>" * 7 + EOT)
    vocab, merges, ran_out = train(path, 500, [EOT, "<|pad|>"], workers=2)
    check_equal(ran_out, True, message="running out of pairs should warn (UserWarning)")
    check_equal(merges, [])
    check_equal(len(vocab), 258)


# --------------------------------------------------------------------------- against the naive trainer


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_naive_on_multilingual_emoji_text(tmp_path, seed):
    specials = [EOT, "<|im_start|>"]
    text = random_text(random.Random(seed), 3000, specials)
    path = write_utf8(tmp_path / "corpus.txt", text)
    assert_same_as_naive(path, 256 + 2 + 300, specials)


def test_matches_naive_until_pairs_run_out(tmp_path):
    # A small corpus trained to exhaustion: most late merges are ties of count 1 or 2.
    text = random_text(random.Random(99), 250, [EOT])
    path = write_utf8(tmp_path / "corpus.txt", text)
    expected_vocab, expected_merges = naive_train_bpe(text, 100_000, [EOT])
    vocab, merges, ran_out = train(path, 100_000, [EOT])
    check_equal(ran_out, True, message="running out of pairs should warn (UserWarning)")
    check_equal(merges, expected_merges, message=_first_difference(merges, expected_merges))
    check_equal(vocab, expected_vocab)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_matches_naive_on_code(tmp_path, newline):
    text = random_code(random.Random(5), 1500, newline)
    path = write_utf8(tmp_path / "code.txt", text)
    assert_same_as_naive(path, 256 + 350, [])


def test_matches_naive_on_odd_whitespace_runs(tmp_path):
    rng = random.Random(8)
    pieces = [" ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\u00a0", "\u2028", "\u3000", "\x85"]
    pieces += ["a", "b", "1", "!", "'s", "'ll"]
    text = "".join(rng.choice(pieces) * rng.randint(1, 6) for _ in range(6000))
    path = write_utf8(tmp_path / "spaces.txt", text)
    assert_same_as_naive(path, 256 + 200, [])


def test_matches_naive_with_overlapping_special_tokens(tmp_path):
    # "<|a|><|b|>" must be split out whole (longest first), never as "<|a|>" + "<|b|>".
    specials = ["<|a|>", "<|a|><|b|>", "<|b|>"]
    rng = random.Random(21)
    parts = ["<|a|>", "<|b|>", "<|a|><|b|>", "<|", "|>", "a", " ab", " b|", "<", " <|a|"]
    text = "".join(rng.choice(parts) for _ in range(4000))
    path = write_utf8(tmp_path / "corpus.txt", text)
    assert_same_as_naive(path, 256 + 3 + 60, specials)


def test_matches_naive_with_regex_metacharacter_and_newline_special_tokens(tmp_path):
    specials = [".*", "(a|b)", "\n\n", "[CLS]"]
    rng = random.Random(4)
    parts = [".*", "(a|b)", "\n\n", "\n", "[CLS]", " abc", " a.b", "ab*", "(a)", "b|a"]
    text = "".join(rng.choice(parts) for _ in range(4000))
    path = write_utf8(tmp_path / "corpus.txt", text)
    assert_same_as_naive(path, 256 + 4 + 60, specials, workers=2)


def test_single_character_special_token_is_removed_from_training_text(tmp_path):
    text = random_text(random.Random(12), 1500, [])
    path = write_utf8(tmp_path / "corpus.txt", text)
    assert_same_as_naive(path, 256 + 2 + 120, ["e", " "])


def test_matches_naive_on_tinystories_valid_and_heldout(tmp_path):
    # The validation split and the last ~156 KB of train.txt (no public test reads either whole).
    text = (DATA / "valid.txt").read_bytes().decode("utf-8") + unseen_stories_text()
    path = write_utf8(tmp_path / "valid_unseen.txt", text)
    assert_same_as_naive(path, 640, [EOT], workers=2)


# --------------------------------------------------------------------------- worker processes


def test_workers_do_not_change_result_on_multi_megabyte_corpus(tmp_path):
    stories = read_stories("valid") + unseen_stories()
    path = write_story_corpus(tmp_path / "stories.txt", stories, 2_600_000, seed=2024)
    results = [adapters.run_train_bpe(path, 900, [EOT], workers=workers) for workers in (1, 2, 3)]
    check_equal(len(results[0][1]), 900 - 257)
    # All three results are recorded; locally the two- and three-worker ones must equal the first.
    check_equal(results, [results[0]] * 3, message="the number of workers changed the (vocab, merges)")


def test_workers_do_not_change_result_on_multilingual_text(tmp_path):
    specials = [EOT, "<|im_start|>"]
    rng = random.Random(77)
    # Lines with ASCII neighbours around the newlines give the file places to be split.
    text = "".join(random_text(rng, 30, specials) + " ok.\nNext " for _ in range(400))
    path = write_utf8(tmp_path / "corpus.txt", text)
    results = [adapters.run_train_bpe(path, 256 + 2 + 250, specials, workers=w) for w in (1, 2, 3)]
    check_equal(results, [results[0]] * 3, message="the number of workers changed the (vocab, merges)")
    expected = naive_train_bpe(text, 256 + 2 + 250, specials)
    check_equal(results[0], expected)
