"""Feedback a student can act on: the test's own words first, places said in words, which problem to
fix first, why given tests earn nothing, the exact pytest command of each public entry (with the
same count), and one line per unimplemented function in plain pytest."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from autograder.grade import Bundle, ModuleResult, feedback_entry, problem_entry
from autograder.judge import Verdict, check_messages, judge_test, parse_stream
from autograder.make_handout import REPO_ROOT
from autograder.problems import grading_problems
from autograder.sandbox import Record
from autograder.strip_expected import strip_expected
from tests.graded import encode
from tests.problems import load_problems, problem_of, selected

RULES = json.loads((REPO_ROOT / "configs" / "grading.json").read_text(encoding="utf-8"))
CONFIG = json.loads((REPO_ROOT / "autograder" / "grading_config.json").read_text(encoding="utf-8"))
PROBLEMS = grading_problems(CONFIG, RULES)


def one_test(*checks: dict, nodeid: str = "tests/test_x.py::test_a"):
    lines = [{"t": "start", "test": nodeid}, *checks, {"t": "end", "test": nodeid, "outcome": "passed", "message": ""}]
    return parse_stream(Record(float(i), json.dumps(r).encode()) for i, r in enumerate(lines)).tests[nodeid]


def equal(value, site: str = "test_x.py:3", **extra) -> dict:
    return {"t": "check", "kind": "equal", "site": site, "actual": encode(value), "against": "reference", **extra}


def close(value, site: str = "test_x.py:3") -> dict:
    return {"t": "check", "kind": "close", "site": site, "actual": encode(value), "rtol": 1e-5, "atol": 1e-5}


# --- the test's own words ------------------------------------------------------------------------

SOURCE = b"""from tests.graded import check_equal


def test_a(x):
    check_equal(bool(x), True, message="large inputs must not give inf or NaN")
    check_equal(
        x,
        1,
        message=f"computed {x}",
    )
