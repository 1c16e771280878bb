"""Similarity report across submissions, with copydetect (an instructor-only dependency).

For every student module, each pair of students' files is compared with copydetect's winnowed
fingerprints; the handout stub of the module is the boilerplate, so the code every student was
given counts as nobody's similarity. The reference solution (the student modules of the
instructors' repository, given as ``reference``) takes part as one more student named
``<reference solution>``: a submission that copies a leaked solution ranks high against it.
Written to ``out`` (``grade_all`` uses ``<out>/similarity``)::

    pairs.csv                 every pair of students sharing code, over all student modules, most
                              similar first: student_a, student_b, similarity_a, similarity_b,
                              overlap_tokens, then one column per module (that module's higher
                              share; 0 where both have the file and share nothing, empty where one
                              has no file)
    similarity.csv            per module, the most similar pairs: module, student_a, student_b,
                              similarity_a, similarity_b, overlap_tokens
    similarity.md             the most similar pairs over all modules, then per module, as tables
    <module>.html             copydetect's own report for one module ("/" in the path becomes "__")

A file that declares another encoding than UTF-8 (PEP 263) is compared as Python reads it: a UTF-8
copy of its decoded text is written to ``decoded/<student>/<module>`` (a UTF-7 file can hide its code
in what a UTF-8 reader takes for a comment).

``similarity_a`` is the share of student A's fingerprinted tokens also found in B's file (and
``similarity_b`` the reverse), as copydetect defines them; over all modules, the share of A's
fingerprinted tokens in all A's files also found in B's files of the same modules. Pairs rank by
the higher of the two shares, then by the overlapping tokens (A's), then by name. Pairs with no
overlap are left out.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.grade import find_submitted, student_folders, submitted_files
from autograder.imports_check import DeclaredEncoding, python_source
from autograder.markers import has_markers

if TYPE_CHECKING:
    from copydetect import CopyDetector

TOP_PAIRS = 20
COLUMNS = ["module", "student_a", "student_b", "similarity_a", "similarity_b", "overlap_tokens"]
SKIPPED = "similarity report skipped: copydetect is not installed (pip install -r requirements-dev.txt)"
REFERENCE = "<reference solution>"


@dataclass(frozen=True)
class Pair:
    """Two students' files of one module that share fingerprinted code."""

    module: str
    student_a: str
    student_b: str
    similarity_a: float
    similarity_b: float
    overlap_tokens: int

    def rank(self) -> tuple:
        return (-max(self.similarity_a, self.similarity_b), -self.overlap_tokens, self.student_a, self.student_b)


@dataclass(frozen=True)
class ModuleComparison:
    """One module compared: each student's fingerprinted tokens beyond the stub, every pair sharing code."""

    module: str
    tokens: dict[str, float]
    pairs: list[Pair]


@dataclass
class PairTotal:
    """Two students over all student modules: the shares of each one's code found in the other's,
    and per module (where both have the file) the higher share."""

    student_a: str
    student_b: str
    similarity_a: float = 0.0
    similarity_b: float = 0.0
    overlap_tokens: int = 0
    modules: dict[str, float] = field(default_factory=dict)

    def rank(self) -> tuple:
        return (-max(self.similarity_a, self.similarity_b), -self.overlap_tokens, self.student_a, self.student_b)


def report_name(module: str) -> str:
    """The HTML report's file name for a module: its path with "/" replaced, so all sit in one folder."""
    return module.replace("/", "__") + ".html"


def reference_files(reference: Path | None, modules: list[str]) -> dict[str, Path]:
    """The reference solution's file of each module: ``reference / module``, where it has solution markers
    (a handout checkout has none: it is the stub, not the solution)."""
    if reference is None:
        return {}
    paths = {module: reference / module for module in modules}
    return {m: p for m, p in paths.items() if p.is_file() and has_markers(p.read_text(encoding="utf-8"))}


