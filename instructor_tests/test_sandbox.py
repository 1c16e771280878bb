"""The sandbox (``autograder/sandbox.py``): records and output come back through pipes only, no
process or file of a submission outlives its run, hidden paths stay unreadable, the limits hold.

Each test runs a tiny pytest module in the sandbox (under a second). The sandbox-user tests need
root (as in CI) and create a throwaway user with ``useradd``; the namespace tests need a kernel
that allows them (as in CI).
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.sandbox import Limits, PytestRun, clean_sandbox_user_files, run_pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SANDBOX_USER = "cs288-test-sandbox"
LIMITS = Limits(seconds=60, memory_bytes=4 << 30, file_bytes=1 << 30)

# Written at the top of every test module run in the sandbox.
PRELUDE = """
import ctypes, glob, json, os, signal, subprocess, sys, time

def record(**fields):
    os.write(int(os.environ["CS288_RECORD_FD"]), (json.dumps(fields) + "\\n").encode())

def start_daemon(token):
    # Double fork and setsid: the daemon is in no process group or session of the run, and holds
    # both pipes (stdout and the record pipe are inherited).
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", token])
        os._exit(0)
    os.wait()

def read(path):
    try:
        with open(path) as file:
            return file.read()
    except OSError as error:
        return type(error).__name__
"""


def run(tmp_path: Path, source: str, limits: Limits = LIMITS, **options) -> PytestRun:
    """Run ``source`` (a test module, after PRELUDE) in the sandbox."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "test_x.py").write_text(PRELUDE + textwrap.dedent(source))
    return run_pytest(work, ["test_x.py"], limits, **options)


def recorded(run: PytestRun) -> list[dict]:
    return [json.loads(record.line) for record in run.records]


