"""What the token embeddings and hidden states hold (given).

* 2-D maps of the input embeddings of the most frequent tokens: PCA (always, with torch) and
  t-SNE (scikit-learn, optional);
* nearest neighbours by cosine similarity in the input embedding table;
* linear probes: a logistic regression per layer on the hidden state at a word's last token,
  telling nouns from verbs (labels: :func:`cs288_lm.common.qa_data.build_lexicon`). Words, not
  occurrences, are split between training and test (a probe cannot pass by remembering words),
  and each layer's test accuracy is set against the majority baseline (always answering the
  training set's most frequent label).
"""

from __future__ import annotations

import bisect
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from cs288_lm.analysis import pyplot, require
from cs288_lm.analysis.attention import run_with_internals
from cs288_lm.model import TransformerLM
from cs288_lm.models.gpt2_model import GPT2LM
from cs288_lm.models.kv_cache import LanguageModel
from cs288_lm.tokenizer import Tokenizer

if TYPE_CHECKING:  # matplotlib is optional at run time
    from matplotlib.transforms import Bbox

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def input_embedding_parameter(model: LanguageModel) -> Tensor:
    if isinstance(model, TransformerLM):
        return model.token_embeddings.weight
    if isinstance(model, GPT2LM):
        return model.wte.weight
    raise TypeError(f"no known embedding table in {type(model).__name__}")


def input_embeddings(model: LanguageModel) -> Float[Tensor, "vocab d_model"]:
    """The input embedding table of a TransformerLM or GPT2LM (float32, CPU, detached)."""
    return input_embedding_parameter(model).detach().float().cpu()


def output_embeddings(model: LanguageModel) -> Float[Tensor, "vocab d_model"] | None:
    """The output layer's rows (one per token; float32, CPU), or None when tied to the input embeddings."""
    weight = model.output.weight if isinstance(model, TransformerLM) else model.lm_head.weight
    if weight is input_embedding_parameter(model):
        return None
    return weight.detach().float().cpu()


def frequent_tokens(ids: Sequence[int], tokenizer: Tokenizer, count: int) -> list[int]:
    """The ``count`` most frequent ids of ``ids`` that are neither special nor only whitespace."""
    special = set(tokenizer.special_token_ids.values())
    frequencies = Counter(ids)
    chosen = [
        token for token, _ in frequencies.most_common() if token not in special and tokenizer.vocab[token].strip()
    ]
    return chosen[:count]


def token_label(tokenizer: Tokenizer, token: int) -> str:
    """A printable label: leading space as "_" (GPT-2's "Ġ"), newlines as "\\n"."""
    text = tokenizer.decode([token])
    return text.replace("\n", "\\n").replace(" ", "_") or "?"


def pca_2d(points: Float[Tensor, "n d"]) -> tuple[Float[Tensor, "n 2"], list[float]]:
    """The first two principal components of ``points`` and the share of variance each explains."""
    centred = points - points.mean(dim=0, keepdim=True)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    variance = singular.pow(2)
    return centred @ right[:2].T, (variance[:2] / variance.sum()).tolist()


def tsne_2d(points: Float[Tensor, "n d"], seed: int = 0) -> Float[Tensor, "n 2"]:
    """t-SNE to two dimensions (scikit-learn), perplexity min(30, n / 4), PCA initialisation."""
    manifold = require("sklearn.manifold", "scikit-learn", "the t-SNE map")
    perplexity = max(2.0, min(30.0, len(points) / 4))
    tsne = manifold.TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return torch.from_numpy(tsne.fit_transform(points.numpy()).astype(np.float32))


