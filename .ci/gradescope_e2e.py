"""Gradescope, emulated end to end (CI runs this as root after the test suite).

    python .ci/gradescope_e2e.py

1. Build the autograder zip, unpack it under a temporary root laid out like ``/autograder``
   (``source/``, ``submission/``, ``results/``).
2. Make ``venv/`` from the system Python (one the sandbox user can execute: CI's own Python lives
   under /root) and install ``requirements.txt`` with ``constraints.txt`` into it, as ``setup.sh``
   does (without its extra index: CI reaches only the package index); create the
   sandbox user with ``setup.sh``'s own script.
3. ``run_autograder`` (with ``AUTOGRADER_ROOT`` pointing at the temporary root) on the reference
   solution and on the bare handout; read ``results/results.json``.
4. The gallery of bad submissions (``autograder/gallery.py``) graded as the sandbox user.

Exits non-zero, listing every problem, when anything is not as it must be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from autograder.gallery import (
    CASES,
    PART4_FILES,
    Case,
    alive_daemons,
    case_problems,
    part4_points,
    planted_canary,
    problem_entries,
    solution_files,
    stub_files,
    valid_results_problems,
    write_files,
)

SYSTEM_PYTHON = "/usr/bin/python3"
SANDBOX_USER = "grader-sandbox"


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def unpack(root: Path) -> None:
    """The zip under ``root/source``, as Gradescope unpacks it; the folders run_autograder expects."""
    zip_path = root / "autograder.zip"
    subprocess.run([sys.executable, "-m", "autograder.build_zip", "--out", str(zip_path)], cwd=REPO_ROOT, check=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    for name in ("setup.sh", "run_autograder", "create_sandbox_user.sh"):
        (root / "source" / name).chmod(0o755)
    (root / "submission").mkdir()
    (root / "results").mkdir()


def make_venv(root: Path) -> None:
    """setup.sh's environment, from the system Python (apt's python3 on Gradescope)."""
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(root / "venv")], check=True)
    source = root / "source"
    requirements = ["-r", str(source / "requirements.txt"), "-c", str(source / "constraints.txt")]
    subprocess.run([str(root / "venv" / "bin" / "pip"), "install", "--quiet", *requirements], check=True)


def submit(root: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(root / "submission")
    write_files(root / "submission", files)
    for path in (root / "results").iterdir():
        path.unlink()


def read_results(root: Path) -> dict:
    os.chmod(root / "results", 0o700)
    return json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))


def run_autograder(root: Path) -> dict:
    environment = {**os.environ, "AUTOGRADER_ROOT": str(root)}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=environment, check=False)
    return read_results(root)


def grade_case(root: Path, case: Case) -> dict:
    """The grader as run_autograder calls it, on the gallery modules only."""
    command = [
        str(root / "venv" / "bin" / "python"), "-m", "autograder.grade",
        "--bundle", str(root / "source" / "bundle"),
        "--submission", str(root / "submission"),
        "--out", str(root / "results" / "results.json"),
        "--sandbox-user", SANDBOX_USER,
        "--time-limit", str(case.seconds),
        "--only", *case.modules,
    ]  # fmt: skip
    subprocess.run(command, cwd=root / "source", check=False, stdout=subprocess.DEVNULL)
    return read_results(root)


def main() -> int:
    if os.geteuid() != 0:
        print("gradescope_e2e.py needs root (it creates the sandbox user), as on Gradescope and in CI")
        return 2
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gradescope-") as temporary:
        root = Path(temporary) / "autograder"
        root.mkdir()
        os.chmod(temporary, 0o755)  # the sandbox user reaches root/venv, nothing else
        os.chmod(root, 0o755)
        step("building and unpacking the autograder zip")
        unpack(root)
        step("setup.sh: venv from the system Python, requirements.txt, the sandbox user")
        make_venv(root)
        subprocess.run(["bash", str(root / "source" / "create_sandbox_user.sh")], check=True)
        bundle = root / "source" / "bundle"

        step("run_autograder on the reference solution")
        started = time.monotonic()
        submit(root, solution_files(bundle))
        results = run_autograder(root)
        seconds = time.monotonic() - started
        problems += [f"solution: {p}" for p in valid_results_problems(results)]
        graded = problem_entries(results)
        short = [f"{t['name']}: {t['score']}/{t['max_score']}" for t in graded if t["score"] != t["max_score"]]
        problems += [f"solution: {s}" for s in short]
        part4 = {key: round(points, 2) for key, points in part4_points(PART4_FILES).items()}
        if round(sum(t["max_score"] for t in graded), 2) != 100 or results["score"] != round(
            100 + part4["4A"] + part4["4B"], 2
        ):
            problems.append(f"solution: total {results['score']} (expected 100 + {part4['4A']} + {part4['4B']})")
        step(f"solution: {results['score']} points in {seconds:.0f} s")

        step("run_autograder on the bare handout")
        submit(root, stub_files(bundle))
        results = run_autograder(root)
        if results["score"] != 0 or not problem_entries(results):
            problems.append(f"bare handout: total {results['score']}")
        step(f"bare handout: {results['score']} points")

        solution, stubs = solution_files(bundle), stub_files(bundle)
        for case in CASES:
            submit(root, case.make(solution, stubs))
            with planted_canary() as canary:
                results = grade_case(root, case)
            found = case_problems(case, results, bundle, canary)
            found += [f"processes still run: {alive_daemons()}"] if alive_daemons() else []
            problems += [f"{case.name}: {p}" for p in found]
            step(f"gallery {case.name}: {results['score']} points, {'ok' if not found else 'WRONG'}")
        if alive_daemons():
            problems.append(f"processes of submissions still run: {alive_daemons()}")
    for problem in problems:
        print("PROBLEM:", problem)
    print("Gradescope emulation:", "all as expected" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
