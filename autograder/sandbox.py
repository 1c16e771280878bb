"""Run pytest on untrusted code in an isolated subprocess, and collect the records it writes.

Nothing the test process says about its own results is believed. The tests write records (JSON
lines, ``tests/graded.py``) to a pipe whose write end the process inherits (its number is in
``CS288_RECORD_FD``); a grader thread stamps each line with the grader's clock when it arrives,
and the trusted judge (``autograder/judge.py``) decides from them. When a line is a timed block's
``timer_start``, the thread answers on a second pipe (``CS288_ACK_FD``) with a fresh token, which
the test process waits for before it runs the block. stdout and stderr go to another
pipe, of which a second thread keeps only the tail. The grader opens no path the submission could
have touched, and a process that keeps the pipes open cannot make it wait: after the run the
readers stop at a deadline.

The test process gets a wall-time limit, an address-space and file-size limit, soft and hard
(``RLIMIT_AS``, ``RLIMIT_FSIZE``: it may lower them, never raise them), no core dumps, a fresh
private ``HOME`` and ``TMPDIR`` and, when the grader runs as root and a sandbox user is named,
that user's uid and gid. It is started by a launcher, this file run as a script
(``python -I -S sandbox.py CONFIG``), which, where the kernel lets it create namespaces:

1. enters new mount, PID, IPC and network namespaces (and, when the grader is not root, a user
   namespace in which it is root, so that it may mount): System V shared memory, message queues,
   semaphores, POSIX message queues and sockets of the run die with it (a TIME_WAIT entry in
   ``/proc/net/tcp`` cannot carry data to the next module), no run sees another's or the grader's,
   and the run has no network (not even loopback: nothing to send a secret to);
2. forks the PID namespace's init. Init mounts a fresh ``/proc`` (showing only the namespace's
   processes), fresh ``/tmp``, ``/var/tmp`` and ``/dev/shm``, an empty read-only tmpfs over each
   hidden path (the grading bundle, the instructors' repository, other submissions) and, for a
   sandbox user, over each directory on the way to the interpreter that the user could not enter;
   then it binds back what the tests need: the work directory, the private directories and the
   interpreter's prefixes (a virtualenv may lie inside the hidden repository). Last, every mount
   the tests can reach becomes read-only (and nosuid), except the run's own: the work directory,
   the private directories and the fresh scratch directories. So even a grader running as root
   cannot be handed code through the interpreter's library or the system's files;
3. forks pytest, which drops to the sandbox user or, without one, enters a second user and mount
   namespace. Either way it cannot undo those mounts: it has no capability over them, and mounts
   a less privileged namespace inherits are locked (mount_namespaces(7)). Init, which pytest can
   neither signal nor trace, reaps orphans until pytest ends, reports its exit status on a pipe
   only trusted code holds, and exits: the kernel then kills every process left in the namespace.

Whether namespaces work is probed once per grader process; where they do not (a container that
forbids ``unshare``), nothing is hidden and :attr:`PytestRun.isolation` says so. After every run
the grader kills whatever may be left anyway: the process group; every process of the sandbox
user; every other descendant of the grader, which is a child subreaper, so that double-forked
daemons are re-parented to it (except the processes of other runs still in progress). Then it
deletes the sandbox user's files from world-writable directories and removes its System V IPC
objects (which, without an IPC namespace, outlive their processes).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import pwd
import re
import resource
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

RECORD_FD_ENV = "CS288_RECORD_FD"
ACK_FD_ENV = "CS288_ACK_FD"
# What one Record costs the grader besides its line: the cap then bounds memory, even for
# millions of empty lines. A timed block's start also holds its token and time.
RECORD_OVERHEAD_BYTES = 128
TIMER_START_OVERHEAD_BYTES = 256
MAX_TIMER_START_BYTES = 4096  # longer lines are not acknowledged (graded.py writes ~100 bytes)
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # a fresh tmpfs each, inside the namespaces
# Top-level directories the tests see; every other one (/home, /root, /opt, /srv, /mnt, /work,
# /autograder, ...) is covered inside the namespaces, whatever secrets a machine keeps there.
SYSTEM_DIRS = (
    "bin",
    "boot",
    "dev",
    "etc",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "proc",
    "run",
    "sbin",
    "sys",
    "tmp",
    "usr",
    "var",
)
# /dev/mqueue: POSIX message queues are files there (where it is mounted); unlinking one removes it.
WORLD_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
READER_GRACE_SECONDS = 1.0  # how long the readers wait for more after everything was killed

# Linux constants (sched.h, sys/mount.h, sys/prctl.h) for the libc calls Python 3.11 lacks.
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_NOSYMFOLLOW = 1, 2, 4, 8, 256
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 1, 4, 36
_IPC_RMID = 0  # sys/ipc.h
# Per-mount options a read-only remount keeps (a user namespace may not clear them: they are locked).
_KEPT_MOUNT_OPTIONS = {"nodev": _MS_NODEV, "noexec": _MS_NOEXEC, "nosymfollow": _MS_NOSYMFOLLOW}


@dataclass(frozen=True)
class Limits:
    """Resource limits of one pytest process."""

    seconds: float
    memory_bytes: int
    file_bytes: int
    user: str | None = None  # run as this (dedicated) user when the grader is root
    record_bytes: int = 512 << 20  # cap on all record bytes of one run
    output_bytes: int = 8000  # how much of the tail of stdout and stderr is kept
    # torch's CPU threads (OMP_NUM_THREADS); None: its default, one per core. Runs side by side
    # each get their share of the cores, since threads that outnumber the cores wait on each other.
    threads: int | None = None


def share_of_cores(runs_at_once: int) -> int | None:
    """The threads each of ``runs_at_once`` test processes gets (None for a single run: all)."""
    return None if runs_at_once <= 1 else max(1, (os.cpu_count() or 1) // runs_at_once)


@dataclass(frozen=True, slots=True)
class Record:
    """One line the test process wrote to the record pipe."""

    received: float  # time.monotonic() in the grader when the line was complete (trusted)
    line: bytes  # as written, without its newline (untrusted)


@dataclass(frozen=True, slots=True)
class TimerStart(Record):
    """A ``timer_start`` line, acknowledged: the token sent back, and when the line before it arrived."""

    token: str
    since: float  # arrival of the line before it, or the opening of the pipe (trusted)


@dataclass(frozen=True)
class PytestRun:
    """What one test process wrote, and why its records are incomplete, if they are."""

    records: list[Record]
    problem: str | None  # time limit exceeded, killed by a signal, record cap exceeded, ...
    returncode: int | None
    output_tail: str  # the last Limits.output_bytes of stdout and stderr
    isolation: str = "none"  # what kept the process apart, for the grader's report


def run_pytest(
    work_dir: Path,
    targets: list[str],
    limits: Limits,
    *,
    hidden_paths: Sequence[Path] = (),
    pytest_args: Sequence[str] = ("-q", "--tb=short"),
    on_record: Callable[[bytes], None] | None = None,
) -> PytestRun:
    """Run ``python -m pytest targets`` in ``work_dir`` under ``limits``, with ``hidden_paths`` unreadable.

    ``on_record`` sees each stored record line as it arrives (for progress; it decides nothing)."""
    become_subreaper()
    account = _sandbox_user(limits.user)
    ids = None if account is None else (account.pw_uid, account.pw_gid)
    if ids is not None and _world_writable is None:
        threading.Thread(target=_world_writable_dirs, daemon=True).start()  # ready by the end of the run
    unavailable = _namespace_problem(ids)
    with removed_after(tempfile.mkdtemp(prefix="sandbox-")) as private_dir:
        home, temporary = _private_dirs(private_dir, work_dir, ids)
        command = [sys.executable, "-m", "pytest", *targets, "-p", "no:cacheprovider", *pytest_args]
        config = _launcher_config(command, work_dir, private_dir, hidden_paths, ids, unavailable is None, limits)
        tail = _Tail(limits.output_bytes)
        ack_read, ack_write = os.pipe()
        os.set_blocking(ack_write, False)  # a test process that never reads cannot stall the reader
        collector = _RecordCollector(limits.record_bytes, ack_write, on_record)
        output, records = _PipeReader(tail.take), _PipeReader(collector.take)
        environment = _test_environment(home, temporary, records.write_end, ack_read, limits.threads)
        status_read, status_write = os.pipe()
        try:
            try:
                process = _start_launcher(
                    {**config, "status_fd": status_write},
                    work_dir,
                    environment,
                    output=output.write_end,
                    passed=(records.write_end, ack_read, status_write),
                )
            finally:
                for fd in (output.write_end, records.write_end, ack_read, status_write):
                    os.close(fd)  # the child's copies are the only writers (and ack reader) left
            try:
                finished = _wait(process.pid, limits.seconds)
            finally:
                _kill_leftovers(process, account)
            for reader in (output, records):
                reader.finish(READER_GRACE_SECONDS)
            status = _read_status(status_read)
        finally:
            os.close(status_read)
            os.close(ack_write)  # after the record reader, its only user, has stopped
        if account is not None:
            clean_sandbox_user_files(account.pw_name, keep=(work_dir, private_dir))
            remove_user_ipc(account.pw_uid)
    returncode = None if not finished else status.exit_code if config["namespaces"] else process.returncode
    problem = _run_problem(limits, collector.overflowed, finished, status, returncode)
    return PytestRun(collector.records, problem, returncode, tail.text(), _isolation(ids, unavailable))


def _private_dirs(private_dir: Path, work_dir: Path, ids: tuple[int, int] | None) -> tuple[Path, Path]:
    """Make the run's private ``HOME`` and ``TMPDIR`` in ``private_dir``; with a sandbox user, give
    them and ``work_dir`` to it (``private_dir`` itself stays the grader's, passable only)."""
    home, temporary = private_dir / "home", private_dir / "tmp"
    home.mkdir()
    temporary.mkdir()
    if ids is not None:
        os.chmod(private_dir, 0o711)
        for path in (home, temporary):
            os.chown(path, *ids)
        _chown_tree(work_dir, *ids)
    return home, temporary


def _launcher_config(
    command: list[str],
    work_dir: Path,
    private_dir: Path,
    hidden_paths: Sequence[Path],
    ids: tuple[int, int] | None,
    namespaces: bool,
    limits: Limits,
) -> dict:
    """What the launcher is told (as JSON on its command line), all but the status pipe."""
    keep = _kept_paths(work_dir, private_dir)
    return {
        "command": command,
        "cwd": str(work_dir),
        "namespaces": namespaces,
        "account": ids,
        "grader_ids": (os.getuid(), os.getgid()),
        "covers": _covers(hidden_paths, keep, ids),
        "keep": keep,
        "writable": _writable_paths(work_dir, private_dir),
        "memory_bytes": limits.memory_bytes,
        "file_bytes": limits.file_bytes,
    }


def _test_environment(home: Path, temporary: Path, record_fd: int, ack_fd: int, threads: int | None) -> dict[str, str]:
    """The whole environment of the test process: nothing else of the grader's is passed on."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(temporary),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Only the plugins the repository names (conftest.py's pytest_plugins): what else the
        # image has installed must not change a run, and loading it costs 0.4 s per process.
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        # Few malloc arenas, so that the address-space limit measures memory, not the 64 MB
        # that glibc reserves for each of many threads' arenas on a machine with many cores.
        "MALLOC_ARENA_MAX": "2",
        # TorchScript off: torch.jit.script gives back the Python function, so a scripted
        # F.linear runs where the no-functional tests' torch function mode sees it.
        "PYTORCH_JIT": "0",
        RECORD_FD_ENV: str(record_fd),
        ACK_FD_ENV: str(ack_fd),
    }
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)
    return environment


def _start_launcher(
    config: dict, work_dir: Path, environment: dict[str, str], *, output: int, passed: tuple[int, ...]
) -> subprocess.Popen:
    """Start the launcher in a session of its own, stdout and stderr on ``output``, with the ``passed``
    descriptors; registered in ``_in_flight`` before any sweep can see it."""
    with _spawn_lock:
        process = subprocess.Popen(
            _launcher_command(config),
            cwd=work_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            pass_fds=passed,
            start_new_session=True,
        )
        _in_flight.add(process.pid)
    return process


def _run_problem(
    limits: Limits, overflowed: bool, finished: bool, status: _Status, returncode: int | None
) -> str | None:
    """Why a run's records are incomplete (``"; "``-joined), or None when nothing went wrong."""
    problems = []
    if overflowed:
        problems.append(f"the test process wrote more than {limits.record_bytes / 2**20:g} MB of records")
    if not finished:
        problems.append(f"the time limit of {limits.seconds:g} s was exceeded; the run was stopped")
    elif status.error is not None or not status.ready:
        problems.append(f"the sandbox could not be set up: {status.error or 'the launcher stopped early'}")
    elif returncode is None:
        problems.append("the test process was stopped before it could report its exit status")
    elif returncode not in (0, 1, 2):
        problems.append(_exit_problem(returncode))
    return "; ".join(problems) or None


def remove_tree(path: str | os.PathLike) -> None:
    """Delete ``path`` and everything under it, whatever a submission left there (a tree deeper
    than Python's recursion limit, folders without permissions); never raises. Symbolic links are
    removed, not followed."""
    try:
        shutil.rmtree(path)
        return
    except (OSError, RecursionError):
        pass
    # ``rm`` walks iteratively and stays on one file system; chmod first for folders a non-root
    # grader could not list.
    for command in (["chmod", "-R", "u+rwx", "--", str(path)], ["rm", "-rf", "--one-file-system", "--", str(path)]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)


@contextlib.contextmanager
def removed_after(directory: str) -> Iterator[Path]:
    """``directory`` as a Path, removed with :func:`remove_tree` when the block ends."""
    try:
        yield Path(directory)
    finally:
        remove_tree(directory)


def _exit_problem(returncode: int) -> str:
    """Why an exit status other than pytest's 0, 1 (tests failed) or 2 (interrupted, collection errors)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"the test process was killed by {name}" + (
            " (memory or file-size limit?)" if name in ("SIGKILL", "SIGXFSZ") else ""
        )
    reasons = {3: "pytest hit an internal error", 4: "pytest usage error", 5: "no tests ran"}
    return f"the test process exited with status {returncode} ({reasons.get(returncode, 'not a pytest status')})"


def _isolation(ids: tuple[int, int] | None, unavailable: str | None) -> str:
    """One line on what kept the test process apart from the grader."""
    if unavailable is None:
        return (
            "sandbox user, mount, PID, IPC and network namespaces"
            if ids
            else "user, mount, PID, IPC and network namespaces"
        )
    return ("sandbox user only" if ids else "none") + f" (namespaces unavailable: {unavailable})"


def _sandbox_user(name: str | None) -> pwd.struct_passwd | None:
    """The account to drop to: only when a user is named and the grader runs as root."""
    return pwd.getpwnam(name) if name and os.geteuid() == 0 else None


def grading_problem(user: str | None) -> str | None:
    """Why submitted code must not be graded here with ``user`` as the sandbox user, or None.

    Refused: a sandbox user without root (only root can switch to it), a sandbox account that does
    not exist, and root with neither a sandbox user nor namespaces (the tests would run as root,
    free to write into the interpreter the grader runs).
    """
    if os.geteuid() != 0:
        if user:
            return (
                f"--sandbox-user {user} needs root: only root can run the tests as another account; run as root "
                "(as Gradescope does), or leave --sandbox-user out to run them as yourself in namespaces"
            )
        return None
    if user:
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            return (
                f"there is no account {user!r} to run the tests as (--sandbox-user): create it with "
                "autograder/gradescope/create_sandbox_user.sh (as root; it creates grader-sandbox)"
            )
        return sandbox_account_problem(account)
    unavailable = _namespace_problem(None)
    if unavailable is None:
        return None
    return (
        f"refusing to grade as root without a sandbox user where namespaces are unavailable ({unavailable}): "
        "submitted code would run as root; pass --sandbox-user grader-sandbox (create it with "
        "autograder/gradescope/create_sandbox_user.sh), or run as a non-root user, or run where unshare is allowed "
        "(user namespaces enabled, no seccomp profile forbidding it)"
    )


# Shells that let nobody log in: the account exists only to run the tests.
NO_LOGIN_SHELLS = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}


def sandbox_account_problem(account: pwd.struct_passwd) -> str | None:
    """Why ``account`` must not be the sandbox user, or None.

    The end of every sandboxed run kills every process of the account and deletes its files in the
    shared temporary folders, so only a dedicated account will do: not root or the grader's own
    account, one nobody logs into, with no process running before grading starts.
    """
    create = "use a dedicated account: autograder/gradescope/create_sandbox_user.sh creates grader-sandbox"
    if account.pw_uid == 0 or account.pw_uid in (os.getuid(), os.geteuid()):
        return (
            f"--sandbox-user {account.pw_name} is root or the account grading: after each run the grader kills "
            f"every process of the sandbox user and deletes its temporary files; {create}"
        )
    if account.pw_shell not in NO_LOGIN_SHELLS:
        return (
            f"--sandbox-user {account.pw_name} has the login shell {account.pw_shell}: after each run the grader "
            f"kills every process of the sandbox user and deletes its temporary files; {create}"
        )
    running = sorted(pid for pid, process in _process_table().items() if account.pw_uid in process.uids)
    if running:
        return (
            f"--sandbox-user {account.pw_name} has {len(running)} running process(es) (pid {running[0]}): after "
            f"each run the grader kills every process of the sandbox user; stop them or {create}"
        )
    return None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything under it to the sandbox user."""
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def _writable_paths(work_dir: Path, private_dir: Path) -> list[str]:
    """The run's own directories, the only kept ones that stay writable inside the namespaces."""
    return sorted(os.path.realpath(path) for path in (work_dir, private_dir))


def _kept_paths(work_dir: Path, private_dir: Path) -> list[str]:
    """The directories the tests need, visible even inside a hidden path: work, private, interpreter."""
    paths = (
        work_dir,
        private_dir,
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
    )
    return sorted({os.path.realpath(path) for path in paths if os.path.isdir(path)})


def _covers(hidden_paths: Sequence[Path], keep: list[str], ids: tuple[int, int] | None) -> list[tuple[str, str]]:
    """What init mounts a tmpfs over: ``scratch`` (fresh, writable) or ``hidden`` (empty, read-only)."""
    covers = {os.path.realpath(path): "scratch" for path in SCRATCH_DIRS if os.path.isdir(path)}
    # The grader's own POSIX message queues, listed there: the run's are in its IPC namespace.
    covers.update({path: "hidden" for path in ("/dev/mqueue",) if os.path.isdir(path)})
    covers.update({os.path.realpath(path): "hidden" for path in hidden_paths if os.path.exists(path)})
    for entry in os.scandir("/"):
        if entry.is_dir(follow_symlinks=False) and entry.name not in SYSTEM_DIRS:
            covers.setdefault(entry.path, "hidden")
    if ids is not None:
        # A directory the sandbox user cannot enter (root's home, where pyenv puts Python) is
        # covered too, and the interpreter bound back inside it.
        for path in keep:
            blocked = [parent for parent in reversed(Path(path).parents[:-1]) if not _enterable(parent, *ids)]
            if blocked:
                covers.setdefault(str(blocked[0]), "hidden")
    return sorted(covers.items())


def _enterable(directory: Path, uid: int, gid: int) -> bool:
    """Whether the sandbox user (no supplementary groups) may enter ``directory``."""
    info = os.stat(directory)
    bit = stat.S_IXUSR if info.st_uid == uid else stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
    return bool(info.st_mode & bit)


# ---------------------------------------------------------------------------------------------
# Reading the pipes
# ---------------------------------------------------------------------------------------------


class _PipeReader:
    """A pipe, and a grader thread passing each chunk read from it, with its arrival time, to ``take``."""

    def __init__(self, take: Callable[[bytes, float], None]) -> None:
        self._read_end, self.write_end = os.pipe()
        self._take = take
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        try:
            while self._deadline is None or time.monotonic() < self._deadline:
                if poller.poll(100):
                    chunk = os.read(self._read_end, 1 << 16)
                    if not chunk:
                        return
                    self._take(chunk, time.monotonic())
        finally:
            os.close(self._read_end)

    def finish(self, grace: float) -> None:
        """Read until every writer is gone, ``grace`` seconds at most (one may have escaped), then stop."""
        self._deadline = time.monotonic() + grace
        self._thread.join()


class _Tail:
    """The last ``size`` bytes of a stream; never more."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray()

    def take(self, chunk: bytes, received: float) -> None:
        self.data += chunk[len(chunk) - self.size :] if len(chunk) > self.size else chunk
        del self.data[: max(0, len(self.data) - self.size)]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class _RecordCollector:
    """Splits the record stream into lines, stamped when their newline arrives, up to ``cap`` bytes.

    Every line is charged what it costs the grader (its bytes and the Record holding it), so the
    cap bounds the grader's memory. Past the cap nothing more is stored (the pipe is still drained,
    so that the writer never blocks). A last line without its newline was cut short by the end of
    the writer, and is dropped. A ``timer_start`` line is answered on ``ack_fd`` with a fresh token
    (:class:`TimerStart`); an answer the pipe cannot take now is dropped, which only fails that
    block.
    """

    def __init__(self, cap: int, ack_fd: int | None = None, on_line: Callable[[bytes], None] | None = None) -> None:
        self.cap = cap
        self._on_line = on_line
        self.records: list[Record] = []
        self.overflowed = False
        self._used = 0
        self._line = bytearray()
        self._ack_fd = ack_fd
        self._last_arrival = time.monotonic()  # before the process is spawned: a block can only look longer

    def take(self, chunk: bytes, received: float) -> None:
        start = 0
        while not self.overflowed:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._line += chunk[start:]
                self._charge(len(chunk) - start)
                return
            self._line += chunk[start:end]
            self._charge(end - start + RECORD_OVERHEAD_BYTES)
            if not self.overflowed:
                self._store(bytes(self._line), received)
                self._line.clear()
            start = end + 1

    def _store(self, line: bytes, received: float) -> None:
        if _is_timer_start(line):
            self._charge(TIMER_START_OVERHEAD_BYTES)
            if self.overflowed:
                return
            token = secrets.token_hex(16)
            self._acknowledge(token)
            self.records.append(TimerStart(received, line, token, self._last_arrival))
        else:
            self.records.append(Record(received, line))
        self._last_arrival = received
        if self._on_line is not None:
            self._on_line(line)

    def _acknowledge(self, token: str) -> None:
        if self._ack_fd is None:
            return
        try:
            os.write(self._ack_fd, token.encode("ascii") + b"\n")
        except OSError:  # full (the process does not read) or closed: that block fails, nothing else
            pass

    def _charge(self, size: int) -> None:
        self._used += size
        if self._used > self.cap:
            self.overflowed = True
            self._line = bytearray()


def _is_timer_start(line: bytes) -> bool:
    """Whether ``line`` is a ``timer_start`` check as the judge reads it (short lines only)."""
    if len(line) > MAX_TIMER_START_BYTES or b"timer_start" not in line:
        return False
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("t") == "check" and record.get("kind") == "timer_start"


@dataclass(frozen=True)
class _Status:
    """What the launcher reported: setup done (``ok``), why it failed, and pytest's exit status."""

    ready: bool
    error: str | None
    exit_code: int | None


