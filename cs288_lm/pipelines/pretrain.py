"""Pretrain a language model on a text corpus (Part 4), on one CPU or several GPUs.

    python -m cs288_lm.pipelines.pretrain                # small model, bundled TinyStories, a few minutes on CPU
    python -m cs288_lm.pipelines.pretrain --resume       # continue the run in --out-dir
    python -m cs288_lm.pipelines.pretrain --config configs/tinystories.json \\
        --train-data data/TinyStoriesV2-GPT4-train.txt
    torchrun --nproc_per_node=4 -m cs288_lm.pipelines.pretrain --config ...   # DistributedDataParallel

Settings come from the defaults of :class:`TrainConfig`, then a JSON ``--config`` file, then flags
(one per field). The run writes to ``--out-dir``: ``config.json``, ``metrics.jsonl`` (one JSON
record per logged step), ``loss.png`` and ``perplexity.png``, and ``checkpoints/latest.pt`` and
``checkpoints/best.pt`` (by validation loss).

Resume is exact on CPU: a run stopped at step k and resumed reaches bit-for-bit the same losses as
an uninterrupted one, because checkpoints hold the model, the optimizer, the step and every random
number generator's state. Ctrl-C (SIGINT) or SIGTERM saves ``latest.pt`` after the current step
and exits cleanly; with several processes, a signal to any one of them stops them all after the
same step. A NaN or infinite loss stops the run and leaves the last good checkpoint as is. The
process group is torn down however the run ends, so an error in one process ends the others too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cs288_lm.common.plots import plot_runs, read_metrics
from cs288_lm.common.pretokenization import EOT
from cs288_lm.data import get_batch
from cs288_lm.model import count_parameters
from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.nn_utils import cross_entropy, get_lr_cosine_schedule, gradient_clipping
from cs288_lm.optimizer import AdamW, parameter_groups
from cs288_lm.sampling import eval_mode, generate
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.flops import peak_flops, training_flops_per_token
from cs288_lm.training.settings import (
    DEVICE_HELP,
    REPO_ROOT,
    HelpFormatter,
    add_config_flags,
    config_from_settings,
    flags_given,
    read_settings_file,
    resolve_device,
    setting,
)
from cs288_lm.training.token_files import load_tokens, prepare_token_file, tokenizer_fingerprint


@dataclass
class TrainConfig:
    """The settings of a pretraining run; each field's help is its flag's ``--help`` text."""

    # data: UTF-8 text files, encoded once with the tokenizer and cached as token arrays
    train_data: str = setting(str(REPO_ROOT / "data" / "tinystories" / "train.txt"), "UTF-8 training text")
    valid_data: str = setting(str(REPO_ROOT / "data" / "tinystories" / "valid.txt"), "UTF-8 validation text")
    tokenizer: str = setting(
        str(REPO_ROOT / "data" / "tokenizer"), "saved tokenizer directory (vocab.json, merges.txt)"
    )
    cache_dir: str = setting("out/cache", "where the encoded token arrays are cached, by text and tokenizer")
    # model (vocab_size comes from the tokenizer)
    architecture: str = setting("llama", "llama (RoPE, RMSNorm, SwiGLU) or gpt2 (learned positions, LayerNorm, GELU)")
    context_length: int = setting(128, "tokens per training sequence, and the longest the model reads")
    d_model: int = setting(128, "width of the residual stream")
    num_layers: int = setting(4, "transformer blocks")
    num_heads: int = setting(4, "attention heads per block (must divide d_model)")
    d_ff: int | None = setting(
        None, "hidden width of the MLP; none: the architecture's own (llama about 8/3 d_model, gpt2 4 d_model)"
    )
    rope_theta: float = setting(10_000.0, "RoPE base (llama only)")
    dropout: float = setting(0.0, "dropout probability (gpt2 only)")
    attention_backend: str = setting(
        "torch",
        "reference: the code students write; torch: fused kernels (scaled_dot_product_attention, SiLU), same function",
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
        positive = ("context_length", "batch_size", "grad_accum_steps", "max_steps", "eval_interval", "eval_batches",
                    "log_interval", "checkpoint_interval")
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
        return math.ceil(self.token_budget / (self.batch_size * self.context_length))

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            self.architecture, vocab_size, self.context_length, self.d_model, self.num_layers, self.num_heads,
            self.d_ff, self.rope_theta, self.dropout, self.attention_backend,
        )


def fused_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` over any leading dimensions (same value as ours)."""
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Configuration from defaults, a JSON file and flags
# ---------------------------------------------------------------------------------------------


