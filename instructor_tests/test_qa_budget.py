"""The budget-curve program (benchmarks/qa_budget.py) draws and tabulates the records it finds, and
says in one line when it finds none; the runs themselves take half an hour and are not repeated here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

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


def load_program() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("qa_budget", REPO_ROOT / "benchmarks" / "qa_budget.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_record_made_with_other_defaults_is_not_reused(tmp_path):
    """The record keeps the resolved settings: today's are reused without a run; those of an older
    default learning rate are a one-line error (not a stale point on the curve)."""
    settings = load_program().config_settings(None)
    assert settings["finetune"]["learning_rate"] == FinetuneConfig().learning_rate
    assert "out_dir" not in settings["job"] and settings["pretrain"]["train_data"] == "data/tinystories/train.txt"
    path = tmp_path / "default.json"
    path.write_text(json.dumps({**record("default", 20, 0.52), "settings": settings}))
    command = [*PROGRAM, "--out", str(tmp_path), "--only", "default"]
    reused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert reused.returncode == 0, reused.stderr
    assert f"[budget] default: record {path} exists, not run again" in reused.stderr.splitlines()
    older = {**settings, "finetune": {**settings["finetune"], "learning_rate": 1e-3}}
    path.write_text(json.dumps({**record("default", 20, 0.52), "settings": older}))
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: {path} was made with other settings than the default job has now; remove it and "
        f"{tmp_path / 'default'} to run the point again"
    )


@pytest.mark.parametrize("config", [None, "configs/qa_10_cpu_minutes.json", "configs/qa_40_cpu_minutes.json"])
def test_the_settings_of_every_point_survive_the_record_and_name_no_absolute_path(config):
    settings = load_program().config_settings(config)
    assert json.loads(json.dumps(settings)) == settings
    assert not any(str(REPO_ROOT) in json.dumps(part) for part in settings.values())
    if config:  # the pinned fine-tuning settings the points were measured with
        assert (settings["finetune"]["learning_rate"], settings["job"]["max_length"]) == (1e-3, 64)


@pytest.fixture
def program(monkeypatch) -> types.ModuleType:
    """The program, loaded in this process, with its runs replaced by a failure: no check here may start a job."""
    module = load_program()

    def no_run(*args):
        pytest.fail("a job started")

    monkeypatch.setattr(module, "run_point", no_run)
    return module


def run_main(program: types.ModuleType, monkeypatch, capsys, *args: str) -> tuple[int, list[str]]:
    monkeypatch.setattr(sys, "argv", ["qa_budget.py", *args])
    code = program.main()
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "config file not found"),
        ("{not json", "not valid JSON"),
        ("[1]", "expected a JSON object of settings, got a list"),
        ('{"max_length": 0}', "max_length must be positive"),
        ('{"finetune": {"lr": 1}}', "unknown settings ['lr']"),
    ],
)
def test_a_bad_config_of_a_point_is_a_one_line_error(program, tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.setattr(program, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(program, "POINTS", {"bad": "bad.json"})
    if text is not None:
        (tmp_path / "bad.json").write_text(text)
    code, lines = run_main(program, monkeypatch, capsys, "--out", str(tmp_path / "out"), "--only", "bad")
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: the bad point's settings: ") and message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was made


def test_every_point_is_checked_before_the_first_runs(program, tmp_path, monkeypatch, capsys):
    """The default point has no record (it would run first); the last point's config is broken: the
    error comes before any job."""
    monkeypatch.setattr(program, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(program, "POINTS", {"default": None, "broken": "broken.json"})
    (tmp_path / "broken.json").write_text('{"max_length": -1}')
    code, lines = run_main(program, monkeypatch, capsys, "--out", str(tmp_path / "out"))
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: the broken point's settings: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{cut off", "is not a JSON record; remove it to run the default point again"),
        ("[1, 2]", "is not a budget record (it lacks its name, times, accuracies or points)"),
        ('{"name": "default", "cpu_seconds": "x"}', "is not a budget record (it lacks"),
        ("directory", "is not a file; remove it to run the default point again"),
    ],
)
@pytest.mark.parametrize("plot_only", [False, True])
def test_a_bad_record_is_a_one_line_error_before_any_run(
    program, tmp_path, monkeypatch, capsys, content, message, plot_only
):
    path = tmp_path / "default.json"
    if content == "directory":
        path.mkdir()
    else:
        path.write_text(content)
    args = ["--plot-only"] if plot_only else ["--only", "default"]
    code, lines = run_main(program, monkeypatch, capsys, "--out", str(tmp_path), *args)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path} {message}")


def test_an_out_that_is_a_file_is_a_one_line_error(program, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(program, "POINTS", {"default": None})
    out = tmp_path / "taken"
    out.write_text("not a folder")
    code, lines = run_main(program, monkeypatch, capsys, "--out", str(out / "budget"))
    assert code == 1
    assert lines == [f"error: cannot make the folder {out / 'budget'} (Not a directory); choose another --out"]
    assert out.read_text() == "not a folder"


def test_a_record_that_is_not_json_is_a_one_line_error(tmp_path):
    (tmp_path / "default.json").write_text("{cut off")
    result = subprocess.run(
        [*PROGRAM, "--out", str(tmp_path), "--plot-only"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'default.json'} is not a JSON record; remove it to run the default point again"
    ]
