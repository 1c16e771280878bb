"""The budget-curve program (benchmarks/qa_budget.py) draws and tabulates the records it finds, and
says in one line when it finds none; the runs themselves take half an hour and are not repeated here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from cs288_lm.training.finetune import FinetuneConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = [sys.executable, str(REPO_ROOT / "benchmarks" / "qa_budget.py")]


def record(name: str, cpu_minutes: float, finetuned_test: float) -> dict:
    return {
        "name": name,
        "config": None,
        "seconds": cpu_minutes * 30,
        "cpu_seconds": cpu_minutes * 60,
        "finetuned_dev_accuracy": 0.5,
        "finetuned_test_accuracy": finetuned_test,
        "prompting_dev_accuracy": 0.6,
        "prompting_test_accuracy": 0.58,
        "test_points": {"4A": 12.0 * min(1.0, (finetuned_test - 0.3) / 0.2), "4B": 8.0},
    }


def test_plot_only_draws_the_records_in_order_of_cpu_time(tmp_path):
    (tmp_path / "default.json").write_text(json.dumps(record("default", 20, 0.52)))
    (tmp_path / "10-cpu-minutes.json").write_text(json.dumps(record("10-cpu-minutes", 10, 0.40)))
    result = subprocess.run(
        [*PROGRAM, "--out", str(tmp_path), "--plot-only"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| 10-", "| default"))]
    assert rows == [
        "| 10-cpu-minutes | (none) | 10.0 min | 5.0 min | 50.0% / 40.0% | 60.0% / 58.0% | 6.0 + 8.0 |",
        "| default | (none) | 20.0 min | 10.0 min | 50.0% / 52.0% | 60.0% / 58.0% | 12.0 + 8.0 |",
    ]
    assert (tmp_path / "qa_budget.png").read_bytes().startswith(b"\x89PNG")


def test_no_records_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [*PROGRAM, "--out", str(tmp_path), "--plot-only"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no records in {tmp_path}; run without --plot-only first"


def load_program():
    spec = importlib.util.spec_from_file_location("qa_budget", REPO_ROOT / "benchmarks" / "qa_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_record_made_with_other_defaults_is_not_reused(tmp_path):
    """The record keeps the resolved settings: today's are reused without a run; those of an older
    default learning rate are a one-line error (not a stale point on the curve)."""
    settings = load_program().config_settings(None)
    assert settings["finetune"]["learning_rate"] == FinetuneConfig().learning_rate
    assert "out_dir" not in settings["job"] and "train_data" not in settings["pretrain"]
    path = tmp_path / "default.json"
    path.write_text(json.dumps({**record("default", 20, 0.52), "settings": settings}))
    command = [*PROGRAM, "--out", str(tmp_path), "--only", "default"]
    reused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert reused.returncode == 0, reused.stderr
    assert "record" in reused.stderr and "not run again" in reused.stderr
    older = {**settings, "finetune": {**settings["finetune"], "learning_rate": 1e-3}}
    path.write_text(json.dumps({**record("default", 20, 0.52), "settings": older}))
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: {path} was made with other settings than the default job has now; remove it and "
        f"{tmp_path / 'default'} to run the point again"
    )
