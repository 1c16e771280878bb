"""The pretraining trainer end to end, on a tiny model and the bundled TinyStories files.

Exact resume, stopping on SIGINT, stopping on a NaN loss, DistributedDataParallel on CPU (gloo),
configuration errors, the run's outputs and determinism. The trainer runs in-process through
``main([...])`` where it can (with one torch thread, so runs are fast and reproducible on a busy
2-core machine); only the SIGINT and DDP checks start subprocesses. The DDP checks also stop one
process with SIGTERM and make runs fail, on every process or on one, and expect no process to hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cs288_lm.training.trainer as trainer
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.nn_utils import get_lr_cosine_schedule
from cs288_lm.pipelines.pretrain import main, parse_config
from cs288_lm.training import flops
from cs288_lm.training.flops import training_flops_per_token
from cs288_lm.training.settings import config_settings
from cs288_lm.training.train_config import DEFAULT_MODEL, TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMING_FIELDS = {"tokens_per_second", "mfu"}
VAL_FIELDS = ("val_loss", "val_perplexity", "val_accuracy")
MAX_STEPS, BATCH, CONTEXT = 12, 8, 32

# A tiny model: every step takes milliseconds; evaluation at 4, 8, 12; logs every 2 steps.
TINY = [
    "--d-model",
    "32",
    "--num-layers",
    "2",
    "--num-heads",
    "2",
    "--context-length",
    str(CONTEXT),
    "--batch-size",
    str(BATCH),
    "--max-steps",
    str(MAX_STEPS),
    "--eval-interval",
    "4",
    "--log-interval",
    "2",
    "--checkpoint-interval",
    "4",
    "--eval-batches",
    "2",
    "--num-samples",
    "1",
    "--sample-tokens",
    "8",
    "--final-eval-tokens",
    "2048",
    "--device",
    "cpu",
    "--train-data",
    str(REPO_ROOT / "data" / "tinystories" / "train.txt"),
    "--valid-data",
    str(REPO_ROOT / "data" / "tinystories" / "valid.txt"),
    "--tokenizer",
    str(REPO_ROOT / "data" / "tokenizer"),
]


def tiny_args(out_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    return [*TINY, "--out-dir", str(out_dir), "--cache-dir", str(cache_dir), *extra]


def run_main(argv: list[str]) -> SimpleNamespace:
    """``main(argv)`` in-process, with its exit code, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return SimpleNamespace(code=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def metrics(out_dir: Path) -> list[dict]:
    with open(out_dir / "metrics.jsonl", encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def subprocess_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def assert_tensors_equal(a: object, b: object, where: str) -> None:
    """Bit-for-bit equality of nested dicts/lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_tensors_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_tensors_equal(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory):
    """Two identical uninterrupted 12-step runs: the first encodes the data into a fresh token
    cache, the second reuses it. Other tests reuse the cache and compare with the first run."""
    root = tmp_path_factory.mktemp("reference")
    cache = root / "cache"
    first = run_main(tiny_args(root / "first", cache))
    second = run_main(tiny_args(root / "second", cache))
    assert first.code == 0, first.stderr
    assert second.code == 0, second.stderr
    return SimpleNamespace(
        cache=cache, first_dir=root / "first", second_dir=root / "second", first=first, second=second
    )


# ---------------------------------------------------------------------------------------------
# 1. Exact resume
# ---------------------------------------------------------------------------------------------


def stop_after_steps(monkeypatch, steps: int) -> None:
    """Ask the trainer to stop after ``steps`` steps, as a SIGINT arriving during that step would."""
    real_train_step = trainer.Trainer.train_step

    def train_step(self):
        result = real_train_step(self)
        if self.step == steps:
            self.stop_requested = True
        return result

    monkeypatch.setattr(trainer.Trainer, "train_step", train_step)


@pytest.mark.parametrize("steps", [6, 5], ids=["stop_after=6", "stop_after=5"])
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(reference, tmp_path, monkeypatch, steps):
    """Stop after k steps (not a checkpoint multiple; k=5 is not a log multiple either), resume to
    the end: every record logged after k and the final weights and optimizer state are bit-for-bit
    those of the uninterrupted run."""
    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        stop_after_steps(patch, steps)
        stopped = run_main(tiny_args(out, reference.cache))
    stop_after = steps
    assert stopped.code == 0, stopped.stderr
    assert "--resume" in stopped.stderr
    assert "validation perplexity" not in stopped.stdout  # not finished: no final report
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == stop_after
    assert max(r["step"] for r in metrics(out)) <= stop_after

    # A crash after logging but before the next checkpoint leaves records past it: resume drops them.
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps({"step": stop_after + 1, "tokens": 0, "train_loss": 0.0}) + "\n")

    resumed = run_main(tiny_args(out, reference.cache, "--resume"))
    assert resumed.code == 0, resumed.stderr
    assert f"resumed from {out / 'checkpoints' / 'latest.pt'} at step {stop_after}" in resumed.stderr
    assert "validation perplexity" in resumed.stdout

    expected, got = metrics(reference.first_dir), metrics(out)
    steps = [r["step"] for r in got]
    assert len(steps) == len(set(steps)), f"duplicate steps in metrics.jsonl: {steps}"
    assert steps == sorted(steps) == [r["step"] for r in expected]
    for a, b in zip(without_timing(expected), without_timing(got), strict=True):
        if a["step"] <= stop_after:
            continue
        for key in ("train_loss", "grad_norm", "lr", "tokens", *VAL_FIELDS):
            assert (key in a) == (key in b), f"step {a['step']}: {key}"
            if key in a:
                assert a[key] == b[key], f"step {a['step']}: {key} {b[key]!r} after resume != {a[key]!r} uninterrupted"

    a_ckpt = load_checkpoint(reference.first_dir / "checkpoints" / "latest.pt")
    b_ckpt = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert a_ckpt["step"] == b_ckpt["step"] == MAX_STEPS
    assert a_ckpt["tokens_seen"] == b_ckpt["tokens_seen"] == MAX_STEPS * BATCH * CONTEXT
    assert_tensors_equal(a_ckpt["model"], b_ckpt["model"], "model")
    assert_tensors_equal(a_ckpt["optimizer"]["state"], b_ckpt["optimizer"]["state"], "optimizer state")
    assert a_ckpt["best_val_loss"] == b_ckpt["best_val_loss"]


# ---------------------------------------------------------------------------------------------
# 2. SIGINT
# ---------------------------------------------------------------------------------------------


def test_sigint_saves_a_checkpoint_exits_cleanly_and_resume_finishes(reference, tmp_path):
    out = tmp_path / "interrupted"
    long_run = tiny_args(
        out,
        reference.cache,
        "--max-steps",
        "100000",
        "--log-interval",
        "1",
        "--eval-interval",
        "50000",
        "--checkpoint-interval",
        "50000",
    )
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cs288_lm.pipelines.pretrain", *long_run],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 120
            while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip()):
                assert process.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, "the trainer logged no step in 120 s"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    err = (tmp_path / "stderr").read_text()
    assert code == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "SIGINT" in err and "--resume" in err
    match = re.search(r"stopped at step (\d+); saved (\S+); continue with --resume", err)
    assert match, err
    stopped_step = int(match.group(1))
    assert Path(match.group(2)) == out / "checkpoints" / "latest.pt"
    checkpoint = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert checkpoint["step"] == stopped_step >= 1
    assert checkpoint["tokens_seen"] == stopped_step * BATCH * CONTEXT
    assert metrics(out)[-1]["step"] == stopped_step  # every step is logged (--log-interval 1)
    assert "validation perplexity" not in (tmp_path / "stdout").read_text()

    # Resume and finish (two more steps than were done, instead of 100000).
    finish = stopped_step + 2
    resumed = run_main(
        tiny_args(
            out,
            reference.cache,
            "--resume",
            "--max-steps",
            str(finish),
            "--log-interval",
            "1",
            "--eval-interval",
            "50000",
            "--checkpoint-interval",
            "50000",
        )
    )
    assert resumed.code == 0, resumed.stderr
    assert f"at step {stopped_step}" in resumed.stderr
    assert "validation perplexity" in resumed.stdout
    steps = [r["step"] for r in metrics(out)]
    assert steps == list(range(1, finish + 1))
    assert "val_loss" in metrics(out)[-1]  # the last step is always evaluated
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == finish


# ---------------------------------------------------------------------------------------------
# 3. NaN loss
# ---------------------------------------------------------------------------------------------


def nan_on_training_call(monkeypatch, call: int, on_trigger=lambda: None) -> None:
    """Make the logits, hence the loss, of the ``call``-th training forward pass (1-based) NaN.

    Evaluation and sampling run under no_grad and are not counted."""
    real_build_model = trainer.build_model
    calls = {"train": 0}

    def hook(module, inputs, output):
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == call:
                on_trigger()
                return output * float("nan")
        return output

    def build_model(*args, **kwargs):
        model = real_build_model(*args, **kwargs)
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(trainer, "build_model", build_model)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(reference, tmp_path, monkeypatch):
    out = tmp_path / "diverged"
    latest, best = out / "checkpoints" / "latest.pt", out / "checkpoints" / "best.pt"
    before = {}

    def snapshot():  # called just before the NaN: the checkpoints as the failing step finds them
        for path in (latest, best):
            before[path] = (path.read_bytes(), path.stat().st_mtime_ns)

    # Steps 1-5 are fine (checkpoint at 4); the loss of step 6 (as metrics number it) is NaN.
    nan_on_training_call(monkeypatch, 6, snapshot)
    result = run_main(tiny_args(out, reference.cache))
    assert result.code == 1
    assert before, "the NaN was never injected"
    assert "Traceback" not in result.stderr
    assert f"error: the training loss became nan at step 6; the last good checkpoint is {latest}" in result.stderr
    assert "--learning-rate" in result.stderr
    for path, (content, mtime) in before.items():
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    assert load_checkpoint(latest)["step"] == 4
    assert [r["step"] for r in metrics(out)] == [2, 4]
    assert not (latest.parent / "latest.pt.tmp").exists()
    assert "validation perplexity" not in result.stdout
    # run() put the previous signal handlers back although training raised.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # Through run(): the exception itself.
    nan_on_training_call(monkeypatch, 1)
    with pytest.raises(trainer.TrainingDiverged, match=r"became nan at step 1; no checkpoint was saved yet"):
        trainer.run(parse_config(tiny_args(tmp_path / "first_step", reference.cache)))
    assert not (tmp_path / "first_step" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------
# 4. DistributedDataParallel on CPU
# ---------------------------------------------------------------------------------------------


def test_two_process_ddp_run_matches_the_single_process_run(reference, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "--monitor-interval",
        "0.1",
        "-m",
        "cs288_lm.pipelines.pretrain",
        *tiny_args(out, reference.cache),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "on cpu x2" in result.stderr
    assert result.stdout.count("validation perplexity") == 1  # only the main process reports
    assert result.stderr.count("[train] llama model") == 1

    single, ddp = metrics(reference.first_dir), metrics(out)
    assert [r["step"] for r in ddp] == [r["step"] for r in single]
    for a, b in zip(single, ddp, strict=True):
        assert a["tokens"] == b["tokens"] and a["lr"] == b["lr"]
        for key in ("train_loss", "grad_norm", *VAL_FIELDS):
            assert (key in a) == (key in b)
            if key in a:
                assert math.isclose(a[key], b[key], rel_tol=1e-4, abs_tol=1e-6), (
                    f"step {a['step']}: {key} {b[key]} with 2 processes, {a[key]} with 1"
                )
    a_model = load_checkpoint(reference.first_dir / "checkpoints" / "latest.pt")["model"]
    b_model = load_checkpoint(out / "checkpoints" / "latest.pt")["model"]
    assert a_model.keys() == b_model.keys()
    assert not any(key.startswith("module.") for key in b_model)  # the unwrapped model is saved
    for key in a_model:
        torch.testing.assert_close(b_model[key], a_model[key], rtol=1e-4, atol=1e-6, msg=key)


def free_port() -> int:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        return server.getsockname()[1]


def start_ranks(argv: list[str], logs: Path, world_size: int = 2) -> list[subprocess.Popen]:
    """The trainer's processes as torchrun would start them (same environment), but without its
    launcher: each has its own exit code, and none is killed because another failed."""
    env = {
        **subprocess_env(),
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    processes = []
    for rank in range(world_size):
        with open(logs / f"stderr{rank}", "w") as stderr:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cs288_lm.pipelines.pretrain", *argv],
                    cwd=REPO_ROOT,
                    env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            )
    return processes


def wait_for_ranks(processes: list[subprocess.Popen], timeout: float) -> list[int | None]:
    """Every process's exit code, None for one still running after ``timeout`` s (then killed)."""
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    return codes


def test_sigterm_to_one_ddp_process_stops_every_process_after_the_same_step(reference, tmp_path):
    """A SIGTERM to one process only (a scheduler's, a kill) stops both after the same step, not
    that one alone (the other would fail or wait in its next all_reduce): the main process saves
    latest.pt, both exit 0, and the checkpoint resumes like any other."""
    out = tmp_path / "ddp"
    # A warmup longer than the run: the learning rate of step k depends on k only, not on
    # --max-steps, so the stopped run and an uninterrupted one of a few steps take the same steps.
    schedule = ["--learning-rate", "1.0", "--min-learning-rate", "0", "--warmup-steps", "1000"]
    long_run = tiny_args(
        out,
        reference.cache,
        "--max-steps",
        "100000",
        "--log-interval",
        "1",
        "--eval-interval",
        "50000",
        "--checkpoint-interval",
        "50000",
        *schedule,
    )
    processes = start_ranks(long_run, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip()):
            assert all(p.poll() is None for p in processes), (tmp_path / "stderr0").read_text()
            assert time.monotonic() < deadline, "the trainer logged no step in 120 s"
            time.sleep(0.05)
        processes[1].send_signal(signal.SIGTERM)  # rank 1 only, as a scheduler or a kill might
    finally:
        codes = wait_for_ranks(processes, timeout=120)
    main_err, other_err = (tmp_path / "stderr0").read_text(), (tmp_path / "stderr1").read_text()
    assert codes == [0, 0], main_err[-3000:] + other_err[-3000:]
    assert "Traceback" not in main_err + other_err
    assert "[train] SIGTERM (process 1): saving a checkpoint after this step" in other_err
    match = re.search(r"stopped at step (\d+); saved (\S+); continue with --resume", main_err)
    assert match, main_err
    stopped_step = int(match.group(1))
    assert Path(match.group(2)) == out / "checkpoints" / "latest.pt"
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == stopped_step >= 1
    assert metrics(out)[-1]["step"] == stopped_step

    # Resumed (in one process: the batch is global) to two steps more, it ends where an
    # uninterrupted run of as many steps does (up to DDP's reduction order).
    finish = [
        "--max-steps",
        str(stopped_step + 2),
        "--log-interval",
        "1",
        "--eval-interval",
        "50000",
        "--checkpoint-interval",
        "50000",
        *schedule,
    ]
    resumed = run_main(tiny_args(out, reference.cache, "--resume", *finish))
    uninterrupted = run_main(tiny_args(tmp_path / "uninterrupted", reference.cache, *finish))
    assert resumed.code == 0 and uninterrupted.code == 0, resumed.stderr + uninterrupted.stderr
    a, b = metrics(out)[-1], metrics(tmp_path / "uninterrupted")[-1]
    assert a["step"] == b["step"] == stopped_step + 2
    assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-4), (a, b)


@pytest.mark.parametrize("failure", ["nan-on-every-process", "main-process-cannot-save"])
def test_a_ddp_run_that_fails_ends_every_process_with_an_error(reference, tmp_path, failure):
    """No process is left waiting for another: a NaN loss (all processes reduce the same loss) is
    reported by each; a failure of the main process alone (its checkpoint directory is a file) ends
    the other one's collective with an error. Within the timeout, instead of gloo's 30 minutes."""
    out = tmp_path / "ddp"
    if failure == "nan-on-every-process":
        # A learning rate that makes the loss NaN within a few steps (genuine divergence).
        argv = tiny_args(
            out,
            reference.cache,
            "--learning-rate",
            "1e6",
            "--min-learning-rate",
            "1e6",
            "--warmup-steps",
            "0",
            "--max-steps",
            "50",
            "--log-interval",
            "1",
        )
        expected = ["error: the training loss became nan at step"] * 2
    else:
        out.mkdir()
        (out / "checkpoints").write_text("not a directory")
        argv = tiny_args(out, reference.cache)
        expected = ["error: FileExistsError", "error: another process of this run stopped; its output says why"]
    codes = wait_for_ranks(start_ranks(argv, tmp_path), timeout=120)
    errors = [(tmp_path / f"stderr{rank}").read_text() for rank in range(2)]
    assert None not in codes, f"a process was still running after 120 s: {codes}"
    for code, error, message in zip(codes, errors, expected, strict=True):
        assert code == 1, error[-3000:]
        assert message in error and "Traceback" not in error, error[-3000:]


def test_the_process_group_is_destroyed_when_the_run_fails(reference, tmp_path, monkeypatch):
    """Under torchrun (here a group of one process), run() leaves no process group behind when it
    raises, whether the trainer fails to start or training fails."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        trainer.run(parse_config(tiny_args(tmp_path / "fresh", reference.cache, "--resume")))
    assert not torch.distributed.is_initialized()

    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    assert run_main(tiny_args(tmp_path / "fine", reference.cache, "--max-steps", "2")).code == 0  # a new group
    assert not torch.distributed.is_initialized()

    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    nan_on_training_call(monkeypatch, 2)
    with pytest.raises(trainer.TrainingDiverged, match="became nan at step 2"):
        trainer.run(parse_config(tiny_args(tmp_path / "diverged", reference.cache)))
    assert not torch.distributed.is_initialized()


# ---------------------------------------------------------------------------------------------
# 5. Configuration
# ---------------------------------------------------------------------------------------------


def test_config_file_sets_values_and_flags_override_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "model": {"d_model": 48, "architecture": "gpt2"},
                "batch_size": 4,
                "compile": True,
                "token_budget": 1000,
                "learning_rate": 0.01,
            }
        )
    )
    config = parse_config(["--config", str(path), "--batch-size", "16", "--no-compile", "--token-budget", "2000"])
    assert (config.model.d_model, config.learning_rate, config.model.architecture) == (48, 0.01, "gpt2")
    assert (config.batch_size, config.compile, config.token_budget) == (16, False, 2000)
    # untouched settings keep the trainer's defaults, the model's included (not ModelConfig's own)
    assert config.model.num_layers == TrainConfig().model.num_layers
    assert config.model.replace(d_model=128, architecture="llama") == DEFAULT_MODEL
    # a model flag overrides one model setting of the file and keeps the others
    config = parse_config(["--config", str(path), "--num-layers", "3"])
    assert (config.model.d_model, config.model.num_layers, config.model.architecture) == (48, 3, "gpt2")
    assert isinstance(config.learning_rate, float) and isinstance(config.batch_size, int)

    config = parse_config(["--config", str(path)])
    assert (config.batch_size, config.compile, config.token_budget) == (4, True, 1000)
    assert config.total_steps == math.ceil(1000 / (4 * config.model.context_length))
    assert parse_config([]) == TrainConfig()


def test_none_on_the_command_line_overrides_a_config_value(tmp_path):
    """Optional settings take "none" on the command line; it must override the JSON file's value."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"token_budget": 1000, "model": {"d_ff": 96}}))
    assert parse_config(["--token-budget", "none"]).token_budget is None
    config = parse_config(["--config", str(path), "--token-budget", "none", "--d-ff", "none"])
    assert (config.token_budget, config.model.d_ff) == (None, None)


def parse_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "argv", "message"),
    [
        ({"batch_sise": 64}, [], "unknown settings ['batch_sise'] (did you mean 'batch_size' for 'batch_sise'?)"),
        ({"model": {"d_modle": 64}}, [], "'model': unknown settings ['d_modle']"),
        (
            {"d_model": 64},
            [],
            """'d_model' is a setting of 'model'; move it under "model": {"model": {"d_model": ...}}""",
        ),
        ({"model": {"vocab_size": 64}}, [], "'vocab_size' is not a setting (the program fills it in)"),
        ({"model": 64}, [], "'model' must be an object of settings, got an integer"),
        (None, ["--num-heads", "3"], "d_model=128 is not divisible by num_heads=3"),
        (None, ["--kernels", "flash"], "'kernels' must be one of 'reference', 'torch', got a string 'flash'"),
        ('{"d_model": 64,', [], "not valid JSON"),
        (None, ["--config", "{tmp}/missing.json"], "config file not found: {tmp}/missing.json"),
        (None, ["--batch-size", "0"], "batch_size must be at least 1, got 0"),
        (None, ["--precision", "fp8"], "precision must be auto, fp32 or bf16, got 'fp8'"),
        (None, ["--loss-backend", "triton"], "loss_backend must be reference or torch, got 'triton'"),
        (None, ["--batch-size", "abc"], "--batch-size: invalid"),
        (None, ["--learning-rate", "1e-3", "--min-learning-rate", "1e-2"], "min_learning_rate <= learning_rate"),
        ({"eval_interval": 0}, [], "eval_interval must be at least 1, got 0"),
        ({"batch_size": "8"}, [], "'batch_size' must be an integer, got a string '8'"),
        ({"model": {"d_ff": 1.5}}, [], "'d_ff' must be an integer or null, got a number 1.5"),
        ("[1, 2]", [], "expected a JSON object of settings, got a list"),
        (None, ["--d-ff", "abc"], "--d-ff: invalid int value: 'abc'"),
    ],
    ids=[
        "unknown-key",
        "unknown-model-key",
        "flat-model-key",
        "vocab-size",
        "model-not-object",
        "heads",
        "kernels",
        "bad-json",
        "missing-file",
        "batch-size-0",
        "precision-fp8",
        "loss-backend",
        "not-an-int",
        "min-lr",
        "json-0",
        "json-string-for-int",
        "json-float-for-optional-int",
        "json-list",
        "optional-not-an-int",
    ],
)
def test_bad_settings_are_argparse_errors(tmp_path, capsys, content, argv, message):
    if content is not None:
        path = tmp_path / "config.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        argv = ["--config", str(path), *argv]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    err = parse_error(argv, capsys)
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "usage:" in err and "Traceback" not in err


