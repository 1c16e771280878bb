"""Grade one submission and write Gradescope's results.json.

    python -m autograder.grade --submission DIR --out results.json [--bundle dist/grader] [--duplicates shallowest]

Without ``--bundle`` the cached grading bundle of this repository is used, built first if this
repository's files changed (see :func:`autograder.bundle.cached_bundle`). Steps, in this order:

1. Read the bundle (handout, hidden tests, the reference records, snapshots, answers) and the
   submission into memory. The submission's student modules (the files with solution markers in
   the solution, found by relative path or by file name anywhere in DIR) are checked statically:
   a file that is missing, declares an encoding other than UTF-8 (read as Python reads it: BOM,
   PEP 263 cookie), is not UTF-8 or does not parse is replaced by its handout stub (its tests
   fail, the others still count); imports outside requirements.txt and the standard library cost
   the configured deduction per file; dynamic imports and tampering APIs are flagged for the
   instructors (never a deduction).
2. Part 4: the two predictions files are parsed defensively and scored against the hidden answers
   with the instructor's ``cs288_lm/common/predictions.py`` (from the bundle), before any submitted code
   runs. A bad file earns 0 for its own part.
3. Every test module runs in its own sandboxed process (:mod:`autograder.sandbox`) in a fresh copy
   of the handout with the submission laid over it. The process only records values
   (``tests/graded.py``); this process judges them against the reference records
   (:mod:`autograder.judge`). Points go to the problems of ``grading_config.json``, public and
   hidden separately, each split evenly over its tests that fail on the bare handout.
4. Every process of the submission is gone before results.json is written, atomically.
"""

from __future__ import annotations

import argparse
import dataclasses

# Imported now, though first used while judging: once a test process has run, the grader imports
# nothing more from disk, where a submission might have written (instructor_tests/test_sandbox.py).
import encodings.cp437  # noqa: F401 (zip member names, as np.load reads an .npz snapshot)
import functools
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile  # noqa: F401 (np.load of an .npz snapshot; see encodings.cp437 above)
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from autograder.bundle import (
    cached_bundle,
    is_public,
    load_reference,
    scored_tests,
    snapshot_loader,
    trusted_snapshots,
)
from autograder.imports_check import (
    DeclaredEncoding,
    ForbiddenImport,
    ReviewFlag,
    allowed_modules,
    forbidden_imports,
    python_source,
    review_flags,
)
from autograder.judge import Stream, Verdict, check_messages, judge_stream, parse_stream
from autograder.make_handout import REPO_ROOT, BuildError, write_tree
from autograder.problems import dependencies
from autograder.sandbox import (
    Limits,
    PytestRun,
    become_subreaper,
    grading_problem,
    removed_after,
    run_pytest,
    share_of_cores,
)
from autograder.strip_expected import parse_source, sandbox_tree

MAX_LISTED_FAILURES = 25
PUBLIC, HIDDEN, INSTRUCTORS = "visible", "after_published", "hidden"
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
    secret: dict[str, bytes]
    manifest: dict
    config: dict

    @classmethod
    def load(cls, root: Path) -> Bundle:
        return cls(
            handout=read_tree(root / "handout"),
            hidden=read_tree(root / "hidden"),
            secret=read_tree(root / "secret"),
            manifest=json.loads((root / "manifest.json").read_text(encoding="utf-8")),
            config=json.loads((root / "grading_config.json").read_text(encoding="utf-8")),
        )

    @property
    def rules(self) -> dict:
        """The course's grading rules (points per part, Part 4 thresholds): the handout's copy."""
        return json.loads(self.handout[self.config["rules"]])

    @property
    def answers(self) -> bytes | None:
        return self.secret.get("answers/test.json")

    def reference(self, module: str) -> Stream:
        """The reference solution's records for ``module``."""
        return load_reference(self.secret[f"reference/{module}.jsonl"])

    @functools.cached_property
    def messages(self) -> dict[str, str]:
        """The test modules' own words for their checks (``message=``), by site: from the bundle's copy
        of the tests, never from what a test process records."""
        modules = self.manifest["modules"]
        return check_messages({module: self.handout.get(module, self.hidden.get(module, b"")) for module in modules})

    def snapshots(self, module: str):
        """The grader's copy of ``module``'s snapshots, by name."""
        hidden = {p.removeprefix("snapshots/"): d for p, d in self.secret.items() if p.startswith("snapshots/")}
        return snapshot_loader(module, trusted_snapshots(self.handout, hidden))


@dataclass
class Submission:
    """The files graded: every student module (submitted, or the stub) and the predictions files."""

    modules: dict[str, bytes]
    predictions: dict[str, bytes | None]
    notes: list[str] = field(default_factory=list)
    forbidden: list[ForbiddenImport] = field(default_factory=list)
    flags: list[ReviewFlag] = field(default_factory=list)


class UsageError(Exception):
    """An operator's mistake (a path, a flag, a folder that is not what it should be): one line that
    says what is wrong and what to do; the command exits with status 2."""


class SubmissionError(UsageError):
    """A submission folder that cannot be graded as it stands (no student file, several copies of
    one). Its line also goes into the results.json written for it, where the student reads it."""


DUPLICATES = ("refuse", "shallowest")  # what to do with several copies of one file (``--duplicates``)


def student_folders(submissions: Path) -> list[Path]:
    """The students' folders of a folder of submissions: every subfolder but hidden ones and archive
    debris (``__MACOSX``, caches), sorted by name."""
    skipped = SKIPPED_DIRECTORIES
    return sorted(p for p in submissions.iterdir() if p.is_dir() and p.name not in skipped and p.name[:1] != ".")


def submitted_files(directory: Path) -> list[str]:
    """The regular files of a submission (no links, pipes or devices; no caches), as sorted POSIX paths."""
    found = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRECTORIES]
        relative = Path(folder).relative_to(directory)
        found += [(relative / name).as_posix() for name in files if stat.S_ISREG(os.lstat(Path(folder) / name).st_mode)]
    return sorted(found)