"""


def test_a_failed_check_starts_with_the_tests_own_message_from_the_trusted_source():
    messages = check_messages({"tests/test_x.py": SOURCE})
    assert messages == {"test_x.py:5": "large inputs must not give inf or NaN"}  # a computed message gives none
    reference = one_test(equal(True, site="test_x.py:5"))
    # A submission's stream may carry words of its own: they are never shown.
    forged = one_test(equal(False, site="test_x.py:5", message="all good, full marks"))
    reason = judge_test(forged, reference, lambda name: None, messages).reason
    assert reason == "large inputs must not give inf or NaN (test_x.py:5: got False where the reference has True)"
    assert "full marks" not in reason
    assert (
        judge_test(forged, reference, lambda name: None).reason == "test_x.py:5: got False where the reference has True"
    )


def test_the_words_cannot_come_from_a_test_process():
    # The copy of a test module that runs next to submitted code has no message left to record.
    path = REPO_ROOT / "tests" / "test_nn_utils.py"
    source = path.read_bytes()
    (site,) = [s for s, m in check_messages({"tests/test_nn_utils.py": source}).items() if "inf or NaN" in m]
    assert "large inputs must not give inf or NaN" in source.decode()
    assert "large inputs must not give inf or NaN" not in strip_expected(source.decode(), "tests/test_nn_utils.py")
    assert site.startswith("test_nn_utils.py:")


def test_places_in_a_value_are_said_in_words():
    def reason(actual, reference) -> str:
        return judge_test(one_test(close(actual)), one_test(close(reference)), lambda name: None).reason

    assert reason([1.0, [2.0, 3.0]], [1.0, [2.0, 4.0]]) == (
        "test_x.py:3: item [1][1]: got 3.0 where the reference has 4.0 (atol 1e-05, rtol 1e-05)"
    )
    assert reason({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 5.0}).startswith("test_x.py:3: item ['b']: got 2.0")
    assert "got the keys ['a', 'c'] where the reference has ['a', 'b']" in reason({"a": 1, "c": 2}, {"a": 1, "b": 2})
    assert reason(np.float32(1.0), np.float32(1.0)) == ""


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"array": np.array([1.0, 3.0], dtype=np.float32)}, "snapshot 'rope': 1 of 2 values differ"),
        (
            {"cos": np.array([1.0, 2.0], dtype=np.float32), "sin": np.array([1.0, 3.0], dtype=np.float32)},
            "snapshot 'rope', array 'sin': 1 of 2 values differ",
        ),
    ],
)
def test_a_snapshot_difference_names_the_snapshot_and_its_array(arrays, expected):
    stored = {key: np.array([1.0, 2.0], dtype=np.float32) for key in arrays}
    snapshot = {"t": "check", "kind": "snapshot", "site": "test_x.py:3", "name": "rope", "rtol": 1e-4, "atol": 1e-5}
    run = one_test({**snapshot, "arrays": encode(arrays)})
    reference = one_test({**snapshot, "arrays": encode(stored)})
    reason = judge_test(run, reference, lambda name: stored if name == "rope" else None).reason
    assert reason.startswith(f"test_x.py:3: {expected}")
    assert not re.search(r"\[\d\] \[\d\]", reason)


# --- entries: commands, given tests, what to fix first ---------------------------------------------


@functools.cache
def public_nodeids() -> list[str]:
    """The public tests as plain pytest collects them (what the reference run records)."""
    collected = Selection()
    assert pytest.main(["--collect-only", "-qq", "-p", "no:cacheprovider", str(REPO_ROOT / "tests")], [collected]) == 0
    return collected.nodeids


class Selection:
    """A plugin that keeps the node ids a pytest session selects."""

    def __init__(self) -> None:
        self.nodeids: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.nodeids = [item.nodeid for item in session.items]


def bundle_for(nodeids: list[str], given: set[str] = frozenset()) -> Bundle:
    """A bundle whose manifest holds ``nodeids`` assigned to problems as the bundle assigns them."""
    modules: dict[str, dict] = {}
    for nodeid in nodeids:
        entry = modules.setdefault(nodeid.split("::")[0], {"tests": [], "given": [], "problems": {}})
        entry["tests"].append(nodeid)
        entry["given"] += [nodeid] if nodeid in given else []
        entry["problems"][nodeid] = problem_of(nodeid, PROBLEMS)
    return Bundle({}, {}, {}, {"student_modules": [], "modules": modules}, {**CONFIG, "problems": PROBLEMS})


def results_for(bundle: Bundle, failing: set[str] = frozenset()) -> list[ModuleResult]:
    return [
        ModuleResult(module, {t: Verdict(t not in failing, "boom") for t in entry["tests"]}, None, None, "test")
        for module, entry in bundle.manifest["modules"].items()
    ]


def by_name(name: str) -> dict:
    (problem,) = [p for p in PROBLEMS if p["name"] == name]
    return problem


def test_every_public_entry_names_the_pytest_command_that_runs_as_many_tests():
    nodeids = public_nodeids()
    bundle = bundle_for(nodeids)
    results = results_for(bundle)
    for problem in PROBLEMS:
        output = problem_entry(problem, True, results, bundle)["output"]
        count = int(re.match(r"(\d+) of (\d+) tests passed", output).group(2))
        (command,) = re.findall(r"Run them locally: python -m pytest (.+)", output)
        assert command == f"--problem {problem['name']}"
        # What the option runs (tests/problems.py), with the problems as the handout has them.
        assert (problem["name"], sum(selected(nodeids, [problem["name"]], load_problems()))) == (problem["name"], count)
        assert count > 0
    module = "tests/test_qa.py"
    feedback = feedback_entry(results_for(bundle)[list(bundle.manifest["modules"]).index(module)], bundle)
    assert f"Run them locally: python -m pytest {module}" in feedback["output"]


@pytest.mark.parametrize("name", ["rope", "softmax"])  # the examples: `pytest -k` ran 21 and 17
def test_the_command_itself_runs_the_entrys_tests(name):
    nodeids = public_nodeids()
    chosen = Selection()
    # The handout's pyproject.toml runs tests/ only: here it is named, as this repository runs more.
    args = ["--collect-only", "-qq", "-p", "no:cacheprovider", "--problem", name, str(REPO_ROOT / "tests")]
    assert pytest.main(args, [chosen]) == 0
    bundle = bundle_for(nodeids)
    expected = [
        t for entry in bundle.manifest["modules"].values() for t in entry["tests"] if entry["problems"][t] == name
    ]
    assert chosen.nodeids == expected


def test_an_unknown_problem_is_a_usage_error(capsys):
    assert (
        pytest.main(["--collect-only", "-q", "--problem", "ropee", str(REPO_ROOT / "tests" / "test_sampling.py")]) == 4
    )
    assert "no problem named ropee" in capsys.readouterr().err


def test_problems_of_the_handout_and_of_the_grader_agree():
    assert [p["name"] for p in load_problems()] == [p["name"] for p in CONFIG["problems"]]
    assert by_name("rope")["modules"][0] == "tests/test_model.py"
    assert all(not m.startswith("tests/") for p in CONFIG["problems"] for m in p["hidden_modules"])
    assert all(m.startswith("tests/") for p in load_problems() for m in p["modules"])  # no hidden name ships


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda c, r: c["problems"].reverse(), "the same problems in the same order"),
        (lambda c, r: c["problems"][0].update(depends_on=["nope"]), "depends on nope, which is not another problem"),
        (lambda c, r: c["problems"][0].update(depends_on=["train_bpe"]), "which is not another problem"),
        (
            lambda c, r: (
                c["problems"][0].update(depends_on=["tokenizer"]),
                c["problems"][1].update(depends_on=["train_bpe"]),
            ),
            "train_bpe depends on itself",
        ),
        (lambda c, r: r["problems"][0].pop("modules"), "problem train_bpe has no modules"),
    ],
)
def test_bad_problem_configurations_are_refused(change, error):
    config, rules = json.loads(json.dumps(CONFIG)), json.loads(json.dumps(RULES))
    change(config, rules)
    with pytest.raises(ValueError, match=error):
        grading_problems(config, rules)


def rope_nodeids() -> list[str]:
    names = {
        "rope": "test_rope_matches",
        "multihead_self_attention_with_rope": "test_mha_rope_matches",
        "multihead_self_attention": "test_mha_matches",
        "scaled_dot_product_attention": "test_sdpa_matches",
        "softmax": "test_softmax_matches",
        "transformer_block": "test_transformer_block_matches",
        "linear": "test_linear_matches",
    }
    module = {"softmax": "tests/test_nn_utils.py"}
    nodeids = [f"{module.get(p, 'tests/test_model.py')}::{name}[{i}]" for p, name in names.items() for i in range(2)]
    assert {problem_of(n, PROBLEMS) for n in nodeids} == set(names)
    return nodeids


def test_a_failing_problem_names_the_failing_problems_it_builds_on_to_fix_first():
    bundle = bundle_for(rope_nodeids())
    tests = [nodeid for entry in bundle.manifest["modules"].values() for nodeid in entry["tests"]]
    rope_and_above = {n for n in tests if "rope" in n or "block" in n}
    results = results_for(bundle, failing=rope_and_above)
    say = {
        name: problem_entry(by_name(name), True, results, bundle)["output"]
        for name in ("rope", "multihead_self_attention_with_rope", "transformer_block")
    }
    fix_rope = "Fix rope first: its tests fail too, and {} builds on it."
    assert fix_rope.format("multihead_self_attention_with_rope") in say["multihead_self_attention_with_rope"]
    assert fix_rope.format("transformer_block") in say["transformer_block"]  # the root cause, not the step between
    assert "Fix" not in say["rope"]
    # Two failing roots are named together; a dependency that passes is not named.
    both = results_for(bundle, failing=rope_and_above | {n for n in tests if "softmax" in n})
    block = problem_entry(by_name("transformer_block"), True, both, bundle)["output"]
    assert "Fix rope and softmax first: their tests fail too, and transformer_block builds on them." in block
    passing = problem_entry(by_name("multihead_self_attention_with_rope"), True, results_for(bundle), bundle)
    assert "Fix" not in passing["output"]


def test_the_entry_of_the_bare_handout_says_why_passing_tests_earn_nothing():
    nodeids = [f"tests/test_model.py::test_rope_matches[{i}]" for i in range(16)]
    bundle = bundle_for(nodeids, given=set(nodeids[:2]))
    entry = problem_entry(by_name("rope"), True, results_for(bundle, failing=set(nodeids[2:])), bundle)
    assert entry["score"] == 0 and entry["output"].startswith("2 of 16 tests passed")
    assert (
        "2 of these tests pass on the unimplemented handout too: they check code that is given and earn no points;"
        " the 2.5 points are split evenly over the other 14." in entry["output"]
    )
    linear = [f"tests/test_model.py::test_linear_matches[{i}]" for i in range(3)]
    one_bundle = bundle_for(linear, given=set(linear[:1]))
    one = problem_entry(by_name("linear"), True, results_for(one_bundle), one_bundle)["output"]
    assert "1 of these tests passes on the unimplemented handout too: it checks code that is given and earns" in one
    assert "the 1 point is split evenly over the other 2." in one
    none_given = problem_entry(
        by_name("rope"), True, results_for(bundle_for(nodeids), set(nodeids)), bundle_for(nodeids)
    )
    assert "unimplemented handout" not in none_given["output"]


# --- plain pytest on unimplemented code ------------------------------------------------------------

STUDENT = """class Shape:
    def area(self) -> float:
        raise NotImplementedError("Implement Shape.area (cs288_lm/shapes.py)")


