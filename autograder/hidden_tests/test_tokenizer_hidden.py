"""Hidden tests for the tokenizer (Part 1): ``encode``, ``decode``, ``encode_iterable`` and file encoding.

References are independent of ``cs288_lm``: tiktoken (GPT-2, or built over a vocabulary we
trained), Python's ``bytes.decode(errors="replace")``, a simple leftmost-longest special-token
splitter and hand-worked small vocabularies. Inputs are ones the public tests do not use:
multilingual and emoji text, code, odd whitespace, overlapping and regex-like special tokens,
the TinyStories validation split and the end of the train split (which no public test reads), and
many ways of cutting text into chunks.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

import adapters
from autograder.hidden_tests.textgen import random_code, random_text, unseen_stories, unseen_stories_text
from tests.common import (
    DATA,
    EOT,
    gpt2_tiktoken,
    gpt2_tokenizer,
    gpt2_vocab_and_merges,
    read_stories,
    tiktoken_from_vocab,
    write_utf8,
)
from tests.graded import check_close, check_equal

GPT2_MAX_ID = 50256


# --------------------------------------------------------------------------- fixtures and references


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def gpt2_plain():
    """GPT-2 with no special tokens at all: "<|endoftext|>" is ordinary text."""
    vocab, merges = gpt2_vocab_and_merges()
    return adapters.get_tokenizer(vocab, merges, [])


OVERLAPPING = ["<|a|>", EOT, "<|a|><|b|>"]


@pytest.fixture(scope="module")
def gpt2_overlapping():
    """GPT-2 plus two new, overlapping special tokens (appended as ids 50257 and 50258)."""
    vocab, merges = gpt2_vocab_and_merges()
    return adapters.get_tokenizer(vocab, merges, OVERLAPPING)


OVERLAPPING_IDS = {EOT: 50256, "<|a|>": 50257, "<|a|><|b|>": 50258}


def reference_encode(text: str, special_ids: dict[str, int], ordinary=None) -> list[int]:
    """Split out special tokens leftmost-longest by hand; encode the rest with tiktoken's GPT-2."""
    ordinary = ordinary or gpt2_tiktoken().encode_ordinary
    by_length = sorted(special_ids, key=len, reverse=True)
    ids: list[int] = []
    plain_start = position = 0
    while position < len(text):
        match = next((s for s in by_length if text.startswith(s, position)), None)
        if match is None:
            position += 1
            continue
        ids += ordinary(text[plain_start:position]) + [special_ids[match]]
        position = plain_start = position + len(match)
    return ids + ordinary(text[plain_start:])


