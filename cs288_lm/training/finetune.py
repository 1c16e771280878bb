"""Fine-tuning a multiple-choice head (given): the training loop of Part 4A.

Cross-entropy over the choices of each question, AdamW (:mod:`cs288_lm.optimizer`), linear warmup
then cosine decay, gradient clipping by global norm, dev accuracy after every epoch, and the best
model (by dev accuracy) kept in memory and on disk.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cs288_lm.common.modes import eval_mode
from cs288_lm.datasets import MultipleChoiceQADataset, collate_multiple_choice
from cs288_lm.nn_utils import cross_entropy, get_lr_cosine_schedule, gradient_clipping
from cs288_lm.optimizer import AdamW, parameter_groups
from cs288_lm.qa_model import TransformerForMultipleChoice
from cs288_lm.training.settings import setting


@dataclass
class FinetuneConfig:
    """The settings of fine-tuning (the ``finetune`` object of the main job's config)."""

    epochs: int = setting(4, "passes over the train questions")
    batch_size: int = setting(16, "questions per step (each has num_choices sequences)")
    learning_rate: float = setting(1e-3, "peak learning rate, after the warmup")
    min_learning_rate: float = setting(1e-4, "learning rate at the end of the cosine decay")
    warmup_fraction: float = setting(0.1, "fraction of all steps with a linear warmup")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay, on matrices only")
    grad_clip: float = setting(1.0, "clip the gradients' global L2 norm to this")
    seed: int = setting(0, "seed of the head's initialisation and of the batches' order")
    log_interval: int = setting(20, "steps between progress lines")

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    # Non-blocking from pinned memory (the training loader pins on CUDA): a blocking copy to the GPU
    # would wait for the previous step to finish.
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


@torch.no_grad()
def predict_multiple_choice(
    model: TransformerForMultipleChoice, dataset: MultipleChoiceQADataset, batch_size: int = 16
) -> list[int]:
    """The predicted choice index of every question of ``dataset``, in order."""
    device = next(model.parameters()).device
    predictions = []
    with eval_mode(model):
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_multiple_choice):
            batch = _to_device(batch, device)
            predictions += model.predict(batch["input_ids"], batch["attention_mask"]).tolist()
    return predictions


def multiple_choice_accuracy(model: TransformerForMultipleChoice, dataset: MultipleChoiceQADataset) -> float:
    """The fraction of questions of ``dataset`` answered right (all need answers)."""
    predictions = predict_multiple_choice(model, dataset)
    answers = [record["answer"] for record in dataset.data]
    if any(answer is None for answer in answers):
        raise ValueError("accuracy needs answers; this dataset has questions without one")
    return sum(p == a for p, a in zip(predictions, answers, strict=True)) / len(answers)


def finetune_multiple_choice(
    model: TransformerForMultipleChoice,
    train_dataset: MultipleChoiceQADataset,
    dev_dataset: MultipleChoiceQADataset,
    config: FinetuneConfig,
    checkpoint_path: str | Path | None = None,
) -> dict:
    """Train ``model`` on ``train_dataset``; after each epoch measure dev accuracy and keep the best.

    On return ``model`` holds the best weights (by dev accuracy; the earliest epoch on ties). If
    ``checkpoint_path`` is given they are also saved there, with the config and history. Returns
    ``{"best_dev_accuracy", "best_epoch", "history": [{"epoch", "train_loss", "dev_accuracy"}, ...]}``.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        train_dataset,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=collate_multiple_choice,
        pin_memory=device.type == "cuda",
    )
    optimizer = AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate)
    total_steps = config.epochs * len(loader)
    progress = _Progress(total_steps, math.ceil(config.warmup_fraction * total_steps), time.perf_counter())
    best_accuracy, best_epoch, best_state, history = -1.0, 0, None, []
    for epoch in range(1, config.epochs + 1):
        epoch_losses = _train_epoch(model, loader, optimizer, config, epoch, progress)
        accuracy = multiple_choice_accuracy(model, dev_dataset)
        epoch_loss = sum(torch.stack(epoch_losses).tolist()) if epoch_losses else 0.0
        history.append({"epoch": epoch, "train_loss": epoch_loss / len(loader), "dev_accuracy": accuracy})
        print(
            f"[finetune] epoch {epoch}: train loss {history[-1]['train_loss']:.4f}, dev accuracy {accuracy:.2%}",
            file=sys.stderr,
        )
        if accuracy > best_accuracy:
            best_accuracy, best_epoch = accuracy, epoch
            best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:  # None only when no epoch ran
        model.load_state_dict(best_state)
    result = {"best_dev_accuracy": best_accuracy, "best_epoch": best_epoch, "history": history}
    if checkpoint_path is not None:
        Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": best_state, "config": asdict(config), **result}, checkpoint_path)
    return result


@dataclass
class _Progress:
    """The schedule of a fine-tuning run and how far it got (steps count over all epochs)."""

    total_steps: int
    warmup_steps: int
    start: float  # time.perf_counter() at the start
    step: int = 0


def _train_epoch(
    model: TransformerForMultipleChoice,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    config: FinetuneConfig,
    epoch: int,
    progress: _Progress,
) -> list[torch.Tensor]:
    """One pass over ``loader``, printing progress every ``log_interval`` steps; returns the losses."""
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    total_steps = progress.total_steps
    model.train()
    # The losses stay on the device and are read at the log interval: reading one every step
    # would wait for the device to finish that step.
    epoch_losses: list[torch.Tensor] = []
    window_steps = 0
    for batch in loader:
        batch = _to_device(batch, device)
        # Iterations 1..total_steps: iteration 0 would be a rate of 0, and the last step reaches the minimum.
        lr = get_lr_cosine_schedule(
            progress.step + 1, config.learning_rate, config.min_learning_rate, progress.warmup_steps, total_steps
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = model(batch["input_ids"], batch["attention_mask"])
        loss = cross_entropy(logits.float(), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradient_clipping(trainable, config.grad_clip)
        optimizer.step()
        progress.step += 1
        epoch_losses.append(loss.detach())
        window_steps += 1
        if progress.step % config.log_interval == 0 or progress.step == total_steps:
            window_loss = sum(torch.stack(epoch_losses[-window_steps:]).tolist())
            elapsed = time.perf_counter() - progress.start
            eta = elapsed / progress.step * (total_steps - progress.step)
            print(
                f"[finetune] epoch {epoch} step {progress.step}/{total_steps} loss {window_loss / window_steps:.4f} "
                f"lr {lr:.2e} {progress.step * config.batch_size / elapsed:.1f} questions/s ETA {eta:.0f}s",
                file=sys.stderr,
            )
            window_steps = 0
    return epoch_losses
