"""Several language models side by side on one text (given).

:func:`score_models` puts each model, with its own tokenizer, on the same text: per-token loss and
perplexity (which depend on the tokenizer) and bits per byte (which do not). The report compares
ours with a pretrained GPT-2 loaded by :func:`cs288_lm.models.hf_interop.load_hf_gpt2`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from cs288_lm.analysis.metrics import score_text, scoring_ids
from cs288_lm.model import count_parameters
from cs288_lm.tokenizer import Tokenizer


@dataclass(frozen=True)
class Contestant:
    """A model to compare: its name, module, tokenizer and end-of-text id."""

    name: str
    model: nn.Module
    tokenizer: Tokenizer
    eos: int | None


def score_models(contestants: Sequence[Contestant], text: str, batch_size: int = 8) -> list[dict]:
    """Per-token loss, perplexity and bits per byte of each model on ``text`` (each with its tokenizer
    and its own context length)."""
    rows = []
    for contestant in contestants:
        ids, num_bytes = scoring_ids(contestant.tokenizer, text, contestant.eos)
        score = score_text(contestant.model, ids, num_bytes, batch_size)
        rows.append(
            {
                "model": contestant.name,
                "parameters": count_parameters(contestant.model),
                "vocab_size": contestant.model.vocab_size,
                "context_length": contestant.model.context_length,
                "tokens": score.tokens,
                "bytes": score.num_bytes,
                "bytes_per_token": score.bytes_per_token,
                "loss_per_token": score.mean_loss,
                "perplexity_per_token": score.perplexity,
                "bits_per_byte": score.bits_per_byte,
            }
        )
    return rows
