"""Loading a pretrained model from a checkpoint of the trainer (:mod:`cs288_lm.training.trainer`) (given).

Used by the sampling command line (:mod:`cs288_lm.pipelines.generate`), the Part 4 main job
(:mod:`cs288_lm.training.qa_job`) and the analysis report. A run folder's model is read by the rule
of :mod:`cs288_lm.training.run_dir` (``best.pt``, else ``latest.pt``).
"""

from __future__ import annotations

import os

import torch

from cs288_lm.model import load_state_dict_strictly
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.models.kv_cache import LanguageModel
from cs288_lm.training.run_dir import model_checkpoint_path
from cs288_lm.training.settings import resolve_device

# Model settings renamed since checkpoints were first written: old name -> new name.
_RENAMED_MODEL_SETTINGS = {"attention_backend": "kernels"}


def load_pretrained_model(
    checkpoint_path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[LanguageModel, ModelConfig]:
    """The model of a trainer's checkpoint, in eval mode on ``device`` ("auto" allowed).

    ``checkpoint_path`` is a checkpoint file or a run directory (its model checkpoint, see
    :mod:`cs288_lm.training.run_dir`). A missing file raises FileNotFoundError; a file that is not
    such a checkpoint, ValueError.
    """
    return model_from_checkpoint(read_checkpoint(checkpoint_path), device)


def read_checkpoint(checkpoint_path: str | os.PathLike) -> dict:
    """The dictionary saved by the trainer (tensors on the CPU); see :func:`load_pretrained_model`."""
    path = model_checkpoint_path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    except Exception as error:  # torch raises many kinds for a corrupt or foreign file
        raise ValueError(
            f"cannot read checkpoint {path} ({type(error).__name__}): not a file written by cs288_lm's trainer?"
        ) from error
    if not isinstance(checkpoint, dict) or not {"model", "model_config"} <= checkpoint.keys():
        raise ValueError(f"{path} is not a checkpoint written by cs288_lm's trainer (no 'model' and 'model_config')")
    return checkpoint


def checkpoint_model_config(checkpoint: dict) -> ModelConfig:
    """The ``ModelConfig`` a checkpoint was trained with (renamed settings read under their new names,
    settings added since then at their defaults); TypeError or ValueError if it names no valid one."""
    settings = {_RENAMED_MODEL_SETTINGS.get(name, name): value for name, value in checkpoint["model_config"].items()}
    return ModelConfig(**settings)


def model_from_checkpoint(checkpoint: dict, device: torch.device | str = "cpu") -> tuple[LanguageModel, ModelConfig]:
    config = checkpoint_model_config(checkpoint)
    model = build_model(config)
    load_state_dict_strictly(model, checkpoint["model"])
    return model.to(resolve_device(str(device))).eval(), config