def plot_projection(
    points: Tensor, labels: Sequence[str], title: str, path: Path, axis_names: tuple[str, str] = ("", "")
) -> Path:
    """A scatter of ``points`` with their ``labels``, given in priority order (most frequent token first):
    a label is written only where it overlaps no label already written, so the names stay readable."""
    plt = pyplot()
    figure = projection_figure(plt, points, labels, title, axis_names)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def projection_figure(plt, points: Tensor, labels: Sequence[str], title: str, axis_names: tuple[str, str] = ("", "")):
    """The figure of :func:`plot_projection`."""
    figure, axis = plt.subplots(figsize=(9, 8))
    xy = points.numpy()
    axis.scatter(xy[:, 0], xy[:, 1], s=10, alpha=0.35, color="C0")
    heading = axis.set_title(f"{title}\n")
    axis.set_xlabel(axis_names[0])
    axis.set_ylabel(axis_names[1])
    axis.grid(alpha=0.2)
    axis.set_xlim(axis.get_xlim())  # fixed limits: the points do not move once labels are measured
    axis.set_ylim(axis.get_ylim())
    figure.tight_layout()  # before the labels are placed: their overlaps are measured in the final layout
    shown = _place_labels(figure, axis, xy, labels)
    axis.scatter(xy[shown, 0], xy[shown, 1], s=12, color="C3")  # the points whose label is written
    heading.set_text(f"{title}\n{len(shown)} of {len(labels)} tokens labelled (most frequent first, none overlapping)")
    return figure


def _place_labels(figure, axis, xy: np.ndarray, labels: Sequence[str]) -> list[int]:
    """Annotate the points in order, removing each label whose box would overlap one already placed
    (or leave the axes); returns the indices of the points labelled."""
    renderer = figure.canvas.get_renderer()
    frame = axis.get_window_extent(renderer)
    placed: list[Bbox] = []
    shown: list[int] = []
    for index, ((x, y), label) in enumerate(zip(xy, labels, strict=True)):
        text = axis.annotate(label, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        box = text.get_window_extent(renderer).expanded(1.05, 1.15)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if inside and not any(box.overlaps(other) for other in placed):
            placed.append(box)
            shown.append(index)
        else:
            text.remove()
    return shown


def word_token(tokenizer: Tokenizer, word: str) -> int | None:
    """The id of ``" " + word`` when it is one token (how a word appears inside a sentence), else None."""
    ids = tokenizer.encode(" " + word)
    return ids[0] if len(ids) == 1 else None


def nearest_neighbours(
    embeddings: Float[Tensor, "vocab d"], token: int, k: int = 5, exclude: Sequence[int] = ()
) -> list[tuple[int, float]]:
    """The ``k`` tokens whose embeddings have the highest cosine similarity with ``token``'s (itself excluded)."""
    normalised = torch.nn.functional.normalize(embeddings, dim=-1)
    similarity = normalised @ normalised[token]
    similarity[[token, *exclude]] = -float("inf")
    values, indices = similarity.topk(min(k, len(similarity) - 1 - len(exclude)))
    return list(zip(indices.tolist(), values.tolist(), strict=True))


# ------------------------------------------------------------------------------------------------
# Linear probes
# ------------------------------------------------------------------------------------------------


@dataclass
class ProbeData:
    """Occurrences of labelled words in a token stream: the stream position of each word's last token."""

    ids: list[int]
    positions: list[int]
    labels: list[str]
    words: list[str]


def labelled_word_positions(
    text: str,
    ids: Sequence[int],
    tokenizer: Tokenizer,
    kind_of: Callable[[str], str | None],
    kinds: Sequence[str] = ("noun", "verb"),
    offset: int = 1,
    per_word: int = 10,
    limit: int = 3000,
    seed: int = 0,
) -> ProbeData:
    """Find the words of ``text`` whose kind (``kind_of(word)``) is in ``kinds``.

    ``ids`` is ``text`` encoded, preceded by ``offset`` other ids (an end-of-text token); a word is
    kept when one of its tokens ends exactly where it ends. At most ``per_word`` occurrences of a
    word and ``limit`` in all are kept (a seeded random choice), so frequent words do not dominate.
    """
    ends, total = [], 0
    for token in ids[offset:]:
        total += len(tokenizer.vocab[token])
        ends.append(total)
    char_to_byte = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in text])])
    found: dict[str, list[int]] = defaultdict(list)
    kind_by_word: dict[str, str] = {}
    for match in _WORD.finditer(text):
        word = match.group()
        kind = kind_of(word)
        if kind is None or kind not in kinds:
            continue
        end = int(char_to_byte[match.end()])
        index = bisect.bisect_left(ends, end)
        if index < len(ends) and ends[index] == end:
            found[word].append(index + offset)
            kind_by_word[word] = kind
    rng = random.Random(seed)
    occurrences = []
    for word in sorted(found):
        positions = found[word]
        occurrences += [
            (p, word) for p in (rng.sample(positions, per_word) if len(positions) > per_word else positions)
        ]
    if len(occurrences) > limit:
        occurrences = rng.sample(occurrences, limit)
    occurrences.sort()
    return ProbeData(
        list(ids), [p for p, _ in occurrences], [kind_by_word[w] for _, w in occurrences], [w for _, w in occurrences]
    )


