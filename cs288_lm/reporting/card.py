"""Section 1, the model card: architecture, size, FLOPs and training memory; data and tokenizer;
training curves and results (validation perplexity, bits per byte); the greedy sample."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cs288_lm.analysis import MissingDependency, pyplot
from cs288_lm.analysis.metrics import TextScore, score_text
from cs288_lm.analysis.sampling_study import PROMPTS
from cs288_lm.common.plots import plot_runs, read_metrics
from cs288_lm.model import adamw_state_bytes, count_parameters, estimate_training_memory_bytes
from cs288_lm.models.architectures import ModelConfig
from cs288_lm.reporting.context import Context
from cs288_lm.reporting.writer import ReportWriter, cell, megabytes
from cs288_lm.sampling import generate
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.flops import training_flops_per_token

TITLE = "Model card"
FLOAT32_BYTES = 4


def training_memory(config: ModelConfig, model: nn.Module, batch_size: int) -> dict[str, int]:
    """Bytes to train with AdamW in float32: the textbook account of
    :func:`~cs288_lm.model.estimate_training_memory_bytes`; parameters counted on the module itself
    (exact for both architectures; the activations follow the Llama-style account)."""
    memory = estimate_training_memory_bytes(
        vocab_size=config.vocab_size,
        context_length=config.context_length,
        d_model=config.d_model,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        d_ff=config.resolved_d_ff,
        batch_size=batch_size,
        dtype_bytes=FLOAT32_BYTES,
    )
    memory.update(adamw_state_bytes(count_parameters(model) * FLOAT32_BYTES))
    memory["total"] = sum(value for key, value in memory.items() if key != "total")
    return memory


def count_file_tokens(
    path: Path, tokenizer: Tokenizer, bytes_per_token: float, max_bytes: int
) -> tuple[int, int, bool]:
    """(bytes, tokens, exact) of a text file: encoded when at most ``max_bytes``, else estimated."""
    size = path.stat().st_size
    if size <= max_bytes:
        return size, len(tokenizer.encode(path.read_text(encoding="utf-8"))), True
    return size, round(size / bytes_per_token), False


def architecture_rows(context: Context) -> list[tuple[str, object]]:
    config, model = context.config, context.model
    batch_size = context.training.batch_size
    training_flops = training_flops_per_token(config)  # None before Part 2's count_flops_per_token is written
    forward_flops = "not available" if training_flops is None else training_flops // 3
    memory = training_memory(config, model, batch_size)
    return [
        ("architecture", config.architecture),
        ("parameters", count_parameters(model)),
        ("vocabulary size", config.vocab_size),
        ("context length", config.context_length),
        ("d_model", config.d_model),
        ("layers", config.num_layers),
        ("heads", config.num_heads),
        ("feed-forward width", config.resolved_d_ff),
        ("forward FLOPs per token (full context)", forward_flops),
        ("training FLOPs per token (forward + backward, 3x)", training_flops or "not available"),
        (f"training memory, AdamW float32, batch {batch_size}: parameters", megabytes(memory["parameters"])),
        ("training memory: gradients", megabytes(memory["gradients"])),
        ("training memory: optimizer state", megabytes(memory["optimizer_state"])),
        ("training memory: activations", megabytes(memory["activations"])),
        ("training memory: total", megabytes(memory["total"])),
    ]


def data_rows(context: Context, score: TextScore) -> list[tuple[str, object]]:
    """The tokenizer, the training text (its size, tokens and epochs seen) and the evaluation text."""
    rows: list[tuple[str, object]] = [
        ("tokenizer", f"{context.tokenizer_dir} ({len(context.tokenizer.vocab):,} tokens)")
    ]
    train_path = context.training.train_data
    train_tokens = None
    if train_path is not None and train_path.is_file():
        size, train_tokens, exact = count_file_tokens(
            train_path, context.tokenizer, score.bytes_per_token, context.args.max_count_bytes
        )
        rows += [
            ("training text", f"{train_path} ({size:,} bytes)"),
            ("training tokens" + ("" if exact else " (estimated from --text's bytes per token)"), train_tokens),
            ("training bytes per token", size / train_tokens),
        ]
    elif train_path is not None:
        rows.append(("training text", f"{train_path} (not found here)"))
    tokens_seen = context.checkpoint.get("tokens_seen")
    if tokens_seen is not None:
        rows.append(("tokens seen in training", tokens_seen))
        if train_tokens:
            rows.append(("epochs over the training text", tokens_seen / train_tokens))
    rows += [
        ("evaluation text (--text)", f"{context.text_path} ({context.num_bytes:,} bytes scored)"),
        ("evaluation tokens", score.tokens),
        ("evaluation bytes per token", score.bytes_per_token),
    ]
    return rows


def plot_curves(context: Context, metrics: list[dict], report: ReportWriter) -> None:
    """Link the run's loss and perplexity curves, or say why there are none."""
    if not metrics:
        report.note(
            f"no {context.run.metrics_path}: no training curves (the checkpoint's run directory has no metrics)"
        )
        return
    try:
        pyplot()
        for path in plot_runs({"train": metrics}, context.args.out):
            report.link_existing(path.name, f"{path.stem} against tokens seen")
    except MissingDependency as error:
        report.note(f"no training curves: {error}")


