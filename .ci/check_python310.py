"""CI: what students get runs on Python 3.10, and what they install resolves there.

    .venv/bin/python .ci/check_python310.py [--no-resolve] [PATH ...]

1. Builds the handout from this repository's git-tracked files (``autograder.make_handout``: the
   student package, ``adapters.py``, the public tests, the given scripts) into a temporary folder,
   writes the code cells of its notebooks out as Python files beside it, and runs vermin over both:
   it fails, naming each feature and the version it needs, when a file needs a newer Python. With
   PATHs, vermin checks those files or folders instead of a build. Python 3.10 syntax is also
   checked by ruff (``target-version`` in pyproject.toml); vermin adds the standard library:
   modules, functions, arguments and constants newer than 3.10 (``tomllib``, ``typing.Self``, ...).
2. Resolves what students install (``requirements-tools.txt``, which includes ``requirements.txt``)
   for CPython 3.10 on Linux, macOS and Windows, wheels only, with uv (pip cannot: it evaluates
   environment markers for the Python running it, not the target). It needs the package index
   (PyPI, or ``UV_DEFAULT_INDEX``); ``--no-resolve`` skips it.

vermin and uv come with requirements-dev.txt. The grader and the instructors' tools are not checked
here: they run on CI's Python (README, "Python versions").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET = "3.10"
VERMIN_FLAGS = [
    f"--target={TARGET}-",  # fail when a file needs a newer Python than TARGET
    "--violations",  # list only what needs a newer Python
    "--no-tips",
    # The handout evaluates annotations at run time (training/settings.py reads a config's fields
    # with typing.get_type_hints), so `from __future__ import annotations` does not excuse them.
    "--eval-annotations",
    "--no-parse-comments",  # a `# novm` comment cannot exempt a line
    "--pessimistic",  # a file that does not parse fails (it may use syntax newer than this Python)
]
STUDENT_REQUIREMENTS = "requirements-tools.txt"  # what the handout README installs (with requirements.txt)
# uv's names of the platforms students use (macOS: the oldest release uv assumes, 12.0, unless set).
PLATFORMS = ("x86_64-manylinux_2_28", "aarch64-apple-darwin", "x86_64-pc-windows-msvc")


def notebook_code(notebook: Path) -> str:
    """The code cells of ``notebook`` as one Python source; IPython's ``!`` and ``%`` lines become comments."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines.append(f"# cell {index}")
        lines += ["# " + line if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines()]
    return "\n".join(lines) + "\n"


def build_handout(folder: Path) -> list[Path]:
    """Build the handout in ``folder``/handout and its notebooks' code in ``folder``/notebooks; both paths."""
    handout, cells = folder / "handout", folder / "notebooks"
    subprocess.run(
        [sys.executable, "-m", "autograder.make_handout", "--out", str(handout)],
        cwd=REPO_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cells.mkdir()
    for notebook in sorted(handout.rglob("*.ipynb")):
        relative = notebook.relative_to(handout).with_suffix(".py").as_posix().replace("/", "__")
        (cells / relative).write_text(notebook_code(notebook), encoding="utf-8")
    return [handout, cells]


def vermin(paths: list[Path]) -> int:
    """Run vermin over ``paths``; its exit status (1 when a file needs a newer Python than TARGET)."""
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", *VERMIN_FLAGS]
    return subprocess.run([*command, "--", *map(str, paths)], check=False).returncode


def resolve(requirements: Path) -> int:
    """Resolve ``requirements`` for CPython TARGET on every platform of PLATFORMS at once (wheels only);
    print what failed and the versions chosen for the student packages; 0 when every platform resolves."""
    command = [sys.executable, "-m", "uv", "pip", "compile", "--no-config", "--quiet", "--no-header", "--no-annotate"]
    command += ["--python-version", TARGET, "--no-build", str(requirements)]
    runs = {
        platform: subprocess.Popen(
            [*command, "--python-platform", platform], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for platform in PLATFORMS
    }
    status = 0
    for platform, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        if run.returncode != 0:
            print(f"check_python310: {requirements.name} does NOT resolve for Python {TARGET} on {platform}:")
            print(stderr.strip())
            status = 1
            continue
        chosen = [line for line in stdout.splitlines() if line.split("==")[0] in ("torch", "numpy", "jaxtyping")]
        print(f"check_python310: Python {TARGET} on {platform}: {', '.join(chosen)}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="check these with vermin instead of a handout build")
    parser.add_argument("--no-resolve", action="store_true", help="skip resolving the requirements (no index)")
    args = parser.parse_args(argv)
    needed = ["vermin"] if args.paths or args.no_resolve else ["vermin", "uv"]
    missing = [name for name in needed if not _importable(name)]
    if missing:
        print(
            f"check_python310: {' and '.join(missing)} not installed: pip install -r requirements-dev.txt",
            file=sys.stderr,
        )
        return 2
    if args.paths:
        return vermin(args.paths)
    with tempfile.TemporaryDirectory(prefix="handout-py310-") as folder:
        status = vermin(build_handout(Path(folder)))
    print(f"check_python310: the handout {'runs' if status == 0 else 'does NOT run'} on Python {TARGET} (vermin)")
    if not args.no_resolve:
        status |= resolve(REPO_ROOT / STUDENT_REQUIREMENTS)
    return status


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
