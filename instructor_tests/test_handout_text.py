"""What the handout README tells students agrees with what the grader does: each problem's points,
the worked example of the Part 4 rule, and the one-line check of a predictions file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.make_handout import HANDOUT_README, REPO_ROOT
from cs288_lm.common.predictions import part4_points
from cs288_lm.common.qa_data import load_questions

README = HANDOUT_README.read_text(encoding="utf-8")
CONFIG = json.loads((REPO_ROOT / "autograder" / "grading_config.json").read_text(encoding="utf-8"))
RULES = json.loads((REPO_ROOT / "configs" / "grading.json").read_text(encoding="utf-8"))


def test_the_readme_lists_every_problems_points_as_the_grading_config_has_them():
    rows = re.findall(r"^\| (\d) \| `([^`]+)` \| ([\d.]+) \| ([\d.]+) \|$", README, flags=re.MULTILINE)
    listed = [(part, name, float(public), float(hidden)) for part, name, public, hidden in rows]
    configured = [(p["part"], p["name"], float(p["public"]), float(p["hidden"])) for p in CONFIG["problems"]]
    assert listed == configured


@pytest.mark.parametrize(
    ("finetuned", "prompting", "points_4a", "points_4b"),
    [(0.40, 0.41, 6, 4), (0.40, 0.42, 6, 8), (0.40, 0.40, 6, 0), (0.25, 0.31, 0, 4)],
)
def test_the_readmes_worked_example_of_part_4_is_the_rule(finetuned, prompting, points_4a, points_4b):
    assert RULES["part4"]["require_beating_baselines"] is False  # the example is for the rule as configured
    points = part4_points(finetuned, prompting, RULES)
    assert (points["4A"], points["4B"]) == pytest.approx((points_4a, points_4b))
    paragraph = next(p for p in README.split("\n\n") if "example, fine-tuning" in p)
    example = " ".join(paragraph.split())  # as the text reads, wherever its lines break
    assert f"at {finetuned:.0%}" in example and f"at {prompting:.0%}" in example


def check_command() -> list[str]:
    """The README's command that checks predictions files (its arguments after the interpreter)."""
    (command,) = re.findall(
        r"^\.venv/bin/python (-m cs288_lm\.pipelines\.check_predictions .+)$", README, flags=re.MULTILINE
    )
    return command.split()


def run_check(tmp_path: Path, entries: list[dict]) -> subprocess.CompletedProcess:
    """The README's command on ``entries`` as both files, from a copy of the handout's data."""
    for name in check_command()[2:]:
        (tmp_path / name).write_text(json.dumps(entries), encoding="utf-8")
    (tmp_path / "data" / "qa").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "data" / "qa" / "test_questions.json", tmp_path / "data" / "qa")
    return subprocess.run(
        [sys.executable, *check_command()],
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readmes_command_checks_predictions_files_in_one_line_each(tmp_path):
    questions = load_questions(REPO_ROOT / "data" / "qa" / "test_questions.json")
    entries = [{"id": q["id"], "prediction": 0} for q in questions]
    valid = run_check(tmp_path, entries)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.splitlines() == [f"{name}: {len(questions)} valid predictions" for name in check_command()[2:]]
    duplicate = run_check(tmp_path, [*entries, entries[0]])
    assert duplicate.returncode == 1 and len(duplicate.stderr.splitlines()) == 2, duplicate.stderr
    assert "appears more than once" in duplicate.stderr and "Traceback" not in duplicate.stderr
    missing = run_check(tmp_path, entries[1:])
    assert missing.returncode == 1 and questions[0]["id"] in missing.stderr, missing.stderr
    as_numbers = run_check(tmp_path, [{"id": i, "prediction": 0} for i in range(len(questions))])
    assert as_numbers.returncode == 1 and "Traceback" not in as_numbers.stderr, as_numbers.stderr
