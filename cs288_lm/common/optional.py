"""Optional libraries of the given code, imported where they are needed (given).

The package imports only what ``requirements.txt`` installs at module level. The given analyses,
the report and the Hugging Face conversions also use libraries students never need (matplotlib,
scikit-learn, sacrebleu, safetensors: ``requirements-tools.txt``; transformers:
``requirements-dev.txt``); :func:`require` imports one of them, or raises
:class:`MissingDependency`, whose message names the package, what needs it and how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TOOLS_REQUIREMENTS = "requirements-tools.txt"
DEV_REQUIREMENTS = "requirements-dev.txt"


class MissingDependency(ImportError):
    """An optional library is not installed; the message names it, what needs it and where it is listed."""

    def __init__(self, package: str, purpose: str, requirements: str = TOOLS_REQUIREMENTS):
        self.package, self.purpose = package, purpose
        super().__init__(
            f"{purpose} needs the optional package {package!r} "
            f"(pip install {package}, or pip install -r {requirements})"
        )


def require(module: str, package: str, purpose: str, requirements: str = TOOLS_REQUIREMENTS) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``package``, ``purpose`` and
    the requirements file that lists it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(package, purpose, requirements) from None
