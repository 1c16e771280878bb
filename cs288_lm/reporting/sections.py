"""The report's sections, in the report's order: each a module that measures and writes its part."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cs288_lm.reporting import attention, card, compare, embeddings, sampling, sweep
from cs288_lm.reporting.context import Context
from cs288_lm.reporting.writer import ReportWriter


@dataclass(frozen=True)
class Section:
    name: str  # as given to --sections
    title: str
    render: Callable[[Context, ReportWriter], None]
    prepare: Callable[[Context], None] | None = None  # reads the section's own inputs before any section runs


SECTIONS = (
    Section("card", card.TITLE, card.render),
    Section("sweep", sweep.TITLE, sweep.render),
    Section("sampling", sampling.TITLE, sampling.render),
    Section("attention", attention.TITLE, attention.render),
    Section("embeddings", embeddings.TITLE, embeddings.render),
    Section("compare", compare.TITLE, compare.render, prepare=compare.load_gpt2),
)
NAMES = tuple(section.name for section in SECTIONS)


def numbered(names: list[str]) -> list[tuple[int, Section]]:
    """(number in the full report, section) of the sections named, in the report's order."""
    return [(number, section) for number, section in enumerate(SECTIONS, start=1) if section.name in names]


def anchor(number: int, section: Section) -> str:
    """The Markdown link target of the section's heading ``## number. title``."""
    return f"#{number}-{section.title.lower().replace(' ', '-')}"