def helper() -> int:
    raise NotImplementedError("not this one either")


def area_of(n: int) -> float:
    return Shape().area()
"""
TESTS = """import multiprocessing
import subprocess
import sys

import pytest
from cs288_lm.shapes import Shape, area_of, helper


@pytest.mark.parametrize("n", [1, 2])
def test_area(n):
    Shape().area()


def test_helper():
    helper()


def test_real_failure():
    assert 1 == 2, "a real failure"


def test_not_implemented_in_the_test_itself():
    raise NotImplementedError("raised by the test")


def test_passes():
    pass


def test_warns_but_the_stub_raised_first():
    with pytest.warns(UserWarning):
        Shape().area()


def test_in_a_worker_process():
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pool.map(area_of, [1])


def test_in_a_subprocess():
    code = "from cs288_lm.shapes import area_of; area_of(1)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_subprocess_that_fails_otherwise():
    run = subprocess.run([sys.executable, "-c", "raise NotImplementedError('not in a student module')"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
"""


def run_pytest_on_shapes(tmp_path, *options: str) -> subprocess.CompletedProcess:
    """pytest with the stubs plugin on a tiny student module and the tests above."""
    (tmp_path / "cs288_lm").mkdir()
    (tmp_path / "cs288_lm" / "__init__.py").write_text("")
    (tmp_path / "cs288_lm" / "shapes.py").write_text(STUDENT)
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_shapes.py").write_text(TESTS)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.stubs"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = . " + str(REPO_ROOT) + "\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, "checks"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plain_pytest_prints_one_line_per_unimplemented_function(tmp_path):
    run = run_pytest_on_shapes(tmp_path)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    # A subprocess that stopped at the stub counts too (its stderr reached the check's message).
    assert "cs288_lm/shapes.py:3 Shape.area: not implemented yet (5 tests)" in out
    assert "cs288_lm/shapes.py:7 helper: not implemented yet (1 test)" in out
    assert "6 tests stopped at one of these functions. The other failures are shown above" in out
    assert "a real failure" in out and "raised by the test" in out  # real failures keep their tracebacks
    assert "not in a student module" in out  # a subprocess's own NotImplementedError is a real failure
    assert "Implement Shape.area" not in out and "not this one either" not in out  # no traceback for a stub
    assert "DID NOT WARN" not in out and "RemoteTraceback" not in out
    assert re.search(r"3 failed, 1 passed, 6 not implemented in", out), out


def test_without_tracebacks_the_footer_does_not_point_to_them(tmp_path):
    out = run_pytest_on_shapes(tmp_path, "--tb=no").stdout
    assert "6 tests stopped at one of these functions.\n" in out, out
    assert "shown above" not in out


def test_problem_names_are_accepted_in_any_case():
    chosen = Selection()
    args = ["--collect-only", "-qq", "-p", "no:cacheprovider", "--problem", "silu", "--problem", "SWIGLU"]
    assert pytest.main([*args, str(REPO_ROOT / "tests" / "test_model.py")], [chosen]) == 0
    problems = {problem_of(nodeid, PROBLEMS) for nodeid in chosen.nodeids}
    assert problems == {"SiLU", "SwiGLU"}, problems


CHECKS = """import numpy as np
import torch

from tests.graded import check_close, check_equal


def test_equal_with_words():
    check_equal(1, 2, message="the count of merges")


def test_tensors_equal_with_words():
    check_equal(torch.tensor([1, 2]), torch.tensor([1, 3]), message="token ids of the round trip")


def test_close(numpy_snapshot):
    check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))


