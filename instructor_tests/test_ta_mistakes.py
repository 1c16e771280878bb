"""A teaching assistant's ordinary mistakes are one line that says what to do, with a non-zero exit
status and no traceback; ``grade_all --workers`` grades as one at a time; both commands show progress.

Everything here grades with a tiny bundle (one student module, one test module of two tests, its
reference records made by the grader's own machinery), so each test process costs one start of
Python and torch: the grading bundle of the whole course (minutes to build) is not needed.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

import pytest

from autograder import grade as grade_module
from autograder import grade_all, sandbox
from autograder.bundle import record_modules, reference_records
from autograder.grade import SubmissionError, grade, read_submission
from autograder.make_handout import REPO_ROOT, write_tree
from autograder.sandbox import Limits

STUDENT = "cs288_lm/double.py"
MODULE = "tests/test_double.py"
STUB = b'def double(x):\n    raise NotImplementedError("Implement double (cs288_lm/double.py)")\n'
SOLUTION = b"def double(x):\n    return 2 * x\n"
HALF = b"def double(x):\n    return 6 if x == 3 else 0\n"
TEST = b"""from cs288_lm.double import double
from tests.graded import check_equal


def test_double_small():
    check_equal(double(3), 6)


def test_double_large():
    check_equal(double(21), 42)
"""
GIVEN = ("tests/graded.py", "requirements.txt", "configs/grading.json")
CONFTEST = b'pytest_plugins = ["tests.graded"]\n'  # the recorder only: no torch to import, a process starts fast
LIMITS = Limits(seconds=120, memory_bytes=4 << 30, file_bytes=64 << 20)


def handout() -> dict[str, bytes]:
    """The tiny course's handout: the grader's recorder, one stubbed module and its test."""
    given = {path: (REPO_ROOT / path).read_bytes() for path in GIVEN}
    return {**given, "conftest.py": CONFTEST, "cs288_lm/__init__.py": b"", STUDENT: STUB, MODULE: TEST}


def config() -> dict:
    """The course's grading config with one problem worth 15 public points, the tiny module's."""
    config = json.loads((REPO_ROOT / "autograder" / "grading_config.json").read_text(encoding="utf-8"))
    problem = {"name": "double", "part": "1", "public": 15.0, "hidden": 0.0, "modules": [MODULE]}
    return config | {"problems": [problem], "feedback_modules": False}


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle in the layout of :mod:`autograder.bundle`, the reference records recorded from the solution."""
    files = handout()
    (reference,) = record_modules([{**files, STUDENT: SOLUTION}], [MODULE])
    tests = list(reference[MODULE].tests)
    assert len(tests) == 2
    manifest = {"student_modules": [STUDENT], "modules": {MODULE: {"tests": tests, "given": [], "problems": {}}}}
    manifest["modules"][MODULE]["problems"] = dict.fromkeys(tests, "double")
    lines = b"".join(record.line + b"\n" for record in reference_records(reference[MODULE]))
    contents = {f"handout/{path}": data for path, data in files.items()}
    contents |= {f"secret/reference/{MODULE}.jsonl": lines, "hidden/autograder/__init__.py": b""}
    contents |= {"manifest.json": json.dumps(manifest).encode(), "grading_config.json": json.dumps(config()).encode()}
    path = tmp_path_factory.mktemp("tiny") / "bundle"
    write_tree(contents, path)
    return path


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def one_line(captured: pytest.CaptureFixture[str]) -> str:
    """The single line a command wrote to stderr (a traceback would be several)."""
    (line,) = captured.readouterr().err.splitlines()
    assert "Traceback" not in line
    return line


# --- grade: the submission folder ------------------------------------------------------------


def test_a_folder_without_a_student_file_is_refused_and_says_what_it_holds(tiny_bundle, tmp_path, capsys):
    write_files(tmp_path / "sub", {"notes.txt": b"x", "old/readme.md": b"y"})
    out = tmp_path / "results.json"
    status = grade_module.main(["--submission", str(tmp_path / "sub"), "--out", str(out), "--bundle", str(tiny_bundle)])
    line = one_line(capsys)
    assert status == 2 and line.startswith("grade: no file of the assignment")
    assert "notes.txt, old/" in line and f"looked for {STUDENT}, finetuned_predictions.json" in line
    results = json.loads(out.read_text(encoding="utf-8"))  # Gradescope still gets results.json, with the reason
    assert results["score"] == 0 and results["output"].startswith("Not graded: no file of the assignment")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_submission_path_that_is_no_folder_is_refused(tiny_bundle, tmp_path, capsys, kind):
    path = tmp_path / "sub"
    if kind == "file":
        path.write_text("x")
    out = tmp_path / "results.json"
    assert grade_module.main(["--submission", str(path), "--out", str(out), "--bundle", str(tiny_bundle)]) == 2
    line = one_line(capsys)
    assert str(path) in line and ("does not exist" if kind == "missing" else "is a file, not a folder") in line


