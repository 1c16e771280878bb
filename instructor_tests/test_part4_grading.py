"""Part 4 as the grader scores it, without building a bundle: ``part4_entries`` and ``leaderboard`` on an
in-memory bundle made of this repository's files (the real test answers, rules and baselines), and
the reference submission (``autograder.reference_submission``) with its predictions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grade import Bundle, Submission, leaderboard, part4_entries
from autograder.make_handout import REPO_ROOT, is_handout_path
from autograder.reference_submission import (
    PUBLISH_COMMAND,
    REFERENCE_PREDICTIONS,
    ReferenceSubmissionError,
    expected_points,
    predictions_files,
    reference_files,
    write_submission,
)
from cs288_lm.common.predictions import accuracy, load_predictions, part4_points

CONFIG = json.loads((REPO_ROOT / "autograder" / "grading_config.json").read_text(encoding="utf-8"))
ANSWERS = (REPO_ROOT / "data" / "qa" / "test.json").read_bytes()
QUESTIONS = json.loads(ANSWERS)
BASELINES = json.loads((REPO_ROOT / "baseline_metrics.json").read_text(encoding="utf-8"))


def make_bundle(config: dict = CONFIG, rules: dict | None = None) -> Bundle:
    """The parts of a bundle that Part 4 reads: the instructor's predictions.py, the rules and the
    baselines from the handout, the test answers from the secret part."""
    handout = {
        path: (REPO_ROOT / path).read_bytes()
        for path in ("cs288_lm/common/predictions.py", config["rules"], config["part4"]["baselines"])
    }
    if rules is not None:
        handout[config["rules"]] = json.dumps(rules).encode()
    return Bundle(handout=handout, hidden={}, secret={"answers/test.json": ANSWERS}, manifest={}, config=config)


def predictions_json(choose) -> bytes:
    """A predictions file for the test questions: ``choose(index, question)`` is the prediction."""
    return json.dumps([{"id": q["id"], "prediction": choose(k, q)} for k, q in enumerate(QUESTIONS)]).encode()


def with_accuracy(correct: int) -> bytes:
    """Predictions with the first ``correct`` test questions right and the others wrong."""
    return predictions_json(lambda k, q: q["answer"] if k < correct else (q["answer"] + 1) % len(q["choices"]))


def graded(bundle: Bundle, finetuned: bytes | None, prompting: bytes | None) -> tuple[dict, dict, Submission]:
    """The 4A and 4B entries and the submission (with its notes) for two predictions files."""
    submission = Submission(modules={}, predictions={"4A": finetuned, "4B": prompting})
    entries, _ = part4_entries(bundle, submission)
    part_4a, part_4b = entries
    return part_4a, part_4b, submission


def test_the_issues_example_earns_nothing():
    """Fine-tuned predictions cycling through 0-3 (19.7%) and prompting always 0 (25.2%): prompting is
    5.5 points above 4A, but below 4A's zero point (30%), so 4B earns 0, as 4A does."""
    cycling, first = predictions_json(lambda k, q: k % 4), predictions_json(lambda k, q: 0)
    assert round(100 * accuracy(load_bytes(cycling), QUESTIONS), 1) == 19.7
    assert round(100 * accuracy(load_bytes(first), QUESTIONS), 1) == 25.2
    part_4a, part_4b, _ = graded(make_bundle(), cycling, first)
    assert (part_4a["score"], part_4b["score"]) == (0, 0)
    assert "Margin over your fine-tuned accuracy (or 30% when it is lower): -4.82 points" in part_4b["output"]


def load_bytes(data: bytes) -> dict[str, int]:
    return {str(record["id"]): record["prediction"] for record in json.loads(data)}


