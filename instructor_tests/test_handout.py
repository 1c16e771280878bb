"""The handout: what it holds, that it leaks no solution, that it builds reproducibly, that it runs.

Every test module (public and hidden) runs once on the bare handout, in the grading bundle's
fixture (``conftest.py``); these checks read its runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from autograder.grade import read_tree
from autograder.make_handout import REPO_ROOT, build_handout, handout_files
from autograder.markers import BEGIN, END, find_blocks, strip_solutions, student_modules

# The leak check compares stripped lines. A line inside a solution block that also occurs outside
# every block (``return x``, ``else:``, ``)``) is legitimately in the handout, so only the other
# lines are checked: none may be a line of the handout. Those of at least LONG_LINE characters
# that are not part of a line outside the blocks (a docstring may spell out
# ``vocab[new_id] = vocab[left] + vocab[right]``) must not even occur inside a handout line.
LONG_LINE = 25


def text_files(tree: dict[str, bytes]) -> dict[str, str]:
    """The files of a tree that are UTF-8 text."""
    texts = {}
    for path, data in tree.items():
        try:
            texts[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def split_solution_lines() -> tuple[set[str], set[str]]:
    """Stripped lines strictly inside solution blocks and lines outside them, over the student modules."""
    inside, outside = set(), set()
    for relative in handout_files():
        if not relative.endswith(".py"):
            continue
        source = (REPO_ROOT / relative).read_text(encoding="utf-8")
        blocks = find_blocks(source, relative)
        body = {index for block in blocks for index in range(block.begin, block.end - 1)}  # 0-based
        markers = {block.begin - 1 for block in blocks} | {block.end - 1 for block in blocks}
        for index, line in enumerate(source.splitlines()):
            if index in body:
                inside.add(line.strip())
            elif index not in markers:
                outside.add(line.strip())
    return inside - {""}, outside


SOLUTION = f'''
import math


class Shape:
    """A shape."""

    def area(self) -> float:
        """Its area."""
        {BEGIN}
        return math.pi
        {END}

    {BEGIN}
    def _secret(self) -> int:
        return 1

    {END}


class Helper:
    {BEGIN}
    def only_for_the_solution(self) -> None:
        pass
    {END}


def outer() -> int:
    def inner() -> int:
        {BEGIN}
        return 2
        {END}

    return inner()


{BEGIN}
def _module_helper() -> None:
    pass


{END}
'''

STUB = '''
import math


class Shape:
    """A shape."""

    def area(self) -> float:
        """Its area."""
        raise NotImplementedError("Implement Shape.area (pkg/shapes.py)")


class Helper:
    pass


def outer() -> int:
    def inner() -> int:
        raise NotImplementedError("Implement outer.inner (pkg/shapes.py)")

    return inner()
'''


def test_blocks_in_functions_raise_and_blocks_elsewhere_vanish():
    assert strip_solutions(SOLUTION, "pkg/shapes.py") == STUB


def test_handout_holds_what_students_need_and_nothing_else(grading_bundle):
    files = set(read_tree(grading_bundle.handout))
    for needed in ("README.md", "adapters.py", "conftest.py", "requirements.txt", "pyproject.toml", "train_bpe.py"):
        assert needed in files
    for prefix in (
        "cs288_lm/",
        "tests/_snapshots/",
        "tests/fixtures/",
        "data/tinystories/",
        "data/tokenizer/",
        "configs/",
    ):
        assert any(f.startswith(prefix) for f in files), prefix
    for left_out in ("autograder/", "instructor_tests/", ".ci/", "out/", "dist/", "benchmarks/"):
        assert not any(f.startswith(left_out) for f in files), left_out
    for left_out in ("requirements-dev.txt", "data/qa/test.json", "data/tinystories/heldout.txt", "make_qa_data.py"):
        assert left_out not in files
    assert not any(f.endswith("_predictions.json") or "__pycache__" in f for f in files)
    pyproject = (grading_bundle.handout / "pyproject.toml").read_text(encoding="utf-8")
    assert 'testpaths = ["tests"]' in pyproject and "hidden" not in pyproject
    assert "[tool.ruff" in pyproject and "mypy" not in pyproject  # the linter's settings, not the type checker's
    if (REPO_ROOT / "data/qa/test_questions.json").is_file():
        questions = json.loads((grading_bundle.handout / "data/qa/test_questions.json").read_text(encoding="utf-8"))
        assert not any("answer" in question for question in questions)


def test_student_modules_become_stubs_that_name_what_to_implement(grading_bundle):
    modules = student_modules(REPO_ROOT, handout_files())
    assert {"cs288_lm/bpe.py", "cs288_lm/tokenizer.py", "cs288_lm/model.py", "cs288_lm/nn_utils.py"} <= set(modules)
    for module in modules:
        stub = (grading_bundle.handout / module).read_text(encoding="utf-8")
        assert 'NotImplementedError("Implement ' in stub, module
        assert f"({module})" in stub


def test_no_solution_line_and_no_marker_appears_in_the_handout(grading_bundle):
    inside, outside = split_solution_lines()
    secret = inside - outside
    assert len(secret) > 100  # the rule leaves most of the solution to check
    texts = text_files(read_tree(grading_bundle.handout))
    handout_lines = {line.strip() for text in texts.values() for line in text.splitlines()}
    assert sorted(secret & handout_lines) == []
    outside_text = "\n".join(outside)
    long_secrets = [line for line in secret if len(line) >= LONG_LINE and line not in outside_text]
    leaks = [(path, line) for path, text in texts.items() for line in long_secrets if line in text]
    assert leaks == []
    assert [path for path, text in texts.items() if BEGIN in text or END in text] == []


def test_handout_imports_cleanly(grading_bundle):
    handout = grading_bundle.handout
    package = sorted(  # every module of the package, sub-packages included
        ".".join(path.relative_to(handout).with_suffix("").parts).removesuffix(".__init__")
        for path in (handout / "cs288_lm").rglob("*.py")
    )
    assert "cs288_lm.pipelines.pretrain" in package and "cs288_lm.model" in package
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-c", code, "adapters", *package],
        cwd=grading_bundle.handout,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for script in grading_bundle.handout.glob("*.py"):
        compile(script.read_text(encoding="utf-8"), str(script), "exec")


def test_on_the_handout_every_test_passes_or_fails_with_not_implemented_error(grading_bundle):
    runs = grading_bundle.handout_runs
    failed = {test: run for test, run in runs.items() if run.outcome != "passed"}
    # pytest.warns and subprocess checks report their own failure, with NotImplementedError in the report.
    wrong = {test: run.message for test, run in failed.items() if "NotImplementedError" not in run.message + run.report}
    assert wrong == {}
    public = [test for test in runs if test.startswith("tests/")]
    assert sum(test in failed for test in public) > 0.9 * len(public)  # most tests exercise student code


def test_building_twice_gives_identical_bytes(tmp_path):
    build_handout(tmp_path / "first")
    build_handout(tmp_path / "second")
    assert read_tree(tmp_path / "first") == read_tree(tmp_path / "second")


def test_make_handout_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autograder.make_handout", "--out", str(tmp_path / "handout")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "cs288_lm/model.py" in result.stdout and (tmp_path / "handout" / "README.md").is_file()
    assert (
        Path(tmp_path / "handout" / "cs288_lm" / "model.py").read_text(encoding="utf-8").count("NotImplementedError")
        > 10
    )