def within(seconds: float, function: Callable[[], PytestRun]) -> PytestRun:
    """``function()``, failing (instead of hanging the suite) if it takes longer than ``seconds``."""
    results: list[PytestRun] = []
    thread = threading.Thread(target=lambda: results.append(function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert results, f"run_pytest was still running after {seconds} s"
    return results[0]


def processes_with(token: str) -> list[int]:
    """The processes whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def kill_all_with(token: str) -> None:
    for pid in processes_with(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def namespaces() -> None:
    problem = sandbox._namespace_problem(None)
    if problem is not None:
        pytest.skip(f"namespaces are unavailable here: {problem}")


@pytest.fixture
def no_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_namespace_problem", lambda ids: "disabled by the test")


@pytest.fixture(scope="module")
def sandbox_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("running as a sandbox user needs root (CI runs as root)")
    try:
        return pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SANDBOX_USER,
            ],
            check=True,
        )
        return pwd.getpwnam(SANDBOX_USER)


@pytest.fixture
def token() -> Iterator[str]:
    """A word to find the processes and files a run left behind; they are killed afterwards anyway."""
    value = f"cs288-leftover-{secrets.token_hex(8)}"
    yield value
    kill_all_with(value)


def test_records_are_lines_stamped_on_arrival_and_output_is_a_bounded_tail(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(
        tmp_path,
        """
        def test_records():
            record(t="a")
            fd = int(os.environ["CS288_RECORD_FD"])
            os.write(fd, b'{"t": "b", "part": ')
            time.sleep(0.5)
            os.write(fd, b'1}\\n{"t": "c"}\\n{"t": "cut short')
            print("x" * 300_000)
            print("printed last")
        """,
        Limits(60, 4 << 30, 1 << 30, output_bytes=64),
        pytest_args=["-q", "-s"],  # printed, not captured by pytest
    )
    assert (result.problem, result.returncode) == (None, 0), result.output_tail
    assert recorded(result) == [{"t": "a"}, {"t": "b", "part": 1}, {"t": "c"}]  # the unfinished line is dropped
    first, second, _ = result.records
    assert started < first.received and second.received < time.monotonic()
    assert second.received - first.received >= 0.45  # stamped when its newline arrived, by the grader's clock
    assert len(result.output_tail.encode()) <= 64 and "printed last" in result.output_tail


def test_records_beyond_the_cap_are_dropped_and_the_writer_never_blocks(tmp_path: Path) -> None:
    limits = Limits(20, 4 << 30, 1 << 30, record_bytes=10_000)
    result = run(
        tmp_path,
        """
        def test_flood():
            for _ in range(2000):
                record(t="check", value="v" * 80)
            os.write(int(os.environ["CS288_RECORD_FD"]), b"y" * (4 << 20))  # far more than a pipe holds
        """,
        limits,
    )
    assert result.problem == f"the test process wrote more than {10_000 / 2**20:g} MB of records"
    assert result.returncode == 0  # it ran to its end: nothing blocked it
    stored = sum(len(record.line) + sandbox.RECORD_OVERHEAD_BYTES for record in result.records)
    assert result.records and stored <= 10_000


def test_the_grader_opens_no_path_the_submission_controls(tmp_path: Path) -> None:
    # Every file the test can reach around its private directories becomes a FIFO: a grader that
    # opened one after the run (a log file, a report) would block forever.
    result = within(
        30,
        lambda: run(
            tmp_path,
            """
            def test_plant_fifos():
                private = os.path.dirname(os.environ["TMPDIR"])
                for directory in (private, os.environ["HOME"], os.environ["TMPDIR"], os.getcwd()):
                    for root, _, files in os.walk(directory):
                        for name in files:
                            os.unlink(os.path.join(root, name))
                            os.mkfifo(os.path.join(root, name))
                    for name in ("output.log", "report.xml", "records.jsonl"):
                        if not os.path.exists(os.path.join(directory, name)):
                            os.mkfifo(os.path.join(directory, name))
                record(t="planted")
                print("still here")
            """,
            pytest_args=["-s"],
        ),
    )
    assert recorded(result) == [{"t": "planted"}] and "still here" in result.output_tail


def test_the_time_limit_stops_the_run(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(tmp_path, "def test_slow():\n    record(t='a')\n    time.sleep(60)\n", Limits(2, 4 << 30, 1 << 30))
    assert result.problem == "the time limit of 2 s was exceeded; the run was stopped"
    assert result.returncode is None and recorded(result) == [{"t": "a"}]
    assert time.monotonic() - started < 15


def test_installed_plugins_do_not_load_in_a_run(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """Plugins come only from the repository (conftest.py): syrupy, installed beside the grader for
    the instructor tests (requirements-dev.txt), loads by entry point in this session, not in a run."""
    here = {name for name, _ in pytestconfig.pluginmanager.list_name_plugin()}
    assert any("syrupy" in name for name in here)
    result = run(
        tmp_path,
        """
        def test_plugins(request):
            names = {name for name, _ in request.config.pluginmanager.list_name_plugin()}
            record(t="plugins", syrupy=any("syrupy" in name for name in names))
        """,
    )
    assert result.problem is None and recorded(result) == [{"t": "plugins", "syrupy": False}], result.output_tail


@pytest.mark.parametrize(
    ("body", "returncode", "problem"),
    [
        ("os.kill(os.getpid(), signal.SIGTERM)", -15, "the test process was killed by SIGTERM"),
        ("os._exit(3)", 3, "the test process exited with status 3 (pytest hit an internal error)"),
    ],
)
def test_exit_statuses(tmp_path: Path, body: str, returncode: int, problem: str | None) -> None:
    result = run(tmp_path, f"def test_exit():\n    {body}\n")
    assert (result.returncode, result.problem) == (returncode, problem), result.output_tail


def test_local_run_hides_paths_and_leaves_no_process(tmp_path: Path, namespaces: None, token: str) -> None:
    result = escape_attempts(tmp_path, token, None)
    assert result.isolation == "user, mount, PID, IPC and network namespaces"


def test_local_run_without_namespaces_leaves_no_process(tmp_path: Path, no_namespaces: None, token: str) -> None:
    # The grader is a child subreaper: the double-forked daemon is re-parented to it, and killed.
    result = within(30, lambda: run(tmp_path, f"def test_daemon():\n    start_daemon({token!r})\n"))
    assert result.problem is None, result.output_tail
    assert result.isolation == "none (namespaces unavailable: disabled by the test)"
    assert processes_with(token) == []


def test_readers_stop_when_a_process_escapes(tmp_path: Path, no_namespaces: None, token: str, monkeypatch) -> None:
    # Were the leftovers not killed, a daemon holding both pipes must still not hang the grader.
    def kill_group_only(process: subprocess.Popen, account: object) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        sandbox._in_flight.discard(process.pid)

    monkeypatch.setattr(sandbox, "_kill_leftovers", kill_group_only)
    started = time.monotonic()
    result = within(30, lambda: run(tmp_path, f"def test_daemon():\n    start_daemon({token!r})\n    record(t='a')\n"))
    assert recorded(result) == [{"t": "a"}] and processes_with(token)  # the daemon did survive
    assert time.monotonic() - started < 10


def test_sandbox_user_run_hides_paths_and_leaves_nothing(
    tmp_path: Path, namespaces: None, sandbox_user: pwd.struct_passwd, token: str
) -> None:
    if sandbox._namespace_problem((sandbox_user.pw_uid, sandbox_user.pw_gid)) is not None:
        pytest.skip("namespaces are unavailable to the sandbox user here")
    root_only = Path(tempfile.mkdtemp(prefix="cs288-root-only-", dir="/run"))  # on no scratch mount
    try:
        (root_only / "file").write_text("root's")
        result = escape_attempts(tmp_path, token, sandbox_user, root_only / "file")
    finally:
        shutil.rmtree(root_only)
    assert result.isolation == "sandbox user, mount, PID, IPC and network namespaces"
    report = recorded(result)[0]
    assert report["uid"] == sandbox_user.pw_uid and report["root_only"] == "PermissionError"
    assert user_processes(sandbox_user) == []


def user_processes(user: pwd.struct_passwd) -> list[int]:
    """The live processes of ``user``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields and int(fields["Uid"].split()[0]) == user.pw_uid and not fields["State"].strip().startswith("Z"):
            found.append(int(entry.name))
    return found


UNMOUNT_AND_READ = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for path in sys.argv[1:]:
    print("umount2", libc.umount2(os.path.dirname(path).encode(), 2), os.strerror(ctypes.get_errno()))
    try:
        print(open(path).read())
    except OSError as error:
        print(type(error).__name__)
"""


def escape_attempts(
    tmp_path: Path, token: str, user: pwd.struct_passwd | None, root_only: Path | None = None
) -> PytestRun:
    """Run a test that starts a daemon, leaves files in /tmp and /dev/shm, and tries to read two hidden
    paths (the instructors' repository, which holds the interpreter's virtualenv, and a directory of
    the work directory), also after unmounting them and through /proc/*/root, and a neighbour of the
    work directory in /tmp (another submission, say) through ".."; then check."""
    secret = f"secret-{secrets.token_hex(8)}"
    hidden_dir, neighbour = tmp_path / "work" / "hidden", tmp_path / "neighbour"
    for directory in (hidden_dir, neighbour):
        directory.mkdir(parents=True)
        (directory / "key").write_text(secret)
    targets = [str(hidden_dir / "key"), str(REPO_ROOT / "pyproject.toml")]
    left = [f"/tmp/{token}", f"/dev/shm/{token}", f"/var/tmp/{token}"]
    limits = Limits(60, 4 << 30, 1 << 30, user=user and user.pw_name)
    result = within(
        60,
        lambda: run(
            tmp_path,
            f"""
        TARGETS, LEFT, TOKEN, ROOT_ONLY = {targets!r}, {left!r}, {token!r}, {str(root_only)!r}
        UNMOUNT_AND_READ = {UNMOUNT_AND_READ!r}

        def test_escape():
            start_daemon(TOKEN)
            for path in LEFT:
                with open(path, "w") as file:
                    file.write("left behind")
            seen = [read(path) for path in TARGETS] + [read("../neighbour/key")]
            libc = ctypes.CDLL(None, use_errno=True)
            unmounted = [libc.umount2(os.path.dirname(path).encode(), 2) for path in TARGETS]  # MNT_DETACH
            seen += [read(path) for path in TARGETS]
            # Root of a new user and mount namespace of its own, with every capability there:
            nested = subprocess.run(
                ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", UNMOUNT_AND_READ, *TARGETS],
                capture_output=True, text=True,
            )
            seen.append(nested.stdout + nested.stderr)
            seen += [read(path) for target in TARGETS for path in glob.glob("/proc/*/root" + target)]
            with open("written.txt", "w") as file:  # the work directory stays writable
                file.write("ok")
            record(uid=os.getuid(), seen=seen, unmounted=unmounted, root_only=read(ROOT_ONLY))
        """,
            limits,
            hidden_paths=[REPO_ROOT, hidden_dir],
        ),
    )
    assert (result.problem, result.returncode) == (None, 0), result.output_tail
    report = recorded(result)[0]
    assert report["unmounted"] == [-1, -1]
    for text in [*report["seen"], result.output_tail]:
        assert secret not in text and "requires-python" not in text, report["seen"]
    assert (tmp_path / "work" / "written.txt").read_text() == "ok"
    assert processes_with(token) == []
    assert not [path for path in left if os.path.lexists(path)]
    return result


def test_sandbox_user_processes_are_all_killed(sandbox_user: pwd.struct_passwd, token: str) -> None:
    # Without namespaces the grader kills by uid, round after round: a daemon in its own session,
    # and one that keeps forking.
    as_user(sandbox_user, f"(setsid sleep 60 &); (setsid sh -c 'while :; do sleep 60 & sleep 0.01; done' {token} &)")
    deadline = time.monotonic() + 5
    while not processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processes_with(token)
    sandbox._kill_user_processes(sandbox_user.pw_uid)
    assert user_processes(sandbox_user) == []


def test_clean_sandbox_user_files(sandbox_user: pwd.struct_passwd, token: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"  # root's: must survive links pointing at it
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    kept = Path("/tmp", f"{token}-kept")
    as_user(
        sandbox_user,
        f"touch /tmp/{token}-file; mkdir -p /dev/shm/{token}-dir/sub; touch /dev/shm/{token}-dir/sub/file; "
        f"mkfifo /var/tmp/{token}-fifo; ln -s {outside} /tmp/{token}-link; ln -s {outside} /dev/shm/{token}-dir/link; "
        f"mkdir {kept}",
    )
    removed = clean_sandbox_user_files(SANDBOX_USER, keep=[kept])
    try:
        left = [f"/tmp/{token}-file", f"/dev/shm/{token}-dir", f"/var/tmp/{token}-fifo", f"/tmp/{token}-link"]
        assert set(left) <= set(removed) and not [path for path in left if os.path.lexists(path)]
        assert (outside / "precious").read_text() == "keep me" and kept.is_dir() and str(kept) not in removed
    finally:
        kept.rmdir()


def as_user(user: pwd.struct_passwd, script: str) -> None:
    subprocess.run(["sh", "-c", script], user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/", check=True)


# --- read-only binds, IPC, imports, refusal --------------------------------------------------------

PLANTED = f"cs288-planted-{secrets.token_hex(6)}.pth"  # an empty .pth: harmless were it ever written
INTERPRETER_DIRS = sorted(
    {sys.prefix, sys.base_prefix, os.path.dirname(os.__file__), sysconfig.get_paths()["purelib"], "/etc", "/usr/lib"}
)


def test_the_interpreter_and_the_system_are_read_only_and_the_runs_own_folders_writable(
    tmp_path: Path, namespaces: None
) -> None:
    """In local mode as root the test process is root too: only a read-only mount stops it from
    writing into the interpreter the grader imports from (or /etc, /usr); it cannot remount it."""
    try:
        result = run(
            tmp_path,
            f"""
            import errno
            PLANTED, READ_ONLY = {PLANTED!r}, {INTERPRETER_DIRS!r}

            def attempt(directory):
                try:
                    with open(os.path.join(directory, PLANTED), "w"):
                        return "written"
                except OSError as error:
                    return errno.errorcode[error.errno]

            def test_writes():
                libc = ctypes.CDLL(None, use_errno=True)
                remounted = libc.mount(None, sys.prefix.encode(), None, ctypes.c_ulong(32 | 4096), None)  # rw again
                own = [os.getcwd(), os.environ["HOME"], os.environ["TMPDIR"], "/tmp", "/dev/shm"]
                record(read_only=[attempt(path) for path in READ_ONLY], own=[attempt(path) for path in own],
                       remounted=remounted, uid=os.getuid())
            """,
        )
        assert result.problem is None, result.output_tail
        report = recorded(result)[0]
        assert report["own"] == ["written"] * 5
        assert report["remounted"] == -1
        expected = "EROFS" if report["uid"] == 0 else {"EROFS", "EACCES"}
        assert all(outcome in expected for outcome in report["read_only"]), report
    finally:
        planted = [Path(directory, PLANTED) for directory in INTERPRETER_DIRS]
        left = [path for path in planted if path.exists()]
        for path in left:
            path.unlink()
    assert left == []


IPC = """
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p

def make_ipc(key, text):
    # A shared memory segment holding text, a message queue and a semaphore set, all with key.
    segment = libc.shmget(key, 4096, 0o1600)  # IPC_CREAT | 0600
    address = libc.shmat(segment, None, 0)
    ctypes.memmove(address, text.encode(), len(text))
    return [segment, libc.msgget(key, 0o1600), libc.semget(key, 1, 0o1600)]

def read_segment(key):
    segment = libc.shmget(key, 0, 0)
    return None if segment < 0 else ctypes.string_at(libc.shmat(segment, None, 0), 64).rstrip(b"\\0").decode()
"""


def ipc_keys(kind: str) -> set[int]:
    """The keys of the System V objects of one kind (shm, msg, sem) the grader's namespace holds."""
    lines = Path("/proc/sysvipc", kind).read_text().splitlines()
    return {int(line.split()[0]) for line in lines[1:]}


def test_a_run_has_its_own_ipc_namespace(tmp_path: Path, namespaces: None) -> None:
    """A segment of the grader's namespace is out of reach, and what a run creates dies with it."""
    grader_key, run_key = (0x43530000 + secrets.randbelow(0xFFFF) for _ in range(2))
    libc = ctypes.CDLL(None, use_errno=True)
    outside = libc.shmget(grader_key, 4096, 0o1600)
    assert outside >= 0
    try:
        result = run(
            tmp_path,
            IPC
            + textwrap.dedent(f"""
            def test_ipc():
                seen = read_segment({grader_key})
                made = make_ipc({run_key}, "kept")
                record(seen=seen, made=made, again=read_segment({run_key}), listed=read("/proc/sysvipc/shm"))
            """),
        )
    finally:
        libc.shmctl(outside, 0, None)  # IPC_RMID
    assert result.problem is None, result.output_tail
    report = recorded(result)[0]
    assert report["seen"] is None and report["again"] == "kept" and min(report["made"]) >= 0
    assert str(grader_key) not in report["listed"]
    assert all(run_key not in ipc_keys(kind) for kind in ("shm", "msg", "sem"))


def user_ipc(user: pwd.struct_passwd) -> list[str]:
    """The System V objects ``user`` owns: "shm 12", ..."""
    return [
        f"{kind} {ident}"
        for kind, column, _ in sandbox._SYSV_IPC
        for ident in sandbox._ipc_objects(kind, column, user.pw_uid)
    ]


def test_without_namespaces_the_sandbox_users_ipc_objects_are_removed_after_a_run(
    tmp_path: Path, no_namespaces: None, sandbox_user: pwd.struct_passwd
) -> None:
    """Without an IPC namespace, System V objects outlive their processes: the end of every run
    removes the sandbox user's. (Made with ipcmk beforehand: without namespaces the sandbox user
    may not reach this interpreter, and the run's end is the same whatever the run did.)"""
    as_user(sandbox_user, "ipcmk -M 4096 && ipcmk -Q && ipcmk -S 1")
    try:
        assert len(user_ipc(sandbox_user)) == 3
        run(
            tmp_path,
            "def test_nothing():\n    record(t='ran')\n",
            Limits(60, 4 << 30, 1 << 30, user=sandbox_user.pw_name),
        )
        left = user_ipc(sandbox_user)
    finally:
        sandbox.remove_user_ipc(sandbox_user.pw_uid)
    assert left == []


WATCH_IMPORTS = """
import importlib.abc, json, sys

class Watch(importlib.abc.MetaPathFinder):
    armed, late = False, []

    def find_spec(self, name, path=None, target=None):
        if Watch.armed:
            Watch.late.append(name)
        return None  # the other finders import it

sys.meta_path.insert(0, Watch())
from autograder import grade, grade_all

run_pytest = grade.run_pytest

def armed(*args, **kwargs):
    Watch.armed = True  # from the first test process on
    return run_pytest(*args, **kwargs)

grade.run_pytest = armed
grade_all.main(sys.argv[1:])
print("LATE", json.dumps(sorted(set(Watch.late) - set(sys.builtin_module_names))))
"""


def test_the_grader_imports_nothing_once_a_test_process_ran(grading_bundle, tmp_path: Path) -> None:
    """A submission that could write into the interpreter's library (``zipfile.py``, a ``.pth``)
    would run code in the grader if it imported a module afterwards. grade_all on the solution and
    the bare handout (judging snapshots, failures, the similarity report): every module the grader
    imports, it imports before the first test process starts."""
    from autograder.gallery import solution_files, stub_files, write_files

    write_files(tmp_path / "submissions" / "solution", solution_files(grading_bundle.path))
    write_files(tmp_path / "submissions" / "stubs", stub_files(grading_bundle.path))
    command = [
        sys.executable, "-c", WATCH_IMPORTS,
        "--submissions", str(tmp_path / "submissions"), "--out", str(tmp_path / "out"),
        "--bundle", str(grading_bundle.path), "--only", "tests/test_nn_utils.py",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    late = json.loads(result.stdout.rsplit("LATE ", 1)[1])
    assert late == []
    assert (tmp_path / "out" / "solution" / "results.json").is_file()


def test_root_without_namespaces_or_a_sandbox_user_is_refused(
    tmp_path: Path, no_namespaces: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from autograder import grade, grade_all

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    out = tmp_path / "results.json"
    assert grade.main(["--submission", str(tmp_path), "--out", str(out), "--bundle", str(tmp_path)]) == 2
    assert grade_all.main(["--submissions", str(tmp_path), "--out", str(tmp_path / "all"), "--bundle", "x"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["grade", "grade_all"]
    for line in lines:
        assert "refusing to grade as root without a sandbox user" in line and "disabled by the test" in line
        assert "--sandbox-user" in line and "create_sandbox_user.sh" in line and "unshare" in line
    assert json.loads(out.read_text())["score"] == 0  # Gradescope still gets a results.json
    assert not (tmp_path / "all").exists()


def test_a_missing_sandbox_account_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the account is looked up only as root")
    command = [
        sys.executable,
        "-m",
        "autograder.grade",
        "--submission",
        str(tmp_path),
        "--out",
        str(tmp_path / "r.json"),
    ]
    result = subprocess.run(
        [*command, "--sandbox-user", "cs288-no-such-user"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "'cs288-no-such-user'" in line and "create_sandbox_user.sh" in line


def test_a_run_has_its_own_network_namespace(tmp_path: Path, namespaces: None) -> None:
    """A listener of the grader's network is out of reach, and no connection state a run leaves
    (TIME_WAIT entries in /proc/net/tcp, readable by the next module) outlives it."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = run(
            tmp_path,
            f"""
            import socket

            def test_network():
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
                    reached = "connected"
                except OSError as error:
                    reached = type(error).__name__
                record(reached=reached, tcp=read("/proc/net/tcp"))
            """,
        )
    assert result.problem is None, result.output_tail
    report = recorded(result)[0]
    assert report["reached"] != "connected"
    assert f":{port:04X}" not in report["tcp"]  # the grader's listener is not in the run's table


def test_limits_are_hard(tmp_path: Path) -> None:
    """The address-space and file-size limits cannot be raised from inside the run."""
    result = run(
        tmp_path,
        """
        import resource

        def test_raise():
            raised = []
            for name in ("RLIMIT_AS", "RLIMIT_FSIZE"):
                limit = getattr(resource, name)
                try:
                    resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                    raised.append(name)
                except (ValueError, OSError):
                    pass
            limits = [resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_FSIZE)]
            record(raised=raised, limits=limits)
        """,
    )
    assert result.problem is None, result.output_tail
    report = recorded(result)[0]
    assert report["raised"] == []
    assert report["limits"] == [[LIMITS.memory_bytes] * 2, [LIMITS.file_bytes] * 2]


def test_a_tree_deeper_than_python_recursion_is_removed(tmp_path: Path) -> None:
    """What a submission leaves in its folders (a tree thousands of levels deep, a folder without
    permissions) is removed after the run, and removing it never fails the grader."""
    result = run(
        tmp_path,
        """
        def test_deep():
            for base in (os.environ["TMPDIR"], os.environ["HOME"]):
                os.chdir(base)
                os.mkdir("deep-tree-marker")
                os.chdir("deep-tree-marker")
                for _ in range(3000):
                    os.mkdir("d")
                    os.chdir("d")
                os.chdir(base)
                os.mkdir("locked")
                os.chmod("locked", 0)
            record(made=True)
        """,
    )
    assert result.problem is None, result.output_tail
    deep = tmp_path / "deep"
    deep.mkdir()
    descriptor = os.open(deep, os.O_RDONLY)
    for _ in range(3000):  # os.makedirs would recurse as deep
        os.mkdir("d", dir_fd=descriptor)
        inner = os.open("d", os.O_RDONLY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    os.close(descriptor)
    sandbox.remove_tree(deep)
    assert not deep.exists()
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("sandbox-*") if (p / "home" / "deep-tree-marker").exists()]
    assert leftovers == []


def test_torchscript_is_off_in_a_run(tmp_path: Path) -> None:
    """A scripted function is the Python function again, so that F.linear inside it runs where the
    no-functional tests' torch function mode sees it."""
    result = run(
        tmp_path,
        """
        import torch

        def test_script():
            scripted = torch.jit.script(lambda x: torch.nn.functional.linear(x, x))
            record(kind=type(scripted).__name__)
        """,
    )
    assert result.problem is None, result.output_tail
    assert recorded(result)[0]["kind"] == "function"
