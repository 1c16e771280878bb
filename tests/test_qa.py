"""Part 4: datasets, the multiple-choice model and prompting (public tests).

Every test goes through ``adapters.py``, on tiny models whose random weights the tests set by
parameter name (``pin_weights``: the same for every correct implementation) and on the bundled
tokenizer (``data/tokenizer``). The references are written here: the
expected token ids and strings by hand, pooling by hand on small tensors, logits from the
backbone's ``hidden_states`` and the head, and log-probabilities from the model's own ``forward``.
Select a part with ``pytest -k``: ``pretraining``, ``multiple_choice``, ``pool``, ``padding``,
``freeze``, ``predict``, ``template``, ``continuation``, ``scores``, ``calibrat``, ``select``.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING

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
    write_utf8,
)
from tests.graded import check_close, check_equal

if TYPE_CHECKING:  # the name of the poolings' type only; the tests reach the code through adapters
    from cs288_lm.qa_model import Pooling

QA_DIR = REPO_ROOT / "data" / "qa"
TESTS = Path(__file__).resolve().parent
POOLINGS = adapters.POOLINGS

# The multiple-choice model: a tiny backbone over a small vocabulary (random token ids).
VOCAB, CONTEXT, D_MODEL, NUM_LAYERS, NUM_HEADS, D_FF = 64, 32, 16, 2, 2, 32

RECORD = {
    "id": "toy-1",
    "context": "Tom had a red ball. He threw the ball to Sue.",
    "question": "Sue caught the ___ with both hands.",
    "choices": ["ball", "dog", "tree", "cake"],
    "answer": 0,
}
RECORD_2 = {
    "id": "toy-2",
    "context": "Lily went to the park with her dog. The dog ran after a stick.",
    "question": "Lily threw the ___.",
    "choices": ["park", "dog", "stick", "tree"],
    "answer": 2,
}
DEMOS = [
    {
        "id": "d1",
        "context": "Ann saw a cat.",
        "question": "The ___ was black.",
        "choices": ["hat", "mat", "cat", "bat"],
        "answer": 2,
    },
    {
        "id": "d2",
        "context": "Ben had a cup.",
        "question": "He drank from the ___.",
        "choices": ["cup", "box"],
        "answer": 0,
    },
]
RECORD_CHOICE_LINES = "A. ball\nB. dog\nC. tree\nD. cake"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/torch_threads.py


@pytest.fixture(scope="module")
def tokenizer():
    return bundled_tokenizer()


def tiny_backbone(seed: int = 0, vocab_size: int = VOCAB, context_length: int = CONTEXT) -> torch.nn.Module:
    return pinned_lm("llama", vocab_size, context_length, D_MODEL, NUM_LAYERS, NUM_HEADS, D_FF, seed)


def multiple_choice_model(pooling: Pooling = "last", seed: int = 0, freeze_backbone: bool = False) -> torch.nn.Module:
    backbone = tiny_backbone(seed)
    torch.manual_seed(seed + 100)
    model = adapters.TransformerForMultipleChoice(
        backbone, D_MODEL, num_choices=4, pooling=pooling, freeze_backbone=freeze_backbone
    )
    pin_weights(model.classifier, seed + 100)  # the backbone's are set already
    return model.eval()


@pytest.fixture(scope="module")
def language_model(tokenizer):
    """A tiny random LM over the bundled tokenizer's vocabulary, for the prompting tests."""
    return tiny_backbone(seed=3, vocab_size=tokenizer.vocab_size, context_length=64)


def choice_text(record: dict, choice: str) -> str:
    return f"{record['context']}\n\nQuestion: {record['question']}\n\nAnswer: {choice}"


def check_endswith(text: str, suffix: str) -> None:
    """``text`` ends with ``suffix``. Graded: the end of ``text``, against the reference's."""
    check_equal(text[max(0, len(text) - len(suffix)) :], suffix, message=f"{text!r} does not end with {suffix!r}")


