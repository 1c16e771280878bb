"""The autograder: the reference solution earns every point, the bare handout none, and the gallery
of bad submissions (``autograder/gallery.py``) earns exactly what it earned, always with a valid results.json,
a reason, no secret in anything students see and no process left behind.

Only the reference solution is graded on every test module. The gallery is graded on two small
modules with short limits, which is enough: every module runs through the same sandbox and
judge, and a module's points depend only on its own run. Here the grader runs without a sandbox
user (local mode); ``.ci/gradescope_e2e.py`` grades the same gallery as Gradescope does, as root
with the sandbox user.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder.build_zip import build_zip
from autograder.gallery import (
    CASES,
    GALLERY_MODULE,
    LEAK_MARKER,
    NN_UTILS,
    PART4_FILES,
    PREDICTIONS,
    alive_daemons,
    case_problems,
    part4_points,
    planted_canary,
    problem_entries,
    solution_files,
    stub_files,
    valid_results_problems,
    visible_text,
    write_files,
)
from autograder.grade import Bundle, find_submitted, grade, read_submission, read_tree
from autograder.grade_all import grade_folder
from autograder.imports_check import allowed_modules, forbidden_imports
from autograder.judge import judge_test
from autograder.make_handout import BUILD_MARKER, REPO_ROOT
from autograder.sandbox import Limits, share_of_cores

LIMITS = Limits(seconds=120, memory_bytes=4 << 30, file_bytes=256 << 20)
CASE_NAMES = [case.name for case in CASES]


def entry(results: dict, prefix: str) -> dict:
    (found,) = [test for test in results["tests"] if test["name"].startswith(prefix)]
    return found


def assert_valid_results(results: dict) -> None:
    assert valid_results_problems(results) == []


# --- the reference solution and the bare handout ------------------------------------------------


@pytest.fixture(scope="module")
def solution_results(grading_bundle, tmp_path_factory) -> dict:
    """The reference solution, laid out like a cloned repository, graded on every module."""
    submission = write_files(tmp_path_factory.mktemp("solution") / "my-repo", solution_files(grading_bundle.path))
    return grade(submission.parent, grading_bundle.path, LIMITS, jobs=2)


@pytest.mark.slow  # grades every test module in its own process, two at a time: about a minute
def test_solution_earns_every_point(solution_results):
    assert_valid_results(solution_results)
    graded = problem_entries(solution_results)
    assert [t["name"] for t in graded if t["score"] != t["max_score"]] == []
    assert sum(t["max_score"] for t in graded) == 100
    part4 = {key: round(points, 2) for key, points in part4_points(PART4_FILES).items()}
    assert (entry(solution_results, "Part 4A")["score"], entry(solution_results, "Part 4B")["score"]) == (
        part4["4A"],
        part4["4B"],
    )
    assert part4["4A"] > 5 and part4["4B"] == 8
    assert solution_results["score"] == round(100 + part4["4A"] + part4["4B"], 2)
    assert "graded as the unimplemented handout stub" not in entry(solution_results, "Submitted files")["output"]
    assert entry(solution_results, "Allowed imports")["score"] == 0
    for test in solution_results["tests"]:  # the modules worth no points pass too
        if test["name"].startswith("Feedback"):
            passed, total = re.match(r"(\d+) of (\d+) tests passed", test["output"]).groups()
            assert passed == total, test["name"]
    assert "leaderboard" not in solution_results  # off unless grading_config.json opts in (test_part4_grading.py)


@pytest.mark.slow
def test_entries_are_one_per_problem_public_and_hidden(solution_results, grading_bundle):
    config = json.loads((grading_bundle.path / "grading_config.json").read_text(encoding="utf-8"))
    names = [t["name"] for t in problem_entries(solution_results)]
    expected = [
        f"Part {p['part']}: {p['name']} ({side} tests)" for p in config["problems"] for side in ("public", "hidden")
    ]
    assert names == expected
    for test in problem_entries(solution_results):
        assert test["visibility"] == ("visible" if "(public tests)" in test["name"] else "after_published")
        assert test["max_score"] > 0
    # The counts are those of the local public suite: the entry's own command runs as many.
    rope = entry(solution_results, "Part 2: rope (public tests)")
    (command,) = re.findall(r"Run them locally: python -m pytest (.+)", rope["output"])
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *command.split(), "tests"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    count = sum(line.startswith("tests/") for line in collected.splitlines())
    assert rope["output"].startswith(f"{count} of {count} tests passed")
    flags = entry(solution_results, "Review flags")
    assert flags["visibility"] == "hidden" and flags["score"] == flags["max_score"] == 0


def test_bare_handout_earns_nothing(grading_bundle, tmp_path):
    # Judged as the grader judges: every test that earns points fails on the bare handout.
    bundle = Bundle.load(grading_bundle.path)
    for module, tests in bundle.manifest["modules"].items():
        reference, snapshots = bundle.reference(module).tests, bundle.snapshots(module)
        scored = set(tests["tests"]) - set(tests["given"])
        passing = [t for t in scored if judge_test(grading_bundle.handout_runs.get(t), reference[t], snapshots).passed]
        assert passing == [], module
    submission = write_files(tmp_path, stub_files(grading_bundle.path))
    results = grade(submission, grading_bundle.path, LIMITS, [GALLERY_MODULE])
    assert_valid_results(results)
    assert results["score"] == 0
    assert all(test["score"] == 0 for test in results["tests"])
    assert problem_entries(results)


def test_modules_run_side_by_side_give_the_same_results(grading_bundle, tmp_path):
    """``jobs=2`` (two test modules at once) grades exactly as one at a time, in the same order."""
    files = stub_files(grading_bundle.path)
    files["cs288_lm/nn_utils.py"] = solution_files(grading_bundle.path)["cs288_lm/nn_utils.py"]
    submission = write_files(tmp_path, files)
    modules = ["tests/test_nn_utils.py", "tests/test_sampling.py"]
    one, two = (grade(submission, grading_bundle.path, LIMITS, modules, jobs=jobs) for jobs in (1, 2))
    for results in (one, two):
        del results["execution_time"]
    assert one == two and 0 < one["score"] < 100


def test_a_sandbox_user_runs_one_module_at_a_time(grading_bundle, tmp_path):
    """Each sandboxed run ends by killing every process of the sandbox user: runs side by side would
    kill each other, so the grader refuses ``jobs > 1`` with a user (API and command line)."""
    limits = Limits(seconds=60, memory_bytes=4 << 30, file_bytes=1 << 20, user="grader-sandbox")
    with pytest.raises(ValueError, match="1 with a sandbox user"):
        grade(tmp_path, grading_bundle.path, limits, jobs=2)
    result = run_grade_command(tmp_path, tmp_path / "r.json", "--jobs", "2", "--sandbox-user", "grader-sandbox")
    assert result.returncode == 2 and "--jobs must be at least 1, and 1 with --sandbox-user" in result.stderr


# --- the gallery of bad submissions --------------------------------------------------------------


@pytest.fixture(scope="module")
def gallery_results(grading_bundle, tmp_path_factory) -> dict[str, dict]:
    """Every gallery submission graded on the gallery modules, two at a time."""
    solution, stubs = solution_files(grading_bundle.path), stub_files(grading_bundle.path)

    def grade_case(case) -> dict:
        submission = write_files(tmp_path_factory.mktemp(case.name), case.make(solution, stubs))
        limits = Limits(seconds=case.seconds, memory_bytes=4 << 30, file_bytes=64 << 20, threads=share_of_cores(2))
        return grade(submission, grading_bundle.path, limits, list(case.modules))

    with planted_canary() as canary, ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(CASE_NAMES, pool.map(grade_case, CASES), strict=True))
    results["alive_after_grading"] = alive_daemons()  # nothing of any submission outlives grading
    results["canary"] = canary
    return results


def test_no_process_of_a_submission_outlives_grading(gallery_results):
    assert gallery_results["alive_after_grading"] == []


@pytest.mark.parametrize("case", CASES, ids=CASE_NAMES)
def test_bad_submission_earns_exactly_what_it_earned(gallery_results, grading_bundle, case):
    assert case_problems(case, gallery_results[case.name], grading_bundle.path, gallery_results["canary"]) == []


@pytest.mark.parametrize("case", ["huge_int_prediction", "deeply_nested_prediction"])
def test_one_bad_predictions_file_costs_only_its_own_part(gallery_results, case):
    results = gallery_results[case]
    assert (entry(results, "Part 4A")["score"], entry(results, "Part 4B")["score"]) == (
        round(part4_points(PART4_FILES)["4A"], 2),
        0,
    )
    assert "The autograder failed" not in results["output"]


def test_exfiltrated_files_do_not_reach_a_later_module(gallery_results):
    # The attack ran in both gallery modules; the second found nothing the first had kept.
    shown = visible_text(gallery_results["exfiltrates_secrets"])
    assert f"{LEAK_MARKER} {LEAK_MARKER}" not in shown
    assert "cs288-loot" not in shown


# Files that cannot be used are replaced by the handout stub, which earns nothing
# (test_bare_handout_earns_nothing); these need no run. name -> (nn_utils.py's bytes or None, note)
UNUSABLE = {
    "syntax_error": (b"def softmax(x:\n    return x\n", "does not parse: SyntaxError at line 1"),
    "not_utf8": (b"x = '\xff'\n", "is not UTF-8"),
    "utf7_cookie": (b"# -*- coding: utf-7 -*-\n# +AAo-import os+AAo-\n", "declares the utf-7 encoding (line 1)"),
    "latin1_cookie_on_line_2": (
        b"#!/usr/bin/env python\n# vim: set fileencoding=latin-1 :\nx = '\xe9'\n",
        "declares the iso-8859-1 encoding (line 2)",
    ),
    "unknown_cookie": (b"# coding: no-such-codec\n", "does not parse: SyntaxError"),
    "missing_file": (None, "is missing"),
}


def loose_solution_files(bundle: Path) -> dict[str, bytes]:
    """The solution's files uploaded as loose files (by name), as on Gradescope."""
    return {path.split("/")[-1]: data for path, data in solution_files(bundle).items()}


