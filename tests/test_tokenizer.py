"""Part 1: the tokenizer (public tests).

The reference for "correct ids" is tiktoken's ``gpt2`` encoding, built offline from the GPT-2
files in ``tests/fixtures/gpt2`` (see ``tests/common.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import adapters
from tests.common import (
    DATA,
    EOT,
    FIXTURES,
    GPT2_MERGES,
    GPT2_VOCAB,
    REPO_ROOT,
    gpt2_tiktoken,
    gpt2_tokenizer,
    gpt2_vocab_and_merges,
    read_stories,
    tiktoken_from_vocab,
    write_story_corpus,
)
from tests.graded import check_equal

FIXTURE_TEXTS = sorted((FIXTURES / "text").glob("*.txt"))


@pytest.fixture(scope="module", name="gpt2_tokenizer")
def gpt2_tokenizer_fixture():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def gpt2_plain_tokenizer():
    vocab, merges = gpt2_vocab_and_merges()
    return adapters.get_tokenizer(vocab, merges)


@pytest.mark.parametrize("path", FIXTURE_TEXTS, ids=lambda path: path.name)
def test_matches_tiktoken_on_fixture_texts(gpt2_tokenizer, path):
    text = path.read_bytes().decode("utf-8")
    ids = gpt2_tokenizer.encode(text)
    check_equal(ids, gpt2_tiktoken().encode(text, allowed_special="all"))
    check_equal(gpt2_tokenizer.decode(ids), text)


def test_matches_tiktoken_on_tinystories(gpt2_tokenizer):
    text = (DATA / "train.txt").read_text(encoding="utf-8")[:100_000]
    check_equal(gpt2_tokenizer.encode(text), gpt2_tiktoken().encode(text, allowed_special="all"))


@pytest.mark.parametrize("text", [" ", "\n", "a", "🙂", "  \n\n ", "Hello, world!", "ß" * 40])
def test_round_trip_and_tiktoken_on_short_strings(gpt2_plain_tokenizer, text):
    ids = gpt2_plain_tokenizer.encode(text)
    check_equal(ids, gpt2_tiktoken().encode_ordinary(text))
    check_equal(gpt2_plain_tokenizer.decode(ids), text)


def test_without_special_tokens_the_marker_is_plain_text(gpt2_plain_tokenizer):
    text = f"end{EOT}start"
    check_equal(gpt2_plain_tokenizer.encode(text), gpt2_tiktoken().encode_ordinary(text))
    check_equal(gpt2_plain_tokenizer.encode(""), [])  # the empty text round trip
    check_equal(gpt2_plain_tokenizer.decode([]), "")


def test_special_token_is_one_id(gpt2_tokenizer):
    check_equal(gpt2_tokenizer.encode(EOT), [50256])
    text = f"\n\n{EOT}\n\n"
    check_equal(gpt2_tokenizer.encode(text), gpt2_tiktoken().encode(text, allowed_special="all"))


def test_overlapping_special_tokens_match_longest_first():
    vocab, merges = gpt2_vocab_and_merges()
    double = EOT + EOT
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT, double])
    ids = tokenizer.encode(f"a{double}b{EOT}c")
    double_id = ids[1]
    # Not EOT's id: the missing special token is appended to the vocabulary (id max + 1).
    check_equal(double_id, len(vocab))
    check_equal(tokenizer.decode([double_id]), double)
    check_equal(ids[3], 50256)
    check_equal(len(ids), 5)
    check_equal(tokenizer.decode(ids), f"a{double}b{EOT}c")


def test_missing_special_token_is_appended_to_the_vocab():
    vocab, merges = gpt2_vocab_and_merges()
    tokenizer = adapters.get_tokenizer(vocab, merges, ["<|pad|>"])
    check_equal(tokenizer.encode("<|pad|>"), [len(vocab)])
    check_equal(tokenizer.decode([len(vocab)]), "<|pad|>")


def test_decode_replaces_invalid_utf8(gpt2_plain_tokenizer):
    vocab, _ = gpt2_vocab_and_merges()
    byte_id = {token: token_id for token_id, token in vocab.items() if len(token) == 1}
    # "€" is e2 82 ac: drop its last byte, then a lone continuation byte and a stray 0xff.
    data = b"ok \xe2\x82 then \xac and \xff!"
    ids = [byte_id[bytes([byte])] for byte in data]
    decoded = gpt2_plain_tokenizer.decode(ids)
    check_equal(decoded, data.decode("utf-8", errors="replace"))
    check_equal(decoded.count("\ufffd"), 3)


def test_decode_unknown_id_is_a_clear_error(gpt2_plain_tokenizer):
    with pytest.raises(ValueError, match="unknown token id 99999"):
        gpt2_plain_tokenizer.decode([1, 99999])
    check_equal(gpt2_plain_tokenizer.decode([1, 9999, 50255]), gpt2_tiktoken().decode([1, 9999, 50255]))


@pytest.mark.parametrize("path", FIXTURE_TEXTS, ids=lambda path: path.name)
def test_encode_iterable_equals_encode_on_lines(gpt2_tokenizer, path):
    text = path.read_bytes().decode("utf-8")
    with open(path, encoding="utf-8", newline="") as file:
        streamed = list(gpt2_tokenizer.encode_iterable(file))
    check_equal(streamed, gpt2_tokenizer.encode(text))


def test_encode_iterable_is_lazy(gpt2_tokenizer):
    def chunks():
        yield "Once upon a time"
        yield " there was a cat.\n"
        raise AssertionError("read past what was needed")

    first_ids = []
    for token_id in gpt2_tokenizer.encode_iterable(chunks()):
        first_ids.append(token_id)
        if len(first_ids) == 3:
            break
    check_equal(first_ids, gpt2_tokenizer.encode("Once upon a"))


@pytest.mark.parametrize(
    "text",
    [
        "we'll see, they've gone",
        f"x  \n\n{EOT}{EOT}\n y",
        "tabs\t\tand  spaces   end   ",
        "end.\n\n!next  \n\n",
        "Grüße 🐈‍⬛ ½",
    ],
)
def test_encode_iterable_equals_encode_at_every_split_point(text):
    vocab, merges = gpt2_vocab_and_merges()
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT, EOT + EOT])
    expected = tokenizer.encode(text)
    for cut in range(len(text) + 1):
        streamed = list(tokenizer.encode_iterable([text[:cut], text[cut:]]))
        check_equal(streamed, expected, message=f"cut at {cut}: {streamed} != {expected}")


def test_save_and_load_round_trip(tmp_path):
    vocab, merges = adapters.run_train_bpe(DATA / "valid.txt", 700, [EOT])
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT])
    tokenizer.save(tmp_path)
    loaded = adapters.get_tokenizer_from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT])
    reloaded = adapters.get_tokenizer_from_directory(tmp_path)
    text = (DATA / "valid.txt").read_text(encoding="utf-8")[:20_000]
    ids = tokenizer.encode(text)
    check_equal(loaded.encode(text), ids)
    check_equal(reloaded.encode(text), ids)
    check_equal(loaded.vocab, vocab)
    check_equal(loaded.merges, merges)


def test_gpt2_files_load_and_match_tiktoken():
    tokenizer = adapters.get_tokenizer_from_files(GPT2_VOCAB, GPT2_MERGES, [EOT])
    text = (FIXTURES / "text" / "special_tokens.txt").read_text(encoding="utf-8")
    check_equal(tokenizer.encode(text), gpt2_tiktoken().encode(text, allowed_special="all"))


def test_trained_tokenizer_loads_in_tiktoken(tmp_path):
    vocab, merges = adapters.run_train_bpe(DATA / "valid.txt", 1000, [EOT])
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT])
    tokenizer.save(tmp_path)
    saved = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    check_equal(saved[EOT], 0)
    check_equal(len(saved), 1000)
    reference = tiktoken_from_vocab(vocab, [EOT])
    text = (DATA / "train.txt").read_text(encoding="utf-8")[:50_000]
    check_equal(tokenizer.encode(text), reference.encode(text, allowed_special="all"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "JSON object"),
        ('{"a b": 0}', "not a byte-level token"),
    ],
)
def test_bad_vocab_file_is_a_clear_error(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)  # relative paths: the recorded message holds no temporary folder
    Path("vocab.json").write_text(content, encoding="utf-8")
    Path("merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        adapters.get_tokenizer_from_files(Path("vocab.json"), Path("merges.txt"))
    _check_files_load(GPT2_VOCAB)  # and a good file next to the bad one still loads


def _check_files_load(vocab_path: Path) -> None:
    """The GPT-2 files (vocabulary from ``vocab_path``) load and encode as tiktoken does."""
    text = "Files load: ok?"
    tokenizer = adapters.get_tokenizer_from_files(vocab_path, GPT2_MERGES)
    check_equal(tokenizer.encode(text), gpt2_tiktoken().encode_ordinary(text))


def test_missing_tokenizer_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path: the recorded message holds no temporary folder
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        adapters.get_tokenizer_from_files(Path("nowhere.json"), GPT2_MERGES)
    Path("somewhere.json").write_bytes(GPT2_VOCAB.read_bytes())
    _check_files_load(Path("somewhere.json"))


def test_merge_outside_the_vocab_is_a_clear_error():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError, match="not in the vocabulary"):
        adapters.get_tokenizer(vocab, [(b"a", b"b")])
    # With the merged token in the vocabulary the same merge is applied.
    tokenizer = adapters.get_tokenizer({**vocab, 256: b"ab"}, [(b"a", b"b")])
    check_equal(tokenizer.encode("abcab ab"), [256, ord("c"), 256, ord(" "), 256])


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_file_equals_encode(tmp_path, gpt2_tokenizer, workers):
    path = DATA / "valid.txt"
    out = adapters.run_encode_file(gpt2_tokenizer, path, tmp_path / "valid.npy", workers=workers)
    ids = np.load(out)
    check_equal(str(ids.dtype), "uint16")
    check_equal(ids.tolist(), gpt2_tokenizer.encode(path.read_text(encoding="utf-8")))
    check_equal(sorted(p.name for p in tmp_path.iterdir()), ["valid.npy"])


# The memory test runs in a fresh interpreter so that the address-space limit only applies there.
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, {root!r})
    import adapters
    from tests.common import EOT, gpt2_vocab_and_merges

    vocab, merges = gpt2_vocab_and_merges()
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOT])
    path, mode = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as file:
        warm_up = file.read(1_000_000)  # fills the per-pre-token cache with this corpus's words
    tokenizer.encode(warm_up)
    del warm_up

    def address_space():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()

    hard = resource.getrlimit(resource.RLIMIT_AS)[1]  # a grader may have set one
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + 1_000_000, hard))
    count = 0
    try:
        with open(path, encoding="utf-8") as file:
            if mode == "stream":
                for _ in tokenizer.encode_iterable(file):
                    count += 1
            else:
                count = len(tokenizer.encode(file.read()))
    except MemoryError:
        print("MemoryError")
        sys.exit(3)
    print(count)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux-only")
def test_encode_iterable_memory_stays_within_one_megabyte(tmp_path):
    corpus = write_story_corpus(tmp_path / "five_mb.txt", read_stories("train", "valid"), 5_000_000, seed=0)
    script = tmp_path / "memory_probe.py"
    script.write_text(_MEMORY_SCRIPT.format(root=str(REPO_ROOT)), encoding="utf-8")

    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), str(corpus), mode], capture_output=True, text=True, timeout=300
        )

    streamed = run("stream")
    check_equal(streamed.returncode, 0, message=streamed.stdout + streamed.stderr)
    # Every id of the file came out (well over 1 MB of them).
    expected_count = len(gpt2_tiktoken().encode(corpus.read_text(encoding="utf-8"), allowed_special="all"))
    check_equal(int(streamed.stdout) if streamed.returncode == 0 else None, expected_count)
    # The same limit stops encoding the whole file at once, so the limit really bites.
    whole = run("whole")
    check_equal(whole.returncode != 0, True, message="encoding 5 MB at once fit in 1 MB: the limit does not work")


def test_special_token_that_is_already_a_regular_token():
    vocab, merges = gpt2_vocab_and_merges()
    tokenizer = adapters.get_tokenizer(vocab, merges, ["|"])  # b"|" is GPT-2 token 91
    check_equal(tokenizer.encode("a|b"), [64, 91, 65])
    check_equal(tokenizer.encode(" ||"), [220, 91, 91])  # without the special token: [8614]
    check_equal(tokenizer.encode("Hello world"), gpt2_tiktoken().encode_ordinary("Hello world"))
