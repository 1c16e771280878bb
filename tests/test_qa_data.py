"""Part 4: the QA data and the predictions files (public tests of given code).

``cs288_lm/qa_data.py`` makes Children's-Book-Test-style questions from TinyStories and reads
question files (ours and the cs288 starter's); ``cs288_lm/predictions.py`` checks a predictions
file and turns accuracies into points. Students do not write these modules: the tests show what
the data promises (determinism, four distinct choices of one kind found in the context, balanced
answer positions, dev and test stories never seen in training) and what a valid predictions file
looks like. The checks that need the instructor-only files (the held-out stories, the test answers)
are in ``instructor_tests/test_qa_job.py``.
"""

from __future__ import annotations

import collections
import json
import re

import pytest

from cs288_lm.predictions import (
    PredictionsError,
    accuracy,
    load_grading_rules,
    load_predictions,
    part4_points,
    save_predictions,
    validate_predictions,
)
from cs288_lm.qa_data import (
    BLANK,
    QuestionFileError,
    build_lexicon,
    load_questions,
    make_questions,
    save_questions,
    split_sentences,
    split_stories,
)
from tests.common import DATA, REPO_ROOT

QA_DIR = REPO_ROOT / "data" / "qa"
WORD = r"[A-Za-z]+(?:'[a-z]+)?"


def words(text: str) -> set[str]:
    return set(re.findall(WORD, text))


@pytest.fixture(scope="module")
def stories() -> list[str]:
    return split_stories((DATA / "train.txt").read_text(encoding="utf-8"))[:150]


@pytest.fixture(scope="module")
def generated(stories):
    lexicon = build_lexicon(stories)
    return lexicon, make_questions(stories, lexicon, "train", seed=0)


def answer_counts_are_balanced(questions: list[dict]) -> bool:
    counts = collections.Counter(question["answer"] for question in questions)
    return set(counts) == {0, 1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1


def check_question(question: dict, lexicon=None) -> None:
    """What every question promises: 4 distinct choices (of one kind), one blank, the answer and the
    distractors in the context, the distractors absent from the question sentence."""
    choices, answer = question["choices"], question["answer"]
    assert set(question) == {"id", "context", "question", "choices", "answer"}
    assert len(choices) == 4 and len(set(choices)) == 4, question["id"]
    assert question["question"].count(BLANK) == 1, question["id"]
    assert isinstance(answer, int) and 0 <= answer < 4
    context_words = words(question["context"])
    assert set(choices) <= context_words, question["id"]
    assert not set(choices) & words(question["question"]), question["id"]  # the answer occurs once, blanked
    if lexicon is not None:
        kinds = {lexicon.kind(choice) for choice in choices}
        assert len(kinds) == 1 and None not in kinds, (question["id"], kinds)


# ---------------------------------------------------------------------------------------------
# Generating questions
# ---------------------------------------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed(stories, generated):
    """The same seed gives the same questions; another seed gives other questions."""
    lexicon, questions = generated
    assert len(questions) > 200
    assert make_questions(stories, lexicon, "train", seed=0) == questions
    other = make_questions(stories, lexicon, "train", seed=1)
    assert other != questions and len(other) > 200
    assert len({q["id"] for q in questions}) == len(questions)
    assert all(q["id"].startswith("train-") for q in questions)


def test_generated_questions_are_well_formed_and_balanced(generated):
    """Four distinct choices of one kind from the context, one blank, balanced answer positions."""
    lexicon, questions = generated
    for question in questions:
        check_question(question, lexicon)
    assert answer_counts_are_balanced(questions)
    kinds = collections.Counter(lexicon.kind(q["choices"][0]) for q in questions)
    assert len(kinds) >= 2  # nouns and verbs at least


def test_context_is_the_passage_just_before_the_question(stories, generated):
    """The context is up to 5 consecutive sentences of the story, and the question (blank filled)
    is the sentence that follows them."""
    _, questions = generated
    for question in questions[:60]:
        story_index, position = (int(part) for part in question["id"].split("-")[1:])
        sentences = split_sentences(stories[story_index])
        assert question["context"] == " ".join(sentences[max(0, position - 5) : position])
        assert question["question"].replace(BLANK, question["choices"][question["answer"]]) == sentences[position]


# ---------------------------------------------------------------------------------------------
# The shipped files (data/qa)
# ---------------------------------------------------------------------------------------------


def test_shipped_files_are_well_formed_and_balanced():
    """train.json and dev.json hold valid, balanced questions; test_questions.json has no answers."""
    train = json.loads((QA_DIR / "train.json").read_text(encoding="utf-8"))
    dev = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))
    test = json.loads((QA_DIR / "test_questions.json").read_text(encoding="utf-8"))
    assert len(train) > 2000 and len(dev) > 200 and len(test) > 200
    for name, questions in (("train", train), ("dev", dev)):
        for question in questions:
            check_question(question)
        assert answer_counts_are_balanced(questions), name
        assert all(q["id"].startswith(f"{name}-") for q in questions)
    assert all(set(q) == {"id", "context", "question", "choices"} and len(q["choices"]) == 4 for q in test)
    assert all(q["id"].startswith("test-") for q in test)
    ids = [q["id"] for q in train + dev + test]
    assert len(set(ids)) == len(ids)
    assert load_questions(QA_DIR / "dev.json", require_answers=True) == dev
    assert [q["answer"] for q in load_questions(QA_DIR / "test_questions.json")] == [None] * len(test)


