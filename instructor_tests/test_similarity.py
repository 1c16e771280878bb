"""The similarity report: on four small fake submissions, the copied pair ranks first, the student
who only has the handout stub matches nobody (the stub is boilerplate), every output is written,
and without copydetect the report is skipped with one line. No grading run."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from autograder import grade_all
from autograder.similarity import SKIPPED, report_name, similarity_report

MODULE = "pkg/stats.py"

# Given code shared by every student, then the function they implement.
STUB = '''"""Summary statistics."""

import math


def describe(values: list[float]) -> dict[str, float]:
    """Given: the count, the smallest and the largest value of a list of numbers."""
    ordered = sorted(values)
    return {"count": len(ordered), "min": ordered[0], "max": ordered[-1], "range": ordered[-1] - ordered[0]}


def standard_deviation(values: list[float]) -> float:
    raise NotImplementedError
'''

ORIGINAL = STUB.replace(
    "    raise NotImplementedError\n",
    """    if len(values) < 2:
        raise ValueError("need at least two values")
    mean = sum(values) / len(values)
    squares = [(value - mean) ** 2 for value in values]
    variance = sum(squares) / (len(values) - 1)
    for index, square in enumerate(squares):
        if square < 0 or math.isnan(square):
            raise ValueError(f"bad value at {index}")
    return math.sqrt(variance)
""",
)

# The copy: renamed variables and a comment, which copydetect's tokenization does not see.
COPY = (
    ORIGINAL.replace("mean", "average").replace("squares", "deviations").replace("square", "deviation")
    + "\n# my own work\n"
)

DIFFERENT = STUB.replace(
    "    raise NotImplementedError\n",
    """    total = total_squared = 0.0
    count = 0
    while count < len(values):
        total, total_squared, count = total + values[count], total_squared + values[count] ** 2, count + 1
    return math.sqrt(max(0.0, (total_squared - total * total / count) / max(1, count - 1)))
""",
)


def make_submissions(root: Path, students: dict[str, tuple[str, str]]) -> Path:
    """A submissions folder: student -> (where the file sits in their folder, its text)."""
    for student, (relative, text) in students.items():
        (root / student / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / student / relative).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def handout(tmp_path: Path) -> Path:
    (tmp_path / "handout" / "pkg").mkdir(parents=True)
    (tmp_path / "handout" / MODULE).write_text(STUB, encoding="utf-8")
    return tmp_path / "handout"


@pytest.fixture
def submissions(tmp_path: Path) -> Path:
    # The file is found as the grader finds it: by path, by path suffix, or by file name.
    return make_submissions(
        tmp_path / "submissions",
        {
            "alice": (MODULE, ORIGINAL),
            "bob": (f"hw/{MODULE}", COPY),
            "carol": ("stats.py", DIFFERENT),
            "dave": (MODULE, STUB),
            "erin": ("notes.txt", "no code"),
        },
    )


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "similarity.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_the_copied_pair_ranks_first_and_the_stub_matches_nobody(
    submissions: Path, handout: Path, tmp_path: Path
) -> None:
    out = tmp_path / "similarity"
    assert similarity_report(submissions, [MODULE], handout, out)
    rows = read_rows(out)
    assert rows, "the copied pair must be reported"
    first = rows[0]
    assert (first["module"], first["student_a"], first["student_b"]) == (MODULE, "alice", "bob")
    assert float(first["similarity_a"]) > 0.8 and float(first["similarity_b"]) > 0.8
    assert int(first["overlap_tokens"]) > 0
    assert all("dave" not in (row["student_a"], row["student_b"]) for row in rows)
    assert all(float(row["similarity_a"]) < 0.5 for row in rows if row["student_a"] == "carol")
    assert all(float(row["similarity_b"]) < 0.5 for row in rows if row["student_b"] == "carol")
    markdown = (out / "similarity.md").read_text(encoding="utf-8")
    assert "| alice | bob |" in markdown and "No file from: erin." in markdown
    assert "alice" in (out / report_name(MODULE)).read_text(encoding="utf-8")


def hidden_in_utf7(text: str) -> bytes:
    """``text`` as one comment line to a UTF-8 reader; to Python, which obeys the cookie, the whole file."""
    return b"# coding: utf-7\n# " + text.encode("utf-7").replace(b"\n", b"+AAo-") + b"\n"


def test_a_file_in_another_encoding_is_compared_as_python_reads_it(handout: Path, tmp_path: Path) -> None:
    submissions = make_submissions(
        tmp_path / "submissions", {"alice": (MODULE, ORIGINAL), "carol": (MODULE, DIFFERENT)}
    )
    (submissions / "bob" / "pkg").mkdir(parents=True)
    (submissions / "bob" / MODULE).write_bytes(hidden_in_utf7(COPY))
    out = tmp_path / "similarity"
    assert similarity_report(submissions, [MODULE], handout, out)
    first = read_rows(out)[0]
    assert (first["student_a"], first["student_b"]) == ("alice", "bob")
    assert float(first["similarity_a"]) > 0.8 and float(first["similarity_b"]) > 0.8
    assert (out / "decoded" / "bob" / MODULE).read_text(encoding="utf-8") == "# coding: utf-7\n# " + COPY + "\n"


def test_fewer_than_two_submissions_leave_nothing_to_compare(handout: Path, tmp_path: Path) -> None:
    submissions = make_submissions(tmp_path / "submissions", {"alice": (MODULE, ORIGINAL)})
    out = tmp_path / "similarity"
    assert similarity_report(submissions, [MODULE], handout, out)
    assert read_rows(out) == []
    assert "nothing to compare" in (out / "similarity.md").read_text(encoding="utf-8")
    assert not (out / report_name(MODULE)).exists()


def test_without_copydetect_the_report_is_skipped(
    submissions: Path, handout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "copydetect", None)  # makes "from copydetect import ..." raise ImportError
    assert not similarity_report(submissions, [MODULE], handout, tmp_path / "similarity")
    assert capsys.readouterr().out == SKIPPED + "\n"
    assert not (tmp_path / "similarity").exists()


@pytest.mark.parametrize("skip", [False, True])
def test_grade_all_writes_the_report_after_grading_unless_told_not_to(
    submissions: Path, handout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip: bool
) -> None:
    monkeypatch.setattr(grade_all, "grade_folder", lambda *args: [])  # grading itself is tested elsewhere
    bundle = handout.parent
    (bundle / "manifest.json").write_text(json.dumps({"student_modules": [MODULE]}), encoding="utf-8")
    out = tmp_path / "out"
    flags = ["--no-similarity"] if skip else []
    assert grade_all.main(["--submissions", str(submissions), "--out", str(out), "--bundle", str(bundle), *flags]) == 0
    assert (out / "similarity" / "similarity.csv").exists() != skip
