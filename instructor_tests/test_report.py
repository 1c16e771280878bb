"""The analysis report (``python -m cs288_lm.pipelines.report``) and its measures, on tiny models.

Instructor-only: the report's optional libraries (scikit-learn, sacrebleu, matplotlib) and the
Hugging Face GPT-2 it is checked against (transformers) are tools requirements, not what students
may import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers

from cs288_lm.analysis.attention import head_scores, repeated_random_tokens, run_with_internals
from cs288_lm.analysis.embeddings import linear_probe
from cs288_lm.analysis.metrics import (
    distinct_n,
    repetition_rate,
    score_text,
    scoring_ids,
    self_bleu,
    token_log_probs,
    words,
)
from cs288_lm.analysis.sampling_study import continuation_log_likelihoods
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.models.gpt2_model import GPT2LM
from cs288_lm.models.hf_interop import load_hf_gpt2
from cs288_lm.pipelines.report import main
from cs288_lm.tokenizer import Tokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = REPO_ROOT / "data" / "tokenizer"
VALID = REPO_ROOT / "data" / "tinystories" / "valid.txt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Small settings: every section runs in a second or two on a tiny model.
FAST = [
    "--samples-per-prompt",
    "2",
    "--max-new-tokens",
    "8",
    "--max-text-bytes",
    "12000",
    "--compare-bytes",
    "3000",
    "--attention-windows",
    "2",
    "--heatmap-tokens",
    "12",
    "--map-tokens",
    "30",
    "--probe-examples",
    "400",
    "--device",
    "cpu",
    "--quiet",
]


def tiny_model(architecture: str, vocab_size: int = 64, context_length: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        architecture=architecture,
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=32,
        num_layers=2,
        num_heads=2,
        kernels="reference",
    )
    return build_model(config).eval()


def run_report(*args: str) -> SimpleNamespace:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*args])
    return SimpleNamespace(code=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_attention_rows_sum_to_one_are_causal_and_the_forward_pass_is_the_models(architecture, one_thread):
    model = tiny_model(architecture)
    tokens = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(1))
    internals = run_with_internals(model, tokens)
    assert len(internals.attention) == 2 and len(internals.hidden) == 3
    for weights in internals.attention:
        assert weights.shape == (3, 2, 20, 20)
        assert torch.allclose(weights.sum(-1), torch.ones(3, 2, 20), atol=1e-5)
        assert float(weights.triu(diagonal=1).abs().max()) == 0.0
    assert torch.allclose(internals.logits, model(tokens), atol=1e-5)
    ablated = run_with_internals(model, tokens, ablate=[(1, 0)]).logits
    assert not torch.allclose(ablated, internals.logits, atol=1e-4)
    with pytest.raises(ValueError, match="no head 5 in layer 0"):
        run_with_internals(model, tokens, ablate=[(0, 5)])


def previous_token_model(context_length: int = 32) -> GPT2LM:
    """One layer, one head that attends to the previous position: one-hot position embeddings, token
    embeddings zero, the query of position i pointing at position i - 1 (a shift matrix)."""
    d_model = context_length
    model = GPT2LM(64, context_length, d_model, num_layers=1, num_heads=1).eval()
    with torch.no_grad():
        model.wte.weight.zero_()
        model.wpe.weight.copy_(torch.eye(context_length))
        shift = torch.diag(torch.ones(d_model - 1), diagonal=1)  # (shift @ e_i) = e_{i-1}
        attention = model.h[0].attn.c_attn
        attention.weight.zero_()
        attention.bias.zero_()
        attention.weight[:d_model] = 1000.0 * shift  # queries
        attention.weight[d_model : 2 * d_model] = torch.eye(d_model)  # keys
        attention.weight[2 * d_model :] = torch.eye(d_model)  # values
    return model


def test_a_hand_built_previous_token_head_scores_as_one_and_not_as_induction(one_thread):
    model = previous_token_model()
    text = torch.randint(0, 64, (2, 32), generator=torch.Generator().manual_seed(0))
    repeated = repeated_random_tokens(64, 10, 2, first_token=0, seed=0)
    assert repeated.shape == (2, 21) and torch.equal(repeated[:, 1:11], repeated[:, 11:])
    scores = head_scores(run_with_internals(model, text).attention, run_with_internals(model, repeated).attention, 10)
    assert float(scores.previous_token[0, 0]) > 0.99
    assert float(scores.induction[0, 0]) < 0.01
    assert float(scores.self_attention[0, 0]) < 0.01 and float(scores.first_token[0, 0]) < 0.05
    assert scores.labels() == [["previous-token"]]


def test_self_bleu_is_100_for_identical_samples_and_0_for_disjoint_vocabularies():
    same = ["the cat sat on the mat and looked at the dog ."] * 3
    assert self_bleu(same) == pytest.approx(100.0, abs=1e-6)
    disjoint = ["alpha beta gamma delta epsilon", "one two three four five", "red green blue cyan pink"]
    assert self_bleu(disjoint) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        self_bleu(["alone"])


def test_distinct_n_and_repetition_rate_on_a_known_list():
    samples = [["a", "b", "a", "b"], ["a", "c"]]
    assert distinct_n(samples, 1) == pytest.approx(3 / 6)  # a b c of a b a b a c
    assert distinct_n(samples, 2) == pytest.approx(3 / 4)  # ab ba ac of ab ba ab ac
    assert distinct_n(samples, 3) == pytest.approx(2 / 2)  # aba bab
    assert distinct_n([["a"]], 2) == 0.0
    assert repetition_rate(samples, 2) == pytest.approx((1 - 2 / 3 + 0) / 2)
    assert words("Hi, Tom!") == ["hi", ",", "tom", "!"]


def test_bits_per_byte_is_mean_loss_over_ln2_times_tokens_per_byte(one_thread):
    tokenizer = Tokenizer.from_directory(TOKENIZER)
    model = tiny_model("llama", vocab_size=max(tokenizer.vocab) + 1, context_length=16)
    text = VALID.read_text(encoding="utf-8")[:400]
    eos = tokenizer.special_token_ids["<|endoftext|>"]
    ids, num_bytes = scoring_ids(tokenizer, text, eos)
    assert ids[0] == eos and num_bytes == len(text.encode("utf-8"))
    score = score_text(model, ids, num_bytes, batch_size=3)
    assert score.tokens == len(ids) - 1
    # The same loss window by window, by hand: window k reads ids[16k : 16k + 16].
    tokens = torch.tensor(ids)
    with torch.no_grad():
        total = sum(
            float(
                F.cross_entropy(
                    model(tokens[s : s + 16][None]).squeeze(0)[: len(tokens[s + 1 : s + 17])],
                    tokens[s + 1 : s + 17],
                    reduction="sum",
                )
            )
            for s in range(0, len(ids) - 1, 16)
        )
    assert score.mean_loss == pytest.approx(total / score.tokens, rel=1e-5)
    assert score.bits_per_byte == pytest.approx(score.mean_loss / math.log(2) * score.tokens / num_bytes, rel=1e-12)
    assert score.perplexity == pytest.approx(math.exp(score.mean_loss))


def test_batched_continuation_log_likelihoods_equal_scoring_each_sample_alone(one_thread):
    model = tiny_model("gpt2", context_length=16)
    prompt, rows = [1, 2, 3], [[4, 5, 6, 7, 8], [9, 10, 11, 12, 13]]
    lengths = [5, 2]  # the second stopped early: its last tokens are padding
    alone = [
        float(token_log_probs(model, prompt + row[:n])[-n:].double().sum())
        for row, n in zip(rows, lengths, strict=True)
    ]
    assert continuation_log_likelihoods(model, prompt, rows, lengths) == pytest.approx(alone, rel=1e-6)
    long_rows = [list(range(4, 24))] * 2  # prompt + row longer than the context: scored window by window
    alone = [
        float(token_log_probs(model, prompt + row[:n])[-n:].double().sum())
        for row, n in zip(long_rows, [20, 7], strict=True)
    ]
    assert continuation_log_likelihoods(model, prompt, long_rows, [20, 7]) == pytest.approx(alone, rel=1e-6)


def test_the_probe_beats_the_majority_baseline_on_separable_data():
    rng = np.random.default_rng(0)
    groups = [f"word{i}" for i in range(40) for _ in range(10)]
    labels = ["noun" if i % 3 else "verb" for i in range(40) for _ in range(10)]
    signal = np.array([[2.0 if label == "noun" else -2.0] for label in labels])
    noise = rng.normal(size=(len(labels), 8))
    separable = np.concatenate([signal + 0.3 * rng.normal(size=signal.shape), noise], axis=1)
    results = linear_probe([noise, separable], labels, groups, seed=0)
    assert results[1].accuracy > 0.95 and results[1].accuracy > results[1].baseline + 0.2
    assert results[0].accuracy < results[1].accuracy
    assert results[1].train_examples + results[1].test_examples == 400


@pytest.fixture(scope="module")
def hf_gpt2_dir(tmp_path_factory) -> Path:
    """A small GPT2LMHeadModel over the bundled tokenizer, written with save_pretrained."""
    directory = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=4096, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(directory)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOKENIZER / name, directory / name)
    return directory


def test_a_save_pretrained_gpt2_loads_with_hugging_faces_logits(hf_gpt2_dir, one_thread):
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_gpt2_dir).eval()
    loaded = load_hf_gpt2(hf_gpt2_dir)
    tokens = torch.tensor([loaded.tokenizer.encode("Once upon a time, there was a little dog named Max.")])
    with torch.no_grad():
        expected = reference(tokens).logits
    assert torch.allclose(loaded.model(tokens), expected, atol=1e-5)
    assert loaded.eos == 0 and loaded.model.context_length == 64


def test_a_gpt2_config_that_is_not_a_json_object_gets_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json: not a JSON object of settings \(found a list\)"):
        load_hf_gpt2(tmp_path)


def tiny_run(directory: Path) -> Path:
    """A run directory in the trainer's format: a small random model, a config and a few metrics."""
    vocab_size = max(Tokenizer.from_directory(TOKENIZER).vocab) + 1
    config = ModelConfig(vocab_size=vocab_size, context_length=32, d_model=32, num_layers=2, num_heads=2)
    torch.manual_seed(0)
    train_config = {"train_data": str(REPO_ROOT / "data" / "tinystories" / "train.txt"), "batch_size": 4}
    (directory / "checkpoints").mkdir(parents=True)
    torch.save(
        {
            "model": build_model(config).state_dict(),
            "model_config": dataclasses.asdict(config),
            "config": train_config,
            "step": 4,
            "tokens_seen": 512,
        },
        directory / "checkpoints" / "best.pt",
    )
    records = [
        {
            "step": s,
            "tokens": 128 * s,
            "train_loss": 8.0 - s / 10,
            "tokens_per_second": 1000.0,
            "val_loss": 8.1 - s / 10,
            "val_perplexity": math.exp(8.1 - s / 10),
        }
        for s in (2, 4)
    ]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return directory


