"""No product, benchmark, grader or CI code imports a test module.

Test modules (``tests/``, ``autograder/hidden_tests/``, ``instructor_tests/``) may import the
product; the other way round, a helper that a program or a benchmark needs belongs in the product
(``cs288_lm/``) or in the grader's library (``autograder/``). Every tracked Python file outside the
test folders is parsed, and so is the code of the notebooks; imports inside functions count too.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

TEST_PACKAGES = ("tests", "instructor_tests", "autograder.hidden_tests")
TEST_FOLDERS = tuple(f"{package.replace('.', '/')}/" for package in TEST_PACKAGES)
# (importer, test module) pairs allowed, each for a reason:
ALLOWED = {
    # The grader assigns tests to problems with the function that `pytest --problem` runs in the
    # handout (one definition). It reads the handout's problem table while building a bundle only;
    # the Gradescope zip never imports it (the zip has no tests/ package).
    ("autograder/bundle.py", "tests.problems"),
    # A pytest plugin of the bundle's reference run: it runs inside the test process and wraps the
    # check functions of tests.graded to flag values the test already held. It is part of the test
    # run, not a library user of it.
    ("autograder/held_values.py", "tests.graded"),
}


def imported_modules(source: str, path: str) -> set[str]:
    """Every module ``source`` (the file at ``path``, POSIX, from the repository root) imports by
    name: ``import a.b``, ``from a import b`` (``a.b`` where that is a module of the repository, else
    ``a``), relative imports resolved, and ``importlib.import_module("a.b")`` or ``__import__("a.b")``
    with a literal name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, path)
            found |= {_submodule_or_module(module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found - {""}


def _absolute(module: str | None, level: int, path: str) -> str:
    if level == 0:
        return module or ""
    package = path.split("/")[:-1]
    base = package[: len(package) - (level - 1)] if level - 1 <= len(package) else []
    return ".".join([*base, *([module] if module else [])])


def _submodule_or_module(module: str, name: str) -> str:
    candidate = REPO_ROOT / Path(*f"{module}.{name}".split("."))
    return f"{module}.{name}" if candidate.with_suffix(".py").is_file() or candidate.is_dir() else module


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def of_test_packages(modules: set[str]) -> set[str]:
    """Those of ``modules`` that are a test package or a module under one."""
    return {m for m in modules if any(m == package or m.startswith(f"{package}.") for package in TEST_PACKAGES)}


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, IPython's ``!`` and ``%`` lines left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("!", "%"))
    ]
    return "\n".join(lines) + "\n"


def checked_files() -> list[str]:
    """Every tracked Python file and notebook outside the test folders."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py", "*.ipynb"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return sorted(path for path in listed.split("\0") if path and not path.startswith(TEST_FOLDERS))


def test_no_code_outside_the_tests_imports_a_test_module() -> None:
    files = checked_files()
    assert "cs288_lm/models/hf_interop.py" in files and ".ci/gradescope_e2e.py" in files
    assert "benchmarks/bench_sampling.py" in files and "notebooks/walkthrough.ipynb" in files
    found = set()
    for relative in files:
        path = REPO_ROOT / relative
        source = notebook_code(path) if relative.endswith(".ipynb") else path.read_text(encoding="utf-8")
        found |= {(relative, module) for module in of_test_packages(imported_modules(source, relative))}
    assert found - ALLOWED == set()
    assert ALLOWED <= found, "an allowed import is gone: remove it from ALLOWED"


def test_the_checker_sees_every_form_of_a_test_import() -> None:
    """Guards the test above against passing vacuously, and against flagging look-alike names."""
    source = """
import tests.common
import instructor_tests.gallery as gallery
from tests import graded
from autograder import hidden_tests
from autograder.hidden_tests.textgen import DATA
import importlib


def later():
    from instructor_tests.test_model_references import llama_to_ours
    return importlib.import_module("tests.problems")


import testsuite, autograder.grade
from autograder import gallery
from cs288_lm import tests_helpers
"""
    modules = imported_modules(source, "benchmarks/bench_x.py")
    assert of_test_packages(modules) == {
        "tests.common",
        "tests.graded",
        "tests.problems",
        "instructor_tests.gallery",
        "instructor_tests.test_model_references",
        "autograder.hidden_tests",
        "autograder.hidden_tests.textgen",
    }
    relative = imported_modules("from .. import hidden_tests\nfrom .hidden_tests import x\n", "autograder/sub/x.py")
    assert of_test_packages(relative) == {"autograder.hidden_tests"}
