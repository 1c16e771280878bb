"""Static checks of submitted code: forbidden imports (scored) and review flags (never scored).

``forbidden_imports``: every ``import x`` and ``from x import y`` anywhere in a file (top level,
inside functions, under ``try``) is checked against: the standard library
(``sys.stdlib_module_names``), the packages of ``requirements.txt`` (by their import names), the
package itself (``cs288_lm``), ``adapters`` and relative imports. It sees import statements only:
``__import__("x")``, ``importlib.import_module("x")`` or ``exec("import x")`` escape it.

``review_flags``: an independent pass that points a reader at code that could escape that check or
tamper with the grader from inside the test process: dynamic imports, ``exec``/``eval``/``compile``,
``ctypes``, starting, forking or signalling processes (``multiprocessing`` too, which a BPE trainer
may use fairly), exit handlers, stack, frame and heap introspection (``sys._getframe``,
``gc.get_objects``, ``sys.modules``), pytest's arguments, hooks and report files, and monkeypatching
of imported modules, torch's private parts (``torch._C``: where the torch function and dispatch modes
of the no-functional tests are turned off), ``torch.overrides``, ``torch.ops`` and threads (those modes
are per thread). The grader shows these to instructors only (Gradescope "hidden" visibility) and
they never change a score: they are leads for reading the code, not verdicts. It sees names, not
values (``getattr(os, "sys" + "tem")`` is flagged as a computed lookup, what it returns is not
known), ignores scopes (a student's own function named ``compile`` is flagged like the builtin), and
gives up on files that do not parse (reported elsewhere).
"""

from __future__ import annotations

import ast
import codecs
import io
import re
import sys
import tokenize
import warnings
from dataclasses import dataclass

from autograder.strip_expected import parse_source

# pip names whose import name differs (everything else: lower case, "-" -> "_").
IMPORT_NAMES = {"pyyaml": "yaml", "scikit-learn": "sklearn", "pillow": "PIL"}
OWN_MODULES = {"cs288_lm", "adapters"}


@dataclass(frozen=True)
class ForbiddenImport:
    """One import of a module that students may not use."""

    path: str
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: import of {self.module!r} (not in requirements.txt or the standard library)"


def allowed_modules(requirements: str) -> frozenset[str]:
    """Top-level module names students may import, given the text of requirements.txt."""
    packages = set()
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0].lower()
            packages.add(IMPORT_NAMES.get(name, name.replace("-", "_")))
    return frozenset(packages | set(sys.stdlib_module_names) | OWN_MODULES)


