"""Fixtures shared by the handout and autograder checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder.bundle import build_bundle
from autograder.judge import TestRun
from cs288_lm.tokenizer import Tokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuiltBundle:
    """A grading bundle built from this repository, and every test's run on the bare handout."""

    path: Path
    handout_runs: dict[str, TestRun]

    @property
    def handout(self) -> Path:
        return self.path / "handout"


@pytest.fixture(scope="session")
def grading_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    """Built once per session: it runs every public and hidden test with the reference solution and
    on the bare handout."""
    path = tmp_path_factory.mktemp("grading") / "bundle"
    return BuiltBundle(path, build_bundle(path).handout_runs)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    """The shipped 4,096-token tokenizer (data/tokenizer); a module may define its own."""
    return Tokenizer.from_directory(REPO_ROOT / "data" / "tokenizer")


WHOLE_GRADES = ("solution_results", "gallery_results")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "grading: grades whole submissions, the solution and the gallery (minutes; its own CI step)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that grades whole submissions (the reference solution on every module, the
    gallery of attacks: the fixtures of ``WHOLE_GRADES``) is marked ``grading``: minutes of
    grading, run as its own CI step (``pytest -m grading``). Without ``-m`` they are left out, and so are the
    ``stress`` tests (the same runs repeated many times: ``pytest -m stress``)."""
    grading = [item for item in items if set(WHOLE_GRADES) & set(getattr(item, "fixturenames", ()))]
    for item in grading:
        item.add_marker(pytest.mark.grading)
    left_out = grading + [item for item in items if item.get_closest_marker("stress")]  # pytest -m stress
    if left_out and not config.option.markexpr:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
