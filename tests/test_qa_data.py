"""Part 4: the QA data and the predictions files (public tests of given code).

``cs288_lm/common/qa_data.py`` makes Children's-Book-Test-style questions from TinyStories and reads
question files (ours and the cs288 starter's); ``cs288_lm/common/predictions.py`` checks a predictions
file and turns accuracies into points. Students do not write these modules: the tests show what
the data promises (determinism, four distinct choices of one kind from the story, balanced answer
positions, dev and test stories never seen in training, no answer that a lookup or a frequency
rule gives away) and what a valid predictions file looks like. The checks that need the files only
the instructors have (the held-out stories, the test answers) are among the instructors' tests.

Properties of many questions at once are recorded as the list of what is wrong (empty when all is
well), which names the bad questions. Files are written under a temporary directory but named by
relative paths, so that the error messages recorded while grading are the same on every run.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from adapters import (
    BLANK,
    FREQUENCY_RULES,
    BigramModel,
    FileTexts,
    PredictionsError,
    QuestionFileError,
    accuracy,
    audit_split,
    build_lexicon,
    feature_matrix,
    fit_conditional_logit,
    leak_pattern,
    load_grading_rules,
    load_predictions,
    load_questions,
    make_questions,
    part4_points,
    question_stats,
    save_predictions,
    save_questions,
    split_sentences,
    split_stories,
    validate_predictions,
    word_stem,
)
from tests.common import DATA, REPO_ROOT
from tests.graded import check_close, check_equal

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


def balance_problems(questions: list[dict], name: str = "questions") -> list[str]:
    """Nothing, or why the answer positions are not balanced (each of 0..3, counts within one)."""
    counts = collections.Counter(question["answer"] for question in questions)
    if set(counts) == {0, 1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1:
        return []
    return [f"{name}: unbalanced answer positions {dict(sorted(counts.items(), key=str))}"]


def question_problems(question: dict, lexicon=None, story: str | None = None) -> list[str]:
    """What every question promises: 4 distinct choices (of one kind; from its ``story`` when given,
    except names),
    none an inflection of another, absent from the question sentence; one blank; a whole sentence
    (no quotation left open). Returns what this question breaks (nothing for a good question)."""
    choices, answer, name = question["choices"], question["answer"], question.get("id")
    problems = []
    if set(question) != {"id", "context", "question", "choices", "answer"}:
        problems.append(f"{name}: keys {sorted(question)}")
    if len(choices) != 4 or len({word_stem(choice) for choice in choices}) != 4:
        problems.append(f"{name}: choices {choices} are not 4 different words")
    if question["question"].count(BLANK) != 1:
        problems.append(f"{name}: {question['question'].count(BLANK)} blanks")
    if not (isinstance(answer, int) and 0 <= answer < 4):
        problems.append(f"{name}: answer {answer!r}")
    # Name distractors may also be frequent names of the split; every other choice is from the story.
    elsewhere = set(choices) - words(story or "")
    if story is not None and lexicon is not None and {lexicon.kind(choice) for choice in elsewhere} - {"name"}:
        problems.append(f"{name}: choices {sorted(elsewhere)} are not in the story")
    in_question = set(choices) & words(question["question"])
    if in_question:  # the answer occurs once, blanked
        problems.append(f"{name}: choices {sorted(in_question)} are in the question sentence")
    if question["question"].count('"') % 2 or question["question"].count("“") != question["question"].count("”"):
        problems.append(f"{name}: the question leaves a quotation open")
    if lexicon is not None:
        kinds = {lexicon.kind(choice) for choice in choices}
        if len(kinds) != 1 or None in kinds:
            problems.append(f"{name}: choices of kinds {sorted(map(str, kinds))}")
    return problems


def window_problems(questions: list[dict], context_sentences: int = 5) -> list[str]:
    """Question sentences of one story that sit inside another question's context (ids are
    ``{split}-{story}-{sentence}``)."""
    positions = collections.defaultdict(list)
    for question in questions:
        _, story, sentence = question["id"].split("-")
        positions[story].append(int(sentence))
    return [
        f"story {story}: sentences {a} and {b}"
        for story, sentences in positions.items()
        for a in sentences
        for b in sentences
        if a < b <= a + context_sentences
    ]


def lookup_hits(questions: list[dict]) -> list[str]:
    """The choices that, filled into the clause around the blank, occur anywhere in the file."""
    texts = FileTexts(questions)
    hits = []
    for question in questions:
        left, right = leak_pattern(question["question"])
        hits += [
            f"{question['id']}: {choice}" for choice in question["choices"] if texts.contains(left + choice + right)
        ]
    return hits


def check_mentions(message: str, *fragments: str) -> None:
    """``message`` contains every fragment. Graded: the fragments it lacks (none), against the reference's."""
    check_equal([fragment for fragment in fragments if fragment not in message], [], message=message)


