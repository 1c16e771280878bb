"""The command-line entry points run end to end and fail cleanly on bad input."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cs288_lm.models.architectures import ModelConfig
from cs288_lm.training.finetune import FinetuneConfig
from cs288_lm.training.qa_job import QAJobConfig
from cs288_lm.training.settings import add_config_flags, config_settings, field_help, setting
from cs288_lm.training.train_config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "data" / "tinystories" / "valid.txt"


# Every program students and instructors run: the pipelines' ``python -m`` entry points and the root scripts.
PROGRAMS = [
    "cs288_lm.pipelines.check_predictions",
    "cs288_lm.pipelines.encode_file",
    "cs288_lm.pipelines.generate",
    "cs288_lm.pipelines.pretrain",
    "cs288_lm.pipelines.qa_job",
    "cs288_lm.pipelines.report",
    "cs288_lm.pipelines.sweep",
    "cs288_lm.pipelines.train_bpe",
    "make_qa_data",
    "run_finetune_qa",
    "train_bpe",
]
CONFIG_CLASSES = [TrainConfig, ModelConfig, FinetuneConfig, QAJobConfig]


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_program_list_names_every_program_with_a_main_block():
    scripts = [path for path in REPO_ROOT.glob("*.py") if "__main__" in path.read_text(encoding="utf-8")]
    pipelines = [
        path
        for path in (REPO_ROOT / "cs288_lm" / "pipelines").glob("*.py")
        if "__main__" in path.read_text(encoding="utf-8")
    ]
    found = {path.stem for path in scripts} | {f"cs288_lm.pipelines.{path.stem}" for path in pipelines}
    assert found - {"conftest", "adapters"} == set(PROGRAMS)


def help_entries(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's entry in ``--help`` (its first option string -> the text shown beside it)."""
    lines = parser.format_help().splitlines()
    entries: dict[str, str] = {}
    current = None
    for line in lines:
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {name: " ".join(text.split()) for name, text in entries.items()}


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_option_of_every_program_has_a_help_with_its_default(program):
    parser = importlib.import_module(program).build_parser()
    entries = help_entries(parser)
    options = [action for action in parser._actions if action.option_strings and action.dest != "help"]
    assert options, program
    for action in options:
        assert action.help and action.help.strip(), f"{program} {action.option_strings[0]}: no help text"
        entry = entries[action.option_strings[0]]
        assert "default:" in entry or "(required)" in entry, f"{program}: no default shown in {entry!r}"


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_config_field_has_one_help_text_that_its_flag_shows(config_class):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, config_class, exclude=("pretrain", "finetune"))  # dict fields: JSON config only
    flags = {action.dest: action for action in parser._actions if action.option_strings and action.dest != "help"}
    for field in dataclasses.fields(config_class):
        text = field_help(config_class, field.name)
        assert field.metadata["help"] in text and "(default: " in text
    # every setting, a nested configuration's too (TrainConfig.model), has a flag showing its help
    for name in config_settings(config_class).keys() - {"pretrain", "finetune"}:
        assert flags[name].help.replace("%%", "%") == field_help(config_class, name)


def test_a_model_setting_has_one_help_text_and_the_trainers_default():
    """The trainer's model flags show ModelConfig's help texts with the trainer's smaller defaults."""
    model_help = {field.name: field.metadata["help"] for field in dataclasses.fields(ModelConfig)}
    assert field_help(TrainConfig, "d_model") == f"{model_help['d_model']} (default: 128)"
    assert field_help(ModelConfig, "d_model") == f"{model_help['d_model']} (default: 512)"
    assert field_help(TrainConfig, "kernels") == f"{model_help['kernels']} (default: torch)"


def test_the_pretrain_help_shows_each_settings_text_and_default():
    result = run("-m", "cs288_lm.pipelines.pretrain", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert (
        "--batch-size INT sequences per optimizer step, over all processes and accumulation steps (default: 32)" in text
    )
    assert "--token-budget INT" in text and "(default: none)" in text
    assert "--resume, --no-resume continue from checkpoints/latest.pt in --out-dir (default: false)" in text


@dataclasses.dataclass
class _Undocumented:
    size: int = 1


def test_a_setting_without_a_help_text_is_refused():
    with pytest.raises(TypeError, match="help"):
        setting(1, "")
    with pytest.raises(TypeError, match="no help text"):
        field_help(_Undocumented, "size")


def test_run_finetune_qa_flags_override_the_config_file_and_none_clears_a_checkpoint(tmp_path):
    import run_finetune_qa

    path = tmp_path / "qa.json"
    path.write_text(json.dumps({"checkpoint": "some.pt", "device": "cpu", "finetune": {"epochs": 2}}), encoding="utf-8")
    config, _ = run_finetune_qa.parse_config(["--config", str(path)])
    assert (config.checkpoint, config.device, config.finetune["epochs"]) == ("some.pt", "cpu", 2)
    config, _ = run_finetune_qa.parse_config(
        ["--config", str(path), "--checkpoint", "none", "--epochs", "3", "--pretrain-out", "o"]
    )
    assert (config.checkpoint, config.finetune["epochs"], config.pretrain["out_dir"]) == (None, 3, "o")
    assert run_finetune_qa.parse_config([])[0] == QAJobConfig()


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
    result = run(
        "-m", "cs288_lm.pipelines.encode_file", "--tokenizer", str(out), "--input", str(SAMPLE), "--out", str(encoded)
    )
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
    args = (
        "-m",
        "cs288_lm.pipelines.generate",
        "--checkpoint",
        str(checkpoint),
        "--strategy",
        "top_k",
        "--k",
        "5",
        "--num-samples",
        "2",
        "--max-new-tokens",
        "40",
        "--seed",
        "3",
        "--device",
        "cpu",
    )
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
    bad_p = run(
        "-m", "cs288_lm.pipelines.generate", "--checkpoint", str(checkpoint), "--strategy", "top_p", "--p", "1.5"
    )
    assert bad_p.returncode == 2 and "p" in bad_p.stderr and "Traceback" not in bad_p.stderr