def forbidden_imports(source: str, path: str, allowed: frozenset[str]) -> list[ForbiddenImport]:
    """The imports of ``source`` outside ``allowed``, in line order (``source`` must parse)."""
    found: list[ForbiddenImport] = []
    for node in ast.walk(parse_source(source, path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found.extend(ForbiddenImport(path, node.lineno, m) for m in modules if m.split(".")[0] not in allowed)
    return sorted(found, key=lambda item: (item.line, item.module))


# --- Source as Python reads it ------------------------------------------------------------------

UTF8_NAMES = ("utf-8", "utf-8-sig")


class DeclaredEncoding(ValueError):
    """A submitted file declares an encoding other than UTF-8 (PEP 263): Python would read it so, and a
    UTF-8 reading can see other code (a utf-7 ``+AAo-`` is a line break that hides an import in a comment)."""

    def __init__(self, path: str, line: int, encoding: str) -> None:
        super().__init__(f"{path} declares the {encoding} encoding (line {line})")
        self.path, self.line, self.encoding = path, line, encoding

    def flag(self) -> ReviewFlag:
        return ReviewFlag(self.path, self.line, ENCODING, f"declares {self.encoding}: graded as the stub")


def python_source(data: bytes, path: str) -> str:
    """``data`` decoded as the interpreter decodes a source file: a BOM or a PEP 263 cookie decides.

    Raises :class:`DeclaredEncoding` for any encoding but UTF-8, ``SyntaxError`` for a cookie Python
    refuses (unknown, or against the BOM), ``UnicodeDecodeError`` for bytes that are not UTF-8.
    """
    try:
        encoding, lines = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        data.decode("utf-8")  # bytes that are not UTF-8 are named as such, not as a bad declaration
        raise
    if codecs.lookup(encoding).name not in UTF8_NAMES:
        raise DeclaredEncoding(path, len(lines), encoding)  # the cookie is on the last line read
    return data.decode(codecs.lookup(encoding).name)


# --- Review flags (instructors only, never scored) ---------------------------------------------

DYNAMIC_IMPORT = "dynamic import"
CODE_EXECUTION = "code execution"
PROCESS_CONTROL = "process control"
INTROSPECTION = "introspection"
TAMPERING = "tampering"
ENCODING = "source encoding"
LIBRARY_DOES_THE_WORK = "library that can do the work"

_OS_PROCESS_CALLS = (
    "system popen fork forkpty setsid setpgrp setpgid kill killpg _exit posix_spawn posix_spawnp"
    " execl execle execlp execlpe execv execve execvp execvpe spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp"
    " spawnvpe"
)
# Dotted names worth a look; a module stands for all its members ("subprocess" covers subprocess.run).
WATCHED: dict[str, str] = {
    # pickle's GLOBAL opcode imports any module and fetches any attribute (sys._getframe included)
    # from bytes: an import and a frame access that no import statement or attribute names.
    **dict.fromkeys(
        (
            "__import__",
            "importlib",
            "pkgutil",
            "runpy",
            "pickle",
            "_pickle",
            "marshal",
            "copyreg",
            "shelve",
            "pydoc",
            "logging.config",
        ),
        DYNAMIC_IMPORT,
    ),
    # Allowed by requirements.txt for the tests, but it can do the tokenizer's merging itself.
    "tiktoken": LIBRARY_DOES_THE_WORK,
    **dict.fromkeys(("exec", "eval", "compile", "code", "ctypes"), CODE_EXECUTION),
    **dict.fromkeys(
        ("subprocess", "pty", "multiprocessing", "concurrent.futures.ProcessPoolExecutor", "signal", "atexit"),
        PROCESS_CONTROL,
    ),
    **{f"os.{name}": PROCESS_CONTROL for name in _OS_PROCESS_CALLS.split()},
    **dict.fromkeys(
        (
            "builtins",
            "__builtins__",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "sys._getframe",
            "sys._current_frames",
            "sys.modules",
            "inspect.stack",
            "inspect.currentframe",
            "inspect.trace",
        ),
        INTROSPECTION,
    ),
    **dict.fromkeys(
        (
            "sys.argv",
            "sys.orig_argv",
            "sys.settrace",
            "sys.setprofile",
            "sys.addaudithook",
            "threading.settrace",
            "threading.setprofile",
            "pytest",
            "_pytest",
            # The no-functional tests' torch function and dispatch modes (torch.ops reaches kernels by name;
            # compiled code runs below the function mode).
            "torch.overrides",
            "torch.ops",
            "torch.jit",
            "torch.fx",
            # sys, and so sys.modules and sys._getframe, reached through another module (os.sys)
            "os.sys",
            "warnings.sys",
            "operator.attrgetter",
            "operator.methodcaller",
        ),
        TAMPERING,
    ),
    # A torch function or dispatch mode is per thread: torch run in another thread escapes it.
    **dict.fromkeys(("threading.Thread", "_thread", "concurrent.futures.ThreadPoolExecutor"), PROCESS_CONTROL),
}
# Names that mean the builtin even when nothing imports them.
BUILTIN_NAMES = frozenset(
    {"__import__", "exec", "eval", "compile", "getattr", "setattr", "delattr", "vars", "__builtins__"}
)
BUILTIN_NAMESPACES = ("builtins", "__builtins__")
# Frames and functions lead to every module's globals, pytest's included.
INTROSPECTION_ATTRIBUTES = frozenset(
    {
        "__code__",
        "__globals__",
        "__subclasses__",
        "__builtins__",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "f_trace",
        "tb_frame",
        "gi_frame",
        "cr_frame",
    }
)
# Lower-case pieces of strings: the grader's files and processes, or names looked up by string.
STRING_NEEDLES = {
    **dict.fromkeys(("/proc", "/autograder", "_pytest", "conftest", "junit", "results.json"), TAMPERING),
    **dict.fromkeys(("__builtins__", "__import__"), DYNAMIC_IMPORT),
}
# Attributes of modules that ordinary code assigns (torch.backends.cudnn.benchmark = True).
ASSIGNABLE = ("torch.backends.",)
SHOWN_STRING_CHARS = 60


@dataclass(frozen=True)
class ReviewFlag:
    """Something in a submitted file for an instructor to read: a lead, never a verdict or a deduction."""

    path: str
    line: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.detail}"


def review_flags(source: str, path: str) -> list[ReviewFlag]:
    """What in ``source`` deserves a reader's look, by line and detail; [] when it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences: not the grader log's business
            tree = parse_source(source, path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: null bytes, lone surrogates
        return []
    return [ReviewFlag(path, line, kind, detail) for (line, detail), kind in sorted(_Review(tree).flags.items())]


class _Review:
    """Specific rules first (they mark the nodes they explain), then names and strings nothing explained."""

    def __init__(self, tree: ast.AST) -> None:
        nodes = list(ast.walk(tree))
        self.aliases = _import_aliases(nodes)
        self.flags: dict[tuple[int, str], str] = {}  # (line, detail) -> kind
        self.explained: set[int] = set()  # ids of nodes a specific flag, or a longer dotted name, covers
        self.named: set[tuple[int, str]] = set()  # (line, watched name) already flagged
        self.names = {id(node): name for node in nodes if (name := self.resolve(node)) is not None}
        for node in nodes:
            self.check_specific(node)
        for node in nodes:
            self.check_leftover(node)

    def flag(self, node: ast.expr | ast.stmt, kind: str, detail: str) -> None:
        self.flags.setdefault((node.lineno, detail), kind)

    def flag_name(self, node: ast.expr | ast.stmt, name: str, detail: str) -> bool:
        """Flag a use of a watched name once a line (signal.signal(signal.SIGTERM, ...) is one flag); False if
        the name is not watched."""
        if (watched := _watched(name)) is None:
            return False
        if (node.lineno, watched[0]) not in self.named:
            self.named.add((node.lineno, watched[0]))
            self.flag(node, watched[1], detail)
        return True

    def explain(self, *nodes: ast.AST) -> None:
        self.explained.update(id(node) for node in nodes)

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name ``node`` stands for, imports expanded (``os.system``, ``builtins.exec``), if any."""
        parts = []
        while True:
            if isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            elif isinstance(node, ast.Call) and (attribute := self.constant_getattr(node)) is not None:
                parts.append(attribute)
                node = node.args[0]
            elif isinstance(node, ast.Name):
                root = self.aliases.get(node.id, node.id if node.id in BUILTIN_NAMES else None)
                return None if root is None else ".".join([root, *reversed(parts)])
            else:
                return None

    def builtin_called(self, node: ast.AST) -> str | None:
        """``getattr`` for ``getattr(...)`` (or an alias of it), and so on: the builtin a call calls, if any."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = self.aliases.get(node.func.id, node.func.id if node.func.id in BUILTIN_NAMES else None)
            return None if name is None else _unqualified(name)
        return None

    def constant_getattr(self, node: ast.AST) -> str | None:
        """``"system"`` for ``getattr(os, "system")``: a lookup that is just an attribute."""
        if (
            isinstance(node, ast.Call)
            and self.builtin_called(node) == "getattr"
            and len(node.args) >= 2
            and (attribute := _string(node.args[1])) is not None
        ):
            return attribute
        return None

    def check_specific(self, node: ast.AST) -> None:
        name = self.names.get(id(node))
        # The inner parts of a dotted name (os in os.system, both arguments of getattr(os, "system")) are not
        # flagged on their own.
        if name is not None and isinstance(node, ast.Attribute):
            self.explain(node.value)
        elif name is not None and isinstance(node, ast.Call):
            self.explain(*node.args[:2])
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            self.explain(node.value)  # docstrings and bare strings do nothing
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.check_import(node)
        elif isinstance(node, ast.Call):
            self.check_call(node)
        elif isinstance(node, ast.Subscript):
            self.check_namespace_subscript(node)
        elif isinstance(node, ast.Attribute):
            if node.attr in INTROSPECTION_ATTRIBUTES:
                self.flag(node, INTROSPECTION, f"uses .{node.attr}")
            if name is not None and isinstance(node.ctx, (ast.Store, ast.Del)) and not name.startswith(ASSIGNABLE):
                verb = "assigns" if isinstance(node.ctx, ast.Store) else "deletes"
                self.flag(node, TAMPERING, f"{verb} {name}")
                self.explain(node)

    def check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif node.level == 0 and node.module:
            modules = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            return  # relative: the package itself
        for module in modules:
            if (watched := _watched(module)) is not None:
                self.flag(node, watched[1], f"imports {module}")

    def check_call(self, node: ast.Call) -> None:
        name = self.names.get(id(node.func))
        if name is not None and self.flag_name(node, name, _call_detail(name, node)):
            self.explain(node.func)
        function = self.builtin_called(node)
        if function not in ("getattr", "setattr", "delattr") or len(node.args) < 2:
            return
        target = self.names.get(id(node.args[0]))
        attribute = _string(node.args[1])
        if target is None or (function == "getattr" and attribute is not None):
            return  # an object of the student's, or a plain attribute (resolved as a dotted name)
        shown = "<computed>" if attribute is None else _shown(attribute)
        self.flag(node, DYNAMIC_IMPORT if function == "getattr" else TAMPERING, f"{function}({target}, {shown})")
        self.explain(node.args[0], node.args[1])

    def check_namespace_subscript(self, node: ast.Subscript) -> None:
        """``builtins.__dict__["__import__"]``, ``vars(os)[name]``: attribute lookups by string."""
        value = node.value
        base: str | None
        if (
            isinstance(value, ast.Call)
            and self.builtin_called(value) == "vars"
            and value.args
            and (inner := self.names.get(id(value.args[0])))
        ):
            base, covered = f"vars({inner})", value.args[0]
        elif (base := self.names.get(id(value))) is not None and (
            base in BUILTIN_NAMESPACES or base.endswith(".__dict__")
        ):
            covered = value
        else:
            return
        key = _string(node.slice)
        kind = TAMPERING if isinstance(node.ctx, (ast.Store, ast.Del)) else DYNAMIC_IMPORT
        self.flag(node, kind, f"{base}[{'...' if key is None else _shown(key)}]")
        self.explain(covered, node.slice)

    def check_leftover(self, node: ast.AST) -> None:
        if id(node) in self.explained:
            return
        name = self.names.get(id(node))
        if (
            name is not None
            and isinstance(node, ast.expr)
            and not isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del))
        ):
            self.flag_name(node, name, f"uses {name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value.lower() if isinstance(node.value, str) else node.value.decode("latin-1").lower()
            for needle, kind in STRING_NEEDLES.items():
                if needle in text:
                    self.flag(node, kind, f"string mentions {needle!r}")


def _import_aliases(nodes: list[ast.AST]) -> dict[str, str]:
    """Each name an import binds, mapped to the dotted name it stands for (scopes ignored)."""
    aliases = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                aliases[alias.asname or root] = alias.name if alias.asname else root
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name == "*":  # bind the watched members, so that `from os import *; system(...)` is seen
                    prefix = node.module + "."
                    members = [name for name in WATCHED if name.startswith(prefix) and "." not in name[len(prefix) :]]
                    aliases.update({name[len(prefix) :]: name for name in members})
                else:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _unqualified(name: str) -> str:
    """``exec`` for ``builtins.exec``: the builtins are the same functions under either name."""
    for namespace in BUILTIN_NAMESPACES:
        if name.startswith(namespace + "."):
            return name[len(namespace) + 1 :]
    return name


def _watched(name: str) -> tuple[str, str] | None:
    """The watched name a dotted name is or belongs to (``subprocess`` for ``subprocess.run``), and its kind."""
    for candidate in (_unqualified(name), name):
        parts = candidate.split(".")
        for end in range(len(parts), 0, -1):
            if (kind := WATCHED.get(key := ".".join(parts[:end]))) is not None:
                return key, kind
    return _private_torch(name)


def _private_torch(name: str) -> tuple[str, str] | None:
    """``torch._C`` for ``torch._C._nn.linear``: torch's private parts are where its checks are turned off
    (``torch._C._DisableTorchFunction``, the mode stacks) and where forbidden kernels are kept."""
    parts = name.split(".")
    if parts[0] != "torch":
        return None
    for end, part in enumerate(parts[1:], 2):
        if part.startswith("_") and not part.endswith("__"):
            return ".".join(parts[:end]), TAMPERING
    return None


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN_STRING_CHARS else text[: SHOWN_STRING_CHARS - 3] + "...")


def _call_detail(name: str, call: ast.Call) -> str:
    """``os.system('ls')``, ``gc.get_objects()``, ``exec(...) of a computed string``."""
    first = call.args[0] if call.args else None
    text = None if first is None else _string(first)
    if first is None and not call.keywords:
        arguments = ""
    elif text is None:
        arguments = "..."
    else:
        arguments = _shown(text) + (", ..." if len(call.args) > 1 or call.keywords else "")
    detail = f"{name}({arguments})"
    if _unqualified(name) in ("exec", "eval", "compile"):
        literal = isinstance(first, ast.Constant) and isinstance(first.value, (str, bytes))
        detail += " of a string literal" if literal else " of a computed string"
    return detail
