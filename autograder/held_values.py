"""A pytest plugin for the reference run only: which recorded values the test process already held.

A test process holds more than its test's inputs: the literals of its code, its parametrize
cases, its fixtures, its module's constants, and every local variable of the test frames that
call into submitted code. Submitted code can read all of them (``sys._getframe().f_back``), so a
check whose value is among them proves nothing: a bare stub could return it. This plugin runs
in the bundle's reference run (never with a submission) and marks every value check of the stream
with ``held``: whether the value the reference solution recorded was already held by the test
process, as one of

* the locals of a test frame at the moment it called into the package (``cs288_lm/``,
  ``adapters.py``), and the arguments it passed, items of containers among them included;
* the constants of a test frame's code and the module-level values of the test modules;

each also as the values it is trivially rebuilt from: a tuple and a list with the same items, a
tensor and the nested list of its numbers, an int and the float of the same value, a string and
its UTF-8 bytes. Trivial values (None, booleans, 0, 1, -1, empty strings and containers, arrays of
all zeros or all ones) always count as held. The bundle refuses a graded test none of whose checks
needs the work (``autograder/bundle.py``), so that every graded test records at least one value
that the test process could only get from the submission doing the work.

It is the instructors' proof, not a defence: it changes no check and no value, only adds the flag.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

MODULE_NAME = "held_values_probe"  # its name in the reference run's tree
PACKAGE_PARTS = ("cs288_lm" + os.sep, "adapters.py")
TEST_DIRECTORIES = ("tests" + os.sep, os.path.join("autograder", "hidden_tests") + os.sep)
MAX_ITEMS = 4096  # items looked into per container
MAX_DEPTH = 3  # containers inside containers looked into


def _rooted(root: str, parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.join(root, part) for part in parts)


class _Probe:
    def __init__(self, root: str) -> None:
        self.package = _rooted(root, PACKAGE_PARTS)
        self.tests = _rooted(root, TEST_DIRECTORIES)
        self.held: set[Any] = set()
        self.produced: set[Any] = set()  # keys of what the package returned or yielded first
        self.seen: dict[int, Any] = {}  # id -> object looked at during this test (kept alive)

    def is_package(self, filename: str) -> bool:
        return filename.startswith(self.package)

    def is_test(self, filename: str) -> bool:
        return filename.startswith(self.tests)

    # -- collecting -------------------------------------------------------------------------

    def reset(self) -> None:
        self.held.clear()
        self.produced.clear()
        self.seen.clear()

    def trace(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        """The global trace function: on each call into the package from outside it, collect what
        the callers hold, and watch what the call gives back."""
        caller = frame.f_back
        entering = caller is not None and self.is_package(frame.f_code.co_filename)
        if not entering or caller is None or self.is_package(caller.f_code.co_filename):
            return None
        self.collect(caller, with_locals=True)
        for value in _arguments(frame):  # what the test passes in
            self.add(value)
        frame.f_trace_lines = False  # only its return matters
        return self.leave

    def leave(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        """The local trace function of a call into the package: what it returns (or yields) is the
        work's, not a value the test held (unless the test held it before)."""
        if event == "return":
            self.produce(arg)
        return self.leave

    def collect(self, frame: types.FrameType | None, *, with_locals: bool) -> None:
        while frame is not None:
            if self.is_test(frame.f_code.co_filename):
                if with_locals:
                    for value in list(frame.f_locals.values()):
                        self.add(value)
                self.add_code(frame.f_code)
                self.add_module(frame.f_globals)
            frame = frame.f_back

    def add_code(self, code: types.CodeType) -> None:
        if id(code) in self.seen:
            return
        self.seen[id(code)] = code
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                self.add_code(constant)
            else:
                self.add(constant)

    def add_module(self, namespace: Mapping[str, Any]) -> None:
        key = id(namespace)
        if key in self.seen:
            return
        self.seen[key] = namespace
        for value in list(namespace.values()):
            if not isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
                self.add(value)

    def add(self, value: Any, depth: int = 0) -> None:
        if id(value) in self.seen and not isinstance(value, (int, float, str, bytes)):
            return
        self.seen.setdefault(id(value), value)
        self.held.update(key for key in keys(value) if key not in self.produced)
        if depth < MAX_DEPTH:
            for item in _items(value):
                self.add(item, depth + 1)

    def produce(self, value: Any, depth: int = 0) -> None:
        self.produced.update(key for key in keys(value) if key not in self.held)
        if depth < MAX_DEPTH:
            for item in _items(value):
                self.produce(item, depth + 1)