def module_files(
    submissions: Path, modules: list[str], reference: dict[str, Path] | None = None
) -> dict[str, dict[str, Path]]:
    """Per module, each student's submitted file, found as the grader finds it (students without one are
    left out), the reference solution's first where it has one."""
    names = [module.split("/")[-1] for module in modules]
    reference = reference or {}
    found = {module: {REFERENCE: reference[module]} if module in reference else {} for module in modules}
    for student in student_folders(submissions):
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


def compare_module(detector: CopyDetector, module: str, files: dict[str, Path], stub: Path) -> ModuleComparison:
    """Every pair of one module's files that shares code, most similar first; ``detector`` (a fresh one)
    writes its HTML report."""
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
    # a file copydetect could not read has no fingerprints: it counts no tokens
    fingerprints = {student: detector.file_data.get(str(path)) for student, path in files.items()}
    tokens = {student: float(data.token_coverage) if data else 0.0 for student, data in fingerprints.items()}
    return ModuleComparison(module, tokens, sorted(pairs, key=Pair.rank))


def pair_totals(comparisons: list[ModuleComparison]) -> list[PairTotal]:
    """Every pair that shares code in some module, over all modules, most similar first.

    Pairs are keyed as each module lists them: students in the same order in every module.
    """
    tokens: dict[str, float] = defaultdict(float)
    for comparison in comparisons:
        for student, count in comparison.tokens.items():
            tokens[student] += count
    shared: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    totals: dict[tuple[str, str], PairTotal] = {}
    for comparison in comparisons:
        for pair in comparison.pairs:
            key = (pair.student_a, pair.student_b)
            total = totals.setdefault(key, PairTotal(*key))
            shared[key][0] += pair.similarity_a * comparison.tokens[pair.student_a]
            shared[key][1] += pair.similarity_b * comparison.tokens[pair.student_b]
            total.overlap_tokens += pair.overlap_tokens
    for (a, b), total in totals.items():
        total.similarity_a = shared[a, b][0] / tokens[a] if tokens[a] else 0.0
        total.similarity_b = shared[a, b][1] / tokens[b] if tokens[b] else 0.0
        total.modules = {c.module: 0.0 for c in comparisons if a in c.tokens and b in c.tokens}
    for comparison in comparisons:
        for pair in comparison.pairs:
            totals[pair.student_a, pair.student_b].modules[comparison.module] = max(
                pair.similarity_a, pair.similarity_b
            )
    return sorted(totals.values(), key=PairTotal.rank)


def md(name: str) -> str:
    """A student's name as a Markdown table shows it: ``<reference solution>`` is not read as an HTML tag,
    a "|" does not end the cell."""
    return name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def short_name(module: str) -> str:
    """A module's column title in the Markdown table: its file name."""
    return module.split("/")[-1]


def totals_section(totals: list[PairTotal], modules: list[str], top: int) -> list[str]:
    """The Markdown table of the ``top`` most similar pairs over all modules."""
    lines = ["## Over all student modules", ""]
    if not totals:
        return lines + ["No two submissions share code beyond the handout stubs.", ""]
    lines += [
        "| student A | student B | similarity A | similarity B | overlapping tokens | "
        + " | ".join(short_name(m) for m in modules)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(modules),
    ]
    for t in totals[:top]:
        cells = [f"{t.modules[m]:.0%}" if m in t.modules else "-" for m in modules]
        lines.append(
            f"| {md(t.student_a)} | {md(t.student_b)} | {t.similarity_a:.0%} | {t.similarity_b:.0%} "
            f"| {t.overlap_tokens} | " + " | ".join(cells) + " |"
        )
    return lines + ["", "Per module: the higher of the two shares; - where one of them has no file.", ""]


