"""Loading a pretrained model from a checkpoint of :mod:`cs288_lm.pipelines.pretrain` (given).

Used by the sampling command line (:mod:`cs288_lm.pipelines.generate`), the Part 4 main job
(:mod:`cs288_lm.pipelines.qa_job`) and the analysis report (:mod:`cs288_lm.pipelines.report`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cs288_lm.model import load_state_dict_strictly
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.training.settings import resolve_device


def load_pretrained_model(
    checkpoint_path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, ModelConfig]:
    """The model of a :mod:`cs288_lm.pipelines.pretrain` checkpoint, in eval mode on ``device`` ("auto" allowed).

    ``checkpoint_path`` is a checkpoint file or a run directory (its ``checkpoints/best.pt``).
    A missing file raises FileNotFoundError; a file that is not such a checkpoint, ValueError.
    """
    return model_from_checkpoint(read_checkpoint(checkpoint_path), device)


def read_checkpoint(checkpoint_path: str | os.PathLike) -> dict:
    """The dictionary saved by the trainer (tensors on the CPU); see :func:`load_pretrained_model`."""
    path = Path(checkpoint_path)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    except Exception as error:  # torch raises many kinds for a corrupt or foreign file
        raise ValueError(
            f"cannot read checkpoint {path} ({type(error).__name__}): not a file written by cs288_lm.pipelines.pretrain?"
        ) from error
    if not isinstance(checkpoint, dict) or not {"model", "model_config"} <= checkpoint.keys():
        raise ValueError(
            f"{path} is not a checkpoint written by cs288_lm.pipelines.pretrain (no 'model' and 'model_config')"
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelConfig]:
    config = ModelConfig(**checkpoint["model_config"])
    model = build_model(config)
    load_state_dict_strictly(model, checkpoint["model"])
    return model.to(resolve_device(str(device))).eval(), config