def _read_status(fd: int) -> _Status:
    """The launcher's report: what it wrote before running pytest, and init's line after it."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except BlockingIOError:  # a writer is still alive: what it wrote before is all there is
        pass
    ready, error, exit_code = False, None, None
    for line in data.decode("utf-8", errors="replace").splitlines():
        kind, _, text = line.partition(" ")
        if kind == "ok":
            ready = True
        elif kind == "error" and error is None:
            error = text
        elif kind == "exit":
            exit_code = int(text)
    return _Status(ready, error, exit_code)


# ---------------------------------------------------------------------------------------------
# Ending a run: nothing of the submission survives it
# ---------------------------------------------------------------------------------------------

_spawn_lock = threading.Lock()  # a sweep never sees a run's launcher before it is in _in_flight
_in_flight: set[int] = set()  # launchers of the runs in progress: their processes are spared


def become_subreaper() -> None:
    """Make the grader adopt its orphaned descendants (double-forked daemons), so that it can find them."""
    try:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except (AttributeError, OSError):  # not Linux
        pass


def _wait(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``pid`` to end, without reaping it (its pid stays its group's)."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(max(0, int(seconds * 1000))))
    finally:
        os.close(pidfd)


def _kill_leftovers(process: subprocess.Popen, account: pwd.struct_passwd | None) -> None:
    """Kill the process group, every descendant of the grader outside other runs, and the sandbox user's processes."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    with _spawn_lock:
        _in_flight.discard(process.pid)
        _kill_processes(lambda table: _descendants(table, os.getpid(), spared=_in_flight))
    if account is not None:
        _kill_user_processes(account.pw_uid)