# ---------------------------------------------------------------------------------------------
# Generating questions
# ---------------------------------------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed(stories, generated):
    """The same seed gives the same questions; another seed gives other questions."""
    lexicon, questions = generated
    check_equal(make_questions(stories, lexicon, "train", seed=0), questions)
    check_equal(len(questions) > 200, True)  # (the questions are recorded just above)
    other = make_questions(stories, lexicon, "train", seed=1)
    check_equal((other == questions, len(other) > 200), (False, True))
    check_equal(len({q["id"] for q in questions}), len(questions))
    check_equal([q["id"] for q in questions if not q["id"].startswith("train-")], [])


def test_generated_questions_are_well_formed_and_balanced(stories, generated):
    """Four different choices of one kind from the story, one blank, balanced answer positions."""
    lexicon, questions = generated
    problems = [
        problem
        for question in questions
        for problem in question_problems(question, lexicon, stories[int(question["id"].split("-")[1])])
    ]
    check_equal(problems, [])
    check_equal(balance_problems(questions), [])
    kinds = collections.Counter(lexicon.kind(q["choices"][0]) for q in questions)
    check_equal(len(kinds) >= 2, True, message=f"kinds {dict(kinds)}")  # nouns and verbs at least


def test_context_is_the_passage_just_before_the_question(stories, generated):
    """The context is up to 5 consecutive sentences of the story, and the question (blank filled)
    is the sentence that follows them."""
    _, questions = generated
    for question in questions[:60]:
        story_index, position = (int(part) for part in question["id"].split("-")[1:])
        sentences = split_sentences(stories[story_index])
        check_equal(question["context"], " ".join(sentences[max(0, position - 5) : position]), message=question["id"])
        filled = question["question"].replace(BLANK, question["choices"][question["answer"]])
        check_equal(filled, sentences[position], message=question["id"])


def test_generated_questions_cannot_be_looked_up(generated):
    """No question sentence is inside another question's context, and no choice filled into the
    clause around its blank occurs anywhere else in the generated questions."""
    _, questions = generated
    check_equal(window_problems(questions), [])
    check_equal(lookup_hits(questions), [])


def test_sentences_keep_quotations_whole():
    """A sentence ends at . ! or ? outside quotations only; a new line ends one in any case."""
    story = """Tom said, "I like it. Can I keep it?" Mom smiled. "Yes!" she said.\n"Wait. I am not done\nThe end."""
    check_equal(
        split_sentences(story),
        [
            'Tom said, "I like it. Can I keep it?"',
            "Mom smiled.",
            '"Yes!"',
            "she said.",
            '"Wait. I am not done',
            "The end.",
        ],
    )


def test_word_kinds_and_inflections():
    """The lexicon of the training stories: short words in "-ed" and adjectives in "-ed" are not
    verbs, "sudden" is not a noun; inflections of one word share a stem."""
    lexicon = build_lexicon(split_stories((DATA / "train.txt").read_text(encoding="utf-8")))
    kinds = {
        word: lexicon.kind(word)
        for word in ("bed", "red", "scared", "tired", "sudden", "played", "liked", "ball", "Lily")
    }
    check_equal(
        kinds,
        {
            "bed": None,
            "red": None,
            "scared": None,
            "tired": None,
            "sudden": None,
            "played": "verb",
            "liked": "verb",
            "ball": "noun",
            "Lily": "name",
        },
    )
    pairs = [
        ("friend", "friends"),
        ("play", "played"),
        ("like", "liked"),
        ("hop", "hopped"),
        ("try", "tries"),
        ("box", "boxes"),
    ]
    check_equal([pair for pair in pairs if word_stem(pair[0]) != word_stem(pair[1])], [])
    check_equal(len({word_stem(word) for word in ("cat", "car", "cart", "bed", "be")}), 5)