def irregular_entries(directory: Path) -> list[str]:
    """The entries of a submission that are not regular files or folders (symbolic links, pipes,
    devices): never read, and named in the results so that "missing" is not a puzzle."""
    found = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRECTORIES]
        relative = Path(folder).relative_to(directory)
        for name in [*files, *(d for d in subfolders if (Path(folder) / d).is_symlink())]:
            if not stat.S_ISREG(os.lstat(Path(folder) / name).st_mode):
                found.append((relative / name).as_posix())
    return sorted(found)


def matching_files(target: str, files: list[str], by_name: bool) -> list[str]:
    """The files that can be ``target``: by path suffix (``cs288-main/cs288_lm/model.py`` is
    ``cs288_lm/model.py``, as uploads one folder down are), else by file name; shallowest first."""
    matches = [f for f in files if f == target or f.endswith("/" + target)]
    if not matches and by_name:
        matches = [f for f in files if f.split("/")[-1] == target.split("/")[-1]]
    return sorted(matches, key=lambda f: (f.count("/"), f))


def find_submitted(target: str, files: list[str], by_name: bool) -> tuple[str | None, str | None]:
    """The submitted file for ``target`` (the shallowest match) and a note if several match."""
    matches = matching_files(target, files, by_name)
    if not matches:
        return None, None
    note = None
    if len(matches) > 1:
        note = (
            f"{target}: several files match ({', '.join(matches)}); graded {matches[0]}, the shallowest. "
            "If you meant another, resubmit with only that copy"
        )
    return matches[0], note


def top_level_entries(directory: Path, limit: int = 8) -> str:
    """What ``directory`` holds at its top level, for a message: ``a.txt, notes/ (and 3 more)``."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    if not entries:
        return "nothing (it is empty)"
    more = f" (and {len(entries) - limit} more)" if len(entries) > limit else ""
    return ", ".join(entries[:limit]) + more


def graded_files(bundle: Bundle) -> list[tuple[str, bool]]:
    """Every file a submission is searched for: the student modules (by name too where no other
    student module has that name) and the predictions files (by name)."""
    students = bundle.manifest["student_modules"]
    names = [module.split("/")[-1] for module in students]
    modules = [(module, names.count(module.split("/")[-1]) == 1) for module in students]
    return modules + [(spec["file"], True) for spec in bundle.config["part4"]["predictions"].values()]


def check_submission_folder(directory: Path, files: list[str], bundle: Bundle, duplicates: str) -> None:
    """Refuse (:class:`SubmissionError`) a folder that is missing, holds none of the graded files,
    or (with ``duplicates="refuse"``) holds several copies of one."""
    if not directory.is_dir():
        problem = "is a file, not a folder" if directory.exists() else "does not exist"
        raise SubmissionError(f"{directory} {problem}: give the folder that holds the submission")
    found = {target: matching_files(target, files, by_name) for target, by_name in graded_files(bundle)}
    if not any(found.values()) and any(name.lower().endswith(".zip") for name in files):
        zips = ", ".join(name for name in files if name.lower().endswith(".zip"))
        raise SubmissionError(
            f"no file of the assignment in {directory}, only a zip ({zips}): unzip it and grade the folder it makes"
        )
    if not any(found.values()):
        links = irregular_entries(directory)
        students = bundle.manifest["student_modules"]
        predictions = [spec["file"] for spec in bundle.config["part4"]["predictions"].values()]
        others = f" and {len(students) - 1} other student modules" if len(students) > 1 else ""
        wanted = ", ".join([students[0] + others, *predictions])
        raise SubmissionError(
            f"no file of the assignment in {directory} (looked for {wanted}, at any depth); it holds "
            f"{top_level_entries(directory)}. A submission is the repository (the folder with cs288_lm/) or its files"
            + (f"; never read: {', '.join(links[:3])} (symbolic links or special files)" if links else "")
        )
    clashes = {target: matches for target, matches in found.items() if len(matches) > 1}
    holders = {match.split("/")[0] for matches in clashes.values() for match in matches if "/" in match}
    if clashes and duplicates == "refuse" and len(holders) > 2:
        raise SubmissionError(
            f"{directory} holds {len(holders)} folders with copies of the assignment's files "
            f"({', '.join(sorted(holders)[:3])}, ...): it looks like a folder of submissions; grade it with "
            f"`python -m autograder.grade_all --submissions {directory} --out DIR`"
        )
    if clashes and duplicates == "refuse":
        target, matches = next(iter(clashes.items()))
        others = f" ({len(clashes) - 1} more files have several copies)" if len(clashes) > 1 else ""
        raise SubmissionError(
            f"several copies of {target} in {directory}: {', '.join(matches)}{others}. Give the folder that holds "
            "one copy (the repository's, not its parent), or pass --duplicates shallowest to grade the shallowest"
        )


def check_module(
    path: str, data: bytes, allowed: frozenset[str]
) -> tuple[str | None, list[ForbiddenImport], list[ReviewFlag]]:
    """Why a submitted module cannot be used (declares an encoding other than UTF-8, is not UTF-8, does not
    parse), its forbidden imports, its review flags. The source is read as Python reads it (BOM, PEP 263 cookie)."""
    try:
        source = python_source(data, path)
        parse_source(source, path)
    except DeclaredEncoding as error:
        return f"{error}, not UTF-8: the grader reads only UTF-8 source", [], [error.flag()]
    except UnicodeDecodeError as error:
        return f"{path} is not UTF-8 text ({error.reason} at byte {error.start})", [], []
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        where = f" at line {line}" if (line := getattr(error, "lineno", None)) else ""
        return f"{path} does not parse: {type(error).__name__}{where}: {getattr(error, 'msg', error)}", [], []
    return None, forbidden_imports(source, path, allowed), review_flags(source, path)


def choose_module(
    module: str, directory: Path, found: str | None, bundle: Bundle, allowed: frozenset[str]
) -> tuple[bytes, str, list[ForbiddenImport], list[ReviewFlag]]:
    """The bytes graded for a student module (submitted, or the stub if unusable), a note, its imports and flags."""
    max_bytes = bundle.config["max_submitted_file_kb"] * 1024
    forbidden: list[ForbiddenImport] = []
    flags: list[ReviewFlag] = []
    problem: str | None
    if found is None:
        problem = f"{module} is missing"
    elif (directory / found).stat().st_size > max_bytes:
        problem = f"{module} is larger than {max_bytes // 1024} KB"
    else:
        problem, forbidden, flags = check_module(module, (directory / found).read_bytes(), allowed)
    if problem or found is None:  # flags kept: a declared encoding is a lead even though the stub is graded
        return bundle.handout[module], f"{problem}: graded as the unimplemented handout stub", [], flags
    return (directory / found).read_bytes(), f"{module}: graded {found}", forbidden, flags


def read_submission(directory: Path, bundle: Bundle, duplicates: str = "refuse") -> Submission:
    """Choose the file graded for every student module and read the predictions files.

    Refused with :class:`SubmissionError` (before anything is graded): a ``directory`` that is not a
    folder or holds none of the graded files, and with ``duplicates="refuse"`` several copies of one
    file. With ``"shallowest"`` (Gradescope) the shallowest copy is graded and the clash is the
    first note of "Submitted files", which the student sees at once.
    """
    files = submitted_files(directory) if directory.is_dir() else []
    check_submission_folder(directory, files, bundle, duplicates)
    students = bundle.manifest["student_modules"]
    names = [module.split("/")[-1] for module in students]
    allowed = allowed_modules(bundle.handout["requirements.txt"].decode("utf-8"))
    submission = Submission(modules={}, predictions={})
    clashes: list[str] = []
    max_bytes = bundle.config["max_submitted_file_kb"] * 1024
    for module in students:
        found, ambiguity = find_submitted(module, files, by_name=names.count(module.split("/")[-1]) == 1)
        data, note, forbidden, flags = choose_module(module, directory, found, bundle, allowed)
        submission.modules[module] = data
        submission.notes.append(note)
        clashes += [ambiguity] if ambiguity else []
        submission.forbidden += forbidden
        submission.flags += flags
    for key, spec in bundle.config["part4"]["predictions"].items():
        found, ambiguity = find_submitted(spec["file"], files, by_name=True)
        clashes += [ambiguity] if ambiguity else []
        if found is None:
            submission.predictions[key] = None
        else:  # a file larger than the cap is read only up to it: the parser names the problem
            with open(directory / found, "rb") as file:
                submission.predictions[key] = file.read(max_bytes + 1)
    graded = [*students, *(spec["file"] for spec in bundle.config["part4"]["predictions"].values())]
    for entry in irregular_entries(directory) if directory.is_dir() else []:
        if any(entry == target or entry.endswith("/" + target.split("/")[-1]) for target in graded):
            clashes.append(f"{entry}: a symbolic link or special file, never read (graded as missing): submit the file")
    submission.notes[:0] = clashes
    return submission


# ---------------------------------------------------------------------------------------------
# Running and judging the test modules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleResult:
    """One test module judged: a verdict per test of the reference run, and why the run stopped."""

    module: str
    verdicts: dict[str, Verdict]
    stopped: str | None
    running: str | None  # the test that was running when the process stopped
    isolation: str
    silent: bool = False  # the process recorded nothing: no test started, no collection error

    def stop_note(self, public: bool) -> str:
        """Why the module's process stopped early, naming the running test only for public tests."""
        running = f" (while {self.running} was running)" if public and self.running else ""
        return f"The test process of {self.module} stopped: {self.stopped}{running}."