def tiny_sweep(directory: Path, run: Path) -> Path:
    directory.mkdir()
    (directory / "results.csv").write_text("run,best_val_loss,status\nlearning_rate=1e-3,7.7,ok\n", encoding="utf-8")
    (directory / "learning_rate=1e-3").mkdir()
    shutil.copyfile(run / "metrics.jsonl", directory / "learning_rate=1e-3" / "metrics.jsonl")
    return directory


def test_the_command_writes_a_report_whose_every_link_resolves(tmp_path, hf_gpt2_dir, one_thread):
    run = tiny_run(tmp_path / "run")
    sweep = tiny_sweep(tmp_path / "sweep", run)
    out = tmp_path / "report"
    result = run_report(
        "--checkpoint", str(run), "--out", str(out), "--gpt2", str(hf_gpt2_dir), "--sweep", str(sweep), *FAST
    )
    assert result.code == 0, result.stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    for number, title in enumerate(
        (
            "Model card",
            "Hyperparameter study",
            "Sampling study",
            "Attention",
            "Embeddings",
            "Comparison with a pretrained GPT-2",
        ),
        start=1,
    ):
        assert f"## {number}. {title}" in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    links = re.findall(r"(?<!!)\[[^\]]*\]\(([^)#]+)\)", report)
    assert len(images) >= 10 and any(link.endswith(".csv") for link in links)
    for target in images + links:
        assert not Path(target).is_absolute() and (out / target).is_file(), target
    for image in images:
        assert (out / image).read_bytes().startswith(PNG_SIGNATURE), image
    for name in ("sampling_metrics.csv", "attention_heads.csv", "probe.csv", "compare_scores.csv", "timings.csv"):
        assert (out / name).is_file(), name
    strategies = (out / "sampling_metrics.csv").read_text(encoding="utf-8")
    for strategy in ("greedy", "temperature 0.7", "temperature 1.0", "temperature 1.3", "top-k 50", "top-p 0.9"):
        assert strategy in strategies
    assert "bits/byte" in report and "Self-BLEU" in report and "induction" in report


