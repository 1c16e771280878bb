"""Build the zip to upload to Gradescope (programming assignment, "Zip file upload").

    python -m autograder.build_zip --out dist/autograder.zip [--bundle dist/grader]

Layout: ``setup.sh`` and ``run_autograder`` (from ``autograder/gradescope``), ``requirements.txt``
and ``constraints.txt`` (what ``setup.sh`` installs, at the exact versions CI tests), the grader's
code (the tracked ``autograder/*.py``, the gallery of attacks left out) and the grading bundle
(``bundle/``, see :mod:`autograder.bundle`; the cached bundle of this repository unless ``--bundle``
names one).
Entries are sorted and carry a fixed date and fixed permissions, so the same inputs give identical
bytes. The zip is written beside ``--out`` and renamed into place: an existing zip is replaced
whole, and anything else at ``--out`` is left alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from pathlib import Path

from autograder.bundle import Progress, cached_bundle, duration
from autograder.grade import read_tree
from autograder.make_handout import (
    BUILD_MARKER,
    NOT_GRADER_CODE,
    REPO_ROOT,
    BuildError,
    inside_repository_problem,
    shipped_files,
)

AUTOGRADER = Path(__file__).resolve().parent
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
EXECUTABLES = {"setup.sh", "run_autograder", "create_sandbox_user.sh"}
PROGRESS_STEPS = 10  # progress while compressing: a line as each tenth of the bytes is passed


def grader_code(root: Path = REPO_ROOT) -> list[str]:
    """The grader's modules that ship: the tracked ``autograder/*.py`` of ``root``, except the
    instructors' checks (``NOT_GRADER_CODE``)."""
    return [
        r
        for r in shipped_files(root)
        if r.startswith("autograder/") and r.count("/") == 1 and r.endswith(".py") and r not in NOT_GRADER_CODE
    ]


def zip_contents(bundle: Path, root: Path = REPO_ROOT) -> dict[str, bytes]:
    """Every entry of the zip: path -> bytes."""
    contents = {name: (root / "autograder" / "gradescope" / name).read_bytes() for name in sorted(EXECUTABLES)}
    for name in ("requirements.txt", "constraints.txt"):
        contents[name] = (root / name).read_bytes()
    contents.update({relative: (root / relative).read_bytes() for relative in grader_code(root)})
    tree = read_tree(bundle)
    tree.pop(BUILD_MARKER, None)
    contents.update({f"bundle/{path}": data for path, data in tree.items()})
    return dict(sorted(contents.items()))


def is_our_zip(path: Path) -> bool:
    """Whether ``path`` is a zip this command made (it holds run_autograder and the grader), so that
    replacing it loses nothing else."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return {"run_autograder", "setup.sh", "autograder/grade.py"} <= set(archive.namelist())


def write_zip(contents: dict[str, bytes], out: Path) -> None:
    """A deterministic zip of ``contents``: fixed dates, fixed permissions, sorted entries; progress
    lines as it goes. Written to a partial file first, then renamed to ``out``."""
    if out.is_dir() or str(out).endswith(("/", os.sep)):
        raise BuildError(f"{out} is a folder: give the zip's file name, e.g. {Path(out, 'autograder.zip')}")
    if out.exists() and not is_our_zip(out):
        raise BuildError(f"{out} exists and is not an autograder zip this command made: choose another --out")
    problem = inside_repository_problem(out, "zip")
    if problem is not None:
        raise BuildError(problem)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    total, written = sum(map(len, contents.values())), 0
    progress = Progress(PROGRESS_STEPS)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in contents.items():
                info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o100755 if name in EXECUTABLES else 0o100644) << 16
                archive.writestr(info, data)
                written += len(data)
                reached = written * PROGRESS_STEPS // max(total, 1)
                if reached > progress.done:  # one line even where a large entry passes several steps
                    progress.finished(
                        f"{written / 2**20:.1f} of {total / 2**20:.1f} MB compressed", reached - progress.done
                    )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def build_zip(out: Path, bundle: Path | None = None) -> None:
    """Write the Gradescope zip to ``out``, from the cached bundle unless one is given."""
    bundle = cached_bundle() if bundle is None else bundle
    if not (bundle / "manifest.json").is_file():
        raise BuildError(
            f"{bundle} is not a grading bundle (no manifest.json): build one with python -m autograder.bundle"
        )
    if not (bundle / "secret" / "answers" / "test.json").is_file():
        raise BuildError(f"{bundle} has no secret/answers/test.json (data/qa/test.json): Part 4 could not be graded")
    write_zip(zip_contents(bundle), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("dist/autograder.zip"), help="the zip to write")
    parser.add_argument("--bundle", type=Path, help="an existing grading bundle (default: the cached one)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        build_zip(args.out, args.bundle)
    except BuildError as error:
        print(f"build_zip: {error}", file=sys.stderr)
        return 2
    print(f"Gradescope autograder written to {args.out} in {duration(time.monotonic() - start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
