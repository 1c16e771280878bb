"""Section 3, the sampling study: greedy, temperatures, top-k and top-p on fixed prompts, with
their diversity, repetition and likelihood, and the samples side by side."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cs288_lm.analysis.sampling_study import METRIC_COLUMNS, PROMPTS, Sample, reading, run_study, summarise
from cs288_lm.reporting.context import Context
from cs288_lm.reporting.writer import ReportWriter
from cs288_lm.tokenizer import Tokenizer

TITLE = "Sampling study"
METRIC_HEADERS = (
    "samples",
    "mean tokens",
    "mean words",
    "distinct-1",
    "distinct-2",
    "distinct-3",
    "Self-BLEU",
    "repetition rate",
    "mean log-likelihood (nats/token)",
)


def study(
    context: Context, model: nn.Module, tokenizer: Tokenizer, eos: int | None, samples_per_prompt: int | None = None
) -> list[Sample]:
    """Samples of every strategy on :data:`PROMPTS` with the report's settings."""
    args = context.args
    return run_study(
        model,
        tokenizer,
        eos,
        PROMPTS,
        samples_per_prompt=samples_per_prompt or args.samples_per_prompt,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def metric_table(report: ReportWriter, rows: list[dict], csv_name: str, first: Sequence[str] = ("strategy",)) -> None:
    """The sampling metrics of ``rows`` (from ``summarise``), after the ``first`` columns."""
    report.table(rows, [*first, *METRIC_COLUMNS], csv_name, headers=[*first, *METRIC_HEADERS])


def side_by_side(samples: list[Sample], prompt: str) -> list[dict]:
    """One row per strategy: its first two samples for ``prompt``."""
    table = []
    for strategy in dict.fromkeys(s.strategy for s in samples):
        texts = [s.text for s in samples if s.strategy == strategy and s.prompt == prompt]
        table.append({"strategy": strategy, "sample 1": texts[0], "sample 2": texts[1] if len(texts) > 1 else ""})
    return table


def render(context: Context, report: ReportWriter) -> None:
    args = context.args
    context.samples = study(context, context.model, context.tokenizer, context.eos)
    rows, notes = summarise(context.samples)
    report.paragraph(
        f"{len(PROMPTS)} prompts, {args.samples_per_prompt} samples per prompt and strategy (greedy: one), "
        f"up to {args.max_new_tokens} new tokens, seed {args.seed}. Metrics are over the continuations: "
        "distinct-n = distinct n-grams / all n-grams of words; Self-BLEU = mean BLEU of each sample "
        "against the others (sacrebleu); repetition rate = share of a sample's 4-grams that already "
        "occurred in it; log-likelihood under the model itself (no temperature, no filter)."
    )
    for note in notes:
        report.note(note)
    metric_table(report, rows, "sampling_metrics.csv")
    for sentence in reading(rows):
        report.add(f"- {sentence}")
    report.add()
    report.paragraph("#### Samples side by side")
    for prompt in PROMPTS:
        report.paragraph(f"Prompt: *{prompt}*")
        report.table(side_by_side(context.samples, prompt), ["strategy", "sample 1", "sample 2"])
    report.csv_only(
        [vars(s) for s in context.samples],
        ["strategy", "prompt", "index", "text", "tokens", "log_likelihood"],
        "samples.csv",
        f"All {len(context.samples)} samples, with their length in tokens and log-likelihood (nats)",
    )
