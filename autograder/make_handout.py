"""Build the student repository (the handout) from this one.

    python -m autograder.make_handout --out dist/handout

The handout is every file of the repository except those listed below, with each student module
(a Python file with solution markers) replaced by its stub (see :mod:`autograder.markers`),
``autograder/handout_README.md`` as its README and a ``pyproject.toml`` whose tests are the public
ones only. Files are written in sorted order from their bytes only, so building twice gives
identical bytes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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


def is_ignored(relative: str) -> bool:
    """Whether ``relative`` (a POSIX path) is a cache or local environment file."""
    parts = relative.split("/")
    return bool(IGNORED_NAMES.intersection(parts)) or any(part.endswith(IGNORED_SUFFIXES) for part in parts)


def is_handout_path(relative: str) -> bool:
    """Whether the file at ``relative`` (POSIX path from the repository root) goes to students."""
    parts = relative.split("/")
    instructor_only = any("/".join(parts[:depth]) in INSTRUCTOR_ONLY for depth in range(1, len(parts) + 1))
    return not is_ignored(relative) and not instructor_only


def handout_files(root: Path = REPO_ROOT) -> list[str]:
    """The repository files that go to students, as sorted POSIX paths relative to ``root``."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        subdirectories[:] = [d for d in subdirectories if is_handout_path(prefix + d)]
        found += [prefix + f for f in files if is_handout_path(prefix + f) and not (root / (prefix + f)).is_symlink()]
    return sorted(found)


def handout_pyproject(text: str) -> str:
    """The repository's pyproject.toml with a student description and the public tests only."""
    text, described = re.subn(r'(?m)^description = ".*"$', 'description = "Build your own LM (CS288)"', text)
    text, tested = re.subn(r"(?m)^(?:#.*\n)*testpaths = \[.*\]$", 'testpaths = ["tests"]', text)
    if (described, tested) != (1, 1):
        raise ValueError("pyproject.toml has no single description or testpaths line to rewrite")
    return text


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
    """Replace ``out`` with a directory holding ``contents`` (relative path -> bytes)."""
    out = out.resolve()
    if out.exists():
        if (out / ".git").exists() or out in REPO_ROOT.parents or out == REPO_ROOT:
            raise ValueError(f"refusing to replace {out}: it is (or contains) a repository")
        shutil.rmtree(out)
    for relative, data in contents.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def build_handout(out: Path, root: Path = REPO_ROOT) -> list[str]:
    """Write the handout to ``out`` (replacing it); returns the student modules it stubbed."""
    write_tree(handout_contents(root), out)
    return student_modules(root, handout_files(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("dist/handout"), help="output directory (replaced)")
    args = parser.parse_args(argv)
    stubbed = build_handout(args.out)
    print(f"handout written to {args.out}; student modules: {', '.join(stubbed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