def test_bad_config_from_the_command_line_has_no_traceback(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "cs288_lm.pipelines.pretrain", "--config", str(path)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_errors_exit_with_code_1(reference, tmp_path):
    out = tmp_path / "fresh"
    result = run_main(tiny_args(out, reference.cache, "--resume"))
    assert result.code == 1
    assert f"error: --resume: no checkpoint at {out / 'checkpoints' / 'latest.pt'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "metrics.jsonl").exists() and not (out / "config.json").exists()

    result = run_main(tiny_args(out, reference.cache, "--grad-accum-steps", "3"))
    assert result.code == 1 and "must be divisible by grad_accum_steps" in result.stderr

    result = run_main(tiny_args(out, reference.cache, "--train-data", str(tmp_path / "nope.txt")))
    assert result.code == 1 and f"text file not found: {tmp_path / 'nope.txt'}" in result.stderr

    # Resuming with a different model is refused.
    assert run_main(tiny_args(out, reference.cache, "--max-steps", "1")).code == 0
    result = run_main(tiny_args(out, reference.cache, "--resume", "--d-model", "64"))
    assert result.code == 1 and "different model" in result.stderr


def test_json_integers_are_accepted_for_float_settings(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"learning_rate": 1, "min_learning_rate": 0}))
    config = parse_config(["--config", str(path)])
    assert (config.learning_rate, config.min_learning_rate) == (1.0, 0.0)
    assert isinstance(config.learning_rate, float) and isinstance(config.min_learning_rate, float)