def _kill_user_processes(uid: int) -> None:
    """Kill every process with ``uid`` among its real, effective, saved or file-system uids."""
    _kill_processes(lambda table: {pid for pid, process in table.items() if uid in process.uids})


@dataclass(frozen=True)
class _Process:
    """A process as /proc shows it."""

    ppid: int
    state: str  # "Z": a zombie
    start: int  # start time in clock ticks: with the pid, it names the process
    uids: tuple[int, ...]  # real, effective, saved, file system


def _read_process(pid: int) -> _Process | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone
        return None
    fields = stat_line[stat_line.rindex(b")") + 2 :].split()  # after "pid (name) "
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    return _Process(int(fields[1]), fields[0].decode(), int(fields[19]), tuple(map(int, uids)))


def _process_table() -> dict[int, _Process]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (process := _read_process(int(name))) is not None:
            table[int(name)] = process
    return table


def _descendants(table: dict[int, _Process], root: int, spared: Collection[int]) -> set[int]:
    """The descendants of ``root``, except ``spared`` and theirs."""
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.ppid, []).append(pid)
    found: set[int] = set()
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid not in spared and pid not in found:
            found.add(pid)
            stack += children.get(pid, [])
    return found


def _kill_processes(select_victims: Callable[[dict[int, _Process]], set[int]], seconds: float = 10) -> None:
    """SIGKILL the processes ``select_victims`` picks, again until none of them is alive; reap ours.

    Each round reads /proc afresh: a process forked before its parent died is found next round.
    Uids come from /proc/PID/status, not from the owner of /proc/PID (root's when not dumpable).
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        table = _process_table()
        alive = False
        for pid in select_victims(table):
            if table[pid].state != "Z":
                _kill(pid, table[pid].start)
                alive = True
            elif table[pid].ppid == os.getpid():  # an orphan re-parented to the grader
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        if not alive:
            return
        time.sleep(0.005)


def _kill(pid: int, start: int) -> None:
    """SIGKILL process ``pid`` if it is still the one that started at ``start``, not a new one with its pid."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        process = _read_process(pid)  # read after opening: the pidfd's process or a dead one
        if process is not None and process.start == start:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


