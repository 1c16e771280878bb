"""The autograder: the reference solution earns every point, the bare handout none, and a gallery
of bad submissions earns nothing it did not earn, always with a valid results.json and a reason.

Only the reference solution is graded on every test module. The gallery is graded on one small
module (tests/test_nn_utils.py) with short limits, several submissions at a time, which is
enough: every module runs through the same sandbox, and a module's points depend only on its
own run.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder.build_zip import build_zip
from autograder.grade import Bundle, find_submitted, grade, read_submission, read_tree
from autograder.grade_all import grade_folder
from autograder.imports_check import allowed_modules, forbidden_imports
from autograder.make_handout import REPO_ROOT
from autograder.markers import strip_solutions
from autograder.sandbox import Limits
from cs288_lm import predictions

GALLERY_MODULE = "tests/test_nn_utils.py"
NN_UTILS = "cs288_lm/nn_utils.py"
LIMITS = Limits(seconds=120, memory_bytes=4 << 30, file_bytes=256 << 20)
PREDICTIONS = ("finetuned_predictions.json", "prompting_predictions.json")


def solution_files(bundle: Path) -> dict[str, bytes]:
    """The reference solution's student modules (and shipped predictions, if any), by relative path."""
    modules = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["student_modules"]
    files = {module: (REPO_ROOT / module).read_bytes() for module in modules}
    files.update({name: (REPO_ROOT / name).read_bytes() for name in PREDICTIONS if (REPO_ROOT / name).is_file()})
    return files


