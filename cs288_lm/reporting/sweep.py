"""Section 2, the hyperparameter study: a sweep's results table and its runs' curves overlaid, or
the command that makes a small sweep when ``--sweep`` is not given."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from cs288_lm.analysis import MissingDependency, pyplot
from cs288_lm.common.plots import plot_runs, read_metrics
from cs288_lm.reporting.context import Context
from cs288_lm.reporting.writer import ReportWriter
from cs288_lm.training.run_dir import SWEEP_RESULTS, RunDir

TITLE = "Hyperparameter study"
DEFAULT_SWEEP = (
    "python -m cs288_lm.pipelines.sweep --grid learning_rate=1e-3,3e-3,1e-2 --grid num_layers=2,4 --out-dir out/sweep "
    "-- --max-steps 100 --eval-interval 25 --final-eval-tokens 20000 --num-samples 0"
)


def how_to_sweep(report: ReportWriter) -> None:
    report.paragraph(
        "No sweep given (`--sweep DIR`). The default small sweep (learning rate x layers, six short "
        "runs, a few minutes on a CPU) is"
    )
    report.paragraph(f"    {DEFAULT_SWEEP}")
    report.paragraph("then add `--sweep out/sweep` to this command.")


def read_results(sweep_dir: Path) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the sweep's ``results.csv``."""
    with open(sweep_dir / SWEEP_RESULTS, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def run_metrics(sweep_dir: Path, rows: list[dict]) -> dict[str, list[dict]]:
    """Each run's metrics records, for the runs of ``rows`` whose folder has them."""
    runs = {}
    for row in rows:
        metrics_path = RunDir(sweep_dir / row.get("run", "")).metrics_path
        if row.get("run") and metrics_path.is_file():
            runs[row["run"]] = read_metrics(metrics_path)
    return runs


def render(context: Context, report: ReportWriter) -> None:
    if context.args.sweep is None:
        how_to_sweep(report)
        return
    sweep_dir = Path(context.args.sweep)
    columns, rows = read_results(sweep_dir)
    shutil.copyfile(sweep_dir / SWEEP_RESULTS, context.args.out / "sweep_results.csv")
    report.paragraph(f"From `{sweep_dir}`, best validation loss first:")
    report.table(rows, columns)
    report.paragraph("Table as CSV: [sweep_results.csv](sweep_results.csv)")
    runs = run_metrics(sweep_dir, rows)
    if not runs:
        report.note(f"no run of {sweep_dir} has a metrics.jsonl: no curves")
        return
    try:
        pyplot()
        for path in plot_runs(runs, context.args.out, prefix="sweep_"):
            report.link_existing(path.name, f"every run's {path.stem.removeprefix('sweep_')} overlaid")
    except MissingDependency as error:
        report.note(f"no sweep curves: {error}")