_world_writable_lock = threading.Lock()
_world_writable: list[str] | None = None


def _world_writable_dirs() -> list[str]:
    """Where a sandbox user may leave files: the usual places, and every world-writable directory
    of the root file system (found once per process; directories it cannot enter are skipped)."""
    global _world_writable
    with _world_writable_lock:
        if _world_writable is None:
            found = {os.path.realpath(path) for path in WORLD_WRITABLE_DIRS if os.path.isdir(path)}
            root_device = os.stat("/").st_dev
            stack = ["/"]
            while stack:
                for entry in _entries(stack.pop()):
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if not stat.S_ISDIR(info.st_mode) or info.st_dev != root_device or not info.st_mode & stat.S_IXOTH:
                        continue  # not a directory; /proc, /sys, other file systems; closed to others
                    if info.st_mode & stat.S_IWOTH:
                        found.add(entry.path)
                    stack.append(entry.path)
            _world_writable = sorted(found)
        return _world_writable


def clean_sandbox_user_files(user: str, *, keep: Collection[Path] = ()) -> list[str]:
    """Delete every file and directory of ``user`` in world-writable directories; return what was removed.

    ``keep`` (the run's work and private directories) and any directory holding them are left.
    Nothing is followed: directories go with ``shutil.rmtree`` (file-descriptor based, refuses
    links), everything else with ``os.unlink``. Run it once every process of ``user`` is dead.
    """
    uid = pwd.getpwnam(user).pw_uid
    kept = [os.path.realpath(path) for path in keep]
    removed: list[str] = []
    for directory in _world_writable_dirs():
        _clean(directory, uid, kept, removed)
    return removed


