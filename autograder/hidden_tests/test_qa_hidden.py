"""Hidden tests for Part 4: datasets, pooling, the multiple-choice model and prompting.

Everything goes through ``adapters.py``, with other inputs than the public tests: 2 and 5 choices,
other ``max_length`` values (including one that leaves no room for the context), strides longer
than a window, the GPT-2 backbone next to the Llama-style one, random padding amounts, pad ids
and batch compositions, float64 pooling references on random masks, prompts longer than the
context mixed with short ones in one batch, and numbered choices in few-shot demonstrations.
The references are written here from the definitions. The models' weight matrices are set by
parameter name (``pin_weights``), so every correct implementation has the same weights.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import adapters
from tests.common import (
    DATA,
    EOT,
    REPO_ROOT,
    bundled_tokenizer,
    pin_weights,
    pinned_lm,
    reference_log_probs,
    reference_pool,
)
from tests.graded import check_close, check_equal

QA_DIR = REPO_ROOT / "data" / "qa"
POOLINGS = adapters.POOLINGS
ARCHITECTURES = ("llama", "gpt2")
VOCAB, CONTEXT, D_MODEL = 53, 20, 24


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/torch_threads.py


@pytest.fixture(scope="module")
def tokenizer():
    return bundled_tokenizer()


def backbone(architecture: str, seed: int = 0, vocab_size: int = VOCAB, context_length: int = CONTEXT):
    return pinned_lm(
        architecture, vocab_size, context_length, D_MODEL, 2, 3, 40 if architecture == "llama" else None, seed
    )


def multiple_choice_model(architecture: str, pooling: str, num_choices: int, seed: int = 0, **kwargs):
    lm = backbone(architecture, seed)
    torch.manual_seed(seed + 1)
    model = adapters.TransformerForMultipleChoice(lm, D_MODEL, num_choices=num_choices, pooling=pooling, **kwargs)
    pin_weights(model.classifier, seed + 1)  # the backbone's are set already
    return model.eval()


def dev_records(count: int) -> list[dict]:
    return json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))[:count]


def rest_text(record: dict, choice: str) -> str:
    return f"\n\nQuestion: {record['question']}\n\nAnswer: {choice}"


# ---------------------------------------------------------------------------------------------
# PretrainingDataset
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_length, stride", [(1, None), (7, 3), (5, 9), (33, 1), (12, 12)])
def test_pretraining_windows_for_other_sizes(tokenizer, tmp_path, monkeypatch, max_length, stride):
    """Window i = tokens [i*stride, i*stride + max_length + 1), split into inputs and labels, for
    one-token windows, overlapping windows and strides longer than a window (tokens skipped)."""
    text = EOT.join((DATA / "valid.txt").read_text(encoding="utf-8").split(EOT)[5:7])
    monkeypatch.chdir(tmp_path)  # a relative path: error messages name no temporary directory
    path = Path("text.txt")
    path.write_text(text, encoding="utf-8")
    tokens = tokenizer.encode(text)
    step = stride or max_length
    starts = list(range(0, len(tokens) - max_length, step))
    dataset = adapters.PretrainingDataset(path, tokenizer, max_length=max_length, stride=stride)
    check_equal(len(dataset), len(starts))
    for index, start in enumerate(starts):
        item = dataset[index]
        check_equal(item["input_ids"].tolist(), tokens[start : start + max_length])
        check_equal(item["labels"].tolist(), tokens[start + 1 : start + max_length + 1])
    with pytest.raises(IndexError):
        dataset[len(starts)]


# ---------------------------------------------------------------------------------------------
# MultipleChoiceQADataset
# ---------------------------------------------------------------------------------------------


def with_choices(record: dict, num_choices: int) -> dict:
    """The record with 2 choices (the answer and one distractor) or 5 (one more word of the context)."""
    answer = record["choices"][record["answer"]]
    if num_choices == 2:
        distractor = next(c for c in record["choices"] if c != answer)
        choices = [distractor, answer] if record["answer"] % 2 else [answer, distractor]
    else:
        extra = next(w for w in reversed(record["context"].split()) if w.isalpha() and w not in record["choices"])
        choices = record["choices"][:2] + [extra] + record["choices"][2:]
    return {**record, "choices": choices, "answer": choices.index(answer)}


@pytest.mark.parametrize("num_choices", [2, 5])
@pytest.mark.parametrize("max_length", [None, 48, 97, 300])
def test_multiple_choice_items_for_other_sizes(tokenizer, num_choices, max_length):
    """Rows are the context ids cut from the left to fit, then the rest ids; padding to max_length.
    ``None``: max_length = the longest rest, which leaves no room for that choice's context; one
    less cuts the first token of that rest too."""
    records = [with_choices(record, num_choices) for record in dev_records(3)]
    rests = [{c: tokenizer.encode(rest_text(r, c)) for c in r["choices"]} for r in records]
    length = max_length or max(len(ids) for rest in rests for ids in rest.values())
    dataset = adapters.MultipleChoiceQADataset(records, tokenizer, max_length=length, num_choices=num_choices)
    pad = tokenizer.encode(EOT)[0]
    for index, record in enumerate(records):
        item = dataset[index]
        shapes = (tuple(item["input_ids"].shape), tuple(item["attention_mask"].shape))
        check_equal(shapes, ((num_choices, length), (num_choices, length)))
        check_equal(item["labels"].item(), record["answer"])
        context = tokenizer.encode(record["context"])
        for row, choice in enumerate(record["choices"]):
            rest = rests[index][choice]
            room = length - len(rest)
            expected = context[max(0, len(context) - room) :] + rest
            check_equal(item["input_ids"][row].tolist(), expected + [pad] * (length - len(expected)))
            check_equal(item["attention_mask"][row].tolist(), [1] * len(expected) + [0] * (length - len(expected)))
    if max_length is None:
        longest = max(((i, c) for i, rest in enumerate(rests) for c in rest), key=lambda ic: len(rests[ic[0]][ic[1]]))
        row = records[longest[0]]["choices"].index(longest[1])
        check_equal(dataset[longest[0]]["input_ids"][row].tolist(), rests[longest[0]][longest[1]])
        too_short = adapters.MultipleChoiceQADataset(records, tokenizer, max_length=length - 1, num_choices=num_choices)
        check_equal(too_short[longest[0]]["input_ids"][row].tolist(), rests[longest[0]][longest[1]][1:])


@pytest.mark.parametrize("num_choices, max_length", [(2, 6), (5, 19), (3, 64)])
def test_multiple_choice_byte_tokenizer_keeps_the_last_tokens(num_choices, max_length):
    """With a byte-level tokenizer (no merges) every row is the last max_length bytes of
    "{context}\\n\\nQuestion: {question}\\n\\nAnswer: {choice}", even when that cuts into the
    question or the choice; padding is the first special token; a record without an answer has
    labels -1."""
    byte_tokenizer = adapters.get_tokenizer({i: bytes([i]) for i in range(256)} | {256: EOT.encode()}, [], [EOT])
    choices = ["a big red kite", "the old well", "Grandma's kitchen", "under the bed", "é"][:num_choices]
    records = [
        {"context": "Mia lost her kite.", "question": "Where did Mia find it?", "choices": choices, "answer": 1},
        {"context": "", "question": "Which one? ___", "choices": choices[::-1]},
    ]
    dataset = adapters.MultipleChoiceQADataset(
        data=records, tokenizer=byte_tokenizer, max_length=max_length, num_choices=num_choices
    )
    check_equal([dataset[i]["labels"].item() for i in range(2)], [1, -1])
    for index, record in enumerate(records):
        item = dataset[index]
        for row, choice in enumerate(record["choices"]):
            text = f"{record['context']}\n\nQuestion: {record['question']}\n\nAnswer: {choice}"
            kept = list(text.encode("utf-8"))[-max_length:]
            check_equal(item["input_ids"][row].tolist(), kept + [256] * (max_length - len(kept)))
            check_equal(item["attention_mask"][row].tolist(), [1] * len(kept) + [0] * (max_length - len(kept)))


@pytest.mark.parametrize("max_length", [7, 30, 80])
def test_multiple_choice_cloze_and_custom_templates_keep_the_last_tokens(max_length):
    """With CLOZE_TEMPLATE a row is the last max_length bytes of "{context} {question with the choice
    in its blank}"; a custom template gets every field; the context is cut first."""
    byte_tokenizer = adapters.get_tokenizer({i: bytes([i]) for i in range(256)} | {256: EOT.encode()}, [], [EOT])
    record = {
        "context": "Mia lost her kite. She looked everywhere.",
        "question": "She found it under the ___.",
        "choices": ["bed", "old well", "é", "sofa"],
        "answer": 0,
    }
    templates = (adapters.CLOZE_TEMPLATE, "{context}\n[{choice}] {question} => {filled}")
    for template in templates:
        item = adapters.MultipleChoiceQADataset([record], byte_tokenizer, max_length=max_length, template=template)[0]
        for row, choice in enumerate(record["choices"]):
            filled = record["question"].replace("___", choice)
            text = template.format(context=record["context"], question=record["question"], choice=choice, filled=filled)
            kept = list(text.encode("utf-8"))[-max_length:]
            check_equal(item["input_ids"][row].tolist(), kept + [256] * (max_length - len(kept)))