@pytest.mark.parametrize("case", UNUSABLE)
def test_unusable_file_is_graded_as_the_stub(grading_bundle, tmp_path, case):
    data, reason = UNUSABLE[case]
    files = {
        name: content for name, content in loose_solution_files(grading_bundle.path).items() if name != "nn_utils.py"
    }
    if data is not None:
        files["nn_utils.py"] = data
    submission = write_files(tmp_path, files)
    results = grade(submission, grading_bundle.path, LIMITS, only=[])
    assert_valid_results(results)
    note = entry(results, "Submitted files")["output"]
    assert f"{NN_UTILS} {reason}" in note and "graded as the unimplemented handout stub" in note
    bundle = Bundle.load(grading_bundle.path)
    assert read_submission(submission, bundle).modules[NN_UTILS] == bundle.handout[NN_UTILS]


def test_forbidden_import_is_reported_by_file_and_line_and_costs_points(grading_bundle, tmp_path):
    files = loose_solution_files(grading_bundle.path)
    source = (
        files["nn_utils.py"]
        .decode()
        .replace("from __future__ import annotations\n", "from __future__ import annotations\n\nimport requests\n", 1)
    )
    files["nn_utils.py"] = source.encode()
    line = source.splitlines().index("import requests") + 1
    results = grade(write_files(tmp_path, files), grading_bundle.path, LIMITS, [GALLERY_MODULE])
    imports = entry(results, "Allowed imports")
    assert f"cs288_lm/nn_utils.py:{line}: import of 'requests'" in imports["output"]
    assert imports["score"] == -10
    earned = sum(t["score"] for t in problem_entries(results))  # the tests still ran (requests is never imported)
    assert earned == sum(t["max_score"] for t in problem_entries(results)) > 0
    part4 = part4_points(PART4_FILES)
    assert results["score"] == max(0, round(earned + round(part4["4A"], 2) + round(part4["4B"], 2) - 10, 2))


