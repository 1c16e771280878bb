"""Section 4, attention: head scores (previous token, first token, self, induction) and their
labels, the loss change when each head is ablated, and heatmaps per layer and head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cs288_lm.analysis import attention as attention_analysis
from cs288_lm.analysis import embeddings as embedding_analysis
from cs288_lm.reporting.context import Context
from cs288_lm.reporting.writer import ReportWriter

TITLE = "Attention"
MAX_WINDOW = 128  # tokens of a text window, at most
MAX_PERIOD = 50  # random tokens repeated twice for the induction score, at most
HEAD_COLUMNS = (
    "layer",
    "head",
    *attention_analysis.HEAD_KINDS,
    "label",
    "ablation_loss_change_text",
    "ablation_loss_change_repeat",
)
HEAD_HEADERS = (
    "layer",
    "head",
    "previous token",
    "first token",
    "self",
    "induction",
    "label",
    "ablation: loss change, text",
    "ablation: loss change, repeat",
)


@dataclass
class AttentionStudy:
    """What the section measures: head scores on text windows and repeated random sequences, and
    the losses with each head ablated (``*_change``: layers x heads, positive when the head helps)."""

    windows: Tensor  # (windows, length) token ids of --text, each from a story start
    repeated: Tensor  # (sequences, 2 period + 1): end-of-text, then period random tokens twice
    period: int
    scores: attention_analysis.HeadScores
    labels: list[list[str]]  # [layer][head]
    text_change: Tensor
    repeat_change: Tensor
    base_text: float  # loss on the text windows, no head ablated
    base_repeat: float  # loss on the second copy
    first_copy_loss: float


def story_windows(context: Context, length: int, count: int) -> torch.Tensor:
    """Up to ``count`` windows of ``length`` scoring ids, each starting at an end-of-text token (a
    story start); consecutive windows of the text when there are too few story starts."""
    ids = context.ids
    starts = [i for i, token in enumerate(ids) if token == context.eos and i + length <= len(ids)][:count]
    if len(starts) < count:
        starts += [s for s in range(0, len(ids) - length + 1, length) if s not in starts][: count - len(starts)]
    if not starts:
        length = len(ids)
        starts = [0]
    return torch.tensor([ids[s : s + length] for s in starts])


def measure(context: Context) -> AttentionStudy:
    model, args, config = context.model, context.args, context.config
    windows = story_windows(context, min(config.context_length, MAX_WINDOW), args.attention_windows)
    text_internals = attention_analysis.run_with_internals(model, windows, keep_hidden=False)
    period = min((config.context_length - 1) // 2, MAX_PERIOD)
    special = list(context.tokenizer.special_token_ids.values())
    first = context.eos if context.eos is not None else 0
    repeated = attention_analysis.repeated_random_tokens(
        config.vocab_size, period, args.attention_windows, first, args.seed, special
    )
    repeat_internals = attention_analysis.run_with_internals(model, repeated[:, :-1], keep_hidden=False)
    scores = attention_analysis.head_scores(text_internals.attention, repeat_internals.attention, period)
    base_text, text_change = attention_analysis.ablation_losses(model, windows)
    second_copy = slice(period, None)  # targets of the second copy: positions period .. 2 period - 1
    base_repeat, repeat_change = attention_analysis.ablation_losses(model, repeated, second_copy)
    first_copy_loss = attention_analysis.mean_loss(repeat_internals.logits, repeated[:, 1:], slice(0, period))
    return AttentionStudy(
        windows=windows,
        repeated=repeated,
        period=period,
        scores=scores,
        labels=scores.labels(),
        text_change=text_change,
        repeat_change=repeat_change,
        base_text=base_text,
        base_repeat=base_repeat,
        first_copy_loss=first_copy_loss,
    )


def describe(context: Context, study: AttentionStudy, report: ReportWriter) -> None:
    """What the scores and ablations are, and the in-context copying they show."""
    windows, period = study.windows, study.period
    report.paragraph(
        f"Scores are mean attention weights: on {len(windows)} windows of {windows.shape[1]} tokens of "
        f"--text starting at a story (previous token: key i - 1; first token: key 0; self: key i), and on "
        f"{len(study.repeated)} sequences of an end-of-text token and {period} random tokens repeated twice "
        f"(induction: key t - {period} + 1, the token after the earlier occurrence). A head is labelled "
        f"with its highest score when that is at least {attention_analysis.LABEL_THRESHOLD}, else 'mixed'. "
        "Ablation sets one head's output to zero; the change in loss is on the same text windows and on "
        "the second copy of the repeated sequences (positive: the head helps)."
    )
    report.paragraph(
        f"In-context copying: on the repeated random sequences the model's loss is {study.first_copy_loss:.2f} "
        f"nats per token on the first copy and {study.base_repeat:.2f} on the second (ln vocab = "
        f"{math.log(context.config.vocab_size):.2f}); loss on the text windows {study.base_text:.2f}."
    )


def head_rows(study: AttentionStudy) -> list[dict]:
    """One row per layer and head: its scores, label and ablation losses (see :data:`HEAD_COLUMNS`)."""
    layers, heads = len(study.labels), len(study.labels[0])
    score_values = study.scores.as_dict()
    return [
        {
            "layer": layer,
            "head": head,
            **{kind: float(values[layer, head]) for kind, values in score_values.items()},
            "label": study.labels[layer][head],
            "ablation_loss_change_text": float(study.text_change[layer, head]),
            "ablation_loss_change_repeat": float(study.repeat_change[layer, head]),
        }
        for layer in range(layers)
        for head in range(heads)
    ]


def findings(rows: list[dict]) -> list[str]:
    """The labels counted, the strongest head of each kind, the heads whose ablation hurts most."""
    counts = {label: sum(row["label"] == label for row in rows) for label in dict.fromkeys(r["label"] for r in rows)}
    strongest = []
    for kind in attention_analysis.HEAD_KINDS:
        best = max(rows, key=lambda row, kind=kind: row[kind])
        strongest.append(f"{kind} layer {best['layer']} head {best['head']} ({best[kind]:.2f})")
    most = max(rows, key=lambda row: row["ablation_loss_change_text"])
    copier = max(rows, key=lambda row: row["ablation_loss_change_repeat"])
    return [
        f"Labels: {', '.join(f'{count} {label}' for label, count in counts.items())}.",
        f"Strongest head of each kind: {'; '.join(strongest)}.",
        f"Ablating layer {most['layer']} head {most['head']} ({most['label']}) hurts most on text: "
        f"+{most['ablation_loss_change_text']:.3f} nats per token.",
        f"Ablating layer {copier['layer']} head {copier['head']} (induction score {copier['induction']:.2f}) hurts "
        f"most on the second copy: {copier['ablation_loss_change_repeat']:+.3f} nats per token.",
    ]


def heatmaps(context: Context, study: AttentionStudy, report: ReportWriter) -> None:
    """One figure per layer: each head's attention on the first tokens of a story."""
    sample = study.windows[:1, : min(context.args.heatmap_tokens, study.windows.shape[1])]
    sample_attention = attention_analysis.run_with_internals(context.model, sample, keep_hidden=False).attention
    token_labels = [embedding_analysis.token_label(context.tokenizer, t) for t in sample[0].tolist()]
    report.paragraph(f"Heatmaps on the first {sample.shape[1]} tokens of a story:")
    for layer, head_titles in enumerate(study.labels):
        report.figure(
            lambda path, layer=layer, titles=head_titles: attention_analysis.plot_attention_layer(
                sample_attention[layer][0], token_labels, layer, path, titles
            ),
            f"attention_layer{layer}.png",
            f"attention weights of layer {layer}",
        )


def render(context: Context, report: ReportWriter) -> None:
    study = measure(context)
    describe(context, study, report)
    rows = head_rows(study)
    report.table(rows, HEAD_COLUMNS, "attention_heads.csv", headers=HEAD_HEADERS)
    for sentence in findings(rows):
        report.add(f"- {sentence}")
    report.add()
    report.figure(
        lambda path: attention_analysis.plot_head_scores(study.scores, study.text_change, path),
        "head_scores.png",
        "head scores and ablation per layer and head",
    )
    heatmaps(context, study, report)