def read_utf8(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def check_equal_for(actual, expected, context) -> None:
    """``check_equal`` that names the input (``context``) in the local failure message."""
    message = "" if actual == expected else f"{context!r}: got {actual}, expected {expected}"
    check_equal(actual, expected, message=message)


def random_chunks(text: str, rng: random.Random, largest: int) -> list[str]:
    chunks, position = [], 0
    while position < len(text):
        size = rng.randint(1, largest)
        chunks.append(text[position : position + size])
        position += size
    return chunks


# --------------------------------------------------------------------------- GPT-2: same ids as tiktoken


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_gpt2_matches_tiktoken_on_multilingual_emoji_text(gpt2, seed):
    text = random_text(random.Random(seed), 3000, [EOT])
    check_equal(gpt2.encode(text), gpt2_tiktoken().encode(text, allowed_special="all"))


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_gpt2_matches_tiktoken_on_code(gpt2, newline):
    text = random_code(random.Random(17), 800, newline)
    check_equal(gpt2.encode(text), gpt2_tiktoken().encode_ordinary(text))


# The second case keeps its old test id; its text is the end of train.txt (about 156 KB of stories).
@pytest.mark.parametrize("split", ["valid", pytest.param("train_end", id="heldout")])
def test_gpt2_matches_tiktoken_on_tinystories_split(gpt2, split):
    text = read_utf8(DATA / "valid.txt") if split == "valid" else unseen_stories_text()
    check_equal(gpt2.encode(text), gpt2_tiktoken().encode(text, allowed_special="all"))


EDGE_CASES = [
    " ",
    "\n",
    "  \n\n  ",
    "a  b",
    "a \t\n b",
    "end   ",
    "\r\n\r\n",
    "\r",
    "\x0b\x0c",
    "\u00a0\u00a0x",
    "x\u2028y",
    "\u3000\u3000a",
    "\x85 \x85",
    "x\x1c\x1dy",
    "'ll've're",
    "I'LL DON'T",
    "don't'",
    "''s",
    "'",
    " '",
    " ' s",
    "123456789012",
    "1 2  3",
    "٣٤٥ 12",
    "½²³",
    "🙂🙂🙂",
    "👨\u200d👩\u200d👧",
    "e\u0301",
    "\u0301",
    "\ufeffBOM",
    "\x00\x01\x7f",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "𠀀𠀁",
    "a" * 700,
    " " * 700,
    "\n" * 300 + "x",
    "!" * 200,
    "ab" * 300,
    "<|endoftext",
    "endoftext|>",
    "<|endoftext|>>",
    "<<|endoftext|>",
    "hello<|endoftext|>world",
    "<|endoftext|><|endoftext|><|endoftext|>",
    " <|endoftext|> ",
    "\n<|endoftext|>\n\n",
    "<|endoftext|>'ll",
]


@pytest.mark.parametrize("text", EDGE_CASES, ids=[ascii(t)[:30] for t in EDGE_CASES])
def test_gpt2_matches_tiktoken_on_edge_case(gpt2, text):
    ids = gpt2.encode(text)
    check_equal(ids, gpt2_tiktoken().encode(text, allowed_special="all"))
    check_equal(gpt2.decode(ids), text)


def test_without_special_tokens_endoftext_is_plain_text(gpt2_plain):
    text = f"story one{EOT}story two\n{EOT}{EOT}"
    ids = gpt2_plain.encode(text)
    check_equal(ids, gpt2_tiktoken().encode_ordinary(text))
    check_equal(GPT2_MAX_ID in ids, False)  # (the ids themselves are recorded just above)
    check_equal(gpt2_plain.decode(ids), text)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("seed", [5, 6])
def test_roundtrip_multilingual_text_with_special_tokens(gpt2, seed):
    text = random_text(random.Random(seed), 4000, [EOT], special_rate=0.05)
    ids = gpt2.encode(text)  # recorded too: the round trip alone is the text the test holds
    check_equal(ids, gpt2_tiktoken().encode(text, allowed_special="all"))
    check_equal(gpt2.decode(ids), text)


def test_decode_random_token_sequences_matches_python_replacement(gpt2):
    vocab, _ = gpt2_vocab_and_merges()
    rng = random.Random(123)
    # Tokens that are not valid UTF-8 on their own (pieces of multi-byte characters).
    partial = [i for i, token in vocab.items() if not _is_utf8(token)]
    assert len(partial) > 100
    for _ in range(600):
        pool = partial if rng.random() < 0.6 else range(len(vocab))
        ids = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
        expected = b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
        check_equal_for(gpt2.decode(ids), expected, ids)


def test_decode_every_piece_of_multibyte_characters(gpt2):
    vocab, _ = gpt2_vocab_and_merges()
    byte_id = {token: i for i, token in vocab.items() if len(token) == 1}
    data = "é中🙂ا".encode()
    for start, end in itertools.combinations(range(len(data) + 1), 2):
        piece = data[start:end]
        ids = [byte_id[bytes([b])] for b in piece]
        check_equal_for(gpt2.decode(ids), piece.decode("utf-8", errors="replace"), piece)


def test_decode_special_and_empty(gpt2):
    check_equal(gpt2.decode([]), "")
    check_equal(gpt2.encode(""), [])
    check_equal(gpt2.decode([GPT2_MAX_ID, GPT2_MAX_ID]), EOT + EOT)
    check_equal(gpt2.decode(iter(gpt2_tiktoken().encode_ordinary("Hello world"))), "Hello world")  # any iterable


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- special tokens


def test_overlapping_special_tokens_match_longest_first(gpt2_overlapping):
    rng = random.Random(31)
    parts = ["<|a|>", "<|b|>", "<|a|><|b|>", EOT, "<|a|", "|>", "<|", " a", " b", "\n", "x<|a|>", "<|a|><|a|>"]
    for _ in range(200):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))
        check_equal_for(gpt2_overlapping.encode(text), reference_encode(text, OVERLAPPING_IDS), text)
    check_equal(gpt2_overlapping.encode("<|a|><|b|><|a|>"), [50258, 50257])
    check_equal(gpt2_overlapping.decode([50258, 50257, 50256]), "<|a|><|b|><|a|>" + EOT)


