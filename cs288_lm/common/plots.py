"""PNG plots of training curves (matplotlib is optional: without it, plotting is skipped with a note)."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines metrics file."""
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "[plots] matplotlib is not installed: no PNG plots (pip install -r requirements-tools.txt)", file=sys.stderr
        )
        return None
    return plt


# The curves of each plot: (metrics key, name in legends, line style, marker). A logged training loss is
# the mean over the steps since the previous record, so it lags the validation loss measured at the step.
CURVES = {
    "loss": (
        ("train_loss", "training loss (mean over each log interval)", "-", None),
        ("val_loss", "validation loss", "--", "o"),
    ),
    "perplexity": (("val_perplexity", "validation perplexity", "-", "o"),),
}
Y_LABELS = {"loss": "cross-entropy loss (nats/token)", "perplexity": "validation perplexity (log scale)"}
TITLES = {"loss": "Training and validation loss", "perplexity": "Validation perplexity"}


def plot_runs(runs: Mapping[str, Sequence[dict]], out_dir: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Plot loss and perplexity against tokens for one or several runs (overlaid, one colour each).

    Writes ``{prefix}loss.png`` (training loss solid, validation loss dashed with markers) and
    ``{prefix}perplexity.png`` (validation perplexity) to ``out_dir``; returns the paths written
    (none without matplotlib). With several runs, the legend names each run's colour and each curve's
    line style once.
    """
    plt = _pyplot()
    if plt is None:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CURVES:
        figure = curves_figure(plt, runs, name)
        path = out_dir / f"{prefix}{name}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def curves_figure(plt, runs: Mapping[str, Sequence[dict]], name: str):
    """The figure of :func:`plot_runs` for ``name`` (a key of :data:`CURVES`)."""
    curves = CURVES[name]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, records in enumerate(runs.values()):
        for key, curve, style, marker in curves:
            points = [(r["tokens"], r[key]) for r in records if key in r and math.isfinite(r[key])]
            if points:
                x, y = zip(*points, strict=True)
                label = curve if len(runs) == 1 else None
                axes.plot(x, y, style, color=f"C{index % 10}", marker=marker, markersize=3, label=label)
    axes.set_xlabel("tokens seen")
    axes.set_ylabel(Y_LABELS[name])
    if name == "perplexity":
        axes.set_yscale("log")
    axes.set_title(TITLES[name] if len(runs) == 1 else f"{TITLES[name]} of {len(runs)} runs")
    axes.grid(alpha=0.3)
    if len(runs) == 1:
        axes.legend(fontsize=8)
    else:
        axes.legend(handles=_run_legend(runs, curves), fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def _run_legend(runs: Mapping[str, Sequence[dict]], curves: Sequence[tuple]) -> list:
    """Legend entries: one colour per run, then one line style per curve (when there are several)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{index % 10}", label=run) for index, run in enumerate(runs)]
    if len(curves) > 1:
        handles += [
            Line2D([], [], color="black", linestyle=style, marker=marker, markersize=3, label=curve)
            for _, curve, style, marker in curves
        ]
    return handles