def module_section(module: str, files: dict[str, Path], students: list[str], pairs: list[Pair]) -> list[str]:
    """The Markdown section of one module."""
    lines = [f"## {module}", ""]
    missing = [student for student in students if student not in files]
    if missing:
        lines += [f"No file from: {', '.join(map(md, missing))}.", ""]
    if len(files) < 2:
        return lines + ["Fewer than two submissions have this file: nothing to compare.", ""]
    lines += [f"copydetect's report: [{report_name(module)}]({report_name(module)})", ""]
    if not pairs:
        return lines + ["No two submissions share code beyond the handout stub.", ""]
    lines += ["| student A | student B | similarity A | similarity B | overlapping tokens |", "|---|---|---|---|---|"]
    lines += [
        f"| {md(p.student_a)} | {md(p.student_b)} | {p.similarity_a:.0%} | {p.similarity_b:.0%} | {p.overlap_tokens} |"
        for p in pairs
    ]
    return lines + [""]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def reference_note(reference: Path | None, found: dict[str, Path], modules: list[str]) -> str:
    """One line on the reference solution: compared as which student, or why not."""
    if reference is None:
        return "The reference solution is not compared."
    if not found:
        return f"The reference solution is not compared: {reference} has no student module with solution markers."
    missing = [m for m in modules if m not in found]
    left = f" (not {', '.join(missing)}: no solution markers there)" if missing else ""
    return f"The reference solution ({reference}) is compared as `{REFERENCE}`{left}."  # in backticks: shown as is


def similarity_report(
    submissions: Path, modules: list[str], handout: Path, out: Path, top: int = TOP_PAIRS, reference: Path | None = None
) -> bool:
    """Write the similarity report of ``submissions`` (one folder per student) to ``out``; False if skipped.

    ``modules`` are the student modules' paths; ``handout / module`` is each one's stub (the boilerplate);
    ``reference / module`` the reference solution's file, compared as the student ``<reference solution>``.
    """
    try:
        from copydetect import CopyDetector  # instructor-only: students, and some instructors, do not have it
    except ImportError:
        print(SKIPPED)
        return False
    out.mkdir(parents=True, exist_ok=True)
    students = [p.name for p in student_folders(submissions)]
    solution = reference_files(reference, modules)
    found = module_files(submissions, modules, solution)
    for module, files in found.items():
        for student, path in files.items():
            files[student] = as_python_reads(path, out / "decoded" / student / module)
    comparisons: list[ModuleComparison] = []
    sections = []
    for module in modules:
        files, pairs = found[module], []
        if len(files) > 1:
            detector = CopyDetector(out_file=str(out / report_name(module)), autoopen=False, silent=True)
            comparisons.append(compare_module(detector, module, files, handout / module))
            pairs = comparisons[-1].pairs[:top]
        sections += module_section(module, files, students, pairs)
    totals = pair_totals(comparisons)
    write_tables(out, modules, totals, comparisons, top)
    lines = report_header(len(students), reference_note(reference, solution, modules), top)
    lines += totals_section(totals, modules, top) + sections
    (out / "similarity.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"similarity report written to {out / 'similarity.md'}")
    return True


def report_header(students: int, reference_line: str, top: int) -> list[str]:
    """similarity.md's title and what it shows."""
    return [
        "# Similarity between submissions",
        "",
        (
            f"{students} submissions. {reference_line} Pairs over all student "
            f"modules, then per student module, the {top} most similar pairs (copydetect; the handout stub is "
            "boilerplate). Similarity A: the share of A's code also found in B's."
        ),
        "",
    ]


def write_tables(
    out: Path, modules: list[str], totals: list[PairTotal], comparisons: list[ModuleComparison], top: int
) -> None:
    """Write pairs.csv (every pair over all modules) and similarity.csv (each module's ``top`` pairs)."""
    write_csv(
        out / "pairs.csv",
        ["student_a", "student_b", "similarity_a", "similarity_b", "overlap_tokens", *modules],
        [
            [t.student_a, t.student_b, round(t.similarity_a, 4), round(t.similarity_b, 4), t.overlap_tokens]
            + [round(t.modules[m], 4) if m in t.modules else "" for m in modules]
            for t in totals
        ],
    )
    write_csv(
        out / "similarity.csv",
        COLUMNS,
        [
            [p.module, p.student_a, p.student_b, round(p.similarity_a, 4), round(p.similarity_b, 4), p.overlap_tokens]
            for c in comparisons
            for p in c.pairs[:top]
        ],
    )
