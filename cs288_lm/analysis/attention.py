"""What the attention heads do: their weights, scores that name their pattern, and ablation (given).

:func:`run_with_internals` re-runs a model's forward pass with the pieces that
:class:`~cs288_lm.models.kv_cache.IncrementalDecoder` uses (embeddings, each layer's queries, keys and
values, the rest of each layer, the output layer), computing the attention weights explicitly so
that they can be kept, and a head's output can be zeroed (ablated). It works for
:class:`~cs288_lm.model.TransformerLM` and :class:`~cs288_lm.models.gpt2_model.GPT2LM`, and gives
``model(tokens)`` when nothing is ablated.

Head scores are mean attention weights on one diagonal of the (query, key) map:

* previous token: query i on key i - 1 (i >= 1), on a natural text;
* first token ("attention sink"): query i on key 0 (i >= 1), on a natural text;
* self: query i on key i (i >= 1; query 0 can only attend to itself), on a natural text;
* induction: on an end-of-text token followed by a random token sequence of length L repeated
  twice, query t in the second copy on key t - L + 1, the token that followed the current token's
  earlier occurrence (Olsson et al., 2022). A head that does this lets the model copy.

A uniform head scores about ``(ln T) / T`` on each (0.04 for T = 128). A head is labelled with its
highest score when that is at least :data:`LABEL_THRESHOLD`, and "mixed" otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from cs288_lm.analysis import pyplot
from cs288_lm.common.modes import eval_mode
from cs288_lm.model import check_sequence_length
from cs288_lm.models.kv_cache import LanguageModel, merge_heads, model_parts

LABEL_THRESHOLD = 0.3
HEAD_KINDS = ("previous-token", "first-token", "self", "induction")


@dataclass
class Internals:
    """A forward pass with its attention weights and hidden states.

    ``attention``: one (batch, heads, seq, seq) tensor per layer (query, key), rows summing to 1;
    ``hidden``: the residual stream, (batch, seq, d_model), after the embeddings and after each
    layer (num_layers + 1 tensors; the last is before the final norm).
    """

    logits: Float[Tensor, "batch seq vocab"]
    attention: list[Tensor]
    hidden: list[Tensor]


def num_layers_and_heads(model: LanguageModel) -> tuple[int, int]:
    parts = model_parts(model)
    return len(parts.layers), parts.num_heads


@torch.no_grad()
def run_with_internals(
    model: LanguageModel,
    tokens: Int[Tensor, "batch seq"],
    ablate: Iterable[tuple[int, int]] = (),
    keep_attention: bool = True,
    keep_hidden: bool = True,
) -> Internals:
    """The forward pass of ``model`` on ``tokens`` with the outputs of the ``(layer, head)`` pairs
    in ``ablate`` set to zero; keeps attention weights and hidden states when asked."""
    check_sequence_length(tokens, model.context_length)
    parts = model_parts(model)
    ablated: dict[int, list[int]] = {}
    for layer, head in ablate:
        if not (0 <= layer < len(parts.layers) and 0 <= head < parts.num_heads):
            raise ValueError(f"no head {head} in layer {layer}: the model has {len(parts.layers)} x {parts.num_heads}")
        ablated.setdefault(layer, []).append(head)
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    seq = tokens.shape[1]
    positions = torch.arange(seq, device=device).expand(tokens.shape[0], seq)
    causal = torch.ones(seq, seq, dtype=torch.bool, device=device).tril()
    attention, hidden = [], []
    with eval_mode(model):
        x = parts.embed(tokens, positions)
        if keep_hidden:
            hidden.append(x.float().cpu())
        for index in range(len(parts.layers)):
            q, k, v = parts.qkv(index, x, positions)
            scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
            weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
            heads_out = weights.to(v.dtype) @ v
            if index in ablated:
                heads_out[:, ablated[index]] = 0
            x = parts.finish_layer(index, x, merge_heads(heads_out))
            if keep_attention:
                attention.append(weights.cpu())
            if keep_hidden:
                hidden.append(x.float().cpu())
        logits = parts.logits(x)
    return Internals(logits, attention, hidden)


def diagonal_score(
    attention: Float[Tensor, "layers batch heads seq seq"], offset: int, first_query: int = 1
) -> Float[Tensor, "layers heads"]:
    """Mean weight of query i on key i - offset, over queries ``i >= max(first_query, offset)`` and the batch."""
    seq = attention.shape[-1]
    queries = torch.arange(max(first_query, offset), seq)
    if len(queries) == 0:
        raise ValueError(f"no query at offset {offset} from {first_query} in a sequence of {seq}")
    return attention[..., queries, queries - offset].mean(dim=(1, 3))


def first_token_score(attention: Float[Tensor, "layers batch heads seq seq"]) -> Float[Tensor, "layers heads"]:
    """Mean weight of queries i >= 1 on key 0."""
    return attention[..., 1:, 0].mean(dim=(1, 3))


def repeated_random_tokens(
    vocab_size: int, length: int, batch: int, first_token: int, seed: int = 0, exclude: Sequence[int] = ()
) -> Int[Tensor, "batch seq"]:
    """``first_token`` followed by a random sequence of ``length`` tokens repeated twice: (batch, 1 + 2 length).

    Tokens are drawn uniformly without replacement within a row (so the only repeats are the
    copy), never from ``exclude`` (special tokens) nor ``first_token``.
    """
    excluded = {*exclude, first_token}
    allowed = torch.tensor([t for t in range(vocab_size) if t not in excluded])
    if len(allowed) < length:
        raise ValueError(f"a random sequence of {length} distinct tokens needs a vocabulary of at least that size")
    generator = torch.Generator().manual_seed(seed)
    rows = [allowed[torch.randperm(len(allowed), generator=generator)[:length]] for _ in range(batch)]
    random_part = torch.stack(rows)
    return torch.cat([torch.full((batch, 1), first_token), random_part, random_part], dim=1)


def induction_score(
    attention: Float[Tensor, "layers batch heads seq seq"], length: int
) -> Float[Tensor, "layers heads"]:
    """On :func:`repeated_random_tokens` of ``length``: mean weight of the second copy's queries on
    the token after their earlier occurrence (key t - length + 1)."""
    return diagonal_score(attention, offset=length - 1, first_query=length + 1)


@dataclass
class HeadScores:
    """Every head's scores, (layers, heads) each, and their labels."""

    previous_token: Tensor
    first_token: Tensor
    self_attention: Tensor
    induction: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return dict(
            zip(HEAD_KINDS, (self.previous_token, self.first_token, self.self_attention, self.induction), strict=True)
        )

    def labels(self, threshold: float = LABEL_THRESHOLD) -> list[list[str]]:
        stacked = torch.stack(list(self.as_dict().values()))  # (kinds, layers, heads)
        best, kind = stacked.max(dim=0)
        return [
            [
                HEAD_KINDS[int(kind[layer, head])] if best[layer, head] >= threshold else "mixed"
                for head in range(best.shape[1])
            ]
            for layer in range(best.shape[0])
        ]


