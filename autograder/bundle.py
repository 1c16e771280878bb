"""The grading bundle: everything the grader needs besides its own code and a submission.

    python -m autograder.bundle --out dist/grader

A bundle is cached under ``dist/bundle-cache/<key>``, the key a hash of every file it is built
from (the tracked handout files, hidden tests, QA answers, the grader's code and grading config)
and of the Python, torch, numpy and pytest versions: ``cached_bundle()`` builds one only when no
bundle of these inputs is there, and ``grade``, ``grade_all``, ``build_zip`` and this command use it.

Layout of the bundle directory (also the ``bundle/`` folder of the Gradescope zip)::

    handout/              the clean handout (what students start from), as built by make_handout;
                          its public snapshots are the grader's copy for the public tests
    hidden/               the hidden test modules, laid over the handout to run them (no snapshots)
    secret/               never given to a test process:
      reference/<module>.jsonl   the reference solution's records for every test (the oracle)
      snapshots/...              the hidden tests' snapshots
      answers/test.json          the QA test questions with answers (Part 4)
    grading_config.json   problems and their points, limits, penalties (autograder/grading_config.json)
    manifest.json         the student modules; per test module its tests in order, the ones that
                          already pass on the bare handout ("given") and the problem of each test

Building runs every test module twice in grading mode (``tests/graded.py``): with the reference
solution, whose records become the oracle (every test must pass and record at least one value,
and every graded test at least one value that the test process did not already hold: see
``autograder/held_values.py``), and on the bare handout, where a test that passes does not depend
on student code and earns nothing (every other test must fail there: ``instructor_tests/test_handout.py`` checks it).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from autograder import held_values
from autograder.judge import BadRecord, Stream, TestRun, decode, judge_stream, parse_stream, read_snapshot
from autograder.make_handout import (
    BUILD_MARKER,
    HANDOUT_README,
    NOT_GRADER_CODE,
    REPO_ROOT,
    BuildError,
    handout_contents,
    handout_files,
    shipped_files,
    write_output,
    write_tree,
)
from autograder.markers import student_modules
from autograder.problems import with_problems
from autograder.sandbox import Limits, Record, run_pytest, share_of_cores
from autograder.strip_expected import sandbox_tree

GRADING_CONFIG = Path(__file__).resolve().parent / "grading_config.json"
HIDDEN_TESTS = "autograder/hidden_tests"
QA_ANSWERS = "data/qa/test.json"
PUBLIC_TESTS = "tests"
SNAPSHOTS = "_snapshots"
PROBE_FILE = f"{held_values.MODULE_NAME}.py"
BUILD_LIMITS = Limits(seconds=1800, memory_bytes=16 << 30, file_bytes=4 << 30)
AUTOGRADER = Path(__file__).resolve().parent
BUNDLE_CACHE = REPO_ROOT / "dist" / "bundle-cache"
KEPT_BUNDLES = 3  # the newest cached bundles kept; older ones are removed when a new one is built
VERSIONED = ("torch", "numpy", "pytest")  # the packages whose versions are part of a bundle's key
TREE_NAMES = ("reference solution", "bare handout")  # the trees build_bundle runs, in order


def hidden_contents(root: Path = REPO_ROOT) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The hidden test files laid over the handout, and the hidden snapshots (kept secret)."""
    relatives = [r for r in shipped_files(root) if r.startswith(f"{HIDDEN_TESTS}/")]
    tests = {"autograder/__init__.py": b""}
    snapshots: dict[str, bytes] = {}
    for relative in relatives:
        (snapshots if f"/{SNAPSHOTS}/" in relative else tests)[relative] = (root / relative).read_bytes()
    return dict(sorted(tests.items())), dict(sorted(snapshots.items()))


def is_public(module: str) -> bool:
    return module.startswith(f"{PUBLIC_TESTS}/")


def find_test_modules(files: dict[str, bytes]) -> list[str]:
    """The test modules (``test_*.py``) of the public tests and the hidden tests among ``files``."""
    return sorted(
        path
        for path in files
        if path.split("/")[-1].startswith("test_")
        and path.endswith(".py")
        and path.rsplit("/", 1)[0] in (PUBLIC_TESTS, HIDDEN_TESTS)
    )


def trusted_snapshots(handout: dict[str, bytes], hidden_snapshots: dict[str, bytes]) -> dict[str, bytes]:
    """Every snapshot the grader compares with: the handout's public ones and the hidden ones."""
    return {**{path: data for path, data in handout.items() if f"/{SNAPSHOTS}/" in path}, **hidden_snapshots}


