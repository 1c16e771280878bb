"""The folder of one pretraining run: the only code that knows its layout.

    out/pretrain/
        config.json            the run's settings (TrainConfig, as JSON)
        metrics.jsonl          one JSON record per logged step
        loss.png, perplexity.png
        checkpoints/latest.pt  the state to resume from (saved every checkpoint_interval steps and at the end)
        checkpoints/best.pt    the model at its lowest validation loss so far

Each checkpoint also records the tokenizer the run was trained with (its folder and fingerprint).

Which checkpoint is read: **the model of a run is ``best.pt``**; a run stopped before its first
evaluation has none yet, and then ``latest.pt`` stands in. Resuming always reads ``latest.pt``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = "checkpoints"
BEST = "best.pt"
LATEST = "latest.pt"


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

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

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
        """``checkpoints/<name>.pt``."""
        return self.checkpoint_dir / f"{name}.pt"

    def model_checkpoint(self) -> Path:
        """The checkpoint that holds this run's model (see the module's rule); FileNotFoundError if none."""
        for path in (self.best_checkpoint, self.latest_checkpoint):
            if path.is_file():
                return path
        raise FileNotFoundError(f"no checkpoint in {self.checkpoint_dir} (expected {BEST} or {LATEST})")


def model_checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file to read for ``path``: the file itself, or a run folder's model checkpoint."""
    path = Path(path)
    return RunDir(path).model_checkpoint() if path.is_dir() else path