def test_import_check_allows_requirements_stdlib_and_the_package():
    allowed = allowed_modules((REPO_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    source = (
        "import os, torch.nn as nn, numpy\nfrom jaxtyping import Float\nfrom . import model\n"
        "from cs288_lm import bpe\nimport regex, einops, tiktoken, pytest, adapters\n"
        "def f():\n    import sklearn\n    from transformers import x\n"
    )
    found = [(item.line, item.module) for item in forbidden_imports(source, "m.py", allowed)]
    assert found == [(7, "sklearn"), (8, "transformers")]


def test_submitted_files_are_found_by_path_then_by_name():
    files = ["a/cs288_lm/model.py", "b/model.py", "model.py", "x/cs288_lm/data.py"]
    assert find_submitted("cs288_lm/model.py", files, by_name=True) == ("a/cs288_lm/model.py", None)
    found, note = find_submitted("cs288_lm/tokenizer.py", files + ["t/tokenizer.py", "tokenizer.py"], by_name=True)
    assert found == "tokenizer.py" and "several files match" in note
    assert find_submitted("cs288_lm/bpe.py", files, by_name=True) == (None, None)
    assert find_submitted("cs288_lm/x.py", ["x.py"], by_name=False) == (None, None)


# --- Part 4: the predictions files -------------------------------------------------------------


@pytest.fixture(scope="module")
def part4_bundle(grading_bundle, tmp_path_factory) -> Path:
    """The bundle with 50 made-up QA test questions (answer k % 4 for question k) as its answers."""
    bundle = tmp_path_factory.mktemp("part4") / "bundle"
    shutil.copytree(grading_bundle.path, bundle)
    questions = [
        {"id": f"q{k}", "context": "c", "question": "q", "choices": ["a", "b", "c", "d"], "answer": k % 4}
        for k in range(50)
    ]
    (bundle / "secret" / "answers" / "test.json").write_text(json.dumps(questions), encoding="utf-8")
    return bundle


def predictions_json(correct: int) -> bytes:
    """Predictions for the made-up questions with the first ``correct`` of them right."""
    return json.dumps(
        [{"id": f"q{k}", "prediction": k % 4 if k < correct else (k + 1) % 4} for k in range(50)]
    ).encode()


@pytest.mark.parametrize(
    ("finetuned", "prompting", "points_4a", "points_4b", "reason"),
    [
        (
            predictions_json(20),
            predictions_json(21),
            6.0,
            8.0,
            "Accuracy on the 50 test questions: 40.00%",
        ),  # 40%, +2 points
        (
            predictions_json(25),
            predictions_json(25),
            12.0,
            0.0,
            "Accuracy on the 50 test questions: 50.00%",
        ),  # no margin
        # An invalid or missing 4A counts as 0% for 4B's margin, which is then over 30%.
        (b"[{'id': 'q0'", predictions_json(30), 0.0, 8.0, "finetuned_predictions.json line 1 column 3: single quotes"),
        (
            predictions_json(50)[:-1] + b', {"id": "q0", "prediction": 1}]',
            None,
            0.0,
            0.0,
            "entry 50: id 'q0' appears more than once",
        ),
        (None, predictions_json(50), 0.0, 8.0, "finetuned_predictions.json is missing"),
        (None, predictions_json(15), 0.0, 0.0, "finetuned_predictions.json is missing"),  # 30%: nothing
    ],
)
def test_part4_points_follow_the_course_rule(
    part4_bundle, grading_bundle, tmp_path, finetuned, prompting, points_4a, points_4b, reason
):
    files = {name: data for name, data in zip(PREDICTIONS, (finetuned, prompting), strict=True) if data is not None}
    results = grade(write_files(tmp_path, files), part4_bundle, LIMITS, only=[])
    assert_valid_results(results)
    part_4a, part_4b = entry(results, "Part 4A"), entry(results, "Part 4B")
    assert (part_4a["score"], part_4b["score"]) == (points_4a, points_4b)
    assert (part_4a["max_score"], part_4b["max_score"]) == (12, 8)
    assert part_4a["visibility"] == part_4b["visibility"] == "after_published"
    assert reason in part_4a["output"]
    notes = entry(results, "Submitted files")["output"]  # validity is shown at once, accuracy is not
    assert ("finetuned_predictions.json: valid, 50 predictions" in notes) == reason.startswith("Accuracy")
    assert "Accuracy" not in notes and results["score"] == points_4a + points_4b


# --- commands -------------------------------------------------------------------------------------


def run_grade_command(submission: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """``python -m autograder.grade --submission SUBMISSION --out OUT OPTIONS`` from the repository."""
    command = [sys.executable, "-m", "autograder.grade", "--submission", str(submission), "--out", str(out), *options]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_grade_command_writes_results_even_when_the_grader_fails(tmp_path):
    out = tmp_path / "results" / "results.json"
    result = run_grade_command(tmp_path, out, "--bundle", str(tmp_path / "no-such-bundle"))
    assert result.returncode == 2 and "Traceback" not in result.stderr  # an operator's mistake: one line
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["score"] == 0 and "The autograder failed" in results["output"]


def test_grade_all_writes_one_result_per_student_and_a_summary(grading_bundle, tmp_path):
    solution = solution_files(grading_bundle.path)
    write_files(tmp_path / "submissions" / "alice", solution)
    write_files(tmp_path / "submissions" / "bob", {path: data for path, data in solution.items() if path != NN_UTILS})
    write_files(tmp_path / "submissions" / "carol", {NN_UTILS: b"import sklearn\n"})
    write_files(tmp_path / "submissions" / "dave", stub_files(grading_bundle.path))  # the handout, unchanged
    rows = grade_folder(tmp_path / "submissions", tmp_path / "out", grading_bundle.path, only=[])  # no test runs
    assert [row["student"] for row in rows] == ["alice", "bob", "carol", "dave"]
    with open(tmp_path / "out" / "summary.csv", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    flags = ["forbidden imports deduction", "all stubs", "stub modules", "invalid predictions"]
    names = [module.split("/")[-1] for module in stub_files(grading_bundle.path)]
    others = " ".join(name for name in names if name != NN_UTILS.split("/")[-1])
    assert [[row["student"], *(row[flag] for flag in flags)] for row in table] == [
        ["alice", "0", "no", "", ""],
        ["bob", "0", "no", NN_UTILS.split("/")[-1], ""],
        ["carol", "-10", "no", others, "4A missing; 4B missing"],
        ["dave", "0", "yes", " ".join(names), "4A missing; 4B missing"],
    ]
    bob = json.loads((tmp_path / "out" / "bob" / "results.json").read_text(encoding="utf-8"))
    assert f"{NN_UTILS} is missing" in entry(bob, "Submitted files")["output"]


def test_gradescope_zip_is_complete_and_reproducible(grading_bundle, tmp_path):
    build_zip(tmp_path / "first.zip", grading_bundle.path)
    build_zip(tmp_path / "second.zip", grading_bundle.path)
    assert (tmp_path / "first.zip").read_bytes() == (tmp_path / "second.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.zip") as archive:
        names = set(archive.namelist())
        assert {
            "setup.sh",
            "run_autograder",
            "requirements.txt",
            "autograder/grade.py",
            "bundle/manifest.json",
        } <= names
        assert archive.getinfo("run_autograder").external_attr >> 16 == 0o100755
    assert {f"bundle/{path}" for path in read_tree(grading_bundle.path) if path != BUILD_MARKER} <= names
    assert not any(name.startswith("bundle/handout/autograder") for name in names)
    assert "autograder/gallery.py" not in names  # the instructors' attacks, not the grader
