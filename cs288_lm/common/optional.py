"""Optional libraries of the given code, imported where they are needed (given).

The package imports only what ``requirements.txt`` installs at module level. The given analyses,
the report and the Hugging Face conversions also use libraries students never need (matplotlib,
scikit-learn, sacrebleu, safetensors: ``requirements-tools.txt``; transformers);
:func:`require` imports one of them, or raises :class:`MissingDependency`, whose message names the
package, what needs it and how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TOOLS_REQUIREMENTS = "requirements-tools.txt"


class MissingDependency(ImportError):
    """An optional library is not installed; the message names it, what needs it and how to install it."""

    def __init__(self, package: str, purpose: str, requirements: str | None = TOOLS_REQUIREMENTS):
        self.package, self.purpose = package, purpose
        also = f", or pip install -r {requirements}" if requirements else ""
        super().__init__(f"{purpose} needs the optional package {package!r} (pip install {package}{also})")


def require(module: str, package: str, purpose: str, requirements: str | None = TOOLS_REQUIREMENTS) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``package``, ``purpose`` and the
    requirements file that lists it (``None``: a package of no file students get)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(package, purpose, requirements) from None