def test_several_copies_of_a_module_are_refused_locally_and_named_on_gradescope(tiny_bundle, tmp_path, capsys):
    """``--submission .`` from the repository root finds every module twice (``dist/handout/`` holds
    copies): the command refuses, naming them; Gradescope's run grades the shallowest and says so first."""
    sub = write_files(tmp_path / "repo", {STUDENT: SOLUTION, f"dist/handout/{STUDENT}": STUB})
    out = tmp_path / "results.json"
    status = grade_module.main(["--submission", str(sub), "--out", str(out), "--bundle", str(tiny_bundle)])
    line = one_line(capsys)
    assert status == 2 and f"several copies of {STUDENT}" in line
    assert f"{STUDENT}, dist/handout/{STUDENT}" in line and "--duplicates shallowest" in line
    results = grade(sub, tiny_bundle, LIMITS, only=[], duplicates="shallowest")
    (files,) = [t for t in results["tests"] if t["name"] == "Submitted files"]
    first = files["output"].splitlines()[0]
    assert first.startswith(f"{STUDENT}: several files match") and f"graded {STUDENT}, the shallowest" in first
    gradescope = (REPO_ROOT / "autograder" / "gradescope" / "run_autograder").read_text(encoding="utf-8")
    assert "--duplicates shallowest" in gradescope


def test_a_folder_of_submissions_or_a_zip_given_to_grade_says_what_to_do(tiny_bundle, tmp_path, capsys):
    subs = write_files(tmp_path / "subs", {f"{name}/{STUDENT}": SOLUTION for name in ("alice", "bob", "carol")})
    out = tmp_path / "results.json"
    assert grade_module.main(["--submission", str(subs), "--out", str(out), "--bundle", str(tiny_bundle)]) == 2
    line = one_line(capsys)
    assert "holds 3 folders with copies" in line and "autograder.grade_all --submissions" in line
    zipped = write_files(tmp_path / "zipped", {"submission.zip": b"PK"})
    assert grade_module.main(["--submission", str(zipped), "--out", str(out), "--bundle", str(tiny_bundle)]) == 2
    assert "only a zip (submission.zip): unzip it" in one_line(capsys)


def test_a_mistyped_only_module_is_refused_with_the_module_names(tiny_bundle, tmp_path, capsys):
    """A misspelt ``--only`` graded nothing and exited 0: now it names the modules there are."""
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    args = ["--submission", str(sub), "--out", str(tmp_path / "r.json"), "--bundle", str(tiny_bundle)]
    assert grade_module.main([*args, "--only", "tests/test_doubel.py"]) == 2
    line = one_line(capsys)
    assert "--only tests/test_doubel.py: no such test module" in line and MODULE in line
    subs = write_files(tmp_path / "subs", {f"alice/{STUDENT}": SOLUTION})
    args = ["--submissions", str(subs), "--out", str(tmp_path / "o"), "--bundle", str(tiny_bundle), "--no-similarity"]
    assert grade_all.main([*args, "--only", "test_double.py"]) == 2
    assert "--only test_double.py: no such test module" in one_line(capsys)
    assert not (tmp_path / "o").exists()


def test_grade_all_refuses_an_out_folder_holding_an_earlier_run(tiny_bundle, tmp_path, capsys):
    """Earlier results beside new ones would read as one run, and keep old code in similarity/."""
    subs = write_files(tmp_path / "subs", {f"alice/{STUDENT}": SOLUTION})
    earlier = write_files(tmp_path / "results", {"bob/results.json": b"{}"})
    args = ["--submissions", str(subs), "--out", str(earlier), "--bundle", str(tiny_bundle), "--no-similarity"]
    assert grade_all.main(args) == 2
    assert "is not empty (an earlier run's results?)" in one_line(capsys)
    assert (earlier / "bob" / "results.json").read_bytes() == b"{}" and not (earlier / "alice").exists()


def test_a_submission_one_folder_down_is_found(tiny_bundle, tmp_path):
    """Uploads often hold the repository one folder down (``cs288-main/cs288_lm/...``)."""
    from autograder.grade import Bundle

    sub = write_files(tmp_path / "sub", {f"cs288-main/{STUDENT}": HALF, "cs288-main/README.md": b""})
    submission = read_submission(sub, Bundle.load(tiny_bundle))
    assert submission.modules[STUDENT] == HALF and submission.notes == [f"{STUDENT}: graded cs288-main/{STUDENT}"]
    with pytest.raises(SubmissionError, match="no file of the assignment"):
        read_submission(write_files(tmp_path / "none", {"x/y.txt": b""}), Bundle.load(tiny_bundle))


