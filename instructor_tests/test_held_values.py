"""The proof that every graded test needs the work (``autograder/held_values.py``), and the
stripping of parametrize cases that only feed expected values (``autograder/strip_expected.py``).

A submission can read whatever the test process holds (``sys._getframe().f_back.f_locals``). The
reference run flags each value check whose value the test process already held, and the bundle
refuses a graded test without a value that only the work gives. Here: the flags on a small package
whose tests hold their answers in each way a real test module once did, and the stripped modules
keeping the ids students see.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from autograder import held_values
from autograder.bundle import PROBE_FILE, needs_work, record_modules, scored_tests
from autograder.make_handout import REPO_ROOT
from autograder.strip_expected import strip_expected

PACKAGE = """
def encode(text):
    return [ord(c) + 1000 for c in text]


def decode(ids):
    return "".join(chr(i - 1000) for i in ids)


def zeros(n):
    return [0] * n


def echo(values):
    return list(values)


def check_range(n):
    if n < 0:
        raise ValueError("negative")
    return n * 7 + 3
"""

TESTS = """
import pytest

from cs288_lm.toy import check_range, decode, echo, encode, zeros
from tests.graded import check_equal

HELLO_IDS = [1104, 1101, 1108, 1108, 1111]


def test_round_trip_only():
    text = "round " + "trip"
    check_equal(decode(encode(text)), text)


@pytest.mark.parametrize(("text", "expected"), [("ab", [1097, 1098]), ("hello", HELLO_IDS)])
def test_expected_also_an_input(text, expected):
    check_equal(encode(text), expected)
    check_equal(decode(expected), text)


@pytest.mark.parametrize(("text", "expected"), [("ab", [1097, 1098]), ("hello", HELLO_IDS)])
def test_ids_recorded(text, expected):
    ids = encode(text)
    check_equal(ids, expected)
    check_equal(decode(ids), text)


def test_module_constant_decoded():
    check_equal(decode(HELLO_IDS), "hello")
    check_equal(encode("hello"), HELLO_IDS)


def test_raises_only():
    with pytest.raises(ValueError, match="negative"):
        check_range(-1)


def test_raises_and_a_value():
    with pytest.raises(ValueError, match="negative"):
        check_range(-1)
    check_equal(check_range(5), 38)


def test_trivial_values_only():
    check_equal(zeros(4), [0, 0, 0, 0])


def test_an_input_given_back():
    values = [3.5, 2.25]
    check_equal(echo(values), [3.5, 2.25])


def test_own_output_reused():
    first = encode("xyz")
    check_equal(first, [1120, 1121, 1122])
    check_equal(encode("xyz"), first)


def test_float_literal_as_float32_tensor():
    import torch

    check_equal(torch.tensor(echo([0.1, 0.7]), dtype=torch.float32), torch.tensor([0.1, 0.7]))
