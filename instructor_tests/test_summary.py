"""grade_all's summary.csv, on results built with the grader's own entry and fact builders for a small
grading configuration: columns in config order with their maxima, per-part totals, flag columns,
no 0-point entries among the scores, nothing scored dropped. No grading run (test_autograder.py
grades a folder with a real bundle)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from autograder.grade import (
    HIDDEN,
    PUBLIC,
    Bundle,
    Submission,
    failure_results,
    files_entry,
    grading_facts,
    imports_entry,
    problem_entry_name,
    review_entry,
)
from autograder.imports_check import ForbiddenImport, ReviewFlag
from autograder.summary import Layout, summary_row, write_summary

# Problem names in an order that is not alphabetical, in parts 2 then 1: the summary must keep it.
CONFIG = {
    "rules": "configs/grading.json",
    "problems": [
        {"name": "zeta", "part": "2", "public": 3.0, "hidden": 1.0, "modules": ["tests/test_z.py"]},
        {"name": "alpha", "part": "1", "public": 2.5, "hidden": 2.5, "modules": ["tests/test_a.py"]},
        {"name": "beta", "part": "2", "public": 1.0, "hidden": 0.0, "modules": ["tests/test_z.py"]},
    ],
    "part4": {
        "predictions": {
            "4A": {"file": "finetuned_predictions.json", "rule": "finetuned", "name": "Part 4A (fine-tuned)"},
            "4B": {"file": "prompting_predictions.json", "rule": "prompting", "name": "Part 4B (prompting)"},
        }
    },
    "forbidden_imports": {"deduction_per_file": 10},
}
RULES = {
    "parts": {
        "1": {"title": "One", "points": 5},
        "2": {"title": "Two", "points": 5},
        "4": {"title": "Bonus", "points": 20, "bonus": True},
    },
    "part4": {"finetuned": {"points": 12}, "prompting": {"points": 8}},
}
MODULES = ["pkg/a.py", "pkg/b.py"]
STUBS = {
    "pkg/a.py": b"def a():\n    raise NotImplementedError\n",
    "pkg/b.py": b"def b():\n    raise NotImplementedError\n",
}
BUNDLE = Bundle(handout=STUBS, hidden={}, secret={}, manifest={"student_modules": MODULES}, config=CONFIG)
LAYOUT = Layout.from_config(CONFIG, RULES, MODULES)

ZETA, ALPHA, BETA = (problem_entry_name(p, True) for p in CONFIG["problems"])
ZETA_HIDDEN, ALPHA_HIDDEN = (problem_entry_name(p, False) for p in CONFIG["problems"][:2])
PART_4A, PART_4B = "Part 4A (fine-tuned)", "Part 4B (prompting)"


def scored(name: str, score: float, max_score: float, visibility: str = PUBLIC) -> dict:
    return {"name": name, "score": score, "max_score": max_score, "output": "", "visibility": visibility}


def results(
    submission: Submission, scores: dict[str, float], accuracies: dict[str, float | None], extra: list[dict] = ()
) -> dict:
    """results.json as grade() lays it out: checks, problems, Part 4, feedback, then the review entry."""
    maxima = {column.name: column.max_points for column in LAYOUT.columns}
    imports = imports_entry(submission, CONFIG["forbidden_imports"]["deduction_per_file"])
    tests = [files_entry(submission), imports]
    tests += [
        scored(name, score, maxima[name], PUBLIC if "public" in name else HIDDEN) for name, score in scores.items()
    ]
    tests += [*extra, scored("Feedback, no points: tests/test_part4.py", 0.0, 0.0)]
    total = round(max(0.0, sum(t["score"] for t in tests)), 2)
    tests.append(review_entry(submission, {"namespaces"}))
    return {
        "score": total,
        "output": "",
        "tests": tests,
        "extra_data": grading_facts(BUNDLE, submission, accuracies, imports),
    }


def solved(**changes) -> Submission:
    modules = {"pkg/a.py": b"def a():\n    return 1\n", "pkg/b.py": b"def b():\n    return 2\n"}
    predictions = {"4A": b"[]", "4B": b"[]"}
    return Submission(modules=changes.get("modules", modules), predictions=changes.get("predictions", predictions))


FULL = {ZETA: 3.0, ZETA_HIDDEN: 1.0, ALPHA: 2.5, ALPHA_HIDDEN: 2.5, BETA: 1.0, PART_4A: 6.0, PART_4B: 8.0}


def read_summary(rows: list[dict], tmp_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    write_summary(rows, LAYOUT, tmp_path / "summary.csv")
    with open(tmp_path / "summary.csv", newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames), list(reader)


def test_columns_follow_the_config_with_their_maxima_and_leave_out_entries_worth_nothing(tmp_path: Path) -> None:
    rows = [summary_row("alice", results(solved(), FULL, {"4A": 0.4, "4B": 0.45}), LAYOUT)]
    headers, _ = read_summary(rows, tmp_path)
    assert headers == [
        "student",
        "total [max 10 + 20 bonus]",
        "Part 1 [max 5]",
        "Part 2 [max 5]",
        "Part 4 (bonus) [max 20]",
        "all stubs",
        "stub modules",
        "invalid predictions",
        "forbidden imports deduction",
        "review flags",
        "Part 2: zeta (public tests) [max 3]",
        "Part 2: zeta (hidden tests) [max 1]",
        "Part 1: alpha (public tests) [max 2.5]",
        "Part 1: alpha (hidden tests) [max 2.5]",
        "Part 2: beta (public tests) [max 1]",  # its hidden side is worth 0: no column
        "Part 4A (fine-tuned) [max 12]",
        "Part 4B (prompting) [max 8]",
    ]


def test_parts_add_up_their_entries_and_the_deduction_stands_apart(tmp_path: Path) -> None:
    forbidden = [ForbiddenImport("pkg/b.py", 1, "sklearn")]
    student = Submission(modules=solved().modules, predictions=solved().predictions, forbidden=forbidden)
    partial = FULL | {ZETA: 1.5, ALPHA_HIDDEN: 1.25, PART_4A: 0.0}
    rows = [summary_row("bob", results(student, partial, {"4A": 0.2, "4B": 0.45}), LAYOUT)]
    _, (bob,) = read_summary(rows, tmp_path)
    assert bob["Part 1 [max 5]"] == "3.75"
    assert bob["Part 2 [max 5]"] == "3.5"
    assert bob["Part 4 (bonus) [max 20]"] == "8"
    assert bob["forbidden imports deduction"] == "-10"
    assert bob["total [max 10 + 20 bonus]"] == "5.25"  # 3.75 + 3.5 + 8 - 10
    assert (bob["all stubs"], bob["stub modules"], bob["invalid predictions"], bob["review flags"]) == (
        "no",
        "",
        "",
        "0",
    )
    assert bob["Part 2: zeta (public tests) [max 3]"] == "1.5"


@pytest.mark.parametrize(
    ("modules", "all_stubs", "stub_modules"),
    [
        ({}, "yes", "a.py b.py"),  # nothing submitted: graded as the stubs
        (STUBS, "yes", "a.py b.py"),  # the stubs submitted unchanged
        ({"pkg/a.py": b"def a():\n    return 1\n", "pkg/b.py": STUBS["pkg/b.py"]}, "no", "b.py"),
    ],
)
def test_flags_name_stubs_bad_predictions_and_review_flags(
    tmp_path: Path, modules: dict[str, bytes], all_stubs: str, stub_modules: str
) -> None:
    flags = [ReviewFlag("pkg/a.py", 3, "dynamic import", "importlib"), ReviewFlag("pkg/a.py", 5, "exec", "exec")]
    student = Submission(
        modules={module: modules.get(module, STUBS[module]) for module in MODULES},
        predictions={"4A": None, "4B": b"[1,]"},
        flags=flags,
    )
    rows = [summary_row("carol", results(student, {ALPHA: 0.0}, {"4A": None, "4B": None}), LAYOUT)]
    _, (carol,) = read_summary(rows, tmp_path)
    assert (carol["all stubs"], carol["stub modules"]) == (all_stubs, stub_modules)
    assert carol["invalid predictions"] == "4A missing; 4B invalid"
    assert carol["review flags"] == "2"


def test_a_failed_grading_says_so_and_other_rows_keep_their_columns(tmp_path: Path) -> None:
    failed = failure_results(RuntimeError("sandbox broke"))
    rows = [
        summary_row("alice", results(solved(), FULL, {"4A": 0.4, "4B": 0.45}), LAYOUT),
        summary_row("dave", failed, LAYOUT),
    ]
    headers, (alice, dave) = read_summary(rows, tmp_path)
    assert "grader error" in headers
    assert "sandbox broke" in dave["grader error"] and alice["grader error"] == ""
    assert dave["total [max 10 + 20 bonus]"] == "0"
    assert dave["all stubs"] == "" and dave["Part 1 [max 5]"] == ""
    assert alice["Part 1 [max 5]"] == "5"


def test_a_scored_entry_the_config_does_not_name_is_still_shown(tmp_path: Path) -> None:
    extra = [scored("Style (manual)", 2.0, 5.0)]
    rows = [summary_row("erin", results(solved(), FULL, {"4A": 0.4, "4B": 0.45}, extra), LAYOUT)]
    headers, (erin,) = read_summary(rows, tmp_path)
    assert headers[-1] == "Style (manual) [max 5]" and erin["Style (manual) [max 5]"] == "2"
    assert "Feedback, no points: tests/test_part4.py" not in headers and "Submitted files" not in headers
