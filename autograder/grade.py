"""Grade one submission and write Gradescope's results.json.

    python -m autograder.grade --submission DIR --out results.json [--bundle dist/grader]

Without ``--bundle`` a grading bundle is built from this repository first (about half a minute;
see :mod:`autograder.bundle`). Steps, in this order:

1. Read the bundle (handout, hidden tests, manifest, config) and the submission into memory.
   The submission's student modules (the files with solution markers in the solution, found by
   relative path or by file name anywhere in DIR) are checked statically: a file that is
   missing, not UTF-8 or does not parse is replaced by its handout stub (its tests fail, the
   others still count); imports outside requirements.txt and the standard library cost the
   configured deduction per file.
2. Part 4: the two predictions files are scored against the hidden answers with the instructor's
   ``cs288_lm/predictions.py`` (from the bundle's handout), before any submitted code runs.
3. Every test module runs in its own subprocess (:mod:`autograder.sandbox`) in a fresh copy of
   the handout with the submission laid over it; afterwards every file the submission may not
   change is compared with the bundle's bytes. A module's points are split evenly over its
   tests that fail on the bare handout (tests that pass there check given code and earn nothing).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from autograder.bundle import build_bundle, scored_tests
from autograder.imports_check import ForbiddenImport, allowed_modules, forbidden_imports
from autograder.make_handout import write_tree
from autograder.sandbox import Limits, Outcome, PytestRun, run_pytest

MAX_LISTED_FAILURES = 25
PUBLIC, HIDDEN = "visible", "after_published"
SKIPPED_DIRECTORIES = {"__MACOSX", "__pycache__", ".git", ".venv"}


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root``: sorted POSIX relative path -> bytes."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@dataclass(frozen=True)
class Bundle:
    """The grading bundle, read into memory before any submitted code runs."""

    handout: dict[str, bytes]
    hidden: dict[str, bytes]
    manifest: dict
    config: dict
    answers: bytes | None

    @classmethod
    def load(cls, root: Path) -> Bundle:
        answers = root / "answers" / "test.json"
        return cls(
            handout=read_tree(root / "handout"),
            hidden=read_tree(root / "hidden"),
            manifest=json.loads((root / "manifest.json").read_text(encoding="utf-8")),
            config=json.loads((root / "grading_config.json").read_text(encoding="utf-8")),
            answers=answers.read_bytes() if answers.is_file() else None,
        )

    @property
    def rules(self) -> dict:
        """The course's grading rules (points per part, Part 4 thresholds): the handout's copy."""
        return json.loads(self.handout[self.config["rules"]])


@dataclass
class Submission:
    """The files graded: every student module (submitted, or the stub) and the predictions files."""

    modules: dict[str, bytes]
    predictions: dict[str, bytes | None]
    notes: list[str] = field(default_factory=list)
    forbidden: list[ForbiddenImport] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """One Gradescope test: a test module and the points it is worth."""

    name: str
    module: str
    max_score: float

    @property
    def hidden(self) -> bool:
        return not self.module.startswith("tests/")


def submitted_files(directory: Path) -> list[str]:
    """The regular files of a submission (no symlinks, no caches), as sorted POSIX paths."""
    found = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRECTORIES]
        relative = Path(folder).relative_to(directory)
        found += [(relative / name).as_posix() for name in files if not (Path(folder) / name).is_symlink()]
    return sorted(found)


def find_submitted(target: str, files: list[str], by_name: bool) -> tuple[str | None, str | None]:
    """The submitted file for ``target`` (by path suffix, else by file name) and a note if ambiguous."""
    matches = [f for f in files if f == target or f.endswith("/" + target)]
    if not matches and by_name:
        matches = [f for f in files if f.split("/")[-1] == target.split("/")[-1]]
    if not matches:
        return None, None
    chosen = min(matches, key=lambda f: (f.count("/"), f))
    note = f"{target}: several files match ({', '.join(matches)}); graded {chosen}" if len(matches) > 1 else None
    return chosen, note


def check_module(path: str, data: bytes, allowed: frozenset[str]) -> tuple[str | None, list[ForbiddenImport]]:
    """Why a submitted module cannot be used (not UTF-8, does not parse), and its forbidden imports."""
    try:
        source = data.decode("utf-8")
        ast.parse(source, filename=path)
    except UnicodeDecodeError as error:
        return f"{path} is not UTF-8 text ({error.reason} at byte {error.start})", []
    except (SyntaxError, ValueError) as error:
        where = f" at line {error.lineno}" if getattr(error, "lineno", None) else ""
        return f"{path} does not parse: {type(error).__name__}{where}: {getattr(error, 'msg', error)}", []
    return None, forbidden_imports(source, path, allowed)


def choose_module(
    module: str, directory: Path, found: str | None, bundle: Bundle, allowed: frozenset[str]
) -> tuple[bytes, str, list[ForbiddenImport]]:
    """The bytes graded for a student module (submitted, or the stub if unusable), a note, its forbidden imports."""
    max_bytes = bundle.config["max_submitted_file_kb"] * 1024
    if found is None:
        problem, forbidden = f"{module} is missing", []
    elif (directory / found).stat().st_size > max_bytes:
        problem, forbidden = f"{module} is larger than {max_bytes // 1024} KB", []
    else:
        problem, forbidden = check_module(module, (directory / found).read_bytes(), allowed)
    if problem:
        return bundle.handout[module], f"{problem}: graded as the unimplemented handout stub", []
    return (directory / found).read_bytes(), f"{module}: graded {found}", forbidden


def read_submission(directory: Path, bundle: Bundle) -> Submission:
    """Choose the file graded for every student module and read the predictions files."""
    files = submitted_files(directory)
    students = bundle.manifest["student_modules"]
    names = [module.split("/")[-1] for module in students]
    allowed = allowed_modules(bundle.handout["requirements.txt"].decode("utf-8"))
    submission = Submission(modules={}, predictions={})
    for module in students:
        found, ambiguity = find_submitted(module, files, by_name=names.count(module.split("/")[-1]) == 1)
        data, note, forbidden = choose_module(module, directory, found, bundle, allowed)
        submission.modules[module] = data
        submission.notes += [ambiguity, note] if ambiguity else [note]
        submission.forbidden += forbidden
    for key, spec in bundle.config["part4"]["predictions"].items():
        found, ambiguity = find_submitted(spec["file"], files, by_name=True)
        submission.notes += [ambiguity] if ambiguity else []
        small = (
            found is not None and (directory / found).stat().st_size <= bundle.config["max_submitted_file_kb"] * 1024
        )
        submission.predictions[key] = (directory / found).read_bytes() if small else None
    return submission


def problems(bundle: Bundle, only: list[str] | None) -> list[Problem]:
    """The test modules to run, with their points; modules no part names are worth 0 (feedback)."""
    listed: list[Problem] = []
    for part, weights in bundle.config["parts"].items():
        rule = bundle.rules["parts"][part]
        for module, weight in weights.items():
            label = module if module.startswith("tests/") else f"hidden tests ({module.split('/')[-1]})"
            points = rule["points"] * weight / sum(weights.values())
            listed.append(Problem(f"Part {part} ({rule['title']}): {label}", module, points))
    if bundle.config["feedback_modules"]:
        named = {problem.module for problem in listed}
        listed += [Problem(f"Feedback, no points: {m}", m, 0.0) for m in bundle.manifest["modules"] if m not in named]
    return [problem for problem in listed if only is None or problem.module in only]


def changed_files(work_dir: Path, expected: dict[str, bytes]) -> list[str]:
    """The files of ``expected`` that are missing or different in ``work_dir``."""
    changed = []
    for relative, data in expected.items():
        path = work_dir / relative
        if path.is_symlink() or not path.is_file() or path.read_bytes() != data:
            changed.append(relative)
    return changed


def run_module(problem: Problem, bundle: Bundle, submission: Submission, limits: Limits) -> tuple[PytestRun, list[str]]:
    """Run one test module on the submission in a fresh directory; the run and the files it changed."""
    protected = {**bundle.handout, **(bundle.hidden if problem.hidden else {})}
    for module in submission.modules:
        protected.pop(module)
    with tempfile.TemporaryDirectory(prefix="submission-") as work:
        os.chmod(work, 0o711)  # a sandbox user may enter it (run_pytest hands it the work directory)
        work_dir = Path(work) / "repo"
        write_tree({**protected, **submission.modules}, work_dir)
        run = run_pytest(work_dir, [problem.module], limits)
        return run, changed_files(work_dir, protected)


def module_entry(problem: Problem, bundle: Bundle, run: PytestRun, changed: list[str]) -> dict:
    """The Gradescope test entry of one module."""
    scored = scored_tests(bundle.manifest["modules"][problem.module])
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        reason = f"No points: the submission changed or deleted files it may not touch ({shown})."
    else:
        reason = f"No test results: {run.problem}." if run.problem else None
    outcomes = {} if reason else run.outcomes
    passed = [test for test in scored if outcomes.get(test, Outcome(False)).passed]
    failed = [test for test in scored if test not in passed]
    lines = [f"{len(passed)}/{len(scored)} tests passed."]
    if reason:
        lines.append(reason)
        if not problem.hidden and run.output_tail.strip():
            lines.append("End of the test output:\n" + run.output_tail[-1500:])
    elif failed:
        lines.append("Failed:")
        for test in failed[:MAX_LISTED_FAILURES]:
            why = outcomes[test].message if test in outcomes else "not reported (the run crashed or skipped it)"
            lines.append(f"  {test.split('::', 1)[1]}: {why[:300]}")
        if len(failed) > MAX_LISTED_FAILURES:
            lines.append(f"  ... and {len(failed) - MAX_LISTED_FAILURES} more")
    return {
        "name": problem.name,
        "score": round(problem.max_score * len(passed) / len(scored), 2) if scored else 0.0,
        "max_score": round(problem.max_score, 2),
        "output": "\n".join(lines),
        "visibility": HIDDEN if problem.hidden else PUBLIC,
    }


def files_entry(submission: Submission) -> dict:
    """A visible, pointless entry that says which file was graded for each student module."""
    return {
        "name": "Submitted files",
        "score": 0,
        "max_score": 0,
        "output": "\n".join(submission.notes),
        "visibility": PUBLIC,
    }


def imports_entry(submission: Submission, deduction: float) -> dict:
    """The import check: the configured deduction for every file with a forbidden import."""
    files = sorted({item.path for item in submission.forbidden})
    if files:
        output = "\n".join(
            [f"-{deduction:g} points for each file importing packages outside requirements.txt:"]
            + [str(item) for item in submission.forbidden]
        )
    else:
        output = "Every import is from the standard library, requirements.txt or cs288_lm."
    return {
        "name": "Allowed imports",
        "score": -deduction * len(files),
        "max_score": 0,
        "output": output,
        "visibility": PUBLIC,
    }


def instructor_predictions(handout_root: Path) -> ModuleType:
    """The instructor's ``cs288_lm/predictions.py``, loaded from the bundle's handout by path."""
    spec = importlib.util.spec_from_file_location("grader_predictions", handout_root / "cs288_lm" / "predictions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def part4_entries(bundle: Bundle, submission: Submission, handout_root: Path) -> list[dict]:
    """Parts 4A and 4B: the predictions files scored against the hidden answers.

    Whether each file is valid is said at once in the submitted-files notes; the accuracy and the
    points go to entries with the configured visibility (by default shown after publication, so
    that the test set cannot be probed by resubmitting).
    """
    if bundle.answers is None:
        return []
    config, rules = bundle.config["part4"], bundle.rules["part4"]
    predictions = instructor_predictions(handout_root)
    questions = json.loads(bundle.answers)
    accuracies: dict[str, float | None] = {}
    outputs: dict[str, str] = {}
    for key, spec in config["predictions"].items():
        data, name = submission.predictions[key], spec["file"]
        try:
            if data is None:
                raise predictions.PredictionsError(f"{name} is missing")
            try:
                records = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise predictions.PredictionsError(f"{name}: not valid JSON ({error})") from None
            graded = predictions.validate_predictions(records, questions, source=name)
        except predictions.PredictionsError as error:
            accuracies[key], outputs[key] = None, f"{error}: 0 points"
            submission.notes.append(f"{error}: Part {key} earns 0 points")
            continue
        accuracies[key] = predictions.accuracy(graded, questions)
        outputs[key] = f"Accuracy on the {len(questions)} test questions: {accuracies[key]:.2%}"
        submission.notes.append(f"{name}: valid, {len(graded)} predictions")
    points = predictions.part4_points(accuracies["4A"], accuracies["4B"], bundle.rules)
    return [
        {
            "name": spec["name"],
            "score": round(points[key], 2),
            "max_score": rules[spec["rule"]]["points"],
            "output": outputs[key],
            "visibility": config["visibility"],
        }
        for key, spec in config["predictions"].items()
    ]


def limits_from(config: dict, seconds: float | None, memory_mb: int | None, user: str | None) -> Limits:
    """The sandbox limits: the config's, with command-line overrides."""
    limits = config["limits"]
    return Limits(
        seconds=seconds or limits["seconds_per_module"],
        memory_bytes=(memory_mb or limits["memory_mb"]) << 20,
        file_bytes=limits["file_size_mb"] << 20,
        user=user,
    )


