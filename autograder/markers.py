"""Solution markers: find the blocks students write and turn a solution file into its stub.

Every block a student writes is fenced by a line ``# BEGIN SOLUTION`` and a line
``# END SOLUTION``. In the handout:

* a block inside a function body becomes ``raise NotImplementedError("Implement <qualified name>
  (<path>)")`` at the indentation of the ``# BEGIN SOLUTION`` line;
* a block at module or class level (solution-only helpers) is removed, together with the blank
  lines it leaves behind; a class whose whole body was such a block gets ``pass``.

The student modules are the Python files that contain at least one marker, so a new module needs
no registration anywhere.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"


class MarkerError(ValueError):
    """The markers of a file are malformed (unbalanced or nested)."""


@dataclass(frozen=True)
class Block:
    """One solution block: 1-based line numbers of its two marker lines."""

    begin: int
    end: int


def has_markers(source: str) -> bool:
    """Whether ``source`` contains at least one ``# BEGIN SOLUTION`` line."""
    return any(line.strip().startswith(BEGIN) for line in source.splitlines())


def find_blocks(source: str, path: str = "<source>") -> list[Block]:
    """The solution blocks of ``source`` in order; MarkerError if they are unbalanced or nested."""
    blocks, open_line = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if open_line is not None:
                raise MarkerError(f"{path}:{number}: {BEGIN} nested in the block opened on line {open_line}")
            open_line = number
        elif stripped.startswith(END):
            if open_line is None:
                raise MarkerError(f"{path}:{number}: {END} without {BEGIN}")
            blocks.append(Block(open_line, number))
            open_line = None
    if open_line is not None:
        raise MarkerError(f"{path}:{open_line}: {BEGIN} never closed")
    return blocks


_Scope = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _scopes(tree: ast.Module) -> list[tuple[_Scope, str]]:
    """Every function and class of ``tree`` with its qualified name (``Class.method``)."""
    found: list[tuple[_Scope, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                found.append((child, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _innermost_scope(scopes: list[tuple[_Scope, str]], line: int) -> tuple[_Scope, str] | None:
    """The innermost function or class whose body contains ``line``, if any."""
    # end_lineno is None only for nodes built by hand, never for parsed ones.
    containing = [(node, name) for node, name in scopes if node.lineno < line <= (node.end_lineno or node.lineno)]
    return max(containing, key=lambda item: item[0].lineno, default=None)


def _class_keeps_a_statement(node: ast.ClassDef, blocks: list[Block]) -> bool:
    """Whether some statement of the class body lies outside every solution block."""
    return any(not any(b.begin < stmt.lineno <= b.end for b in blocks) for stmt in node.body)


def _blank_run(lines: list[str], start: int, step: int) -> int:
    """How many blank lines there are from index ``start`` going in direction ``step``."""
    count, index = 0, start
    while 0 <= index < len(lines) and not lines[index].strip():
        count, index = count + 1, index + step
    return count


def strip_solutions(source: str, path: str) -> str:
    """The handout version of the solution file ``source`` (``path`` names it in messages)."""
    blocks = find_blocks(source, path)
    scopes = _scopes(ast.parse(source, filename=path))
    lines = source.splitlines()
    for block in reversed(blocks):  # bottom-up, so earlier line numbers stay valid
        first, last = block.begin - 1, block.end - 1  # 0-based indices of the marker lines
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        scope, name = _innermost_scope(scopes, block.begin) or (None, "")
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines[first : last + 1] = [f'{indent}raise NotImplementedError("Implement {name} ({path})")']
        elif isinstance(scope, ast.ClassDef) and not _class_keeps_a_statement(scope, blocks):
            lines[first : last + 1] = [f"{indent}pass"]
        else:
            before, after = _blank_run(lines, first - 1, -1), _blank_run(lines, last + 1, 1)
            at_end = last + 1 + after == len(lines)
            lines[first - before : last + 1 + after] = [] if at_end else [""] * max(before, after)
    stub = "\n".join(lines) + "\n"
    ast.parse(stub, filename=path)  # the handout must stay valid Python
    return stub


def student_modules(root: Path, files: list[str]) -> list[str]:
    """The Python files among ``files`` (paths relative to ``root``) that contain solution markers."""
    return sorted(f for f in files if f.endswith(".py") and has_markers((root / f).read_text(encoding="utf-8")))