# /proc/sysvipc's table, its id column, and the libc call that removes one object of it.
_SYSV_IPC = (("shm", "shmid", "shmctl"), ("msg", "msqid", "msgctl"), ("sem", "semid", "semctl"))


def remove_user_ipc(uid: int) -> list[str]:
    """Remove every System V shared memory segment, message queue and semaphore set that ``uid``
    owns or created; return them (``"shm 5"``). The kernel keeps these after their processes end:
    without an IPC namespace they would carry data to a later run and hold memory no limit counts."""
    removed = []
    for table, id_column, call in _SYSV_IPC:
        for ident in _ipc_objects(table, id_column, uid):
            arguments: tuple[ctypes.c_int, ctypes.c_int, ctypes.c_int | None]
            arguments = (ctypes.c_int(ident), ctypes.c_int(_IPC_RMID), None)
            if table == "sem":  # semctl(id, semnum, cmd)
                arguments = (ctypes.c_int(ident), ctypes.c_int(0), ctypes.c_int(_IPC_RMID))
            try:
                _call(call, *arguments)
            except OSError:  # already gone
                continue
            removed.append(f"{table} {ident}")
    return removed


def _ipc_objects(table: str, id_column: str, uid: int) -> list[int]:
    """The ids of ``/proc/sysvipc/<table>`` whose owner or creator is ``uid`` (an owner may give an object away)."""
    try:
        lines = Path("/proc/sysvipc", table).read_text().splitlines()
    except OSError:  # no System V IPC in this kernel
        return []
    header = lines[0].split() if lines else []
    rows = [dict(zip(header, line.split(), strict=False)) for line in lines[1:]]
    return [int(row[id_column]) for row in rows if uid in (int(row["uid"]), int(row["cuid"]))]