# --- grade and grade_all: bad paths -------------------------------------------------------------


def test_a_bad_bundle_path_is_one_line_for_both_commands(tmp_path, capsys):
    write_files(tmp_path / "subs" / "alice", {STUDENT: SOLUTION})
    for bundle in (tmp_path / "no-such-bundle", tmp_path / "subs"):
        out = tmp_path / "r.json"
        assert grade_module.main(["--submission", str(tmp_path), "--out", str(out), "--bundle", str(bundle)]) == 2
        assert "python -m autograder.bundle --out" in one_line(capsys)
        assert json.loads(out.read_text(encoding="utf-8"))["score"] == 0  # Gradescope: the grader failed
        args = ["--submissions", str(tmp_path / "subs"), "--out", str(tmp_path / "all"), "--bundle", str(bundle)]
        assert grade_all.main(args) == 2
        assert "is not a grading bundle" in one_line(capsys) or not bundle.exists()
    assert not (tmp_path / "all").exists()


def test_a_bad_out_path_is_one_line(tiny_bundle, tmp_path, capsys):
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    (tmp_path / "file").write_text("x")
    for out, reason in ((tmp_path, "is a folder"), (tmp_path / "file" / "r.json", "is a file, not a folder")):
        assert grade_module.main(["--submission", str(sub), "--out", str(out), "--bundle", str(tiny_bundle)]) == 2
        assert reason in one_line(capsys)
    subs = write_files(tmp_path / "subs", {f"alice/{STUDENT}": SOLUTION})
    for out, reason in ((tmp_path / "file", "is a file"), (subs / "results", "is inside --submissions")):
        args = ["--submissions", str(subs), "--out", str(out), "--bundle", str(tiny_bundle), "--no-similarity"]
        assert grade_all.main(args) == 2
        assert reason in one_line(capsys)


def test_grade_all_refuses_one_students_folder_and_an_empty_one(tiny_bundle, tmp_path, capsys):
    def run(submissions: Path) -> int:
        args = ["--submissions", str(submissions), "--out", str(tmp_path / "out"), "--bundle", str(tiny_bundle)]
        return grade_all.main([*args, "--no-similarity"])

    one = write_files(tmp_path / "alice", {STUDENT: SOLUTION, "tests/test_x.py": b""})
    assert run(one) == 2
    line = one_line(capsys)
    assert "holds cs288_lm/: it is one student's submission" in line and "autograder.grade --submission" in line
    (tmp_path / "empty").mkdir()
    assert run(tmp_path / "empty") == 2
    assert "holds no folder (nothing (it is empty))" in one_line(capsys)
    assert run(tmp_path / "missing") == 2
    assert "does not exist" in one_line(capsys)
    # Without --bundle, refused before a bundle is built (minutes), by this repository's file names.
    assert grade_all.main(["--submissions", str(one), "--out", str(tmp_path / "out"), "--no-similarity"]) == 2
    assert "it is one student's submission" in one_line(capsys)
    assert not (tmp_path / "out").exists()


# --- the sandbox account ------------------------------------------------------------------------


def test_a_sandbox_user_without_root_or_without_its_account_is_one_line(tiny_bundle, tmp_path, monkeypatch, capsys):
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    args = ["--submission", str(sub), "--out", str(tmp_path / "r.json"), "--bundle", str(tiny_bundle)]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert grade_module.main([*args, "--sandbox-user", "grader-sandbox"]) == 2
    assert "--sandbox-user grader-sandbox needs root" in one_line(capsys)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert grade_module.main([*args, "--sandbox-user", "cs288-no-such-account"]) == 2
    line = one_line(capsys)
    assert "no account 'cs288-no-such-account'" in line and "autograder/gradescope/create_sandbox_user.sh" in line
    assert grade_all.main(["--submissions", str(tmp_path), "--out", str(tmp_path / "o"), "--sandbox-user", "x"]) == 2
    assert "no account 'x'" in one_line(capsys)


def account(name: str, uid: int, shell: str = "/usr/sbin/nologin") -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, uid, "", "/nonexistent", shell))


