"""The given programs' figures: titles, axis labels, legends that name what they show, colour bars,
readable token labels and maps whose labels do not overlap."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cs288_lm.analysis.attention import MAX_TICK_LABELS, TICK_FONT_SIZE, attention_layer_figure
from cs288_lm.analysis.embeddings import projection_figure
from cs288_lm.common.plots import curves_figure, plot_runs


def metrics(offset: float = 0.0) -> list[dict]:
    """Records as the trainer logs them: training loss every step, validation every other one."""
    records = []
    for step in range(1, 9):
        record = {"step": step, "tokens": 512 * step, "train_loss": 8.0 - step / 4 + offset}
        if step % 2 == 0:
            record |= {"val_loss": 8.1 - step / 4 + offset, "val_perplexity": math.exp(8.1 - step / 4 + offset)}
        records.append(record)
    return records


def legend_texts(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_one_runs_curves_have_a_title_axis_labels_and_a_legend_naming_each_curve():
    loss = curves_figure(plt, {"train": metrics()}, "loss")
    assert legend_texts(loss) == ["training loss (mean over each log interval)", "validation loss"]
    perplexity = curves_figure(plt, {"train": metrics()}, "perplexity")
    assert legend_texts(perplexity) == ["validation perplexity"]
    for figure in (loss, perplexity):
        axes = figure.axes[0]
        assert axes.get_title() and axes.get_xlabel() == "tokens seen" and axes.get_ylabel()


def test_several_runs_name_each_run_once_and_each_line_style_once(tmp_path):
    runs = {"learning_rate=1e-3": metrics(), "learning_rate=1e-2": metrics(0.5)}
    figure = curves_figure(plt, runs, "loss")
    assert legend_texts(figure) == [*runs, "training loss (mean over each log interval)", "validation loss"]
    assert "2 runs" in figure.axes[0].get_title()
    assert [path.name for path in plot_runs(runs, tmp_path, prefix="sweep_")] == [
        "sweep_loss.png",
        "sweep_perplexity.png",
    ]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in tmp_path.iterdir())


def attention(heads: int, tokens: int) -> torch.Tensor:
    torch.manual_seed(0)
    causal = torch.full((tokens, tokens), float("-inf")).triu(1)
    return torch.softmax(torch.randn(heads, tokens, tokens) + causal, dim=-1)


@pytest.mark.parametrize(("heads", "tokens"), [(4, 20), (6, 40)])
def test_attention_maps_have_a_colour_bar_and_readable_token_labels_on_the_outer_axes(heads, tokens):
    labels = [f"_word{i}" for i in range(tokens)]
    figure = attention_layer_figure(plt, attention(heads, tokens), labels, 0, [f"kind {h}" for h in range(heads)])
    colour_bars = [axes for axes in figure.axes if axes.get_ylabel() == "attention weight"]
    assert len(colour_bars) == 1
    panels = [axes for axes in figure.axes if axes.images]
    assert len(panels) == heads
    step = math.ceil(tokens / MAX_TICK_LABELS)
    expected = labels[::step]
    for head, axes in enumerate(panels):
        shown_y = [label.get_text() for label in axes.get_yticklabels()]
        shown_x = [label.get_text() for label in axes.get_xticklabels()]
        assert shown_y == (expected if head % 4 == 0 else [""] * len(expected))  # queries on the first column
        assert shown_x == (expected if head + 4 >= heads else [""] * len(expected))  # keys on the bottom panels
        assert all(label.get_fontsize() >= TICK_FONT_SIZE for label in axes.get_xticklabels())
        assert axes.get_title() == f"head {head}: kind {head}"


def test_a_projection_labels_the_most_frequent_tokens_first_and_no_two_labels_overlap():
    torch.manual_seed(0)
    points = torch.randn(150, 2)  # a dense cloud: every label cannot fit
    labels = [f"_token{i}" for i in range(150)]
    figure = projection_figure(plt, points, labels, "t-SNE of input embeddings", ("t-SNE 1", "t-SNE 2"))
    axes = figure.axes[0]
    texts = [text for text in axes.texts if text.get_text() in labels]
    assert texts[0].get_text() == "_token0"  # the most frequent is always labelled
    assert 10 <= len(texts) < 150
    assert f"{len(texts)} of 150 tokens labelled" in axes.get_title()
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("t-SNE 1", "t-SNE 2")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in texts]
    frame = axes.get_window_extent(renderer)
    for first, second in itertools.combinations(boxes, 2):
        assert not first.overlaps(second)
    assert all(frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1 for box in boxes)
