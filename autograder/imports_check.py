"""Static check that submitted code imports only the standard library and requirements.txt.

Every ``import x`` and ``from x import y`` anywhere in a file (top level, inside functions, under
``try``) is checked against: the standard library (``sys.stdlib_module_names``), the packages of
``requirements.txt`` (by their import names), the package itself (``cs288_lm``), ``adapters`` and
relative imports. Dynamic imports (``importlib.import_module``, ``__import__``) are not seen; the
README's threat model says so.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass

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
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found.extend(ForbiddenImport(path, node.lineno, m) for m in modules if m.split(".")[0] not in allowed)
    return sorted(found, key=lambda item: (item.line, item.module))