def test_special_tokens_with_regex_metacharacters_and_unicode():
    vocab, merges = gpt2_vocab_and_merges()
    specials = ["[MASK]", ".*?", "🤖", "(?:x)", "\\d+", "$^", "[^a]"]
    tokenizer = adapters.get_tokenizer(vocab, merges, specials)
    special_ids = {token: 50257 + i for i, token in enumerate(specials)}
    rng = random.Random(8)
    parts = [*specials, "a.b", " x", "[MASK", "?", "(", "d", "\\", "12", "🙂", " ", "\n"]
    for _ in range(200):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 15)))
        ids = tokenizer.encode(text)
        check_equal_for(ids, reference_encode(text, special_ids), text)
        check_equal_for(tokenizer.decode(ids), text, ids)


def test_special_token_missing_from_trained_vocab_gets_next_id(tmp_path):
    path = write_utf8(tmp_path / "train.txt", unseen_stories_text()[:40_000])
    vocab, merges = adapters.run_train_bpe(path, 400, [EOT])
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT, "<|pad|>", "<|user|>"])
    pad, user = max(vocab) + 1, max(vocab) + 2
    text = "<|user|>Once upon a time<|pad|><|pad|>" + EOT
    ids = tokenizer.encode(text)
    check_equal(ids[0], user)
    check_equal(ids[-3:], [pad, pad, 0])
    check_equal(tokenizer.decode(ids), text)


def test_gpt2_with_permuted_ids():
    # Ids are only names: merge priority comes from the order of the merges, not from the ids.
    vocab, merges = gpt2_vocab_and_merges()
    permutation = list(range(len(vocab)))
    random.Random(2718).shuffle(permutation)
    permuted = {permutation[i]: token for i, token in vocab.items()}
    tokenizer = adapters.get_tokenizer(permuted, merges, [EOT])
    text = random_text(random.Random(9), 2000, [EOT]) + read_utf8(DATA / "valid.txt")[:20_000]
    expected = [permutation[i] for i in gpt2_tiktoken().encode(text, allowed_special="all")]
    ids = tokenizer.encode(text)
    check_equal(ids, expected)
    check_equal(tokenizer.decode(ids), text)
    check_equal(list(tokenizer.encode_iterable(random_chunks(text, random.Random(1), 50))), expected)


# --------------------------------------------------------------------------- hand-worked small vocabulary


@pytest.fixture(scope="module")
def small():
    vocab = {b: bytes([b]) for b in range(256)}
    vocab.update({256: b"bc", 257: b"ab", 258: b"abc", 259: b"aa", 260: b"aaa", 261: b"qqq"})
    merges = [(b"b", b"c"), (b"a", b"b"), (b"a", b"bc"), (b"a", b"a"), (b"aa", b"a")]
    return adapters.get_tokenizer(vocab, merges, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("xabc", [120, 258]),  # (b,c) is merged before (a,b), then (a,bc)
        ("xab", [120, 257]),
        ("abcabc", [258, 258]),
        ("aaaa", [259, 259]),  # (a,a) replaces left to right without overlap
        ("aaaaa", [259, 260]),  # aa aa a -> aa aaa
        ("aaaaaa", [259, 259, 259]),
        ("aaa", [260]),  # a whole pre-token in the vocabulary
        ("qqq", [261]),  # ... even when no merge leads to it
        ("qqqq", [113, 113, 113, 113]),
        ("qqq qqq", [261, 32, 113, 113, 113]),  # " qqq" is not in the vocabulary
    ],
)
def test_small_vocab_hand_worked(small, text, expected):
    ids = small.encode(text)
    check_equal(ids, expected)
    check_equal(small.decode(ids), text)


# --------------------------------------------------------------------------- encode_iterable

TRICKY = [
    "I'll go  \n\n<|endoftext|><|endoftext|> x",
    "we've   they're\t\t\r\n 123456 ",
    "<|a|><|b|><|a|><|a|>  <|b|><|a|><|b",
    "héllo wörld 🙂🙂  \u00a0\u2028 x",
    "can't'll've'd' 'll",
    "partial special at end <|endoftext|",
    "<|a|<|a|><|endoftext|>|>",
    "   \n\n\n   \t  x\n \n",
    "١٢٣ 4567 89.5",
    "👨\u200d👩\u200d👧e\u0301\u0301!!",
    "Hi\n\nThere\r\n\r\n(x)\t\t|y",
    "one\n\n\ntwo  \u00a0\u00a0three",
]


@pytest.mark.parametrize(
    "text",
    ["Hi\n\nThere", "a\t\tb", 'x\r\n\r\n"Quote"', "end.\n\n\n\nNext", "1\u3000\u30002"],
    ids=["blank-line", "tabs", "crlf-quote", "many-newlines", "ideographic-space"],
)
def test_encode_iterable_whitespace_run_before_word_in_one_chunk(gpt2, text):
    # The whitespace run splits into two pre-tokens ("\n", "\n") because a word follows it.
    check_equal(list(gpt2.encode_iterable([text])), gpt2_tiktoken().encode_ordinary(text))
    check_equal(list(gpt2.encode_iterable([text, " tail"])), gpt2_tiktoken().encode_ordinary(text + " tail"))