def test_dev_and_test_passages_are_not_in_the_training_stories():
    """Dev and test come from held-out stories: no passage of theirs occurs in train.txt, while
    every train passage does; no passage is shared by dev and test."""
    train_text = "\n".join(
        " ".join(split_sentences(story)) for story in split_stories((DATA / "train.txt").read_text(encoding="utf-8"))
    )
    train = json.loads((QA_DIR / "train.json").read_text(encoding="utf-8"))
    dev = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))
    test = json.loads((QA_DIR / "test_questions.json").read_text(encoding="utf-8"))
    assert all(q["context"] in train_text for q in train[::50])
    assert [q["id"] for q in dev + test if q["context"] in train_text] == []
    assert not {q["context"] for q in dev} & {q["context"] for q in test}


# ---------------------------------------------------------------------------------------------
# Reading and writing question files
# ---------------------------------------------------------------------------------------------


def test_load_questions_reads_the_cs288_starter_layout(tmp_path):
    """A {"data": [...]} wrapper, answers as a letter, as the choice text or as an index, no ids
    (ids become positions), no answers (None): all load, with answers as 0-based indices."""
    base = {"context": "Sam had a kite.", "question": "The ___ flew high.", "choices": ["kite", "dog", "cat", "sun"]}
    starter = {
        "data": [
            {**base, "answer": "C"},
            {**base, "answer": "sun"},
            {**base, "answer": "b"},
            {**base, "answer": 0},
            dict(base),
        ]
    }
    path = tmp_path / "qa_train.json"
    path.write_text(json.dumps(starter), encoding="utf-8")
    loaded = load_questions(path)
    assert [q["answer"] for q in loaded] == [2, 3, 1, 0, None]
    assert [q["id"] for q in loaded] == ["0", "1", "2", "3", "4"]
    assert all(q["choices"] == base["choices"] and q["context"] == base["context"] for q in loaded)
    for key in ("questions", "examples"):
        path.write_text(json.dumps({key: [{**base, "id": "x", "answer": "A"}]}), encoding="utf-8")
        assert load_questions(path) == [{**base, "id": "x", "answer": 0}]
    with pytest.raises(QuestionFileError, match="record 4.*'answer' is missing"):
        path.write_text(json.dumps(starter), encoding="utf-8")
        load_questions(path, require_answers=True)


