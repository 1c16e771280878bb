"""The settings of a pretraining run (:class:`TrainConfig`) and the command line that sets them (given).

Settings come from the defaults of :class:`TrainConfig`, then a JSON ``--config`` file, then flags
(one per setting, the model's included: ``--d-model`` sets ``model.d_model``). In a JSON file the
model's settings sit under ``"model"``::

    {"model": {"d_model": 256, "num_layers": 6}, "batch_size": 64}

A model setting at the top of the file (the layout before the model was nested) is an error that
says to move it under ``"model"``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs288_lm.models.architectures import ModelConfig
from cs288_lm.training.settings import (
    DEVICE_HELP,
    REPO_ROOT,
    HelpFormatter,
    add_config_flags,
    config_from_settings,
    flags_given,
    merge_settings,
    read_settings_file,
    setting,
)

# The trainer's default model: small enough to pretrain on a CPU in minutes.
DEFAULT_MODEL = ModelConfig(context_length=128, d_model=128, num_layers=4, num_heads=4)


@dataclass(kw_only=True)
class TrainConfig:
    """The settings of a pretraining run; each field's help is its flag's ``--help`` text."""

    # data: UTF-8 text files, encoded once with the tokenizer and cached as token arrays
    train_data: str = setting(str(REPO_ROOT / "data" / "tinystories" / "train.txt"), "UTF-8 training text")
    valid_data: str = setting(str(REPO_ROOT / "data" / "tinystories" / "valid.txt"), "UTF-8 validation text")
    tokenizer: str = setting(
        str(REPO_ROOT / "data" / "tokenizer"), "saved tokenizer directory (vocab.json, merges.txt)"
    )
    cache_dir: str = setting("out/cache", "where the encoded token arrays are cached, by text and tokenizer")
    model: ModelConfig = setting(
        DEFAULT_MODEL,
        "the model's settings (ModelConfig's fields; vocab_size comes from the tokenizer), over a smaller "
        "default model than ModelConfig's own",
        not_settings=("vocab_size",),
    )
    loss_backend: str = setting("torch", "reference: nn_utils.cross_entropy; torch: F.cross_entropy (fused, faster)")
    # optimisation
    batch_size: int = setting(32, "sequences per optimizer step, over all processes and accumulation steps")
    grad_accum_steps: int = setting(1, "micro-batches per optimizer step, to fit a batch in memory")
    max_steps: int = setting(400, "optimizer steps (unless --token-budget is set)")
    token_budget: int | None = setting(
        None, "tokens to train on: max_steps = ceil(token_budget / (batch_size x context_length))"
    )
    learning_rate: float = setting(3e-3, "peak learning rate, after the warmup")
    min_learning_rate: float = setting(3e-4, "learning rate at the end of the cosine decay")
    warmup_steps: int = setting(20, "steps of linear warmup from 0 to the peak learning rate")
    weight_decay: float = setting(0.1, "AdamW decoupled weight decay, on matrices only (not on gains and biases)")
    beta1: float = setting(0.9, "AdamW first-moment decay")
    beta2: float = setting(0.95, "AdamW second-moment decay")
    eps: float = setting(1e-8, "AdamW denominator epsilon")
    grad_clip: float = setting(1.0, "clip the gradients' global L2 norm to this")
    # evaluation, logging, checkpoints
    eval_interval: int = setting(50, "steps between validation evaluations")
    eval_batches: int = setting(8, "fixed validation batches per evaluation")
    log_interval: int = setting(10, "steps between progress lines and metrics.jsonl records")
    checkpoint_interval: int = setting(200, "steps between saves of checkpoints/latest.pt")
    out_dir: str = setting("out/pretrain", "run directory: config.json, metrics.jsonl, plots, checkpoints/")
    resume: bool = setting(False, "continue from checkpoints/latest.pt in --out-dir")
    final_eval_tokens: int = setting(1_000_000, "validation tokens of the perplexity measured at the end")
    num_samples: int = setting(2, "top-p samples printed at the end (after one greedy sample)")
    sample_tokens: int = setting(80, "new tokens per sample printed at the end")
    # system
    device: str = setting("auto", DEVICE_HELP)
    precision: str = setting("auto", "auto (bf16 autocast on cuda, float32 elsewhere), fp32 or bf16")
    compile: bool = setting(False, "torch.compile the model")
    seed: int = setting(1337, "seed of the initialisation, the batches and the samples")

    def __post_init__(self):
        positive = (
            "batch_size",
            "grad_accum_steps",
            "max_steps",
            "eval_interval",
            "eval_batches",
            "log_interval",
            "checkpoint_interval",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.loss_backend not in ("reference", "torch"):
            raise ValueError(f"loss_backend must be reference or torch, got {self.loss_backend!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError("need 0 <= min_learning_rate <= learning_rate")

    @property
    def total_steps(self) -> int:
        if self.token_budget is None:
            return self.max_steps
        return math.ceil(self.token_budget / (self.batch_size * self.model.context_length))


def train_config(settings: dict[str, Any], source: str) -> TrainConfig:
    """A :class:`TrainConfig` from settings by field name (a JSON object's, or flags'); ``source``
    names them in errors. Unknown names and values of the wrong type raise a ValueError."""
    return config_from_settings(TrainConfig, settings, source)


def train_parser(description: str, **options: Any) -> argparse.ArgumentParser:
    """A command line of ``--config`` and one flag per setting of :class:`TrainConfig`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter, **options)
    parser.add_argument("--config", type=Path, default=None, help="JSON file of settings (flags override it)")
    add_config_flags(parser, TrainConfig)
    return parser


def parse_train_config(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> TrainConfig:
    """The settings a :func:`train_parser` command line gives: :class:`TrainConfig`'s defaults, then
    ``--config FILE``, then flags. Bad settings exit with an argparse error (code 2)."""
    args = parser.parse_args(argv)
    try:
        settings = read_settings_file(args.config) if args.config is not None else {}
        merged = merge_settings(settings, flags_given(args, TrainConfig))
        return train_config(merged, str(args.config or "command line"))
    except ValueError as error:
        parser.error(str(error))
