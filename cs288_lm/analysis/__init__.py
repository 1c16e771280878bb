"""Analysis of a trained language model, behind ``python -m cs288_lm.pipelines.report`` (given).

One module per concern:

* :mod:`~cs288_lm.analysis.metrics`: text-level measures (distinct-n, Self-BLEU, repetition rate)
  and scoring a text under a model (per-token log-likelihoods, perplexity, bits per byte);
* :mod:`~cs288_lm.analysis.attention`: a forward pass that keeps every head's attention weights
  and every layer's hidden states, head scores (previous token, first token, self, induction),
  head ablation and heatmaps;
* :mod:`~cs288_lm.analysis.embeddings`: 2-D projections of token embeddings, cosine neighbours,
  linear probes of hidden states;
* :mod:`~cs288_lm.analysis.sampling_study`: decoding strategies compared on a fixed prompt set;
* :mod:`~cs288_lm.analysis.compare`: a Hugging Face GPT-2 directory loaded into our GPT-2.

Only torch, numpy and the standard library are imported at module level. The optional libraries
(matplotlib, scikit-learn, sacrebleu, safetensors or transformers; ``requirements-tools.txt``) are
imported where they are needed, through :func:`require`, whose error names the missing package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TOOLS_REQUIREMENTS = "requirements-tools.txt"


class MissingDependency(ImportError):
    """An optional analysis library is not installed; the message names it and what needs it."""

    def __init__(self, package: str, purpose: str):
        self.package, self.purpose = package, purpose
        super().__init__(
            f"{purpose} needs the optional package {package!r} "
            f"(pip install {package}, or pip install -r {TOOLS_REQUIREMENTS})"
        )


def require(module: str, package: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``package`` and ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(package, purpose) from None


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the non-interactive Agg backend, or :class:`MissingDependency`."""
    matplotlib = require("matplotlib", "matplotlib", "the report's figures")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
