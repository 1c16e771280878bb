"""Review flags (autograder/imports_check.py): each way around the import check or into the grader's
process is flagged with its kind and line, ordinary student code (and the reference solution) is not,
and no input makes the review raise.
"""

from __future__ import annotations

import textwrap

import pytest

from autograder.imports_check import DeclaredEncoding, ReviewFlag, python_source, review_flags
from autograder.make_handout import REPO_ROOT

ATTACKS = {
    # found by a second fresh attack: sys through another module, attribute names as strings,
    # imports through pydoc and logging.config, TorchScript (compiled code runs below the torch
    # function mode of the no-functional tests)
    "sys through os": (
        "import os\ngraded = os.sys.modules.get('tests.graded')",
        ["2: tampering: os.sys.modules.get('tests.graded')"],
    ),
    "attrgetter": (
        "import operator\nback = operator.attrgetter('f_back')",
        ["2: tampering: operator.attrgetter('f_back')"],
    ),
    "pydoc locate": (
        "import pydoc\nx = pydoc.locate('networkx')",
        ["1: dynamic import: imports pydoc", "2: dynamic import: pydoc.locate('networkx')"],
    ),
    "torchscript": ("import torch\nf = torch.jit.script(g)", ["2: tampering: torch.jit.script(...)"]),
    # pickle's GLOBAL opcode: an import (and sys._getframe) that no statement names
    "pickle global": (
        'import pickle\n_Symbol = pickle.loads(b"csympy\\nSymbol\\n.")',
        ["1: dynamic import: imports pickle", "2: dynamic import: pickle.loads(...)"],
    ),
    "pickle loads alias": (
        "from pickle import loads as _l\n_frame = _l(data)",
        ["1: dynamic import: imports pickle.loads", "2: dynamic import: pickle.loads(...)"],
    ),
    "tiktoken merging": (
        "import tiktoken\n_encoding = tiktoken.Encoding('x', pat_str=p, mergeable_ranks=r, special_tokens={})",
        [
            "1: library that can do the work: imports tiktoken",
            "2: library that can do the work: tiktoken.Encoding('x', ...)",
        ],
    ),
    "__import__": ("mod = __import__('requests')", ["1: dynamic import: __import__('requests')"]),
    "importlib": (
        """
        import importlib

        requests = importlib.import_module("req" + "uests")
        """,
        ["1: dynamic import: imports importlib", "3: dynamic import: importlib.import_module(...)"],
    ),
    "importlib alias": (
        "import importlib as il\nrequests = il.import_module(name)",
        ["1: dynamic import: imports importlib", "2: dynamic import: importlib.import_module(...)"],
    ),
    "import_module alias": (
        "from importlib import import_module as load\nload('requests')",
        [
            "1: dynamic import: imports importlib.import_module",
            "2: dynamic import: importlib.import_module('requests')",
        ],
    ),
    "importlib attribute": (
        "import importlib.util\nspec = importlib.util.spec_from_file_location('m', path)",
        [
            "1: dynamic import: imports importlib.util",
            "2: dynamic import: importlib.util.spec_from_file_location('m', ...)",
        ],
    ),
    "exec of a literal": (
        "exec('import requests')",
        ["1: code execution: exec('import requests') of a string literal"],
    ),
    "eval of a computed string": (
        "f = eval('lamb' + 'da x: x')",
        ["1: code execution: eval(...) of a computed string"],
    ),
    "compile then exec": (
        "code = compile(source, '<x>', 'exec')\nexec(code, {})",
        ["1: code execution: compile(...) of a computed string", "2: code execution: exec(...) of a computed string"],
    ),
    "eval passed around": ("run = eval\nrun(text)", ["1: code execution: uses eval"]),
    "builtins.exec": (
        "import builtins\nbuiltins.exec(code)",
        ["1: introspection: imports builtins", "2: code execution: builtins.exec(...) of a computed string"],
    ),
    "getattr(builtins, computed)": (
        """
        import builtins

        load = getattr(builtins, "__imp" + "ort__")
        """,
        ["1: introspection: imports builtins", "3: dynamic import: getattr(builtins, <computed>)"],
    ),
    "getattr(builtins, literal)": (
        "import builtins\nos = getattr(builtins, '__import__')('os')",
        ["1: introspection: imports builtins", "2: dynamic import: builtins.__import__('os')"],
    ),
    "builtins.__dict__": (
        "import builtins\nload = builtins.__dict__['__import__']",
        ["1: introspection: imports builtins", "2: dynamic import: builtins.__dict__['__import__']"],
    ),
    "__builtins__ subscript": ("load = __builtins__['__import__']", ["1: dynamic import: __builtins__['__import__']"]),
    "vars(builtins)": (
        "import builtins\nload = vars(builtins)[name]",
        ["1: introspection: imports builtins", "2: dynamic import: vars(builtins)[...]"],
    ),
    "builtins replaced": (
        """
        import builtins

        setattr(builtins, "open", fake_open)
        delattr(builtins, "print")
        __builtins__["__import__"] = fake_import
        builtins.exit = None
        """,
        [
            "1: introspection: imports builtins",
            "3: tampering: setattr(builtins, 'open')",
            "4: tampering: delattr(builtins, 'print')",
            "5: tampering: __builtins__['__import__']",
            "6: tampering: assigns builtins.exit",
        ],
    ),
    "getattr(module, computed)": (
        "import os\nrun = getattr(os, 'sys' + 'tem')",
        ["2: dynamic import: getattr(os, <computed>)"],
    ),
    "getattr(module, literal)": ("import os\ngetattr(os, 'system')('id')", ["2: process control: os.system('id')"]),
    "ctypes": (
        "import ctypes\nlibc = ctypes.CDLL(None)",
        ["1: code execution: imports ctypes", "2: code execution: ctypes.CDLL(...)"],
    ),
    "subprocess": (
        "import subprocess\nsubprocess.run(['curl', url])",
        ["1: process control: imports subprocess", "2: process control: subprocess.run(...)"],
    ),
    "os.system alias": (
        "from os import system as s\ns('curl x')",
        ["1: process control: imports os.system", "2: process control: os.system('curl x')"],
    ),
    "os.popen": ("import os\nos.popen('ls').read()", ["2: process control: os.popen('ls')"]),
    "os.execv": ("import os, sys\nos.execv(sys.executable, args)", ["2: process control: os.execv(...)"]),
    "pty": (
        "import pty\npty.spawn('/bin/sh')",
        ["1: process control: imports pty", "2: process control: pty.spawn('/bin/sh')"],
    ),
    "star import": ("from os import *\nsystem('ls')", ["2: process control: os.system('ls')"]),
    "double fork": (
        """
        import os

        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                rewrite_report()
            os._exit(0)
        """,
        [
            "3: process control: os.fork()",
            "4: process control: os.setsid()",
            "5: process control: os.fork()",
            "7: process control: os._exit(...)",
        ],
    ),
    "process groups": (
        """
        import os

        os.setpgrp()
        os.killpg(0, 9)
        pid, fd = os.forkpty()
        os.spawnv(os.P_NOWAIT, "/bin/sh", args)
        """,
        [
            "3: process control: os.setpgrp()",
            "4: process control: os.killpg(...)",
            "5: process control: os.forkpty()",
            "6: process control: os.spawnv(...)",
        ],
    ),
    "kill the parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        [
            "1: process control: imports signal",
            "2: process control: os.kill(...)",
            "2: process control: uses signal.SIGKILL",
        ],
    ),
    "multiprocessing": (
        "from multiprocessing import Process\nProcess(target=rewrite_report, daemon=True).start()",
        ["1: process control: imports multiprocessing.Process", "2: process control: multiprocessing.Process(...)"],
    ),
    "signal handler": (
        "import signal\nsignal.signal(signal.SIGTERM, lambda *args: None)",
        ["1: process control: imports signal", "2: process control: signal.signal(...)"],
    ),
    "atexit rewrites the report": (
        """
        import atexit
        import sys

        def _fake_report():
            path = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--junitxml="))
            with open(path, "w") as f:
                f.write("<testsuite tests='1' failures='0'/>")

        atexit.register(_fake_report)
        """,
        [
            "1: process control: imports atexit",
            "5: tampering: string mentions 'junit'",
            "5: tampering: uses sys.argv",
            "9: process control: atexit.register(...)",
        ],
    ),
    "pytest's Config from the heap": (
        """
        import gc

        config = next(o for o in gc.get_objects() if type(o).__name__ == "Config")
        config.option.xmlpath = "/tmp/fake.xml"
        """,
        ["3: introspection: gc.get_objects()"],
    ),
    "gc alias": (
        "from gc import get_referrers as refs\nrefs(assert_close)",
        ["1: introspection: imports gc.get_referrers", "2: introspection: gc.get_referrers(...)"],
    ),
    "caller's frame": (
        "import sys\ncaller = sys._getframe(1).f_back.f_globals",
        ["2: introspection: sys._getframe(...)", "2: introspection: uses .f_back", "2: introspection: uses .f_globals"],
    ),
    "inspect": (
        "import inspect\nframe = inspect.currentframe().f_back\nframes = inspect.stack()",
        [
            "2: introspection: inspect.currentframe()",
            "2: introspection: uses .f_back",
            "3: introspection: inspect.stack()",
        ],
    ),
    "traceback frame": ("frame = error.__traceback__.tb_frame", ["1: introspection: uses .tb_frame"]),
    "sys.modules": (
        "import sys\nsys.modules['torch'].allclose = lambda *args, **kwargs: True",
        ["2: introspection: uses sys.modules"],
    ),
    "trace and audit hooks": (
        "import sys\nsys.settrace(tracer)\nsys.addaudithook(hook)",
        ["2: tampering: sys.settrace(...)", "3: tampering: sys.addaudithook(...)"],
    ),
    "/proc": ("parent = open('/proc/self/status').read()", ["1: tampering: string mentions '/proc'"]),
    "pytest internals": (
        "import pytest\nfrom _pytest.junitxml import LogXML",
        ["1: tampering: imports pytest", "2: tampering: imports _pytest.junitxml.LogXML"],
    ),
    "grader files": (
        "Path('/autograder/results/results.json').write_text('{}')\nPath('conftest.py').unlink()",
        [
            "1: tampering: string mentions '/autograder'",
            "1: tampering: string mentions 'results.json'",
            "2: tampering: string mentions 'conftest'",
        ],
    ),
    "function internals": (
        "g = f.__code__\nt = f.__globals__['torch']\nclasses = ().__class__.__base__.__subclasses__()",
        [
            "1: introspection: uses .__code__",
            "2: introspection: uses .__globals__",
            "3: introspection: uses .__subclasses__",
        ],
    ),
    "monkeypatching": (
        """
        import torch
        from torch import testing

        testing.assert_close = lambda *args, **kwargs: None
        setattr(torch, "allclose", lambda *args, **kwargs: True)
        del torch.equal
        """,
        [
            "4: tampering: assigns torch.testing.assert_close",
            "5: tampering: setattr(torch, 'allclose')",
            "6: tampering: deletes torch.equal",
        ],
    ),
    # The no-functional tests' torch function mode, dispatch mode and forbidden kernels.
    "torch function mode turned off": (
        "import torch\nwith torch._C.DisableTorchFunction():\n    y = kept(x)",
        ["2: tampering: torch._C.DisableTorchFunction()"],
    ),
    "dispatch mode popped": (
        "from torch.utils._python_dispatch import _pop_mode\n_pop_mode()",
        [
            "1: tampering: imports torch.utils._python_dispatch._pop_mode",
            "2: tampering: torch.utils._python_dispatch._pop_mode()",
        ],
    ),
    "torch private op kept in a default argument": (
        "import torch\ndef linear(x, w, _op=torch._C._nn.linear):\n    return _op(x, w)",
        ["2: tampering: uses torch._C._nn.linear"],
    ),
    "kernel by name": (
        "import torch\ny = torch.ops.aten._softmax.default(x, -1, False)",
        ["2: tampering: torch.ops.aten._softmax.default(...)"],
    ),
    "a mode of one's own": (
        "from torch.overrides import TorchFunctionMode",
        ["1: tampering: imports torch.overrides.TorchFunctionMode"],
    ),
    "thread (the modes are per thread)": (
        "import threading\nthreading.Thread(target=run).start()",
        ["2: process control: threading.Thread(...)"],
    ),
    "thread pool": (
        "from concurrent.futures import ThreadPoolExecutor\npool = ThreadPoolExecutor()",
        [
            "1: process control: imports concurrent.futures.ThreadPoolExecutor",
            "2: process control: concurrent.futures.ThreadPoolExecutor()",
        ],
    ),
}

