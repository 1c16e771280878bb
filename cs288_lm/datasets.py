"""PyTorch datasets for Part 4: language-model windows of a text file, and multiple-choice questions.

Both return dictionaries of tensors, so a ``torch.utils.data.DataLoader`` batches them directly
(use :func:`collate_multiple_choice` for questions: it also trims the shared padding).
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor
from torch.utils.data import Dataset

from cs288_lm.common.qa_data import BLANK, check_one_blank, load_questions
from cs288_lm.tokenizer import Tokenizer

CHOICE_TEMPLATE = "{context}\n\nQuestion: {question}\n\nAnswer: {choice}"
# A cloze question read as plain text: the context, then the question with the choice in its blank.
CLOZE_TEMPLATE = "{context} {filled}"
NO_ANSWER = -1  # the label of a question whose record has no answer (the test split given to students)
TEMPLATE_FIELDS = ("context", "question", "choice", "filled")


def padding_token_id(tokenizer: Tokenizer) -> int:
    """The id used for padding: the first special token (``<|endoftext|>``), else 0. Padded positions
    are masked out, so the choice only matters for readability."""
    return next(iter(tokenizer.special_token_ids.values()), 0)


class PretrainingDataset(Dataset):
    """Fixed-length windows of a tokenized text file, for language modeling.

    The whole file is read as UTF-8 text exactly as it is (its bytes decoded: no newline
    translation, so ``"\\r\\n"`` stays ``"\\r\\n"``, as in ``train_bpe.py`` and
    :mod:`cs288_lm.training.encoding`) and encoded once with ``tokenizer.encode``, so special
    tokens in the text (the ``<|endoftext|>`` between stories) become their ids.

    Window ``i`` covers tokens ``[i * stride, i * stride + max_length + 1)``; an item is
    ``{"input_ids": window[:-1], "labels": window[1:]}`` (int64 tensors of length ``max_length``),
    so ``labels[t]`` is the token that follows ``input_ids[t]``. ``stride`` defaults to
    ``max_length`` (windows that do not overlap); a smaller stride overlaps them. Tokens at the end
    that do not fill a whole window are dropped. A file too short for one window is a ValueError.
    """

    def __init__(
        self, file_path: str | os.PathLike, tokenizer: Tokenizer, max_length: int = 256, stride: int | None = None
    ):
        if max_length < 1 or (stride is not None and stride < 1):
            raise ValueError(f"max_length and stride must be positive, got {max_length} and {stride}")
        path = Path(file_path)
        if not path.is_file():
            raise FileNotFoundError(f"pretraining data {path} does not exist")
        self.max_length, self.stride = max_length, stride or max_length
        # BEGIN SOLUTION
        self.tokens = torch.tensor(tokenizer.encode(path.read_bytes().decode("utf-8")), dtype=torch.long)
        self.num_windows = (
            (len(self.tokens) - max_length - 1) // self.stride + 1 if len(self.tokens) > max_length else 0
        )
        # END SOLUTION
        if len(self) == 0:
            raise ValueError(f"{path} has fewer than max_length + 1 = {max_length + 1} tokens")

    def __len__(self) -> int:
        """The number of whole windows."""
        # BEGIN SOLUTION
        return self.num_windows
        # END SOLUTION

    def __getitem__(self, index: int) -> dict[str, Int[Tensor, " max_length"]]:
        """Window ``index``: ``{"input_ids", "labels"}``; an index outside ``[0, len)`` is an IndexError."""
        # BEGIN SOLUTION
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} is outside [0, {len(self)})")
        window = self.tokens[index * self.stride : index * self.stride + self.max_length + 1]
        return {"input_ids": window[:-1], "labels": window[1:]}
        # END SOLUTION


class MultipleChoiceQADataset(Dataset):
    """Multiple-choice questions, each choice written out as one sequence for the model to read.

    Choice ``j`` of a question becomes ``template`` with its fields filled in: ``{context}``,
    ``{question}``, ``{choice}`` (choice ``j``) and ``{filled}`` (the question with its blank ``___``
    replaced by choice ``j``; a template with ``{filled}`` needs every question to have exactly one
    blank, else a ValueError names the question). The default, :data:`CHOICE_TEMPLATE`, is
    ``"{context}\\n\\nQuestion: {question}\\n\\nAnswer: {choice}"``; :data:`CLOZE_TEMPLATE`,
    ``"{context} {filled}"``, reads a cloze question as the story itself. A template must start with
    ``{context}`` (anything else is a ValueError), and any other field (``{answer}``, ``{}``) is a
    ValueError that names it. A field may appear more than once: only the leading ``{context}`` is
    "the context" that truncation cuts; a later ``{context}`` belongs to the rest (see
    :meth:`encode_choice`). No special token (BOS, EOS) is added: a row is exactly the tokens of
    its text. An empty context gives a row of the rest alone, and an empty choice is filled in as
    ``""`` (for :data:`CHOICE_TEMPLATE` the row then ends with ``"Answer: "``); neither is an error.
    An item is a dictionary of tensors:

    * ``input_ids``: (num_choices, max_length) int64, each row right-padded with
      ``pad_token_id`` (:func:`padding_token_id`);
    * ``attention_mask``: (num_choices, max_length) int64, 1 on real tokens and 0 on padding;
    * ``labels``: a scalar int64, the record's ``answer``, or ``NO_ANSWER`` = -1 when the record has
      no answer (no ``"answer"`` key, or ``None``).

    Sequences longer than ``max_length`` lose tokens from the left: from the *start of the context*,
    so that what follows the context (question and choice) survives whole when it fits. If it alone
    is longer than ``max_length``, the whole context goes and the rest loses its first tokens too,
    so that the row still ends as the template does (no error). ``max_length`` below 1 is a
    ValueError. ``data`` is a list of records ``{"id", "context", "question", "choices", "answer"}``
    as :func:`~cs288_lm.common.qa_data.load_questions` returns them (``id`` and ``answer`` are
    optional); every record needs ``num_choices`` choices, and an ``answer`` is the 0-based index
    of the right choice, an int in ``[0, num_choices)``. A letter or a choice's text is a ValueError
    here: :meth:`from_json` (through ``load_questions``) is what turns those into indices.
    """

    def __init__(
        self,
        data: Sequence[dict],
        tokenizer: Tokenizer,
        max_length: int = 256,
        num_choices: int = 4,
        template: str = CHOICE_TEMPLATE,
    ):
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        check_template(template)
        for index, record in enumerate(data):
            name = f"question {record.get('id', index)!r}"
            if len(record["choices"]) != num_choices:
                raise ValueError(f"{name} has {len(record['choices'])} choices, expected {num_choices}")
            answer = record.get("answer")
            is_index = isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < num_choices
            if answer is not None and not is_index:
                raise ValueError(
                    f"{name}: answer {answer!r} is not an index in [0, {num_choices}); load the file with from_json "
                    "(load_questions), which turns letters and choice texts into indices"
                )
            if "{filled}" in template:
                check_one_blank(record["question"], name)
        self.data, self.tokenizer = list(data), tokenizer
        self.max_length, self.num_choices, self.template = max_length, num_choices, template
        self.pad_token_id = padding_token_id(tokenizer)

    @classmethod
    def from_json(cls, path: str | os.PathLike, tokenizer: Tokenizer, **kwargs) -> MultipleChoiceQADataset:
        """Load the questions of a JSON file (:func:`cs288_lm.common.qa_data.load_questions`)."""
        return cls(load_questions(path), tokenizer, **kwargs)

    def __len__(self) -> int:
        return len(self.data)

    def encode_choice(self, record: dict, choice: str) -> list[int]:
        """Token ids of one choice's sequence: its last ``max_length`` tokens (see the class docstring).

        Encode the context and the rest (with the default template ``"\\n\\nQuestion: ...\\n\\nAnswer:
        {choice}"``) separately and join the ids, so that cutting the context never changes how the rest
        is tokenized. "The rest" is the whole filled-in template (:func:`fill_template`) after the
        record's context text: the template without its leading ``{context}``, every field filled in (a
        second ``{context}`` with the context too), encoded as one string. The ids are
        ``encode(context) + encode(rest)``, nothing added, then their last ``max_length``.
        """
        # BEGIN SOLUTION
        rest_text = fill_template(self.template, record, choice)[len(record["context"]) :]
        ids = self.tokenizer.encode(record["context"]) + self.tokenizer.encode(rest_text)
        return ids[-self.max_length :]
        # END SOLUTION

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Question ``index`` as ``{"input_ids", "attention_mask", "labels"}`` (see the class docstring)."""
        # BEGIN SOLUTION
        record = self.data[index]
        input_ids = torch.full((self.num_choices, self.max_length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((self.num_choices, self.max_length), dtype=torch.long)
        for row, choice in enumerate(record["choices"]):
            ids = self.encode_choice(record, choice)
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        answer = record.get("answer")
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor(NO_ANSWER if answer is None else answer, dtype=torch.long),
        }
        # END SOLUTION


def fill_template(template: str, record: dict, choice: str) -> str:
    """The text of one choice's row before tokenization (given): ``template`` with ``{context}``,
    ``{question}``, ``{choice}`` and ``{filled}`` (the question with ``choice`` in its blank) filled in."""
    filled = record["question"].replace(BLANK, choice)
    return template.format(context=record["context"], question=record["question"], choice=choice, filled=filled)


def check_template(template: str) -> None:
    """A ValueError unless ``template`` starts with ``{context}``; else one naming its first field that
    is not one of :data:`TEMPLATE_FIELDS`."""
    if not template.startswith("{context}"):
        raise ValueError(f"a choice template must start with '{{context}}', got {template!r}")
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown template field {{{field}}} in {template!r}; use only {TEMPLATE_FIELDS}")


def collate_multiple_choice(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack items into a batch and drop the padding columns no sequence of the batch uses (given).

    Right padding never changes a causal model's outputs at real positions, so trimming only saves
    compute: a batch of short questions costs as much as its longest sequence, not ``max_length``.
    Every per-token tensor of the items (shaped like ``input_ids``, such as ``attention_mask``) is
    trimmed alike.
    """
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    longest = int(batch["attention_mask"].sum(dim=-1).max())
    shape = batch["input_ids"].shape
    return {key: value[..., :longest] if value.shape == shape else value for key, value in batch.items()}