# ---------------------------------------------------------------------------------------------
# The shipped files (data/qa)
# ---------------------------------------------------------------------------------------------


def test_shipped_files_are_well_formed_and_balanced():
    """train.json and dev.json hold valid, balanced questions; test_questions.json has no answers."""
    train = json.loads((QA_DIR / "train.json").read_text(encoding="utf-8"))
    dev = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))
    test = json.loads((QA_DIR / "test_questions.json").read_text(encoding="utf-8"))
    check_equal((len(train) > 5000, len(dev) >= 400, len(test) >= 400), (True, True, True))
    for name, questions in (("train", train), ("dev", dev)):
        check_equal([problem for question in questions for problem in question_problems(question)], [])
        check_equal(window_problems(questions), [])
        check_equal(balance_problems(questions, name), [])
        check_equal([q["id"] for q in questions if not q["id"].startswith(f"{name}-")], [])
    malformed = [q["id"] for q in test if set(q) != {"id", "context", "question", "choices"} or len(q["choices"]) != 4]
    check_equal(malformed, [])
    check_equal([q["id"] for q in test if not q["id"].startswith("test-")], [])
    ids = [q["id"] for q in train + dev + test]
    check_equal(len(set(ids)), len(ids))
    check_equal(load_questions(QA_DIR / "dev.json", require_answers=True), dev)
    check_equal([q["answer"] for q in load_questions(QA_DIR / "test_questions.json")], [None] * len(test))


def test_shipped_files_give_no_answer_away():
    """Nothing in dev.json or in the students' test_questions.json can be looked up: no choice, filled
    into the clause around its blank, occurs elsewhere in the same file. On dev, no frequency or
    position rule (most or least frequent choice in the context, last or first occurrence) gets
    more than 35% right (chance is 25%), nor does their combination with bigram fit (a conditional
    logit fit on train) get more than 45%."""
    dev = load_questions(QA_DIR / "dev.json", require_answers=True)
    test = load_questions(QA_DIR / "test_questions.json")
    check_equal((lookup_hits(dev), lookup_hits(test)), ([], []))
    train = load_questions(QA_DIR / "train.json", require_answers=True)[:2000]
    bigrams = BigramModel((DATA / "train.txt").read_text(encoding="utf-8"))
    combined = fit_conditional_logit(
        [feature_matrix(question_stats(q, bigrams)) for q in train], [q["answer"] for q in train]
    )
    scores = audit_split(dev, bigrams, combined)["scores"]
    limits = dict.fromkeys(FREQUENCY_RULES, 0.35) | {"combined": 0.45}
    check_equal({rule: round(scores[rule], 3) for rule, limit in limits.items() if scores[rule] > limit}, {})


def test_dev_and_test_passages_are_not_in_the_training_stories():
    """Dev and test come from held-out stories: no passage of theirs occurs in train.txt, while
    every train passage does; no passage is shared by dev and test."""
    train_text = "\n".join(
        " ".join(split_sentences(story)) for story in split_stories((DATA / "train.txt").read_text(encoding="utf-8"))
    )
    train = json.loads((QA_DIR / "train.json").read_text(encoding="utf-8"))
    dev = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))
    test = json.loads((QA_DIR / "test_questions.json").read_text(encoding="utf-8"))
    check_equal([q["id"] for q in train[::50] if q["context"] not in train_text], [])
    check_equal([q["id"] for q in dev + test if q["context"] in train_text], [])
    check_equal(sorted({q["context"] for q in dev} & {q["context"] for q in test}), [])


# ---------------------------------------------------------------------------------------------
# Reading and writing question files
# ---------------------------------------------------------------------------------------------


def test_load_questions_reads_the_cs288_starter_layout(tmp_path, monkeypatch):
    """A {"data": [...]} wrapper, answers as a letter, as the choice text or as an index, no ids
    (ids become positions), no answers (None): all load, with answers as 0-based indices."""
    monkeypatch.chdir(tmp_path)
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
    path = Path("qa_train.json")
    path.write_text(json.dumps(starter), encoding="utf-8")
    loaded = load_questions(path)
    check_equal([q["answer"] for q in loaded], [2, 3, 1, 0, None])
    check_equal([q["id"] for q in loaded], ["0", "1", "2", "3", "4"])
    check_equal([(q["choices"], q["context"]) for q in loaded], [(base["choices"], base["context"])] * 5)
    for key in ("questions", "examples"):
        path.write_text(json.dumps({key: [{**base, "id": "x", "answer": "A"}]}), encoding="utf-8")
        check_equal(load_questions(path), [{**base, "id": "x", "answer": 0}])
    with pytest.raises(QuestionFileError, match="record 4.*'answer' is missing"):
        path.write_text(json.dumps(starter), encoding="utf-8")
        load_questions(path, require_answers=True)


