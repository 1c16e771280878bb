"""The ``numpy_snapshot`` plugin (tests/snapshots.py) coexists with syrupy, the course starter's own
snapshot plugin (requirements-dev.txt): both add pytest options, and a name used by both
(``--snapshot-update`` is syrupy's) stops pytest with "conflicting option string". Ours is
``--update-numpy-snapshots``: it writes the ``.npz`` snapshots, and without it a missing snapshot
fails, never skips.

Each check runs pytest in a subprocess, in a temporary folder holding the repository's root
``conftest.py`` (the same plugins as every test folder) and a tiny test module, with syrupy enabled
explicitly (``-p syrupy``) besides its entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

TEST_MODULE = """
import numpy as np


def test_numpy(numpy_snapshot):
    numpy_snapshot.assert_match({"x": np.arange(4.0)}, "tiny")


def test_numpy_other(numpy_snapshot):
    numpy_snapshot.assert_match({"x": np.ones(3)}, "other")


def test_syrupy(snapshot):
    assert {"answer": 42} == snapshot
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not the repository's settings
    (tmp_path / "test_tiny.py").write_text(TEST_MODULE, encoding="utf-8")
    return tmp_path


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CS288_RECORD_FD"}  # not the grading mode
    env.update(PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "syrupy", "-p", "no:cacheprovider", "-q", "-rA", *args],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_both_plugins_load_and_a_missing_or_different_numpy_snapshot_fails(project):
    (project / "_snapshots").mkdir()
    np.savez_compressed(project / "_snapshots" / "other.npz", x=np.zeros(3))
    result = run_pytest(project, "-k", "numpy")
    output = result.stdout + result.stderr
    assert "conflicting option string" not in output, output
    assert result.returncode == 1, output  # tests failed, not a usage error (4) or an internal error (3)
    assert "2 failed" in output and "skipped" not in output, output
    assert "tiny.npz is missing" in output and "--update-numpy-snapshots" in output, output
    assert "snapshot other[x] differs" in output, output
    assert not (project / "_snapshots" / "tiny.npz").exists()


def test_the_update_option_writes_snapshots_and_syrupy_keeps_its_own(project):
    # Both update options in one run: ours writes the .npz, syrupy's writes its .ambr.
    result = run_pytest(project, "--update-numpy-snapshots", "--snapshot-update")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    with np.load(project / "_snapshots" / "tiny.npz") as written:
        np.testing.assert_array_equal(written["x"], np.arange(4.0))
    assert list((project / "__snapshots__").glob("*.ambr")), output

    result = run_pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout, result.stdout
