"""Strip the expected values out of test modules before they run next to submitted code.

While grading, a check ``check_close(actual, expected)`` is judged against the reference
solution's ``actual``: the test's own ``expected`` is not needed. Left in the test, it would be
computed inside the submission's process, where submitted code could read it (a reference
implementation's output, a literal list of token ids from a hidden test) and record it as its own
answer. So every test module written into a sandbox (for the reference run and for submissions
alike, so that both run the same code) is rewritten first:

* the ``expected`` argument of ``check_close`` / ``check_equal`` becomes ``None`` (except with
  ``against="expected"``, whose expected values the grader does use), and so does the expected
  argument of the test module's own helpers that only pass it on (``assert_close(actual,
  expected)`` calling ``check_close``); local failure messages (``message=``) become empty;
* assignments to local names that nothing reads any more are dropped, repeatedly, so that
  ``expected = reference(x)`` is not computed either;
* test functions stop requesting fixtures they no longer use (a fixture computing a reference);
* module-level functions and constants that nothing uses any more go too (the independent
  reference implementations and literal expected values of hidden tests).

The edits are made on the text, keeping every other line where it was, so that the line numbers
in the grader's messages are those of the students' copy. Only test modules change; students run
the original files.
"""

from __future__ import annotations

import ast
import copy
import re
import threading
from collections.abc import Iterator
from typing import Protocol, TypeGuard

# Check name -> (position of its expected argument, keyword of its expected argument).
CHECKS = {"check_close": (1, "expected"), "check_equal": (1, "expected")}
Checks = dict[str, tuple[int, str]]


class _Span(Protocol):
    """Where a node (or an insertion point) lies in the source: what ``_apply`` reads."""

    @property
    def lineno(self) -> int: ...
    @property
    def col_offset(self) -> int: ...
    @property
    def end_lineno(self) -> int | None: ...  # None only on nodes built by hand, never on parsed ones
    @property
    def end_col_offset(self) -> int | None: ...


Edit = tuple[_Span, str]  # a node of the original source, and the text that replaces it
Function = ast.FunctionDef | ast.AsyncFunctionDef


def _called_name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def _against_expected(call: ast.Call) -> bool:
    return any(
        k.arg == "against" and isinstance(k.value, ast.Constant) and k.value.value == "expected" for k in call.keywords
    )


class _DropExpected(ast.NodeTransformer):
    """Replace the expected arguments (and local messages) of every check call."""

    def __init__(self, checks: Checks, edits: list[Edit]) -> None:
        self.checks, self.edits = checks, edits

    def _replace(self, node: ast.expr, text: str) -> ast.expr:
        self.edits.append((node, text))
        return ast.Constant(None if text == "None" else "")

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = _called_name(node)
        if name not in self.checks or _against_expected(node):
            return node
        position, keyword_name = self.checks[name]
        if len(node.args) > position:
            node.args[position] = self._replace(node.args[position], "None")
        for keyword in node.keywords:
            if keyword.arg == keyword_name:
                keyword.value = self._replace(keyword.value, "None")
            elif keyword.arg == "message" and name in CHECKS:
                keyword.value = self._replace(keyword.value, '""')
        return node


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Load, ast.Del))}


def _stored_names(statement: ast.stmt) -> list[str] | None:
    """The names ``statement`` assigns, if it is a plain assignment to names (or a tuple of them)."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)) and statement.value is not None:
        target = statement.target
    else:
        return None
    targets = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    return names if len(names) == len(targets) else None


def _statement_lists(function: Function) -> Iterator[tuple[ast.AST, str, list[ast.stmt]]]:
    for node in ast.walk(function):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                yield node, field, statements


def _live_names(function: Function, read_before: set[str]) -> set[str]:
    """The names still read, not counting reads by assignments to names that are otherwise unread
    (``expected = expected / expected.sum()`` keeps no ``expected`` alive)."""
    assignments = [s for _, _, statements in _statement_lists(function) for s in statements if _stored_names(s)]
    candidates = set(read_before)
    while True:
        feeding = {id(n) for s in assignments if set(_stored_names(s) or ()) <= candidates for n in ast.walk(s)}
        live = {
            n.id
            for n in ast.walk(function)
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Load, ast.Del)) and id(n) not in feeding
        }
        if not candidates & live:
            return live
        candidates -= live


def _drop_dead_stores(function: Function, read_before: set[str], edits: list[Edit]) -> None:
    """Drop the assignments that stripping made dead: none of their names is read any more (but
    by such assignments), and one of them was read before."""
    while True:
        loaded = _live_names(function, read_before)
        dead = read_before - loaded
        changed = False
        for node, field, statements in list(_statement_lists(function)):
            dropped = [
                s for s in statements if (names := _stored_names(s)) and not set(names) & loaded and set(names) & dead
            ]
            if dropped:
                changed = True
                edits += [(statement, "pass") for statement in dropped]
                setattr(node, field, [s for s in statements if s not in dropped] or [ast.Pass()])
        if not changed:
            return


def _parametrize_decorators(function: Function) -> list[ast.Call]:
    """The function's ``parametrize`` decorators (with at least their argument names)."""
    return [
        decorator
        for decorator in function.decorator_list
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "parametrize" and decorator.args
    ]