"""

NEEDS_WORK = {
    "test_round_trip_only": False,  # only the text, which the test holds
    "test_expected_also_an_input[ab-expected0]": False,  # the expected ids stay: decode reads them
    "test_expected_also_an_input[hello-expected1]": False,
    "test_ids_recorded[ab-expected0]": True,  # the expected ids are stripped
    "test_ids_recorded[hello-expected1]": False,  # ... but a constant another test reads stays
    "test_module_constant_decoded": False,  # a module constant
    "test_raises_only": False,  # an exception is the process's own word
    "test_raises_and_a_value": True,
    "test_trivial_values_only": False,
    "test_an_input_given_back": False,
    "test_own_output_reused": True,  # the first encode is work; the second equals it
    "test_float_literal_as_float32_tensor": False,  # literals rebuilt as float32
}


def toy_tree() -> dict[str, bytes]:
    files = {path: (REPO_ROOT / path).read_bytes() for path in ("conftest.py", "tests/graded.py")}
    plugins = ("tests/snapshots.py", "tests/torch_threads.py", "tests/problems.py", "tests/stubs.py")
    files.update({path: (REPO_ROOT / path).read_bytes() for path in plugins})
    files["tests/__init__.py"] = b""
    files["cs288_lm/__init__.py"] = b""
    files["cs288_lm/toy.py"] = PACKAGE.encode()
    files["tests/test_toy.py"] = TESTS.encode()
    files[PROBE_FILE] = Path(held_values.__file__).read_bytes()
    return files


def test_the_reference_run_flags_the_values_a_test_holds():
    (streams,) = record_modules([toy_tree()], ["tests/test_toy.py"])
    found = {nodeid.split("::")[-1]: needs_work(test) for nodeid, test in streams["tests/test_toy.py"].tests.items()}
    assert found == NEEDS_WORK
    # every value check carries the probe's flag; exceptions carry none
    checks = [check for test in streams["tests/test_toy.py"].tests.values() for check in test.checks]
    assert all(("held" in check) == (check["kind"] in ("close", "equal")) for check in checks)


def test_keys_rebuild_what_a_stub_could_return():
    import numpy as np
    import torch

    def same(a, b):
        return bool(set(held_values.keys(a)) & set(held_values.keys(b)))

    assert same([1, 2, 3], (1, 2, 3))
    assert same([1, 2, 3], torch.tensor([1.0, 2.0, 3.0]))
    assert same(np.array([[0.25, 0.5]]), torch.tensor([[0.25, 0.5]], dtype=torch.float64))
    assert same([0.1, 0.3], torch.tensor([0.1, 0.3]))  # float32 from float64 literals
    assert same("héllo", "héllo".encode())
    assert same(7, 7.0)
    assert same(["a", "b"], ("a", "b"))
    assert not same([1, 2, 3], [1, 2, 4])
    assert not same("abc", "abd")
    assert held_values.trivial(torch.zeros(3, 4)) and held_values.trivial([0, 0]) and held_values.trivial("")
    assert not held_values.trivial(torch.tensor([0.0, 2.0])) and not held_values.trivial(2)


def test_parametrize_values_that_only_feed_expected_values_are_stripped():
    source = textwrap.dedent(
        """
        import pytest
        from tests.graded import check_equal

        @pytest.mark.parametrize(
            ("text", "expected"),
            [("xabc", [120, 258]), pytest.param("aaa", [260], id="three"), ("q", 7)],
        )
        def test_small(small, text, expected):
            ids = small.encode(text)
            check_equal(ids, expected)
            check_equal(small.decode(ids), text)

        @pytest.mark.parametrize(("text", "expected"), [("ab", [1, 2])])
        def test_both(small, text, expected):
            check_equal(small.encode(text), expected)
            check_equal(small.decode(expected), text)
        """
    )
    stripped = strip_expected(source)
    tree = ast.parse(stripped)
    small, both = (node for node in tree.body if isinstance(node, ast.FunctionDef))
    (decorator,) = small.decorator_list
    cases = decorator.args[1].elts
    assert [ast.unparse(case) for case in cases] == [
        "('xabc', None)",
        "pytest.param('aaa', None, id='three')",
        "('q', None)",
    ]
    ids = next(k.value for k in decorator.keywords if k.arg == "ids")
    assert ast.literal_eval(ids) == ["xabc-expected0", "three", "q-7"]  # the ids pytest gave them
    # ``expected`` is also an input of test_both: its values stay
    assert "[1, 2]" in ast.unparse(both.decorator_list[0])
    assert len(stripped.splitlines()) == len(source.splitlines())  # line numbers stay


def test_stripped_modules_keep_their_test_ids(grading_bundle):
    """The stripped modules the grader runs give every test the id students see with pytest."""
    manifest = json.loads((grading_bundle.path / "manifest.json").read_text(encoding="utf-8"))
    stripped_ids = {nodeid for entry in manifest["modules"].values() for nodeid in entry["tests"]}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *manifest["modules"]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    original_ids = {line for line in collected.splitlines() if "::" in line}
    assert stripped_ids == original_ids


def test_every_scored_test_records_a_value_that_needs_the_work(grading_bundle):
    """The bundle's own refusal, read back: every graded test of the oracle has a work value."""
    manifest = json.loads((grading_bundle.path / "manifest.json").read_text(encoding="utf-8"))
    from autograder.bundle import load_reference

    lacking = []
    for module, entry in manifest["modules"].items():
        reference = load_reference((grading_bundle.path / "secret" / "reference" / f"{module}.jsonl").read_bytes())
        lacking += [
            nodeid
            for nodeid in scored_tests(entry)
            if entry["problems"].get(nodeid) and not needs_work(reference.tests[nodeid])
        ]
    assert lacking == []
