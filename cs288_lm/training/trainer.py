"""Pretraining a language model (Part 4), on one CPU or several GPUs (given).

:func:`run` trains with a :class:`~cs288_lm.training.train_config.TrainConfig` and reports; the
command line is :mod:`cs288_lm.pipelines.pretrain`. The run writes to its folder
(:class:`~cs288_lm.training.run_dir.RunDir`, which says what is where and which checkpoint holds
the model).

Resume is exact on CPU: a run stopped at step k and resumed reaches bit-for-bit the same losses as
an uninterrupted one, because checkpoints hold the model, the optimizer, the step and every random
number generator's state. Ctrl-C (SIGINT) or SIGTERM saves ``latest.pt`` after the current step
and exits cleanly; with several processes, a signal to any one of them stops them all after the
same step. A NaN or infinite loss stops the run and leaves the last good checkpoint as is. The
process group is torn down however the run ends, so an error in one process ends the others too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cs288_lm.common.modes import eval_mode
from cs288_lm.common.pretokenization import EOT
from cs288_lm.data import get_batch
from cs288_lm.model import count_parameters
from cs288_lm.models.architectures import build_model
from cs288_lm.nn_utils import cross_entropy, get_lr_cosine_schedule, gradient_clipping
from cs288_lm.optimizer import AdamW, parameter_groups
from cs288_lm.sampling import generate
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.distributed import init_processes
from cs288_lm.training.flops import peak_flops, training_flops_per_token
from cs288_lm.training.loading import checkpoint_model_config
from cs288_lm.training.rng import restore_rng_state, rng_state, seed_everything
from cs288_lm.training.run_dir import RunDir, tokenizer_record
from cs288_lm.training.settings import settings_of
from cs288_lm.training.token_files import load_tokens, prepare_token_file
from cs288_lm.training.train_config import TrainConfig


def fused_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` over any leading dimensions (same value as ours)."""
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """One pretraining run of ``config``: the data, the model and optimizer (resumed from
    ``latest.pt`` with ``config.resume``), and its folder (:class:`RunDir`). :meth:`train` runs the
    remaining steps; :meth:`validation_perplexity` and :meth:`samples` report on the model after."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.processes, self.device = init_processes(config.device)
        self.run_dir = RunDir(config.out_dir)
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
        self.model_config = config.model.replace(vocab_size=max(self.tokenizer.vocab) + 1)
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
            self._load_checkpoint()
        self.forward_model: nn.Module = self.model
        if config.compile:
            self.forward_model = torch.compile(self.forward_model)  # type: ignore[assignment]  # a module's compile is a module
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
            get_batch(self.valid_tokens, self.config.batch_size, self.config.model.context_length, self.device, rng)
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
            "config": settings_of(self.config),
            "model_config": dataclasses.asdict(self.model_config),
            "tokenizer": tokenizer_record(self.config.tokenizer),
        }

    def save_checkpoint(self, name: str) -> Path:
        self._read_losses()  # a stop request may come after train() read them
        if self.processes.is_main:
            self.run_dir.save_checkpoint(name, self._checkpoint())
        return self.run_dir.checkpoint(name)

    def _load_checkpoint(self) -> None:
        path = self.run_dir.latest_checkpoint
        checkpoint = self.run_dir.load_resume_state()
        try:
            same_model = checkpoint_model_config(checkpoint) == self.model_config
        except (TypeError, ValueError):
            same_model = False
        if not same_model:
            raise ValueError(f"{path} was trained with a different model: {checkpoint['model_config']}")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step, self.tokens_seen = checkpoint["step"], checkpoint["tokens_seen"]
        self.best_val_loss = checkpoint["best_val_loss"]
        self.unlogged_losses = list(checkpoint["unlogged_losses"])
        restore_rng_state(checkpoint["rng"], self.batch_rng)
        if self.processes.is_main:
            self.run_dir.truncate_metrics(self.step)
            print(f"[train] resumed from {path} at step {self.step}", file=sys.stderr)

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
                self.train_tokens,
                self.micro_batch_size * self.processes.world_size,
                config.model.context_length,
                self.device,
                self.batch_rng,
            )
            inputs, targets = inputs[rows], targets[rows]
            last = micro_step == config.grad_accum_steps - 1
            sync: contextlib.AbstractContextManager = contextlib.nullcontext()
            if not last and isinstance(self.forward_model, nn.parallel.DistributedDataParallel):
                sync = self.forward_model.no_sync()
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
        self.tokens_seen += config.batch_size * config.model.context_length
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
                latest = self.run_dir.latest_checkpoint
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
            self.run_dir.append_metrics(record)

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
            self.window_tokens += self.config.batch_size * self.config.model.context_length
            record = self._log_progress(float(norm)) if self._due(self.config.log_interval) else {}
            if self._due(self.config.eval_interval):
                record = {"step": self.step, "tokens": self.tokens_seen, **record, **self._evaluate_and_keep_best()}
            if record:
                self._log(record)
            if self._due(self.config.checkpoint_interval) or stopping:
                self.save_checkpoint("latest")
            if stopping:
                self._say(
                    f"[train] stopped at step {self.step}; saved {self.run_dir.latest_checkpoint}; "
                    "continue with --resume"
                )
                break
        if self.processes.is_main:
            self.run_dir.write_plots()
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
            self.run_dir.write_config(settings_of(config))
        self._say(
            f"[train] {self.model_config.architecture} model, {count_parameters(self.model):,} parameters, on "
            f"{self.device} x{self.processes.world_size}; {len(self.train_tokens):,} training tokens; "
            f"{config.total_steps} steps of {config.batch_size} x {config.model.context_length} tokens"
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
            "step": self.step,
            "tokens": self.tokens_seen,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": sum(self.unlogged_losses) / len(self.unlogged_losses),
            "grad_norm": norm,
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
        self._say(
            f"step {self.step}/{total} | loss {record['train_loss']:.4f} | lr {record['lr']:.2e} | "
            f"grad norm {norm:.2f} | {tokens_per_second:,.0f} tok/s{utilisation} | ETA {_duration(eta)}"
        )
        self.window_start, self.window_tokens, self.unlogged_losses = time.perf_counter(), 0, []
        return record

    def _evaluate_and_keep_best(self) -> dict[str, float]:
        """Validation metrics now; a new best validation loss saves ``best.pt``."""
        metrics = self.evaluate()
        self._say(
            f"step {self.step}/{self.config.total_steps} | val loss {metrics['val_loss']:.4f} | "
            f"val perplexity {metrics['val_perplexity']:.2f}"
        )
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
        context = self.config.model.context_length
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
        greedy: tuple[str, dict[str, Any]] = ("greedy", {"temperature": 0.0})
        decodings = [greedy] + [("top-p 0.9", {"top_p": 0.9})] * self.config.num_samples
        for name, settings in decodings:
            ids = generate(
                self.model, prompt_ids, self.config.sample_tokens, eos_token_id=eos, generator=generator, **settings
            )
            results.append((name, prompt + self.tokenizer.decode([i for i in ids[0].tolist() if i != eos])))
        return results


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


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