ORDINARY = """
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import regex as re
import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

PAT = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+")
torch.backends.cuda.matmul.allow_tf32 = True


@dataclass
class Config:
    d_model: int = 64
    num_heads: int = 4


class Attention(nn.Module):
    \"\"\"Multi-head self-attention with an einsum.\"\"\"

    def __init__(self, config: Config):
        super().__init__()
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.num_heads = config.num_heads
        for name in ("d_model", "num_heads"):
            if getattr(config, name) < 1:
                raise ValueError(name)

    def forward(self, x: Float[Tensor, "batch seq d_model"]) -> Float[Tensor, "batch seq d_model"]:
        q, k, v = rearrange(self.qkv(x), "b s (three h d) -> three b h s d", three=3, h=self.num_heads)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
        out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)
        return rearrange(out, "b h s d -> b s (h d)")


def count_chunk(text: str) -> Counter[bytes]:
    return Counter(match.group().encode("utf-8") for match in PAT.finditer(text))


def train_bpe(input_path: str | os.PathLike, vocab_size: int, workers: int = 4) -> list[tuple[bytes, bytes]]:
    text = Path(input_path).read_text(encoding="utf-8")
    chunks = text.split("<|endoftext|>")
    with Pool(workers) as pool:
        counts = sum(pool.map(count_chunk, chunks), Counter())
    print(f"{len(counts)} pre-tokens", file=sys.stderr)
    with open(os.path.join(os.environ.get("OUT", "."), "counts.json"), "w") as f:
        json.dump({k.decode("latin-1"): v for k, v in counts.items()}, f)
    merges = []
    pairs = Counter()
    for word, count in counts.items():
        for a, b in zip(word, word[1:]):
            pairs[bytes([a]), bytes([b])] += count
    while pairs and len(merges) < vocab_size - 256:
        merges.append(max(pairs, key=lambda pair: (pairs[pair], pair)))
        del pairs[merges[-1]]
    return merges


def evaluate(model: nn.Module, batches) -> float:
    model.eval()
    compiled = torch.compile(model)
    losses = [float(compiled(x).mean()) for x in batches]
    return float(np.mean(losses))
"""