def test_load_questions_rejects_bad_files(tmp_path, monkeypatch):
    """Errors name the file and the record: missing file, invalid JSON, bad records and answers."""
    monkeypatch.chdir(tmp_path)
    base = {"context": "Sam had a kite.", "question": "The ___ flew high.", "choices": ["kite", "dog"]}
    path = Path("questions.json")
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
        check_mentions(str(error.value), str(path))


def test_save_questions_round_trips(tmp_path, generated):
    """save_questions writes what load_questions reads back; without answers for the students' test."""
    _, questions = generated
    save_questions(questions[:20], tmp_path / "q.json")
    check_equal(load_questions(tmp_path / "q.json"), questions[:20])
    save_questions(questions[:20], tmp_path / "students.json", with_answers=False)
    records = json.loads((tmp_path / "students.json").read_text(encoding="utf-8"))
    check_equal(records, [{k: v for k, v in q.items() if k != "answer"} for q in questions[:20]])


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
        check_equal(message[: len("preds.json")], "preds.json", message=message)  # it starts with the source
        check_mentions(message, *fragments)
    check_equal(validate_predictions(VALID, QUESTIONS), {"q0": 1, "q1": 0, "q2": 0})


def test_predictions_files_that_cannot_be_read(tmp_path, monkeypatch):
    """A missing file, invalid JSON, undecodable bytes and a directory are PredictionsErrors
    naming the file; the same checks as validate_predictions apply to a file's contents."""
    monkeypatch.chdir(tmp_path)
    path = Path("finetuned_predictions.json")
    with pytest.raises(PredictionsError, match="no such file"):
        load_predictions(path, QUESTIONS)
    unreadable = ((b'[{"id": "q0", ', "not valid JSON"), (b"\xff\xfe[]", "cannot be read"), (b"", "not valid JSON"))
    for content, message in unreadable:
        path.write_bytes(content)
        with pytest.raises(PredictionsError, match=message) as error:
            load_predictions(path, QUESTIONS)
        check_mentions(str(error.value), str(path))
    with pytest.raises(PredictionsError, match="cannot be read"):
        load_predictions(Path("."), QUESTIONS)
    path.write_text(json.dumps(VALID[:2]), encoding="utf-8")
    with pytest.raises(PredictionsError, match="'q2'"):
        load_predictions(path, QUESTIONS)


def test_saved_predictions_round_trip_and_score(tmp_path):
    """save_predictions writes a file load_predictions accepts; accuracy counts right answers."""
    path = tmp_path / "out" / "prompting_predictions.json"
    save_predictions(path, ["q0", "q1", "q2"], [1, 3, 1])
    check_equal(
        json.loads(path.read_text(encoding="utf-8")),
        [
            {"id": "q0", "prediction": 1},
            {"id": "q1", "prediction": 3},
            {"id": "q2", "prediction": 1},
        ],
    )
    predictions = load_predictions(path, QUESTIONS)
    check_equal(predictions, {"q0": 1, "q1": 3, "q2": 1})
    check_close(accuracy(predictions, QUESTIONS), 2 / 3, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError):
        save_predictions(path, ["q0", "q1"], [1])


# ---------------------------------------------------------------------------------------------
# The grading rule
# ---------------------------------------------------------------------------------------------


