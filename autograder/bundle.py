"""The grading bundle: everything the grader needs besides its own code and a submission.

    python -m autograder.bundle --out dist/grader

Layout of the bundle directory (also the ``bundle/`` folder of the Gradescope zip)::

    handout/              the clean handout (what students start from), as built by make_handout
    hidden/               files added to the handout for the hidden tests: autograder/hidden_tests
                          (with their snapshots) and the instructor-only data they read
    answers/test.json     the QA test questions with answers (Part 4), when the repository has them
    grading_config.json   points per part and test module, limits, penalties (autograder/grading_config.json)
    manifest.json         the student modules and, per test module, its tests (JUnit ids) and
                          the ones that already pass on the bare handout (checks of given code)

The manifest comes from one pytest run of every test module on the bare handout: a test that
passes there does not depend on student code and earns no points; every other test is expected
to fail with NotImplementedError (``instructor_tests/test_handout.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autograder.make_handout import REPO_ROOT, handout_contents, handout_files, is_ignored, write_tree
from autograder.markers import student_modules
from autograder.sandbox import Limits, Outcome, run_pytest

GRADING_CONFIG = Path(__file__).resolve().parent / "grading_config.json"
HIDDEN_TESTS = "autograder/hidden_tests"
# Instructor-only files (left out of the handout) that the hidden tests read.
HIDDEN_DATA = ["data/tinystories/heldout.txt"]
QA_ANSWERS = "data/qa/test.json"
PUBLIC_TESTS = "tests"
MANIFEST_LIMITS = Limits(seconds=1800, memory_bytes=16 << 30, file_bytes=4 << 30)


def hidden_contents(root: Path = REPO_ROOT) -> dict[str, bytes]:
    """The files laid over the handout for the hidden tests: relative path -> bytes."""
    tests = sorted(p for p in (root / HIDDEN_TESTS).rglob("*") if p.is_file() and not p.is_symlink())
    relatives = [p.relative_to(root).as_posix() for p in tests]
    relatives = [r for r in relatives if not is_ignored(r)]
    files = {"autograder/__init__.py": b"", **{r: (root / r).read_bytes() for r in relatives}}
    files.update({r: (root / r).read_bytes() for r in HIDDEN_DATA if (root / r).is_file()})
    return dict(sorted(files.items()))


def find_test_modules(files: dict[str, bytes]) -> list[str]:
    """The test modules (``test_*.py``) of the public tests and the hidden tests among ``files``."""
    return sorted(
        path
        for path in files
        if path.split("/")[-1].startswith("test_")
        and path.endswith(".py")
        and path.rsplit("/", 1)[0] in (PUBLIC_TESTS, HIDDEN_TESTS)
    )


def module_of(test_id: str, modules: list[str]) -> str:
    """The test module a JUnit id (``tests.test_model::test_x``) belongs to."""
    classname = test_id.split("::", 1)[0]
    for module in modules:
        dotted = module.removesuffix(".py").replace("/", ".")
        if classname == dotted or classname.startswith(dotted + "."):
            return module
    raise ValueError(f"test {test_id} belongs to none of the test modules")


def run_on_handout(handout: dict[str, bytes], hidden: dict[str, bytes], modules: list[str]) -> dict[str, Outcome]:
    """Run every test module on the bare handout; outcomes by JUnit id.

    Two pytest processes, public and hidden tests, run at the same time.
    """

    def run(group: list[str]) -> dict[str, Outcome]:
        with tempfile.TemporaryDirectory(prefix="handout-run-") as work:
            write_tree({**handout, **hidden}, Path(work) / "repo")
            result = run_pytest(Path(work) / "repo", group, MANIFEST_LIMITS, traceback="no")  # --tb=no: 2x faster
        if result.problem is not None:
            raise RuntimeError(f"the tests do not run on the bare handout: {result.problem}\n{result.output_tail}")
        return result.outcomes

    groups = [
        [m for m in modules if m.startswith(f"{PUBLIC_TESTS}/")],
        [m for m in modules if m.startswith(f"{HIDDEN_TESTS}/")],
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return {
            test: outcome for outcomes in pool.map(run, [g for g in groups if g]) for test, outcome in outcomes.items()
        }


def module_manifest(outcomes: dict[str, Outcome], modules: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per module, its tests and the ones among them that pass on the bare handout ("given")."""
    manifest: dict[str, dict[str, list[str]]] = {module: {"tests": [], "given": []} for module in modules}
    for test_id, outcome in sorted(outcomes.items()):
        entry = manifest[module_of(test_id, modules)]
        entry["tests"].append(test_id)
        if outcome.passed:
            entry["given"].append(test_id)
    empty = [module for module, entry in manifest.items() if not entry["tests"]]
    if empty:
        raise RuntimeError(f"no tests were reported for {empty}")
    return manifest


def scored_tests(entry: dict[str, list[str]]) -> list[str]:
    """The tests of a manifest entry that earn points: those that fail on the bare handout."""
    return [test for test in entry["tests"] if test not in entry["given"]]


def check_config(config: dict, rules: dict, modules: list[str]) -> None:
    """The grading config must name existing test modules and parts of the rules."""
    unknown = sorted({module for weights in config["parts"].values() for module in weights} - set(modules))
    if unknown:
        raise ValueError(f"grading_config.json names test modules that do not exist: {unknown}")
    parts = sorted(set(config["parts"]) - set(rules["parts"]))
    if parts:
        raise ValueError(f"grading_config.json names parts that {config['rules']} does not have: {parts}")


def build_bundle(out: Path, root: Path = REPO_ROOT) -> dict[str, Outcome]:
    """Write the grading bundle to ``out`` (replacing it); returns the outcomes on the bare handout."""
    handout, hidden = handout_contents(root), hidden_contents(root)
    modules = find_test_modules({**handout, **hidden})
    config = json.loads(GRADING_CONFIG.read_text(encoding="utf-8"))
    check_config(config, json.loads(handout[config["rules"]]), modules)
    outcomes = run_on_handout(handout, hidden, modules)
    manifest = {
        "student_modules": student_modules(root, handout_files(root)),
        "modules": module_manifest(outcomes, modules),
    }
    pointless = [m for weights in config["parts"].values() for m in weights if not scored_tests(manifest["modules"][m])]
    if pointless:
        raise ValueError(f"these graded modules have no test that fails on the bare handout: {pointless}")
    contents = {f"handout/{path}": data for path, data in handout.items()}
    contents.update({f"hidden/{path}": data for path, data in hidden.items()})
    if (root / QA_ANSWERS).is_file():
        contents["answers/test.json"] = (root / QA_ANSWERS).read_bytes()
    contents["grading_config.json"] = GRADING_CONFIG.read_bytes()
    contents["manifest.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    write_tree(dict(sorted(contents.items())), out)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("dist/grader"), help="output directory (replaced)")
    args = parser.parse_args(argv)
    build_bundle(args.out)
    print(f"grading bundle written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