def test_every_setting_has_a_flag_of_its_type():
    """Flags are typed from the annotations (typing.get_type_hints), so each setting round-trips,
    the model's too (every ModelConfig field but vocab_size, which comes from the tokenizer)."""
    settings = config_settings(TrainConfig)
    model_fields = {field.name for field in dataclasses.fields(ModelConfig)}
    assert {name for name, entry in settings.items() if entry.path[0] == "model"} == model_fields - {"vocab_size"}

    def value_of(config: TrainConfig, name: str):
        return getattr(config.model if settings[name].path[0] == "model" else config, name)

    for name, entry in settings.items():
        value = entry.default
        assert value_of(TrainConfig(), name) == value, name
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv = [flag] if not value else ["--no-" + name.replace("_", "-")]
            assert value_of(parse_config(argv), name) is (not value), name
        elif value is not None:
            assert value_of(parse_config([flag, str(value)]), name) == value, name
            assert type(value_of(parse_config([flag, str(value)]), name)) is type(value), name


# ---------------------------------------------------------------------------------------------
# 6. Model FLOPs utilisation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_training_flops_per_token_equal_the_flops_torch_counts(architecture):
    """The MFU's FLOPs (from Part 2's count_flops_per_token) are those of a forward and backward
    pass as torch's FLOP counter measures them (matrix multiplications; attention over the full
    context, as the reference backend computes it)."""
    config = ModelConfig(
        architecture=architecture,
        vocab_size=100,
        context_length=16,
        d_model=32,
        num_layers=2,
        num_heads=4,
        kernels="reference",
    )
    tokens = torch.zeros(2, config.context_length, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        build_model(config)(tokens).sum().backward()
    assert training_flops_per_token(config) == counter.get_total_flops() / tokens.numel()


def test_mfu_is_logged_and_is_n_a_before_count_flops_per_token_is_written(reference, tmp_path, monkeypatch):
    """On a GPU of known peak the records have an MFU; with the handout's count_flops_per_token
    (NotImplementedError) training runs all the same and the MFU is reported as unavailable."""
    monkeypatch.setattr(trainer, "peak_flops", lambda device: 1e12)
    result = run_main(tiny_args(tmp_path / "mfu", reference.cache, "--max-steps", "2"))
    assert result.code == 0, result.stderr
    assert all(0 < r["mfu"] < 1 for r in metrics(tmp_path / "mfu")) and "| MFU " in result.stderr

    def not_written(*args: int) -> int:
        raise NotImplementedError("Implement count_flops_per_token (cs288_lm/model.py)")

    monkeypatch.setattr(flops, "count_flops_per_token", not_written)
    result = run_main(tiny_args(tmp_path / "no_mfu", reference.cache, "--max-steps", "2"))
    assert result.code == 0, result.stderr
    assert all("mfu" not in r for r in metrics(tmp_path / "no_mfu"))
    assert "MFU n/a: implement count_flops_per_token" in result.stderr and "| MFU n/a |" in result.stderr


# ---------------------------------------------------------------------------------------------
# 7. Outputs
# ---------------------------------------------------------------------------------------------


def test_run_writes_metrics_plots_checkpoints_and_a_report(reference):
    out, result = reference.first_dir, reference.first
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(2, MAX_STEPS + 1, 2))
    for record in records:
        for key in ("step", "tokens", "lr", "train_loss", "grad_norm", "tokens_per_second"):
            assert key in record, (key, record)
            assert isinstance(record[key], (int, float)) and math.isfinite(record[key]), (key, record)
        assert record["tokens"] == record["step"] * BATCH * CONTEXT
        assert record["lr"] > 0 and record["grad_norm"] > 0 and record["tokens_per_second"] > 0
        assert 0 < record["train_loss"] < 20
        evaluated = record["step"] % 4 == 0
        for key in VAL_FIELDS:
            assert (key in record) == evaluated, (key, record)
        if evaluated:
            assert math.isclose(record["val_perplexity"], math.exp(record["val_loss"]), rel_tol=1e-9)
            assert 0 <= record["val_accuracy"] <= 1
    # warmup (20 steps by default) ramps the learning rate up over these 12 steps
    assert [r["lr"] for r in records] == sorted(r["lr"] for r in records)

    for name in ("loss.png", "perplexity.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 1000, name
    saved_config = json.loads((out / "config.json").read_text())
    assert saved_config["max_steps"] == MAX_STEPS and saved_config["out_dir"] == str(out)
    assert saved_config["model"]["d_model"] == 32 and "vocab_size" not in saved_config["model"]
    assert parse_config(["--config", str(out / "config.json")]) == parse_config(tiny_args(out, reference.cache))

    latest = load_checkpoint(out / "checkpoints" / "latest.pt")
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    val_losses = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    best_step = min(val_losses, key=val_losses.get)
    assert best["best_val_loss"] == min(val_losses.values()) == latest["best_val_loss"]
    assert best["step"] == best_step and latest["step"] == MAX_STEPS
    assert best["model_config"]["vocab_size"] >= 4000 and best["model_config"]["d_model"] == 32
    assert not list((out / "checkpoints").glob("*.tmp"))

    match = re.search(r"validation perplexity \(.*valid\.txt\): ([0-9.]+)", result.stdout)
    assert match and 1 < float(match.group(1)) < 10_000, result.stdout
    assert result.stdout.count("--- greedy ---") == 1
    assert result.stdout.count("--- top-p 0.9 ---") == 1  # --num-samples 1
    assert result.stdout.count("Once upon a time") == 2

    assert "[data] encoded" in reference.first.stderr and "reusing" not in reference.first.stderr
    assert reference.second.stderr.count("[data] reusing") == 2
    assert "[data] encoded" not in reference.second.stderr
    assert len(list(reference.cache.glob("*.npy"))) == 2


def test_learning_rate_schedule_runs_from_iteration_1_to_the_last(reference, tmp_path):
    """Optimizer step k uses the schedule at iteration k: the first step does not waste itself at a
    rate of 0, and the last one reaches the minimum rate (a 4-step run, 2 of them warmup)."""
    out = tmp_path / "schedule"
    result = run_main(
        tiny_args(
            out,
            reference.cache,
            "--max-steps",
            "4",
            "--warmup-steps",
            "2",
            "--log-interval",
            "1",
            "--num-samples",
            "0",
            "--final-eval-tokens",
            "64",
        )
    )
    assert result.code == 0, result.stderr
    high, low = TrainConfig().learning_rate, TrainConfig().min_learning_rate
    expected = [get_lr_cosine_schedule(k, high, low, 2, 4) for k in (1, 2, 3, 4)]
    assert [r["lr"] for r in metrics(out)] == expected
    assert expected[0] == high / 2 and expected[-1] == low


# ---------------------------------------------------------------------------------------------
# 8. Determinism
# ---------------------------------------------------------------------------------------------


def test_identical_fresh_runs_give_identical_results(reference):
    first, second = metrics(reference.first_dir), metrics(reference.second_dir)
    assert without_timing(first) == without_timing(second)
    assert reference.first.stdout == reference.second.stdout  # same perplexity and samples
    a = load_checkpoint(reference.first_dir / "checkpoints" / "latest.pt")
    b = load_checkpoint(reference.second_dir / "checkpoints" / "latest.pt")
    assert_tensors_equal(a["model"], b["model"], "model")
    assert_tensors_equal(a["optimizer"]["state"], b["optimizer"]["state"], "optimizer state")


def test_logged_train_loss_is_the_mean_of_its_own_window(reference, tmp_path):
    """With --log-interval 1 every step is logged; with 2 (the reference) each record must be the
    mean of exactly the two steps since the previous record, not of every step so far."""
    every_step = tmp_path / "every_step"
    assert run_main(tiny_args(every_step, reference.cache, "--log-interval", "1")).code == 0
    per_step = {r["step"]: r["train_loss"] for r in metrics(every_step) if "train_loss" in r}
    logged = [r for r in metrics(reference.first_dir) if "train_loss" in r]
    assert len(logged) == MAX_STEPS // 2
    for record in logged:
        step = record["step"]
        assert record["train_loss"] == pytest.approx((per_step[step - 1] + per_step[step]) / 2, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# 9. The run folder
# ---------------------------------------------------------------------------------------------


def test_a_runs_model_is_best_pt_and_latest_pt_stands_in_before_the_first_evaluation(tmp_path):
    """The one rule (cs288_lm/training/run_dir.py), as the loader applies it to a run folder."""
    from cs288_lm.training.loading import read_checkpoint
    from cs288_lm.training.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read_checkpoint(run.root)  # no such folder or file
    run.write_config({"max_steps": 1})  # a run folder without checkpoints
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        run.model_checkpoint()
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        read_checkpoint(run.root)
    run.save_checkpoint("latest", {"model": {}, "model_config": {}, "step": 1})
    assert run.model_checkpoint() == run.latest_checkpoint
    assert read_checkpoint(run.root)["step"] == 1
    run.save_checkpoint("best", {"model": {}, "model_config": {}, "step": 2})
    assert run.model_checkpoint() == run.best_checkpoint
    assert read_checkpoint(run.root)["step"] == 2
    assert read_checkpoint(run.latest_checkpoint)["step"] == 1  # a file is read as given
    for inside in (run.root, run.best_checkpoint, run.latest_checkpoint):
        assert RunDir.containing(inside) == run
    assert not list(run.checkpoint_dir.glob("*.tmp"))


def test_old_checkpoints_name_the_kernels_attention_backend(tmp_path):
    """A checkpoint saved before ModelConfig.attention_backend became ModelConfig.kernels still loads."""
    from cs288_lm.training.loading import model_from_checkpoint

    config = DEFAULT_MODEL.replace(vocab_size=50, d_model=16, num_layers=1, num_heads=2, kernels="reference")
    settings = dataclasses.asdict(config)
    settings["attention_backend"] = settings.pop("kernels")
    _, loaded = model_from_checkpoint({"model": build_model(config).state_dict(), "model_config": settings})
    assert loaded == config
