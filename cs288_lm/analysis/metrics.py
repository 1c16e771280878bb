"""Measures of generated text and of how well a model predicts a text (given).

Text measures work on lists of words (:func:`words`: lower-cased words and punctuation marks):

* distinct-n (Li et al., 2016): distinct n-grams / all n-grams, over all samples together;
* Self-BLEU (Zhu et al., 2018): the BLEU of each sample against all the others as references,
  averaged; 100 when the samples are identical, 0 when they share no word. Computed with
  sacrebleu (an optional library), not by hand;
* repetition rate: within each sample, the share of its n-grams (n = 4 by default) that repeat an
  n-gram seen earlier in the same sample (Welleck et al., 2020, "seq-rep-n"), averaged over samples.

Scoring a text: it is encoded with an end-of-text token in front, so that every token of the text
is predicted (the first from the end-of-text token alone), and cut into consecutive windows of the
model's context length. Each token is predicted once, from the tokens before it in its window.
Bits per byte divide the total loss (in bits) by the text's UTF-8 bytes instead of its tokens,
which makes models with different tokenizers comparable:
``bits_per_byte = mean_loss / ln 2 * tokens / bytes``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from cs288_lm.analysis import require
from cs288_lm.common.modes import eval_mode
from cs288_lm.models.kv_cache import LanguageModel

_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``"Hi, Tom!"`` -> ``["hi", ",", "tom", "!"]``."""
    return _WORD_OR_MARK.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams / all n-grams over every sample (each a list of words); 0 when there are none."""
    grams = [gram for sample in samples for gram in ngrams(sample, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(samples: Sequence[Sequence[str]], n: int = 4) -> float:
    """Mean over samples of the share of n-grams that repeat an earlier n-gram of the same sample.

    Samples shorter than ``n`` words have no n-gram and are left out; 0 when no sample has one.
    """
    rates = []
    for sample in samples:
        grams = ngrams(sample, n)
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def self_bleu(texts: Sequence[str]) -> float:
    """Mean BLEU (0-100, sacrebleu, 13a tokenisation) of each text against all the others.

    Sentence-level BLEU with effective order (n-gram orders longer than the text are skipped) and
    sacrebleu's default exponential smoothing. Needs at least two texts.
    """
    if len(texts) < 2:
        raise ValueError(f"Self-BLEU needs at least two samples, got {len(texts)}")
    metrics = require("sacrebleu.metrics", "sacrebleu", "Self-BLEU")
    bleu = metrics.BLEU(effective_order=True)
    scores = [bleu.sentence_score(text, [*texts[:i], *texts[i + 1 :]]).score for i, text in enumerate(texts)]
    return sum(scores) / len(scores)


def bits_per_byte(mean_loss: float, tokens: int, num_bytes: int) -> float:
    """Loss in bits per byte of text, from the mean loss in nats per token."""
    if num_bytes <= 0:
        raise ValueError(f"bits per byte needs a text of at least one byte, got {num_bytes}")
    return mean_loss / math.log(2) * tokens / num_bytes


@torch.no_grad()
def token_log_probs(model: LanguageModel, ids: Sequence[int], batch_size: int = 16) -> Float[Tensor, " n"]:
    """``log p(ids[i + 1] | earlier ids of its window)`` for every i, as a float32 CPU tensor of len(ids) - 1.

    The ids are cut into consecutive windows of ``model.context_length`` predictions: window k reads
    ``ids[kC : kC + C]`` and predicts ``ids[kC + 1 : kC + C + 1]`` (so each window starts from the
    last token of the one before). Full windows run in batches of ``batch_size``.
    """
    if len(ids) < 2:
        raise ValueError(f"scoring needs at least two tokens, got {len(ids)}")
    context = model.context_length
    device = next(model.parameters()).device
    tokens = torch.tensor(list(ids), dtype=torch.long)
    windows = (len(tokens) - 1 + context - 1) // context
    starts = [k * context for k in range(windows)]
    full = [s for s in starts if s + context + 1 <= len(tokens)]
    pieces = []
    with eval_mode(model):
        for first in range(0, len(full), batch_size):
            rows = full[first : first + batch_size]
            window = torch.stack([tokens[s : s + context + 1] for s in rows]).to(device)
            pieces.append(_gathered_log_probs(model, window).flatten())
        if len(full) < windows:  # the last, shorter window
            window = tokens[starts[-1] :].unsqueeze(0).to(device)
            pieces.append(_gathered_log_probs(model, window).flatten())
    return torch.cat(pieces)


def _gathered_log_probs(model: LanguageModel, window: Tensor) -> Tensor:
    logits = model(window[:, :-1]).float()
    return F.log_softmax(logits, dim=-1).gather(-1, window[:, 1:, None]).squeeze(-1).cpu()


@dataclass(frozen=True)
class TextScore:
    """How well a model predicts a text: ``tokens`` predictions covering ``num_bytes`` bytes."""

    total_nats: float
    tokens: int
    num_bytes: int

    @property
    def mean_loss(self) -> float:
        return self.total_nats / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_loss)

    @property
    def bits_per_byte(self) -> float:
        return bits_per_byte(self.mean_loss, self.tokens, self.num_bytes)

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / self.tokens


def score_text(model: LanguageModel, ids: Sequence[int], num_bytes: int, batch_size: int = 16) -> TextScore:
    """Score ``ids`` (an end-of-text id followed by the text's ids) against a text of ``num_bytes`` bytes."""
    log_probs = token_log_probs(model, ids, batch_size)
    return TextScore(-float(log_probs.double().sum()), len(log_probs), num_bytes)


def most_common_share(labels: Sequence) -> float:
    """The share of the most frequent label: the accuracy of always answering it."""
    return Counter(labels).most_common(1)[0][1] / len(labels) if labels else 0.0


def scoring_ids(tokenizer, text: str, eos: int | None) -> tuple[list[int], int]:
    """The ids to score ``text`` with (end-of-text first, so that every text token is predicted) and
    the number of bytes those predictions cover. Without an end-of-text token the first token is
    context only and its bytes are not counted."""
    ids = tokenizer.encode(text)
    num_bytes = len(text.encode("utf-8"))
    if eos is not None:
        return [eos, *ids], num_bytes
    if len(ids) < 2:
        raise ValueError("the text is too short to score: it needs at least two tokens")
    return ids, num_bytes - len(tokenizer.vocab[ids[0]])


def cut_text(text: str, max_bytes: int) -> str:
    """``text`` unchanged if it has at most ``max_bytes`` UTF-8 bytes, else cut at the last line break
    (or space) before that limit."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    head = data[:max_bytes].decode("utf-8", errors="ignore")
    for separator in ("\n", " "):
        cut = head.rfind(separator)
        if cut > 0:
            return head[: cut + 1]
    return head
