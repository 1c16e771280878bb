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


def plot_runs(runs: Mapping[str, Sequence[dict]], out_dir: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Plot loss and perplexity against tokens for one or several runs (overlaid, one colour each).

    Writes ``{prefix}loss.png`` (train and validation loss) and ``{prefix}perplexity.png``
    (validation perplexity) to ``out_dir``; returns the paths written (none without matplotlib).
    """
    plt = _pyplot()
    if plt is None:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, keys, ylabel in (
        ("loss", ("train_loss", "val_loss"), "cross-entropy loss (nats/token)"),
        ("perplexity", ("val_perplexity",), "validation perplexity"),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for index, (label, records) in enumerate(runs.items()):
            colour = f"C{index % 10}"
            for key in keys:
                points = [(r["tokens"], r[key]) for r in records if key in r and math.isfinite(r[key])]
                if points:
                    style = "-" if key != "val_loss" or len(keys) == 1 else "--"
                    marker = "o" if key.startswith("val") else None
                    x, y = zip(*points)
                    axes.plot(x, y, style, color=colour, marker=marker, markersize=3, label=f"{label} {key}")
        axes.set_xlabel("tokens seen")
        axes.set_ylabel(ylabel)
        if name == "perplexity":
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / f"{prefix}{name}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written