def train_config(settings: dict[str, Any], source: str) -> TrainConfig:
    """A :class:`TrainConfig` from settings by field name (a JSON object's, or flags'); ``source``
    names them in errors. Unknown names and values of the wrong type raise a ValueError."""
    return config_from_settings(TrainConfig, settings, source)


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``--config`` and one flag per :class:`TrainConfig` field."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="JSON file of settings (flags override it)")
    add_config_flags(parser, TrainConfig)
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """The settings of a run: :class:`TrainConfig`'s defaults, then ``--config FILE``, then flags.
    Bad settings exit with an argparse error (code 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = read_settings_file(args.config) if args.config is not None else {}
        return train_config({**settings, **flags_given(args, TrainConfig)}, str(args.config or "command line"))
    except ValueError as error:
        parser.error(str(error))


# ---------------------------------------------------------------------------------------------
# Devices, precision and processes
# ---------------------------------------------------------------------------------------------


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set); pick the device."""
    if "RANK" not in os.environ:
        return Processes(), resolve_device(device_name)
    processes = Processes(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return processes, device


# ---------------------------------------------------------------------------------------------
# Random number generators: everything a resumed run needs to continue identically
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(batch_rng: np.random.Generator) -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state(), "numpy_batches": batch_rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, batch_rng: np.random.Generator) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    batch_rng.bit_generator.state = state["numpy_batches"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.processes, self.device = init_processes(config.device)
        self.out_dir = Path(config.out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.stop_requested = False  # set by a signal to this process; see _stop_agreed
        # The processes agree on stopping through a CPU tensor, so that asking never waits for the
        # GPU; NCCL reduces only GPU tensors, hence a gloo group beside it.
        self.stop_group = None
        if self.processes.world_size > 1 and dist.get_backend() != "gloo":
            self.stop_group = dist.new_group(backend="gloo")
        micro_batches = config.grad_accum_steps * self.processes.world_size
        if config.batch_size % micro_batches:
            raise ValueError(
                f"batch_size={config.batch_size} must be divisible by grad_accum_steps x processes = {micro_batches}"
            )
        self.micro_batch_size = config.batch_size // micro_batches
        self.loss_function = cross_entropy if config.loss_backend == "reference" else fused_cross_entropy

        self.tokenizer = Tokenizer.from_directory(config.tokenizer)
        self.train_tokens, self.valid_tokens = self._prepare_data()
        self.model_config = config.model_config(max(self.tokenizer.vocab) + 1)
        self.batch_rng = seed_everything(config.seed)
        self.model = build_model(self.model_config).to(self.device)
        self.optimizer = AdamW(
            parameter_groups(self.model, config.weight_decay),
            lr=config.learning_rate,
            betas=(config.beta1, config.beta2),
            eps=config.eps,
        )
        self.step, self.tokens_seen, self.best_val_loss = 0, 0, math.inf
        self.unlogged_losses: list[float] = []  # losses since the last log record, averaged into it
        self.pending_losses: list[torch.Tensor] = []  # the latest steps' losses, still on the device
        if config.resume:
            self._load_checkpoint(self.checkpoint_dir / "latest.pt")
        self.forward_model: nn.Module = self.model
        if config.compile:
            self.forward_model = torch.compile(self.forward_model)
        if self.processes.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = nn.parallel.DistributedDataParallel(self.forward_model, device_ids=device_ids)
        self.val_batches = self._fixed_validation_batches()
        self.flops_per_token = training_flops_per_token(self.model_config)
        self.peak_flops = peak_flops(self.device)

    # -- setup -----------------------------------------------------------------------------

    def _prepare_data(self) -> tuple[np.ndarray, np.ndarray]:
        paths = []
        for text in (self.config.train_data, self.config.valid_data):
            # The main process encodes (in parallel workers); the others wait, then reuse the cache.
            if self.processes.is_main:
                paths.append(prepare_token_file(text, self.config.tokenizer, self.config.cache_dir))
            self._barrier()
            if not self.processes.is_main:
                paths.append(prepare_token_file(text, self.config.tokenizer, self.config.cache_dir, verbose=False))
        return load_tokens(paths[0]), load_tokens(paths[1])

    def _fixed_validation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(self.config.seed + 1)
        return [
            get_batch(self.valid_tokens, self.config.batch_size, self.config.context_length, self.device, rng)
            for _ in range(self.config.eval_batches)
        ]

    def _barrier(self) -> None:
        if self.processes.world_size > 1:
            dist.barrier()

    # -- checkpoints -------------------------------------------------------------------------

    def _checkpoint(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val_loss,
            "unlogged_losses": self.unlogged_losses,
            "rng": rng_state(self.batch_rng),
            "config": dataclasses.asdict(self.config),
            "model_config": dataclasses.asdict(self.model_config),
            "tokenizer": {"path": self.config.tokenizer, "fingerprint": tokenizer_fingerprint(self.config.tokenizer)},
        }

    def save_checkpoint(self, name: str) -> Path:
        self._read_losses()  # a stop request may come after train() read them
        path = self.checkpoint_dir / f"{name}.pt"
        if self.processes.is_main:
            atomic_torch_save(self._checkpoint(), path)
        return path

    def _load_checkpoint(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without --resume")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if checkpoint["model_config"] != dataclasses.asdict(self.model_config):
            raise ValueError(f"{path} was trained with a different model: {checkpoint['model_config']}")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step, self.tokens_seen = checkpoint["step"], checkpoint["tokens_seen"]
        self.best_val_loss = checkpoint["best_val_loss"]
        self.unlogged_losses = list(checkpoint["unlogged_losses"])
        restore_rng_state(checkpoint["rng"], self.batch_rng)
        if self.processes.is_main:
            self._truncate_metrics(self.step)
            print(f"[train] resumed from {path} at step {self.step}", file=sys.stderr)

    def _truncate_metrics(self, step: int) -> None:
        """Drop records logged after the checkpoint we resume from (a crash may have left some)."""
        if self.metrics_path.is_file():
            kept = [r for r in read_metrics(self.metrics_path) if r["step"] <= step]
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    # -- training ----------------------------------------------------------------------------

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over ``batch_size`` sequences; returns (mean loss, gradient norm).

        Both stay on the device, unread: reading a value waits for the device to finish the step.
        ``train`` reads the losses (and checks them for NaN) only when a record, an evaluation or a
        checkpoint needs them (:meth:`_read_losses`)."""
        config = self.config
        # The schedule's iterations count from 1 here: iteration 0 is a rate of 0 (a wasted step),
        # and the last step must be iteration total_steps so that the minimum rate is reached.
        learning_rate = get_lr_cosine_schedule(
            self.step + 1, config.learning_rate, config.min_learning_rate, config.warmup_steps, config.total_steps
        )
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        total_loss = torch.zeros((), device=self.device)
        rows = slice(self.processes.rank * self.micro_batch_size, (self.processes.rank + 1) * self.micro_batch_size)
        for micro_step in range(config.grad_accum_steps):
            # Every process draws the same windows and keeps its own rows, so N processes see
            # exactly the batch one process would.
            inputs, targets = get_batch(
                self.train_tokens, self.micro_batch_size * self.processes.world_size, config.context_length,
                self.device, self.batch_rng,
            )
            inputs, targets = inputs[rows], targets[rows]
            last = micro_step == config.grad_accum_steps - 1
            sync = contextlib.nullcontext() if last or self.processes.world_size == 1 else self.forward_model.no_sync()
            with sync, autocast_context(self.device, config.precision):
                loss = self.loss_function(self.forward_model(inputs), targets) / config.grad_accum_steps
            loss.backward()
            total_loss += loss.detach()
        if self.processes.world_size > 1:
            dist.all_reduce(total_loss, op=dist.ReduceOp.AVG)
        norm = gradient_clipping(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += config.batch_size * config.context_length
        return total_loss, norm

    def _read_losses(self) -> None:
        """Move the pending device losses into ``unlogged_losses`` with one host sync.

        A NaN or infinite loss raises TrainingDiverged naming its step. Every record, evaluation and
        checkpoint reads the losses first, so nothing after a bad step is logged or saved: the last
        checkpoint is the last good one."""
        if not self.pending_losses:
            return
        values = torch.stack(self.pending_losses).tolist()
        first_step = self.step - len(values) + 1
        self.pending_losses = []
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                latest = self.checkpoint_dir / "latest.pt"
                kept = f"the last good checkpoint is {latest}" if latest.is_file() else "no checkpoint was saved yet"
                raise TrainingDiverged(
                    f"the training loss became {value} at step {first_step + offset}; {kept}. "
                    "Lower --learning-rate, raise --warmup-steps or check the data."
                )
        self.unlogged_losses.extend(values)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss, perplexity and token accuracy on the fixed validation batches."""
        losses, correct, count = [], 0, 0
        with eval_mode(self.model):
            for inputs, targets in self.val_batches:
                with autocast_context(self.device, self.config.precision):
                    logits = self.model(inputs)
                losses.append(float(self.loss_function(logits.float(), targets)))
                correct += int((logits.argmax(-1) == targets).sum())
                count += targets.numel()
        loss = sum(losses) / len(losses)
        return {"val_loss": loss, "val_perplexity": math.exp(loss), "val_accuracy": correct / count}

    def _log(self, record: dict) -> None:
        if self.processes.is_main:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")

    def train(self) -> dict[str, float]:
        """Run the remaining steps; after each, log, evaluate and save a checkpoint when they are due,
        and stop early (with a checkpoint) when asked to. Returns the step reached and the best
        validation loss."""
        self._start_run()
        while self.step < self.config.total_steps:
            loss, norm = self.train_step()
            self.pending_losses.append(loss)
            stopping = self._stop_agreed()
            intervals = (self.config.log_interval, self.config.eval_interval, self.config.checkpoint_interval)
            if stopping or any(self._due(interval) for interval in intervals):
                self._read_losses()  # the one host sync of the steps since the last read
            self.window_tokens += self.config.batch_size * self.config.context_length
            record = self._log_progress(float(norm)) if self._due(self.config.log_interval) else {}
            if self._due(self.config.eval_interval):
                record = {"step": self.step, "tokens": self.tokens_seen, **record, **self._evaluate_and_keep_best()}
            if record:
                self._log(record)
            if self._due(self.config.checkpoint_interval) or stopping:
                self.save_checkpoint("latest")
            if stopping:
                self._say(f"[train] stopped at step {self.step}; saved {self.checkpoint_dir / 'latest.pt'}; "
                          "continue with --resume")
                break
        if self.processes.is_main:
            plot_runs({"train": read_metrics(self.metrics_path)}, self.out_dir)
        return {"step": self.step, "best_val_loss": self.best_val_loss}

    def _stop_agreed(self) -> bool:
        """Whether any process was asked to stop. A signal may reach one process only (a scheduler's
        SIGTERM, a kill): if it stopped alone, the others would wait for it in their next all_reduce
        forever. So every step, all processes reduce their flags and stop after the same step."""
        if self.processes.world_size == 1:
            return self.stop_requested
        flag = torch.tensor(int(self.stop_requested))  # on the CPU: reading it does not wait for a GPU
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.stop_group)
        return bool(flag)

    def _say(self, message: str) -> None:
        """Print a progress message (main process only: the others would repeat it)."""
        if self.processes.is_main:
            print(message, file=sys.stderr)

    def _due(self, interval: int) -> bool:
        """Whether something done every ``interval`` steps is due now (it always is at the last step)."""
        return self.step % interval == 0 or self.step == self.config.total_steps

    def _start_run(self) -> None:
        """Write the run's settings, describe it, and start the clocks of the progress reports."""
        config = self.config
        if self.processes.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        self._say(
            f"[train] {self.model_config.architecture} model, {count_parameters(self.model):,} parameters, on "
            f"{self.device} x{self.processes.world_size}; {len(self.train_tokens):,} training tokens; "
            f"{config.total_steps} steps of {config.batch_size} x {config.context_length} tokens"
        )
        if self.peak_flops is not None and self.flops_per_token is None:
            self._say("[train] MFU n/a: implement count_flops_per_token (cs288_lm/model.py, Part 2) to see it")
        self.window_start = self.run_start = time.perf_counter()
        self.window_tokens, self.start_step = 0, self.step

    def _log_progress(self, norm: float) -> dict[str, Any]:
        """The training record of the steps since the last one (mean loss, speed, MFU); printed."""
        total = self.config.total_steps
        elapsed = time.perf_counter() - self.window_start
        tokens_per_second = self.window_tokens / max(elapsed, 1e-9)
        record: dict[str, Any] = {
            "step": self.step, "tokens": self.tokens_seen, "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": sum(self.unlogged_losses) / len(self.unlogged_losses), "grad_norm": norm,
            "tokens_per_second": tokens_per_second,
        }
        utilisation = ""
        if self.peak_flops is not None:
            if self.flops_per_token is None:
                utilisation = " | MFU n/a"
            else:
                record["mfu"] = tokens_per_second * self.flops_per_token / (self.peak_flops * self.processes.world_size)
                utilisation = f" | MFU {record['mfu']:.1%}"
        done = (self.step - self.start_step) / max(total - self.start_step, 1)
        eta = (time.perf_counter() - self.run_start) * (1 - done) / max(done, 1e-9)
        self._say(f"step {self.step}/{total} | loss {record['train_loss']:.4f} | lr {record['lr']:.2e} | "
                  f"grad norm {norm:.2f} | {tokens_per_second:,.0f} tok/s{utilisation} | ETA {_duration(eta)}")
        self.window_start, self.window_tokens, self.unlogged_losses = time.perf_counter(), 0, []
        return record

    def _evaluate_and_keep_best(self) -> dict[str, float]:
        """Validation metrics now; a new best validation loss saves ``best.pt``."""
        metrics = self.evaluate()
        self._say(f"step {self.step}/{self.config.total_steps} | val loss {metrics['val_loss']:.4f} | "
                  f"val perplexity {metrics['val_perplexity']:.2f}")
        if metrics["val_loss"] < self.best_val_loss:
            self.best_val_loss = metrics["val_loss"]
            self.save_checkpoint("best")
        return metrics

    def request_stop(self, signum: int, frame: types.FrameType | None) -> None:
        # Printed by whichever process got the signal: it may be the only one that did.
        where = f" (process {self.processes.rank})" if self.processes.world_size > 1 else ""
        name = signal.Signals(signum).name
        print(f"\n[train] {name}{where}: saving a checkpoint after this step...", file=sys.stderr)
        self.stop_requested = True

    # -- after training ----------------------------------------------------------------------

    @torch.no_grad()
    def validation_perplexity(self) -> float:
        """Perplexity over consecutive windows of the validation file (up to final_eval_tokens)."""
        context = self.config.context_length
        usable = min(len(self.valid_tokens) - 1, self.config.final_eval_tokens)
        windows = usable // context
        if windows == 0:
            raise ValueError(f"the validation data has fewer than {context + 1} tokens")
        tokens = torch.from_numpy(np.asarray(self.valid_tokens[: windows * context + 1], dtype=np.int64))
        total, count = 0.0, 0
        with eval_mode(self.model):
            for start in range(0, windows, self.config.batch_size):
                rows = range(start, min(start + self.config.batch_size, windows))
                inputs = torch.stack([tokens[r * context : (r + 1) * context] for r in rows]).to(self.device)
                targets = torch.stack([tokens[r * context + 1 : (r + 1) * context + 1] for r in rows]).to(self.device)
                with autocast_context(self.device, self.config.precision):
                    logits = self.model(inputs)
                total += float(self.loss_function(logits.float(), targets)) * targets.numel()
                count += targets.numel()
        return math.exp(total / count)

    def samples(self, prompt: str = "Once upon a time") -> list[tuple[str, str]]:
        prompt_ids = torch.tensor([self.tokenizer.encode(prompt)], device=self.device)
        eos = self.tokenizer.special_token_ids.get(EOT)
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        results = []
        for name, settings in [("greedy", {"temperature": 0.0})] + [("top-p 0.9", {"top_p": 0.9})] * self.config.num_samples:
            ids = generate(self.model, prompt_ids, self.config.sample_tokens, eos_token_id=eos, generator=generator, **settings)
            results.append((name, prompt + self.tokenizer.decode([i for i in ids[0].tolist() if i != eos])))
        return results


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def run(config: TrainConfig) -> dict[str, float]:
    """Train with ``config``; on the main process, report validation perplexity and samples.

    Under torchrun the process group is destroyed however this ends, so that a caller that goes on
    (a sweep after a diverged run) can start another. After an error, at once: the other processes
    may be inside a collective this one will never join, and destroying the group closes its
    connections, so theirs fails now instead of when this process exits (or after gloo's 30-minute
    timeout if it never does)."""
    try:
        summary = _train_and_report(config)
        if dist.is_initialized():
            dist.barrier()  # the others wait for the main process's report, then all leave together
        return summary
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train_and_report(config: TrainConfig) -> dict[str, float]:
    trainer = Trainer(config)
    previous = {sig: signal.signal(sig, trainer.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.train()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if trainer.processes.is_main and trainer.step >= config.total_steps:
        summary["val_perplexity"] = trainer.validation_perplexity()
        print(f"validation perplexity ({config.valid_data}): {summary['val_perplexity']:.2f}")
        try:
            samples = trainer.samples()
        except NotImplementedError:  # the handout's sampling.py, before its part is written
            samples = []
            print("no samples yet: implement cs288_lm/sampling.py (Part 4) to see some")
        for name, text in samples:
            print(f"--- {name} ---\n{text}")
    return summary


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        run(config)
    except (FileNotFoundError, ValueError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NotImplementedError as error:  # the handout before Parts 2 and 3 are written
        print(f"error: not implemented yet: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a file that cannot be written or read: the path and the reason
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        if not _peer_failed(error):
            raise
        print(f"error: another process of this run stopped; its output says why ({error})", file=sys.stderr)
        return 1
    return 0


def _peer_failed(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective that failed because another process of the run ended
    (gloo raises a plain RuntimeError naming the closed connection)."""
    message = str(error)
    return isinstance(error, dist.DistError) or "closed by peer" in message or "reset by peer" in message


if __name__ == "__main__":
    sys.exit(main())