def result_rows(context: Context, metrics: list[dict], score: TextScore) -> list[dict]:
    """Validation loss and perplexity from the run's metrics, scores on --text, training speed."""
    evaluations = [r for r in metrics if "val_loss" in r]
    results = []
    if evaluations:
        best = min(evaluations, key=lambda r: r["val_loss"])
        final = evaluations[-1]
        results += [
            {"measure": f"best validation loss (step {best['step']}, fixed batches)", "value": best["val_loss"]},
            {"measure": "best validation perplexity", "value": best["val_perplexity"]},
            {"measure": f"final validation perplexity (step {final['step']})", "value": final["val_perplexity"]},
        ]
    results += [
        {"measure": "loss per token on --text (nats)", "value": score.mean_loss},
        {"measure": "perplexity per token on --text", "value": score.perplexity},
        {"measure": "bits per byte on --text", "value": score.bits_per_byte},
    ]
    speeds = [r["tokens_per_second"] for r in metrics if "tokens_per_second" in r]
    if speeds:
        results.append(
            {
                "measure": f"training tokens/s (mean of logged steps; device setting {context.training.device})",
                "value": sum(speeds) / len(speeds),
            }
        )
    return results


def greedy_sample(context: Context, prompt: str) -> str:
    """The model's greedy continuation of ``prompt``, end-of-text tokens left out."""
    model = context.model
    prompt_ids = torch.tensor([context.tokenizer.encode(prompt)], device=next(model.parameters()).device)
    new = generate(model, prompt_ids, context.args.max_new_tokens, temperature=0.0, eos_token_id=context.eos)
    return context.tokenizer.decode([t for t in new[0].tolist() if t != context.eos])


def render(context: Context, report: ReportWriter) -> None:
    report.paragraph("### Architecture")
    rows = architecture_rows(context)
    report.table([{"item": k, "value": v} for k, v in rows], ["item", "value"], "model_card.csv")

    score = score_text(context.model, context.ids, context.num_bytes)
    report.paragraph("### Data and tokenizer")
    rows = data_rows(context, score)
    report.table([{"item": k, "value": v} for k, v in rows], ["item", "value"], "data.csv")

    report.paragraph("### Training curves and results")
    metrics_path = context.run.metrics_path
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else []
    plot_curves(context, metrics, report)
    report.table(result_rows(context, metrics, score), ["measure", "value"], "results.csv")

    prompt = PROMPTS[0]
    report.paragraph("### Greedy sample")
    report.paragraph(f"> {cell(prompt + greedy_sample(context, prompt))}")