def _parametrized_names(function: Function) -> set[str]:
    return {
        name for decorator in _parametrize_decorators(function) for name in _argument_names(decorator.args[0]) or ()
    }


def _argument_names(node: ast.expr) -> list[str] | None:
    """The names of a ``parametrize`` decorator's first argument, in order."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [name.strip() for name in node.value.split(",") if name.strip()]
    if isinstance(node, (ast.List, ast.Tuple)):
        names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return names if len(names) == len(node.elts) else None
    return None


def _is_param(node: ast.expr) -> TypeGuard[ast.Call]:
    return isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "param"


def _case_values(case: ast.expr, count: int) -> list[ast.expr] | None:
    """The value nodes of one parametrize case (a tuple, or one value; either inside ``pytest.param``)."""
    if _is_param(case):
        return list(case.args)
    if count == 1:
        return [case]
    return list(case.elts) if isinstance(case, (ast.Tuple, ast.List)) else None


def _auto_id(node: ast.expr, name: str, index: int, constants: dict[str, ast.expr]) -> str | None:
    """pytest's id of a literal parameter value (or of a module constant holding one); None where
    it cannot be known from the source."""
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if isinstance(value, str):
        return value.encode("unicode_escape").decode("ascii")
    if isinstance(value, bytes):
        return value.decode("ascii", "backslashreplace")
    if value is None or isinstance(value, (bool, int, float, complex)):
        return str(value)
    return f"{name}{index}"


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level names assigned once, to a literal."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        names = _stored_names(node)
        if names and len(names) == 1:
            found[names[0]] = node.value
    return found


def _strip_parametrize(function: Function, unread: set[str], constants: dict[str, ast.expr]) -> list[Edit]:
    """Replace with None, in every case of the function's ``parametrize`` decorators, the values of
    the arguments that only fed expected values; keep the test ids pytest gave the cases before."""
    edits: list[Edit] = []
    for decorator in _parametrize_decorators(function):
        if len(decorator.args) < 2:
            continue
        names = _argument_names(decorator.args[0])
        cases = decorator.args[1]
        stripped = [i for i, name in enumerate(names or []) if name in unread]
        if not names or not stripped or not isinstance(cases, (ast.List, ast.Tuple)):
            continue
        case_values = [
            values for case in cases.elts if (values := _case_values(case, len(names))) and len(values) == len(names)
        ]
        if len(case_values) != len(cases.elts):
            continue
        edits += [(values[i], "None") for values in case_values for i in stripped]
        if any(k.arg == "ids" for k in decorator.keywords):
            continue
        ids = []
        for index, (case, values) in enumerate(zip(cases.elts, case_values, strict=True)):
            explicit = [k.value for k in case.keywords if k.arg == "id"] if _is_param(case) else []
            if explicit:
                ids.append(explicit[0])
                continue
            parts = [_auto_id(value, name, index, constants) for value, name in zip(values, names, strict=True)]
            known = [part for part in parts if part is not None]
            if len(known) < len(parts):
                break
            ids.append(ast.Constant("-".join(known)))
        else:
            last = decorator.keywords[-1] if decorator.keywords else decorator.args[-1]
            text = ", ".join(ast.unparse(i) for i in ids)
            edits.append((_After(last), f", ids=[{text}]"))
    return edits


class _After:
    """An empty span just after ``node`` (an insertion point for ``_apply``)."""

    def __init__(self, node: ast.expr | ast.keyword) -> None:
        assert node.end_lineno is not None and node.end_col_offset is not None  # set on every parsed node
        self.lineno = self.end_lineno = node.end_lineno
        self.col_offset = self.end_col_offset = node.end_col_offset


def _strip_function(function: Function, checks: Checks, edits: list[Edit]) -> set[str]:
    """Strip ``function`` in place; the names it read before and reads no more."""
    read_before = _loaded_names(function)
    _DropExpected(checks, edits).visit(function)
    _drop_dead_stores(function, read_before, edits)
    return read_before - _loaded_names(function)


def _outer_functions(tree: ast.Module) -> list[Function]:
    """The module's functions and methods (each strips the functions nested in it)."""
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node)
        elif isinstance(node, ast.ClassDef):
            found += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return found


