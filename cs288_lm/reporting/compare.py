"""Section 6, the comparison with a pretrained GPT-2 (``--gpt2 DIR``, a Hugging Face GPT-2 saved
locally): bits per byte and per-token perplexity of both models on the same text, their sampling
metrics and samples side by side."""

from __future__ import annotations

import time

from cs288_lm.analysis import MissingDependency
from cs288_lm.analysis.compare import Contestant, score_models
from cs288_lm.analysis.metrics import cut_text
from cs288_lm.analysis.sampling_study import PROMPTS, Sample, summarise
from cs288_lm.models.hf_interop import PretrainedGPT2, load_hf_gpt2
from cs288_lm.reporting.context import Context, ReportError
from cs288_lm.reporting.sampling import metric_table, study
from cs288_lm.reporting.threads import threads_while
from cs288_lm.reporting.writer import ReportWriter

__all__ = ["PretrainedGPT2", "load_gpt2", "render"]

TITLE = "Comparison with a pretrained GPT-2"
GET_GPT2 = (
    'python -c "from transformers import GPT2LMHeadModel, GPT2Tokenizer; '
    "GPT2LMHeadModel.from_pretrained('gpt2').save_pretrained('gpt2-local'); "
    "GPT2Tokenizer.from_pretrained('gpt2').save_pretrained('gpt2-local')\""
)
SCORE_HEADERS = (
    "model",
    "parameters",
    "vocabulary",
    "context",
    "tokens",
    "bytes",
    "bytes/token",
    "loss/token (nats)",
    "perplexity/token",
    "bits/byte",
)
SIDE_BY_SIDE_STRATEGIES = ("greedy", "top-p 0.9")


def load_gpt2(context: Context) -> None:
    """Load ``--gpt2`` into the context before any section runs: a bad directory is a ReportError; a
    missing optional library is kept for the section to report."""
    if context.args.gpt2 is None:
        return
    try:
        context.gpt2 = load_hf_gpt2(context.args.gpt2, next(context.model.parameters()).device)
    except (FileNotFoundError, ValueError) as error:
        raise ReportError(f"--gpt2 {context.args.gpt2}: {error}") from None
    except MissingDependency as error:  # the section says so; the rest of the report goes on
        context.gpt2_problem = str(error)


def how_to_get_gpt2(report: ReportWriter) -> None:
    report.paragraph(
        "No GPT-2 given (`--gpt2 DIR`). No hub is reached from here: save a GPT-2 on a machine that has "
        "internet access (or `huggingface-cli download gpt2 --local-dir gpt2-local`) and copy the "
        "directory over:"
    )
    report.paragraph(f"    {GET_GPT2}")
    report.paragraph(
        "then add `--gpt2 gpt2-local` to this command (also `distilgpt2`, or any GPT2LMHeadModel saved "
        "with save_pretrained with its tokenizer)."
    )


def scores(context: Context, gpt2: PretrainedGPT2, report: ReportWriter) -> None:
    """Both models' loss, perplexity and bits per byte on the first ``--compare-bytes`` of --text."""
    text = cut_text(context.text, context.args.compare_bytes)
    context.progress(f"   scoring {len(text.encode()):,} bytes with both models")
    began = time.perf_counter()
    rows = []
    for contestant in (
        Contestant("ours", context.model, context.tokenizer, context.eos),
        Contestant(gpt2.name, gpt2.model, gpt2.tokenizer, gpt2.eos),
    ):
        with threads_while(contestant.model, context.args.threads):
            rows += score_models([contestant], text)
    report.paragraph(
        f"Both models on the first {len(text.encode()):,} bytes of --text, each with its own tokenizer and "
        "context length. Per-token perplexity depends on the tokenizer; bits per byte do not."
    )
    report.table(rows, list(rows[0]), "compare_scores.csv", headers=SCORE_HEADERS)
    context.progress(f"   scored in {time.perf_counter() - began:.1f} s; sampling from {gpt2.name}")


def their_samples(context: Context, gpt2: PretrainedGPT2, per_prompt: int) -> list[Sample]:
    began = time.perf_counter()
    with threads_while(gpt2.model, context.args.threads):
        samples = study(context, gpt2.model, gpt2.tokenizer, gpt2.eos, per_prompt)
    context.progress(f"   sampled in {time.perf_counter() - began:.1f} s")
    return samples


def side_by_side(ours: list[Sample], theirs: list[Sample], name: str) -> list[dict]:
    """The first sample of each model per prompt, greedy and top-p."""
    rows = []
    for prompt in PROMPTS:
        for strategy in SIDE_BY_SIDE_STRATEGIES:
            pick = [
                next((s.text for s in samples if s.prompt == prompt and s.strategy == strategy and s.index == 0), "")
                for samples in (ours, theirs)
            ]
            rows.append({"prompt": prompt, "strategy": strategy, "ours": pick[0], name: pick[1]})
    return rows


def sampling(context: Context, gpt2: PretrainedGPT2, report: ReportWriter) -> None:
    """Both models' sampling metrics on the same prompts and settings, and their samples side by side."""
    per_prompt = min(context.args.compare_samples, context.args.samples_per_prompt)
    if not context.samples:
        context.samples = study(context, context.model, context.tokenizer, context.eos)
    theirs = their_samples(context, gpt2, per_prompt)
    # The same number of samples for both: distinct-n and Self-BLEU depend on it.
    our_rows, notes = summarise([sample for sample in context.samples if sample.index < per_prompt])
    their_rows, more_notes = summarise(theirs)
    for note in dict.fromkeys(notes + more_notes):
        report.note(note)
    rows = [{"model": "ours", **row} for row in our_rows] + [{"model": gpt2.name, **row} for row in their_rows]
    report.paragraph(
        f"Sampling metrics of both models on the same prompts and settings, {per_prompt} samples per prompt "
        "and strategy (the first of section 3 for ours):"
    )
    metric_table(report, rows, "compare_sampling.csv", first=("model", "strategy"))
    report.paragraph("Same prompts, side by side (first sample of each strategy):")
    report.table(
        side_by_side(context.samples, theirs, gpt2.name),
        ["prompt", "strategy", "ours", gpt2.name],
        "compare_samples.csv",
    )


def render(context: Context, report: ReportWriter) -> None:
    if context.args.gpt2 is None:
        how_to_get_gpt2(report)
        return
    if context.gpt2 is None:
        report.note(f"no comparison: {context.gpt2_problem}")
        return
    scores(context, context.gpt2, report)
    sampling(context, context.gpt2, report)