def test_load_questions_rejects_bad_files(tmp_path):
    """Errors name the file and the record: missing file, invalid JSON, bad records and answers."""
    base = {"context": "Sam had a kite.", "question": "The ___ flew high.", "choices": ["kite", "dog"]}
    path = tmp_path / "questions.json"
    with pytest.raises(QuestionFileError, match="does not exist"):
        load_questions(path)
    cases = [
        ("[{", "not valid JSON"),
        (json.dumps({"rows": []}), "expected a list"),
        (json.dumps([base, 3]), "record 1: expected an object"),
        (json.dumps([{**base, "context": None}]), "record 0: 'context'"),
        (json.dumps([{**base, "choices": ["kite"]}]), "record 0: 'choices'"),
        (json.dumps([{**base, "answer": "Z"}]), "record 0: answer 'Z'"),
        (json.dumps([{**base, "answer": 2}]), "record 0: answer 2"),
        (json.dumps([base, {**base, "answer": True}]), "record 1: answer True"),
    ]
    for content, message in cases:
        path.write_text(content, encoding="utf-8")
        with pytest.raises(QuestionFileError, match=message) as error:
            load_questions(path)
        assert str(path) in str(error.value), content


def test_save_questions_round_trips(tmp_path, generated):
    """save_questions writes what load_questions reads back; without answers for the students' test."""
    _, questions = generated
    save_questions(questions[:20], tmp_path / "q.json")
    assert load_questions(tmp_path / "q.json") == questions[:20]
    save_questions(questions[:20], tmp_path / "students.json", with_answers=False)
    records = json.loads((tmp_path / "students.json").read_text(encoding="utf-8"))
    assert records == [{k: v for k, v in q.items() if k != "answer"} for q in questions[:20]]


# ---------------------------------------------------------------------------------------------
# Predictions files
# ---------------------------------------------------------------------------------------------

QUESTIONS = [
    {"id": "q0", "choices": ["a", "b", "c", "d"], "answer": 1},
    {"id": "q1", "choices": ["a", "b", "c", "d"], "answer": 3},
    {"id": "q2", "choices": ["a", "b"], "answer": 0},
]
VALID = [{"id": "q0", "prediction": 1}, {"id": "q1", "prediction": 0}, {"id": "q2", "prediction": 0}]


def test_predictions_validator_names_the_bad_entry():
    """Missing, duplicate and unknown ids, out-of-range and non-integer predictions (bool, float,
    string) and malformed entries are PredictionsErrors naming the entry and the id."""

    def replaced(index: int, **changes) -> list[dict]:
        return [{**record, **changes} if i == index else record for i, record in enumerate(VALID)]

    cases = [
        (VALID[:2], ["'q2'", "no prediction"]),
        (VALID + [{"id": "q0", "prediction": 2}], ["entry 3", "'q0'", "more than once"]),
        (replaced(1, id="q7"), ["entry 1", "'q7'", "not a test question"]),
        (replaced(2, prediction=2), ["entry 2", "'q2'", "outside 0..1"]),
        (replaced(0, prediction=-1), ["entry 0", "'q0'", "outside 0..3"]),
        (replaced(1, prediction=True), ["entry 1", "'q1'", "not an integer"]),
        (replaced(1, prediction=1.0), ["entry 1", "'q1'", "not an integer"]),
        (replaced(2, prediction="1"), ["entry 2", "'q2'", "not an integer"]),
        (replaced(0, prediction=None), ["entry 0", "'q0'", "not an integer"]),
        (VALID[:1] + [{"id": "q1"}] + VALID[2:], ["entry 1", "'id' and 'prediction'"]),
        (VALID[:2] + [["q2", 0]], ["entry 2", "'id' and 'prediction'"]),
        ({"q0": 1, "q1": 0, "q2": 0}, ["expected a JSON list"]),
    ]
    for records, fragments in cases:
        with pytest.raises(PredictionsError) as error:
            validate_predictions(records, QUESTIONS, source="preds.json")
        message = str(error.value)
        assert message.startswith("preds.json"), message
        assert all(fragment in message for fragment in fragments), (records, message)
    assert validate_predictions(VALID, QUESTIONS) == {"q0": 1, "q1": 0, "q2": 0}


