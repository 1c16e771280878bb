"""Fixtures shared by the handout and autograder checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder.bundle import build_bundle
from autograder.sandbox import Outcome


@dataclass(frozen=True)
class BuiltBundle:
    """A grading bundle built from this repository, and every test's outcome on the bare handout."""

    path: Path
    handout_outcomes: dict[str, Outcome]

    @property
    def handout(self) -> Path:
        return self.path / "handout"


@pytest.fixture(scope="session")
def grading_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    """Built once per session: it runs every public and hidden test on the bare handout."""
    path = tmp_path_factory.mktemp("grading") / "bundle"
    return BuiltBundle(path, build_bundle(path))
