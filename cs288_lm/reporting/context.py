"""The report's inputs, read and checked once before any section runs: the checkpoint and its run
folder, the model, the tokenizer, the evaluation text and the optional GPT-2."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cs288_lm.analysis.metrics import cut_text, scoring_ids
from cs288_lm.analysis.sampling_study import Sample
from cs288_lm.common.pretokenization import EOT
from cs288_lm.models.architectures import ModelConfig
from cs288_lm.models.hf_interop import PretrainedGPT2
from cs288_lm.models.kv_cache import LanguageModel
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.loading import model_from_checkpoint, read_checkpoint
from cs288_lm.training.run_dir import SWEEP_RESULTS, RunDir, model_checkpoint_path
from cs288_lm.training.settings import REPO_ROOT
from cs288_lm.training.token_files import tokenizer_fingerprint

DEFAULT_TEXT = REPO_ROOT / "data" / "tinystories" / "valid.txt"
DEFAULT_TOKENIZER = REPO_ROOT / "data" / "tokenizer"


class ReportError(Exception):
    """Bad input to the report: the message says what and where."""


@dataclass(frozen=True)
class TrainingSettings:
    """The settings of the training run that the report shows (a part of its TrainConfig)."""

    train_data: Path | None  # the training text, when the run named one
    batch_size: int
    device: str


def training_settings(checkpoint: dict) -> TrainingSettings:
    """The run's settings, from the TrainConfig the trainer saved in the checkpoint (``"config"``, a
    dict): the one place the report reads TrainConfig's fields."""
    config = checkpoint.get("config") or {}
    return TrainingSettings(
        train_data=Path(config["train_data"]) if config.get("train_data") else None,
        batch_size=int(config.get("batch_size", 32)),
        device=str(config.get("device", "?")),
    )


@dataclass
class Context:
    """Everything the sections share; the sampling section leaves its samples for the comparison."""

    args: argparse.Namespace
    checkpoint: dict
    checkpoint_path: Path
    run: RunDir
    model: LanguageModel
    config: ModelConfig
    tokenizer: Tokenizer
    tokenizer_dir: Path
    eos: int | None
    text: str
    text_path: Path
    ids: list[int]  # the text to score: end-of-text, then the text's ids
    num_bytes: int
    training: TrainingSettings
    gpt2: PretrainedGPT2 | None = None  # loaded by the comparison's check of its inputs
    gpt2_problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)  # part -> (wall, CPU) seconds

    def progress(self, message: str) -> None:
        if not self.args.quiet:
            print(f"[report] {message}", file=sys.stderr, flush=True)


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; ReportError (naming ``what``) if missing, not UTF-8 or blank."""
    if not path.is_file():
        raise ReportError(f"{what} {path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ReportError(f"{what} {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise ReportError(f"{what} {path} is empty: there is no text to evaluate the model on")
    return text


def choose_tokenizer(checkpoint: dict, requested: str | None) -> tuple[Path, str | None]:
    """The tokenizer directory (``--tokenizer``, else the one the checkpoint was trained with, else
    the bundled one) and a warning when its fingerprint differs from the training tokenizer's."""
    trained_with = checkpoint.get("tokenizer") or {}
    candidates = [requested] if requested else [trained_with.get("path"), str(DEFAULT_TOKENIZER)]
    directory = next((Path(c) for c in candidates if c and (Path(c) / "vocab.json").is_file()), None)
    if directory is None:
        raise ReportError(
            f"no tokenizer found (tried {', '.join(str(c) for c in candidates if c)}): pass --tokenizer DIR"
        )
    expected = trained_with.get("fingerprint")
    warning = None
    if expected is not None and tokenizer_fingerprint(directory) != expected:
        trained_path = trained_with.get("path")
        warning = (
            f"the tokenizer files in {directory} changed since the model was trained with them"
            if trained_path and Path(trained_path).resolve() == directory.resolve()
            else f"the model was trained with the tokenizer in {trained_path}, not {directory}"
        )
    return directory, warning


def load_checkpoint(requested: str | os.PathLike) -> tuple[Path, dict]:
    """(checkpoint file, its contents) for ``--checkpoint``: a run folder (its model checkpoint, see
    :class:`~cs288_lm.training.run_dir.RunDir`) or a checkpoint file."""
    try:
        path = model_checkpoint_path(requested)
        return path, read_checkpoint(path)
    except (FileNotFoundError, ValueError) as error:
        raise ReportError(
            f"--checkpoint {requested}: {error}. Expected a run directory of cs288_lm.pipelines.pretrain "
            "(holding checkpoints/best.pt) or a checkpoint file"
        ) from None


def load_tokenizer(checkpoint: dict, requested: str | None, vocab_size: int) -> tuple[Path, Tokenizer, str | None]:
    """(directory, tokenizer, warning) for the model (see :func:`choose_tokenizer`); its ids must fit the model."""
    directory, warning = choose_tokenizer(checkpoint, requested)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    tokenizer = Tokenizer.from_directory(directory)
    if max(tokenizer.vocab) >= vocab_size:
        raise ReportError(
            f"the tokenizer in {directory} has ids up to {max(tokenizer.vocab)} but the model's vocabulary "
            f"size is {vocab_size}: pass the tokenizer the model was trained with (--tokenizer)"
        )
    return directory, tokenizer, warning


def build_context(args: argparse.Namespace) -> Context:
    """Read and check every input; bad input raises ReportError before any section runs."""
    checkpoint_path, checkpoint = load_checkpoint(args.checkpoint)
    try:
        model, config = model_from_checkpoint(checkpoint, args.device)
    except (TypeError, ValueError) as error:
        raise ReportError(f"--checkpoint {checkpoint_path}: cannot build its model: {error}") from None
    tokenizer_dir, tokenizer, warning = load_tokenizer(checkpoint, args.tokenizer, config.vocab_size)
    text_path = Path(args.text)
    text = cut_text(read_text_file(text_path, "--text"), args.max_text_bytes)
    eos = tokenizer.special_token_ids.get(EOT)
    ids, num_bytes = scoring_ids(tokenizer, text, eos)
    if len(ids) < 2:
        raise ReportError(f"--text {text_path} is too short: it encodes to {len(ids)} token(s)")
    if args.sweep is not None and not (Path(args.sweep) / SWEEP_RESULTS).is_file():
        raise ReportError(
            f"--sweep {args.sweep}: not a sweep directory (no {SWEEP_RESULTS}); run python -m cs288_lm.pipelines.sweep"
        )
    context = Context(
        args=args,
        checkpoint=checkpoint,
        checkpoint_path=checkpoint_path,
        run=RunDir.containing(args.checkpoint),
        model=model,
        config=config,
        tokenizer=tokenizer,
        tokenizer_dir=tokenizer_dir,
        eos=eos,
        text=text,
        text_path=text_path,
        ids=ids,
        num_bytes=num_bytes,
        training=training_settings(checkpoint),
    )
    if warning:
        context.warnings.append(
            f"{warning}: its token ids mean other strings, so every number below is wrong. "
            "Retrain, or pass the training tokenizer with --tokenizer."
        )
    return context
