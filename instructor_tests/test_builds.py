"""Builds take only what belongs, never delete what they did not make, reuse a bundle cached by its
inputs and say how far they are; the handout's text names no file that students do not get.

The bundle and the zip take their files through the same functions as the handout
(``shipped_files``, ``handout_contents``, ``hidden_contents``, ``bundle_inputs``, ``zip_contents``),
so these checks call those functions on a clone of this repository rather than build a whole bundle.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import tokenize
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import bundle as bundle_module
from autograder.build_zip import write_zip, zip_contents
from autograder.bundle import (
    KEPT_BUNDLES,
    ModuleWatch,
    Progress,
    bundle_inputs,
    bundle_key,
    cached_bundle,
    hidden_contents,
    prune_cache,
)
from autograder.make_handout import (
    BUILD_MARKER,
    HANDOUT_README,
    NOT_GRADER_CODE,
    REPO_ROOT,
    BuildError,
    build_handout,
    handout_contents,
    handout_files,
    inside_repository_problem,
    write_output,
)

FAKE_STUDENT = "alice-0xC0FFEE"  # written into every planted grading output; must reach no build


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone of this repository (its committed files only)."""
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(path)], check=True, capture_output=True, timeout=120)
    return path


def plant_grading_outputs(root: Path) -> list[Path]:
    """What ``grade --out results.json`` and ``grade_all --out results/`` leave in a repository."""
    planted = {
        "results.json": json.dumps({"student": FAKE_STUDENT, "score": 71}),
        "results/alice/results.json": json.dumps({"student": FAKE_STUDENT}),
        "results/summary.csv": f"student,score\n{FAKE_STUDENT},71\n",
        "results/similarity/index.html": f"<p>{FAKE_STUDENT}: def softmax(x): ...</p>",
        "autograder/results.json": json.dumps({"student": FAKE_STUDENT}),
    }
    for relative, text in planted.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return [root / relative for relative in planted]


def test_grading_outputs_in_the_repository_reach_no_build(clone, tmp_path):
    before = (handout_contents(clone), hidden_contents(clone), bundle_inputs(clone))
    planted = plant_grading_outputs(clone)
    assert all(path.is_file() for path in planted)
    handout = handout_contents(clone)
    assert (handout, hidden_contents(clone), bundle_inputs(clone)) == before
    # The zip: the grader's code from the clone and a bundle whose handout is this handout.
    fake_bundle = tmp_path / "bundle"
    write_output({f"handout/{path}": data for path, data in handout.items()}, fake_bundle, "bundle")
    entries = zip_contents(fake_bundle, clone)
    assert "bundle/handout/cs288_lm/model.py" in entries and "autograder/grade.py" in entries
    leaked = [name for name, data in entries.items() if FAKE_STUDENT.encode() in data or "results" in name]
    assert leaked == []
    assert BUILD_MARKER not in {name.removeprefix("bundle/") for name in entries}
    out = tmp_path / "handout"
    build_handout(out, clone)
    assert not any(FAKE_STUDENT.encode() in path.read_bytes() for path in out.rglob("*") if path.is_file())


def test_the_gallery_of_attacks_reaches_no_build(clone, tmp_path):
    """``autograder/gallery.py`` sits beside the grader for the instructors' checks to import, but
    neither the Gradescope zip, the bundle's inputs nor the handout take it."""
    gallery = "autograder/gallery.py"
    assert (clone / gallery).is_file() and gallery in NOT_GRADER_CODE
    fake_bundle = tmp_path / "bundle"
    write_output({"handout/README.md": b"a handout\n"}, fake_bundle, "bundle")
    entries = zip_contents(fake_bundle, clone)
    assert "autograder/grade.py" in entries
    assert [name for name in entries if name.endswith("gallery.py")] == []
    assert [name for name, _ in bundle_inputs(clone) if name.endswith("gallery.py")] == []
    assert [path for path in handout_files(clone) if path.endswith("gallery.py")] == []


