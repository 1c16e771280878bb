"""No host synchronisation in the training hot path.

On a GPU, reading a tensor's value on the host (``bool(t)``, ``float(t)``, ``int(t)``, ``.item()``,
``.tolist()``, an ``if`` on a tensor) waits until the device has finished all the work queued
before it, so one read per step keeps the GPU idle while Python launches the next step.
``torch.cuda.set_sync_debug_mode`` would catch those reads, but these tests run on CPU: here the
reads are made to raise (:func:`no_host_reads`) or are counted (:func:`host_reads`) while the
reference solution and the given loops train.

Also pinned here: what the sync-free code must still do. RoPE still names an out-of-range position
(given or implicit), and ``gradient_clipping`` gives bit for bit what its former ``if norm >
max_l2_norm`` branch gave, including at the threshold and with NaN gradients.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from cs288_lm.model import RotaryPositionEmbedding, TransformerLM
from cs288_lm.nn_utils import cross_entropy, gradient_clipping
from cs288_lm.optimizer import AdamW
from cs288_lm.training import finetune
from cs288_lm.training.train_config import parse_train_config, train_parser
from cs288_lm.training.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parent.parent
READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


class HostRead(RuntimeError):
    """A tensor's value was read on the host where the training step must not wait for it."""


@contextlib.contextmanager
def host_reads(on_read) -> Iterator[None]:
    """Call ``on_read(name)`` whenever a tensor's value is read on the host, then read it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in READS:
            original = getattr(torch.Tensor, name)

            def read(self, *args, _name=name, _original=original, **kwargs):
                on_read(_name)
                return _original(self, *args, **kwargs)

            patch.setattr(torch.Tensor, name, read)
        yield


def no_host_reads() -> contextlib.AbstractContextManager[None]:
    def refuse(name: str) -> None:
        raise HostRead(f"Tensor.{name} read a value on the host inside the training step")

    return host_reads(refuse)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# ---------------------------------------------------------------------------------------------
# The model, the loss, clipping and AdamW
# ---------------------------------------------------------------------------------------------


def test_reads_are_caught():
    x = torch.ones(3)
    with no_host_reads():
        for read in (lambda: bool(x.sum()), lambda: float(x.sum()), lambda: x.tolist(), lambda: x.sum().item()):
            with pytest.raises(HostRead):
                read()
        computed = x + 1  # computing is fine
    assert computed.tolist() == [2.0, 2.0, 2.0]  # and reads work again after the block


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("max_norm", [1e-3, 1e6], ids=["clipping", "not-clipping"])
def test_training_step_reads_nothing_on_the_host(backend, max_norm):
    torch.manual_seed(0)
    lm = TransformerLM(50, 16, 32, 2, 4, 48, attention_backend=backend)
    optimizer = AdamW(lm.parameters(), lr=1e-3)
    tokens = torch.randint(0, 50, (2, 13))
    with no_host_reads():
        for _ in range(2):
            loss = cross_entropy(lm(tokens[:, :-1]), tokens[:, 1:])
            loss.backward()
            norm = gradient_clipping(lm.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert math.isfinite(float(loss.detach())) and float(norm) > 0


# ---------------------------------------------------------------------------------------------
# What the sync-free code still does
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [16, 40, -1, -7])
def test_rope_given_positions_out_of_range_still_raise(bad):
    rope = RotaryPositionEmbedding(8, 16)
    positions = torch.tensor([[0, 1, bad, 3], [4, 5, 6, 7]])
    with pytest.raises(ValueError, match=re.escape(f"RoPE position {bad} is outside [0, 16)")):
        rope(torch.zeros(2, 4, 8), positions)


def test_rope_implicit_positions_past_max_seq_len_raise_from_the_shape():
    rope = RotaryPositionEmbedding(8, 16)
    with no_host_reads():
        rope(torch.zeros(2, 16, 8))  # the last position, 15, is allowed
        with pytest.raises(ValueError, match=re.escape("RoPE position 16 is outside [0, 16)")):
            rope(torch.zeros(2, 17, 8))


def clipped_by_the_former_branch(gradients: list[torch.Tensor], max_l2_norm: float, eps: float = 1e-6):
    """The clipping of the reference solution before it stopped branching on the norm."""
    gradients = [g.clone() for g in gradients]
    norm = torch.sqrt(sum(g.detach().float().pow(2).sum() for g in gradients))
    if norm > max_l2_norm:
        scale = max_l2_norm / (norm + eps)
        for g in gradients:
            g.mul_(scale.to(g.dtype))
    return norm, gradients


@pytest.mark.parametrize(
    "case", ["above", "below", "at-threshold", "just-below", "just-above", "nan", "inf", "bfloat16", "zero"]
)
def test_gradient_clipping_is_bit_for_bit_the_former_branch(case):
    g = torch.Generator().manual_seed(1)
    gradients = [torch.randn(4, 3, generator=g), torch.randn(5, generator=g)]
    norm = float(torch.sqrt(sum(x.pow(2).sum() for x in gradients)))
    max_norm = {
        "above": norm / 3,
        "below": norm * 3,
        "at-threshold": norm,
        "just-below": norm * (1 + 1e-7),
        "just-above": norm * (1 - 1e-7),
    }.get(case, 1.0)
    if case == "nan":
        gradients[1][2] = math.nan
    if case == "inf":
        gradients[0][1, 1] = math.inf
    if case == "bfloat16":
        gradients = [x.to(torch.bfloat16) for x in gradients]
    if case == "zero":
        gradients = [torch.zeros_like(x) for x in gradients]
    expected_norm, expected = clipped_by_the_former_branch(gradients, max_norm)
    parameters = [nn.Parameter(torch.zeros_like(x)) for x in gradients]
    for parameter, gradient in zip(parameters, gradients, strict=True):
        parameter.grad = gradient.clone()
    actual_norm = gradient_clipping(parameters, max_norm)
    assert torch.equal(actual_norm, expected_norm) or (actual_norm.isnan() and expected_norm.isnan())
    for parameter, gradient in zip(parameters, expected, strict=True):
        assert parameter.grad.dtype == gradient.dtype
        assert torch.equal(parameter.grad.isnan(), gradient.isnan())
        assert torch.equal(parameter.grad.nan_to_num(), gradient.nan_to_num())


# ---------------------------------------------------------------------------------------------
# The given loops
# ---------------------------------------------------------------------------------------------

TINY = "--d-model 32 --num-layers 2 --num-heads 2 --context-length 32 --batch-size 8 --eval-batches 2 --device cpu"


def tiny_trainer(tmp_path: Path, extra: str) -> Trainer:
    """A tiny model on the bundled data; ``extra``: more flags, space-separated."""
    paths = {
        "--train-data": REPO_ROOT / "data" / "tinystories" / "train.txt",
        "--valid-data": REPO_ROOT / "data" / "tinystories" / "valid.txt",
        "--tokenizer": REPO_ROOT / "data" / "tokenizer",
        "--out-dir": tmp_path / "out",
        "--cache-dir": tmp_path / "cache",
    }
    args = [*TINY.split(), *(item for flag, path in paths.items() for item in (flag, str(path))), *extra.split()]
    return Trainer(parse_train_config(train_parser("a tiny run"), args))


def test_pretraining_step_reads_nothing_on_the_host(tmp_path):
    trainer = tiny_trainer(tmp_path, "--max-steps 4 --loss-backend reference")
    with no_host_reads():
        for _ in range(3):
            loss, norm = trainer.train_step()
    assert trainer.step == 3 and math.isfinite(float(loss)) and float(norm) > 0


def test_pretraining_loop_reads_losses_only_when_it_logs_evaluates_or_saves(tmp_path, monkeypatch):
    """Logs every 3 steps, evaluates and saves every 4, 8 steps: losses are read at 3, 4, 6 and 8,
    and nothing else is read on the host at the other steps."""
    trainer = tiny_trainer(tmp_path, "--max-steps 8 --log-interval 3 --eval-interval 4 --checkpoint-interval 4")
    monkeypatch.setattr(
        trainer, "evaluate", lambda: {"val_loss": 5.0, "val_perplexity": math.exp(5.0), "val_accuracy": 0.1}
    )
    reads: dict[int, int] = {}

    def count(name: str) -> None:
        reads[trainer.step] = reads.get(trainer.step, 0) + 1

    with host_reads(count):
        trainer.train()
    assert set(reads) <= {3, 4, 6, 8}, reads
    assert len(trainer.unlogged_losses) == 0 and trainer.pending_losses == []


def test_finetuning_reads_losses_only_when_it_logs(monkeypatch):
    """As many host reads for 2 training steps as for 8 (logging only at the end of the epoch)."""
    from cs288_lm.models.architectures import ModelConfig, build_model
    from cs288_lm.qa_model import TransformerForMultipleChoice

    monkeypatch.setattr(finetune, "multiple_choice_accuracy", lambda model, dataset: 0.5)

    class Questions(torch.utils.data.Dataset):
        def __init__(self, size: int):
            g = torch.Generator().manual_seed(size)
            self.items = [
                {
                    "input_ids": torch.randint(0, 60, (4, 10), generator=g),
                    "attention_mask": torch.ones(4, 10),
                    "label": i % 4,
                }
                for i in range(size)
            ]

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> dict:
            return self.items[index]

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.stack([item["input_ids"] for item in items]),
            "attention_mask": torch.stack([item["attention_mask"] for item in items]).long(),
            "labels": torch.tensor([item["label"] for item in items]),
            **({"index": torch.stack([item["index"] for item in items])} if "index" in items[0] else {}),
        }

    monkeypatch.setattr(finetune, "collate_multiple_choice", collate)

    def reads_for(size: int) -> int:
        torch.manual_seed(0)
        backbone = build_model(ModelConfig(vocab_size=60, context_length=16, d_model=16, num_layers=1, num_heads=2))
        model = TransformerForMultipleChoice(backbone, hidden_size=16)
        config = finetune.FinetuneConfig(epochs=1, batch_size=2, log_interval=1000)
        count = [0]
        with host_reads(lambda name: count.__setitem__(0, count[0] + 1)):
            finetune.finetune_multiple_choice(model, Questions(size), Questions(2), config)
        return count[0]

    assert reads_for(4) == reads_for(16)
