"""Fine-tuning a multiple-choice head (given): the training loop of Part 4A.

Cross-entropy over the choices of each question, AdamW (:mod:`cs288_lm.optimizer`), linear warmup
then cosine decay, gradient clipping by global norm, dev accuracy after every epoch, and the model
of the last epoch (or of the best dev accuracy) kept in memory and on disk.

**Token distillation** (``distill_weight``): a few thousand questions are too few for the head to
learn from labels alone what the language model already knows, how likely each choice makes the
text. So the head also learns it token by token: applied to the hidden state of every real
position t of every row, it is trained (squared error) to give the log-probability of token t under
the language model as it was when fine-tuning started (the teacher's targets, computed in one pass
before the first step), centred on the batch's mean since the head has no bias. The head is linear
and mean pooling is a mean, so the pooled logit of a choice becomes the mean log-probability of its
pooled tokens: with the answer span pooled (:mod:`cs288_lm.training.answer_span`), the score of
cloze prompting. The cross-entropy on the answers then trains on from there. Every row gives one
target per token, where the answers give one per question.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cs288_lm.common.modes import eval_mode
from cs288_lm.datasets import collate_multiple_choice
from cs288_lm.nn_utils import cross_entropy, get_lr_cosine_schedule, gradient_clipping
from cs288_lm.optimizer import AdamW, parameter_groups
from cs288_lm.qa_model import TransformerForMultipleChoice, pool_hidden_states
from cs288_lm.training.answer_span import QADataset
from cs288_lm.training.settings import setting

KEEP = ("last", "best_dev")


@dataclass
class FinetuneConfig:
    """The settings of fine-tuning (the ``finetune`` object of the main job's config)."""

    epochs: int = setting(3, "passes over the train questions")
    batch_size: int = setting(16, "questions per step (each has num_choices sequences)")
    learning_rate: float = setting(5e-4, "peak learning rate, after the warmup")
    min_learning_rate: float = setting(5e-5, "learning rate at the end of the cosine decay")
    warmup_fraction: float = setting(0.1, "fraction of all steps with a linear warmup")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay, on matrices only")
    grad_clip: float = setting(1.0, "clip the gradients' global L2 norm to this")
    seed: int = setting(0, "seed of the head's initialisation and of the batches' order")
    log_interval: int = setting(20, "steps between progress lines")
    distill_weight: float = setting(
        1.0,
        "weight of the token distillation loss (module docstring): the head learns each token's log-probability "
        "under the starting LM; 0: answers only",
    )
    keep: str = setting(
        "last",
        "the model kept: last (the end of the schedule) or best_dev (the epoch of the best dev "
        "accuracy, which also fits dev's noise)",
    )

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not 0 <= self.min_learning_rate <= self.learning_rate < math.inf or self.learning_rate == 0:
            raise ValueError(
                "learning rates must be finite with 0 <= min_learning_rate <= learning_rate and learning_rate > 0, got "
                f"{self.learning_rate} and {self.min_learning_rate}"
            )
        if self.distill_weight < 0:
            raise ValueError(f"distill_weight must be at least 0, got {self.distill_weight}")
        if self.keep not in KEEP:
            raise ValueError(f"unknown keep {self.keep!r}; choose one of {KEEP}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    # Non-blocking from pinned memory (the training loader pins on CUDA): a blocking copy to the GPU
    # would wait for the previous step to finish.
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def pool_mask(batch: dict[str, Tensor]) -> Tensor:
    """The mask the head pools over: the answer span where the dataset gives one, else the real tokens."""
    return batch.get("pool_mask", batch["attention_mask"])


@contextlib.contextmanager
def recorded_hidden_states(backbone: nn.Module) -> Iterator[list[Tensor]]:
    """While the block runs, every ``backbone.hidden_states(...)`` result is appended to the list it
    yields (the QA model's forward calls it once; the docstring of TransformerForMultipleChoice)."""
    method: Callable[..., Tensor] = backbone.hidden_states  # type: ignore[assignment]  # nn.Module's lookup
    recorded: list[Tensor] = []

    def recording(*args, **kwargs) -> Tensor:
        recorded.append(method(*args, **kwargs))
        return recorded[-1]

    backbone.hidden_states = recording  # type: ignore[assignment]  # an instance attribute hides the method
    try:
        yield recorded
    finally:
        delattr(backbone, "hidden_states")


class _Indexed(Dataset):
    """The items of ``dataset`` with their index added (``"index"``), to look up per-question tensors."""

    def __init__(self, dataset: QADataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {**self.dataset[index], "index": torch.tensor(index)}


@torch.no_grad()
def token_log_probs(
    language_model: nn.Module, dataset: QADataset, batch_size: int = 16
) -> Float[Tensor, "questions choices max_length"]:
    """The teacher's targets: at position t of each row, log p(token t | tokens before it) under
    ``language_model`` (any model mapping ids to next-token logits), on the model's device; 0 at
    position 0 and on padding. One pass over ``dataset`` in eval mode."""
    device = next(language_model.parameters()).device
    first = dataset[0]["input_ids"]
    targets = torch.zeros(len(dataset), *first.shape, device=device)
    start = 0
    with eval_mode(language_model):
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_multiple_choice):
            ids = batch["input_ids"].to(device)
            rows = ids.flatten(0, 1)
            logits = language_model(rows)[:, :-1].float()
            picked = logits.gather(-1, rows[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
            real = batch["attention_mask"].to(device)[..., 1:].bool()
            end = start + ids.shape[0]
            targets[start:end, :, 1 : ids.shape[-1]] = picked.reshape(real.shape).masked_fill(~real, 0.0)
            start = end
    return targets


def token_distillation_loss(
    classifier: nn.Module,
    hidden: Float[Tensor, "rows seq d_model"],
    targets: Float[Tensor, "rows seq"],
    attention_mask: Int[Tensor, "rows seq"],
) -> Tensor:
    """Squared error between ``classifier`` at each real position t >= 1 and the teacher's log p(token t
    | tokens before it) (``targets``, see :func:`token_log_probs`), the targets centred on their mean
    over those positions (module docstring)."""
    # Masked sums rather than boolean indexing, which would wait for the device to count the positions.
    real = attention_mask[:, 1:].float()
    count = real.sum().clamp(min=1)
    centred = targets[:, 1:] - (targets[:, 1:] * real).sum() / count
    predictions = classifier(hidden[:, 1:]).squeeze(-1).float()
    return (((predictions - centred) ** 2) * real).sum() / count


@torch.no_grad()
def predict_multiple_choice(model: TransformerForMultipleChoice, dataset: QADataset, batch_size: int = 16) -> list[int]:
    """The predicted choice index of every question of ``dataset``, in order."""
    device = next(model.parameters()).device
    predictions = []
    with eval_mode(model):
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_multiple_choice):
            batch = _to_device(batch, device)
            predictions += model.predict(batch["input_ids"], pool_mask(batch)).tolist()
    return predictions


def multiple_choice_accuracy(model: TransformerForMultipleChoice, dataset: QADataset) -> float:
    """The fraction of questions of ``dataset`` answered right (all need answers)."""
    predictions = predict_multiple_choice(model, dataset)
    answers = [record["answer"] for record in dataset.data]
    if any(answer is None for answer in answers):
        raise ValueError("accuracy needs answers; this dataset has questions without one")
    return sum(p == a for p, a in zip(predictions, answers, strict=True)) / len(answers)


def finetune_multiple_choice(
    model: TransformerForMultipleChoice,
    train_dataset: QADataset,
    dev_dataset: QADataset,
    config: FinetuneConfig,
    checkpoint_path: str | Path | None = None,
) -> dict:
    """Train ``model`` on ``train_dataset`` (with token distillation unless ``distill_weight`` is 0)
    and measure dev accuracy after each epoch.

    On return ``model`` holds the kept weights: the last epoch's, or with ``keep="best_dev"`` those
    of the best dev accuracy (the earliest epoch on ties). If ``checkpoint_path`` is given they are
    also saved there, with the config and history. Returns ``{"dev_accuracy", "epoch", "history":
    [{"epoch", "train_loss", "distill_loss", "dev_accuracy"}, ...]}`` (the kept epoch and its dev
    accuracy; ``distill_loss`` is None without distillation).
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    # The teacher of token distillation: the backbone before any update.
    teacher = token_log_probs(model.transformer_lm, train_dataset, config.batch_size) if config.distill_weight else None
    loader = DataLoader(
        _Indexed(train_dataset),
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=collate_multiple_choice,
        pin_memory=device.type == "cuda",
    )
    optimizer = AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate)
    total_steps = config.epochs * len(loader)
    progress = _Progress(total_steps, math.ceil(config.warmup_fraction * total_steps), time.perf_counter())
    kept: dict = {"dev_accuracy": -1.0}
    history = []
    for epoch in range(1, config.epochs + 1):
        losses = _train_epoch(model, teacher, loader, optimizer, config, epoch, progress)
        accuracy = multiple_choice_accuracy(model, dev_dataset)
        history.append({"epoch": epoch, **losses, "dev_accuracy": accuracy})
        distilled = "" if losses["distill_loss"] is None else f", distillation loss {losses['distill_loss']:.4f}"
        print(
            f"[finetune] epoch {epoch}: train loss {losses['train_loss']:.4f}{distilled}, dev accuracy {accuracy:.2%}",
            file=sys.stderr,
        )
        if config.keep == "last" or accuracy > kept["dev_accuracy"]:
            kept = {"dev_accuracy": accuracy, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
    model.load_state_dict(kept["state"])
    result = {"dev_accuracy": kept["dev_accuracy"], "epoch": kept["epoch"], "history": history}
    if checkpoint_path is not None:
        Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": kept["state"], "config": asdict(config), **result}, checkpoint_path)
    return result


@dataclass
class _Progress:
    """The schedule of a fine-tuning run and how far it got (steps count over all epochs)."""

    total_steps: int
    warmup_steps: int
    start: float  # time.perf_counter() at the start
    step: int = 0


def check_recorded_rows(
    model: TransformerForMultipleChoice, hidden: Tensor, batch: dict[str, Tensor], logits: Tensor
) -> None:
    """A ValueError unless ``hidden`` (what the forward's ``hidden_states`` call returned) holds the rows
    ``input_ids.reshape(batch * choices, seq)`` in that order, pooled over the batch's pool mask into
    ``logits``: the teacher's targets are lined up with those rows. Compares values, so it reads the
    device; the loop checks its first step only."""
    input_ids = batch["input_ids"]
    expected = (input_ids.shape[0] * input_ids.shape[1], input_ids.shape[2])
    if tuple(hidden.shape[:2]) == expected:
        with torch.no_grad():
            pooled = pool_hidden_states(hidden, pool_mask(batch).flatten(0, 1), model.pooling)
            again = model.classifier(pooled).reshape(logits.shape).float()
        tolerance = 1e-4 if logits.dtype in (torch.float32, torch.float64) else 2e-2
        if torch.allclose(again, logits.float(), rtol=tolerance, atol=tolerance):
            return
    raise ValueError(
        "token distillation needs the QA model's forward to run input_ids.reshape(batch * choices, seq) through one "
        "transformer_lm.hidden_states call and pool those rows with the given mask; its logits are not that (see "
        "TransformerForMultipleChoice.forward); set distill_weight to 0 to fine-tune without distillation"
    )


def _losses(
    model: TransformerForMultipleChoice, teacher: Tensor | None, batch: dict[str, Tensor], check: bool = False
) -> tuple[Tensor, Tensor | None]:
    """The answers' cross-entropy of one batch, and its token distillation loss (None without the
    teacher's targets, :func:`token_log_probs` of the train questions); ``check``: also
    :func:`check_recorded_rows`."""
    if teacher is None:
        logits = model(batch["input_ids"], pool_mask(batch))
        return cross_entropy(logits.float(), batch["labels"]), None
    with recorded_hidden_states(model.transformer_lm) as recorded:
        logits = model(batch["input_ids"], pool_mask(batch))
    if len(recorded) != 1:
        raise ValueError(
            f"token distillation needs the QA model's forward to call transformer_lm.hidden_states once, it called it "
            f"{len(recorded)} times; set distill_weight to 0 to fine-tune without it"
        )
    if check:
        check_recorded_rows(model, recorded[0], batch, logits)
    targets = teacher[batch["index"], :, : batch["input_ids"].shape[-1]].flatten(0, 1)
    distill = token_distillation_loss(model.classifier, recorded[0], targets, batch["attention_mask"].flatten(0, 1))
    return cross_entropy(logits.float(), batch["labels"]), distill


def _train_epoch(
    model: TransformerForMultipleChoice,
    teacher: Tensor | None,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    config: FinetuneConfig,
    epoch: int,
    progress: _Progress,
) -> dict[str, float | None]:
    """One pass over ``loader``, printing progress every ``log_interval`` steps; returns the epoch's mean
    losses: ``{"train_loss"`` (the answers' cross-entropy), ``"distill_loss"}`` (None without a teacher)."""
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    total_steps = progress.total_steps
    model.train()
    # The losses stay on the device and are read at the log interval: reading one every step
    # would wait for the device to finish that step.
    losses: list[Tensor] = []
    window_steps = 0
    for batch in loader:
        batch = _to_device(batch, device)
        # Iterations 1..total_steps: iteration 0 would be a rate of 0, and the last step reaches the minimum.
        lr = get_lr_cosine_schedule(
            progress.step + 1, config.learning_rate, config.min_learning_rate, progress.warmup_steps, total_steps
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        answers_loss, distill_loss = _losses(model, teacher, batch, check=progress.step == 0)
        loss = answers_loss if distill_loss is None else answers_loss + config.distill_weight * distill_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradient_clipping(trainable, config.grad_clip)
        optimizer.step()
        progress.step += 1
        losses.append(
            torch.stack(
                [
                    answers_loss.detach(),
                    answers_loss.new_tensor(math.nan) if distill_loss is None else distill_loss.detach(),
                ]
            )
        )
        window_steps += 1
        if progress.step % config.log_interval == 0 or progress.step == total_steps:
            window = torch.stack(losses[-window_steps:]).mean(dim=0).tolist()
            elapsed = time.perf_counter() - progress.start
            eta = elapsed / progress.step * (total_steps - progress.step)
            distilled = "" if distill_loss is None else f" distillation {window[1]:.4f}"
            print(
                f"[finetune] epoch {epoch} step {progress.step}/{total_steps} loss {window[0]:.4f}{distilled} "
                f"lr {lr:.2e} {progress.step * config.batch_size / elapsed:.1f} questions/s ETA {eta:.0f}s",
                file=sys.stderr,
            )
            window_steps = 0
    means = torch.stack(losses).mean(dim=0).tolist() if losses else [0.0, math.nan]
    return {"train_loss": means[0], "distill_loss": None if teacher is None else means[1]}
