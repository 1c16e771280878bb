"""The folder of one pretraining run: the only code that knows its layout.

    out/pretrain/
        config.json            the run's settings (TrainConfig as JSON; a valid --config file)
        metrics.jsonl          one JSON record per logged step
        loss.png, perplexity.png
        checkpoints/latest.pt  the state to resume from (saved every checkpoint_interval steps and at the end)
        checkpoints/best.pt    the model at its lowest validation loss so far

Each checkpoint holds the model's weights (``model``) and its ``ModelConfig`` (``model_config``),
the run's settings (``config``), the optimizer, the step and the random generators' states, and the
tokenizer the run was trained with (``tokenizer``: its folder and :func:`tokenizer_record`'s
fingerprint).

Which checkpoint is read: **the model of a run is ``best.pt``**; a run stopped before its first
evaluation has none yet, and then ``latest.pt`` stands in. Resuming always reads ``latest.pt``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cs288_lm.common.plots import CURVES, plot_runs, read_metrics
from cs288_lm.training.token_files import tokenizer_fingerprint

CHECKPOINTS = "checkpoints"
BEST = "best.pt"
LATEST = "latest.pt"
# A sweep (cs288_lm.pipelines.sweep) is a folder of run folders and this table, one row per run.
SWEEP_RESULTS = "results.csv"


@dataclass(frozen=True)
class RunDir:
    """A pretraining run's folder (it need not exist yet)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def containing(cls, path: str | os.PathLike) -> RunDir:
        """The run of ``path``: a run folder itself, or a checkpoint file inside (or beside) one."""
        path = Path(path)
        if path.is_dir():
            return cls(path)
        return cls(path.parent.parent if path.parent.name == CHECKPOINTS else path.parent)

    # -- paths ---------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def plot_paths(self) -> list[Path]:
        """The plots :meth:`write_plots` draws (training and validation loss, validation perplexity)."""
        return [self.root / f"{name}.png" for name in CURVES]

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / BEST

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoint_dir / LATEST

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.pt`` (``name`` is ``best`` or ``latest``)."""
        return self.checkpoint_dir / f"{name}.pt"

    def model_checkpoint(self) -> Path:
        """The checkpoint that holds this run's model (see the module's rule); FileNotFoundError if none."""
        for path in (self.best_checkpoint, self.latest_checkpoint):
            if path.is_file():
                return path
        raise FileNotFoundError(f"no checkpoint in {self.checkpoint_dir} (expected {BEST} or {LATEST})")

    # -- reading and writing -------------------------------------------------------------------

    def write_config(self, settings: dict[str, Any]) -> None:
        """``config.json``: the run's settings (``settings_of(config)``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(settings, indent=2) + "\n")

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def truncate_metrics(self, step: int) -> None:
        """Drop records logged after ``step`` (a crash after the checkpoint resumed from may have left some)."""
        if self.metrics_path.is_file():
            kept = [r for r in self.read_metrics() if r["step"] <= step]
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write_plots(self) -> list[Path]:
        """Draw :attr:`plot_paths` from ``metrics.jsonl``."""
        return plot_runs({"train": self.read_metrics()}, self.root)

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        """Write ``checkpoints/<name>.pt`` atomically: a run stopped while saving keeps the previous file."""
        path = self.checkpoint(name)
        atomic_torch_save(state, path)
        return path

    def load_resume_state(self) -> dict[str, Any]:
        """The whole of ``latest.pt`` (optimizer and generator states included), to resume from."""
        path = self.latest_checkpoint
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without --resume")
        return torch.load(path, map_location="cpu", weights_only=False)


def tokenizer_record(tokenizer_dir: str | os.PathLike) -> dict[str, str]:
    """What a checkpoint records of its tokenizer: the folder and its fingerprint."""
    return {"path": str(tokenizer_dir), "fingerprint": tokenizer_fingerprint(tokenizer_dir)}


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def model_checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file to read for ``path``: the file itself, or a run folder's model checkpoint."""
    path = Path(path)
    return RunDir(path).model_checkpoint() if path.is_dir() else path