def test_an_untracked_file_where_a_build_would_ship_stops_it(clone):
    (clone / "out").mkdir()
    (clone / "out" / "run.log").write_text("ignored: out/ is in .gitignore\n", encoding="utf-8")
    assert "cs288_lm/model.py" in handout_files(clone)
    for relative in ("notes.txt", "cs288_lm/scratch.py", "autograder/draft.py"):
        (clone / relative).write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(BuildError) as raised:
        handout_files(clone)
    message = str(raised.value)
    assert "\n" not in message and "commit, delete or add to .gitignore" in message
    assert all(name in message for name in ("notes.txt", "cs288_lm/scratch.py", "autograder/draft.py"))
    assert "run.log" not in message
    result = subprocess.run(
        [sys.executable, "-m", "autograder.make_handout", "--out", str(clone / "dist" / "handout")],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("make_handout: untracked files") and result.stderr.count("\n") == 1
    assert not (clone / "dist").exists()


def test_a_build_outside_a_git_checkout_says_so_in_one_line(tmp_path, clone):
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "adapters.py").write_text("x = 1\n", encoding="utf-8")
    for root, said in ((tmp_path / "loose", "is not a git checkout"), (clone / "cs288_lm", "not the top")):
        with pytest.raises(BuildError, match=said) as raised:
            handout_files(root)
        assert "\n" not in str(raised.value) and "clone of the course repository" in str(raised.value)


def test_builds_replace_only_what_a_build_made(tmp_path):
    dist = tmp_path / "dist"
    (dist / "grader").mkdir(parents=True)
    (dist / "autograder.zip").write_bytes(b"the zip uploaded to Gradescope")
    result = subprocess.run(
        [sys.executable, "-m", "autograder.make_handout", "--out", str(dist)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{dist} holds files no build made" in result.stderr and BUILD_MARKER in result.stderr
    assert (dist / "autograder.zip").read_bytes() == b"the zip uploaded to Gradescope"
    assert sorted(p.name for p in dist.iterdir()) == ["autograder.zip", "grader"]
    # A previous build of the same kind is replaced whole, unless something it did not write was put
    # there (a TA's notes, a zip built beside it): then nothing is deleted. An empty one is used; a
    # file is refused.
    out = tmp_path / "handout"
    build_handout(out)
    (out / "adapters.py").write_text("edited after the build\n", encoding="utf-8")
    build_handout(out)
    assert (out / "adapters.py").read_text(encoding="utf-8") != "edited after the build\n"
    (out / "notes.txt").write_text("a TA's notes\n", encoding="utf-8")
    with pytest.raises(BuildError, match=r"holds files its build did not make \(notes.txt\)"):
        build_handout(out)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "a TA's notes\n"
    (out / "notes.txt").unlink()
    with pytest.raises(BuildError, match="holds a handout build, not a bundle"):
        write_output({"manifest.json": b"{}\n"}, out, "bundle")
    assert (out / "adapters.py").is_file()
    (tmp_path / "empty").mkdir()
    build_handout(tmp_path / "empty")
    assert (tmp_path / "empty" / "adapters.py").is_file()
    with pytest.raises(BuildError, match="is not a directory"):
        build_handout(dist / "autograder.zip")


def test_the_zip_replaces_only_a_zip_and_appears_whole(tmp_path):
    notes = tmp_path / "notes.zip"
    notes.write_text("not a zip\n", encoding="utf-8")
    with pytest.raises(BuildError, match="is not an autograder zip this command made"):
        write_zip({"a.txt": b"a"}, notes)
    assert notes.read_text(encoding="utf-8") == "not a zip\n"
    downloaded = tmp_path / "submissions.zip"  # a zip, but not one this command made: kept
    with zipfile.ZipFile(downloaded, "w") as archive:
        archive.writestr("alice/cs288_lm/model.py", "x = 1\n")
    with pytest.raises(BuildError, match="is not an autograder zip this command made"):
        write_zip({"a.txt": b"a"}, downloaded)
    with pytest.raises(BuildError, match="is a folder"):
        write_zip({"a.txt": b"a"}, tmp_path)
    ours = {"run_autograder": b"", "setup.sh": b"", "autograder/grade.py": b""}
    out = tmp_path / "autograder.zip"
    write_zip({**ours, "a.txt": b"old"}, out)
    write_zip({**ours, "b.txt": b"new"}, out)
    with zipfile.ZipFile(out) as archive:
        assert "a.txt" not in archive.namelist() and archive.read("b.txt") == b"new"
    # no partial file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["autograder.zip", "notes.zip", "submissions.zip"]


def test_a_build_inside_the_repository_must_be_in_an_ignored_path():
    """An output there would be an untracked file where builds take files from: the next build would
    refuse it (or it would ship). dist/ is ignored."""
    assert inside_repository_problem(REPO_ROOT / "dist" / "handout", "handout") is None
    assert "write it under dist/" in inside_repository_problem(REPO_ROOT / "handout_here", "handout")
    with pytest.raises(BuildError, match="inside the repository and not ignored"):
        write_zip({"a.txt": b"a"}, REPO_ROOT / "autograder.zip")
    assert not (REPO_ROOT / "autograder.zip").exists()
    from autograder import reference_submission

    assert reference_submission.main(["--out", str(REPO_ROOT / "reference_here")]) == 1
    assert not (REPO_ROOT / "reference_here").exists()


def test_the_zip_says_how_far_it_is_once_per_step_passed(tmp_path, capsys):
    contents = {"a.bin": bytes(100), "big.bin": bytes(700), "c.bin": bytes(200)}
    write_zip(contents, tmp_path / "autograder.zip")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["[1/10]", "[8/10]", "[10/10]"]
    assert lines[1].startswith("[8/10] 0.0 of 0.0 MB compressed, ETA ") and ", in " in lines[2]


def test_the_bundle_is_built_once_per_inputs_and_then_reused(tmp_path, monkeypatch, capsys):
    builds = []

    def fake_build(out: Path, root: Path = REPO_ROOT) -> None:
        builds.append(root)
        write_output({"manifest.json": b"{}\n", "secret/answers/test.json": b"[]\n"}, out, "bundle")

    monkeypatch.setattr(bundle_module, "build_bundle", fake_build)
    cache = tmp_path / "cache"
    first = cached_bundle(REPO_ROOT, cache)
    second = cached_bundle(REPO_ROOT, cache)
    assert first == second == cache / bundle_key(REPO_ROOT) and len(builds) == 1
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("building the grading bundle") and said[-1].startswith("using cached bundle")
    assert re.search(r"built \d{4}-\d\d-\d\d \d\d:\d\d UTC$", said[-1])
    assert sorted(p.name for p in cache.iterdir()) == [".lock", first.name]  # the temporary build directory is gone


def test_two_commands_at_once_build_the_bundle_once(tmp_path, monkeypatch):
    builds = []

    def slow_build(out: Path, root: Path = REPO_ROOT) -> None:
        builds.append(root)
        time.sleep(1)  # the other command arrives while this one builds
        write_output({"manifest.json": b"{}\n"}, out, "bundle")

    monkeypatch.setattr(bundle_module, "build_bundle", slow_build)
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda _: cached_bundle(REPO_ROOT, tmp_path), range(2)))
    assert paths[0] == paths[1] and len(builds) == 1


