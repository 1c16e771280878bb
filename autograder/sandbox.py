"""Run pytest on untrusted code in a subprocess with limits, and read its results from JUnit XML.

The process gets a wall-time limit (its whole process group is killed when it runs over), a
soft address-space limit (``RLIMIT_AS``), a file-size limit, no core dumps, a private ``HOME``
and, when the grader runs as root and a sandbox user is given, that user's uid and gid. Results
come only from the JUnit XML report, written to a fresh private directory under a random name;
what the process prints is never parsed. See ``autograder/README.md`` for the threat model.
"""

from __future__ import annotations

import os
import pwd
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL_BYTES = 4000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one pytest process."""

    seconds: float
    memory_bytes: int
    file_bytes: int
    user: str | None = None  # run as this (dedicated) user when the grader is root


@dataclass(frozen=True)
class Outcome:
    """The result of one test: passed, or why not (one line, and the report's full text)."""

    passed: bool
    message: str = ""
    report: str = ""


@dataclass(frozen=True)
class PytestRun:
    """What one pytest process reported: outcomes by JUnit id, or why there is no trusted report."""

    outcomes: dict[str, Outcome]
    problem: str | None
    output_tail: str


def junit_id(classname: str, name: str) -> str:
    """The id of a JUnit test case, ``tests.test_model::test_linear[...]``."""
    return f"{classname}::{name}"


def parse_junit(path: Path) -> dict[str, Outcome]:
    """Outcomes by JUnit id. A test passes only if every case reported under its id passed."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = Outcome(False, _summary(problems[0]), problems[0].text or "") if problems else Outcome(True)
        test_id = junit_id(case.get("classname", ""), case.get("name", ""))
        previous = outcomes.get(test_id)
        outcomes[test_id] = outcome if previous is None or previous.passed else previous
    return outcomes


def _summary(element: ET.Element) -> str:
    """One line saying why a test did not pass: its message, or the last ``E`` line of its report."""
    message = (element.get("message") or "").strip()
    if message in ("", "collection failure"):
        error_lines = [line[1:].strip() for line in (element.text or "").splitlines() if line.startswith("E ")]
        message = error_lines[-1] if error_lines else message or element.tag
    return f"{element.tag}: {message.splitlines()[0]}"


def _sandbox_user(name: str | None) -> pwd.struct_passwd | None:
    """The account to drop to: only when a user is named and the grader runs as root."""
    return pwd.getpwnam(name) if name and os.geteuid() == 0 else None


def _preexec(limits: Limits, account: pwd.struct_passwd | None) -> Callable[[], None]:
    """The function run in the child before exec: limits, then the unprivileged account."""

    def apply() -> None:
        for limit, value in (
            (resource.RLIMIT_AS, limits.memory_bytes),
            (resource.RLIMIT_FSIZE, limits.file_bytes),
            (resource.RLIMIT_CORE, 0),
        ):
            # Soft limits only: the public memory test lifts its own limit to the hard one.
            resource.setrlimit(limit, (value, resource.getrlimit(limit)[1]))
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    return apply


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    """Give ``root`` and everything under it to ``account``."""
    for path in [root, *root.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)


def _kill_leftovers(process: subprocess.Popen, account: pwd.struct_passwd | None) -> None:
    """Kill the process group, and every process of the (dedicated) sandbox user."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if account is None:
        return
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == account.pw_uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            pass


def _tail(path: Path) -> str:
    """The last OUTPUT_TAIL_BYTES of a file, as text."""
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - OUTPUT_TAIL_BYTES))
        return file.read().decode("utf-8", errors="replace")


def run_pytest(work_dir: Path, targets: list[str], limits: Limits, traceback: str = "short") -> PytestRun:
    """Run ``python -m pytest targets`` in ``work_dir`` under ``limits`` (``traceback``: pytest's --tb)."""
    account = _sandbox_user(limits.user)
    with tempfile.TemporaryDirectory(prefix="grade-") as private:
        private_dir = Path(private)
        report_dir = private_dir / secrets.token_hex(16)
        home = private_dir / "home"
        report_dir.mkdir(mode=0o700)
        home.mkdir()
        report = report_dir / f"{secrets.token_hex(16)}.xml"
        log = private_dir / "output.log"
        if account is not None:
            for path in (private_dir, report_dir, home):
                os.chown(path, account.pw_uid, account.pw_gid)
            _chown_tree(work_dir, account)
        command = [
            sys.executable,
            "-m",
            "pytest",
            *targets,
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "-q",
            f"--tb={traceback}",
        ]
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(private_dir),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            # Few malloc arenas, so that the address-space limit measures memory, not the 64 MB
            # that glibc reserves for each of many threads' arenas on a machine with many cores.
            "MALLOC_ARENA_MAX": "2",
        }
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command,
                cwd=work_dir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(limits, account),
                start_new_session=True,
            )
            try:
                returncode = process.wait(timeout=limits.seconds)
                problem = None
            except subprocess.TimeoutExpired:
                returncode, problem = None, f"the time limit of {limits.seconds:g} s was exceeded; the run was stopped"
            finally:
                _kill_leftovers(process, account)
                process.wait()
        tail = _tail(log)
        if problem is None and returncode not in (0, 1, 2):
            problem = _exit_problem(returncode)
        if problem is None and not report.is_file():
            problem = "the test process exited without a report (sys.exit or os._exit during the tests?)"
        if problem is not None:
            return PytestRun({}, problem, tail)
        try:
            outcomes = parse_junit(report)
        except ET.ParseError as error:
            return PytestRun({}, f"the test report is unreadable ({error})", tail)
        if returncode == 2:  # collection errors: only the error of the module itself is reported
            errors = [outcome.message for outcome in outcomes.values() if not outcome.passed]
            return PytestRun({}, "the tests could not be collected: " + "; ".join(errors or ["run interrupted"]), tail)
        return PytestRun(outcomes, None, tail)


def _exit_problem(returncode: int) -> str:
    """Why a pytest exit status other than 0, 1 (some failed) or 2 (collection error) gives no results."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"the test process was killed by {name}" + (
            " (memory or file-size limit?)" if name in ("SIGKILL", "SIGXFSZ") else ""
        )
    reasons = {3: "pytest hit an internal error", 4: "pytest usage error", 5: "no tests ran"}
    return f"the test process exited with status {returncode} ({reasons.get(returncode, 'not a pytest status')})"
