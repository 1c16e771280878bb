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
* :mod:`~cs288_lm.analysis.compare`: several models scored on one text (a Hugging Face GPT-2 is
  loaded by :mod:`cs288_lm.models.hf_interop`).

Only torch, numpy and the standard library are imported at module level. The optional libraries
(matplotlib, scikit-learn, sacrebleu, safetensors or transformers; ``requirements-tools.txt``) are
imported where they are needed, through :func:`require`
(:mod:`cs288_lm.common.optional`), whose error names the missing package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# One definition for the whole package (the Hugging Face conversions in models/ use it too).
from cs288_lm.common.optional import MissingDependency, require

__all__ = ["MissingDependency", "pyplot", "require"]


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the non-interactive Agg backend, or :class:`MissingDependency`."""
    matplotlib = require("matplotlib", "matplotlib", "the report's figures")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