def write_files(directory: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
    return directory


def entry(results: dict, prefix: str) -> dict:
    (found,) = [test for test in results["tests"] if test["name"].startswith(prefix)]
    return found


def module_entry(results: dict, module: str) -> dict:
    (found,) = [
        test
        for test in results["tests"]
        if test["name"].endswith(module) or f"({module.split('/')[-1]})" in test["name"]
    ]
    return found


def assert_valid_results(results: dict) -> None:
    """Gradescope's format: a score, and tests with name, score, max_score, output and visibility."""
    json.dumps(results)
    assert isinstance(results["score"], (int, float)) and results["score"] >= 0
    assert isinstance(results["output"], str)
    for test in results["tests"]:
        assert set(test) == {"name", "score", "max_score", "output", "visibility"}
        assert test["visibility"] in ("visible", "after_published")
        assert test["score"] <= test["max_score"] + 1e-9


# --- the reference solution and the bare handout ------------------------------------------------


@pytest.fixture(scope="module")
def solution_results(grading_bundle, tmp_path_factory) -> dict:
    """The reference solution, laid out like a cloned repository, graded on every module."""
    submission = write_files(tmp_path_factory.mktemp("solution") / "my-repo", solution_files(grading_bundle.path))
    return grade(submission.parent, grading_bundle.path, LIMITS, jobs=2)


def expected_part4_points() -> dict[str, float]:
    """What the repository's predictions files (if any) earn, computed directly with cs288_lm.predictions."""
    questions = json.loads((REPO_ROOT / "data/qa/test.json").read_text(encoding="utf-8"))
    accuracies = [
        predictions.accuracy(predictions.load_predictions(REPO_ROOT / name, questions), questions)
        if (REPO_ROOT / name).is_file()
        else None
        for name in PREDICTIONS
    ]
    return predictions.part4_points(*accuracies, predictions.load_grading_rules())


@pytest.mark.slow  # grades every test module in its own process: about a minute
def test_solution_earns_every_point(solution_results):
    assert_valid_results(solution_results)
    graded = [test for test in solution_results["tests"] if test["max_score"] > 0 and "Part 4" not in test["name"]]
    assert [t["name"] for t in graded if t["score"] != t["max_score"]] == []
    assert sum(t["max_score"] for t in graded) == 100
    part4 = expected_part4_points()
    assert (entry(solution_results, "Part 4A")["score"], entry(solution_results, "Part 4B")["score"]) == (
        round(part4["4A"], 2),
        round(part4["4B"], 2),
    )
    assert solution_results["score"] == round(100 + part4["4A"] + part4["4B"], 2)
    assert "graded as the unimplemented handout stub" not in entry(solution_results, "Submitted files")["output"]
    assert entry(solution_results, "Allowed imports")["score"] == 0
    for test in solution_results["tests"]:  # the modules worth no points pass too
        if test["name"].startswith("Feedback"):
            passed, total = re.match(r"(\d+)/(\d+) tests passed", test["output"]).groups()
            assert passed == total, test["name"]


@pytest.mark.slow
def test_hidden_tests_are_shown_after_publication_only(solution_results):
    for test in solution_results["tests"]:
        if "hidden tests" in test["name"] or "hidden_tests/" in test["name"]:
            assert test["visibility"] == "after_published", test["name"]
        elif "tests/" in test["name"]:
            assert test["visibility"] == "visible", test["name"]


def test_bare_handout_earns_nothing(grading_bundle):
    # By construction a module's points go only to tests that fail on the bare handout (the
    # manifest comes from a run on it); grading the handout checks it end to end on one module.
    manifest = json.loads((grading_bundle.path / "manifest.json").read_text(encoding="utf-8"))
    for module, tests in manifest["modules"].items():
        scored = set(tests["tests"]) - set(tests["given"])
        assert all(not grading_bundle.handout_outcomes[test].passed for test in scored), module
    results = grade(grading_bundle.handout, grading_bundle.path, LIMITS, [GALLERY_MODULE])
    assert_valid_results(results)
    assert results["score"] == 0
    assert all(test["score"] == 0 for test in results["tests"])


# --- the gallery of bad submissions --------------------------------------------------------------


def replace_nn_utils(text: str) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    return lambda files: {**files, NN_UTILS: text.encode()}


def prepend_to_nn_utils(code: str) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    """Put ``code`` right after the module docstring and ``from __future__`` import of nn_utils.py."""

    def edit(files: dict[str, bytes]) -> dict[str, bytes]:
        source = files[NN_UTILS].decode()
        anchor = "from __future__ import annotations\n"
        return {**files, NN_UTILS: source.replace(anchor, anchor + code + "\n", 1).encode()}

    return edit


def without_nn_utils(files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if path != NN_UTILS}


def stub_printing(text: str) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    """The unimplemented handout stub of nn_utils.py, printing ``text`` when imported."""
    stub = strip_solutions((REPO_ROOT / NN_UTILS).read_text(encoding="utf-8"), NN_UTILS)
    return replace_nn_utils(f"{stub}\nprint({text!r}, flush=True)\n")


FAKE_SUCCESS = "tests/test_nn_utils.py ........... [100%]\n============ 11 passed in 0.05s ============"
# name -> (edit of the solution's files, time limit in seconds, what the module's output says)
GALLERY: dict[str, tuple[Callable[[dict[str, bytes]], dict[str, bytes]], float, str]] = {
    "infinite_loop_at_import": (prepend_to_nn_utils("while True:\n    pass"), 6, "time limit of 6 s was exceeded"),
    "memory_bomb_at_import": (
        prepend_to_nn_utils("_hoard = [bytearray(10**8) for _ in range(10**6)]"),
        120,
        "MemoryError",
    ),
    "sys_exit_0_at_import": (prepend_to_nn_utils("import sys\nsys.exit(0)"), 120, "internal error"),
    "os_exit_0_at_import": (prepend_to_nn_utils("import os\nos._exit(0)"), 120, "exited without a report"),
    "fake_pytest_output": (stub_printing(FAKE_SUCCESS), 120, "NotImplementedError: Implement"),
    "fake_output_then_os_exit": (
        prepend_to_nn_utils(f"import os\nprint({FAKE_SUCCESS!r}, flush=True)\nos._exit(0)"),
        120,
        "exited without a report",
    ),
    "deletes_tests_at_import": (
        prepend_to_nn_utils(
            "import shutil\nshutil.rmtree('tests/_snapshots')\nimport os\nos.remove('tests/common.py')"
        ),
        120,
        "changed or deleted files it may not touch (tests/_snapshots/",
    ),
    "edits_tests_at_import": (
        prepend_to_nn_utils("open('tests/test_nn_utils.py', 'w').write('def test_nothing():\\n    pass\\n')"),
        120,
        "changed or deleted files it may not touch (tests/test_nn_utils.py)",
    ),
}
# Files that cannot be used are replaced by the handout stub, which earns nothing
# (test_bare_handout_earns_nothing); these need no run. name -> (edit, what the files note says)
UNUSABLE: dict[str, tuple[Callable[[dict[str, bytes]], dict[str, bytes]], str]] = {
    "syntax_error": (replace_nn_utils("def softmax(x:\n    return x\n"), "does not parse: SyntaxError at line 1"),
    "not_utf8": (lambda files: {**files, NN_UTILS: b"x = '\xff'\n"}, "is not UTF-8"),
    "missing_file": (without_nn_utils, "is missing"),
}


def loose_solution_files(bundle: Path) -> dict[str, bytes]:
    """The solution's Python files uploaded as loose files (by name), as on Gradescope."""
    return {path.split("/")[-1]: data for path, data in solution_files(bundle).items() if path.endswith(".py")}


def edited(files: dict[str, bytes], edit: Callable[[dict[str, bytes]], dict[str, bytes]]) -> dict[str, bytes]:
    """Apply an edit written for ``cs288_lm/nn_utils.py`` to loose files."""
    nested = {NN_UTILS if name == "nn_utils.py" else name: data for name, data in files.items()}
    return {path.split("/")[-1]: data for path, data in edit(nested).items()}


@pytest.fixture(scope="module")
def gallery_results(grading_bundle, tmp_path_factory) -> dict[str, dict]:
    """Every gallery submission graded on the gallery module, two at a time."""
    solution = loose_solution_files(grading_bundle.path)

    def grade_case(name: str) -> dict:
        edit, seconds, _ = GALLERY[name]
        submission = write_files(tmp_path_factory.mktemp(name), edited(solution, edit))
        limits = Limits(seconds=seconds, memory_bytes=4 << 30, file_bytes=64 << 20)
        return grade(submission, grading_bundle.path, limits, [GALLERY_MODULE])

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(GALLERY, pool.map(grade_case, GALLERY), strict=True))