# ---------------------------------------------------------------------------------------------
# PretrainingDataset
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story_file(tmp_path_factory):
    """Two TinyStories stories (a few hundred tokens) in a text file."""
    text = EOT.join((DATA / "valid.txt").read_text(encoding="utf-8").split(EOT)[:2])
    path = tmp_path_factory.mktemp("pretraining") / "stories.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_pretraining_windows_are_consecutive_and_labels_shifted_by_one(tokenizer, story_file):
    """Window i is tokens [i*L, i*L+L) with labels one token later; the count drops the partial tail."""
    tokens = tokenizer.encode(story_file.read_text(encoding="utf-8"))
    dataset = adapters.PretrainingDataset(story_file, tokenizer, max_length=16)
    check_equal(len(dataset), (len(tokens) - 17) // 16 + 1)
    assert len(dataset) > 5  # a guard on the test's input (the length is checked above)
    for index in range(len(dataset)):
        item = dataset[index]
        check_equal(sorted(item), ["input_ids", "labels"])
        check_equal((item["input_ids"].dtype, item["labels"].dtype), (torch.long, torch.long))
        check_equal(item["input_ids"].tolist(), tokens[16 * index : 16 * index + 16])
        check_equal(item["labels"].tolist(), tokens[16 * index + 1 : 16 * index + 17])


def test_pretraining_stride_overlaps_windows(tokenizer, story_file):
    """With stride 5 window i starts at token 5i; consecutive windows share max_length - 5 tokens."""
    tokens = tokenizer.encode(story_file.read_text(encoding="utf-8"))
    dataset = adapters.PretrainingDataset(str(story_file), tokenizer, max_length=16, stride=5)
    check_equal(len(dataset), (len(tokens) - 17) // 5 + 1)
    for index in range(len(dataset)):
        check_equal(dataset[index]["input_ids"].tolist(), tokens[5 * index : 5 * index + 16])
        check_equal(dataset[index]["labels"].tolist(), tokens[5 * index + 1 : 5 * index + 17])
    shapes = [(tuple(dataset[i]["input_ids"].shape), tuple(dataset[i]["labels"].shape)) for i in range(len(dataset))]
    check_equal(shapes, [((16,), (16,))] * len(dataset))
    check_equal(dataset[1]["input_ids"][:11], dataset[0]["input_ids"][5:])
    check_equal(len(adapters.PretrainingDataset(story_file, tokenizer, max_length=16, stride=1)), len(tokens) - 16)
    # The last window ends inside the file, and one more would not fit:
    # 5 * last + 17 <= len(tokens) < 5 * (last + 1) + 17.
    last = len(dataset) - 1
    check_equal(last, (len(tokens) - 17) // 5)


def test_pretraining_dataset_errors_and_boundaries(tokenizer, story_file, monkeypatch):
    """Exactly max_length + 1 tokens make one window; one token less is a ValueError; indices
    outside [0, len) are IndexErrors; a missing file is a FileNotFoundError."""
    # Relative paths: the error messages (recorded while grading) name no temporary directory.
    monkeypatch.chdir(story_file.parent)
    stories = Path(story_file.name)
    tokens = tokenizer.encode(stories.read_text(encoding="utf-8"))
    whole = adapters.PretrainingDataset(stories, tokenizer, max_length=len(tokens) - 1)
    check_equal(len(whole), 1)
    check_equal(whole[0]["input_ids"].tolist(), tokens[:-1])
    check_equal(whole[0]["labels"].tolist(), tokens[1:])
    with pytest.raises(ValueError):
        adapters.PretrainingDataset(stories, tokenizer, max_length=len(tokens))
    dataset = adapters.PretrainingDataset(stories, tokenizer, max_length=16)
    for index in (len(dataset), len(dataset) + 3, -1):
        with pytest.raises(IndexError):
            dataset[index]
    with pytest.raises(FileNotFoundError):
        adapters.PretrainingDataset(Path("missing.txt"), tokenizer, max_length=16)


def test_pretraining_reads_the_file_as_it_is(tokenizer, tmp_path):
    """The file's text byte for byte: "\\r\\n" line ends stay (no newline translation), and the
    <|endoftext|> between stories is its special id."""
    text = "Tom ran.\r\nHe was happy.\r\n" + EOT + "\r\nSue sat down.\r\nShe was tired.\r\n"
    tokens = tokenizer.encode(text)
    # Guards on the test's input: "\r\n" tokenizes otherwise than "\n", and EOT is one special id.
    assert tokens != tokenizer.encode(text.replace("\r\n", "\n"))
    assert tokenizer.encode(EOT) == [tokenizer.special_token_ids[EOT]]
    dataset = adapters.PretrainingDataset(write_utf8(tmp_path / "crlf.txt", text), tokenizer, max_length=4, stride=3)
    check_equal(len(dataset), (len(tokens) - 5) // 3 + 1)
    windows = [
        dataset[index]["input_ids"].tolist() + dataset[index]["labels"].tolist()[-1:] for index in range(len(dataset))
    ]
    check_equal(windows, [tokens[3 * index : 3 * index + 5] for index in range(len(dataset))])


# ---------------------------------------------------------------------------------------------
# MultipleChoiceQADataset
# ---------------------------------------------------------------------------------------------


def test_multiple_choice_item_format_padding_and_label(tokenizer):
    """Each row is "{context}\\n\\nQuestion: {question}\\n\\nAnswer: {choice}" (context and rest encoded
    separately), right-padded with the pad id under a 0 mask; labels is the answer as a scalar."""
    dataset = adapters.MultipleChoiceQADataset([RECORD, RECORD_2], tokenizer, max_length=64)
    check_equal(len(dataset), 2)
    pad = tokenizer.encode(EOT)[0]
    for index, record in enumerate((RECORD, RECORD_2)):
        item = dataset[index]
        check_equal(sorted(item), ["attention_mask", "input_ids", "labels"])
        check_equal((tuple(item["input_ids"].shape), tuple(item["attention_mask"].shape)), ((4, 64), (4, 64)))
        dtypes = (item["input_ids"].dtype, item["attention_mask"].dtype, item["labels"].dtype)
        check_equal(dtypes, (torch.long, torch.long, torch.long))
        check_equal((tuple(item["labels"].shape), item["labels"].item()), ((), record["answer"]))
        for row, choice in enumerate(record["choices"]):
            length = int(item["attention_mask"][row].sum())
            check_equal(item["attention_mask"][row].tolist(), [1] * length + [0] * (64 - length))
            check_equal(item["input_ids"][row, length:].tolist(), [pad] * (64 - length))
            ids = item["input_ids"][row, :length].tolist()
            check_equal(tokenizer.decode(ids), choice_text(record, choice))
            rest = choice_text(record, choice)[len(record["context"]) :]
            check_equal(ids, tokenizer.encode(record["context"]) + tokenizer.encode(rest))


def test_multiple_choice_truncation_cuts_the_context_from_the_left(tokenizer):
    """Too long: tokens go from the start of the context; the question and the choice survive whole."""
    rests = {c: tokenizer.encode(choice_text(RECORD, c)[len(RECORD["context"]) :]) for c in RECORD["choices"]}
    context = tokenizer.encode(RECORD["context"])
    max_length = max(len(r) for r in rests.values()) + 4
    # A guard on the test's input: every row needs a cut.
    assert max_length < len(context) + min(len(r) for r in rests.values())
    item = adapters.MultipleChoiceQADataset([RECORD], tokenizer, max_length=max_length)[0]
    for row, choice in enumerate(RECORD["choices"]):
        check_equal(int(item["attention_mask"][row].sum()), max_length)
        ids = item["input_ids"][row].tolist()
        kept = max_length - len(rests[choice])
        check_equal(ids, context[len(context) - kept :] + rests[choice])
        decoded = tokenizer.decode(ids)
        check_endswith(decoded, f"\n\nQuestion: {RECORD['question']}\n\nAnswer: {choice}")
        whole = choice_text(RECORD, choice)
        check_equal(decoded, whole[max(0, len(whole) - len(decoded)) :], message=f"{whole!r} does not end with it")


def test_multiple_choice_cloze_template_fills_the_blank(tokenizer):
    """With template=CLOZE_TEMPLATE ("{context} {filled}") each row is the context and the question
    with the choice in its blank, cut from the left of the context like any template; a template
    that does not start with {context} is a ValueError."""
    dataset = adapters.MultipleChoiceQADataset([RECORD], tokenizer, max_length=64, template=adapters.CLOZE_TEMPLATE)
    item = dataset[0]
    for row, choice in enumerate(RECORD["choices"]):
        length = int(item["attention_mask"][row].sum())
        rest = " " + RECORD["question"].replace("___", choice)
        check_equal(
            item["input_ids"][row, :length].tolist(), tokenizer.encode(RECORD["context"]) + tokenizer.encode(rest)
        )
    rest_length = len(tokenizer.encode(" " + RECORD["question"].replace("___", RECORD["choices"][0])))
    short = adapters.MultipleChoiceQADataset(
        [RECORD], tokenizer, max_length=rest_length + 2, template=adapters.CLOZE_TEMPLATE
    )
    kept = short[0]["input_ids"][0].tolist()
    check_equal(tokenizer.decode(kept).endswith(RECORD["question"].replace("___", RECORD["choices"][0])), True)
    custom = adapters.MultipleChoiceQADataset(
        [RECORD], tokenizer, max_length=64, template="{context}|{choice}|{question}"
    )
    length = int(custom[0]["attention_mask"][1].sum())
    check_equal(
        tokenizer.decode(custom[0]["input_ids"][1, :length].tolist()),
        f"{RECORD['context']}|{RECORD['choices'][1]}|{RECORD['question']}",
    )
    with pytest.raises(ValueError, match="must start with"):
        adapters.MultipleChoiceQADataset([RECORD], tokenizer, template="Question: {question} {context}")


def test_multiple_choice_template_rest_repeats_and_unknown_fields(tokenizer):
    """The rest is the filled-in template after the leading context, a second {context} included: it
    is encoded whole and never cut. No special token is added; an empty context leaves the rest
    alone and an empty choice is filled in as ""; a field other than context, question, choice and
    filled is a ValueError naming it."""
    template = "{context}\nAgain: {context}\nA: {choice}"
    rests = {c: tokenizer.encode(f"\nAgain: {RECORD['context']}\nA: {c}") for c in RECORD["choices"]}
    context = tokenizer.encode(RECORD["context"])
    max_length = max(len(rest) for rest in rests.values()) + 3
    assert max_length < len(context) + min(len(rest) for rest in rests.values())  # a guard: every row is cut
    item = adapters.MultipleChoiceQADataset([RECORD], tokenizer, max_length=max_length, template=template)[0]
    for row, choice in enumerate(RECORD["choices"]):
        ids = item["input_ids"][row, : int(item["attention_mask"][row].sum())].tolist()
        check_equal(ids, context[len(context) - (max_length - len(rests[choice])) :] + rests[choice])
    record = {**RECORD, "context": "", "choices": ["", "dog", "tree", "cake"]}
    item = adapters.MultipleChoiceQADataset([record], tokenizer, max_length=64)[0]
    first = item["input_ids"][0, : int(item["attention_mask"][0].sum())].tolist()
    check_equal(first, tokenizer.encode(f"\n\nQuestion: {RECORD['question']}\n\nAnswer: "))
    for field in ("answer", ""):
        with pytest.raises(ValueError, match=f"{{{field}}}"):
            adapters.MultipleChoiceQADataset([RECORD], tokenizer, template="{context} {question} {" + field + "}")


def test_multiple_choice_question_that_cannot_fit_is_cut_from_the_left(tokenizer):
    """If the question and a choice alone exceed max_length, the context goes and the rest loses its
    first tokens: the row is the last max_length tokens, ending with the choice."""
    rests = {c: tokenizer.encode(choice_text(RECORD, c)[len(RECORD["context"]) :]) for c in RECORD["choices"]}
    max_length = min(len(rest) for rest in rests.values()) - 3
    item = adapters.MultipleChoiceQADataset([RECORD], tokenizer, max_length=max_length)[0]
    check_equal(item["attention_mask"].tolist(), [[1] * max_length] * 4)
    for row, choice in enumerate(RECORD["choices"]):
        ids = item["input_ids"][row].tolist()
        check_equal(ids, rests[choice][-max_length:])
        check_endswith(tokenizer.decode(ids), f"Answer: {choice}")
    with pytest.raises(ValueError, match="max_length"):
        adapters.MultipleChoiceQADataset([RECORD], tokenizer, max_length=0)


def test_multiple_choice_course_example_with_a_byte_tokenizer():
    """The course's example: a byte-level tokenizer with no merges, max_length 32 and 4 choices give
    input_ids and attention_mask of shape (4, 32) and labels 0; each row is the last 32 bytes."""
    record = {
        "context": "The cat sat on the mat.",
        "question": "Where did the cat sit?",
        "choices": ["On the mat", "On the chair", "On the bed", "On the floor"],
        "answer": 0,
    }
    byte_tokenizer = adapters.get_tokenizer({i: bytes([i]) for i in range(256)}, [])
    dataset = adapters.MultipleChoiceQADataset(data=[record], tokenizer=byte_tokenizer, max_length=32, num_choices=4)
    item = dataset[0]
    shapes = (tuple(item["input_ids"].shape), tuple(item["attention_mask"].shape))
    check_equal(shapes, ((4, 32), (4, 32)))
    check_equal(item["labels"].item(), 0)
    check_equal(item["attention_mask"].tolist(), [[1] * 32] * 4)
    for row, choice in enumerate(record["choices"]):
        check_equal(item["input_ids"][row].tolist(), list(choice_text(record, choice).encode("utf-8"))[-32:])


def test_multiple_choice_from_json_on_the_shipped_files(tokenizer):
    """from_json reads data/qa/dev.json (labels = answers) and the test questions (labels = -1)."""
    records = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))
    dataset = adapters.MultipleChoiceQADataset.from_json(QA_DIR / "dev.json", tokenizer, max_length=256)
    check_equal(len(dataset), len(records))
    for index in (0, len(records) - 1):
        item, record = dataset[index], records[index]
        check_equal(item["labels"].item(), record["answer"])
        row = record["answer"]
        length = int(item["attention_mask"][row].sum())
        decoded = tokenizer.decode(item["input_ids"][row, :length].tolist())
        check_endswith(decoded, f"Question: {record['question']}\n\nAnswer: {record['choices'][row]}")
    test = adapters.MultipleChoiceQADataset.from_json(QA_DIR / "test_questions.json", tokenizer, max_length=256)
    check_equal(test[0]["labels"].item(), -1)


def test_multiple_choice_answers_are_indices_or_none(tokenizer, tmp_path):
    """labels is the record's answer index; no answer (key missing or None) is NO_ANSWER = -1; a
    letter, a choice's text or an index out of range is a ValueError naming the question, while
    from_json turns letters and texts into indices."""
    missing = {key: value for key, value in RECORD.items() if key != "answer"}
    records = [RECORD, RECORD_2, missing, {**RECORD, "answer": None}, {**RECORD, "answer": 3}]
    dataset = adapters.MultipleChoiceQADataset(records, tokenizer, max_length=40)
    check_equal([dataset[index]["labels"].item() for index in range(5)], [0, 2, -1, -1, 3])
    check_equal(dataset[2]["input_ids"], dataset[0]["input_ids"])  # the answer never changes the rows
    for answer in ("A", "ball", 4, -1, True):
        with pytest.raises(ValueError, match="toy-1"):
            adapters.MultipleChoiceQADataset([{**RECORD, "answer": answer}], tokenizer, max_length=40)
    lettered = [{**RECORD, "answer": "B"}, {**RECORD_2, "answer": "tree"}, missing]
    path = tmp_path / "lettered.json"
    path.write_text(json.dumps(lettered), encoding="utf-8")
    from_file = adapters.MultipleChoiceQADataset.from_json(path, tokenizer, max_length=40)
    check_equal([from_file[index]["labels"].item() for index in range(3)], [1, 3, -1])


def test_multiple_choice_filled_needs_exactly_one_blank(tokenizer):
    """A template with {filled} needs one blank in every question: none or two is a ValueError naming
    the question; templates without {filled} take any question."""
    no_blank = {**RECORD, "id": "no-blank", "question": "Sue caught it with both hands."}
    two_blanks = {**RECORD, "id": "two-blanks", "question": "Sue caught the ___ and the ___."}
    for record in (no_blank, two_blanks):
        with pytest.raises(ValueError, match=f"{record['id']}.*blank"):
            adapters.MultipleChoiceQADataset([record], tokenizer, max_length=64, template=adapters.CLOZE_TEMPLATE)
    dataset = adapters.MultipleChoiceQADataset([no_blank, two_blanks], tokenizer, max_length=64)
    for index, record in enumerate((no_blank, two_blanks)):
        length = int(dataset[index]["attention_mask"][1].sum())
        check_equal(tokenizer.decode(dataset[index]["input_ids"][1, :length].tolist()), choice_text(record, "dog"))


def test_multiple_choice_num_choices(tokenizer):
    """num_choices sets the rows of an item; a record with another number of choices is a ValueError."""
    three = {**RECORD, "choices": ["ball", "dog", "tree"]}
    item = adapters.MultipleChoiceQADataset([three], tokenizer, max_length=40, num_choices=3)[0]
    check_equal((tuple(item["input_ids"].shape), tuple(item["attention_mask"].shape)), ((3, 40), (3, 40)))
    with pytest.raises(ValueError, match="toy-1"):
        adapters.MultipleChoiceQADataset([three], tokenizer, max_length=40, num_choices=4)


def test_multiple_choice_collate_trims_shared_padding(tokenizer):
    """collate_multiple_choice stacks items and keeps only the columns some sequence uses."""
    dataset = adapters.MultipleChoiceQADataset([RECORD, RECORD_2], tokenizer, max_length=80)
    batch = adapters.collate_multiple_choice([dataset[0], dataset[1]])
    longest = max(int(dataset[i]["attention_mask"].sum(-1).max()) for i in range(2))
    shapes = (tuple(batch["input_ids"].shape), tuple(batch["attention_mask"].shape))
    check_equal(shapes, ((2, 4, longest), (2, 4, longest)))
    check_equal(batch["labels"].tolist(), [0, 2])
    check_equal(batch["input_ids"][1], dataset[1]["input_ids"][:, :longest])


# ---------------------------------------------------------------------------------------------
# Pooling and the multiple-choice model
# ---------------------------------------------------------------------------------------------

# Three sequences of 4 positions, 2 features; padded positions hold 100 so that using them shows.
HIDDEN = torch.tensor(
    [
        [[1.0, -2.0], [3.0, -6.0], [-5.0, 4.0], [100.0, 100.0]],
        [[-1.0, -3.0], [-7.0, -4.0], [100.0, 100.0], [100.0, 100.0]],
        [[0.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [2.0, -2.0]],
    ]
)
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
POOLED = {
    "last": [[-5.0, 4.0], [-7.0, -4.0], [2.0, -2.0]],
    "mean": [[-1 / 3, -4 / 3], [-4.0, -3.5], [0.25, -0.25]],
    "max": [[3.0, 4.0], [-1.0, -3.0], [2.0, 1.0]],
}


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pool_hidden_states_by_hand(pooling):
    """last / mean / max over the real positions only, on values computed by hand."""
    pooled = adapters.run_pool_hidden_states(HIDDEN, MASK, pooling)
    check_equal(tuple(pooled.shape), (3, 2))
    check_close(pooled, torch.tensor(POOLED[pooling]))
    # Negative hidden states everywhere: max must not pick up a padded zero either.
    shifted = adapters.run_pool_hidden_states(HIDDEN - 1000.0, MASK, pooling)
    check_close(shifted, torch.tensor(POOLED[pooling]) - 1000.0)


def test_pool_hidden_states_unknown_pooling_is_a_value_error():
    """Only last, mean and max exist, for the function and for the model."""
    check_equal(tuple(adapters.run_pool_hidden_states(HIDDEN, MASK, "last").shape), (3, 2))
    with pytest.raises(ValueError, match="median"):
        adapters.run_pool_hidden_states(HIDDEN, MASK, "median")


def test_pool_hidden_states_gives_zeros_for_a_row_of_only_padding():
    """A row whose mask is all 0 pools to zeros for every pooling (none of its padding leaks in);
    the other rows pool as they do alone."""
    empty = MASK.clone()
    empty[1] = 0
    for pooling in POOLINGS:
        pooled = adapters.run_pool_hidden_states(HIDDEN - 1000.0, empty, pooling)
        expected = torch.tensor(POOLED[pooling]) - 1000.0
        expected[1] = 0.0
        check_close(pooled, expected)
        check_close(pooled, reference_pool(HIDDEN - 1000.0, empty, pooling).float())


def test_pool_hidden_states_mask_dtypes_holes_and_bfloat16_mean():
    """Any mask dtype (nonzero = real); "last" is the position of the last 1 even when the mask has
    holes (not mask.sum() - 1); a bfloat16 mean is summed in float32 and rounded once."""
    for pooling in POOLINGS:
        pooled = adapters.run_pool_hidden_states(HIDDEN, MASK, pooling)
        check_equal(adapters.run_pool_hidden_states(HIDDEN, MASK.bool(), pooling), pooled)
        check_equal(adapters.run_pool_hidden_states(HIDDEN, MASK.float(), pooling), pooled)
    holes = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1]])
    last = adapters.run_pool_hidden_states(HIDDEN, holes, "last")
    check_equal(last, torch.stack([HIDDEN[0, 2], HIDDEN[1, 1], HIDDEN[2, 3]]), message="the last 1, not mask.sum() - 1")
    mean = torch.tensor([[-2.0, 1.0], [-7.0, -4.0], [1.0, -1.0]])
    check_close(adapters.run_pool_hidden_states(HIDDEN, holes, "mean"), mean)
    hidden = torch.tensor([[[0.0, 3.0], [1.1328125, 0.0], [2.1875, 0.0]]], dtype=torch.bfloat16)
    mean = adapters.run_pool_hidden_states(hidden, torch.ones(1, 3, dtype=torch.long), "mean")
    check_equal(mean.dtype, torch.bfloat16)
    expected = (hidden.float().sum(dim=1) / 3).bfloat16()
    # A guard on the test's input: rounding the sum to bfloat16 first gives another mean.
    assert not torch.equal(expected, hidden.sum(dim=1) / 3)
    check_equal(mean, expected, message="sum in float32, divide, then cast to bfloat16 once")