@pytest.mark.parametrize("text", TRICKY, ids=[ascii(t)[:30] for t in TRICKY])
def test_encode_iterable_every_split_point(gpt2_overlapping, text):
    expected = reference_encode(text, OVERLAPPING_IDS)
    check_equal(gpt2_overlapping.encode(text), expected)
    for i in range(len(text) + 1):
        check_equal_for(list(gpt2_overlapping.encode_iterable([text[:i], text[i:]])), expected, (text[:i], text[i:]))


@pytest.mark.parametrize("text", TRICKY[:4], ids=[ascii(t)[:30] for t in TRICKY[:4]])
def test_encode_iterable_every_pair_of_split_points(gpt2_overlapping, text):
    expected = reference_encode(text, OVERLAPPING_IDS)
    for i, j in itertools.combinations(range(len(text) + 1), 2):
        chunks = [text[:i], text[i:j], text[j:]]
        check_equal_for(list(gpt2_overlapping.encode_iterable(chunks)), expected, chunks)


@pytest.mark.parametrize("largest", [3, 40, 500])
def test_encode_iterable_random_chunks_of_heldout_stories(gpt2, largest):
    text = unseen_stories_text()[:60_000]
    chunks = random_chunks(text, random.Random(largest), largest)
    check_equal(list(gpt2.encode_iterable(chunks)), gpt2_tiktoken().encode(text, allowed_special="all"))


def test_encode_iterable_chunks_cut_inside_special_tokens(gpt2):
    stories = read_stories("valid")[:60]
    text = "".join(f"{story}\n{EOT}" for story in stories) + EOT + EOT
    # Cut every special token somewhere in its middle.
    rng = random.Random(3)
    chunks, position = [], 0
    for index in _find_all(text, EOT):
        cut = index + rng.randint(1, len(EOT) - 1)
        chunks.append(text[position:cut])
        position = cut
    chunks.append(text[position:])
    check_equal(list(gpt2.encode_iterable(chunks)), gpt2_tiktoken().encode(text, allowed_special="all"))


def _find_all(text: str, token: str) -> list[int]:
    return [i for i in range(len(text)) if text.startswith(token, i)]


def test_encode_iterable_one_character_chunks_of_multilingual_text(gpt2):
    text = random_text(random.Random(44), 1200, [EOT], special_rate=0.05)
    check_equal(list(gpt2.encode_iterable(iter(text))), gpt2_tiktoken().encode(text, allowed_special="all"))


@pytest.mark.parametrize(
    "text",
    [" " * 3000 + "x", "\n" * 1500 + " y", "a" * 2000 + " b", "'" * 1000 + "ll", "7" * 1500, "🙂" * 500],
    ids=["spaces", "newlines", "long-word", "quotes", "digits", "emoji"],
)
def test_encode_iterable_long_runs_in_one_character_chunks(gpt2, text):
    check_equal(list(gpt2.encode_iterable(iter(text))), gpt2_tiktoken().encode_ordinary(text))


def test_encode_iterable_over_open_file_lines(gpt2, tmp_path):
    text = random_code(random.Random(6), 300, "\r\n") + read_utf8(DATA / "valid.txt")[:20_000]
    path = write_utf8(tmp_path / "mixed.txt", text)
    with open(path, encoding="utf-8", newline="") as file:
        ids = list(gpt2.encode_iterable(file))
    check_equal(ids, gpt2_tiktoken().encode(text, allowed_special="all"))


def test_encode_iterable_empty_inputs(gpt2):
    check_equal(list(gpt2.encode_iterable([])), [])
    check_equal(list(gpt2.encode_iterable(["", "", ""])), [])
    check_equal(list(gpt2.encode_iterable(["", EOT, "", ""])), [GPT2_MAX_ID])


def test_encode_iterable_is_lazy(gpt2):
    consumed = 0

    def lines():
        nonlocal consumed
        for i in range(200_000):
            consumed += 1
            yield f"Line {i} of a very long stream.\n"

    first = list(itertools.islice(gpt2.encode_iterable(lines()), 100))
    start = "".join(f"Line {i} of a very long stream.\n" for i in range(40))
    check_equal(first, gpt2_tiktoken().encode_ordinary(start)[:100])
    # How far an implementation reads ahead is its own choice: judged against the bound, not the
    # reference's count. |consumed - 0| <= 999 is consumed < 1000.
    check_close(float(consumed), 0.0, rtol=0, atol=999.0, against="expected")