def _entries(directory: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:
        return []


def _clean(directory: str, uid: int, kept: list[str], removed: list[str]) -> None:
    for entry in _entries(directory):
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if any(_within(path, entry.path) for path in kept):
            continue
        if info.st_uid == uid:
            if stat.S_ISDIR(info.st_mode):
                remove_tree(entry.path)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
            if not os.path.lexists(entry.path):
                removed.append(entry.path)
        elif stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:
            _clean(entry.path, uid, kept, removed)  # someone else's world-writable directory


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# ---------------------------------------------------------------------------------------------
# The launcher: this file run as a script, by the grader, before any untrusted code
# ---------------------------------------------------------------------------------------------


def _launcher_command(config: dict) -> list[str]:
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), json.dumps(config)]


@functools.cache
def _namespace_problem(ids: tuple[int, int] | None) -> str | None:
    """Why the namespaces cannot be set up here (probed once per sandbox user), or None if they can."""
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as probe:
        kept = Path(probe, "hidden", "kept")
        kept.mkdir(parents=True)
        config = {
            "command": None,
            "cwd": probe,
            "namespaces": True,
            "account": ids,
            "grader_ids": (os.getuid(), os.getgid()),
            "covers": [(str(kept.parent), "hidden")],
            "keep": [str(kept)],
            "writable": [str(kept)],
            "memory_bytes": resource.RLIM_INFINITY,
            "file_bytes": resource.RLIM_INFINITY,
        }
        status_read, status_write = os.pipe()
        try:
            try:
                with _spawn_lock:  # no other run's sweep kills the probe
                    result = subprocess.run(
                        _launcher_command({**config, "status_fd": status_write}),
                        cwd=probe,
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        pass_fds=(status_write,),
                        timeout=60,
                    )
            finally:
                os.close(status_write)
            status = _read_status(status_read)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"the probe failed: {error}"
        finally:
            os.close(status_read)
    if status.error is not None:
        return status.error
    if not status.ready:
        return "the probe stopped early: " + result.stderr.decode(errors="replace").strip()[-300:]
    return None


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: object) -> None:
    """Call a libc function that returns -1 and sets errno on failure."""
    if getattr(_libc(), name)(*args) == -1:
        number = ctypes.get_errno()
        raise OSError(number, f"{name}: {os.strerror(number)}")