def _wrappers(tree: ast.Module) -> Checks:
    """The checks, and the module's functions whose parameter only feeds a check's expected value."""
    checks = dict(CHECKS)
    functions = _outer_functions(tree)
    while True:
        found = {}
        for function in functions:
            if function.name in checks or function.name.startswith("test_"):
                continue
            unread = _strip_function(copy.deepcopy(function), checks, [])
            parameters = [a.arg for a in function.args.posonlyargs + function.args.args]
            for position, parameter in enumerate(parameters[1:], start=1):
                if parameter in unread:
                    found[function.name] = (position, parameter)
                    break
        if not found:
            return checks
        checks.update(found)


def _unused_module_definitions(tree: ast.Module, read_before: set[str]) -> list[Edit]:
    """Module-level functions (not tests or fixtures) and constants that the stripped module no
    longer uses, and did before (so nothing that other modules import is touched)."""
    edits: list[Edit] = []
    while True:
        loaded = _loaded_names(tree)
        unused = [
            node
            for node in tree.body
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not node.decorator_list
                and not node.name.startswith("test_")
                and node.name in read_before - loaded
            )
            or ((names := _stored_names(node)) and not set(names) & loaded and set(names) & read_before)
        ]
        if not unused:
            return edits
        edits += [(node, "pass") for node in unused]
        tree.body = [node for node in tree.body if node not in unused] or [ast.Pass()]


def _apply(source: str, edits: list[Edit]) -> str:
    """``source`` with each edited node's text replaced, keeping its newlines (line numbers stay)."""
    data = source.encode("utf-8")  # ast offsets count UTF-8 bytes
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for node, text in edits:
        assert node.end_lineno is not None and node.end_col_offset is not None  # set on every parsed node
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
        result.append(data[end:last])
        result.append(text.encode() + b"\n" * data[start:end].count(b"\n"))
        last = start
    result.append(data[:last])
    return b"".join(reversed(result)).decode("utf-8")


def strip_expected(source: str, filename: str = "<test>") -> str:
    """The test module ``source`` without its expected values (see the module docstring)."""
    tree = ast.parse(source, filename=filename)
    constants = _module_constants(tree)
    checks = _wrappers(tree)
    edits: list[Edit] = []
    for function in _outer_functions(tree):
        unread = _strip_function(function, checks, edits)
        if function.name.startswith("test_") and not function.args.defaults:
            unused = unread - _parametrized_names(function)  # fixtures that only fed expected values
            edits += [(argument, "") for argument in function.args.args if argument.arg in unused]
            edits += _strip_parametrize(function, unread & _parametrized_names(function), constants)
    edits += _unused_module_definitions(tree, _loaded_names(ast.parse(source, filename=filename)))
    stripped = _apply(source, edits)
    ast.parse(stripped, filename=filename)  # a broken edit must fail here, not in a sandbox
    return stripped


def is_test_module(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") and name.endswith(".py")


# CPython 3.11 builds ASTs with per-interpreter state: two threads parsing at once can fail with
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). The grader and
# the bundle build work in threads, so every parse of theirs holds this lock.
PARSING = threading.RLock()


def parse_source(source: str, filename: str) -> ast.Module:
    """``ast.parse`` under :data:`PARSING` (safe to call from several threads)."""
    with PARSING:
        return ast.parse(source, filename=filename)


def sandbox_tree(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with every test module stripped of its expected values (thread-safe)."""
    with PARSING:
        return {
            path: strip_expected(data.decode("utf-8"), path).encode("utf-8") if is_test_module(path) else data
            for path, data in files.items()
        }