def test_an_account_in_use_is_refused_as_the_sandbox_user(tiny_bundle, tmp_path, monkeypatch, capsys):
    """The end of every sandboxed run kills every process of the sandbox user: root, the grader's own
    account, an account people log into or one with processes running is refused before anything runs."""
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    args = ["--submission", str(sub), "--out", str(tmp_path / "r.json"), "--bundle", str(tiny_bundle)]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert grade_module.main([*args, "--sandbox-user", "root"]) == 2
    assert "is root or the account grading" in one_line(capsys)
    assert not (tmp_path / "r.json").exists() or json.loads((tmp_path / "r.json").read_text())["score"] == 0
    accounts = {"me": account("me", os.getuid() or 4242), "alice": account("alice", 4243, "/bin/bash")}
    accounts["busy"] = account("busy", 4244)
    monkeypatch.setattr(os, "getuid", lambda: accounts["me"].pw_uid)
    monkeypatch.setattr(pwd, "getpwnam", accounts.__getitem__)
    busy = sandbox._Process(ppid=1, state="S", start=1, uids=(4244, 4244, 4244, 4244))
    monkeypatch.setattr(sandbox, "_process_table", lambda: {99999: busy})
    assert sandbox.grading_problem("me") is not None and "account grading" in sandbox.grading_problem("me")
    assert "login shell /bin/bash" in sandbox.grading_problem("alice")
    assert "1 running process(es) (pid 99999)" in sandbox.grading_problem("busy")
    accounts["fresh"] = account("fresh", 4245)
    assert sandbox.grading_problem("fresh") is None  # a dedicated, idle account


def test_workers_with_a_sandbox_user_are_refused(tmp_path, capsys):
    args = ["--submissions", str(tmp_path), "--out", str(tmp_path / "o"), "--sandbox-user", "grader-sandbox"]
    with pytest.raises(SystemExit) as stopped:
        grade_all.main([*args, "--workers", "2"])
    assert stopped.value.code == 2
    assert "--workers must be at least 1, and 1 with --sandbox-user" in capsys.readouterr().err


# --- test processes that cannot start -------------------------------------------------------------


def test_test_processes_that_cannot_start_stop_grading_with_their_output(tiny_bundle, tmp_path, capsys):
    broken = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, broken)
    (broken / "handout" / "conftest.py").write_text("import cs288_no_such_module\n", encoding="utf-8")
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    out = tmp_path / "results.json"
    status = grade_module.main(["--submission", str(sub), "--out", str(out), "--bundle", str(broken)])
    lines = capsys.readouterr().err.splitlines()
    assert status == 1 and "Traceback" not in "\n".join(lines)
    (line,) = [line for line in lines if not line.startswith("grade: [")]  # one error besides the progress lines
    assert line.startswith("grade: test processes cannot start here") and "cs288_no_such_module" in line
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["score"] == 0 and "cs288_no_such_module" in results["output"]


def test_a_submission_that_ends_its_own_process_is_graded_not_blamed_on_the_grader(tiny_bundle, tmp_path):
    """Ending the process while the tests are collected records nothing, as a broken environment
    does; the bare handout's probe still starts, so the submission simply earns nothing."""
    sub = write_files(tmp_path / "sub", {STUDENT: b"import os\nos._exit(0)\n"})
    results = grade(sub, tiny_bundle, LIMITS)
    assert results["score"] == 0
    (entry,) = [t for t in results["tests"] if t["name"].startswith("Part 1: double")]
    assert "0 of 2 tests passed" in entry["output"]
    assert "exited with status 0 before any test ran" in entry["output"]


# --- grade_all --workers and progress ----------------------------------------------------------------


def test_workers_grade_as_one_at_a_time_with_progress(tiny_bundle, tmp_path):
    subs = tmp_path / "subs"
    write_files(subs / "alice" / "cs288-main", {STUDENT: SOLUTION})  # one folder down, as uploads are
    write_files(subs / "bob", {STUDENT: STUB})
    write_files(subs / "carol", {STUDENT: HALF})
    runs = {}
    for workers in (1, 3):
        lines: list[str] = []
        out = tmp_path / f"out{workers}"
        rows = grade_all.grade_folder(subs, out, tiny_bundle, workers=workers, progress=lines.append)
        results = {s: json.loads((out / s / "results.json").read_text(encoding="utf-8")) for s in ("alice", "bob")}
        runs[workers] = rows, [r | {"execution_time": 0} for r in results.values()], (out / "summary.csv").read_text()
        assert sorted(line.split("]")[0] for line in lines) == ["[1/3", "[2/3", "[3/3"]
        assert "left)" in lines[0] and "left" not in lines[-1]
    assert runs[1] == runs[3]
    assert [(row["student"], row["total"]) for row in runs[1][0]] == [("alice", 15.0), ("bob", 0.0), ("carol", 7.5)]