# --------------------------------------------------------------------------- tokenizers we trained


@pytest.fixture(scope="module")
def unseen_trained(tmp_path_factory):
    """A tokenizer trained on the end of train.txt (which the public tests never read)."""
    path = tmp_path_factory.mktemp("unseen") / "train_end.txt"
    write_utf8(path, unseen_stories_text())
    vocab, merges = adapters.run_train_bpe(path, 700, [EOT])
    return vocab, merges


def test_trained_on_heldout_matches_tiktoken_on_valid(unseen_trained):
    vocab, merges = unseen_trained
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT])
    text = read_utf8(DATA / "valid.txt")
    expected = tiktoken_from_vocab(vocab, [EOT]).encode(text, allowed_special="all")
    ids = tokenizer.encode(text)
    check_equal(ids, expected)
    check_equal(tokenizer.decode(ids), text)
    check_equal(list(tokenizer.encode_iterable(random_chunks(text, random.Random(0), 100))), expected)


def test_trained_on_heldout_handles_unseen_scripts(unseen_trained):
    vocab, merges = unseen_trained
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT])
    text = random_text(random.Random(71), 2000, [EOT])
    ids = tokenizer.encode(text)
    check_equal(ids, tiktoken_from_vocab(vocab, [EOT]).encode(text, allowed_special="all"))
    check_equal(tokenizer.decode(ids), text)


def test_trained_on_multilingual_text_matches_tiktoken(tmp_path):
    specials = [EOT, "<|im_start|>"]
    path = write_utf8(tmp_path / "train.txt", random_text(random.Random(31), 4000, specials))
    vocab, merges = adapters.run_train_bpe(path, 256 + 2 + 500, specials)
    check_equal(len(set(vocab.values())), len(vocab))
    tokenizer = adapters.get_tokenizer(vocab, merges, specials)
    text = random_text(random.Random(32), 3000, specials) + random_code(random.Random(33), 100)
    expected = tiktoken_from_vocab(vocab, specials).encode(text, allowed_special="all")
    ids = tokenizer.encode(text)
    check_equal(ids, expected)
    check_equal(tokenizer.decode(ids), text)
    check_equal(list(tokenizer.encode_iterable(random_chunks(text, random.Random(2), 7))), expected)


def test_trained_tokenizer_save_and_reload(unseen_trained, tmp_path):
    vocab, merges = unseen_trained
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT, "<|pad|>"])
    tokenizer.save(tmp_path / "tok")
    reloaded = adapters.get_tokenizer_from_directory(tmp_path / "tok")
    from_files = adapters.get_tokenizer_from_files(
        tmp_path / "tok" / "vocab.json", tmp_path / "tok" / "merges.txt", [EOT, "<|pad|>"]
    )
    text = "<|pad|>" + random_text(random.Random(12), 800, [EOT]) + read_utf8(DATA / "valid.txt")[:5000]
    expected = tokenizer.encode(text)
    check_equal(reloaded.encode(text), expected)
    check_equal(from_files.encode(text), expected)
    check_equal(reloaded.decode(expected), text)


# --------------------------------------------------------------------------- whole files


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_file_matches_encode(gpt2, tmp_path, workers):
    rng = random.Random(workers)
    text = "".join(
        f"{story}\n{EOT}\n" + (random_text(rng, 30, [EOT]) + "\nEnd.\n" if i % 7 == 0 else "")
        for i, story in enumerate(unseen_stories()[:300])
    )
    text += random_code(rng, 200, "\r\n")
    path = write_utf8(tmp_path / "input.txt", text)
    out = adapters.run_encode_file(gpt2, path, tmp_path / "ids.npy", workers=workers)
    ids = np.load(out)
    expected = gpt2_tiktoken().encode(text, allowed_special="all")
    check_equal(ids.tolist(), expected)
    check_equal(ids.dtype.kind, "u", message=f"ids of dtype {ids.dtype}, not an unsigned integer type")


def test_encode_file_with_trained_tokenizer_and_two_workers(unseen_trained, tmp_path):
    vocab, merges = unseen_trained
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT])
    text = read_utf8(DATA / "valid.txt")
    path = write_utf8(tmp_path / "valid.txt", text)
    ids = np.load(adapters.run_encode_file(tokenizer, path, tmp_path / "valid.npy", workers=2))
    expected = tiktoken_from_vocab(vocab, [EOT]).encode(text, allowed_special="all")
    check_equal(ids.tolist(), expected)
    check_equal(tokenizer.encode(text), expected)