_STRIPPED: dict[str, dict[str, bytes]] = {}
_STRIPPED_LOCK = threading.Lock()


def stripped(files: dict[str, bytes]) -> dict[str, bytes]:
    """``sandbox_tree(files)`` (the test modules without their expected values), made once per
    content: stripping every test module takes seconds, and it is the same for every test module
    run and every submission graded with one bundle. Each file is stripped on its own, so the
    stripped handout, hidden tests and submission can be laid over each other."""
    digest = hashlib.sha256()
    for path, data in sorted(files.items()):
        digest.update(b"%d %s %d\n" % (len(path), path.encode(), len(data)) + data)
    key = digest.hexdigest()
    with _STRIPPED_LOCK:  # one thread strips; the others wait for its result
        if key not in _STRIPPED:
            if len(_STRIPPED) >= 4:  # a grading run uses one bundle (handout and hidden tests)
                _STRIPPED.clear()
            _STRIPPED[key] = sandbox_tree(files)
        return _STRIPPED[key]


def run_module(
    module: str, bundle: Bundle, submission: Submission, limits: Limits, hidden_paths: Sequence[Path]
) -> ModuleResult:
    """Run one test module on the submission in a fresh directory and judge what it recorded."""
    tests = stripped(bundle.handout) | ({} if is_public(module) else stripped(bundle.hidden))
    with removed_after(tempfile.mkdtemp(prefix="submission-")) as work:
        os.chmod(work, 0o711)  # a sandbox user may enter it (run_pytest hands it the work directory)
        work_dir = work / "repo"
        write_tree(tests | sandbox_tree(submission.modules), work_dir)
        run = run_pytest(work_dir, [module], limits, hidden_paths=hidden_paths)
    return judge_run(module, run, bundle)


