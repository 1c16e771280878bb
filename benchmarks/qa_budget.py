"""Part 4's budget curve: the main job at several compute budgets, for setting the 4A thresholds.

    python benchmarks/qa_budget.py                        # the three shipped points (README: their times)
    python benchmarks/qa_budget.py --only default         # one point
    python benchmarks/qa_budget.py --plot-only            # redraw from the records already there

Each point runs ``run_finetune_qa.py`` in a child process with its own output folders under
``--out`` (nothing of the default run in ``out/pretrain`` and ``out/qa`` is reused or touched),
measures its wall-clock time and its CPU time (user + system, of the job and its workers: what a
budget of CPU-minutes counts), and keeps a record (``<out>/<name>.json``: the times, the dev and
test accuracies, the points under ``configs/grading.json``, the settings the job ran with). A point
whose record exists is not run again; one whose settings have changed since (its config file or a
default) is an error until its record and folder are removed. Every point's config and record
are checked before the first job starts. Then it draws ``<out>/qa_budget.png`` (accuracy against
minutes) and prints a markdown table. Times are only comparable on one machine, with nothing else
running.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from cs288_lm.common.predictions import load_grading_rules, part4_points
from cs288_lm.common.qa_audit import audit
from cs288_lm.common.qa_data import load_questions
from cs288_lm.training.qa_job import RUN_ONLY_SETTINGS, QAJobConfig
from cs288_lm.training.settings import config_from_settings, read_settings_file, settings_of

# name -> the config file of the point (None: the default job)
POINTS = {
    "10-cpu-minutes": "configs/qa_10_cpu_minutes.json",
    "default": None,
    "40-cpu-minutes": "configs/qa_40_cpu_minutes.json",
}


def run_point(name: str, config: str | None, out: Path, settings: dict) -> dict:
    """Run the job for one point (its :func:`config_settings`: ``settings``) and return its record."""
    folder = out / name
    command = [sys.executable, "run_finetune_qa.py"] + (["--config", config] if config else [])
    command += [
        "--pretrain-out", str(folder / "pretrain"),
        "--out-dir", str(folder / "qa"),
        "--predictions-dir", str(folder),
        "--write-baseline", str(folder / "metrics.json"),
    ]  # fmt: skip
    print(f"[budget] {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    seconds, cpu_seconds = time.perf_counter() - start, _children_cpu_seconds() - cpu_start
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    points = part4_points(metrics["finetuned_test_accuracy"], metrics["prompting_test_accuracy"])
    record: dict[str, Any] = {"name": name, "config": config, "settings": settings}
    record |= {"seconds": seconds, "cpu_seconds": cpu_seconds, "cpu_count": os.cpu_count()}
    return {**record, **metrics, "test_points": points}


# Settings that only say where outputs go, on which device, or how much is printed: not part of
# what a point measures (the pretraining's, and where the job writes its own results).
_RUN_ONLY_SETTINGS = RUN_ONLY_SETTINGS | {"baseline_metrics", "predictions_dir"}


def _portable(value: Any) -> Any:
    """An absolute path inside the repository as a relative one (records compare across clones)."""
    if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(REPO_ROOT):
        return Path(value).relative_to(REPO_ROOT).as_posix()
    return value


def config_settings(config: str | None) -> dict:
    """The settings a point's job runs with: its config file (none for the default job) over today's
    defaults, resolved as the job resolves them (its pretraining and fine-tuning apart), without
    :data:`_RUN_ONLY_SETTINGS`. A record keeps them, so a changed default makes an old record an
    error too, not only a changed file. A bad file is a ValueError that names it."""
    path = REPO_ROOT / config if config else None
    file_settings = read_settings_file(path) if path else {}
    job = config_from_settings(QAJobConfig, file_settings, str(path or "the default job"))
    resolved = {
        "job": {key: value for key, value in settings_of(job).items() if key not in ("pretrain", "finetune")},
        "pretrain": settings_of(job.pretrain_config()),
        "finetune": settings_of(job.finetune_config()),
    }
    return {
        part: {key: _portable(value) for key, value in settings.items() if key not in _RUN_ONLY_SETTINGS}
        for part, settings in resolved.items()
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_rule_without_lm() -> float:
    """Test accuracy of the audit's combined rule (the best that needs no language model; README, "The QA data")."""
    qa_dir = REPO_ROOT / "data" / "qa"
    splits = {name: load_questions(qa_dir / f"{name}.json", require_answers=True) for name in ("train", "test")}
    train_text = (REPO_ROOT / "data" / "tinystories" / "train.txt").read_text(encoding="utf-8")
    return audit(splits, train_text)["test"]["scores"]["combined"]