def test_bad_input_gets_a_clear_error(tmp_path, hf_gpt2_dir):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    result = run_report("--checkpoint", str(not_a_run), "--out", str(tmp_path / "out"), *FAST)
    assert result.code == 2 and "no checkpoint" in result.stderr and "run directory" in result.stderr
    assert not (tmp_path / "out" / "report.md").exists()

    run = tiny_run(tmp_path / "run")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    result = run_report(
        "--checkpoint", str(run), "--out", str(tmp_path / "out"), "--text", str(tmp_path / "empty.txt"), *FAST
    )
    assert result.code == 2 and "empty.txt is empty" in result.stderr

    other = tmp_path / "gpt2-other-vocab"
    config = transformers.GPT2Config(vocab_size=4000, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(other)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(hf_gpt2_dir / name, other / name)
    result = run_report("--checkpoint", str(run), "--out", str(tmp_path / "out"), "--gpt2", str(other), *FAST)
    assert result.code == 2 and "4096 tokens" in result.stderr and "vocabulary size is 4000" in result.stderr

    result = run_report("--checkpoint", str(run), "--out", str(tmp_path / "out"), "--gpt2", str(not_a_run), *FAST)
    assert result.code == 2 and "no config.json" in result.stderr


def test_a_run_without_best_pt_is_reported_from_latest_pt(tmp_path, one_thread):
    """RunDir's rule: a run stopped before its first evaluation has only latest.pt, which stands in."""
    run = tiny_run(tmp_path / "run")
    (run / "checkpoints" / "best.pt").rename(run / "checkpoints" / "latest.pt")
    out = tmp_path / "report"
    result = run_report("--checkpoint", str(run), "--out", str(out), "--sections", "card", *FAST)
    assert result.code == 0, result.stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"Checkpoint `{run / 'checkpoints' / 'latest.pt'}` (step 4)" in report
    assert "![loss against tokens seen](loss.png)" in report
