"""Which positions the QA head pools (given): every real token, or only the answer.

The rows of one question (one per choice, see :class:`~cs288_lm.datasets.MultipleChoiceQADataset`)
are the same text up to the choice: in a causal model their hidden states are the same there too,
so pooling those positions adds (nearly) the same vector to every choice and only dilutes what
tells the choices apart. ``"answer"`` pools a row's *answer span* instead: from the first token
where the question's rows differ to the row's end, that is the choice and what the template puts
after it (with the cloze template, the rest of the question sentence: the tokens that cloze
prompting scores).

The span is passed to :class:`~cs288_lm.qa_model.TransformerForMultipleChoice` as its mask. That is
safe because the mask only chooses the pooled positions: the backbone reads every row causally
and right-padded, without a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from cs288_lm.datasets import MultipleChoiceQADataset, fill_template
from cs288_lm.tokenizer import Tokenizer

POOLED_POSITIONS = ("all", "answer")


def check_pooled_positions(pooled_positions: str) -> None:
    """A ValueError naming the choices for anything but one of :data:`POOLED_POSITIONS`."""
    if pooled_positions not in POOLED_POSITIONS:
        raise ValueError(f"unknown pooled positions {pooled_positions!r}; choose one of {POOLED_POSITIONS}")


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading ids all ``sequences`` have in common."""
    length = 0
    while all(len(ids) > length for ids in sequences) and len({ids[length] for ids in sequences}) == 1:
        length += 1
    return length


def answer_span_lengths(record: dict, tokenizer: Tokenizer, template: str) -> list[int]:
    """For each choice of ``record``, the number of tokens at the end of its row that differ from the
    other choices' rows or follow such a token (before the row is cut to a maximum length), and at
    least one: a row that is all shared (a choice whose tokens begin every other choice, or
    identical choices) still pools its last token.

    A row is ``encode(context) + encode(rest)`` (:meth:`MultipleChoiceQADataset.encode_choice`); the
    contexts are the same, so the span is what follows the rests' shared prefix.
    """
    context = record["context"]
    rests = [tokenizer.encode(fill_template(template, record, choice)[len(context) :]) for choice in record["choices"]]
    shared = max(0, min(shared_prefix_length(rests), min(len(rest) for rest in rests) - 1))
    return [max(len(rest) - shared, 1) for rest in rests]


class AnswerSpanDataset(Dataset):
    """The items of a :class:`MultipleChoiceQADataset` with a ``pool_mask`` added: (num_choices,
    max_length) int64, 1 on the answer span of each row (module docstring), 0 elsewhere. A row cut
    to ``max_length`` keeps what of its span survived."""

    def __init__(self, dataset: MultipleChoiceQADataset):
        self.dataset = dataset
        self.data = dataset.data  # the records, as the wrapped dataset has them (answers included)
        self.span_lengths = [answer_span_lengths(record, dataset.tokenizer, dataset.template) for record in self.data]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = dict(self.dataset[index])
        mask = item["attention_mask"]
        ends = mask.sum(dim=-1, keepdim=True)  # rows are right-padded: their real tokens come first
        starts = ends - torch.tensor(self.span_lengths[index]).unsqueeze(-1)
        positions = torch.arange(mask.shape[-1])
        item["pool_mask"] = ((positions >= starts) & (positions < ends)).long()
        return item


QADataset = MultipleChoiceQADataset | AnswerSpanDataset  # what fine-tuning reads


def pooled_dataset(dataset: MultipleChoiceQADataset, pooled_positions: str) -> QADataset:
    """``dataset`` itself for ``"all"``, or its :class:`AnswerSpanDataset` for ``"answer"``."""
    check_pooled_positions(pooled_positions)
    return dataset if pooled_positions == "all" else AnswerSpanDataset(dataset)