def test_the_bundle_key_follows_the_inputs_only(clone):
    key = bundle_key(clone)
    plant_grading_outputs(clone)
    (clone / "README.md").write_text("the instructors' README is no input of the bundle\n", encoding="utf-8")
    assert bundle_key(clone) == key
    with (clone / "cs288_lm" / "model.py").open("a", encoding="utf-8") as file:
        file.write("# an edit, not yet committed\n")
    assert bundle_key(clone) != key


def test_pruning_keeps_the_newest_bundles_and_what_no_build_made(tmp_path):
    for age in range(KEPT_BUNDLES + 2):
        entry = tmp_path / f"bundle{age}"
        write_output({"manifest.json": b"{}\n"}, entry, "bundle")
        os.utime(entry / BUILD_MARKER, (1e9 - age, 1e9 - age))
    (tmp_path / "mine").mkdir()
    prune_cache(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"bundle{age}" for age in range(KEPT_BUNDLES)] + ["mine"]


def test_progress_names_each_finished_module_with_counts_and_eta():
    lines = []
    watch = ModuleWatch("reference solution", Progress(2, lines.append))
    for record in (
        {"t": "start", "test": "tests/test_a.py::test_one"},
        {"t": "end", "test": "tests/test_a.py::test_one", "outcome": "passed"},
        {"t": "start", "test": "tests/test_a.py::test_two"},
        {"t": "start", "test": "tests/test_b.py::test_three[1]"},
    ):
        watch.record(json.dumps(record).encode())
    watch.record(b"not json")
    watch.end()
    assert len(lines) == 2
    assert re.fullmatch(r"\[1/2\] reference solution: tests/test_a\.py done, ETA \d+s", lines[0])
    assert re.fullmatch(r"\[2/2\] reference solution: tests/test_b\.py done, in \d+s", lines[1])