@torch.no_grad()
def hidden_states_at(
    model: LanguageModel, ids: Sequence[int], positions: Sequence[int], batch_size: int = 16
) -> list[Tensor]:
    """The residual stream at stream ``positions`` after the embeddings and after each layer:
    one (len(positions), d_model) tensor per layer. The stream is read in consecutive windows of the
    model's context length, so a position sees the tokens before it in its window."""
    context = model.context_length
    tokens = torch.tensor(list(ids), dtype=torch.long)
    wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # window -> (index in positions, offset)
    for index, position in enumerate(positions):
        wanted[position // context].append((index, position % context))
    collected: list[Tensor] | None = None
    windows = sorted(wanted)
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        length = min(context, max(len(tokens) - w * context for w in chunk))
        rows = [tokens[w * context : w * context + context] for w in chunk]
        # A last, shorter window is padded with its own first token; padding comes after, so causal
        # attention keeps it out of the real positions.
        batch = torch.stack(
            [torch.cat([r, r[:1].repeat(length - len(r))]) if len(r) < length else r[:length] for r in rows]
        )
        hidden = run_with_internals(model, batch, keep_attention=False).hidden
        if collected is None:
            collected = [torch.zeros(len(positions), h.shape[-1]) for h in hidden]
        for row, window in enumerate(chunk):
            for index, offset in wanted[window]:
                for layer, states in enumerate(hidden):
                    collected[layer][index] = states[row, offset]
    if collected is None:
        raise ValueError("no positions to read hidden states at")
    return collected


@dataclass(frozen=True)
class ProbeResult:
    layer: int
    accuracy: float
    baseline: float
    train_examples: int
    test_examples: int


def linear_probe(
    features: Sequence[np.ndarray], labels: Sequence[str], groups: Sequence[str], test_share: float = 0.3, seed: int = 0
) -> list[ProbeResult]:
    """A logistic regression per feature set (standardised features), trained and tested on disjoint
    ``groups`` (words); test accuracy against the majority label of the training set."""
    model_selection = require("sklearn.model_selection", "scikit-learn", "the linear probe")
    linear_model = require("sklearn.linear_model", "scikit-learn", "the linear probe")
    pipeline = require("sklearn.pipeline", "scikit-learn", "the linear probe")
    preprocessing = require("sklearn.preprocessing", "scikit-learn", "the linear probe")
    label_array, group_array = np.asarray(labels), np.asarray(groups)
    if len(set(label_array.tolist())) < 2:
        raise ValueError(f"a probe needs two labels among its examples, got {sorted(set(label_array.tolist()))}")
    if len(set(group_array.tolist())) < 4:
        raise ValueError(f"a probe needs at least 4 distinct words to split, got {len(set(group_array.tolist()))}")
    splitter = model_selection.GroupShuffleSplit(n_splits=1, test_size=test_share, random_state=seed)
    train, test = next(splitter.split(label_array, label_array, group_array))
    majority = Counter(label_array[train].tolist()).most_common(1)[0][0]
    baseline = float(np.mean(label_array[test] == majority))
    results = []
    for layer, x in enumerate(features):
        classifier = pipeline.make_pipeline(
            preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=2000, C=0.1)
        )
        classifier.fit(x[train], label_array[train])
        accuracy = float(np.mean(classifier.predict(x[test]) == label_array[test]))
        results.append(ProbeResult(layer, accuracy, baseline, len(train), len(test)))
    return results