def test_multiple_choice_model_in_bfloat16_gives_bfloat16_logits():
    """forward casts nothing: the whole model moved to bfloat16 gives bfloat16 logits, the head on
    the pooled bfloat16 hidden states."""
    model = multiple_choice_model("mean").to(torch.bfloat16)
    ids, mask = example([5, 3, 7, 4], seed=9)
    logits = model(ids[None], mask[None])
    check_equal(logits.dtype, torch.bfloat16)
    with torch.no_grad():
        pooled = reference_pool(model.transformer_lm.hidden_states(ids).float(), mask, "mean")
        expected = pooled.float() @ model.classifier.weight.float().T
    check_close(logits.float(), expected.reshape(1, 4), atol=0.05, rtol=0.05)


def example(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One question: ``len(lengths)`` choices of random tokens, padded to ``max(lengths)``."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (len(lengths), max(lengths)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return ids * mask, mask


def padded(ids: torch.Tensor, mask: torch.Tensor, length: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    extra = length - ids.shape[-1]
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    return (
        torch.nn.functional.pad(ids, (0, extra), value=pad_id),
        torch.nn.functional.pad(mask, (0, extra), value=0),
    )


@pytest.mark.parametrize("pooling", POOLINGS)
@torch.no_grad()
def test_multiple_choice_logits_are_the_head_on_pooled_hidden_states(pooling):
    """logits (batch, choices) = classifier(pool(backbone.hidden_states(each choice))), mask-aware."""
    model = multiple_choice_model(pooling)
    first, second = example([7, 5, 3, 6], seed=1), example([4, 7, 7, 2], seed=2)
    ids = torch.stack([first[0], second[0]])
    mask = torch.stack([first[1], second[1]])
    logits = model(ids, mask)
    check_equal(tuple(logits.shape), (2, 4))
    hidden = model.transformer_lm.hidden_states(ids.reshape(8, 7))
    expected = model.classifier(reference_pool(hidden, mask.reshape(8, 7), pooling).float()).reshape(2, 4)
    check_close(logits, expected, atol=1e-5, rtol=1e-5)
    # Without a mask every position is real.
    full = model(ids)
    every_position = torch.ones(8, 7, dtype=torch.long)
    expected_full = model.classifier(reference_pool(hidden, every_position, pooling).float()).reshape(2, 4)
    check_close(full, expected_full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
@torch.no_grad()
def test_a_mask_of_some_real_positions_only_chooses_what_is_pooled(pooling):
    """A mask that marks a span of each row's real tokens (as the given fine-tuning loop passes):
    the backbone still reads every row whole, and only the span is pooled."""
    model = multiple_choice_model(pooling)
    ids, real = example([7, 5, 3, 6], seed=3)
    span = real.clone()
    span[:, :2] = 0  # each row's first two tokens are read but not pooled
    logits = model(ids[None], span[None])
    hidden = model.transformer_lm.hidden_states(ids)
    reduce = {"last": lambda rows: rows[-1], "mean": lambda rows: rows.mean(0), "max": lambda rows: rows.amax(0)}
    pooled = torch.stack([reduce[pooling](hidden[row, span[row].bool()]) for row in range(4)])
    check_close(logits, model.classifier(pooled).reshape(1, 4), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
@torch.no_grad()
def test_padding_never_changes_the_logits(pooling):
    """The same question right-padded to 6, 9 or 30 tokens (pad id 0 or 17), alone or next to a
    longer question, gets the same logits."""
    model = multiple_choice_model(pooling)
    ids, mask = example([6, 4, 2, 5], seed=5)
    reference = model(ids[None], mask[None])[0]
    other_ids, other_mask = example([9, 9, 3, 8], seed=6)
    for length in (6, 9, 30):
        for pad_id in (0, 17):
            padded_ids, padded_mask = padded(ids, mask, length, pad_id)
            check_close(model(padded_ids[None], padded_mask[None])[0], reference, atol=1e-5, rtol=1e-5)
    batch_ids = torch.stack([padded(other_ids, other_mask, 9)[0], padded(ids, mask, 9)[0]])
    batch_mask = torch.stack([other_mask, padded(ids, mask, 9)[1]])
    check_close(model(batch_ids, batch_mask)[1], reference, atol=1e-5, rtol=1e-5)


def test_freeze_backbone_trains_only_the_head():
    """With freeze_backbone the LM's parameters do not require gradients and a training step
    changes only the classifier; without it the backbone trains too."""
    ids, mask = example([6, 4, 2, 5], seed=7)
    labels = torch.tensor([2])
    for freeze in (True, False):
        model = multiple_choice_model("mean", freeze_backbone=freeze).train()
        backbone = {name: p.detach().clone() for name, p in model.transformer_lm.named_parameters()}
        head = {name: p.detach().clone() for name, p in model.classifier.named_parameters()}
        backbone_grads = [p.requires_grad for p in model.transformer_lm.parameters()]
        check_equal(backbone_grads, [not freeze] * len(backbone_grads))
        head_grads = [p.requires_grad for p in model.classifier.parameters()]
        check_equal(head_grads, [True] * len(head_grads))
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        logits = model(ids[None], mask[None])
        with torch.no_grad():
            pooled = reference_pool(model.transformer_lm.hidden_states(ids), mask, "mean").float()
            check_close(logits, model.classifier(pooled).reshape(1, 4), atol=1e-5, rtol=1e-5)  # in train mode too
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        after = dict(model.transformer_lm.named_parameters())
        backbone_changed = any(not torch.equal(after[name], value) for name, value in backbone.items())
        check_equal(backbone_changed, not freeze)
        head_changed = any(not torch.equal(p, head[name]) for name, p in model.classifier.named_parameters())
        check_equal(head_changed, True)


@torch.no_grad()
def test_predict_and_predict_probs_agree_with_the_logits():
    """predict_probs is a softmax over choices (rows sum to 1); predict is its argmax."""
    model = multiple_choice_model("last")
    questions = [example([5, 3, 6, 2], seed=s) for s in range(8, 13)]
    ids = torch.stack([padded(i, m, 6)[0] for i, m in questions])
    mask = torch.stack([padded(i, m, 6)[1] for i, m in questions])
    logits = model(ids, mask)
    probs = model.predict_probs(ids, mask)
    check_close(probs, torch.softmax(logits, dim=-1))
    check_close(probs.sum(-1), torch.ones(5))
    check_equal(model.predict(ids, mask).tolist(), logits.argmax(-1).tolist())
    check_equal(probs.argmax(-1).tolist(), logits.argmax(-1).tolist())


# ---------------------------------------------------------------------------------------------
# Prompt templates
# ---------------------------------------------------------------------------------------------


def test_template_basic_and_choice_formats():
    """basic: context, question, the choices one per line ("A. ball" or "1. ball"), then "Answer:"."""
    letter = adapters.PromptTemplate("basic")
    check_equal(letter.format_choices(["ball", "dog"]), "A. ball\nB. dog")
    check_equal(
        letter.format(RECORD),
        (
            "Tom had a red ball. He threw the ball to Sue.\n\nQuestion: Sue caught the ___ with both hands.\n\n"
            f"Choices:\n{RECORD_CHOICE_LINES}\n\nAnswer:"
        ),
    )
    number = adapters.PromptTemplate("basic", choice_format="number")
    check_equal(number.format_choices(RECORD["choices"]), "1. ball\n2. dog\n3. tree\n4. cake")
    check_endswith(number.format(RECORD), "Choices:\n1. ball\n2. dog\n3. tree\n4. cake\n\nAnswer:")


def test_template_instruction_and_cloze():
    """instruction wraps the question in a task description; cloze stops at the blank."""
    instruction = adapters.PromptTemplate("instruction")
    check_equal(
        instruction.format(RECORD),
        (
            "Read the story and choose the word that fills the blank.\n\n"
            "Story: Tom had a red ball. He threw the ball to Sue.\n\n"
            "Sentence: Sue caught the ___ with both hands.\n\n"
            f"Options:\n{RECORD_CHOICE_LINES}\n\nThe missing word is"
        ),
    )
    cloze = adapters.PromptTemplate("cloze")
    check_equal(cloze.format(RECORD), "Tom had a red ball. He threw the ball to Sue. Sue caught the")
    check_equal(cloze.format(RECORD_2), "Lily went to the park with her dog. The dog ran after a stick. Lily threw the")


def test_template_few_shot_demonstrations():
    """few_shot: each demonstration in the basic layout followed by " {label}. {answer}" and a
    blank line, then the question in the basic layout."""
    template = adapters.PromptTemplate("few_shot", demonstrations=DEMOS)
    check_equal(
        template.format(RECORD),
        (
            "Ann saw a cat.\n\nQuestion: The ___ was black.\n\n"
            "Choices:\nA. hat\nB. mat\nC. cat\nD. bat\n\nAnswer: C. cat\n\n"
            "Ben had a cup.\n\nQuestion: He drank from the ___.\n\nChoices:\nA. cup\nB. box\n\nAnswer: A. cup\n\n"
            "Tom had a red ball. He threw the ball to Sue.\n\nQuestion: Sue caught the ___ with both hands.\n\n"
            f"Choices:\n{RECORD_CHOICE_LINES}\n\nAnswer:"
        ),
    )
    check_equal(adapters.PromptTemplate("few_shot").format(RECORD), adapters.PromptTemplate("basic").format(RECORD))


def test_template_format_takes_keywords():
    """The course's form: format(context=..., question=..., choices=[...]) lists the choices as
    "A. Red", ...; it gives what format(record) gives, and a record with keywords is a TypeError."""
    template = adapters.PromptTemplate(template_name="basic")
    prompt = template.format(
        context="The sky is blue.", question="What color is the sky?", choices=["Red", "Blue", "Green", "Yellow"]
    )
    check_equal(
        prompt,
        (
            "The sky is blue.\n\nQuestion: What color is the sky?\n\n"
            "Choices:\nA. Red\nB. Blue\nC. Green\nD. Yellow\n\nAnswer:"
        ),
    )
    lines = ["A. Red", "B. Blue", "C. Green", "D. Yellow"]
    check_equal([line for line in lines if line in prompt.split("\n")], lines)
    keywords = {key: RECORD[key] for key in ("context", "question", "choices")}
    check_equal(template.format(**keywords), template.format(RECORD))
    with pytest.raises(TypeError):
        template.format(RECORD, context="The sky is blue.")


def test_template_custom_choices_formatted():
    """The course's field {choices_formatted} is the listed choices, like {choices}."""
    template = adapters.PromptTemplate(custom_template="{context}\n{question}\n{choices_formatted}")
    check_equal(template.format(RECORD), f"{RECORD['context']}\n{RECORD['question']}\n{RECORD_CHOICE_LINES}")
    both = adapters.PromptTemplate(custom_template="{choices_formatted}|{choices}", choice_format="number")
    check_equal(both.format(RECORD_2), "1. park\n2. dog\n3. stick\n4. tree|1. park\n2. dog\n3. stick\n4. tree")


def test_template_custom_and_unknown():
    """custom_template fills any of the fields; a custom cloze template scores the rest of the
    sentence; an unknown template name is a ValueError."""
    custom = adapters.PromptTemplate(custom_template="[{context}] {question_before_blank}|{choices}|{question}")
    check_equal(
        custom.format(RECORD),
        (f"[{RECORD['context']}] Sue caught the|{RECORD_CHOICE_LINES}|Sue caught the ___ with both hands."),
    )
    check_equal(custom.continuation(RECORD, 1), " dog with both hands.")
    plain = adapters.PromptTemplate(custom_template="Q: {question}\n{choices}\nA:", choice_format="number")
    check_equal(plain.format(RECORD_2), "Q: Lily threw the ___.\n1. park\n2. dog\n3. stick\n4. tree\nA:")
    check_equal(plain.continuation(RECORD_2, 2), " stick")
    with pytest.raises(ValueError, match="fancy"):
        adapters.PromptTemplate("fancy")


def test_template_choice_lines_verbatim_fields_and_unknown_fields():
    """format_choices has no newline after the last line and gives "" for no choices; context and
    question are copied verbatim, trailing whitespace included; an unknown field of a custom
    template is a ValueError naming it."""
    basic = adapters.PromptTemplate("basic")
    check_equal(basic.format_choices([]), "")
    check_equal(basic.format_choices(["ball"]), "A. ball")
    record = {**RECORD, "context": "Tom ran.  ", "question": "Who ran? \t"}
    lines = RECORD_CHOICE_LINES
    check_equal(basic.format(record), f"Tom ran.  \n\nQuestion: Who ran? \t\n\nChoices:\n{lines}\n\nAnswer:")
    custom = adapters.PromptTemplate(custom_template="{question}|{choices}|")
    check_equal(custom.format({**RECORD, "choices": []}), f"{RECORD['question']}||")
    for field in ("answer", ""):
        with pytest.raises(ValueError, match=f"{{{field}}}"):
            adapters.PromptTemplate(custom_template="{context} {" + field + "}")


def test_continuation_puts_the_choice_in_the_blank():
    """Listed templates score " {choice}"; cloze scores the choice and the rest of the sentence."""
    for name in ("basic", "instruction", "few_shot"):
        template = adapters.PromptTemplate(name)
        check_equal([template.continuation(RECORD, i) for i in range(4)], [" ball", " dog", " tree", " cake"])
    cloze = adapters.PromptTemplate("cloze")
    check_equal(cloze.continuation(RECORD, 2), " tree with both hands.")
    check_equal(cloze.continuation(RECORD_2, 0), " park.")
    rebuilt = cloze.format(RECORD) + cloze.continuation(RECORD, 0)
    check_equal(rebuilt, f"{RECORD['context']} Sue caught the ball with both hands.")


def test_template_cloze_strips_only_the_end_of_the_prompt():
    """A cloze prompt is the filled-in template without the whitespace at its end; whitespace inside
    it stays. When the blank starts the question the prompt ends with the context, and the space
    goes to the continuation."""
    cloze = adapters.PromptTemplate("cloze")
    first = {**RECORD, "context": "Tom had a dog.\n\nThe dog was big.\n", "question": "___ ran away."}
    check_equal(cloze.format(first), "Tom had a dog.\n\nThe dog was big.")
    check_equal(cloze.continuation(first, 1), " dog ran away.")
    custom = adapters.PromptTemplate(custom_template="  {context}\n{question_before_blank}\n\n")
    check_equal(custom.format(RECORD), f"  {RECORD['context']}\nSue caught the")
    check_equal(adapters.PromptTemplate("basic").format({**RECORD, "context": "Tom ran. "})[:10], "Tom ran. \n")


def test_continuation_space_for_any_whitespace_before_the_blank():
    """Any whitespace before the blank (a newline, a tab, two spaces) gives the continuation one
    leading space, as a space does; no whitespace gives none."""
    cloze = adapters.PromptTemplate("cloze")
    cases = {
        "Tom said:\n___ came.": ("Tom said:", " ball came."),
        "Sue caught the\t___ fast.": ("Sue caught the", " ball fast."),
        "Sue caught the  ___.": ("Sue caught the", " ball."),
        'It was a "___".': ('It was a "', 'ball".'),
    }
    for question, (prompt_end, continuation) in cases.items():
        record = {**RECORD, "question": question}
        check_equal(cloze.format(record), f"{RECORD['context']} {prompt_end}")
        check_equal(cloze.continuation(record, 0), continuation)
        check_equal(cloze.continuation(record, 3), continuation.replace("ball", "cake", 1))


def test_cloze_template_needs_exactly_one_blank():
    """For a cloze template a question with no blank or with two is a ValueError (format and
    continuation); listed templates take any question."""
    no_blank = {**RECORD, "question": "Sue caught it with both hands."}
    two_blanks = {**RECORD, "question": "Sue caught the ___ and the ___."}
    cloze = adapters.PromptTemplate("cloze")
    for record in (no_blank, two_blanks):
        with pytest.raises(ValueError, match="blank"):
            cloze.format(record)
        with pytest.raises(ValueError, match="blank"):
            cloze.continuation(record, 0)
    basic = adapters.PromptTemplate("basic")
    check_endswith(
        basic.format(no_blank), f"Question: {no_blank['question']}\n\nChoices:\n{RECORD_CHOICE_LINES}\n\nAnswer:"
    )
    check_equal(basic.continuation(two_blanks, 3), " cake")


# ---------------------------------------------------------------------------------------------
# The prompting pipeline
# ---------------------------------------------------------------------------------------------


def test_continuation_log_probs_equal_the_model_forward(tokenizer, language_model):
    """One log-probability per continuation token, read at the position before it; pairs of
    different lengths share one padded batch without changing the result. Prompt and continuation
    are encoded separately ("Hi " + "there" is not encoded as "Hi there")."""
    pipeline = adapters.PromptingPipeline(language_model, tokenizer)
    prompts = ["Once upon a time", "Tom had a red ball. He threw the ball to Sue. Sue caught the", "Hi", "Hi "]
    continuations = [" there was a little cat", " ball.", "!", "there"]
    # A guard on the test's input (the tokenizer is Part 1's).
    assert tokenizer.encode("Hi ") + tokenizer.encode("there") != tokenizer.encode("Hi there")
    results = pipeline.continuation_log_probs(prompts, continuations)
    check_equal(len(results), 4)
    for prompt, continuation, result in zip(prompts, continuations, results, strict=True):
        expected = reference_log_probs(language_model, tokenizer, prompt, continuation)
        check_equal(tuple(result.shape), (len(tokenizer.encode(continuation)),))
        check_close(result.double(), expected, atol=1e-5, rtol=1e-5)
        check_equal(bool((result <= 0).all()), True)  # the values themselves are recorded just above


def test_continuation_log_probs_refuse_a_prompt_of_no_token(tokenizer, language_model):
    """The first continuation token is read from the prompt's last token: an empty prompt is a
    ValueError; a one-token prompt works."""
    pipeline = adapters.PromptingPipeline(language_model, tokenizer)
    with pytest.raises(ValueError, match="prompt"):
        pipeline.continuation_log_probs(["Once upon a time", ""], [" there", " there"])
    result = pipeline.continuation_log_probs(["Once"], [" upon a time"])[0]
    assert len(tokenizer.encode("Once")) == 1  # a guard on the test's input
    check_close(
        result.double(), reference_log_probs(language_model, tokenizer, "Once", " upon a time"), atol=1e-5, rtol=1e-5
    )


def test_continuation_log_probs_no_pairs_mismatched_lists_and_bfloat16(tokenizer):
    """No pairs give []; prompts and continuations of different lengths are a ValueError; a bfloat16
    model's log-softmax is computed in float32 (one pair, so the model reads the very ids the
    reference reads)."""
    model = tiny_backbone(seed=5, vocab_size=tokenizer.vocab_size, context_length=64).to(torch.bfloat16)
    pipeline = adapters.PromptingPipeline(model, tokenizer)
    check_equal(pipeline.continuation_log_probs([], []), [])
    with pytest.raises(ValueError, match="continuations"):
        pipeline.continuation_log_probs(["Once upon a time", "Hi"], [" there"])
    result = pipeline.continuation_log_probs(["Once upon a time"], [" there was a cat"])[0]
    check_equal(result.dtype, torch.float32)
    expected = reference_log_probs(model, tokenizer, "Once upon a time", " there was a cat")
    check_close(result.double(), expected, atol=1e-5, rtol=1e-5)


def test_continuation_log_probs_crop_long_prompts_from_the_left(tokenizer):
    """A prompt longer than the context loses its first tokens; the continuation is kept whole."""
    model = tiny_backbone(seed=4, vocab_size=tokenizer.vocab_size, context_length=16)
    pipeline = adapters.PromptingPipeline(model, tokenizer)
    prompt = (DATA / "valid.txt").read_text(encoding="utf-8")[:300]
    assert len(tokenizer.encode(prompt)) > 40  # a guard on the test's input
    continuations = [" and they played all day", " ."]
    results = pipeline.continuation_log_probs([prompt, prompt[:50]], continuations)
    for prompt_text, continuation, result in zip([prompt, prompt[:50]], continuations, results, strict=True):
        expected = reference_log_probs(model, tokenizer, prompt_text, continuation)
        check_close(result.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("template_name", ["basic", "cloze"])
def test_choice_scores_sum_and_mean(tokenizer, language_model, template_name):
    """choice_scores: the log-likelihood of each continuation after the prompt, summed or averaged."""
    pipeline = adapters.PromptingPipeline(language_model, tokenizer)
    template = adapters.PromptTemplate(template_name)
    records = [RECORD, RECORD_2]
    summed = pipeline.choice_scores(records, template, normalize="sum")
    mean = pipeline.choice_scores(records, template, normalize="mean")
    check_equal((tuple(summed.shape), tuple(mean.shape)), ((2, 4), (2, 4)))
    for row, record in enumerate(records):
        for index in range(4):
            continuation = template.continuation(record, index)
            expected = reference_log_probs(language_model, tokenizer, template.format(record), continuation)
            check_close(summed[row, index].item(), expected.sum().item(), atol=1e-4, rtol=0)
            check_close(mean[row, index].item(), expected.mean().item(), atol=1e-4, rtol=0)


def test_letter_scores_are_next_token_log_probs_of_the_labels(tokenizer, language_model):
    """letter_scores: log p(" A"), log p(" B"), ... as the token right after the prompt."""
    pipeline = adapters.PromptingPipeline(language_model, tokenizer)
    for template in (adapters.PromptTemplate("basic"), adapters.PromptTemplate("instruction", choice_format="number")):
        scores = pipeline.letter_scores([RECORD, RECORD_2], template)
        check_equal(tuple(scores.shape), (2, 4))
        for row, record in enumerate((RECORD, RECORD_2)):
            ids = tokenizer.encode(template.format(record))[-language_model.context_length :]
            with torch.no_grad():
                log_probs = torch.log_softmax(language_model(torch.tensor([ids]))[0, -1].double(), dim=-1)
            labels = ["A", "B", "C", "D"] if template.choice_format == "letter" else ["1", "2", "3", "4"]
            expected = [log_probs[tokenizer.encode(f" {label}")[0]].item() for label in labels]
            check_close(scores[row].tolist(), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["letter", "choice"])
def test_calibrated_scores_subtract_the_content_free_scores(tokenizer, language_model, method):
    """calibrate=True gives the raw scores minus those after the content-free ("N/A") prompt."""
    pipeline = adapters.PromptingPipeline(language_model, tokenizer)
    template = adapters.PromptTemplate("cloze" if method == "choice" else "basic")
    records = [RECORD, RECORD_2]
    content_free = [template.content_free(record) for record in records]
    check_equal((content_free[0]["context"], content_free[0]["question"]), ("N/A", "N/A ___ with both hands."))
    if method == "letter":
        raw, prior = pipeline.letter_scores(records, template), pipeline.letter_scores(content_free, template)
    else:
        raw = pipeline.choice_scores(records, template, "mean")
        prior = pipeline.choice_scores(content_free, template, "mean")
    uncalibrated = pipeline.scores(records, adapters.ScoringSetup(template, method, "mean", calibrate=False))
    calibrated = pipeline.scores(records, adapters.ScoringSetup(template, method, "mean", calibrate=True))
    check_close(uncalibrated, raw)
    check_close(calibrated, raw - prior)
    check_equal(torch.allclose(raw, raw - prior), False)  # calibration matters here (both recorded above)


def test_select_picks_the_setup_with_the_best_dev_accuracy(tokenizer, language_model):
    """select returns every setup's dev accuracy (that of its argmax predictions) and the first best."""
    dev = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))[:6]
    pipeline = adapters.PromptingPipeline(language_model, tokenizer)
    basic, cloze = adapters.PromptTemplate("basic"), adapters.PromptTemplate("cloze")
    setups = [
        adapters.ScoringSetup(basic, "letter"),
        adapters.ScoringSetup(basic, "choice", "sum"),
        adapters.ScoringSetup(cloze, "choice", "mean"),
        adapters.ScoringSetup(cloze, "choice", "sum", calibrate=True),
    ]
    best, results = pipeline.select(dev, setups)
    # The setups (objects, not recordable) by their index in ``setups``.
    check_equal([setups.index(setup) if setup in setups else None for setup, _ in results], [0, 1, 2, 3])
    accuracies = []
    for setup, value in results:
        predictions = pipeline.scores(dev, setup).argmax(-1).tolist()
        accuracies.append(sum(p == r["answer"] for p, r in zip(predictions, dev, strict=True)) / len(dev))
        check_close(float(value), accuracies[-1], rtol=1e-6, atol=1e-12)
    # The check below chooses between different accuracies (each recorded above).
    check_equal(len(set(accuracies)) > 1, True)
    chosen = next((index for index, setup in enumerate(setups) if setup is best), None)
    check_equal(chosen, accuracies.index(max(accuracies)))


# ---------------------------------------------------------------------------------------------
# adapters.py
# ---------------------------------------------------------------------------------------------


def names_taken_from_adapters(source: str) -> set[str]:
    """The names a test module reaches in adapters.py: ``adapters.NAME`` and ``from adapters import NAME``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "adapters":
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "adapters":
            names |= {alias.name for alias in node.names}
    return names


def test_star_import_of_adapters_gives_every_adapter() -> None:
    """`from adapters import *` (the course's tests import that way) gives every public function of
    adapters.py, the Part 4 classes and every name the tests here take from adapters.py (modules and
    private names aside), so an adapter missing from adapters.py or from its ``__all__`` fails here."""
    namespace: dict = {}
    exec("from adapters import *", namespace)
    public = sorted(
        name
        for name, value in vars(adapters).items()
        if inspect.isfunction(value) and value.__module__ == "adapters" and not name.startswith("_")
    )
    check_equal(sorted(name for name in public if name in namespace), public)
    classes = ["TransformerLM", "MultipleChoiceQADataset", "TransformerForMultipleChoice", "PromptTemplate"]
    check_equal([name for name in classes if name in namespace], classes)
    used = set().union(*(names_taken_from_adapters(path.read_text(encoding="utf-8")) for path in TESTS.glob("*.py")))
    used = {name for name in used if not name.startswith("_") and not inspect.ismodule(getattr(adapters, name, None))}
    assert len(used) > 50  # a guard on the collector: the tests reach most adapters
    missing = sorted(name for name in used if name not in namespace)
    check_equal(missing, [], message="names the tests take from adapters.py that `from adapters import *` lacks")
