"""Run a grid of pretraining experiments and summarise them (learning rate, batch size, depth, width...).

    python -m cs288_lm.pipelines.sweep --grid learning_rate=1e-3,3e-3,1e-2 --grid num_layers=2,4 \\
        --out-dir out/sweep -- --max-steps 200 --eval-interval 50

Every combination of the ``--grid`` values is one run of :mod:`cs288_lm.pipelines.pretrain`, with the
settings after ``--`` shared by all and its own folder under ``--out-dir``. The sweep writes
``results.csv`` and ``results.md`` (one row per run, best validation loss first) and
``sweep_loss.png`` / ``sweep_perplexity.png`` with every run's curves overlaid.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
import time
from pathlib import Path

from cs288_lm.common.plots import plot_runs
from cs288_lm.training.run_dir import SWEEP_RESULTS, RunDir
from cs288_lm.training.settings import HelpFormatter, config_settings
from cs288_lm.training.train_config import TrainConfig, parse_train_config, train_parser
from cs288_lm.training.trainer import TrainingDiverged, run

COLUMNS = ["run", "best_val_loss", "final_val_loss", "final_val_perplexity", "tokens_per_second", "seconds", "status"]


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["learning_rate=1e-3,3e-3"]`` -> ``[("learning_rate", ["1e-3", "3e-3"])]``."""
    grid = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if not name or not values:
            raise ValueError(f"--grid expects name=value1,value2,..., got {spec!r}")
        grid.append((name.strip().replace("-", "_"), [v.strip() for v in values.split(",") if v.strip()]))
    return grid


def run_name(assignment: dict[str, str]) -> str:
    return "_".join(f"{name}={value}" for name, value in assignment.items()) or "base"


def run_config(assignment: dict[str, str], shared: list[str], out_dir: Path) -> TrainConfig:
    """The settings of one run: the shared flags, then the run's grid values, in its own folder
    (parsed as ``python -m cs288_lm.pipelines.pretrain`` parses them; bad settings exit with code 2)."""
    flags = [item for key, value in assignment.items() for item in (f"--{key.replace('_', '-')}", value)]
    parser = train_parser("The settings of one run of the sweep.")
    return parse_train_config(parser, [*shared, *flags, "--out-dir", str(out_dir / run_name(assignment))])


def run_one(name: str, assignment: dict[str, str], config: TrainConfig) -> dict:
    start = time.perf_counter()
    row: dict = {"run": name, **assignment}
    try:
        summary = run(config)
        row["status"] = "ok"
        row["best_val_loss"] = summary["best_val_loss"]
    except TrainingDiverged as error:
        row["status"] = f"diverged: {error}".split(";")[0]
        row["best_val_loss"] = math.inf
    row["seconds"] = time.perf_counter() - start
    run_dir = RunDir(config.out_dir)
    metrics = run_dir.read_metrics() if run_dir.metrics_path.is_file() else []
    evaluations = [r for r in metrics if "val_loss" in r]
    if evaluations:
        row["final_val_loss"] = evaluations[-1]["val_loss"]
        row["final_val_perplexity"] = evaluations[-1]["val_perplexity"]
    speeds = [r["tokens_per_second"] for r in metrics if "tokens_per_second" in r]
    if speeds:
        row["tokens_per_second"] = sum(speeds) / len(speeds)
    row["metrics"] = metrics
    return row


def write_tables(rows: list[dict], grid_names: list[str], out_dir: Path) -> None:
    columns = [COLUMNS[0], *grid_names, *COLUMNS[1:]]
    rows = sorted(rows, key=lambda r: r.get("best_val_loss", math.inf))

    def cell(row: dict, column: str) -> str:
        value = row.get(column, "")
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    with open(out_dir / SWEEP_RESULTS, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows([cell(row, column) for column in columns] for row in rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row, column) for column in columns) + " |" for row in rows]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Flags after -- go to every run: see python -m cs288_lm.pipelines.pretrain --help.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        help="name=v1,v2,... a pretrain setting and its values (repeat for more; default: none, one run)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path("out/sweep"), help="one folder per run, and the tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    shared = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parser.parse_args(own)
    try:
        grid = parse_grid(args.grid)
    except ValueError as error:
        parser.error(str(error))
    names = [name for name, _ in grid]
    unknown = sorted(set(names) - set(config_settings(TrainConfig)))
    if unknown:
        parser.error(f"--grid: unknown settings {unknown}; see python -m cs288_lm.pipelines.pretrain --help")
    value_lists = [values for _, values in grid]
    combinations = [dict(zip(names, values, strict=True)) for values in itertools.product(*value_lists)]
    # Every run's settings are checked before the first one starts.
    configs = [run_config(assignment, shared, args.out_dir) for assignment in combinations]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (assignment, config) in enumerate(zip(combinations, configs, strict=True), start=1):
        name = run_name(assignment)
        print(f"[sweep] run {index}/{len(combinations)}: {name}", file=sys.stderr)
        rows.append(run_one(name, assignment, config))
    write_tables(rows, names, args.out_dir)
    plot_runs({row["run"]: row["metrics"] for row in rows}, args.out_dir, prefix="sweep_")
    print((args.out_dir / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