def test_part4_points_at_the_boundaries():
    """4A: 0 at or below 30%, 12 at or above 50%, linear between. 4B: 8 for a margin of at least 2
    points over 4A (0.52 vs 0.50 exactly, despite float error), linear down to 0 at no margin; the
    margin is over 30% (4A's zero point) when 4A is lower, so prompting at or below 30% earns 0."""
    rules = load_grading_rules()
    check_equal(load_grading_rules(REPO_ROOT / "configs" / "grading.json"), rules)
    check_equal(
        rules["part4"],
        {
            "finetuned": {"points": 12, "zero_at_accuracy": 0.30, "full_at_accuracy": 0.50},
            "prompting": {"points": 8, "full_at_margin": 0.02},
            "require_beating_baselines": False,
        },
    )
    for finetuned, points in (
        (0.0, 0.0),
        (0.2, 0.0),
        (0.3, 0.0),
        (0.35, 3.0),
        (0.4, 6.0),
        (0.5, 12.0),
        (0.6, 12.0),
        (1.0, 12.0),
    ):
        check_equal(part4_points(finetuned, None)["4A"], points, message=f"finetuned accuracy {finetuned}")
    for finetuned, prompting, points in (
        (0.50, 0.52, 8.0),
        (0.50, 0.51, 4.0),
        (0.50, 0.50, 0.0),
        (0.50, 0.45, 0.0),
        (0.50, 0.90, 8.0),
        (0.35, 0.365, 6.0),
        (0.56, 0.58, 8.0),
        (0.10, 0.12, 0.0),  # beats 4A by 2 points, but is below 30%
        (0.197, 0.252, 0.0),  # fine-tuned cycling through the answers, prompting always the first choice
        (0.10, 0.30, 0.0),
        (0.10, 0.31, 4.0),  # 1 point over 30%
        (0.29, 0.32, 8.0),
        (0.30, 0.32, 8.0),
    ):
        check_equal(part4_points(finetuned, prompting)["4B"], points, message=f"accuracies {finetuned}, {prompting}")
    check_equal(part4_points(0.4, 0.41), {"4A": 6.0, "4B": 4.0, "total": 10.0})
    check_equal(part4_points(0.197, 0.252), {"4A": 0.0, "4B": 0.0, "total": 0.0})


def test_part4_points_missing_accuracies_and_other_rules():
    """A missing accuracy earns 0 for its part; for 4B's margin a missing 4A counts as 0% (so the
    margin is over 30%), as a valid file that is all wrong would; the thresholds come from the config."""
    check_equal(part4_points(None, None), {"4A": 0.0, "4B": 0.0, "total": 0.0})
    check_equal(part4_points(None, 0.9), {"4A": 0.0, "4B": 8.0, "total": 8.0})
    check_equal(part4_points(None, 0.31), part4_points(0.0, 0.31))
    check_equal(part4_points(0.6, None), {"4A": 12.0, "4B": 0.0, "total": 12.0})
    rules = {
        "part4": {
            "finetuned": {"points": 10, "zero_at_accuracy": 0.25, "full_at_accuracy": 0.75},
            "prompting": {"points": 5, "full_at_margin": 0.1},
        }
    }
    check_equal(part4_points(0.5, 0.55, rules), {"4A": 5.0, "4B": 2.5, "total": 7.5})
    check_equal(part4_points(0.2, 0.3, rules), {"4A": 0.0, "4B": 2.5, "total": 2.5})  # margin over 25%


def test_part4_points_when_the_baselines_must_be_beaten():
    """With ``require_beating_baselines`` a part earns its points only above its published baseline
    (equal is not above); without the switch the baselines change nothing."""
    rules = load_grading_rules()
    baselines = {"finetuned": 0.40, "prompting": 0.55}
    check_equal(part4_points(0.40, 0.56, rules, baselines), {"4A": 6.0, "4B": 8.0, "total": 14.0})
    required = {**rules, "part4": {**rules["part4"], "require_beating_baselines": True}}
    for finetuned, prompting, expected in (
        (0.40, 0.56, {"4A": 0.0, "4B": 8.0, "total": 8.0}),  # 4A equals its baseline
        (0.45, 0.55, {"4A": 9.0, "4B": 0.0, "total": 9.0}),  # 4B equals its baseline
        (0.45, 0.56, {"4A": 9.0, "4B": 8.0, "total": 17.0}),
        (0.41, 0.42, {"4A": 6.6, "4B": 0.0, "total": 6.6}),  # a margin over 4A, but below the 4B baseline
        (None, 0.60, {"4A": 0.0, "4B": 8.0, "total": 8.0}),  # no 4A: the margin is over 30%
    ):
        points = part4_points(finetuned, prompting, required, baselines)
        check_equal(
            {part: round(value, 9) for part, value in points.items()},
            expected,
            message=f"accuracies {finetuned}, {prompting}",
        )
    with pytest.raises(ValueError, match="baseline"):
        part4_points(0.45, 0.56, required)
