"""The two-process DDP runs, repeated: every run must end with its expected exit codes, within the
timeout, and without an abort at exit.

A teardown race (destroying the process group against gloo's threads, a collective left pending on
one process) shows only in some runs: an earlier version of the trainer aborted at exit
("terminate called without an active exception", SIGABRT) in about 6 of 14 runs. One run of each
case is in the normal suite (``test_pretrain.py``, section 4); this file repeats them, which takes
minutes, so it is marked ``stress`` and left out of the default run. Run it with

    .venv/bin/python -m pytest -m stress instructor_tests/test_ddp_stress.py

``DDP_STRESS_RUNS`` sets the runs per case (10 by default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructor_tests.test_pretrain import REPO_ROOT, start_ranks, subprocess_env, tiny_args, wait_for_ranks

RUNS = int(os.environ.get("DDP_STRESS_RUNS", "10"))
ABORTS = ("terminate called", "Aborted", "core dumped", "Fatal Python error", "Traceback")

pytestmark = pytest.mark.stress


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token cache for every run (the first run's main process encodes it)."""
    return tmp_path_factory.mktemp("cache")


# Each case: the trainer's flags (after the tiny model's) and the exit codes of the two processes.
CASES = {
    "finishes": ("--max-steps 4", [0, 0]),
    # A run that only the signal ends.
    "sigterm-to-one": ("--max-steps 100000 --log-interval 1 --eval-interval 50000 --checkpoint-interval 50000", [0, 0]),
    "nan-on-every-process": (
        "--learning-rate 1e6 --min-learning-rate 1e6 --warmup-steps 0 --max-steps 50 --log-interval 1",
        [1, 1],
    ),
    # The main process cannot save (its checkpoint directory is a file); the other one fails in its next collective.
    "main-process-fails": ("", [1, 1]),
}


def signal_after_the_first_step(processes: list[subprocess.Popen], out: Path) -> None:
    """SIGTERM to process 1 only, once a step is logged (the signal handlers are installed by then)."""
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip()):
        if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
            return  # the exit codes below say what went wrong
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)


@pytest.mark.parametrize("repetition", range(RUNS))
def test_torchrun_with_two_processes_ends_without_an_abort(cache, tmp_path, repetition):
    """The launcher students use: a run that finishes; an abort of either process fails the launch."""
    launcher = "-m torch.distributed.run --nproc_per_node=2 --standalone --monitor-interval 0.1".split()
    argv = tiny_args(tmp_path / "ddp", cache, "--max-steps", "4")
    command = [sys.executable, *launcher, "-m", "cs288_lm.pipelines.pretrain", *argv]
    result = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert not any(sign in result.stderr for sign in ABORTS), output


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("repetition", range(RUNS))
def test_two_processes_end_without_an_abort(cache, tmp_path, case, repetition):
    """Each process started as torchrun would start it, each with its own exit code."""
    out = tmp_path / "ddp"
    flags, expected = CASES[case]
    if case == "main-process-fails":
        out.mkdir()
        (out / "checkpoints").write_text("not a directory")
    processes = start_ranks(tiny_args(out, cache, *flags.split()), tmp_path)
    try:
        if case == "sigterm-to-one":
            signal_after_the_first_step(processes, out)
    finally:
        codes = wait_for_ranks(processes, timeout=150)
    errors = [(tmp_path / f"stderr{rank}").read_text() for rank in range(2)]
    report = "\n".join(
        f"--- process {rank}: exit code {code}\n{error[-2000:]}"
        for rank, (code, error) in enumerate(zip(codes, errors, strict=True))
    )
    assert None not in codes, f"a process was still running after 150 s\n{report}"
    assert codes == expected, report
    for error in errors:
        assert not any(sign in error for sign in ABORTS), report
