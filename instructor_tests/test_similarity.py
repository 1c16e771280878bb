"""The similarity report: on small fake submissions, the copied pair ranks first, the student who
only has the handout stub matches nobody (the stub is boilerplate), pairs rank by their similarity
over all student modules, a leaked copy of the reference solution ranks first against it, the same
inputs give the same report, and without copydetect the report is skipped with one line. No grading
run."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from autograder import grade_all
from autograder.similarity import REFERENCE, SKIPPED, report_name, similarity_report

MODULE = "pkg/stats.py"
TEXT_MODULE = "pkg/text.py"

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


TEXT_STUB = '''"""Word statistics."""


def word_counts(text: str, stop_words: set[str]) -> dict[str, int]:
    raise NotImplementedError
'''

TEXT_ORIGINAL = TEXT_STUB.replace(
    "    raise NotImplementedError\n",
    """    counts: dict[str, int] = {}
    for line in text.splitlines():
        for raw in line.split():
            word = raw.strip(".,;:!?\\"'()[]").lower()
            if not word or word in stop_words:
                continue
            counts[word] = counts.get(word, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word: count for word, count in ordered if count > 0}
""",
)

TEXT_COPY = TEXT_ORIGINAL.replace("counts", "tally").replace("raw", "token").replace("ordered", "ranked")

TEXT_DIFFERENT = TEXT_STUB.replace(
    "    raise NotImplementedError\n",
    """    import collections
    import re

    words = (w.casefold() for w in re.findall(r"[A-Za-z']+", text))
    return dict(collections.Counter(w for w in words if w not in stop_words).most_common())
""",
)


def with_marker(solution: str, stub: str) -> str:
    """The reference solution as the instructors' repository holds it: its code between solution markers."""
    given = stub.removesuffix("    raise NotImplementedError\n")
    return given + "    # BEGIN SOLUTION\n" + solution.removeprefix(given) + "    # END SOLUTION\n"


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


def read_rows(out: Path, name: str = "similarity.csv") -> list[dict[str, str]]:
    with open(out / name, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def pair(row: dict[str, str]) -> tuple[str, str]:
    return row["student_a"], row["student_b"]


@pytest.fixture
def two_module_handout(handout: Path) -> Path:
    (handout / TEXT_MODULE).write_text(TEXT_STUB, encoding="utf-8")
    return handout


def test_pairs_rank_by_their_similarity_over_all_modules(two_module_handout: Path, tmp_path: Path) -> None:
    # bob copies alice in both modules, carol only in stats.py: in stats.py alone they tie.
    submissions = make_submissions(
        tmp_path / "submissions",
        {"alice": (MODULE, ORIGINAL), "bob": (MODULE, COPY), "carol": (MODULE, COPY), "dave": (MODULE, DIFFERENT)},
    )
    make_submissions(
        submissions,
        {
            "alice": (TEXT_MODULE, TEXT_ORIGINAL),
            "bob": (TEXT_MODULE, TEXT_COPY),
            "carol": (TEXT_MODULE, TEXT_DIFFERENT),
        },
    )
    out = tmp_path / "similarity"
    assert similarity_report(submissions, [MODULE, TEXT_MODULE], two_module_handout, out)
    stats = {pair(row): float(row["similarity_a"]) for row in read_rows(out) if row["module"] == MODULE}
    assert stats[("alice", "bob")] > 0.8 and stats[("alice", "carol")] > 0.8
    rows = read_rows(out, "pairs.csv")
    assert [pair(row) for row in rows[:2]] == [("alice", "bob"), ("alice", "carol")]
    bob, carol = rows[0], rows[1]
    assert float(bob["similarity_a"]) > 0.8 and float(bob["similarity_b"]) > 0.8
    assert 0.2 < float(carol["similarity_a"]) < 0.8 and 0.2 < float(carol["similarity_b"]) < 0.8
    assert float(carol[MODULE]) > 0.8 and float(carol[TEXT_MODULE]) < 0.5
    dave = [row for row in rows if "dave" in pair(row)]
    assert all(row[TEXT_MODULE] == "" and float(row[MODULE]) < 0.5 for row in dave)  # no text.py: no score there
    markdown = (out / "similarity.md").read_text(encoding="utf-8")
    totals = markdown.split("## Over all student modules")[1].split(f"## {MODULE}")[0]
    assert totals.index("| alice | bob |") < totals.index("| alice | carol |")


def test_a_leaked_copy_of_the_reference_solution_ranks_first_against_it(
    submissions: Path, handout: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "repository"
    (reference / "pkg").mkdir(parents=True)
    (reference / MODULE).write_text(with_marker(COPY, STUB), encoding="utf-8")
    out = tmp_path / "similarity"
    assert similarity_report(submissions, [MODULE], handout, out, reference=reference)
    rows = read_rows(out, "pairs.csv")
    assert {pair(row) for row in rows[:3]} == {(REFERENCE, "alice"), (REFERENCE, "bob"), ("alice", "bob")}
    assert all(float(row["similarity_a"]) > 0.8 and float(row["similarity_b"]) > 0.8 for row in rows[:3])
    assert all("dave" not in pair(row) for row in rows)
    markdown = (out / "similarity.md").read_text(encoding="utf-8")
    assert f"compared as `{REFERENCE}`" in markdown
    assert "| &lt;reference solution&gt; | alice |" in markdown  # not an HTML tag a viewer would hide


def test_a_reference_without_solution_markers_is_not_compared(submissions: Path, handout: Path, tmp_path: Path) -> None:
    reference = tmp_path / "handout_checkout"
    (reference / "pkg").mkdir(parents=True)
    (reference / MODULE).write_text(ORIGINAL, encoding="utf-8")  # no markers: not the instructors' repository
    out = tmp_path / "similarity"
    assert similarity_report(submissions, [MODULE], handout, out, reference=reference)
    assert all(REFERENCE not in pair(row) for row in read_rows(out, "pairs.csv"))
    assert "has no student module with solution markers" in (out / "similarity.md").read_text(encoding="utf-8")


def test_the_same_submissions_give_the_same_report(submissions: Path, handout: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        assert similarity_report(submissions, [MODULE], handout, out)
    for name in ("pairs.csv", "similarity.csv", "similarity.md"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


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
    (tmp_path / "repository" / "pkg").mkdir(parents=True)
    (tmp_path / "repository" / MODULE).write_text(with_marker(ORIGINAL, STUB), encoding="utf-8")
    monkeypatch.setattr(grade_all, "REPO_ROOT", tmp_path / "repository")  # where the instructors' solution is
    bundle = handout.parent
    (bundle / "manifest.json").write_text(json.dumps({"student_modules": [MODULE]}), encoding="utf-8")
    part4 = {"predictions": {"4A": {"file": "finetuned_predictions.json"}}}
    config = {"part4": part4, "problems": [], "feedback_modules": False}
    (bundle / "grading_config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "out"
    flags = ["--no-similarity"] if skip else []
    assert grade_all.main(["--submissions", str(submissions), "--out", str(out), "--bundle", str(bundle), *flags]) == 0
    assert (out / "similarity" / "similarity.csv").exists() != skip
    if not skip:
        assert pair(read_rows(out / "similarity", "pairs.csv")[0]) == (REFERENCE, "alice")
