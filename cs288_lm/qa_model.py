"""A multiple-choice head on a pretrained language model (Part 4A).

Each choice of a question is read as its own sequence (see
:class:`~cs288_lm.datasets.MultipleChoiceQADataset`). The backbone turns every sequence into hidden
states; pooling turns those into one vector per sequence; a linear head turns that vector into one
score (a logit) per choice; a softmax over the choices gives the model's probabilities.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs288_lm.model import Linear

Pooling = Literal["last", "mean", "max"]
POOLINGS: tuple[str, ...] = get_args(Pooling)  # the same names, for checks and loops


def check_pooling(pooling: str) -> None:
    """A ValueError naming the poolings for any other ``pooling``."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def pool_hidden_states(
    hidden: Float[Tensor, "batch seq d_model"], attention_mask: Int[Tensor, "batch seq"], pooling: Pooling
) -> Float[Tensor, "batch d_model"]:
    """One vector per sequence from its hidden states, looking only at positions where the mask is 1.

    * ``"last"``: the hidden state of the last real token: the position of the row's last 1 (for a
      right-padded row that is ``mask.sum() - 1``; for a mask with holes, such as ``[1, 0, 1, 0]``,
      it is still the last 1, position 2); in a causal model it is the only position that has read
      the whole sequence;
    * ``"mean"``: the average over real tokens, summed and divided in float32 (float64 for float64
      ``hidden``) and then cast to the dtype of ``hidden``, so a bfloat16 mean is rounded once;
    * ``"max"``: the elementwise maximum over real tokens.

    ``attention_mask`` may be of any dtype (int64, bool, float): a nonzero entry is a real token.

    Padding must never change the result: the same sequence padded to any length pools the same.
    A row with no real token (its mask all 0) pools to zeros, for every pooling, so that nothing
    of its padding leaks in either (and without an error, which would need the mask's values on
    the host: a GPU sync at every step). The result has the dtype of ``hidden``. An unknown
    ``pooling`` is a ValueError.
    """
    check_pooling(pooling)
    # BEGIN SOLUTION
    mask = attention_mask.bool()
    if pooling == "last":
        positions = torch.arange(hidden.shape[-2], device=hidden.device)
        last = (positions * mask).amax(dim=-1)  # 0 for a row without a 1, which is zeroed below
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    elif pooling == "mean":
        compute_dtype = torch.promote_types(hidden.dtype, torch.float32)
        weights = mask.unsqueeze(-1).to(compute_dtype)
        pooled = ((hidden.to(compute_dtype) * weights).sum(dim=-2) / weights.sum(dim=-2).clamp(min=1)).to(hidden.dtype)
    else:
        pooled = hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(dim=-2)
    return pooled.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    # END SOLUTION


class TransformerForMultipleChoice(nn.Module):
    """A language model's hidden states, pooled per choice, scored by a linear head.

    ``transformer_lm`` is any model with ``hidden_states(input_ids) -> (batch, seq, hidden_size)``
    (:class:`~cs288_lm.model.TransformerLM`, :class:`~cs288_lm.models.gpt2_model.GPT2LM`). The head is a
    :class:`~cs288_lm.model.Linear` from ``hidden_size`` to 1, named ``classifier``. With
    ``freeze_backbone`` the language model's parameters get ``requires_grad=False`` and only the
    head trains.
    """

    def __init__(
        self,
        transformer_lm: nn.Module,
        hidden_size: int,
        num_choices: int = 4,
        pooling: Pooling = "last",
        freeze_backbone: bool = False,
    ):
        super().__init__()
        check_pooling(pooling)
        self.transformer_lm, self.hidden_size = transformer_lm, hidden_size
        self.num_choices, self.pooling = num_choices, pooling
        self.classifier = Linear(hidden_size, 1)
        if freeze_backbone:
            self.transformer_lm.requires_grad_(False)

    def forward(
        self,
        input_ids: Int[Tensor, "batch choices seq"],
        attention_mask: Int[Tensor, "batch choices seq"] | None = None,
    ) -> Float[Tensor, "batch choices"]:
        """One logit per choice. Sequences are right-padded. ``attention_mask`` (default: all ones)
        marks the positions to pool: the real tokens, or any subset of them (the given fine-tuning
        loop passes each row's answer span, :mod:`cs288_lm.training.answer_span`); it never changes
        what the backbone reads. Run the rows ``input_ids.reshape(batch * choices, seq)``, in that
        order, through the backbone in one call of ``transformer_lm.hidden_states`` (the given
        fine-tuning loop also reads its output), pool each row over its mask, and score it with
        ``classifier``. Nothing is cast or moved: the backbone and the head must share one device and
        dtype (``model.to(device, dtype)`` moves both), and the logits have that dtype (bfloat16 for a
        bfloat16 model). The mask may be of any dtype (see :func:`pool_hidden_states`)."""
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids must be (batch, choices, seq), got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
            )
        # BEGIN SOLUTION
        batch, choices, seq = input_ids.shape
        # Any model with hidden_states (see the class docstring); nn.Module's attribute lookup cannot type it.
        hidden = self.transformer_lm.hidden_states(input_ids.reshape(batch * choices, seq))  # type: ignore[operator]
        pooled = pool_hidden_states(hidden, attention_mask.reshape(batch * choices, seq), self.pooling)
        return self.classifier(pooled).reshape(batch, choices)
        # END SOLUTION

    @torch.no_grad()
    def predict_probs(
        self,
        input_ids: Int[Tensor, "batch choices seq"],
        attention_mask: Int[Tensor, "batch choices seq"] | None = None,
    ) -> Float[Tensor, "batch choices"]:
        """Probabilities over the choices (a softmax of the logits), without gradients."""
        return torch.softmax(self(input_ids, attention_mask).float(), dim=-1)

    @torch.no_grad()
    def predict(
        self,
        input_ids: Int[Tensor, "batch choices seq"],
        attention_mask: Int[Tensor, "batch choices seq"] | None = None,
    ) -> Int[Tensor, " batch"]:
        """The index of the highest-scoring choice of each question."""
        return self(input_ids, attention_mask).argmax(dim=-1)
