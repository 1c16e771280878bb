"""The report's Markdown, with its tables also written as CSV and its figures as PNG beside it."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from cs288_lm.analysis import MissingDependency


def cell(value: object) -> str:
    """``value`` as the text of one Markdown table cell (numbers rounded, pipes and newlines escaped)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\r", "").replace("\n", " ¶ ")


def megabytes(count: int) -> str:
    return f"{count / 2**20:,.1f} MiB"


class ReportWriter:
    """Collects the report's Markdown; writes tables as CSV and figures as PNG beside it."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.lines: list[str] = []
        self.files: list[Path] = []

    def add(self, text: str = "") -> None:
        self.lines.append(text)

    def paragraph(self, text: str) -> None:
        """``text`` and the blank line that ends it."""
        self.add(text)
        self.add()

    def note(self, text: str) -> None:
        self.paragraph(f"> **Note:** {text}")

    def table(
        self,
        rows: Sequence[dict],
        columns: Sequence[str],
        csv_name: str | None = None,
        headers: Sequence[str] | None = None,
    ) -> None:
        """A Markdown table of ``columns`` (keys of ``rows``) and, with ``csv_name``, the same as CSV."""
        headers = list(headers or columns)
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + " --- |" * len(headers))
        for row in rows:
            self.add("| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |")
        if csv_name:
            self._write_csv(rows, columns, csv_name)
            self.add()
            self.add(f"Table as CSV: [{csv_name}]({csv_name})")
        self.add()

    def _write_csv(self, rows: Sequence[dict], columns: Sequence[str], csv_name: str) -> None:
        path = self.out_dir / csv_name
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows([row.get(column, "") for column in columns] for row in rows)
        self.files.append(path)

    def csv_only(self, rows: Sequence[dict], columns: Sequence[str], csv_name: str, what: str) -> None:
        """Write ``rows`` as CSV beside the report and link it (for tables too long to show)."""
        self._write_csv(rows, columns, csv_name)
        self.paragraph(f"{what}: [{csv_name}]({csv_name})")

    def figure(self, draw: Callable[[Path], object], name: str, alt: str) -> bool:
        """Draw a PNG with ``draw(path)`` and link it; a missing plotting library becomes a note."""
        path = self.out_dir / name
        try:
            draw(path)
        except MissingDependency as error:
            self.note(f"no figure {name}: {error}")
            return False
        self.files.append(path)
        self.paragraph(f"![{alt}]({name})")
        return True

    def link_existing(self, name: str, alt: str) -> None:
        """Link a PNG already written beside the report."""
        self.files.append(self.out_dir / name)
        self.paragraph(f"![{alt}]({name})")

    def write(self) -> Path:
        path = self.out_dir / "report.md"
        path.write_text("\n".join(self.lines).rstrip() + "\n", encoding="utf-8")
        return path