def test_predictions_files_that_cannot_be_read(tmp_path):
    """A missing file, invalid JSON, undecodable bytes and a directory are PredictionsErrors
    naming the file; the same checks as validate_predictions apply to a file's contents."""
    path = tmp_path / "finetuned_predictions.json"
    with pytest.raises(PredictionsError, match="no such file"):
        load_predictions(path, QUESTIONS)
    unreadable = ((b'[{"id": "q0", ', "not valid JSON"), (b"\xff\xfe[]", "cannot be read"), (b"", "not valid JSON"))
    for content, message in unreadable:
        path.write_bytes(content)
        with pytest.raises(PredictionsError, match=message) as error:
            load_predictions(path, QUESTIONS)
        assert str(path) in str(error.value)
    with pytest.raises(PredictionsError, match="cannot be read"):
        load_predictions(tmp_path, QUESTIONS)
    path.write_text(json.dumps(VALID[:2]), encoding="utf-8")
    with pytest.raises(PredictionsError, match="'q2'"):
        load_predictions(path, QUESTIONS)


def test_saved_predictions_round_trip_and_score(tmp_path):
    """save_predictions writes a file load_predictions accepts; accuracy counts right answers."""
    path = tmp_path / "out" / "prompting_predictions.json"
    save_predictions(path, ["q0", "q1", "q2"], [1, 3, 1])
    assert json.loads(path.read_text(encoding="utf-8")) == [
        {"id": "q0", "prediction": 1},
        {"id": "q1", "prediction": 3},
        {"id": "q2", "prediction": 1},
    ]
    predictions = load_predictions(path, QUESTIONS)
    assert predictions == {"q0": 1, "q1": 3, "q2": 1}
    assert accuracy(predictions, QUESTIONS) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        save_predictions(path, ["q0", "q1"], [1])


# ---------------------------------------------------------------------------------------------
# The grading rule
# ---------------------------------------------------------------------------------------------


def test_part4_points_at_the_boundaries():
    """4A: 0 at or below 30%, 12 at or above 50%, linear between. 4B: 8 for a margin of at least 2
    points over 4A (0.52 vs 0.50 exactly, despite float error), linear down to 0 at no margin."""
    rules = load_grading_rules()
    assert rules == load_grading_rules(REPO_ROOT / "configs" / "grading.json")
    assert rules["part4"] == {
        "finetuned": {"points": 12, "zero_at_accuracy": 0.30, "full_at_accuracy": 0.50},
        "prompting": {"points": 8, "full_at_margin": 0.02},
    }
    for finetuned, points in (
        (0.0, 0.0), (0.2, 0.0), (0.3, 0.0), (0.35, 3.0), (0.4, 6.0), (0.5, 12.0), (0.6, 12.0), (1.0, 12.0)
    ):
        assert part4_points(finetuned, None)["4A"] == points, finetuned
    for finetuned, prompting, points in (
        (0.50, 0.52, 8.0),
        (0.50, 0.51, 4.0),
        (0.50, 0.50, 0.0),
        (0.50, 0.45, 0.0),
        (0.50, 0.90, 8.0),
        (0.35, 0.365, 6.0),
        (0.56, 0.58, 8.0),
        (0.10, 0.12, 8.0),
    ):
        assert part4_points(finetuned, prompting)["4B"] == points, (finetuned, prompting)
    assert part4_points(0.4, 0.41) == {"4A": 6.0, "4B": 4.0, "total": 10.0}


def test_part4_points_missing_accuracies_and_other_rules():
    """A missing accuracy earns 0 (4B needs 4A to compare with); the thresholds come from the config."""
    assert part4_points(None, None) == {"4A": 0.0, "4B": 0.0, "total": 0.0}
    assert part4_points(None, 0.9) == {"4A": 0.0, "4B": 0.0, "total": 0.0}
    assert part4_points(0.6, None) == {"4A": 12.0, "4B": 0.0, "total": 12.0}
    rules = {"part4": {"finetuned": {"points": 10, "zero_at_accuracy": 0.25, "full_at_accuracy": 0.75},
                       "prompting": {"points": 5, "full_at_margin": 0.1}}}
    assert part4_points(0.5, 0.55, rules) == {"4A": 5.0, "4B": 2.5, "total": 7.5}