def flagged(source: str) -> list[str]:
    flags = review_flags(textwrap.dedent(source).strip(), "m.py")
    return [f"{flag.line}: {flag.kind}: {flag.detail}" for flag in flags]


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_is_flagged_with_its_kind_and_line(name):
    source, expected = ATTACKS[name]
    assert flagged(source) == expected


def test_ordinary_student_code_is_flagged_only_for_multiprocessing():
    lines = textwrap.dedent(ORDINARY).strip().splitlines()
    imported, used = (next(i for i, line in enumerate(lines, 1) if text in line) for text in ("import Pool", "Pool("))
    assert flagged(ORDINARY) == [
        f"{imported}: process control: imports multiprocessing.Pool",
        f"{used}: process control: multiprocessing.Pool(...)",
    ]


def test_the_reference_solution_is_not_flagged():
    modules = [path for path in sorted((REPO_ROOT / "cs288_lm").glob("*.py")) if "# BEGIN SOLUTION" in path.read_text()]
    assert len(modules) >= 10
    found = {path.name: review_flags(path.read_text(encoding="utf-8"), path.name) for path in modules}
    assert {name: flags for name, flags in found.items() if flags} == {}


def test_flag_text_and_one_flag_per_line_and_detail():
    flags = review_flags("import os\nos.fork(); os.fork()\nm = __import__('os')", "cs288_lm/model.py")
    assert flags == [
        ReviewFlag("cs288_lm/model.py", 2, "process control", "os.fork()"),
        ReviewFlag("cs288_lm/model.py", 3, "dynamic import", "__import__('os')"),
    ]
    assert str(flags[1]) == "cs288_lm/model.py:3: dynamic import: __import__('os')"


