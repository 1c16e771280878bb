"""Strip the expected values out of test modules before they run next to submitted code.

While grading, a check ``check_close(actual, expected)`` is judged against the reference
solution's ``actual``: the test's own ``expected`` is not needed. Left in the test, it would be
computed inside the submission's process, where submitted code could read it (a reference
implementation's output, a literal list of token ids from a hidden test) and record it as its own
answer. So every test module written into a sandbox (for the reference run and for submissions
alike, so that both run the same code) is rewritten first:

* the ``expected`` argument of ``check_close`` / ``check_equal`` becomes ``None`` (except with
  ``against="expected"``, whose expected values the grader does use);
* assignments to a local name that nothing reads any more are dropped, repeatedly, so that
  ``expected = reference(x)`` is not computed either;
* test functions stop requesting fixtures they no longer use (a fixture computing a reference).

The edits are made on the text, keeping every other line where it was, so that the line numbers
in the grader's messages are those of the students' copy. Only test modules change; students run
the original files.
"""

from __future__ import annotations

import ast
import re

CHECKS = {"check_close", "check_equal"}


def _is_check(call: ast.Call) -> bool:
    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
    return name in CHECKS


def _against_expected(call: ast.Call) -> bool:
    return any(
        k.arg == "against" and isinstance(k.value, ast.Constant) and k.value.value == "expected" for k in call.keywords
    )


Edit = tuple[ast.AST, str]  # a node of the original source, and the text that replaces it


class _DropExpected(ast.NodeTransformer):
    def __init__(self, edits: list[Edit]) -> None:
        self.edits = edits

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if _is_check(node) and not _against_expected(node):
            if len(node.args) >= 2:
                self.edits.append((node.args[1], "None"))
                node.args[1] = ast.Constant(None)
            for keyword in node.keywords:
                if keyword.arg == "expected":
                    self.edits.append((keyword.value, "None"))
                    keyword.value = ast.Constant(None)
        return node


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Load, ast.Del))}


def _target(statement: ast.stmt) -> str | None:
    target = statement.targets[0] if isinstance(statement, ast.Assign) else getattr(statement, "target", None)
    return target.id if isinstance(target, ast.Name) else None


def _dead_store(statement: ast.stmt, loaded: set[str]) -> bool:
    """``name = ...`` (or annotated) whose name is never read in the function."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target = statement.target
    else:
        return False
    return isinstance(target, ast.Name) and target.id not in loaded


def _drop_dead_stores(
    function: ast.FunctionDef | ast.AsyncFunctionDef, read_before: set[str], edits: list[Edit]
) -> None:
    """Drop the stores that stripping made dead (names read before, no longer read)."""
    while True:
        loaded = _loaded_names(function)
        dead = read_before - loaded
        changed = False
        for node in ast.walk(function):
            for field in ("body", "orelse", "finalbody"):
                statements = getattr(node, field, None)
                if not isinstance(statements, list) or not statements or not isinstance(statements[0], ast.stmt):
                    continue
                dropped = [s for s in statements if _dead_store(s, loaded) and _target(s) in dead]
                if dropped:
                    changed = True
                    edits += [(statement, "pass") for statement in dropped]
                    setattr(node, field, [s for s in statements if s not in dropped] or [ast.Pass()])
        if not changed:
            return


def _parametrized_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names: set[str] = set()
    for decorator in function.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and getattr(decorator.func, "attr", None) == "parametrize"
            and decorator.args
        ):
            first = decorator.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names |= {name.strip() for name in first.value.split(",")}
            elif isinstance(first, (ast.List, ast.Tuple)):
                names |= {e.value for e in first.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return names


def _drop_unused_fixtures(
    function: ast.FunctionDef | ast.AsyncFunctionDef, read_before: set[str], edits: list[Edit]
) -> None:
    """Stop requesting the fixtures that only fed expected values (read before, no longer read)."""
    unused = (read_before - _loaded_names(function)) - _parametrized_names(function)
    edits += [(argument, "") for argument in function.args.args if argument.arg in unused]


def _apply(source: str, edits: list[Edit]) -> str:
    """``source`` with each edited node's text replaced, keeping its newlines (line numbers stay)."""
    lines = source.encode("utf-8").splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    data = source.encode("utf-8")
    spans = []
    for node, text in edits:  # ast offsets count UTF-8 bytes
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        if isinstance(node, ast.arg):  # a parameter: take its comma with it
            after = re.match(rb"\s*,[ \t]*", data[end:])
            if after:
                end += after.end()
            else:
                before = re.search(rb",\s*$", data[:start])
                start = before.start() if before else start
        spans.append((start, end, text))
    result, last = [], len(data)
    for start, end, text in sorted(spans, reverse=True):
        if end > last:  # inside a span already replaced (a dropped statement holding a check)
            continue
        newlines = data[start:end].count(b"\n")
        result.append(data[end:last])
        result.append(text.encode() + b"\n" * newlines if text or not newlines else b"\n" * newlines)
        last = start
    result.append(data[:last])
    return b"".join(reversed(result)).decode("utf-8")


def strip_expected(source: str, filename: str = "<test>") -> str:
    """The test module ``source`` without its expected values (see the module docstring)."""
    tree = ast.parse(source, filename=filename)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    read_before = {id(function): _loaded_names(function) for function in functions}
    edits: list[Edit] = []
    tree = _DropExpected(edits).visit(tree)
    for function in functions:
        _drop_dead_stores(function, read_before[id(function)], edits)
        if function.name.startswith("test_") and not function.args.defaults:
            _drop_unused_fixtures(function, read_before[id(function)], edits)
    stripped = _apply(source, edits)
    ast.parse(stripped, filename=filename)  # a broken edit must fail here, not in a sandbox
    return stripped


def is_test_module(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") and name.endswith(".py")


def sandbox_tree(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with every test module stripped of its expected values."""
    return {
        path: strip_expected(data.decode("utf-8"), path).encode("utf-8") if is_test_module(path) else data
        for path, data in files.items()
    }