def head_scores(text_attention: list[Tensor], repeat_attention: list[Tensor], length: int) -> HeadScores:
    """Scores from the attention on a natural text and on a repeated random sequence of ``length``."""
    text, repeat = torch.stack(text_attention), torch.stack(repeat_attention)
    return HeadScores(
        previous_token=diagonal_score(text, 1),
        first_token=first_token_score(text),
        self_attention=diagonal_score(text, 0),
        induction=induction_score(repeat, length),
    )


def mean_loss(logits: Tensor, targets: Tensor, positions: slice = slice(None)) -> float:
    """Cross-entropy (nats) of next-token ``targets`` over the chosen positions of every row."""
    logits, targets = logits[:, positions].float(), targets[:, positions].to(logits.device)
    return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten()))


@torch.no_grad()
def ablation_losses(
    model: LanguageModel, tokens: Int[Tensor, "batch seq"], positions: slice = slice(None)
) -> tuple[float, Float[Tensor, "layers heads"]]:
    """The loss of predicting ``tokens[:, 1:]`` (over ``positions`` of the targets), and its change
    when each head alone is ablated (positive: the head helps)."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    base = mean_loss(
        run_with_internals(model, inputs, keep_attention=False, keep_hidden=False).logits, targets, positions
    )
    layers, heads = num_layers_and_heads(model)
    change = torch.zeros(layers, heads)
    for layer in range(layers):
        for head in range(heads):
            logits = run_with_internals(model, inputs, [(layer, head)], keep_attention=False, keep_hidden=False).logits
            change[layer, head] = mean_loss(logits, targets, positions) - base
    return base, change


# Heatmap tick labels: at most this many per axis (every k-th token beyond), at this font size.
MAX_TICK_LABELS = 32
TICK_FONT_SIZE = 7


def tick_positions(count: int, most: int = MAX_TICK_LABELS) -> list[int]:
    """Every k-th of ``count`` positions, k the smallest step that keeps at most ``most`` of them."""
    return list(range(0, count, math.ceil(count / most))) if count else []


def plot_attention_layer(
    weights: Float[Tensor, "heads seq seq"],
    labels: Sequence[str],
    layer: int,
    path: Path,
    scores: Sequence[str] | None = None,
) -> Path:
    """One PNG with every head's map of one layer side by side (query rows, key columns), a shared
    colour bar, and the tokens on the outer axes (every k-th when there are many); ``scores[head]``,
    if given, follows each head's title."""
    plt = pyplot()
    figure = attention_layer_figure(plt, weights, labels, layer, scores)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def attention_layer_figure(
    plt, weights: Float[Tensor, "heads seq seq"], labels: Sequence[str], layer: int, scores: Sequence[str] | None = None
):
    """The figure of :func:`plot_attention_layer`."""
    heads = weights.shape[0]
    columns = min(heads, 4)
    rows = math.ceil(heads / columns)
    ticks = tick_positions(len(labels))
    size = 2.2 + 0.1 * len(ticks)  # room for the tick labels
    figure, axes = plt.subplots(
        rows, columns, figsize=(size * columns + 1.0, size * rows + 1.4), squeeze=False, layout="constrained"
    )
    image = None
    for head in range(rows * columns):
        axis = axes[head // columns][head % columns]
        if head >= heads:
            axis.axis("off")
            continue
        image = axis.imshow(weights[head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        title = f"head {head}"
        if scores is not None:
            title += f": {scores[head]}"
        axis.set_title(title, fontsize=9)
        bottom = head + columns >= heads  # no panel below: this one shows the key tokens
        axis.set_xticks(ticks, [labels[i] for i in ticks] if bottom else [], rotation=90, fontsize=TICK_FONT_SIZE)
        first = head % columns == 0
        axis.set_yticks(ticks, [labels[i] for i in ticks] if first else [], fontsize=TICK_FONT_SIZE)
        if bottom:
            axis.set_xlabel("key (attended token)", fontsize=8)
        if first:
            axis.set_ylabel("query (attending token)", fontsize=8)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    every = "" if len(ticks) == len(labels) else f"; one token in {ticks[1]} labelled"
    figure.suptitle(f"Attention weights of layer {layer} ({len(labels)} tokens{every}; _ is a space)", fontsize=10)
    return figure


def plot_head_scores(scores: HeadScores, ablation: Tensor, path: Path) -> Path:
    """Layers x heads grids: the four scores and the loss change when ablating each head."""
    plt = pyplot()
    panels = [*scores.as_dict().items(), ("ablation: loss change (nats)", ablation)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for axis, (name, values) in zip(axes, panels, strict=True):
        array = values.numpy()
        is_score = not name.startswith("ablation")
        limit = max(float(abs(array).max()), 1e-6)
        image = axis.imshow(
            array,
            cmap="viridis" if is_score else "coolwarm",
            vmin=0.0 if is_score else -limit,
            vmax=1.0 if is_score else limit,
        )
        for layer in range(array.shape[0]):
            for head in range(array.shape[1]):
                value = float(array[layer, head])
                dark = value < 0.6 if is_score else abs(value) > 0.6 * limit  # the cell's colour is dark
                colour = "white" if dark else "black"
                axis.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("head")
        axis.set_ylabel("layer")
        axis.set_xticks(range(array.shape[1]))
        axis.set_yticks(range(array.shape[0]))
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(
        "Head scores (mean attention on the pattern) and the loss change when a head is ablated", fontsize=10
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