def _arguments(frame: types.FrameType) -> list[Any]:
    """The values of a call's parameters (not its other locals: a resumed generator has its own)."""
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    local_values = frame.f_locals
    return [local_values[name] for name in code.co_varnames[:count] if name in local_values]


def _made_by_package(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module == "adapters" or module.split(".", 1)[0] == "cs288_lm"


def _items(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            if index >= MAX_ITEMS:
                return
            yield item
    elif isinstance(value, Mapping):
        for index, (key, item) in enumerate(list(value.items())):
            if index >= MAX_ITEMS:
                return
            yield key
            yield item
    elif hasattr(value, "__dict__") and not isinstance(value, (types.ModuleType, type)) and not _made_by_package(value):
        # Attributes of objects the test holds (a dataclass case, a fixture's namespace); not of
        # the package's own objects, whose attributes (a tokenizer's cache) are the work's.
        try:
            attributes = vars(value)
        except TypeError:
            return
        if isinstance(attributes, dict) and len(attributes) <= MAX_ITEMS:
            yield from list(attributes.values())


# ---------------------------------------------------------------------------------------------
# Values as keys
# ---------------------------------------------------------------------------------------------


def _array(value: Any) -> Any:
    """``value`` as a float64 numpy array when it is a tensor, an array or a rectangular list of
    numbers; else None."""
    import numpy as np

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            return None
        return value.detach().cpu().to(torch.float64).numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float64) if value.dtype.kind in "biuf" else None
    if isinstance(value, (list, tuple)) and value:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError, RuntimeError):  # not numbers (e.g. tensors needing grad)
            return None
        return array if array.dtype == np.float64 and array.size else None
    return None


def _item_key(item: Any) -> Any:
    if item is None or isinstance(item, bool):
        return ("scalar", item)
    found = keys(item)
    return found[0] if found else None


def keys(value: Any) -> list[Any]:
    """The keys under which ``value`` is held (empty when it cannot be a value of a check)."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [("number", float(value))]
    if isinstance(value, str):
        return [("str", value), ("bytes", value.encode("utf-8", "surrogatepass"))]
    if isinstance(value, (bytes, bytearray)):
        found: list[tuple[str, str | bytes]] = [("bytes", bytes(value))]
        try:
            found.append(("str", bytes(value).decode("utf-8")))
        except UnicodeDecodeError:
            pass
        return found
    array = _array(value)
    if array is not None:
        # Also as float32: a test's float literals may come back as a float32 tensor.
        narrow = array.astype("float32")
        return [
            ("array", array.shape, hashlib.sha1(array.tobytes()).hexdigest()),
            ("array32", array.shape, hashlib.sha1(narrow.tobytes()).hexdigest()),
        ]
    if isinstance(value, (list, tuple)) and len(value) <= MAX_ITEMS:
        item_keys = [_item_key(item) for item in value]
        return [] if None in item_keys else [("sequence", tuple(item_keys))]
    return []


def trivial(value: Any) -> bool:
    """None, a boolean, 0, 1, -1, an empty string or container, an array of all zeros or all ones."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return value in (0, 1, -1)
    if isinstance(value, (str, bytes, bytearray, list, tuple, set, frozenset, dict)) and not value:
        return True
    array = _array(value)
    if array is not None:
        return array.size == 0 or bool((array == 0).all() or (array == 1).all())
    if isinstance(value, (list, tuple)):
        return all(trivial(item) for item in value)
    return False


# ---------------------------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------------------------

_probe: _Probe | None = None


def _is_held(actual: Any) -> bool:
    assert _probe is not None
    # Literals and module constants count even when no call into the package came first.
    _probe.collect(sys._getframe(2), with_locals=False)
    found = keys(actual)
    return trivial(actual) or bool(found) and any(key in _probe.held for key in found)


def pytest_configure(config: pytest.Config) -> None:
    global _probe
    from tests import graded

    _probe = _Probe(str(Path.cwd()))
    record_check = graded.record_check
    pending: list[bool] = []

    def flagged_record_check(kind: str, **fields: Any) -> None:
        if kind in ("close", "equal") and pending:
            fields["held"] = pending.pop()
        record_check(kind, **fields)

    def wrap(check):
        def checked(actual, expected=None, **keywords):
            pending[:] = [_is_held(actual)]
            try:
                return check(actual, expected, **keywords)
            finally:
                pending.clear()

        checked.__wrapped__ = check
        return checked

    graded.record_check = flagged_record_check
    graded.check_close = wrap(graded.check_close)
    graded.check_equal = wrap(graded.check_equal)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    assert _probe is not None
    _probe.reset()
    sys.settrace(_probe.trace)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    sys.settrace(None)
