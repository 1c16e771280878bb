"""Similarity report across submissions, with copydetect (an instructor-only dependency).

For every student module, each pair of students' files is compared with copydetect's winnowed
fingerprints; the handout stub of the module is the boilerplate, so the code every student was
given counts as nobody's similarity. Written to ``out`` (``grade_all`` uses ``<out>/similarity``)::

    similarity.csv            per module, the most similar pairs: module, student_a, student_b,
                              similarity_a, similarity_b, overlap_tokens
    similarity.md             the same pairs as readable tables, most similar first
    <module>.html             copydetect's own report for one module ("/" in the path becomes "__")

A file that declares another encoding than UTF-8 (PEP 263) is compared as Python reads it: a UTF-8
copy of its decoded text is written to ``decoded/<student>/<module>`` (a UTF-7 file can hide its code
in what a UTF-8 reader takes for a comment).

``similarity_a`` is the share of student A's fingerprinted tokens also found in B's file (and
``similarity_b`` the reverse), as copydetect defines them. Pairs with no overlap are left out.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.grade import find_submitted, submitted_files
from autograder.imports_check import DeclaredEncoding, python_source

if TYPE_CHECKING:
    from copydetect import CopyDetector

TOP_PAIRS = 20
COLUMNS = ["module", "student_a", "student_b", "similarity_a", "similarity_b", "overlap_tokens"]
SKIPPED = "similarity report skipped: copydetect is not installed (pip install -r requirements-dev.txt)"


@dataclass(frozen=True)
class Pair:
    """Two students' files of one module that share fingerprinted code."""

    module: str
    student_a: str
    student_b: str
    similarity_a: float
    similarity_b: float
    overlap_tokens: int


def report_name(module: str) -> str:
    """The HTML report's file name for a module: its path with "/" replaced, so all sit in one folder."""
    return module.replace("/", "__") + ".html"


def module_files(submissions: Path, modules: list[str]) -> dict[str, dict[str, Path]]:
    """Per module, each student's submitted file, found as the grader finds it; students without one are left out."""
    names = [module.split("/")[-1] for module in modules]
    found: dict[str, dict[str, Path]] = {module: {} for module in modules}
    for student in sorted(p for p in submissions.iterdir() if p.is_dir()):
        files = submitted_files(student)
        for module in modules:
            # as the grader does: a match by file name alone only when no other student module shares it
            path, _ = find_submitted(module, files, by_name=names.count(module.split("/")[-1]) == 1)
            if path is not None:
                found[module][student.name] = student / path
    return found


def as_python_reads(path: Path, copy: Path) -> Path:
    """``path`` if Python reads it as UTF-8 (or not at all); else ``copy``, written with the text Python reads."""
    data = path.read_bytes()
    try:
        python_source(data, str(path))
        return path
    except DeclaredEncoding as declared:
        try:
            text = data.decode(declared.encoding)
        except (UnicodeDecodeError, LookupError):
            return path
    except (SyntaxError, ValueError):  # not Python's either: copydetect skips what is not UTF-8
        return path
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text, encoding="utf-8")
    return copy


def compare_module(detector: CopyDetector, module: str, files: dict[str, Path], stub: Path, top: int) -> list[Pair]:
    """The ``top`` most similar pairs of one module's files; ``detector`` (a fresh one) writes its HTML report."""
    for path in files.values():
        detector.add_file(str(path))
    detector.add_file(str(stub), type="boilerplate")
    detector.run()
    detector.generate_html_report()
    students = list(files)
    # add_file puts every file in both lists in the same order: row i and column i are students[i]
    pairs = [
        Pair(
            module,
            students[i],
            students[j],
            float(detector.similarity_matrix[i, j, 0]),
            float(detector.similarity_matrix[i, j, 1]),
            int(detector.token_overlap_matrix[i, j]),
        )
        for i in range(len(students))
        for j in range(i + 1, len(students))
        if detector.token_overlap_matrix[i, j] > 0  # -1: not compared (a file that is not UTF-8)
    ]
    pairs.sort(key=lambda p: (-max(p.similarity_a, p.similarity_b), -p.overlap_tokens, p.student_a, p.student_b))
    return pairs[:top]


def module_section(module: str, files: dict[str, Path], students: list[str], pairs: list[Pair]) -> list[str]:
    """The Markdown section of one module."""
    lines = [f"## {module}", ""]
    missing = [student for student in students if student not in files]
    if missing:
        lines += [f"No file from: {', '.join(missing)}.", ""]
    if len(files) < 2:
        return lines + ["Fewer than two submissions have this file: nothing to compare.", ""]
    lines += [f"copydetect's report: [{report_name(module)}]({report_name(module)})", ""]
    if not pairs:
        return lines + ["No two submissions share code beyond the handout stub.", ""]
    lines += ["| student A | student B | similarity A | similarity B | overlapping tokens |", "|---|---|---|---|---|"]
    lines += [
        f"| {p.student_a} | {p.student_b} | {p.similarity_a:.0%} | {p.similarity_b:.0%} | {p.overlap_tokens} |"
        for p in pairs
    ]
    return lines + [""]


def similarity_report(submissions: Path, modules: list[str], handout: Path, out: Path, top: int = TOP_PAIRS) -> bool:
    """Write the similarity report of ``submissions`` (one folder per student) to ``out``; False if skipped.

    ``modules`` are the student modules' paths; ``handout / module`` is each one's stub (the boilerplate).
    """
    try:
        from copydetect import CopyDetector  # instructor-only: students, and some instructors, do not have it
    except ImportError:
        print(SKIPPED)
        return False
    out.mkdir(parents=True, exist_ok=True)
    students = sorted(p.name for p in submissions.iterdir() if p.is_dir())
    found = module_files(submissions, modules)
    for module, files in found.items():
        for student, path in files.items():
            files[student] = as_python_reads(path, out / "decoded" / student / module)
    rows: list[Pair] = []
    lines = [
        "# Similarity between submissions",
        "",
        (
            f"{len(students)} submissions. Per student module, the {top} most similar pairs (copydetect; "
            "the handout stub is boilerplate). Similarity A: the share of A's code also found in B's."
        ),
        "",
    ]
    for module in modules:
        files, pairs = found[module], []
        if len(files) > 1:
            detector = CopyDetector(out_file=str(out / report_name(module)), autoopen=False, silent=True)
            pairs = compare_module(detector, module, files, handout / module, top)
        rows += pairs
        lines += module_section(module, files, students, pairs)
    with open(out / "similarity.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(
            [p.module, p.student_a, p.student_b, round(p.similarity_a, 4), round(p.similarity_b, 4), p.overlap_tokens]
            for p in rows
        )
    (out / "similarity.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"similarity report written to {out / 'similarity.md'}")
    return True