def grade(submission_dir: Path, bundle_dir: Path, limits: Limits, only: list[str] | None = None, jobs: int = 1) -> dict:
    """Grade ``submission_dir`` with the bundle at ``bundle_dir``; returns results.json's content.

    ``jobs`` test modules run at the same time (each under ``limits``).
    """
    if limits.user and jobs > 1:
        raise ValueError("a sandbox user's leftover processes are all killed after each module: use jobs=1")
    bundle = Bundle.load(bundle_dir)
    submission = read_submission(submission_dir, bundle)
    part4 = part4_entries(bundle, submission, bundle_dir / "handout")  # before any submitted code runs
    checks = [
        files_entry(submission),
        imports_entry(submission, bundle.config["forbidden_imports"]["deduction_per_file"]),
    ]

    def entry(problem: Problem) -> dict:
        return module_entry(problem, bundle, *run_module(problem, bundle, submission, limits))

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        modules = list(pool.map(entry, problems(bundle, only)))
    graded, feedback = [e for e in modules if e["max_score"] > 0], [e for e in modules if e["max_score"] == 0]
    tests = [*checks, *graded, *part4, *feedback]
    score = round(max(0.0, sum(entry["score"] for entry in tests)), 2)
    return {"score": score, "output": summary(tests, score), "tests": tests}