def judge_run(module: str, run: PytestRun, bundle: Bundle) -> ModuleResult:
    """The verdicts on a module's run, and what stopped it early, if anything."""
    stream = parse_stream(run.records)
    verdicts = judge_stream(stream, bundle.reference(module), bundle.snapshots(module), bundle.messages)
    stopped = run.problem
    if stopped is None and stream.collect_errors:
        # What a hidden module's process says is the submission's text next to hidden code: not shown.
        said = (
            "; ".join(stream.collect_errors)[:600] if is_public(module) else "(details are not shown for hidden tests)"
        )
        stopped = "the tests could not be collected: " + said
    if stopped is None and not stream.tests:  # even with 0: only an ended process runs no test of the reference
        stopped = f"the test process exited with status {run.returncode} before any test ran"
    running = stream.unfinished.split("::", 1)[-1] if stopped and stream.unfinished else None
    silent = not stream.tests and not stream.collect_errors
    return ModuleResult(module, verdicts, stopped, running, run.isolation, silent)


class TestProcessError(RuntimeError):
    """Test processes cannot start here: one of the bare handout fails too, so the submission is not
    the cause (a broken environment: no pytest or torch in the interpreter, a sandbox that cannot
    be set up). Nothing is graded."""

    __test__ = False  # not a test class for pytest, though its name starts with Test


PROBE_MODULE = "test_grader_can_start.py"
PROBE_SOURCE = b"def test_a_test_process_starts():\n    pass\n"
PROBE_TAIL_LINES = 6


def start_problem(bundle: Bundle, limits: Limits, hidden_paths: Sequence[Path]) -> str | None:
    """Why a test process of the bare handout (no submitted code) cannot run one empty test here,
    with the end of its output; None when it can. Asked only when a module's process recorded
    nothing, which a submission can cause (by ending its process while its tests are collected)
    but cannot make this probe do."""
    with removed_after(tempfile.mkdtemp(prefix="probe-")) as work:
        os.chmod(work, 0o711)  # as in run_module: a sandbox user enters it
        write_tree({**bundle.handout, PROBE_MODULE: PROBE_SOURCE}, work / "repo")
        run = run_pytest(work / "repo", [PROBE_MODULE], limits, hidden_paths=hidden_paths)
    test = parse_stream(run.records).tests.get(f"{PROBE_MODULE}::test_a_test_process_starts")
    if run.problem is None and test is not None and test.outcome == "passed":
        return None
    why = run.problem or f"pytest exited with status {run.returncode} without running an empty test"
    tail = [line.strip() for line in run.output_tail.splitlines() if line.strip()][-PROBE_TAIL_LINES:]
    return f"{why}; its output ends: {' | '.join(tail) or '(nothing)'}"


def pattern_label(pattern: str) -> str:
    """A problem's test-name pattern for people: ``^test_(a|b)_`` -> ``test_a_* or test_b_*``."""
    if not pattern:
        return "all tests"
    found = re.fullmatch(r"\^([\w]*)(?:\(([\w|]+)\))?([\w]*)", pattern)
    if found is None:
        return f"tests matching {pattern}"
    head, group, tail = found.groups()
    names = [f"{head}{choice}{tail}*" for choice in group.split("|")] if group else [f"{head}{tail}*"]
    return " or ".join(names)


def problem_tests(problem: dict, public: bool, module: str, bundle: Bundle) -> list[str]:
    """The tests of ``module`` that belong to the public or hidden side of ``problem``."""
    if module not in problem["modules"] or is_public(module) != public:
        return []
    entry = bundle.manifest["modules"][module]
    return [t for t in entry["tests"] if entry["problems"].get(t) == problem["name"]]


def problem_entry_name(problem: dict, public: bool) -> str:
    """The name of a problem's public or hidden entry, e.g. ``Part 2: rope (public tests)``."""
    return f"Part {problem['part']}: {problem['name']} ({'public' if public else 'hidden'} tests)"


LOCAL_PYTEST = "python -m pytest"  # how the handout README runs the tests (with its .venv/bin/ in front)


def problem_entry(problem: dict, public: bool, results: list[ModuleResult], bundle: Bundle) -> dict:
    """The Gradescope entry of one problem's public or hidden tests."""
    modules = [m for m in problem["modules"] if is_public(m) == public]
    tests, scored, stopped = [], [], []
    for result in results:
        mine = problem_tests(problem, public, result.module, bundle)
        tests += [(t, result.verdicts[t]) for t in mine]
        scored += [t for t in scored_tests(bundle.manifest["modules"][result.module]) if t in mine]
        if result.stopped and mine:
            stopped.append(result.stop_note(public))
    passed = {t for t, verdict in tests if verdict.passed}
    points = problem["public" if public else "hidden"]
    score = points * sum(t in passed for t in scored) / len(scored) if scored else 0.0
    where = ", ".join(modules)
    lines = [f"{len(passed)} of {len(tests)} tests passed ({where}: {pattern_label(problem.get('tests', ''))})."]
    if public:
        lines.append(f"Run them locally: {LOCAL_PYTEST} --problem {problem['name']}")
    lines += given_note(len(tests) - len(scored), len(scored), points)
    failed = [(t, v) for t, v in tests if not v.passed]
    if failed:
        lines += fix_first_note(problem, public, results, bundle)
    lines += stopped
    if public and failed:
        lines.append("Failed:")
        lines += [f"  {t.split('::', 1)[1]}: {v.reason}" for t, v in failed[:MAX_LISTED_FAILURES]]
        if len(failed) > MAX_LISTED_FAILURES:
            lines.append(f"  ... and {len(failed) - MAX_LISTED_FAILURES} more")
    return {
        "name": problem_entry_name(problem, public),
        "score": round(score, 2),
        "max_score": round(points, 2),
        "output": "\n".join(lines),
        "visibility": PUBLIC if public else HIDDEN,
    }


def given_note(given: int, scored: int, points: float) -> list[str]:
    """Why some of a problem's tests earn nothing: they pass on the unimplemented handout (the
    manifest's ``given``), so they check code that comes with it."""
    if not given:
        return []
    passes, they, check, earn = ("passes", "it", "checks", "earns") if given == 1 else ("pass", "they", "check", "earn")
    unit = "point is" if points == 1 else "points are"
    return [
        (
            f"{given} of these tests {passes} on the unimplemented handout too: {they} {check} code that is given"
            f" and {earn} no points; the {points:g} {unit} split evenly over the other {scored}."
        )
    ]