def test_grade_shows_a_line_per_module(tiny_bundle, tmp_path):
    lines: list[str] = []
    results = grade(write_files(tmp_path, {STUDENT: HALF}), tiny_bundle, LIMITS, progress=lines.append)
    assert results["score"] == 7.5
    (line,) = lines
    assert line.startswith(f"[1/1] {MODULE}: 1 of 2 tests passed (") and line.endswith(" s)")


# --- speed -------------------------------------------------------------------------------------


def test_test_modules_are_stripped_once_per_content(tiny_bundle):
    """The stripped test modules are the same for every module run and every submission: made once."""
    from autograder.grade import Bundle, stripped
    from autograder.strip_expected import sandbox_tree

    bundle = Bundle.load(tiny_bundle)
    assert stripped(bundle.handout) | stripped(bundle.hidden) == sandbox_tree({**bundle.handout, **bundle.hidden})
    assert stripped(bundle.handout)[MODULE] != TEST  # expected values are gone
    assert stripped(dict(bundle.handout)) is stripped(bundle.handout)
    changed = bundle.handout | {MODULE: TEST.replace(b"42", b"44")}
    assert stripped(changed) is not stripped(bundle.handout)


# --- second round of a TA's mistakes ------------------------------------------------------------


def test_grade_never_overwrites_a_file_that_is_not_an_earlier_results_json(tiny_bundle, tmp_path, capsys):
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    notes = write_files(tmp_path, {"notes.txt": b"my notes\n"}) / "notes.txt"
    args = ["--submission", str(sub), "--bundle", str(tiny_bundle)]
    assert grade_module.main([*args, "--out", str(notes)]) == 2
    assert "exists and is not a results.json" in one_line(capsys)
    assert notes.read_bytes() == b"my notes\n"
    earlier = tmp_path / "results.json"
    earlier.write_text(json.dumps({"score": 3, "tests": []}), encoding="utf-8")
    assert grade_module.main([*args, "--out", str(earlier)]) == 0  # an earlier results.json is replaced
    capsys.readouterr()
    assert json.loads(earlier.read_text(encoding="utf-8"))["score"] == 15


def test_grade_with_an_unwritable_out_is_one_line(tiny_bundle, tmp_path, capsys):
    sub = write_files(tmp_path / "sub", {STUDENT: SOLUTION})
    out = Path("/proc/cs288-results.json")  # a folder that exists, where no file can be made
    assert grade_module.main(["--submission", str(sub), "--out", str(out), "--bundle", str(tiny_bundle)]) == 2
    assert "cannot write --out /proc/cs288-results.json" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("flag", ["--time-limit", "--memory-mb"])
def test_limits_must_be_positive(tiny_bundle, tmp_path, capsys, flag):
    args = ["--submission", str(tmp_path), "--out", str(tmp_path / "r.json"), "--bundle", str(tiny_bundle)]
    with pytest.raises(SystemExit) as stopped:
        grade_module.main([*args, flag, "-5"])
    assert stopped.value.code == 2 and "must be above 0" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_grade_all_skips_archive_debris_and_hidden_folders(tiny_bundle, tmp_path, capsys):
    subs = write_files(tmp_path / "subs", {f"alice/{STUDENT}": SOLUTION, "__MACOSX/._x": b"", ".cache/x": b""})
    args = ["--submissions", str(subs), "--out", str(tmp_path / "out"), "--bundle", str(tiny_bundle)]
    assert grade_all.main([*args, "--no-similarity"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["alice"]


def test_a_symbolic_link_is_named_not_just_missing(tiny_bundle, tmp_path):
    from autograder.grade import Bundle

    solution = write_files(tmp_path / "elsewhere", {"double.py": SOLUTION}) / "double.py"
    sub = write_files(tmp_path / "sub", {"notes.txt": b""})
    (sub / "cs288_lm").mkdir()
    (sub / STUDENT).symlink_to(solution)
    (sub / "finetuned_predictions.json").symlink_to("/dev/zero")
    with pytest.raises(SubmissionError, match=r"never read: cs288_lm/double.py, finetuned_predictions.json"):
        read_submission(sub, Bundle.load(tiny_bundle), "shallowest")
    write_files(sub, {"prompting_predictions.json": b"[]"})
    notes = read_submission(sub, Bundle.load(tiny_bundle), "shallowest").notes
    assert notes[0] == f"{STUDENT}: a symbolic link or special file, never read (graded as missing): submit the file"
    assert notes[1].startswith("finetuned_predictions.json: a symbolic link")
