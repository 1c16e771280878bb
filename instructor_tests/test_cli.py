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
    result = run("-m", "cs288_lm.pipelines.encode_file", "--tokenizer", str(out), "--input", str(SAMPLE), "--out", str(encoded))
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


def _tiny_checkpoint(path: Path) -> Path:
    """A checkpoint in the trainer's format holding a small random model over the bundled tokenizer."""
    import dataclasses

    import torch

    from cs288_lm.models.architectures import ModelConfig, build_model
    from cs288_lm.tokenizer import Tokenizer

    vocab_size = max(Tokenizer.from_directory(REPO_ROOT / "data" / "tokenizer").vocab) + 1
    config = ModelConfig(vocab_size=vocab_size, context_length=32, d_model=16, num_layers=1, num_heads=2)
    torch.manual_seed(0)
    torch.save({"model": build_model(config).state_dict(), "model_config": dataclasses.asdict(config)}, path)
    return path


def test_generate_cli_prints_reproducible_samples(tmp_path):
    checkpoint = _tiny_checkpoint(tmp_path / "tiny.pt")
    args = ("-m", "cs288_lm.pipelines.generate", "--checkpoint", str(checkpoint), "--strategy", "top_k", "--k", "5",
            "--num-samples", "2", "--max-new-tokens", "40", "--seed", "3", "--device", "cpu")
    first, second = run(*args), run(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # seeded
    assert first.stdout.count("--- sample ") == 2 and first.stdout.count("Once upon a time") == 2
    other_seed = run(*args[:-4], "--seed", "4", "--device", "cpu")
    assert other_seed.stdout != first.stdout


def test_generate_cli_reports_bad_input_without_a_traceback(tmp_path):
    missing = run("-m", "cs288_lm.pipelines.generate", "--checkpoint", str(tmp_path / "nope.pt"))
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    junk = run("-m", "cs288_lm.pipelines.generate", "--checkpoint", str(tmp_path / "junk.pt"))
    assert junk.returncode == 2 and "junk.pt" in junk.stderr and "Traceback" not in junk.stderr
    checkpoint = _tiny_checkpoint(tmp_path / "tiny.pt")
    bad_p = run("-m", "cs288_lm.pipelines.generate", "--checkpoint", str(checkpoint), "--strategy", "top_p", "--p", "1.5")
    assert bad_p.returncode == 2 and "p" in bad_p.stderr and "Traceback" not in bad_p.stderr