def _prctl(option: int, value: int) -> None:
    _call("prctl", ctypes.c_int(option), *(ctypes.c_ulong(argument) for argument in (value, 0, 0, 0)))


def _unshare(flags: int) -> None:
    _call("unshare", ctypes.c_int(flags))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _call("mount", encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))


def _launch(config: dict) -> NoReturn:
    """The launcher: isolate (where namespaces work), then exec pytest. Reports on ``status_fd``:
    ``ok`` just before the exec, ``error ...`` if anything failed, and (init) ``exit N``."""
    status = config["status_fd"]
    os.set_inheritable(status, False)  # pytest never holds it: only the launcher's code reports
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # init must not die of a KeyboardInterrupt
    try:
        if config["namespaces"]:
            _enter_namespaces(config)  # returns in the process that becomes pytest
        _prepare_exec(config)
        _report(status, "ok")
        command = config["command"]
        if command is None:  # a probe
            os._exit(0)
        os.execve(command[0], command, os.environ)
    except BaseException as error:  # noqa: BLE001 (whatever it is, the grader must hear of it)
        _report(status, f"error {error}")
        os._exit(126)


def _report(fd: int, line: str) -> None:
    os.write(fd, (line.replace("\n", " ") + "\n").encode())


def _enter_namespaces(config: dict) -> None:
    """Steps 1 to 3 of the module docstring; returns in pytest's process, which has dropped its powers."""
    uid, gid = os.getuid(), os.getgid()
    _unshare(_CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWNET | (0 if uid == 0 else _CLONE_NEWUSER))
    if uid != 0:
        _map_ids(0, uid, 0, gid)  # root in the new user namespace: it may mount
    _fork_and_wait(status_fd=None)  # the launcher waits outside; its child is the namespace's init
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(_PR_SET_DUMPABLE, 0)  # pytest (same uid without a sandbox user) must not trace init
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates back to the grader
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _cover(config["covers"], config["keep"], config["writable"], config["file_bytes"])
    _make_read_only(config["covers"], config["keep"], config["writable"])
    _fork_and_wait(status_fd=config["status_fd"])  # init waits; its child goes on to be pytest
    _prctl(_PR_SET_DUMPABLE, 1)  # inherited from init; its /proc/self files would be root's
    if config["account"] is None:
        inner_uid, inner_gid = config["grader_ids"]
        outer_uid, outer_gid = os.getuid(), os.getgid()
        _unshare(_CLONE_NEWUSER | _CLONE_NEWNS)  # inherited mounts are now locked
        _map_ids(inner_uid, outer_uid, inner_gid, outer_gid)  # the grader's own ids, as outside


