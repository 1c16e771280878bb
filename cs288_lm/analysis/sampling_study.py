"""Decoding strategies compared on a fixed set of prompts (given).

Every strategy continues every prompt ``samples_per_prompt`` times (greedy once: it is
deterministic), from one seed, with :func:`cs288_lm.sampling.generate`. Per strategy, over the
continuations (prompts left out): distinct-1/2/3, Self-BLEU, repetition rate, the mean per-token
log-likelihood of the generated tokens under the model itself (plain softmax, no temperature or
filter: how "expected" the text is to the model), and the mean length. :func:`reading` turns the
table into a few sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cs288_lm.analysis import MissingDependency
from cs288_lm.analysis.metrics import distinct_n, repetition_rate, self_bleu, token_log_probs, words
from cs288_lm.common.modes import eval_mode
from cs288_lm.models.kv_cache import LanguageModel
from cs288_lm.sampling import generate
from cs288_lm.tokenizer import Tokenizer

STRATEGIES: dict[str, dict] = {
    "greedy": {"temperature": 0.0},
    "temperature 0.7": {"temperature": 0.7},
    "temperature 1.0": {"temperature": 1.0},
    "temperature 1.3": {"temperature": 1.3},
    "top-k 50": {"temperature": 1.0, "top_k": 50},
    "top-p 0.9": {"temperature": 1.0, "top_p": 0.9},
}
PROMPTS: tuple[str, ...] = (
    "Once upon a time",
    "Lily wanted to play with her friend",
    "The little dog was sad because",
    "One day, Tom found a big box.",
)
METRIC_COLUMNS = (
    "samples",
    "mean_tokens",
    "mean_words",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "self_bleu",
    "repetition_rate",
    "mean_log_likelihood",
)


@dataclass(frozen=True)
class Sample:
    strategy: str
    prompt: str
    index: int
    text: str  # the continuation only
    tokens: int
    log_likelihood: float  # summed over the continuation's tokens, nats


def run_study(
    model: LanguageModel,
    tokenizer: Tokenizer,
    eos: int | None,
    prompts: Sequence[str] = PROMPTS,
    strategies: dict[str, dict] = STRATEGIES,
    samples_per_prompt: int = 4,
    max_new_tokens: int = 60,
    seed: int = 0,
) -> list[Sample]:
    """Continue each prompt with each strategy; the continuations stop at end-of-text."""
    if samples_per_prompt < 1 or max_new_tokens < 1:
        raise ValueError("samples_per_prompt and max_new_tokens must be at least 1")
    device = next(model.parameters()).device
    encoded = [tokenizer.encode(prompt) for prompt in prompts]
    for prompt, prompt_ids in zip(prompts, encoded, strict=True):
        if not prompt_ids or max(prompt_ids) >= model.vocab_size:
            raise ValueError(f"the prompt {prompt!r} encodes to ids the model cannot read")
    samples = []
    for strategy, settings in strategies.items():
        rows = 1 if settings.get("temperature", 1.0) == 0 else samples_per_prompt
        # Every prompt's rows in one batch, left-padded with end-of-text (the decoder masks padding):
        # one decoding loop per strategy instead of one per prompt.
        if eos is not None:
            longest = max(map(len, encoded))
            batch = torch.tensor(
                [[eos] * (longest - len(ids)) + ids for ids in encoded for _ in range(rows)], device=device
            )
            new = generate(model, batch, max_new_tokens, eos_token_id=eos, pad_token_id=eos, seed=seed, **settings)
            outputs = [new[i * rows : (i + 1) * rows].tolist() for i in range(len(prompts))]
        else:
            outputs = [
                generate(
                    model, torch.tensor([ids] * rows, device=device), max_new_tokens, seed=seed, **settings
                ).tolist()
                for ids in encoded
            ]
        for prompt, prompt_ids, rows_new in zip(prompts, encoded, outputs, strict=True):
            continuations = [row[: row.index(eos)] if eos is not None and eos in row else row for row in rows_new]
            log_likelihoods = continuation_log_likelihoods(model, prompt_ids, rows_new, [len(c) for c in continuations])
            for index, (continuation, log_likelihood) in enumerate(zip(continuations, log_likelihoods, strict=True)):
                text = tokenizer.decode(continuation)
                samples.append(Sample(strategy, prompt, index, text, len(continuation), log_likelihood))
    return samples


@torch.no_grad()
def continuation_log_likelihoods(
    model: LanguageModel, prompt_ids: list[int], rows: list[list[int]], lengths: list[int]
) -> list[float]:
    """The summed log-likelihood (nats) of the first ``lengths[i]`` tokens of ``rows[i]`` after the prompt.

    All rows in one forward pass when prompt and rows fit in the context (tokens after a row's
    length are ignored: causal attention keeps them out of the earlier positions); otherwise row by
    row over consecutive windows (:func:`token_log_probs`).
    """
    if not rows:
        return []
    if len(prompt_ids) + len(rows[0]) > model.context_length:
        return [
            float(token_log_probs(model, prompt_ids + row[:length])[-length:].double().sum()) if length else 0.0
            for row, length in zip(rows, lengths, strict=True)
        ]
    device = next(model.parameters()).device
    tokens = torch.tensor([prompt_ids + row for row in rows], device=device)
    with eval_mode(model):
        log_probs = F.log_softmax(model(tokens[:, :-1]).float(), dim=-1)
    per_token = log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)[:, len(prompt_ids) - 1 :].cpu().double()
    return [float(per_token[i, :length].sum()) for i, length in enumerate(lengths)]


def summarise(samples: Sequence[Sample]) -> tuple[list[dict], list[str]]:
    """One row of metrics per strategy (in the order met) and notes on metrics that could not be computed."""
    notes: list[str] = []
    rows = []
    for strategy in dict.fromkeys(sample.strategy for sample in samples):
        group = [sample for sample in samples if sample.strategy == strategy]
        split = [words(sample.text) for sample in group]
        tokens = sum(sample.tokens for sample in group)
        row = {
            "strategy": strategy,
            "samples": len(group),
            "mean_tokens": tokens / len(group),
            "mean_words": sum(map(len, split)) / len(group),
            **{f"distinct_{n}": distinct_n(split, n) for n in (1, 2, 3)},
            "repetition_rate": repetition_rate(split, 4),
            "mean_log_likelihood": sum(s.log_likelihood for s in group) / tokens if tokens else math.nan,
        }
        try:
            row["self_bleu"] = self_bleu([sample.text for sample in group]) if len(group) > 1 else math.nan
        except MissingDependency as error:
            row["self_bleu"] = math.nan
            if str(error) not in notes:
                notes.append(str(error))
        rows.append(row)
    return rows, notes


def reading(rows: Sequence[dict]) -> list[str]:
    """A few sentences about the table: which strategy repeats, which drifts, which varies most."""
    if not rows:
        return []

    def pick(key: str, highest: bool) -> dict:
        usable = [row for row in rows if not math.isnan(row[key])]
        return (max if highest else min)(usable, key=lambda row: row[key]) if usable else rows[0]

    repeats, fresh = pick("repetition_rate", True), pick("repetition_rate", False)
    drifts, expected = pick("mean_log_likelihood", False), pick("mean_log_likelihood", True)
    varied, narrow = pick("distinct_2", True), pick("distinct_2", False)
    sentences = [
        (
            f"**{repeats['strategy']}** repeats itself most: {repeats['repetition_rate']:.0%} of its 4-grams "
            f"already occurred earlier in the same sample, against {fresh['repetition_rate']:.0%} for "
            f"**{fresh['strategy']}**."
        ),
        (
            f"**{drifts['strategy']}** drifts furthest from what the model expects: its tokens have a mean "
            f"log-likelihood of {drifts['mean_log_likelihood']:.2f} nats under the model, against "
            f"{expected['mean_log_likelihood']:.2f} for **{expected['strategy']}**."
        ),
        (
            f"**{varied['strategy']}** has the most varied wording (distinct-2 {varied['distinct_2']:.2f}), "
            f"**{narrow['strategy']}** the least ({narrow['distinct_2']:.2f})."
        ),
    ]
    with_bleu = [row for row in rows if not math.isnan(row["self_bleu"])]
    if len(with_bleu) > 1:
        alike = max(with_bleu, key=lambda row: row["self_bleu"])
        unlike = min(with_bleu, key=lambda row: row["self_bleu"])
        sentences.append(
            f"Samples are most alike under **{alike['strategy']}** (Self-BLEU {alike['self_bleu']:.1f}) and "
            f"least under **{unlike['strategy']}** ({unlike['self_bleu']:.1f})."
        )
    return sentences