def failing(problem: dict, public: bool, results: list[ModuleResult], bundle: Bundle) -> bool:
    """Whether a test of ``problem`` on the public (or hidden) side failed."""
    return any(
        not result.verdicts[t].passed
        for result in results
        for t in problem_tests(problem, public, result.module, bundle)
    )


def fix_first_note(problem: dict, public: bool, results: list[ModuleResult], bundle: Bundle) -> list[str]:
    """Which problems to fix first: those ``problem`` builds on (``depends_on``, through others too)
    whose tests on the same side fail as well, and that do not themselves build on another failing one."""
    by_name = {p["name"]: p for p in bundle.config["problems"]}
    graph = {name: p.get("depends_on", []) for name, p in by_name.items()}
    broken = [need for need in dependencies(problem["name"], graph) if failing(by_name[need], public, results, bundle)]
    first = [need for need in broken if not set(dependencies(need, graph)) & set(broken)]
    if not first:
        return []
    names = first[0] if len(first) == 1 else f"{', '.join(first[:-1])} and {first[-1]}"
    their, it = ("their", "them") if len(first) > 1 else ("its", "it")
    return [f"Fix {names} first: {their} tests fail too, and {problem['name']} builds on {it}."]


def feedback_entry(result: ModuleResult, bundle: Bundle) -> dict:
    """A test module no problem lists (the Part 4 code): feedback, no points."""
    public = is_public(result.module)
    tests = bundle.manifest["modules"][result.module]["tests"]
    failed = [(t, result.verdicts[t]) for t in tests if not result.verdicts[t].passed]
    lines = [f"{len(tests) - len(failed)} of {len(tests)} tests passed."]
    if public:
        lines.append(f"Run them locally: {LOCAL_PYTEST} {result.module}")
    if result.stopped:
        lines.append(result.stop_note(public))
    if public and failed:
        lines.append("Failed:")
        lines += [f"  {t.split('::', 1)[1]}: {v.reason}" for t, v in failed[:MAX_LISTED_FAILURES]]
    label = result.module if public else f"hidden tests ({result.module.split('/')[-1]})"
    return {
        "name": f"Feedback, no points: {label}",
        "score": 0.0,
        "max_score": 0.0,
        "output": "\n".join(lines),
        "visibility": PUBLIC if public else HIDDEN,
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


def review_entry(submission: Submission, isolation: set[str]) -> dict:
    """For instructors only: what to read by hand (dynamic imports, tampering APIs) and the isolation used."""
    lines = [f"Test processes ran with: {', '.join(sorted(isolation)) or 'no test process ran'}."]
    if submission.flags:
        lines.append("Review flags (never a deduction by themselves):")
        lines += [f"  {flag}" for flag in submission.flags]
    else:
        lines.append("No dynamic import or tampering API found.")
    return {
        "name": "Review flags (instructors only)",
        "score": 0,
        "max_score": 0,
        "output": "\n".join(lines),
        "visibility": INSTRUCTORS,
        "extra_data": {"review_flags": len(submission.flags)},  # for grade_all's summary; as hidden as the entry
    }


def grading_facts(bundle: Bundle, submission: Submission, accuracies: dict[str, float | None], imports: dict) -> dict:
    """results.json's ``extra_data`` ("extra data to be stored", in Gradescope's format), read by
    grade_all's summary (:mod:`autograder.summary`); every fact here is also said in a visible entry.

    ``stub_modules``: the student modules graded as the handout stub (missing, unusable, or
    submitted unchanged); ``invalid_predictions``: "missing" or "invalid" per Part 4 file that
    earns nothing for it; ``forbidden_imports_deduction``: the points the import check takes off.
    """
    return {
        "stub_modules": [module for module, data in submission.modules.items() if data == bundle.handout[module]],
        "invalid_predictions": {
            key: "missing" if submission.predictions[key] is None else "invalid"
            for key, accuracy in accuracies.items()
            if accuracy is None
        },
        "forbidden_imports_deduction": imports["score"],
    }


def instructor_predictions(handout: dict[str, bytes]) -> ModuleType:
    """The instructor's ``cs288_lm/common/predictions.py``, from the bundle's bytes (never the submission's)."""
    name = f"grader_predictions_{uuid.uuid4().hex}"  # unique: grade_all and tests grade in threads
    module = ModuleType(name)
    module.__file__ = "bundle/handout/cs288_lm/common/predictions.py"
    sys.modules[name] = module  # dataclasses look their module up while being built
    try:
        exec(compile(handout["cs288_lm/common/predictions.py"], module.__file__, "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def part4_entries(bundle: Bundle, submission: Submission) -> tuple[list[dict], dict[str, float | None]]:
    """Parts 4A and 4B: the predictions files scored against the hidden answers; and the accuracies.

    Whether each file is valid is said at once in the submitted-files notes; the accuracy, the
    published baseline's beside it and the points go to entries with the configured visibility (by
    default shown after publication, so that the test set cannot be probed by resubmitting). A bad
    file earns 0 for its own part (and a bad fine-tuned file 0 for 4B too: 4B's margin is over 4A).
    """
    if bundle.answers is None:
        return [], {}
    config, rules = bundle.config["part4"], bundle.rules["part4"]
    predictions = instructor_predictions(bundle.handout)
    questions = json.loads(bundle.answers)
    max_bytes = bundle.config["max_submitted_file_kb"] * 1024
    accuracies: dict[str, float | None] = {}
    outputs: dict[str, str] = {}
    for key, spec in config["predictions"].items():
        data, name = submission.predictions[key], spec["file"]
        try:
            if data is None:
                raise predictions.PredictionsError(f"{name} is missing")
            graded = predictions.parse_predictions(data, questions, source=name, max_bytes=max_bytes)
        except predictions.PredictionsError as error:
            accuracies[key], outputs[key] = None, f"{error}: 0 points"
            submission.notes.append(f"{error}: Part {key} earns 0 points")
            continue
        accuracies[key] = predictions.accuracy(graded, questions)
        outputs[key] = f"Accuracy on the {len(questions)} test questions: {accuracies[key]:.2%}"
        submission.notes.append(f"{name}: valid, {len(graded)} predictions")
    baselines = part4_baselines(bundle, predictions)
    by_rule = {spec["rule"]: accuracies[key] for key, spec in config["predictions"].items()}
    points = predictions.part4_points(by_rule["finetuned"], by_rule["prompting"], bundle.rules, baselines)
    entries = [
        {
            "name": spec["name"],
            "score": round(points[key], 2),
            "max_score": rules[spec["rule"]]["points"],
            "output": outputs[key]
            + baseline_note(accuracies[key], (baselines or {}).get(spec["rule"]), rules)
            + (margin_note(by_rule["finetuned"], by_rule["prompting"], rules) if spec["rule"] == "prompting" else ""),
            "visibility": config["visibility"],
        }
        for key, spec in config["predictions"].items()
    ]
    return entries, accuracies


def part4_baselines(bundle: Bundle, predictions: ModuleType) -> dict[str, float] | None:
    """The published baselines' test accuracies by rule (the handout's ``baseline_metrics.json``), or
    None when the bundle has none and the rules do not need them."""
    path = bundle.config["part4"].get("baselines")
    if path is None or path not in bundle.handout:
        if bundle.rules["part4"].get("require_beating_baselines"):
            raise ValueError(f"the Part 4 rules require beating the baselines, and the bundle has no {path}")
        return None
    return predictions.baseline_accuracies(json.loads(bundle.handout[path]), "test")


def baseline_note(accuracy: float | None, baseline: float | None, rules: dict) -> str:
    """The published baseline beside the student's accuracy, and why nothing was earned when not beating it."""
    if baseline is None:
        return ""
    note = f" (published baseline: {baseline:.2%})"
    if rules.get("require_beating_baselines") and accuracy is not None and accuracy <= baseline:
        note += "; this part earns points only above the baseline"
    return note


def margin_note(finetuned: float | None, prompting: float | None, rules: dict) -> str:
    """4B's margin: over the fine-tuned accuracy (0% when 4A has no valid file), or over 4A's zero
    point when that is higher."""
    if prompting is None:
        return ""
    zero, full = rules["finetuned"]["zero_at_accuracy"], rules["prompting"]["full_at_margin"]
    margin = 100 * (prompting - max(finetuned or 0.0, zero))
    return (
        f". Margin over your fine-tuned accuracy (or {zero:.0%} when it is lower): {margin:+.2f} points;"
        f" {100 * full:g} or more earn all {rules['prompting']['points']} points, 0 or less none"
    )


def leaderboard(bundle: Bundle, accuracies: dict[str, float | None]) -> list[dict]:
    """Gradescope's leaderboard: the Part 4 test accuracies (0 for a missing or invalid file).

    Off unless ``grading_config.json`` sets ``part4.leaderboard``: a leaderboard shows the test
    accuracies at once, while 4A and 4B are shown after publication (resubmissions would probe the
    test set)."""
    if not bundle.config["part4"].get("leaderboard") or not accuracies:
        return []
    return [
        {"name": f"{key} test accuracy (%)", "value": round(100 * (accuracies.get(key) or 0.0), 2)}
        for key in bundle.config["part4"]["predictions"]
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


def modules_to_run(bundle: Bundle, only: list[str] | None) -> list[str]:
    """The graded test modules, then (if configured) the feedback modules; ``only`` narrows them."""
    graded = sorted({m for problem in bundle.config["problems"] for m in problem["modules"]})
    feedback = [m for m in bundle.manifest["modules"] if m not in graded] if bundle.config["feedback_modules"] else []
    unknown = sorted(set(only or ()) - {*graded, *feedback})
    if unknown:
        raise UsageError(
            f"--only {' '.join(unknown)}: no such test module in the bundle; the modules are "
            f"{', '.join(graded + feedback)}"
        )
    return [m for m in graded + feedback if only is None or m in only]


def jobs_allowed(jobs: int, user: str | None) -> bool:
    """Whether ``jobs`` test modules may run at once: at least 1, and only 1 with a sandbox user (the
    end of each sandboxed run kills every process of that user and deletes its files)."""
    return jobs == 1 or (jobs > 1 and user is None)


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    """``--jobs`` for the grading commands; check it with :func:`check_jobs_option`."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="test modules of a submission run at once (default 1: one core and one memory limit)",
    )


def check_jobs_option(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) for a ``--jobs`` that :func:`jobs_allowed` refuses."""
    if not jobs_allowed(args.jobs, args.sandbox_user):
        parser.error(f"--jobs must be at least 1, and 1 with --sandbox-user (got {args.jobs})")


def eta_text(elapsed: float, done: int, total: int) -> str:
    """``about 2 min 10 s left`` at the pace so far (empty when nothing is done or all is)."""
    if done == 0 or done >= total:
        return ""
    left = round(elapsed / done * (total - done))
    return f"about {left // 60} min {left % 60} s left" if left >= 60 else f"about {left} s left"


def timing_text(elapsed: float, done: int, total: int) -> str:
    """A progress line's time: ``12 s``, or ``95 s; about 2 min 10 s left`` while some are left."""
    eta = eta_text(elapsed, done, total)
    return f"{elapsed:.0f} s" + (f"; {eta}" if eta else "")


def module_line(result: ModuleResult, bundle: Bundle) -> str:
    """A progress line's account of one module: its tests passed, or why it stopped."""
    tests = bundle.manifest["modules"][result.module]["tests"]
    passed = sum(result.verdicts[t].passed for t in tests)
    return f"{passed} of {len(tests)} tests passed" + ("; stopped early" if result.stopped else "")


def run_modules(
    modules: list[str],
    run: Callable[[str], ModuleResult],
    jobs: int,
    describe: Callable[[ModuleResult], str],
    progress: Callable[[str], None] | None,
) -> list[ModuleResult]:
    """``run`` on every module, ``jobs`` at once, in ``modules``' order; as each finishes, a progress
    line with ``describe``'s account of it, the time so far and an estimate of what is left."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run, module) for module in modules]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            if progress is not None:
                timing = timing_text(time.monotonic() - started, done, len(modules))
                progress(f"[{done}/{len(modules)}] {result.module}: {describe(result)} ({timing})")
        return [future.result() for future in futures]


def grade(
    submission_dir: Path,
    bundle_dir: Path,
    limits: Limits,
    only: list[str] | None = None,
    hidden_paths: Sequence[Path] = (),
    jobs: int = 1,
    duplicates: str = "refuse",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Grade ``submission_dir`` with the bundle at ``bundle_dir``; returns results.json's content.

    ``hidden_paths`` are covered (besides the bundle, this repository and the submission) while
    submitted code runs: for example the folder with the other students' submissions. ``jobs``
    test modules run at once, each in its own process under ``limits`` (so up to ``jobs`` times
    the memory limit in all); the results do not depend on it. With a sandbox user (``limits.user``)
    only one module runs at a time: the end of each run kills every process of that user and
    deletes its files, which would break a run beside it. ``duplicates``: see :func:`read_submission`.
    ``progress`` gets a line per finished module (counts, elapsed time, an estimate of what is left).

    Raises :class:`SubmissionError` for a folder that holds no submission (before any code runs) and
    :class:`TestProcessError` when test processes cannot start here at all.
    """
    check_grading_allowed(jobs, limits.user)
    become_subreaper()
    started = time.monotonic()
    bundle = Bundle.load(bundle_dir)
    submission = read_submission(submission_dir, bundle, duplicates)
    part4, accuracies = part4_entries(bundle, submission)  # before any submitted code runs
    imports = imports_entry(submission, bundle.config["forbidden_imports"]["deduction_per_file"])
    checks = [files_entry(submission), imports]
    covered = [bundle_dir, REPO_ROOT, submission_dir, *hidden_paths]
    results = run_submission_tests(bundle, submission, limits, covered, modules_to_run(bundle, only), jobs, progress)
    graded_modules = {m for problem in bundle.config["problems"] for m in problem["modules"]}
    feedback = [feedback_entry(result, bundle) for result in results if result.module not in graded_modules]
    tests = [*checks, *problem_entries(results, bundle), *part4, *feedback]
    outcome = results_content(tests, submission, {result.isolation for result in results if result.isolation}, started)
    outcome["extra_data"] = grading_facts(bundle, submission, accuracies, imports)
    board = leaderboard(bundle, accuracies)
    if board:
        outcome["leaderboard"] = board
    return outcome


def check_grading_allowed(jobs: int, user: str | None) -> None:
    """Refuse (``ValueError``, ``RuntimeError``) to grade with ``jobs`` modules at once and ``user`` as
    the sandbox user where :func:`jobs_allowed` or :func:`autograder.sandbox.grading_problem` says no."""
    if not jobs_allowed(jobs, user):
        raise ValueError(
            f"jobs={jobs}: it must be at least 1, and 1 with a sandbox user (the end of a run kills every "
            "process of that user and deletes its files, so runs beside it would break)"
        )
    unsafe = grading_problem(user)
    if unsafe is not None:
        raise RuntimeError(unsafe)


def run_submission_tests(
    bundle: Bundle,
    submission: Submission,
    limits: Limits,
    covered: Sequence[Path],
    modules: list[str],
    jobs: int,
    progress: Callable[[str], None] | None,
) -> list[ModuleResult]:
    """Run and judge every test module of ``modules`` on the submission, ``jobs`` at once (each with its
    share of the cores unless ``limits`` sets the threads), with ``covered`` hidden; in ``modules``' order.

    Raises :class:`TestProcessError` when a module's process recorded nothing and an empty test of the
    bare handout cannot run either (the environment is broken, not the submission)."""
    if jobs > 1 and limits.threads is None:
        limits = dataclasses.replace(limits, threads=share_of_cores(jobs))
    results = run_modules(
        modules,
        lambda module: run_module(module, bundle, submission, limits, covered),
        jobs,
        lambda result: module_line(result, bundle),
        progress,
    )
    if any(result.silent for result in results):
        problem = start_problem(bundle, limits, covered)
        if problem is not None:
            raise TestProcessError(f"test processes cannot start here: {problem}")
    return results


def problem_entries(results: list[ModuleResult], bundle: Bundle) -> list[dict]:
    """The entries of the graded problems, public then hidden tests of each, in the config's order;
    a side is left out when none of the modules run has a test of it."""
    return [
        problem_entry(problem, public, results, bundle)
        for problem in bundle.config["problems"]
        for public in (True, False)
        if any(problem_tests(problem, public, result.module, bundle) for result in results)
    ]


def results_content(tests: list[dict], submission: Submission, isolation: set[str], started: float) -> dict:
    """results.json's score, header, time and entries: the score is the sum over ``tests`` (never below
    0), which then get the instructors' review entry (worth nothing) last; the time since ``started``."""
    score = round(max(0.0, sum(entry["score"] for entry in tests)), 2)
    tests = [*tests, review_entry(submission, isolation)]
    return {
        "score": score,
        "output": summary(tests),
        "execution_time": round(time.monotonic() - started, 1),
        "tests": tests,
    }


def summary(tests: list[dict]) -> str:
    """The results page's header: the total of the visible entries and the points of each that has any.

    The header is shown at once, so it counts only entries visible at once: a total with the
    hidden tests and Part 4 in it would give their scores away, one resubmission at a time.
    """
    shown = round(sum(t["score"] for t in tests if t["visibility"] == PUBLIC), 2)
    lines = [f"Total of the entries shown now: {shown:g} points."]
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


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(value: Any) -> Any:
    """``value`` with every string cleaned of what a submission's messages may carry that strict
    JSON readers refuse or terminals obey: lone surrogates, NUL and other control characters (tab
    and newline stay), each replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNPRINTABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [printable(item) for item in value]
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    return value


def write_results(results: dict, out: Path) -> None:
    """Write results.json atomically: a complete file appears under its name, or nothing changes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".results-", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(printable(results), indent=2) + "\n")
        os.replace(temporary, out)
    except BaseException:
        os.unlink(temporary)
        raise


def not_graded_results(error: SubmissionError) -> dict:
    """results.json for a folder that holds no gradable submission: no points, and why, for the student."""
    return {"score": 0, "output": f"Not graded: {error}. Fix this and submit again.", "tests": []}


BUNDLE_FILES = ("manifest.json", "grading_config.json", "handout")


def check_bundle(bundle: Path) -> None:
    """Refuse (:class:`UsageError`) a ``--bundle`` that is not a grading bundle."""
    build = f"build one with `python -m autograder.bundle --out {bundle}`, or leave --bundle out"
    if not bundle.is_dir():
        raise UsageError(f"--bundle {bundle} {'is not a folder' if bundle.exists() else 'does not exist'}: {build}")
    missing = [name for name in BUNDLE_FILES if not (bundle / name).exists()]
    if missing:
        raise UsageError(f"--bundle {bundle} is not a grading bundle (no {', '.join(missing)}): {build}")


def writable_ancestor_problem(path: Path) -> str | None:
    """Why ``path`` cannot be created: its nearest existing ancestor is a file, or not writable."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


def is_results_file(path: Path) -> bool:
    """Whether ``path`` holds an earlier results.json (a JSON object with a score and tests), which
    grading may replace; any other file is someone's and stays."""
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read(64 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "score" in data and "tests" in data


def positive_number(kind: type) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value

    return parse


def check_output_file(out: Path) -> None:
    """Refuse (:class:`UsageError`) an ``--out`` where results.json cannot be written."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder: give the file to write, such as {out / 'results.json'}")
    if out.exists() and not is_results_file(out):
        raise UsageError(f"--out {out} exists and is not a results.json: give a new file (nothing was overwritten)")
    problem = writable_ancestor_problem(out)
    if problem is not None:
        raise UsageError(f"--out {out} cannot be written: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submission", type=Path, required=True, help="directory with the submitted files")
    parser.add_argument("--out", type=Path, required=True, help="where to write results.json")
    parser.add_argument("--bundle", type=Path, help="grading bundle (default: build one from this repository)")
    parser.add_argument(
        "--only", nargs="+", metavar="MODULE", help="run only these test modules (e.g. tests/test_nn_utils.py)"
    )
    parser.add_argument(
        "--time-limit", type=positive_number(float), help="seconds per test module (default: from the config)"
    )
    parser.add_argument(
        "--memory-mb", type=positive_number(int), help="address-space limit per test process (default: from the config)"
    )
    parser.add_argument("--sandbox-user", help="when run as root, run the tests as this dedicated user")
    parser.add_argument(
        "--duplicates",
        choices=DUPLICATES,
        default="refuse",
        help="several copies of one file in the submission: refuse to grade (default), or grade the shallowest "
        "and say so in the results (what run_autograder does for students' uploads)",
    )
    add_jobs_option(parser)
    args = parser.parse_args(argv)
    check_jobs_option(parser, args)
    try:
        check_output_file(args.out)
    except UsageError as error:  # no results.json can be written there
        print(f"grade: {error}", file=sys.stderr)
        return 2
    unsafe = grading_problem(args.sandbox_user)
    if unsafe is not None:  # before building a bundle; results.json says so too, for Gradescope
        print(f"grade: {unsafe}", file=sys.stderr)
        results, status = failure_results(RuntimeError(unsafe)), 2
    else:
        results, status = grade_command(args)
    try:
        write_results(results, args.out)
    except OSError as error:  # e.g. a path under /proc, or the disk full: the grade is not lost silently
        reason = error.strerror or error
        print(f"grade: cannot write --out {args.out} ({reason}): give a writable path", file=sys.stderr)
        return 2
    if status == 0:
        print(results["output"])
    return status


def print_progress(line: str) -> None:
    """A progress line on stderr (stdout ends with the results' summary)."""
    print(f"grade: {line}", file=sys.stderr, flush=True)


def grade_command(args: argparse.Namespace) -> tuple[dict, int]:
    """The results of ``grade``'s command line and its exit status; every failure is one line on stderr."""
    try:
        if args.bundle is not None:
            check_bundle(args.bundle)
        bundle_dir = cached_bundle() if args.bundle is None else args.bundle
        config = json.loads((bundle_dir / "grading_config.json").read_text(encoding="utf-8"))
        limits = limits_from(config, args.time_limit, args.memory_mb, args.sandbox_user)
        return grade(args.submission, bundle_dir, limits, args.only, (), args.jobs, args.duplicates, print_progress), 0
    except SubmissionError as error:
        print(f"grade: {error}", file=sys.stderr)
        return not_graded_results(error), 2
    except (UsageError, BuildError) as error:  # the operator's to fix
        print(f"grade: {error}", file=sys.stderr)
        return failure_results(error), 2
    except TestProcessError as error:
        print(f"grade: {error}", file=sys.stderr)
        return failure_results(error), 1
    except Exception as error:  # noqa: BLE001 (never leave Gradescope without a results.json)
        traceback.print_exc()
        return failure_results(error), 1


if __name__ == "__main__":
    sys.exit(main())