def test_multiple_choice_batches_through_a_data_loader(tokenizer):
    """Items of 5 choices batch with a DataLoader (and collate_multiple_choice) into model inputs."""
    records = [with_choices(record, 5) for record in dev_records(5)]
    dataset = adapters.MultipleChoiceQADataset(records, tokenizer, max_length=128, num_choices=5)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=adapters.collate_multiple_choice)
    batches = list(loader)
    check_equal([tuple(b["input_ids"].shape[:2]) for b in batches], [(2, 5), (2, 5), (1, 5)])
    check_equal(torch.cat([b["labels"] for b in batches]).tolist(), [r["answer"] for r in records])
    default = list(torch.utils.data.DataLoader(dataset, batch_size=5))[0]
    check_equal((tuple(default["input_ids"].shape), default["labels"].dtype), ((5, 5, 128), torch.long))


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pooling_equals_a_float64_reference_on_random_masks(pooling, dtype):
    """Random hidden states (padded positions hold huge values) and right-padded masks with
    lengths from 1 to the full sequence, including a batch of one."""
    generator = torch.Generator().manual_seed(11)
    for batch, seq in ((6, 9), (1, 5), (4, 1)):
        lengths = torch.randint(1, seq + 1, (batch,), generator=generator)
        lengths[0] = seq
        mask = (torch.arange(seq)[None] < lengths[:, None]).long()
        hidden = torch.randn(batch, seq, 7, generator=generator, dtype=torch.float64) * 3 - 1
        hidden = torch.where(mask[..., None].bool(), hidden, torch.full_like(hidden, 1e4))
        pooled = adapters.run_pool_hidden_states(hidden.to(dtype), mask, pooling)
        check_equal((pooled.dtype, tuple(pooled.shape)), (dtype, (batch, 7)))
        expected = reference_pool(hidden.to(dtype), mask, pooling)
        tolerance = 1e-12 if dtype == torch.float64 else 1e-5
        check_close(pooled.double(), expected, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_rows_of_only_padding_give_zeros_in_random_batches(pooling):
    """Random masks where some rows have no real token: those rows pool to zeros, the others to
    their float64 reference; huge values under the padding never show."""
    generator = torch.Generator().manual_seed(12)
    lengths = torch.tensor([0, 3, 0, 8, 1, 0])
    mask = (torch.arange(8)[None] < lengths[:, None]).long()
    hidden = torch.randn(6, 8, 5, generator=generator, dtype=torch.float64) - 4
    hidden = torch.where(mask[..., None].bool(), hidden, torch.full_like(hidden, 1e4))
    pooled = adapters.run_pool_hidden_states(hidden.float(), mask, pooling)
    check_close(pooled.double(), reference_pool(hidden.float(), mask, pooling), atol=1e-5, rtol=1e-5)
    check_equal(pooled[lengths == 0].abs().sum().item(), 0.0)


# ---------------------------------------------------------------------------------------------
# The multiple-choice model
# ---------------------------------------------------------------------------------------------


def random_question(num_choices: int, seed: int, max_length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of random lengths 1..max_length, trimmed to the longest row (no shared padding)."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, max_length) for _ in range(num_choices)]
    ids = torch.tensor([[rng.randrange(VOCAB) for _ in range(max(lengths))] for _ in lengths])
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def pad_batch(questions: list[tuple[torch.Tensor, torch.Tensor]], length: int, pad_id: int, generator: torch.Generator):
    """Stack questions right-padded to ``length``; padded positions get ``pad_id`` or random ids."""
    ids, masks = [], []
    for question_ids, mask in questions:
        extra = length - question_ids.shape[1]
        noise = torch.randint(0, VOCAB, (question_ids.shape[0], length), generator=generator)
        filler = noise if pad_id < 0 else torch.full_like(noise, pad_id)
        padded = torch.nn.functional.pad(question_ids, (0, extra))
        mask = torch.nn.functional.pad(mask, (0, extra))
        ids.append(torch.where(mask.bool(), padded, filler))
        masks.append(mask)
    return torch.stack(ids), torch.stack(masks)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("pooling", POOLINGS)
@torch.no_grad()
def test_padding_and_batch_composition_never_change_the_logits(architecture, pooling):
    """Each question's logits alone (no shared padding) equal its row in random batches padded to
    random lengths with random pad ids (or random tokens) under the mask."""
    num_choices = 2 if architecture == "llama" else 5
    model = multiple_choice_model(architecture, pooling, num_choices)
    questions = [random_question(num_choices, seed) for seed in range(6)]
    alone = [model(ids[None], mask[None])[0] for ids, mask in questions]
    rng, generator = random.Random(3), torch.Generator().manual_seed(3)
    for _ in range(4):
        members = rng.sample(range(len(questions)), rng.randint(1, 4))
        longest = max(questions[m][0].shape[1] for m in members)
        length = rng.randint(longest, CONTEXT)
        pad_id = rng.choice([0, 7, VOCAB - 1, -1])
        ids, mask = pad_batch([questions[m] for m in members], length, pad_id, generator)
        logits = model(ids, mask)
        check_equal(tuple(logits.shape), (len(members), num_choices))
        for row, member in enumerate(members):
            check_close(logits[row], alone[member], atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
@torch.no_grad()
def test_gpt2_backbone_logits_are_the_head_on_pooled_hidden_states(pooling):
    """With GPT-2 and 5 choices: logits = classifier(pool(hidden_states)), in float64 reference pooling."""
    model = multiple_choice_model("gpt2", pooling, 5, seed=4)
    ids, mask = pad_batch([random_question(5, seed) for seed in (20, 21, 22)], 14, 0, torch.Generator().manual_seed(0))
    logits = model(ids, mask)
    hidden = model.transformer_lm.hidden_states(ids.reshape(15, 14))
    pooled = reference_pool(hidden, mask.reshape(15, 14), pooling)
    expected = pooled @ model.classifier.weight.double().T
    if getattr(model.classifier, "bias", None) is not None:
        expected = expected + model.classifier.bias.double()
    check_close(logits.double(), expected.reshape(3, 5), atol=1e-5, rtol=1e-5)
    probs = model.predict_probs(ids, mask)
    check_close(probs.sum(-1), torch.ones(3))
    check_equal(model.predict(ids, mask).tolist(), logits.argmax(-1).tolist())


def test_gpt2_frozen_backbone_gets_no_gradient():
    """freeze_backbone with GPT-2: after backward only the head has gradients."""
    model = multiple_choice_model("gpt2", "max", 2, freeze_backbone=True).train()
    ids, mask = pad_batch([random_question(2, seed) for seed in (30, 31)], 12, 0, torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(model(ids, mask), torch.tensor([1, 0])).backward()
    backbone_state = [(p.grad is None, p.requires_grad) for p in model.transformer_lm.parameters()]
    check_equal(backbone_state, [(True, False)] * len(backbone_state))
    head = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.classifier.parameters()]
    check_equal(head, [True] * len(head))


# ---------------------------------------------------------------------------------------------
# Prompting
# ---------------------------------------------------------------------------------------------

DEMOS = [
    {"context": "Max had a hat.", "question": "The ___ was blue.", "choices": ["cup", "hat", "bed"], "answer": 1},
    {"context": "Sue met Ann.", "question": "Then ___ smiled.", "choices": ["Sue", "Ann", "Max"], "answer": 2},
]
RECORD = {
    "context": "Mom baked a cake. Tim saw the cake and the pie.",
    "question": 'Tim said, "I want the ___!"',
    "choices": ["cake", "pie", "Mom"],
    "answer": 0,
}


def test_few_shot_demonstrations_with_numbered_choices():
    """Numbered choices in the demonstrations and the question; the answer line uses the number."""
    template = adapters.PromptTemplate("few_shot", choice_format="number", demonstrations=DEMOS)
    check_equal(
        template.format(RECORD),
        (
            "Max had a hat.\n\nQuestion: The ___ was blue.\n\nChoices:\n1. cup\n2. hat\n3. bed\n\nAnswer: 2. hat\n\n"
            "Sue met Ann.\n\nQuestion: Then ___ smiled.\n\nChoices:\n1. Sue\n2. Ann\n3. Max\n\nAnswer: 3. Max\n\n"
            'Mom baked a cake. Tim saw the cake and the pie.\n\nQuestion: Tim said, "I want the ___!"\n\n'
            "Choices:\n1. cake\n2. pie\n3. Mom\n\nAnswer:"
        ),
    )
    letters = adapters.PromptTemplate("instruction", demonstrations=DEMOS)
    five = {**RECORD, "choices": ["a", "b", "c", "d", "e"]}
    check_equal(letters.format_choices(five["choices"]), "A. a\nB. b\nC. c\nD. d\nE. e")
    prompt = letters.format(five)
    check_equal(
        prompt,
        (  # the instruction layout of the public tests, with five options
            "Read the story and choose the word that fills the blank.\n\n"
            f"Story: {RECORD['context']}\n\nSentence: {RECORD['question']}\n\n"
            "Options:\nA. a\nB. b\nC. c\nD. d\nE. e\n\nThe missing word is"
        ),
    )
    # About the prompt recorded just above:
    check_equal("Options:\nA. a\nB. b\nC. c\nD. d\nE. e\n\nThe missing word is" in prompt, True)
    check_equal(prompt.startswith("Max had a hat."), False)  # only few_shot shows demonstrations


def test_format_with_keywords_and_numbered_choices():
    """format(context=..., question=..., choices=[...]) with other templates, labels and counts
    gives what format(record) gives; keywords without a record need all three."""
    for name, choice_format in (("instruction", "number"), ("few_shot", "letter"), ("cloze", "letter")):
        template = adapters.PromptTemplate(name, choice_format=choice_format, demonstrations=DEMOS)
        keywords = {key: RECORD[key] for key in ("context", "question", "choices")}
        check_equal(template.format(**keywords), template.format(RECORD))
    prompt = adapters.PromptTemplate(template_name="basic", choice_format="number").format(
        context="Ann has two pets.", question="Which pet barks?", choices=("cat", "dog")
    )
    check_equal(prompt, "Ann has two pets.\n\nQuestion: Which pet barks?\n\nChoices:\n1. cat\n2. dog\n\nAnswer:")
    with pytest.raises(TypeError):
        adapters.PromptTemplate("basic").format(context="Ann has two pets.", question="Which pet barks?")


def test_custom_template_with_choices_formatted_and_other_fields():
    """{choices_formatted} next to the other fields, with numbered labels and five choices."""
    five = {**RECORD, "choices": ["cake", "pie", "Mom", "tea", "bun"]}
    template = adapters.PromptTemplate(
        custom_template="Story: {context}\nQ: {question}\n{choices_formatted}\nBlank after: {question_before_blank}",
        choice_format="number",
    )
    check_equal(
        template.format(five),
        (
            f"Story: {RECORD['context']}\nQ: {RECORD['question']}\n1. cake\n2. pie\n3. Mom\n4. tea\n5. bun\n"
            'Blank after: Tim said, "I want the'
        ),
    )
    check_equal(template.continuation(five, 3), ' tea!"')


def test_cloze_prompt_and_continuation_rebuild_the_sentence():
    """For cloze templates, prompt + continuation is the context, a space and the filled-in sentence,
    also when the blank follows a quote or is followed by punctuation."""
    cloze = adapters.PromptTemplate("cloze")
    check_equal(cloze.format(RECORD), 'Mom baked a cake. Tim saw the cake and the pie. Tim said, "I want the')
    check_equal(cloze.continuation(RECORD, 1), ' pie!"')
    quoted = {**RECORD, "question": 'He called it a "___".'}
    prompt, end = cloze.format(quoted), 'He called it a "'
    check_equal(prompt[max(0, len(prompt) - len(end)) :], end)  # the prompt ends with it
    check_equal(cloze.continuation(quoted, 2), 'Mom".')
    records = dev_records(40) + [RECORD, quoted]
    rebuilt = [cloze.format(r) + cloze.continuation(r, index) for r in records for index in range(len(r["choices"]))]
    check_equal(rebuilt, [f"{r['context']} {r['question'].replace('___', c)}" for r in records for c in r["choices"]])


def test_cloze_rebuilds_the_sentence_after_any_whitespace_before_the_blank():
    """Dev questions with the space before the blank replaced by a newline, a tab or two spaces:
    prompt + continuation is the context, a space and the sentence with one space before the
    choice; questions with no blank or two are ValueErrors for cloze templates only."""
    cloze = adapters.PromptTemplate("cloze")
    records = [r for r in dev_records(30) if " ___" in r["question"]][:8]
    for whitespace in ("\n", "\t", "  ", " \n "):
        for record in records:
            changed = {**record, "question": record["question"].replace(" ___", whitespace + "___")}
            before, after = record["question"].split(" ___")
            rebuilt = [cloze.format(changed) + cloze.continuation(changed, i) for i in range(len(record["choices"]))]
            check_equal(rebuilt, [f"{record['context']} {before} {choice}{after}" for choice in record["choices"]])
    custom = adapters.PromptTemplate(custom_template="{question}\n\n{context} {question_before_blank}")
    for question in ("No blank here.", "Two ___ and ___."):
        broken = {**RECORD, "question": question}
        for call in (cloze.format, custom.format, lambda r: cloze.continuation(r, 1)):
            with pytest.raises(ValueError, match="blank"):
                call(broken)
        check_equal(adapters.PromptTemplate("instruction").continuation(broken, 1), " pie")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_continuation_log_probs_in_mixed_batches_equal_one_at_a_time(tokenizer, architecture):
    """A batch mixing short prompts, prompts longer than the context and continuations of 1 to 9
    tokens gives each pair what it gets alone, and what the model's forward gives."""
    model = backbone(architecture, seed=5, vocab_size=tokenizer.vocab_size, context_length=24)
    pipeline = adapters.PromptingPipeline(model, tokenizer)
    story = (DATA / "valid.txt").read_text(encoding="utf-8").split(EOT)[3].strip()
    rng = random.Random(8)
    prompts, continuations = [], []
    for _ in range(7):
        start = rng.randrange(0, 200)
        prompts.append(story[start : start + rng.choice([3, 20, 60, 250])])
        words = story.split()
        first = rng.randrange(0, len(words) - 6)
        continuations.append(" " + " ".join(words[first : first + rng.randint(1, 5)]))
    batch = pipeline.continuation_log_probs(prompts, continuations)
    # Guards on the test's input: some pairs are longer than the context, some short.
    assert any(len(tokenizer.encode(p + c)) > 24 for p, c in zip(prompts, continuations, strict=True))
    assert any(len(tokenizer.encode(p + c)) < 12 for p, c in zip(prompts, continuations, strict=True))
    for prompt, continuation, result in zip(prompts, continuations, batch, strict=True):
        alone = pipeline.continuation_log_probs([prompt], [continuation])[0]
        check_close(result, alone, atol=2e-5, rtol=2e-5)
        expected = reference_log_probs(model, tokenizer, prompt, continuation)
        check_close(result.double(), expected, atol=2e-5, rtol=2e-5)


def test_scores_with_three_choices_and_numbered_labels(tokenizer):
    """choice and letter scores for 3-choice questions with numbered labels, calibrated or not, on GPT-2."""
    model = backbone("gpt2", seed=6, vocab_size=tokenizer.vocab_size, context_length=128)
    pipeline = adapters.PromptingPipeline(model, tokenizer)
    template = adapters.PromptTemplate("basic", choice_format="number")
    records = [RECORD, {**RECORD, "choices": ["pie", "Mom", "cake"], "answer": 2}]
    for setup_method in ("letter", "choice"):
        setup = adapters.ScoringSetup(template, setup_method, "mean", calibrate=True)
        scores = pipeline.scores(records, setup)
        check_equal(tuple(scores.shape), (2, 3))
        expected = torch.zeros(2, 3, dtype=torch.float64)
        for row, record in enumerate(records):
            for index in range(3):
                for record_used, sign in ((record, 1), (template.content_free(record), -1)):
                    if setup_method == "letter":
                        value = reference_log_probs(model, tokenizer, template.format(record_used), f" {index + 1}")[0]
                    else:
                        continuation = template.continuation(record_used, index)
                        value = reference_log_probs(model, tokenizer, template.format(record_used), continuation).mean()
                    expected[row, index] += sign * value
        check_close(scores.double(), expected, atol=1e-4, rtol=1e-4)