def snapshot_loader(module: str, snapshots: dict[str, bytes]):
    """A loader of the snapshots of ``module`` by name, from trusted bytes (path -> .npz bytes)."""
    folder = module.rsplit("/", 1)[0]

    def load(name: str):
        data = snapshots.get(f"{folder}/{SNAPSHOTS}/{name}.npz")
        return None if data is None else read_snapshot(data)

    return load


class Progress:
    """Says "[done/total] what, ETA" as each unit of a long job ends (thread-safe)."""

    def __init__(self, total: int, say: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.total, self.done, self.say = total, 0, say
        self.start = time.monotonic()
        self._lock = threading.Lock()

    def finished(self, what: str, units: int = 1) -> None:
        with self._lock:
            self.done += units
            elapsed = time.monotonic() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            left = f"ETA {duration(eta)}" if self.done < self.total else f"in {duration(elapsed)}"
            self.say(f"[{self.done}/{self.total}] {what}, {left}")


def duration(seconds: float) -> str:
    """``80.4`` -> ``1m20s``; ``7.2`` -> ``7s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class ModuleWatch:
    """Tells ``progress`` when a test module of one run is done: when a test of another module
    starts (pytest runs the modules in the order given), or at the end of the run."""

    def __init__(self, label: str, progress: Progress | None) -> None:
        self.label, self.progress, self.module = label, progress, None

    def record(self, line: bytes) -> None:
        try:  # a record that is not a test's start says nothing about progress
            entry = json.loads(line)
            module = entry["test"].split("::", 1)[0] if entry.get("t") == "start" else None
        except (ValueError, KeyError, AttributeError, TypeError):
            return
        if module is not None and module != self.module:
            self.end()
            self.module = module

    def end(self) -> None:
        if self.module is not None and self.progress is not None:
            self.progress.finished(f"{self.label}: {self.module} done")
        self.module = None


def record_modules(
    trees: Sequence[dict[str, bytes]], modules: list[str], labels: Sequence[str] = TREE_NAMES
) -> list[dict[str, Stream]]:
    """Run ``modules`` in grading mode on each tree (named by ``labels`` in the progress lines);
    per tree, each module's stream.

    Public and hidden modules run in separate processes, two processes at a time over all trees, so
    a short run (the bare handout fails fast) fills the gap a long one leaves."""
    progress = Progress(len(trees) * len(modules))

    def run(task: tuple[int, list[str]]) -> list[Record]:
        tree, group = trees[task[0]], task[1]
        watch = ModuleWatch(labels[task[0]], progress)
        with tempfile.TemporaryDirectory(prefix="bundle-run-") as work:
            write_tree(sandbox_tree(tree), Path(work) / "repo")
            probe = ("-p", held_values.MODULE_NAME) if PROBE_FILE in tree else ()
            result = run_pytest(
                Path(work) / "repo", group, limits, pytest_args=("-q", "--tb=no", *probe), on_record=watch.record
            )
        watch.end()
        if result.problem is not None:
            raise RuntimeError(f"the tests do not run: {result.problem}\n{result.output_tail}")
        return result.records

    groups = [g for g in ([m for m in modules if is_public(m)], [m for m in modules if not is_public(m)]) if g]
    tasks = [(index, group) for index in range(len(trees)) for group in groups]
    limits = dataclasses.replace(BUILD_LIMITS, threads=share_of_cores(2))
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(run, tasks))
    records_per_tree: list[list[Record]] = [[] for _ in trees]
    for (index, _), records in zip(tasks, runs, strict=True):
        records_per_tree[index] += records
    return [_by_module(records, modules) for records in records_per_tree]


def _by_module(records: list[Record], modules: list[str]) -> dict[str, Stream]:
    """The streams of one tree's runs, split by test module; every module must have recorded tests."""
    stream = parse_stream(records)
    if stream.collect_errors:
        raise RuntimeError("the tests cannot be collected: " + "; ".join(stream.collect_errors))
    by_module: dict[str, Stream] = {module: Stream({}, []) for module in modules}
    for nodeid, test in stream.tests.items():
        module = nodeid.split("::", 1)[0]
        if module not in by_module:
            raise RuntimeError(f"test {nodeid} belongs to none of the test modules")
        by_module[module].tests[nodeid] = test
    empty = [module for module, module_stream in by_module.items() if not module_stream.tests]
    if empty:
        raise RuntimeError(f"no tests were recorded for {empty}")
    return by_module


def check_config(config: dict, rules: dict, modules: list[str]) -> None:
    """Problems name existing modules and parts, and their points add up to each part's."""
    problems = config["problems"]
    unknown = sorted({m for problem in problems for m in problem["modules"]} - set(modules))
    if unknown:
        raise ValueError(f"grading_config.json names test modules that do not exist: {unknown}")
    names = [problem["name"] for problem in problems]
    if len(set(names)) != len(names):
        raise ValueError("grading_config.json names a problem twice")
    for part in sorted({problem["part"] for problem in problems}):
        if part not in rules["parts"]:
            raise ValueError(f"grading_config.json names a part that {config['rules']} does not have: {part}")
        total = sum(p["public"] + p["hidden"] for p in problems if p["part"] == part)
        if abs(total - rules["parts"][part]["points"]) > 1e-9:
            raise ValueError(
                f"the problems of part {part} are worth {total:g} points, not {rules['parts'][part]['points']:g}"
            )


def build_manifest(
    reference: dict[str, Stream], handout: dict[str, Stream], snapshots: dict[str, bytes], config: dict
) -> dict[str, dict]:
    """Per module: its tests in order, those passing on the bare handout, and each test's problem."""
    # Imported here, at build time only: the Gradescope zip ships the grader (autograder/*.py) and a
    # built bundle, and grading never needs the handout's tests/ package on its import path.
    from tests.problems import problem_of

    graded = {module for problem in config["problems"] for module in problem["modules"]}
    manifest: dict[str, dict] = {}
    errors: list[str] = []
    for module, stream in reference.items():
        load = snapshot_loader(module, snapshots)
        for nodeid, verdict in judge_stream(stream, stream, load).items():
            if not verdict.passed:
                errors.append(f"the reference solution fails {nodeid}: {verdict.reason}")
        on_handout = judge_stream(handout[module], stream, load)
        tests = list(stream.tests)
        problems = {nodeid: problem_of(nodeid, config["problems"]) for nodeid in tests} if module in graded else {}
        errors += [
            f"{nodeid} belongs to no problem of grading_config.json" for nodeid, p in problems.items() if p is None
        ]
        manifest[module] = {
            "tests": tests,
            "given": [nodeid for nodeid in tests if on_handout[nodeid].passed],
            "problems": problems,
        }
        errors += [
            f"{nodeid} records no value that needs the work (every value it records is one the test process"
            " already holds, an exception or a time: see autograder/held_values.py)"
            for nodeid in scored_tests(manifest[module])
            if problems.get(nodeid) and not needs_work(stream.tests[nodeid])
        ]
    for problem in config["problems"]:
        for side in ("public", "hidden"):
            scored = [
                nodeid
                for module, entry in manifest.items()
                if is_public(module) == (side == "public")
                for nodeid in scored_tests(entry)
                if entry["problems"].get(nodeid) == problem["name"]
            ]
            if problem[side] and not scored:
                errors.append(
                    f"problem {problem['name']} has {problem[side]:g} {side} points"
                    f" but no {side} test that fails on the bare handout"
                )
    if errors:
        raise RuntimeError("the grading bundle cannot be built:\n  " + "\n  ".join(errors))
    return manifest


def needs_work(test: TestRun) -> bool:
    """Whether a reference run records a check that only the work can satisfy: a value judged
    against the reference solution that the test process did not hold (``held_values``), or a
    snapshot. Exceptions and times are not such checks: the test process reports those itself."""
    return any(
        check.get("kind") == "snapshot"
        or check.get("kind") in ("close", "equal")
        and check.get("against") != "expected"
        and check.get("held") is False
        for check in test.checks
    )


def scored_tests(entry: dict) -> list[str]:
    """The tests of a manifest entry that earn points: those that fail on the bare handout."""
    return [test for test in entry["tests"] if test not in entry["given"]]


@dataclass(frozen=True)
class BuiltBundle:
    """What building a bundle found: the manifest's modules and every test's run on the bare handout."""

    modules: dict[str, dict]
    handout_runs: dict[str, TestRun]


def build_bundle(out: Path, root: Path = REPO_ROOT) -> BuiltBundle:
    """Write the grading bundle to ``out`` (new, empty, or a previous build's: see write_output)."""
    handout = handout_contents(root)
    hidden, hidden_snapshots = hidden_contents(root)
    modules = find_test_modules({**handout, **hidden})
    config = json.loads(GRADING_CONFIG.read_text(encoding="utf-8"))
    rules = json.loads(handout[config["rules"]])
    config = with_problems(config, rules)  # the bundle's grading_config.json holds each problem whole
    check_config(config, rules, modules)
    students = student_modules(root, handout_files(root))
    reference_tree = with_solution(root, students, {**handout, **hidden})
    reference, on_handout = record_modules([reference_tree, {**handout, **hidden}], modules)
    snapshots = trusted_snapshots(handout, hidden_snapshots)
    manifest: dict[str, Any] = {
        "student_modules": students,
        "modules": build_manifest(reference, on_handout, snapshots, config),
    }
    contents = {f"handout/{path}": data for path, data in handout.items()}
    contents.update({f"hidden/{path}": data for path, data in hidden.items()})
    contents.update({f"secret/snapshots/{path}": data for path, data in hidden_snapshots.items()})
    for module in modules:
        lines = [record.line for record in reference_records(reference[module])]
        contents[f"secret/reference/{module}.jsonl"] = b"".join(line + b"\n" for line in lines)
    if (root / QA_ANSWERS).is_file():
        contents["secret/answers/test.json"] = (root / QA_ANSWERS).read_bytes()
    contents["grading_config.json"] = (json.dumps(config, indent=1) + "\n").encode()
    contents["manifest.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    write_output(dict(sorted(contents.items())), out, "bundle")
    (out / "secret").chmod(0o700)
    runs = {nodeid: test for stream in on_handout.values() for nodeid, test in stream.tests.items()}
    return BuiltBundle(manifest["modules"], runs)


def with_solution(root: Path, students: list[str], tests: dict[str, bytes]) -> dict[str, bytes]:
    """The tree of the reference run: ``tests`` (handout and hidden tests) with the solution's
    student modules, and the held-values probe, which runs in the reference run only."""
    solution = {module: (root / module).read_bytes() for module in students}
    return {**tests, **solution, PROBE_FILE: Path(held_values.__file__).read_bytes()}


def reference_records(stream: Stream) -> list[Record]:
    """A module's reference stream as records again (for the bundle's ``.jsonl`` files)."""
    lines = []
    for nodeid, test in stream.tests.items():
        lines.append(json.dumps({"t": "start", "test": nodeid}))
        # The grader's token of a timed block belongs to that run: without it, builds stay reproducible.
        checks = [{key: value for key, value in check.items() if key != "token"} for check in test.checks]
        lines += [json.dumps(check, separators=(",", ":")) for check in checks]
        lines.append(json.dumps({"t": "end", "test": nodeid, "outcome": test.outcome, "message": test.message}))
    return [Record(0.0, line.encode("utf-8")) for line in lines]


def load_reference(data: bytes) -> Stream:
    """A module's reference stream from the bundle."""
    return parse_stream(Record(0.0, line) for line in data.splitlines() if line)


def work_report(root: Path, selected: list[str]) -> list[str]:
    """Per test of the test modules whose paths contain one of ``selected`` (all if empty) that
    records no value needing the work: the test, then each of its checks (kind, held, site, value)."""
    handout = handout_contents(root)
    hidden, _ = hidden_contents(root)
    modules = [m for m in find_test_modules({**handout, **hidden}) if not selected or any(s in m for s in selected)]
    if not modules:
        raise ValueError(f"no test module matches {selected}")
    reference_tree = with_solution(root, student_modules(root, handout_files(root)), {**handout, **hidden})
    (reference,) = record_modules([reference_tree], modules, TREE_NAMES[:1])
    lines = []
    for stream in reference.values():
        for nodeid, test in stream.tests.items():
            if needs_work(test):
                continue
            lines.append(nodeid)
            for check in test.checks:
                held = {True: "held", False: "work", None: "-"}[check.get("held")]
                against = " (against expected)" if check.get("against") == "expected" else ""
                lines.append(f"    {check.get('kind')} {held}{against} at {check.get('site')}: {_shown_actual(check)}")
    return lines


def bundle_inputs(root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """Every file a bundle of ``root`` is built from, named: the tracked handout files (solution
    included), pyproject.toml, the hidden tests, the QA answers and the grader that runs the build
    (its code, grading config and handout README)."""
    tracked, handout = shipped_files(root), set(handout_files(root))
    taken = [r for r in tracked if r in handout or r.startswith(f"{HIDDEN_TESTS}/")]
    taken += [r for r in ("pyproject.toml", QA_ANSWERS) if r in tracked]
    named = [(f"repository/{r}", root / r) for r in sorted(set(taken))]
    code = [path for path in sorted(AUTOGRADER.glob("*.py")) if f"autograder/{path.name}" not in NOT_GRADER_CODE]
    grader = [*code, GRADING_CONFIG, HANDOUT_README]
    return named + [(f"grader/{path.name}", path) for path in grader]


def bundle_key(root: Path = REPO_ROOT) -> str:
    """The hash of every input of a bundle of ``root`` (bytes and names) and of the versions that run it."""
    digest = hashlib.sha256()
    for name, path in bundle_inputs(root):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    versions = [f"python {sys.version}", platform.machine(), *(f"{p} {metadata.version(p)}" for p in VERSIONED)]
    digest.update("\0".join(versions).encode())
    return digest.hexdigest()[:20]


def cached_bundle(root: Path = REPO_ROOT, cache: Path = BUNDLE_CACHE) -> Path:
    """The bundle of ``root`` from ``cache``, built there first if no bundle of these inputs is.

    A new bundle is built in a temporary directory beside the cache's entries and renamed into
    place, so an entry is complete or absent; then all but the newest KEPT_BUNDLES are removed."""
    path = cache / bundle_key(root)
    if not (path / "manifest.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with cache_lock(cache):  # a second command waits, then finds the first one's bundle
            if not (path / "manifest.json").is_file():
                build_into_cache(root, path)
                return path
    built = datetime.fromtimestamp((path / "manifest.json").stat().st_mtime, timezone.utc)
    print(f"using cached bundle {shown(path)} built {built:%Y-%m-%d %H:%M} UTC", flush=True)
    return path


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Held while a bundle is built into ``cache``: one build at a time."""
    with open(cache / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another command that builds a bundle in {shown(cache)} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_into_cache(root: Path, path: Path) -> None:
    """Build the bundle of ``root`` beside ``path`` and rename it to ``path`` when complete (so a
    cache entry is whole or absent); then prune the cache."""
    print(
        f"building the grading bundle {shown(path)} (no cached bundle of these inputs): every test runs with the"
        " reference solution and on the bare handout ...",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=path.parent))
    try:
        build_bundle(work / "bundle", root)
        os.rename(work / "bundle", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    prune_cache(path.parent)


def prune_cache(cache: Path) -> None:
    """Remove all but the newest KEPT_BUNDLES bundles of ``cache`` (only directories a build made)."""
    entries = [e for e in cache.iterdir() if not e.name.startswith(".") and (e / BUILD_MARKER).is_file()]
    entries.sort(key=lambda entry: (entry / BUILD_MARKER).stat().st_mtime, reverse=True)
    for entry in entries[KEPT_BUNDLES:]:
        shutil.rmtree(entry, ignore_errors=True)


def shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies under it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _shown_actual(check: dict) -> str:
    if "actual" not in check:
        return ""
    try:
        text = " ".join(repr(decode(check["actual"])).split())
    except BadRecord:
        return "?"
    return text if len(text) <= 100 else text[:97] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("dist/grader"), help="output directory (new, empty, or a previous build's)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="build afresh into --out, neither using nor filling the cache"
    )
    parser.add_argument(
        "--work-report",
        nargs="*",
        metavar="MODULE",
        help="build nothing: run the test modules whose paths contain MODULE (all if none) with the reference"
        " solution and list every test that records no value needing the work, with its checks",
    )
    args = parser.parse_args(argv)
    if args.work_report is not None:
        try:
            lines = work_report(REPO_ROOT, args.work_report)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print("\n".join(lines) or "every test records a value that needs the work")
        return 1 if lines else 0
    try:
        if args.no_cache:
            build_bundle(args.out)
        else:
            copy_bundle(cached_bundle(), args.out)
    except BuildError as error:
        print(f"bundle: {error}", file=sys.stderr)
        return 2
    print(f"grading bundle written to {args.out}")
    return 0


def copy_bundle(bundle: Path, out: Path) -> None:
    """Write a copy of ``bundle`` to ``out`` (new, empty, or a previous build's)."""
    contents = {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}
    contents.pop(BUILD_MARKER, None)
    write_output(contents, out, "bundle")
    (out / "secret").chmod(0o700)


if __name__ == "__main__":
    sys.exit(main())