def test_docstrings_are_not_read_and_long_literals_are_cut():
    source = '"""Reads /proc like conftest does."""\nexec("' + "x = 1; " * 20 + '")'
    shown = "'x = 1; x = 1; x = 1; x = 1; x = 1; x = 1; x = 1; x = 1; x...'"
    assert flagged(source) == [f"2: code execution: exec({shown}) of a string literal"]


@pytest.mark.parametrize(
    "source", ["def f(:\n    pass", "x = '\x00'\x00", "x = '\ud800'", "x = " + "(" * 300 + ")" * 300, "", "   "]
)
def test_never_raises_and_gives_nothing_for_what_does_not_parse(source):
    assert review_flags(source, "m.py") == []


# --- Source as Python reads it (python_source) ---------------------------------------------------

HIDES_IMPORT = b"# -*- coding: utf-7 -*-\n# +AAo-import os+AAo-\n"


def test_a_declared_encoding_other_than_utf8_is_refused_with_its_line_and_flag():
    with pytest.raises(DeclaredEncoding) as refused:
        python_source(HIDES_IMPORT, "cs288_lm/nn_utils.py")
    assert (refused.value.line, refused.value.encoding) == (1, "utf-7")
    assert str(refused.value.flag()) == "cs288_lm/nn_utils.py:1: source encoding: declares utf-7: graded as the stub"
    # What the interpreter reads, and what a UTF-8 reading misses.
    assert HIDES_IMPORT.decode("utf-7").splitlines()[2] == "import os"
    assert review_flags(HIDES_IMPORT.decode("utf-8"), "m.py") == []