# Path-like strings in the handout's text: a relative path with a folder (``cs288_lm/model.py``,
# ``tests/``) or a file name with one of these extensions (``make_qa_data.py``).
EXTENSIONS = "py|json|jsonl|txt|md|toml|npz|png|pt|csv|sh|html|ipynb|cfg|ini|yaml|yml"
PATH_LIKE = re.compile(rf"(?<![\w./-])((?:\.?[\w-]+/)*[\w.-]+\.(?:{EXTENSIONS})|(?:\.?[\w-]+/)+[\w.-]*)(?![\w/])")
# Named in the handout but not in it, on purpose: the official full-scale TinyStories files, which
# students download themselves (data/tinystories/README.md, "Full-scale data").
DOWNLOADED = {"data/TinyStoriesV2-GPT4-train.txt", "data/TinyStoriesV2-GPT4-valid.txt"}
# What the given programs write, which the instructors' repository also holds as files: the two
# predictions files (run_finetune_qa.py), and the folder the publishing command writes them to
# (baseline_metrics.json records that command).
WRITTEN_BY_PROGRAMS = {"finetuned_predictions.json", "prompting_predictions.json", "autograder/reference_predictions"}
# Folders of the handout that are data, not prose.
DATA_FOLDERS = ("tests/fixtures/", "tests/_snapshots/")


def python_text(source: str) -> str:
    """The comments and docstrings (string statements) of a Python file: its prose, not its code."""
    pieces, previous = [], tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        statement = previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        if token.type == tokenize.COMMENT or token.type == tokenize.STRING and statement:
            pieces.append(token.string)
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token.type
    return "\n".join(pieces)


def shipped_text(handout: dict[str, bytes]) -> dict[str, str]:
    """The prose of every text file of the handout: whole files, or comments and docstrings of Python."""
    texts = {}
    for path, data in handout.items():
        if path.startswith(DATA_FOLDERS) or path.startswith("data/") and not path.endswith(".md"):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        texts[path] = python_text(text) if path.endswith(".py") else text
    return texts


def missing_references(handout: dict[str, bytes], repository: list[str]) -> list[str]:
    """Each path-like string of the handout's text that names a file students do not get: a path
    into one of the repository's folders (or ``dist/``) that the handout lacks, or the name of an
    instructors' file that no handout file has. Names of nothing in either (``out/...``, a
    checkpoint, a predictions file) are what the programs write and are not checked."""
    files = set(handout)
    folders = {"/".join(f.split("/")[:depth]) for f in files for depth in range(1, f.count("/") + 1)}
    checked_folders = {r.split("/")[0] for r in repository if "/" in r} | {"dist"}
    instructor_names = {r.rsplit("/", 1)[-1] for r in repository} - {f.rsplit("/", 1)[-1] for f in files}
    found = []
    for path, text in shipped_text(handout).items():
        for match in PATH_LIKE.finditer(text):
            name = match.group(1).rstrip("/.")
            if name in files or name in folders or name in DOWNLOADED or name in WRITTEN_BY_PROGRAMS:
                continue
            if "/" in name and name.split("/")[0] in checked_folders or name.rsplit("/", 1)[-1] in instructor_names:
                found.append(f"{path}: {name}")
    return sorted(set(found))


def test_the_handout_names_no_file_that_students_do_not_get():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60)
    repository = [name for name in tracked.stdout.decode("utf-8").split("\0") if name]
    assert missing_references(handout_contents(), repository) == []


def test_the_reference_check_finds_what_it_looks_for():
    handout = {"README.md": b"see tests/test_model.py and out/run/best.pt", "tests/test_model.py": b""}
    handout["cs288_lm/a.py"] = b'"""Run make_qa_data.py --audit, then dist/handout."""\nx = "make_qa_data.py"\n'
    repository = ["make_qa_data.py", "tests/test_model.py", "cs288_lm/a.py", "autograder/grade.py"]
    handout["tests/test_x.py"] = b"# the judge (autograder/judge.py) compares\n"
    assert missing_references(handout, repository) == [
        "cs288_lm/a.py: dist/handout",
        "cs288_lm/a.py: make_qa_data.py",
        "tests/test_x.py: autograder/judge.py",
    ]


def test_the_main_job_takes_the_time_measured_in_the_instructors_readme():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    main_job = readme.split("### The main job", 1)[1].split("\n## ", 1)[0]
    (measured,) = re.findall(r"^Time: (\d+ min \d+ s) ", main_job, flags=re.MULTILINE)
    handout = HANDOUT_README.read_text(encoding="utf-8").splitlines()
    (command,) = [line for line in handout if line.startswith(".venv/bin/python run_finetune_qa.py ")]
    quick_start = readme.split("# 1. ", 1)[1].split("\npython3 ", 1)[0]  # the comment above command 1
    assert measured in command and measured in quick_start