def _map_ids(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    """Map one uid and one gid into the user namespace just entered."""
    maps = (("setgroups", "deny"), ("uid_map", f"{inner_uid} {outer_uid} 1"), ("gid_map", f"{inner_gid} {outer_gid} 1"))
    for name, text in maps:
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def _fork_and_wait(status_fd: int | None) -> None:
    """Fork. The child returns; the parent reaps every child of its until that one ends, reports
    its exit status on ``status_fd`` if given, and exits."""
    child = os.fork()
    if child == 0:
        return
    while True:
        pid, wait_status = os.waitpid(-1, 0)
        if pid == child:
            break
    code = os.waitstatus_to_exitcode(wait_status)
    if status_fd is not None:
        _report(status_fd, f"exit {code}")
    os._exit(code if code >= 0 else 128 - code)


def _cover(covers: list[list[str]], keep: list[str], writable: list[str], scratch_bytes: int) -> None:
    """Mount a tmpfs over each cover, deepest first, then bind every kept directory back in place
    (the writable ones always: each must be a mount of its own, the only ones left writable)."""
    originals = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in keep}  # before covering
    umask = os.umask(0o022)  # mount points the sandbox user can pass
    for path, kind in sorted(covers, key=lambda cover: -len(Path(cover[0]).parts)):
        if not os.path.isdir(path):  # a hidden file
            _mount("/dev/null", path, None, _MS_BIND)
        else:
            mode, size = ("1777", scratch_bytes) if kind == "scratch" else ("755", 1 << 20)
            _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode={mode},size={size}")
            for kept in keep:
                if _within(kept, path):
                    os.makedirs(kept, exist_ok=True)
        if kind == "hidden":
            _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for path in sorted(keep, key=lambda kept: len(Path(kept).parts)):
        original = originals.pop(path)
        if path in writable or not os.path.samestat(os.stat(path), os.fstat(original)):  # not back with a parent
            _mount(f"/proc/self/fd/{original}", path, None, _MS_BIND | _MS_REC)
        os.close(original)
    os.umask(umask)


def _make_read_only(covers: list[list[str]], keep: list[str], writable: list[str]) -> None:
    """Remount every mount the tests can reach read-only and nosuid (kept directories also nodev),
    except the writable kept directories, the scratch tmpfs and the namespace's own /proc.

    A bind mount's read-only flag is its own: each submount (an ``MS_REC`` bind brings them, and
    the system has its own under /, /dev, /sys) is remounted on its own. Mounts beneath a cover
    cannot be reached and are left. Locked options (nodev, noexec, ...) are kept, as a user
    namespace must; in the tests' less privileged namespace the read-only flag is locked in turn.
    """
    hidden = [path for path, kind in covers if kind == "hidden"]
    scratch = [path for path, kind in covers if kind == "scratch"]
    for point, options in _mounts():
        kept = any(_within(point, path) for path in keep)
        if (
            any(_within(point, path) for path in writable)
            or not kept
            and (
                _within(point, "/proc")
                or any(_within(point, path) for path in scratch)
                or any(_within(point, path) and point != path for path in hidden)
            )
        ):
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | (_MS_NODEV if kept else 0)
        for option, flag in _KEPT_MOUNT_OPTIONS.items():
            flags |= flag if option in options else 0
        _mount(None, point, None, flags)


def _mounts() -> list[tuple[str, set[str]]]:
    """This mount namespace's mounts, parents first: mount point and per-mount options (mountinfo(5))."""
    with open("/proc/self/mountinfo", "rb") as file:
        lines = file.read().splitlines()
    found = []
    for line in lines:
        fields = line.split(b" ")
        point = re.sub(rb"\\([0-7]{3})", lambda match: bytes([int(match.group(1), 8)]), fields[4])
        found.append((os.fsdecode(point), set(fields[5].decode().split(","))))
    return found


def _prepare_exec(config: dict) -> None:
    """The last steps before pytest: its directory, its user, its limits, default signals."""
    os.chdir(config["cwd"])  # again, through the new mounts: ".." never reaches a hidden parent
    if config["account"] is not None:
        uid, gid = config["account"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    for limit, value in (
        (resource.RLIMIT_AS, config["memory_bytes"]),
        (resource.RLIMIT_FSIZE, config["file_bytes"]),
        (resource.RLIMIT_CORE, 0),
    ):
        # Hard limits too: a soft limit alone is one setrlimit call away from gone.
        resource.setrlimit(limit, (value, value))
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # ignored by Python; what subprocess restores
        signal.signal(signum, signal.SIG_DFL)


if __name__ == "__main__":
    _launch(json.loads(sys.argv[1]))
