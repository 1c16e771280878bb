"""The command-line entry points run end to end and fail cleanly on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "data" / "tinystories" / "valid.txt"


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_train_bpe_cli_writes_a_loadable_tokenizer(tmp_path):
    out = tmp_path / "tok"
    result = run("train_bpe.py", "--input", str(SAMPLE), "--vocab-size", "400", "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    for expected in ("peak memory", "vocabulary: 400 tokens", "longest token", "[bpe] merges"):
        assert expected in result.stdout + result.stderr
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 400 and vocab["<|endoftext|>"] == 0
    assert (out / "special_tokens.txt").read_text(encoding="utf-8") == "<|endoftext|>\n"

    encoded = tmp_path / "valid.npy"
    result = run("-m", "cs288_lm.encode_file", "--tokenizer", str(out), "--input", str(SAMPLE), "--out", str(encoded))
    assert result.returncode == 0, result.stderr
    ids = np.load(encoded)
    assert ids.dtype == np.uint16 and len(ids) > 10_000 and int(ids.max()) < 400


def test_train_bpe_cli_reports_bad_input_without_a_traceback(tmp_path):
    result = run("train_bpe.py", "--input", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "tok"))
    assert result.returncode == 2
    assert "missing.txt" in result.stderr and "Traceback" not in result.stderr

    result = run("train_bpe.py", "--input", str(SAMPLE), "--vocab-size", "100", "--out", str(tmp_path / "tok"))
    assert result.returncode == 2
    assert "vocab_size=100 is too small" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tok").exists()