def summary(tests: list[dict], score: float) -> str:
    """The results page's header: the total and the points per entry that has any."""
    lines = [f"Total: {score:g} points."]
    lines += [
        f"  {t['name']}: {t['score']:g}/{t['max_score']:g}"
        for t in tests
        if t["max_score"] and t["visibility"] == PUBLIC
    ]
    lines.append("Hidden tests and Part 4 are shown once grades are published.")
    return "\n".join(lines)


def failure_results(error: BaseException) -> dict:
    """results.json when the grader itself fails: no points, and a message for the course staff."""
    return {
        "score": 0,
        "output": f"The autograder failed ({type(error).__name__}: {error}). Please tell the course staff.",
        "tests": [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submission", type=Path, required=True, help="directory with the submitted files")
    parser.add_argument("--out", type=Path, required=True, help="where to write results.json")
    parser.add_argument("--bundle", type=Path, help="grading bundle (default: build one from this repository)")
    parser.add_argument(
        "--only", nargs="+", metavar="MODULE", help="run only these test modules (e.g. tests/test_nn_utils.py)"
    )
    parser.add_argument("--time-limit", type=float, help="seconds per test module (default: from the config)")
    parser.add_argument("--memory-mb", type=int, help="address-space limit per test process (default: from the config)")
    parser.add_argument("--sandbox-user", help="when run as root, run the tests as this dedicated user")
    parser.add_argument("--jobs", type=int, default=1, help="test modules run at the same time (default: 1)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="bundle-") as temporary:
            bundle_dir = args.bundle
            if bundle_dir is None:
                print("building the grading bundle (runs every test on the bare handout) ...")
                bundle_dir = Path(temporary) / "bundle"
                build_bundle(bundle_dir)
            config = json.loads((bundle_dir / "grading_config.json").read_text(encoding="utf-8"))
            limits = limits_from(config, args.time_limit, args.memory_mb, args.sandbox_user)
            results, status = grade(args.submission, bundle_dir, limits, args.only, args.jobs), 0
    except Exception as error:  # never leave Gradescope without a results.json
        traceback.print_exc()
        results, status = failure_results(error), 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(results["output"])
    return status


if __name__ == "__main__":
    sys.exit(main())