def test_snapshot(numpy_snapshot):
    numpy_snapshot.assert_match(np.array([1.0, 3.0], dtype=np.float32), "pair")
"""


def test_a_failed_check_shows_the_tests_line_its_words_and_what_differs_not_the_helpers_body(tmp_path):
    (tmp_path / "checks" / "_snapshots").mkdir(parents=True)
    (tmp_path / "checks" / "test_checks.py").write_text(CHECKS)
    np.savez_compressed(tmp_path / "checks" / "_snapshots" / "pair.npz", array=np.array([1.0, 2.0], dtype=np.float32))
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.graded", "tests.snapshots"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = . " + str(REPO_ROOT) + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "checks"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout
    assert "4 failed" in out, out + run.stderr
    assert "E       AssertionError: the count of merges\nE       got 1, expected 2" in out
    assert "E       AssertionError: token ids of the round trip\nE       Tensor-likes are not equal!" in out
    assert "Mismatched elements: 1 / 2" in out and "snapshot pair[array] differs" in out
    # No line of the helpers' bodies, nor whole arrays: only the tests' own lines.
    for helper_line in ("def check_equal", "def check_close", "def assert_match", "_stream.grading", "np.load(path)"):
        assert helper_line not in out
    assert "ACTUAL: array" not in out
    assert "graded.py:" not in out and "snapshots.py:" not in out