@pytest.mark.parametrize("case", GALLERY)
def test_bad_submission_gets_zero_and_a_reason(gallery_results, case):
    results = gallery_results[case]
    assert_valid_results(results)
    assert results["score"] == 0
    module = module_entry(results, GALLERY_MODULE)
    assert module["score"] == 0 and module["max_score"] > 0
    assert GALLERY[case][2] in module["output"]


@pytest.mark.parametrize("case", UNUSABLE)
def test_unusable_file_is_graded_as_the_stub(grading_bundle, tmp_path, case):
    edit, reason = UNUSABLE[case]
    submission = write_files(tmp_path, edited(loose_solution_files(grading_bundle.path), edit))
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
    assert module_entry(results, GALLERY_MODULE)["score"] == 4  # the tests still ran (requests is never imported)
    assert results["score"] == 0  # 4 - 10, and never below 0


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
    (bundle / "answers").mkdir(exist_ok=True)
    (bundle / "answers" / "test.json").write_text(json.dumps(questions), encoding="utf-8")
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
        (b"[{'id': 'q0'", predictions_json(30), 0.0, 0.0, "finetuned_predictions.json: not valid JSON"),  # 4B needs 4A
        (
            predictions_json(50)[:-1] + b', {"id": "q0", "prediction": 1}]',
            None,
            0.0,
            0.0,
            "entry 50: id 'q0' appears more than once",
        ),
        (None, predictions_json(50), 0.0, 0.0, "finetuned_predictions.json is missing"),
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


def test_grade_command_writes_results_even_when_the_grader_fails(tmp_path):
    out = tmp_path / "results" / "results.json"
    command = [
        sys.executable,
        "-m",
        "autograder.grade",
        "--submission",
        str(tmp_path),
        "--out",
        str(out),
        "--bundle",
        str(tmp_path / "no-such-bundle"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["score"] == 0 and "The autograder failed" in results["output"]


def test_grade_all_writes_one_result_per_student_and_a_summary(grading_bundle, tmp_path):
    solution = solution_files(grading_bundle.path)
    write_files(tmp_path / "submissions" / "alice", solution)
    write_files(tmp_path / "submissions" / "bob", {path: data for path, data in solution.items() if path != NN_UTILS})
    write_files(tmp_path / "submissions" / "carol", {NN_UTILS: b"import sklearn\n"})
    rows = grade_folder(tmp_path / "submissions", tmp_path / "out", grading_bundle.path, only=[])  # no test runs
    assert [row["student"] for row in rows] == ["alice", "bob", "carol"]
    with open(tmp_path / "out" / "summary.csv", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    assert [(row["student"], row["Allowed imports"]) for row in table] == [
        ("alice", "0"),
        ("bob", "0"),
        ("carol", "-10"),
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
    assert {f"bundle/{path}" for path in read_tree(grading_bundle.path)} <= names
    assert not any(name.startswith("bundle/handout/autograder") for name in names)
