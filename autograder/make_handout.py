"""Build the student repository (the handout) from this one.

    python -m autograder.make_handout --out dist/handout

The handout is every file that git tracks in the repository except those listed below, with each
student module (a Python file with solution markers) replaced by its stub (see
:mod:`autograder.markers`), ``autograder/handout_README.md`` as its README and a ``pyproject.toml``
whose tests are the public ones only. Files are written in sorted order from their bytes only, so
building twice gives identical bytes. Untracked files never ship: one that git does not ignore,
under a path that would ship, stops the build (:func:`shipped_files`). An existing output
directory is replaced only if a build made it (it holds :data:`BUILD_MARKER`) or it is empty.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from autograder.markers import strip_solutions, student_modules

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDOUT_README = Path(__file__).resolve().parent / "handout_README.md"

# Directory or file names left out wherever they appear: caches and local environments.
IGNORED_NAMES = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".DS_Store"}
IGNORED_SUFFIXES = (".pyc", ".egg-info")
# Paths (relative to the repository root) that only instructors get.
INSTRUCTOR_ONLY = {
    ".ci",  # the instructors' CI
    "autograder",  # the grader, the hidden tests and their snapshots
    "instructor_tests",  # checks of this repository (markers, CLIs, references, handout, grader)
    "benchmarks",  # comparisons with Hugging Face libraries that need requirements-dev.txt
    "out",  # local training runs
    "dist",  # built handouts and autograder zips
    "requirements-dev.txt",  # instructor tools
    "README.md",  # the instructors' README; the handout gets autograder/handout_README.md
    "pyproject.toml",  # rewritten by handout_pyproject()
    "make_qa_data.py",  # regenerates data/qa/test.json, answers included, from its seed
    "data/qa/test.json",  # the QA test answers (students get data/qa/test_questions.json)
    # The QA dev and test questions are cut from these stories: with them (and the generator in
    # cs288_lm/common/qa_data.py) every test answer can be looked up. No test reads it.
    "data/tinystories/heldout.txt",
    "finetuned_predictions.json",  # the reference solution's Part 4 predictions
    "prompting_predictions.json",
}

# Modules in autograder/ that are the instructors' checks, not the grader: the Gradescope zip (which
# takes the grader's autograder/*.py) and the bundle's inputs leave them out.
NOT_GRADER_CODE = {"autograder/gallery.py"}  # the submissions that attack the grader, and what each must earn


# Written into every output directory a build makes: only such a directory (or an empty one) is
# replaced by the next build. The repository's .gitignore names it, so a published handout leaves it out.
BUILD_MARKER = ".made-by-cs288-build"


class BuildError(Exception):
    """A build cannot go on; the message says why and what to do, in one line."""


def is_ignored(relative: str) -> bool:
    """Whether ``relative`` (a POSIX path) is a cache or local environment file."""
    parts = relative.split("/")
    return bool(IGNORED_NAMES.intersection(parts)) or any(part.endswith(IGNORED_SUFFIXES) for part in parts)


def is_handout_path(relative: str) -> bool:
    """Whether the file at ``relative`` (POSIX path from the repository root) goes to students."""
    parts = relative.split("/")
    instructor_only = any("/".join(parts[:depth]) in INSTRUCTOR_ONLY for depth in range(1, len(parts) + 1))
    return not is_ignored(relative) and not instructor_only


def is_shipped_path(relative: str) -> bool:
    """Whether a file at ``relative`` would ship in some build: the handout, or anything under
    ``autograder/`` (the hidden tests go into the bundle, the grader's code into the zip)."""
    return is_handout_path(relative) or relative.startswith("autograder/") and not is_ignored(relative)


def _git(root: Path, *args: str) -> list[str]:
    """The NUL-separated output of ``git args`` in ``root``, or a BuildError saying why there is none."""
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"cannot run git in {root} ({error}): builds take the files git tracks; install git") from None
    if result.returncode != 0:
        said = (result.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise BuildError(
            f"{root} is not a git checkout (git: {said}): builds take the files git tracks;"
            " build from a clone of the course repository"
        )
    return [name for name in result.stdout.decode("utf-8").split("\0") if name]


def shipped_files(root: Path = REPO_ROOT) -> list[str]:
    """The files git tracks at the top of the checkout ``root`` that exist as regular files (not
    symbolic links), as sorted POSIX paths. Every build takes its files from these only; an
    untracked file that git does not ignore, under a path that would ship, is a BuildError."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if not top or Path(top[0].strip()).resolve() != root.resolve():
        raise BuildError(
            f"{root} is not the top of a git checkout: build from the root of a clone of the course repository"
        )
    untracked = [r for r in _git(root, "ls-files", "-z", "--others", "--exclude-standard") if is_shipped_path(r)]
    if untracked:
        shown = ", ".join(untracked[:5]) + (f" and {len(untracked) - 5} more" if len(untracked) > 5 else "")
        raise BuildError(
            f"untracked file{'s' * (len(untracked) > 1)} where a build would ship "
            f"{'them' if len(untracked) > 1 else 'it'}: {shown}; commit, delete or add to .gitignore"
        )
    tracked = _git(root, "ls-files", "-z", "--cached")
    return sorted(r for r in set(tracked) if (root / r).is_file() and not (root / r).is_symlink())


def handout_files(root: Path = REPO_ROOT) -> list[str]:
    """The tracked files that go to students, as sorted POSIX paths relative to ``root``."""
    return [relative for relative in shipped_files(root) if is_handout_path(relative)]


def handout_pyproject(text: str) -> str:
    """The repository's pyproject.toml with a student description, the public tests only, no type
    checker settings (mypy is an instructors' tool, and its files name what the handout leaves out)
    and no per-file lint exemptions (they name the instructors' files)."""
    text, described = re.subn(r'(?m)^description = ".*"$', 'description = "Build your own LM (CS288)"', text)
    text, tested = re.subn(r"(?m)^(?:#.*\n)*testpaths = \[.*\]$", 'testpaths = ["tests"]', text)
    if (described, tested) != (1, 1):
        raise ValueError("pyproject.toml has no single description or testpaths line to rewrite")
    # Each [tool.mypy] or [[tool.mypy.overrides]] table, up to the next table.
    text = re.sub(r"(?ms)^\[\[?tool\.mypy\b.*?(?=^\[|\Z)", "", text)
    text = re.sub(r"(?ms)^\[tool\.ruff\.lint\.per-file-ignores\].*?(?=^\[|\Z)", "", text)
    return text.rstrip("\n") + "\n"


def handout_contents(root: Path = REPO_ROOT) -> dict[str, bytes]:
    """Every file of the handout: relative POSIX path -> bytes."""
    files = handout_files(root)
    stubs = set(student_modules(root, files))
    contents = {
        relative: (
            strip_solutions((root / relative).read_text(encoding="utf-8"), relative).encode("utf-8")
            if relative in stubs
            else (root / relative).read_bytes()
        )
        for relative in files
    }
    contents["README.md"] = HANDOUT_README.read_bytes()
    contents["pyproject.toml"] = handout_pyproject((root / "pyproject.toml").read_text(encoding="utf-8")).encode()
    return dict(sorted(contents.items()))


def write_tree(contents: dict[str, bytes], out: Path) -> None:
    """Write ``contents`` (relative path -> bytes) into ``out``, a new or empty directory."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise BuildError(f"{out} is not empty: a build writes only into a new or empty directory")
    for relative, data in contents.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _marker(kind: str, files: list[str]) -> bytes:
    """The build marker's text: which build made the directory and every file it wrote there."""
    head = f"made by a cs288_lm {kind} build: the next {kind} build may replace this directory. It wrote:\n"
    return (head + "".join(f"{name}\n" for name in sorted(files))).encode()


def _files_under(directory: Path) -> list[str]:
    """Every non-directory entry under ``directory``, as sorted POSIX relative paths."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_symlink() or not p.is_dir())


def clear_output(out: Path, kind: str) -> None:
    """Make ``out`` a new or empty directory for a ``kind`` build's output. Only what a build of the same
    kind made is deleted (its marker lists what it wrote); anything else there is a BuildError."""
    if out.is_symlink() or out.exists() and not out.is_dir():
        raise BuildError(f"{out} exists and is not a directory: choose another output path")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / BUILD_MARKER).is_file():
        raise BuildError(
            f"{out} holds files no build made (it has no {BUILD_MARKER}): choose another output path, or empty it"
            " yourself"
        )
    lines = (out / BUILD_MARKER).read_text(encoding="utf-8", errors="replace").splitlines()
    made = re.match(r"made by a cs288_lm (\w+) build", lines[0] if lines else "")
    if made is None or made.group(1) != kind:
        raise BuildError(
            f"{out} holds a {made.group(1) if made else 'different'} build, not a {kind}: choose another output path"
        )
    extra = sorted(set(_files_under(out)) - set(lines[1:]) - {BUILD_MARKER})
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise BuildError(
            f"{out} holds files its build did not make ({shown}): move them out, or choose another output path"
        )
    shutil.rmtree(out)


def inside_repository_problem(out: Path, what: str) -> str | None:
    """Why ``out`` may not receive a build: inside this repository and not ignored by git, it would be an
    untracked file where builds take files from (the next build would refuse it). None if it may."""
    resolved = out.resolve()
    if resolved != REPO_ROOT and REPO_ROOT not in resolved.parents:
        return None
    relative = resolved.relative_to(REPO_ROOT).as_posix() if resolved != REPO_ROOT else "."
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", relative], cwd=REPO_ROOT, capture_output=True, check=False
    ).returncode
    if ignored == 0:
        return None
    return (
        f"{out} is inside the repository and not ignored by git: the {what} would ship with the next build;"
        " write it under dist/ or outside the repository"
    )


def write_output(contents: dict[str, bytes], out: Path, kind: str) -> None:
    """Replace the ``kind`` build output ``out`` (see clear_output) with ``contents`` and the build marker."""
    problem = inside_repository_problem(out, kind)
    if problem is not None:
        raise BuildError(problem)
    clear_output(out, kind)
    write_tree({**contents, BUILD_MARKER: _marker(kind, list(contents))}, out)


def build_handout(out: Path, root: Path = REPO_ROOT) -> list[str]:
    """Write the handout to ``out`` (replacing a previous build's); returns the student modules it stubbed."""
    contents = handout_contents(root)
    write_output(contents, out, "handout")
    return student_modules(root, handout_files(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("dist/handout"), help="output directory (new, empty, or a previous build's)"
    )
    args = parser.parse_args(argv)
    try:
        stubbed = build_handout(args.out)
    except BuildError as error:
        print(f"make_handout: {error}", file=sys.stderr)
        return 2
    print(f"handout written to {args.out}; student modules: {', '.join(stubbed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