def markdown_table(records: list[dict]) -> str:
    lines = [
        "| budget | config | CPU time | wall time | fine-tuned dev / test | prompting dev / test "
        "| points on test (4A + 4B) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        points = r["test_points"]
        lines.append(
            f"| {r['name']} | {r.get('config') or '(none)'} "
            f"| {r['cpu_seconds'] / 60:.1f} min | {r['seconds'] / 60:.1f} min "
            f"| {r['finetuned_dev_accuracy']:.1%} / {r['finetuned_test_accuracy']:.1%} "
            f"| {r['prompting_dev_accuracy']:.1%} / {r['prompting_test_accuracy']:.1%} "
            f"| {points['4A']:.1f} + {points['4B']:.1f} |"
        )
    return "\n".join(lines)


def plot(records: list[dict], no_lm_accuracy: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["cpu_seconds"] / 60 for r in records]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method, colour in (("finetuned", "tab:blue"), ("prompting", "tab:orange")):
        label = "fine-tuned head (4A)" if method == "finetuned" else "prompting (4B)"
        for split, style in (("test", "-o"), ("dev", "--s")):
            values = [100 * r[f"{method}_{split}_accuracy"] for r in records]
            axes.plot(minutes, values, style, color=colour, label=f"{label}, {split}")
    axes.axhline(100 * no_lm_accuracy, color="grey", linestyle=":", label="best rule without an LM (test)")
    full = load_grading_rules()["part4"]["finetuned"]["full_at_accuracy"]
    axes.axhline(100 * full, color="tab:green", linestyle=":", label=f"4A full points ({full:.0%})")
    for r, x in zip(records, minutes, strict=True):
        axes.annotate(r["name"], (x, 100 * r["finetuned_test_accuracy"]), textcoords="offset points", xytext=(4, -12))
    axes.margins(x=0.15, y=0.1)  # room for the points' names
    axes.set_xlabel("CPU-minutes of the whole job (user + system time)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Part 4: accuracy against the job's compute budget")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# What a record needs for the table and the plot: numbers, and the points under the course's rule.
_RECORD_NUMBERS = (
    "seconds", "cpu_seconds", "finetuned_dev_accuracy", "finetuned_test_accuracy", "prompting_dev_accuracy",
    "prompting_test_accuracy",
)  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_record(path: Path) -> dict:
    """The record in ``path``; a ValueError that names the problem when it is not one."""
    remedy = f"remove it to run the {path.stem} point again"
    if not path.is_file():
        raise ValueError(f"{path} is not a file; {remedy}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path} cannot be read ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"{path} is not a JSON record; {remedy}") from None
    points = record.get("test_points") if isinstance(record, dict) else None
    complete = (
        isinstance(record, dict)
        and isinstance(record.get("name"), str)
        and all(_is_number(record.get(key)) for key in _RECORD_NUMBERS)
        and isinstance(points, dict)
        and all(_is_number(points.get(key)) for key in ("4A", "4B"))
    )
    if not complete:
        raise ValueError(f"{path} is not a budget record (it lacks its name, times, accuracies or points); {remedy}")
    return record


def points_to_run(names: list[str], out: Path) -> list[tuple[str, dict]]:
    """``(name, settings)`` of each of ``names`` without a record in ``out``, after checking every point
    first: a bad config, a bad record or one made with other settings is a ValueError before any run."""
    pending = []
    for name in names:
        try:
            settings = config_settings(POINTS[name])
        except (ValueError, RecursionError) as error:  # RecursionError: JSON nested too deep
            raise ValueError(f"the {name} point's settings: {error}") from None
        record_path = out / f"{name}.json"
        if not record_path.exists():
            pending.append((name, settings))
        elif read_record(record_path).get("settings") != settings:
            raise ValueError(
                f"{record_path} was made with other settings than {POINTS[name] or 'the default job'} has now; "
                f"remove it and {out / name} to run the point again"
            )
        else:
            print(f"[budget] {name}: record {record_path} exists, not run again", file=sys.stderr)
    return pending


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out" / "budget", help="records and runs go here")
    parser.add_argument("--only", nargs="+", choices=list(POINTS), help="run only these points")
    parser.add_argument("--plot-only", action="store_true", help="run nothing; draw from the records there")
    args = parser.parse_args()
    try:
        pending = points_to_run([] if args.plot_only else args.only or list(POINTS), args.out)
        if pending:
            args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot make the folder {args.out} ({error.strerror}); choose another --out", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, settings in pending:
        try:
            record = run_point(name, POINTS[name], args.out, settings)
        except subprocess.CalledProcessError as error:
            print(f"error: the {name} job failed (exit code {error.returncode}); see its output above", file=sys.stderr)
            return 1
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    try:
        records = [read_record(path) for name in POINTS if (path := args.out / f"{name}.json").exists()]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not records:
        print(f"error: no records in {args.out}; run without --plot-only first", file=sys.stderr)
        return 1
    records.sort(key=lambda r: r["cpu_seconds"])
    plot(records, best_rule_without_lm(), args.out / "qa_budget.png")
    print(markdown_table(records))
    print(f"wrote {args.out / 'qa_budget.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
