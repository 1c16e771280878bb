"""encode_file joins its parts in bounded memory and leaves nothing behind when it fails."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training import encoding as encode_module
from cs288_lm.training.encoding import encode_file

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = REPO_ROOT / "data" / "tokenizer"
SAMPLE = REPO_ROOT / "data" / "tinystories" / "valid.txt"
OLD_OUTPUT = b"an earlier result that must survive"


class FailingTokenizer(Tokenizer):
    """Raises on the text of a chosen range (module level so that worker processes can use it)."""

    marker = "FAIL-HERE"

    def encode(self, text: str) -> list[int]:
        if self.marker in text:
            raise RuntimeError("tokenizer failed")
        return super().encode(text)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_directory(TOKENIZER)


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".part" in path.name or path.name.endswith(".tmp"))


@pytest.mark.parametrize("workers", [1, 2])
def test_output_equals_encode_of_the_whole_text(tmp_path, tokenizer, workers):
    out = encode_file(tokenizer, SAMPLE, tmp_path / "ids.npy", workers=workers)
    ids = np.load(out)
    assert ids.dtype == np.uint16
    assert ids.tolist() == tokenizer.encode(SAMPLE.read_text(encoding="utf-8"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_failing_tokenizer_leaves_no_temporary_files_and_keeps_the_old_output(tmp_path, workers):
    text = SAMPLE.read_text(encoding="utf-8")
    middle = text.index("<|endoftext|>", len(text) // 2)
    # The failing text sits in the middle, so with two workers other ranges have written parts.
    path = tmp_path / "input.txt"
    path.write_text(text[:middle] + FailingTokenizer.marker + text[middle:], encoding="utf-8")
    out = tmp_path / "ids.npy"
    out.write_bytes(OLD_OUTPUT)
    failing = FailingTokenizer.from_directory(TOKENIZER)
    with pytest.raises(RuntimeError, match="tokenizer failed"):
        encode_file(failing, path, out, workers=workers)
    assert leftovers(tmp_path) == []
    assert out.read_bytes() == OLD_OUTPUT


def test_failing_join_leaves_no_temporary_files_and_keeps_the_old_output(tmp_path, tokenizer, monkeypatch):
    join = encode_module._join_parts

    def join_then_fail(parts, count, dtype, destination):
        join(parts[:1], count, dtype, destination)  # a half-written .tmp and unjoined parts remain
        raise OSError("disk full")

    monkeypatch.setattr(encode_module, "_join_parts", join_then_fail)
    out = tmp_path / "ids.npy"
    out.write_bytes(OLD_OUTPUT)
    with pytest.raises(OSError, match="disk full"):
        encode_file(tokenizer, SAMPLE, out, workers=2)
    assert leftovers(tmp_path) == []
    assert out.read_bytes() == OLD_OUTPUT


def test_join_streams_parts_in_fixed_size_chunks(tmp_path):
    # 16 MB of ids in two parts: loading a part whole would allocate 8 MB.
    ids = np.arange(8 << 20, dtype=np.uint16)
    parts = [tmp_path / "ids.part0", tmp_path / "ids.part1"]
    ids[: 4 << 20].tofile(parts[0])
    ids[4 << 20 :].tofile(parts[1])
    tracemalloc.start()
    try:
        encode_module._join_parts(parts, len(ids), ids.dtype, tmp_path / "ids.npy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * encode_module.COPY_CHUNK_BYTES
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), ids)
    assert not any(part.exists() for part in parts)