def test_entries_show_the_published_baselines_and_the_margin():
    part_4a, part_4b, submission = graded(make_bundle(), with_accuracy(167), with_accuracy(176))  # 40.05%, 42.21%
    baseline_4a, baseline_4b = BASELINES["finetuned_test_accuracy"], BASELINES["prompting_test_accuracy"]
    assert part_4a["output"] == (f"Accuracy on the 417 test questions: 40.05% (published baseline: {baseline_4a:.2%})")
    assert part_4b["output"].startswith(
        f"Accuracy on the 417 test questions: 42.21% (published baseline: {baseline_4b:.2%}). Margin over"
    )
    assert (part_4a["score"], part_4b["score"]) == (6.03, 8)  # the baselines are shown, not required
    assert part_4a["visibility"] == part_4b["visibility"] == "after_published"
    assert "finetuned_predictions.json: valid, 417 predictions" in submission.notes


def test_the_switch_makes_beating_the_baselines_a_condition():
    rules = json.loads((REPO_ROOT / "configs" / "grading.json").read_text(encoding="utf-8"))
    rules["part4"]["require_beating_baselines"] = True
    bundle = make_bundle(rules=rules)
    at_4a = round(BASELINES["finetuned_test_accuracy"] * len(QUESTIONS))
    at_4b = round(BASELINES["prompting_test_accuracy"] * len(QUESTIONS))
    part_4a, part_4b, _ = graded(bundle, with_accuracy(at_4a), with_accuracy(at_4b))  # equal to the baselines
    assert (part_4a["score"], part_4b["score"]) == (0, 0)
    assert part_4a["output"].endswith("; this part earns points only above the baseline")
    part_4a, part_4b, _ = graded(bundle, with_accuracy(at_4a + 1), with_accuracy(at_4b + 1))
    assert part_4a["score"] > 0 and part_4b["score"] == 8
    assert "only above" not in part_4a["output"] + part_4b["output"]
    handout = {path: data for path, data in bundle.handout.items() if path != CONFIG["part4"]["baselines"]}
    without = Bundle(handout, bundle.hidden, bundle.secret, bundle.manifest, bundle.config)
    with pytest.raises(ValueError, match="require beating the baselines, and the bundle has no baseline_metrics.json"):
        graded(without, with_accuracy(at_4a), with_accuracy(at_4b))


def test_the_leaderboard_is_off_unless_opted_in():
    """It shows the test accuracies at once, while 4A and 4B are shown after publication."""
    assert CONFIG["part4"]["leaderboard"] is False
    accuracies = {"4A": 0.4, "4B": None}
    assert leaderboard(make_bundle(), accuracies) == []
    opted_in = {**CONFIG, "part4": {**CONFIG["part4"], "leaderboard": True}}
    assert leaderboard(make_bundle(opted_in), accuracies) == [
        {"name": "4A test accuracy (%)", "value": 40.0},
        {"name": "4B test accuracy (%)", "value": 0.0},
    ]


def test_a_bad_file_is_named_with_line_and_column_in_the_notes():
    data = with_accuracy(200)[:-1] + b",]"
    part_4a, part_4b, submission = graded(make_bundle(), data, with_accuracy(200))
    message = f"finetuned_predictions.json line 1 column {len(data)}: trailing comma after the last item"
    assert part_4a["output"].startswith(message) and part_4a["score"] == 0
    # An invalid 4A counts as 0% for 4B's margin, as a valid file that is all wrong would: 4B is over 30%.
    rules = json.loads((REPO_ROOT / CONFIG["rules"]).read_text(encoding="utf-8"))
    zero = rules["part4"]["finetuned"]["zero_at_accuracy"]
    expected_4b = part4_points(0.0, 200 / len(QUESTIONS), rules)["4B"]
    assert 200 / len(QUESTIONS) > zero and part_4b["score"] == round(expected_4b, 2) > 0
    assert f"(or {zero:.0%} when it is lower)" in part_4b["output"]
    assert any(note.startswith(message) and note.endswith("Part 4A earns 0 points") for note in submission.notes)


# --- the reference submission ---------------------------------------------------------------------


def test_reference_predictions_score_the_published_baselines():
    """The committed reference predictions are the reference job's: their test accuracies are
    baseline_metrics.json's (both come from PUBLISH_COMMAND)."""
    for rule, name in predictions_files().items():
        path = REFERENCE_PREDICTIONS / name
        assert path.is_file(), f"{path} is missing: run `{PUBLISH_COMMAND}`"
        assert accuracy(load_predictions(path, QUESTIONS), QUESTIONS) == BASELINES[f"{rule}_test_accuracy"], rule
    assert BASELINES["command"] == PUBLISH_COMMAND


