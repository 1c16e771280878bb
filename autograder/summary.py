"""grade_all's ``summary.csv``: one row per student, for a spreadsheet.

Columns, each header with its maximum where it has one (``Part 2 [max 50]``), so that every row
below the header is a student and sorts and filters as one:

- ``student``, ``total`` (the results' score: every entry, deductions included, never below 0);
- one total per part of the course (``configs/grading.json``'s parts; a bonus part says so), the
  sum of that part's entries (the import deduction belongs to no part);
- flags: ``all stubs`` (yes when every student module was graded as its handout stub: missing,
  unusable or unchanged; most often a wrong upload), ``stub modules`` (which),
  ``invalid predictions`` (each Part 4 file that earns nothing: missing or invalid),
  ``forbidden imports deduction``, ``review flags`` (the count in the instructors-only entry;
  never a deduction) and ``grader error`` (the message, when grading did not complete);
- every scored entry in grading-config order: per problem its public then its hidden entry, then
  Part 4A and 4B. Entries worth no points (the submitted files, the feedback modules) are left out.

Everything is read from each student's results (their entries and ``extra_data``, written by
:func:`autograder.grade.grading_facts`) and from the bundle's grading configuration.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.grade import problem_entry_name

PART4 = "4"  # the part of the predictions entries (grading_config.json's "part4")
FLAGS = ["all stubs", "stub modules", "invalid predictions", "forbidden imports deduction", "review flags"]
ERROR = "grader error"


@dataclass(frozen=True)
class Column:
    """One scored entry of results.json: its name, its part of the course (None if unknown), its points."""

    name: str
    part: str | None
    max_points: float


@dataclass(frozen=True)
class Layout:
    """What the summary's columns are, from the bundle: the scored entries, the parts, the student modules."""

    columns: list[Column]
    parts: dict[str, bool]  # part -> whether it is a bonus part, in the order of the rules file
    student_modules: list[str]

    @classmethod
    def load(cls, bundle: Path) -> Layout:
        config = json.loads((bundle / "grading_config.json").read_text(encoding="utf-8"))
        rules = json.loads((bundle / "handout" / config["rules"]).read_text(encoding="utf-8"))
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
        return cls.from_config(config, rules, manifest["student_modules"])

    @classmethod
    def from_config(cls, config: dict, rules: dict, student_modules: list[str]) -> Layout:
        columns = [
            Column(problem_entry_name(problem, public), problem["part"], problem["public" if public else "hidden"])
            for problem in config["problems"]
            for public in (True, False)
        ]
        columns += [
            Column(spec["name"], PART4, rules["part4"][spec["rule"]]["points"])
            for spec in config["part4"]["predictions"].values()
        ]
        columns = [column for column in columns if column.max_points > 0]
        parts = {part: bool(spec.get("bonus")) for part, spec in rules["parts"].items()}
        return cls(columns, parts, student_modules)


def part_label(part: str) -> str:
    return f"Part {part}"


def facts(results: dict) -> dict[str, Any] | None:
    """The grading facts of one student's results: ``extra_data``, with each entry's own merged in;
    None when grading did not complete (the results of :func:`autograder.grade.failure_results`)."""
    if "extra_data" not in results:
        return None
    merged = dict(results["extra_data"])
    for test in results["tests"]:
        merged |= test.get("extra_data", {})
    return merged


def flag_cells(found: dict[str, Any] | None, results: dict, layout: Layout) -> dict[str, Any]:
    """The flag columns of one row; empty cells (and the grader's message) when grading did not complete."""
    if found is None:
        return {ERROR: results.get("output", "")}
    stubs = found["stub_modules"]
    return {
        "all stubs": "yes" if set(layout.student_modules) <= set(stubs) else "no",
        "stub modules": " ".join(module.split("/")[-1] for module in stubs),
        "invalid predictions": "; ".join(f"{key} {why}" for key, why in found["invalid_predictions"].items()),
        "forbidden imports deduction": found["forbidden_imports_deduction"],
        "review flags": found["review_flags"],
    }


def summary_row(student: str, results: dict, layout: Layout) -> dict[str, Any]:
    """One student's row, keyed by column name: the headers without their maximum, except for a scored
    entry the configuration does not name, whose key is its whole header (its maximum is known only here)."""
    known = {column.name for column in layout.columns}
    scores = {
        test["name"] if test["name"] in known else header(test["name"], test["max_score"]): test["score"]
        for test in results["tests"]
        if test["max_score"]
    }
    row: dict[str, Any] = {"student": student, "total": results["score"]}
    for part in layout.parts:
        mine = [scores[column.name] for column in layout.columns if column.part == part and column.name in scores]
        row[part_label(part)] = round(sum(mine), 2) if mine else ""
    row |= flag_cells(facts(results), results, layout)
    return row | scores


def score_columns(rows: list[dict], layout: Layout) -> list[Column]:
    """The entries' columns: those of the layout that some row has (all of them if none has any), in
    config order, then any other scored entry the rows have, so that no points go unshown."""
    present = {key for row in rows for key in row}
    known = [column for column in layout.columns if column.name in present] or layout.columns
    names = {column.name for column in layout.columns} | {"student", "total", ERROR, *FLAGS}
    names |= {part_label(part) for part in layout.parts}
    others = list(dict.fromkeys(key for row in rows for key in row if key not in names))
    return known + [Column(name, None, 0.0) for name in others]  # named with their maximum by summary_row


def header(name: str, max_points: float | None, bonus: bool = False) -> str:
    """A column's header: its name and, where it has one, its maximum (``Part 4 (bonus) [max 20]``)."""
    name += " (bonus)" if bonus else ""
    return name if max_points is None else f"{name} [max {max_points:g}]"


def cell(value: Any) -> Any:
    """Numbers as a spreadsheet reads them (``2`` for 2.0, at most two decimals); text as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return f"{round(value, 2):g}"


def write_summary(rows: list[dict], layout: Layout, path: Path) -> None:
    """Write ``summary.csv``: the headers with their maxima, then one line per row of :func:`summary_row`."""
    columns = score_columns(rows, layout)
    part_max = {part: sum(c.max_points for c in columns if c.part == part) for part in layout.parts}
    parts = [part for part in layout.parts if part_max[part] > 0]
    regular = sum(part_max[part] for part in parts if not layout.parts[part])
    bonus = sum(part_max[part] for part in parts if layout.parts[part])
    headers = {"student": "student", "total": f"total [max {regular:g}{f' + {bonus:g} bonus' if bonus else ''}]"}
    headers |= {part_label(part): header(part_label(part), part_max[part], layout.parts[part]) for part in parts}
    headers |= {flag: flag for flag in FLAGS}
    if any(ERROR in row for row in rows):
        headers[ERROR] = ERROR
    headers |= {column.name: header(column.name, column.max_points if column.part else None) for column in columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(headers.values())
        writer.writerows([cell(row.get(key, "")) for key in headers] for row in rows)