def test_a_cookie_on_the_second_line_counts_and_the_third_does_not():
    with pytest.raises(DeclaredEncoding) as refused:
        python_source(b"#!/usr/bin/env python\n# vim: set fileencoding=latin-1 :\nx = 1\n", "m.py")
    assert (refused.value.line, refused.value.encoding) == (2, "iso-8859-1")
    assert python_source(b"x = 1\ny = 2\n# coding: latin-1\n", "m.py") == "x = 1\ny = 2\n# coding: latin-1\n"


@pytest.mark.parametrize(
    "data",
    [
        b"x = 'caf\xc3\xa9'\n",
        b"\xef\xbb\xbfx = 'caf\xc3\xa9'\n",
        b"# coding: utf8\nx = 'caf\xc3\xa9'\n",
        b"# -*- coding: UTF_8 -*-\n",
    ],
    ids=["plain", "BOM", "utf8 cookie", "UTF_8 cookie"],
)
def test_utf8_however_declared_is_read_without_its_bom(data):
    assert python_source(data, "m.py") == data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"# coding: no-such-codec\n", SyntaxError),
        (b"\xef\xbb\xbf# coding: latin-1\n", SyntaxError),
        (b"x = '\xff'\n", UnicodeDecodeError),
    ],
    ids=["unknown codec", "BOM against the cookie", "not UTF-8"],
)
def test_what_python_would_refuse_is_refused(data, error):
    with pytest.raises(error):
        python_source(data, "m.py")