def test_reference_predictions_stay_out_of_the_handout():
    for name in predictions_files().values():
        relative = (REFERENCE_PREDICTIONS / name).relative_to(REPO_ROOT).as_posix()
        assert not is_handout_path(relative), relative


def baseline_like_predictions(folder: Path) -> Path:
    """Predictions files with the baselines' test accuracies (not the reference job's own), in ``folder``."""
    folder.mkdir(parents=True)
    for rule, name in predictions_files().items():
        correct = round(BASELINES[f"{rule}_test_accuracy"] * len(QUESTIONS))
        (folder / name).write_bytes(with_accuracy(correct))
    return folder


def test_the_grader_gives_the_reference_submission_its_expected_points(tmp_path):
    files = reference_files(reference=baseline_like_predictions(tmp_path / "predictions"))
    expected = expected_points(files)
    part_4a, part_4b, _ = graded(
        make_bundle(), files["finetuned_predictions.json"], files["prompting_predictions.json"]
    )
    published = part4_points(BASELINES["finetuned_test_accuracy"], BASELINES["prompting_test_accuracy"])
    assert (part_4a["score"], part_4b["score"]) == (expected["4A"], expected["4B"])
    assert (expected["4A"], expected["4B"]) == (round(published["4A"], 2), round(published["4B"], 2))
    assert expected["parts 1-3"] == 100 and expected["total"] == 100 + expected["4A"] + expected["4B"]


def test_the_gradescope_checklist_states_the_expected_score():
    readme = (REPO_ROOT / "autograder" / "README.md").read_text(encoding="utf-8")
    points = expected_points(reference_files())
    stated = re.search(r"expected score: ([\d.]+) = 100 \(Parts 1-3\) \+ ([\d.]+) \(4A\) \+ ([\d.]+) \(4B\)", readme)
    assert stated is not None, "autograder/README.md must state the reference submission's expected score"
    assert tuple(float(x) for x in stated.groups()) == (points["total"], points["4A"], points["4B"])


def test_reference_submission_command_writes_the_files_and_never_overwrites(tmp_path):
    out, predictions = tmp_path / "reference", baseline_like_predictions(tmp_path / "predictions")
    command = [sys.executable, "-m", "autograder.reference_submission", "--out", str(out)]
    command += ["--predictions-from", str(predictions)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    files = reference_files(reference=predictions)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(files)
    assert all((out / relative).read_bytes() == data for relative, data in files.items())
    assert (REPO_ROOT / "cs288_lm/model.py").read_bytes() == files["cs288_lm/model.py"]  # the solution, not a stub
    points = expected_points(files)
    assert result.stdout.splitlines()[-1] == (
        f"expected score: {points['total']:g} = 100 (Parts 1-3) + {points['4A']:g} (4A) + {points['4B']:g} (4B)"
    )
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {out} exists and is not an empty folder: choose a new one (nothing is overwritten)"
    ]
    with pytest.raises(ReferenceSubmissionError, match="not an empty folder"):
        write_submission({"x": b""}, out)
    assert all((out / relative).read_bytes() == data for relative, data in files.items())


def test_missing_reference_predictions_say_which_command_makes_them(tmp_path):
    with pytest.raises(ReferenceSubmissionError, match=re.escape(PUBLISH_COMMAND)) as error:
        reference_files(reference=tmp_path)
    assert "finetuned_predictions.json is missing" in str(error.value)


def test_the_handout_readme_says_how_the_baselines_switch_is_configured():
    rules = json.loads((REPO_ROOT / "configs" / "grading.json").read_text(encoding="utf-8"))
    switch = json.dumps(rules["part4"]["require_beating_baselines"])
    text = " ".join((REPO_ROOT / "autograder" / "handout_README.md").read_text(encoding="utf-8").split())
    assert f'As configured (`"require_beating_baselines": {switch}` in `configs/grading.json`)' in text
