"""The given loops around the students' code, on a one-layer LM with random weights (milliseconds).

Fine-tuning runs the learning-rate schedule from iteration 1 to the last (so the first step is not
at a rate of 0 and the last reaches the minimum) and leaves the model's train/eval mode as it was,
even when prediction raises. The prompting pipeline scores with the model in eval mode and gives
the caller's model back in the mode it had, even when a method raises; its score cache never hands
one template's scores to another, even when CPython gives the second template the first one's
freed ``id()``.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch

from cs288_lm.datasets import MultipleChoiceQADataset
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.prompting import PromptingPipeline, PromptTemplate, ScoringSetup
from cs288_lm.qa_model import TransformerForMultipleChoice
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training import finetune
from cs288_lm.training.finetune import FinetuneConfig, finetune_multiple_choice, predict_multiple_choice

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_LENGTH = 64


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return json.loads((REPO_ROOT / "data" / "qa" / "dev.json").read_text(encoding="utf-8"))[:8]


def tiny_lm(tokenizer: Tokenizer) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        ModelConfig(vocab_size=len(tokenizer.vocab), context_length=MAX_LENGTH, d_model=16, num_layers=1, num_heads=2)
    )


def tiny_qa_model(tokenizer: Tokenizer) -> TransformerForMultipleChoice:
    return TransformerForMultipleChoice(tiny_lm(tokenizer), hidden_size=16)


def test_finetuning_schedule_runs_from_iteration_1_to_the_last(tokenizer, questions, monkeypatch):
    """2 epochs of 2 steps: the optimizer steps use iterations 1, 2, 3, 4 (1 of warmup), so the
    first rate is the maximum and the last the minimum."""
    calls, schedule = [], finetune.get_lr_cosine_schedule

    def recorded(it: int, *args: float) -> float:
        calls.append((it, schedule(it, *args)))
        return calls[-1][1]

    monkeypatch.setattr(finetune, "get_lr_cosine_schedule", recorded)
    dataset = MultipleChoiceQADataset(questions, tokenizer, max_length=MAX_LENGTH)
    config = FinetuneConfig(epochs=2, batch_size=4, warmup_fraction=0.25, log_interval=100)
    finetune_multiple_choice(tiny_qa_model(tokenizer), dataset, dataset, config)
    assert [it for it, _ in calls] == [1, 2, 3, 4]
    assert calls[0][1] == config.learning_rate and calls[-1][1] == config.min_learning_rate


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_prediction_restores_the_mode_even_when_it_raises(tokenizer, questions, monkeypatch, training):
    model = tiny_qa_model(tokenizer).train(training)
    dataset = MultipleChoiceQADataset(questions, tokenizer, max_length=MAX_LENGTH)
    assert len(predict_multiple_choice(model, dataset)) == len(questions)
    assert model.training == training

    def failing(*args: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "predict", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_multiple_choice(model, dataset)
    assert model.training == training


def test_score_cache_never_serves_another_templates_scores(tokenizer, questions, monkeypatch):
    """Two templates with the same ``id()`` (CPython reuses a freed object's address, so a template
    made after another was freed may get its id; forced here by making ``id`` constant) get their
    own scores from a shared cache: the ones an empty cache gives."""
    pipeline = PromptingPipeline(tiny_lm(tokenizer), tokenizer)
    first = ScoringSetup(PromptTemplate("basic", choice_format="letter"), method="letter")
    second = ScoringSetup(PromptTemplate("instruction", choice_format="number"), method="letter")
    fresh = pipeline.scores(questions, second)
    cache: dict = {}
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "id", lambda obj: 0)  # every object at one address
        first_scores = pipeline.scores(questions, first, cache)
        shared = pipeline.scores(questions, second, cache)
    assert not torch.equal(first_scores, fresh)  # a cache keyed by id() would serve these
    torch.testing.assert_close(shared, fresh, rtol=0, atol=0)
    assert len(cache) == 2


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_prompting_scores_in_eval_mode_and_restores_the_callers_mode(tokenizer, questions, training):
    model = tiny_lm(tokenizer).train(training)
    modes: list[bool] = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    pipeline = PromptingPipeline(model, tokenizer)
    assert model.training == training
    for method in ("letter", "choice"):
        pipeline.scores(questions[:2], ScoringSetup(PromptTemplate("basic"), method=method))
        assert model.training == training
    assert modes and not any(modes)  # every forward ran in eval mode
    with pytest.raises(ValueError, match="encodes to no token"):
        pipeline.continuation_log_probs([""], [" cat"])
    assert model.training == training
