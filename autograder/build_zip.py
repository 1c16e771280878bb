"""Build the zip to upload to Gradescope (programming assignment, "Zip file upload").

    python -m autograder.build_zip --out dist/autograder.zip [--bundle dist/grader]

Layout: ``setup.sh`` and ``run_autograder`` (from ``autograder/gradescope``), ``requirements.txt``
and ``constraints.txt`` (what ``setup.sh`` installs, at the exact versions CI tests), the grader's
code (``autograder/*.py``) and the grading bundle (``bundle/``, see :mod:`autograder.bundle`;
built from this repository unless ``--bundle`` names one). Entries are sorted and carry a fixed
date and fixed permissions, so the same inputs give identical bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

from autograder.bundle import build_bundle
from autograder.grade import read_tree
from autograder.make_handout import REPO_ROOT

AUTOGRADER = Path(__file__).resolve().parent
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
EXECUTABLES = {"setup.sh", "run_autograder", "create_sandbox_user.sh"}


def zip_contents(bundle: Path) -> dict[str, bytes]:
    """Every entry of the zip: path -> bytes."""
    contents = {name: (AUTOGRADER / "gradescope" / name).read_bytes() for name in sorted(EXECUTABLES)}
    for name in ("requirements.txt", "constraints.txt"):
        contents[name] = (REPO_ROOT / name).read_bytes()
    contents.update({f"autograder/{p.name}": p.read_bytes() for p in sorted(AUTOGRADER.glob("*.py"))})
    contents.update({f"bundle/{path}": data for path, data in read_tree(bundle).items()})
    return dict(sorted(contents.items()))


def write_zip(contents: dict[str, bytes], out: Path) -> None:
    """A deterministic zip of ``contents``: fixed dates, fixed permissions, sorted entries."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if name in EXECUTABLES else 0o100644) << 16
            archive.writestr(info, data)


def build_zip(out: Path, bundle: Path | None = None) -> None:
    """Write the Gradescope zip to ``out``, building a fresh bundle unless one is given."""
    with tempfile.TemporaryDirectory(prefix="bundle-") as temporary:
        if bundle is None:
            bundle = Path(temporary) / "bundle"
            build_bundle(bundle)
        if not (bundle / "secret" / "answers" / "test.json").is_file():
            raise FileNotFoundError(
                f"{bundle} has no secret/answers/test.json (data/qa/test.json): Part 4 could not be graded"
            )
        write_zip(zip_contents(bundle), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("dist/autograder.zip"), help="the zip to write")
    parser.add_argument("--bundle", type=Path, help="an existing grading bundle (default: build one)")
    args = parser.parse_args(argv)
    build_zip(args.out, args.bundle)
    print(f"Gradescope autograder written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
