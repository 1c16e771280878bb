"""Part 4A's given fine-tuning: the answer span that is pooled, token distillation, the kept epoch.

On the shipped tokenizer and dev questions with a one-layer LM of random weights (seconds). The
answer span is exactly the tokens where a question's rows differ and what follows (checked against
the rows the dataset writes, also when a row is cut to ``max_length``); the teacher's targets are
the LM's next-token log-probabilities of each row; the distillation loss is the squared error
against them, centred (checked against a direct computation, and zero for a head that gives them
exactly); the recorded hidden states are the
model's and the backbone gets its method back; the kept epoch follows ``keep``. What distillation
is worth is measured on the real job (README, "The main job").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cs288_lm.datasets import CHOICE_TEMPLATE, CLOZE_TEMPLATE, MultipleChoiceQADataset, collate_multiple_choice
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.qa_model import TransformerForMultipleChoice, pool_hidden_states
from cs288_lm.training import finetune
from cs288_lm.training.answer_span import (
    AnswerSpanDataset,
    answer_span_lengths,
    pooled_dataset,
    shared_prefix_length,
)
from cs288_lm.training.finetune import (
    FinetuneConfig,
    finetune_multiple_choice,
    recorded_hidden_states,
    token_distillation_loss,
    token_log_probs,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return json.loads((REPO_ROOT / "data" / "qa" / "dev.json").read_text(encoding="utf-8"))[:16]


def tiny_lm(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(vocab_size=vocab_size, context_length=128, d_model=16, num_layers=1, num_heads=2))


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert shared_prefix_length([[5], [6]]) == 0
    assert shared_prefix_length([[7, 8], [7, 8]]) == 2


@pytest.mark.parametrize("max_length", [128, 24, 6])
def test_answer_span_is_where_the_rows_differ_and_what_follows(tokenizer, questions, max_length):
    """For each question, the pool mask marks a row's last tokens from the first position where its
    untruncated row differs from another choice's row, within the real tokens (cut rows keep what
    survived); rows differ only there, so every position before the span is the same in all rows."""
    dataset = MultipleChoiceQADataset(questions, tokenizer, max_length=max_length, template=CLOZE_TEMPLATE)
    spans = AnswerSpanDataset(dataset)
    for index, record in enumerate(questions):
        item = spans[index]
        context = tokenizer.encode(record["context"])
        full_rows = [context + tokenizer.encode(" " + record["question"].replace("___", c)) for c in record["choices"]]
        shared = shared_prefix_length(full_rows)
        assert 0 < shared < min(len(row) for row in full_rows)  # the blank never starts a context
        for row, full in enumerate(full_rows):
            length = min(len(full), max_length)
            mask = item["pool_mask"][row].tolist()
            expected = [0] * max_length
            for position in range(max(0, length - (len(full) - shared)), length):
                expected[position] = 1
            assert mask == expected, (record["id"], row)
            assert torch.equal(item["input_ids"][row], dataset[index]["input_ids"][row])
        assert torch.equal(item["attention_mask"], dataset[index]["attention_mask"])


def test_all_positions_keep_the_dataset_and_collate_trims_the_pool_mask(tokenizer, questions):
    dataset = MultipleChoiceQADataset(questions, tokenizer, max_length=128, template=CLOZE_TEMPLATE)
    assert pooled_dataset(dataset, "all") is dataset
    with pytest.raises(ValueError, match=r"unknown pooled positions 'middle'; choose one of \('all', 'answer'\)"):
        pooled_dataset(dataset, "middle")
    batch = collate_multiple_choice([pooled_dataset(dataset, "answer")[i] for i in range(4)])
    longest = int(batch["attention_mask"].sum(dim=-1).max())
    assert batch["input_ids"].shape == batch["pool_mask"].shape == (4, 4, longest)
    assert bool((batch["pool_mask"] <= batch["attention_mask"]).all()) and batch["labels"].shape == (4,)


def test_token_log_probs_are_the_teachers_next_token_log_probabilities(tokenizer, questions):
    """Position t of a row holds log p(token t | tokens before it) under the LM, 0 at t = 0 and on
    padding, for every question in order (batches of another size give the same values)."""
    dataset = MultipleChoiceQADataset(questions[:5], tokenizer, max_length=40, template=CLOZE_TEMPLATE)
    lm = tiny_lm(len(tokenizer.vocab)).train()
    targets = token_log_probs(lm, dataset, batch_size=2)
    assert targets.shape == (5, 4, 40) and lm.training  # the mode is given back
    for index in range(5):
        item = dataset[index]
        for row in range(4):
            length = int(item["attention_mask"][row].sum())
            ids = item["input_ids"][row, :length]
            with torch.no_grad():
                log_probs = torch.log_softmax(lm.eval()(ids[None])[0], dim=-1)
            lm.train()
            expected = torch.zeros(40)
            expected[1:length] = log_probs[torch.arange(length - 1), ids[1:]]
            torch.testing.assert_close(targets[index, row], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(token_log_probs(lm, dataset, batch_size=5), targets, rtol=1e-5, atol=1e-5)


def test_distillation_loss_is_the_squared_error_to_the_centred_targets():
    torch.manual_seed(0)
    targets = -torch.rand(3, 7) * 5
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    hidden = torch.randn(3, 7, 16)
    classifier = torch.nn.Linear(16, 1, bias=False)
    real = [(row, t) for row in range(3) for t in range(1, int(mask[row].sum()))]
    target = torch.stack([targets[row, t] for row, t in real])
    predictions = torch.stack([classifier(hidden[row, t]).squeeze() for row, t in real])
    expected = ((predictions - (target - target.mean())) ** 2).mean()
    torch.testing.assert_close(token_distillation_loss(classifier, hidden, targets, mask), expected)

    class Exact(torch.nn.Module):  # a head that outputs the centred targets at the real positions
        def forward(self, states: torch.Tensor) -> torch.Tensor:
            values = torch.zeros(3, 6)
            values[mask[:, 1:].bool()] = target - target.mean()
            return values.unsqueeze(-1)

    assert float(token_distillation_loss(Exact(), hidden, targets, mask)) == pytest.approx(0, abs=1e-10)


def test_recorded_hidden_states_are_the_models_and_the_method_comes_back():
    backbone = tiny_lm(60)
    ids = torch.randint(0, 60, (2, 5))
    with recorded_hidden_states(backbone) as recorded:
        hidden = backbone.hidden_states(ids)
    assert len(recorded) == 1 and recorded[0] is hidden
    assert "hidden_states" not in vars(backbone)
    with pytest.raises(RuntimeError, match="boom"), recorded_hidden_states(backbone):
        raise RuntimeError("boom")
    assert "hidden_states" not in vars(backbone)
    torch.testing.assert_close(backbone.hidden_states(ids), hidden)


def test_a_forward_that_skips_hidden_states_is_a_clear_error_under_distillation(tokenizer, questions):
    class Direct(TransformerForMultipleChoice):
        def forward(self, input_ids, attention_mask=None):
            batch, choices, seq = input_ids.shape
            hidden = self.transformer_lm.final_ln(self.transformer_lm.token_embeddings(input_ids.flatten(0, 1)))
            return self.classifier(hidden.mean(dim=1)).reshape(batch, choices)

    dataset = MultipleChoiceQADataset(questions[:4], tokenizer, max_length=32, template=CLOZE_TEMPLATE)
    model = Direct(tiny_lm(len(tokenizer.vocab)), 16)
    with pytest.raises(ValueError, match="call transformer_lm.hidden_states once, it called it 0 times"):
        finetune_multiple_choice(model, dataset, dataset, FinetuneConfig(epochs=1, log_interval=1000))
    without = finetune_multiple_choice(model, dataset, dataset, FinetuneConfig(epochs=1, distill_weight=0))
    assert without["history"][0]["distill_loss"] is None


@pytest.mark.parametrize(("keep", "epoch"), [("last", 3), ("best_dev", 2)])
def test_the_kept_epoch_follows_keep(tokenizer, questions, monkeypatch, keep, epoch):
    """Dev accuracies 0.25, 0.5, 0.25: "last" keeps epoch 3's weights, "best_dev" epoch 2's."""
    accuracies = iter([0.25, 0.5, 0.25])
    states: list[dict] = []

    def accuracy(model, dataset):
        states.append({name: value.clone() for name, value in model.state_dict().items()})
        return next(accuracies)

    monkeypatch.setattr(finetune, "multiple_choice_accuracy", accuracy)
    dataset = MultipleChoiceQADataset(questions[:4], tokenizer, max_length=32, template=CLOZE_TEMPLATE)
    model = TransformerForMultipleChoice(tiny_lm(len(tokenizer.vocab)), 16)
    result = finetune_multiple_choice(model, dataset, dataset, FinetuneConfig(epochs=3, batch_size=2, keep=keep))
    assert (result["epoch"], result["dev_accuracy"]) == (epoch, [0.25, 0.5, 0.25][epoch - 1])
    for name, value in model.state_dict().items():
        assert torch.equal(value, states[epoch - 1][name]), name
    assert [row["dev_accuracy"] for row in result["history"]] == [0.25, 0.5, 0.25]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keep": "best"}, r"unknown keep 'best'; choose one of \('last', 'best_dev'\)"),
        ({"distill_weight": -1.0}, "distill_weight must be at least 0, got -1.0"),
        ({"learning_rate": -1e-3}, "learning rates must be finite .* got -0.001 and 5e-05"),
        ({"learning_rate": float("nan")}, "learning rates must be finite .* got nan and 5e-05"),
        ({"learning_rate": 0.0, "min_learning_rate": 0.0}, "learning rates must be finite .* got 0.0 and 0.0"),
        ({"min_learning_rate": 1.0}, "learning rates must be finite .* got 0.0005 and 1.0"),
    ],
)
def test_bad_finetune_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**settings)


def test_a_forward_that_reads_the_rows_in_another_order_is_a_clear_error(tokenizer, questions):
    """Choice-major rows give the same logits but would line the teacher's targets up with the wrong
    rows: the first step says so."""

    class ChoiceMajor(TransformerForMultipleChoice):
        def forward(self, input_ids, attention_mask=None):
            batch, choices, seq = input_ids.shape
            rows = input_ids.transpose(0, 1).reshape(choices * batch, seq)
            hidden = self.transformer_lm.hidden_states(rows)
            mask = attention_mask.transpose(0, 1).reshape(choices * batch, seq)
            pooled = pool_hidden_states(hidden, mask, self.pooling)
            return self.classifier(pooled).reshape(choices, batch).transpose(0, 1)

    dataset = AnswerSpanDataset(
        MultipleChoiceQADataset(questions[:4], tokenizer, max_length=32, template=CLOZE_TEMPLATE)
    )
    model = ChoiceMajor(tiny_lm(len(tokenizer.vocab)), 16, pooling="mean")
    batch = collate_multiple_choice([dataset[i] for i in range(4)])
    reference = TransformerForMultipleChoice(model.transformer_lm, 16, pooling="mean")
    reference.classifier = model.classifier
    torch.testing.assert_close(
        model(batch["input_ids"], batch["pool_mask"]), reference(batch["input_ids"], batch["pool_mask"])
    )
    with pytest.raises(ValueError, match=r"input_ids.reshape\(batch \* choices, seq\) through one"):
        finetune_multiple_choice(model, dataset, dataset, FinetuneConfig(epochs=1, batch_size=2, log_interval=1000))


def test_answer_spans_of_the_choice_template_and_of_choices_that_begin_each_other(tokenizer):
    """With the question/answer template the span is the choice's tokens; a choice whose tokens begin
    every other choice, and identical choices, still pool their last token."""
    record = {
        "context": "Tom had a ball.",
        "question": "What did Tom have?",
        "choices": ["a ball", "a cat", "a dog", "a hat"],
    }
    spans = answer_span_lengths(record, tokenizer, CHOICE_TEMPLATE)
    assert spans == [len(tokenizer.encode(" ball"))] * 4 == [1] * 4
    prefixes = dict(record, choices=["ball", "ball game", "ball pit", "ball toy"])
    assert answer_span_lengths(prefixes, tokenizer, CHOICE_TEMPLATE) == [1, 2, 2, 2]
    same = dict(record, choices=["ball"] * 4)
    assert answer_span_lengths(same, tokenizer, CHOICE_TEMPLATE) == [1] * 4
