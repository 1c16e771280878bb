"""Answering multiple-choice questions by prompting a language model, without training (Part 4B).

A :class:`PromptTemplate` turns a question into a prompt; a :class:`PromptingPipeline` scores the
choices with the model in one of two ways:

* ``"letter"``: the choices are listed in the prompt as "A. ...", "B. ..." and the score of a
  choice is the log-probability of its letter as the next token;
* ``"choice"``: the score of a choice is the log-likelihood of its *text* following the prompt,
  summed over its tokens (``normalize="sum"``) or averaged per token (``"mean"``). With the
  ``cloze`` template the choice is put into the blank and the rest of the sentence is scored too.

Either score can be calibrated (Zhao et al., 2021; Holtzman et al., 2021): subtract the score the
same choice gets after a content-free prompt (context and question "N/A"), which removes the
model's prior preference for some answers (frequent words, the letter "A").

The template and scoring rule are chosen on the dev set (:meth:`PromptingPipeline.select`), never
on the test set.
"""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from cs288_lm.common.modes import eval_mode
from cs288_lm.common.qa_data import BLANK, check_one_blank
from cs288_lm.tokenizer import Tokenizer

TEMPLATES = {
    "basic": "{context}\n\nQuestion: {question}\n\nChoices:\n{choices}\n\nAnswer:",
    "instruction": (
        "Read the story and choose the word that fills the blank.\n\nStory: {context}\n\n"
        "Sentence: {question}\n\nOptions:\n{choices}\n\nThe missing word is"
    ),
    "cloze": "{context} {question_before_blank}",
    "few_shot": "{demonstrations}{context}\n\nQuestion: {question}\n\nChoices:\n{choices}\n\nAnswer:",
}
CHOICE_FORMATS = ("letter", "number")
SCORING_METHODS = ("letter", "choice")
NORMALIZATIONS = ("sum", "mean")
CONTENT_FREE = "N/A"
PROMPTS_PER_BATCH = 32  # prompts the model reads in one forward pass
PROMPT_FIELDS = ("context", "question", "choices", "choices_formatted", "question_before_blank", "demonstrations")


class PromptTemplate:
    """Turns a question record into a prompt and into the continuation each choice is scored by.

    ``template_name`` picks one of :data:`TEMPLATES` (``basic``, ``instruction``, ``cloze``,
    ``few_shot``), or ``custom_template`` gives a format string with any of the fields
    ``{context}``, ``{question}``, ``{choices}`` (also named ``{choices_formatted}``),
    ``{question_before_blank}`` and ``{demonstrations}``; any other field (``{answer}``, ``{}``) is a
    ValueError here, naming it. ``choice_format`` labels the listed
    choices with letters (A., B., ...) or numbers (1., 2., ...). ``few_shot`` prompts start with
    ``demonstrations``: solved questions (records with answers, from the training set) written in
    the basic layout.
    """

    def __init__(
        self,
        template_name: str = "basic",
        custom_template: str | None = None,
        choice_format: str = "letter",
        demonstrations: Sequence[dict] = (),
    ):
        if custom_template is None and template_name not in TEMPLATES:
            raise ValueError(
                f"unknown template {template_name!r}; choose one of {sorted(TEMPLATES)} or pass custom_template"
            )
        if choice_format not in CHOICE_FORMATS:
            raise ValueError(f"unknown choice_format {choice_format!r}; choose one of {CHOICE_FORMATS}")
        if custom_template is not None:
            check_prompt_fields(custom_template)
        self.name = "custom" if custom_template is not None else template_name
        self.template = custom_template if custom_template is not None else TEMPLATES[template_name]
        self.choice_format = choice_format
        self.demonstrations = list(demonstrations)

    @property
    def is_cloze(self) -> bool:
        """Whether the choice is scored in place of the blank (the prompt stops at the blank)."""
        return "{question_before_blank}" in self.template

    def label(self, index: int) -> str:
        """The label of choice ``index``: "A", "B", ... or "1", "2", ..."""
        return chr(ord("A") + index) if self.choice_format == "letter" else str(index + 1)

    def format_choices(self, choices: Sequence[str]) -> str:
        """The choices listed one per line: ``"A. ball\\nB. tree\\n..."``, joined by ``"\\n"`` with no
        newline after the last one (a template puts what follows); no choices give ``""``."""
        # BEGIN SOLUTION
        return "\n".join(f"{self.label(index)}. {choice}" for index, choice in enumerate(choices))
        # END SOLUTION

    def format(
        self,
        record: dict | None = None,
        *,
        context: str | None = None,
        question: str | None = None,
        choices: Sequence[str] | None = None,
    ) -> str:
        """The prompt for a question: the template with its fields filled in.

        Give the question either as a record (``context``, ``question``, ``choices``) or as the
        keywords ``format(context=..., question=..., choices=[...])``. ``context`` and ``question``
        are copied verbatim, whitespace at their ends included (only a cloze prompt's end is
        stripped, below). ``choices`` and
        ``choices_formatted`` are both :meth:`format_choices`' lines; ``question_before_blank`` is
        the question up to the blank, without the whitespace (any whitespace) before it;
        ``demonstrations`` is each demonstration in the basic layout followed by
        `` {label}. {answer}`` and a blank line.

        For a cloze template (:attr:`is_cloze`) the question must have exactly one blank ``___``
        (no blank or several is a ValueError, checked here, before your code), and the prompt is
        the filled-in template with the whitespace at its *end* removed (``rstrip`` of the whole
        prompt, and nothing else: whitespace inside it, in the context for instance, stays). So it
        never ends with whitespace, even when the blank starts the question and the prompt ends
        with the context: the space goes to :meth:`continuation`. Other templates are returned as
        filled in, and a question without a blank is fine for them."""
        record = _question_record(record, context, question, choices)
        if self.is_cloze:
            check_one_blank(record["question"], f"template {self.name!r}")
        # BEGIN SOLUTION
        before_blank = record["question"].split(BLANK, 1)[0].rstrip()
        fields = {
            "context": record["context"],
            "question": record["question"],
            "choices": self.format_choices(record["choices"]),
            "choices_formatted": self.format_choices(record["choices"]),
            "question_before_blank": before_blank,
            "demonstrations": "".join(self._demonstration(example) for example in self.demonstrations),
        }
        prompt = self.template.format(**fields)
        return prompt.rstrip() if self.is_cloze else prompt
        # END SOLUTION

    def _demonstration(self, example: dict) -> str:
        answer = example["answer"]
        basic = TEMPLATES["basic"].format(
            context=example["context"], question=example["question"], choices=self.format_choices(example["choices"])
        )
        return f"{basic} {self.label(answer)}. {example['choices'][answer]}\n\n"

    def continuation(self, record: dict, index: int) -> str:
        """The text whose likelihood scores choice ``index`` after :meth:`format`'s prompt.

        For a cloze template: the choice in the blank and the rest of the question, after one
        space if whitespace (a space, a newline, a tab, ...: any ``str.isspace`` character)
        precedes the blank or the blank starts the question, and after nothing otherwise:
        ``" ball."`` for "... the ___.", ``" Tom came."`` for "... said:\\n___ came.", but
        ``'ball".'`` for 'a "___".'. The question needs exactly one blank, as in :meth:`format`.
        So with the ``cloze`` template, prompt and continuation together read "{context}
        {filled-in question}" (whitespace before the blank becomes one space). Other templates: a
        space and the choice (``" ball"``), whatever the question. The leading space belongs to the
        continuation because a byte-level BPE tokenizer attaches it to the word.
        """
        if self.is_cloze:
            check_one_blank(record["question"], f"template {self.name!r}")
        # BEGIN SOLUTION
        choice = record["choices"][index]
        if self.is_cloze:
            before, _, after = record["question"].partition(BLANK)
            space = " " if not before or before[-1].isspace() else ""
            return f"{space}{choice}{after}"
        return f" {choice}"
        # END SOLUTION

    def content_free(self, record: dict) -> dict:
        """``record`` with context and question replaced by "N/A" (the blank kept), for calibration."""
        _, blank, after = record["question"].partition(BLANK)
        return {
            **record,
            "context": CONTENT_FREE,
            "question": f"{CONTENT_FREE} {blank}{after}".rstrip() if blank else CONTENT_FREE,
        }

    def describe(self) -> str:
        if self.is_cloze:
            return self.name  # lists no choices, so no labels
        shots = f", {len(self.demonstrations)} shots" if self.demonstrations else ""
        return f"{self.name} ({self.choice_format}{shots})"


def check_prompt_fields(template: str) -> None:
    """A ValueError naming the first field of ``template`` that is not one of :data:`PROMPT_FIELDS`."""
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in PROMPT_FIELDS:
            raise ValueError(f"unknown template field {{{field}}} in {template!r}; use only {PROMPT_FIELDS}")


def _question_record(
    record: dict | None, context: str | None, question: str | None, choices: Sequence[str] | None
) -> dict:
    """The record :meth:`PromptTemplate.format` was given, or the one its keywords make."""
    keywords = (context, question, choices)
    if record is not None:
        if any(value is not None for value in keywords):
            raise TypeError("give either a record or the keywords context, question and choices, not both")
        return record
    if context is None or question is None or choices is None:
        raise TypeError("without a record, give all of context, question and choices")
    return {"context": context, "question": question, "choices": list(choices)}


@dataclass(frozen=True)
class ScoringSetup:
    """One way of answering: a template and a scoring rule (see the module docstring)."""

    template: PromptTemplate
    method: str = "choice"  # "letter" or "choice"
    normalize: str = "sum"  # for "choice": "sum" or "mean" over the choice's tokens
    calibrate: bool = False

    def describe(self) -> str:
        rule = "next letter" if self.method == "letter" else f"choice log-likelihood ({self.normalize})"
        return f"{self.template.describe()}, {rule}{', calibrated' if self.calibrate else ''}"


class PromptingPipeline:
    """Scores and answers multiple-choice questions with a causal language model.

    ``model`` maps token ids (batch, seq) to next-token logits (batch, seq, vocab) and has a
    ``context_length``; prompts longer than that lose tokens from the left. ``template``
    defaults to ``PromptTemplate("basic")``. The pipeline is for inference: it moves ``model`` to
    ``device`` and runs it without gradients in eval mode (no dropout), so scores are deterministic,
    and then restores the model's mode (a model being trained stays in training mode).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        template: PromptTemplate | None = None,
        device: str | torch.device = "cpu",
    ):
        self.model, self.tokenizer = model.to(device), tokenizer
        self.template = template or PromptTemplate("basic")
        self.device = torch.device(device)
        # The documented contract (a model with a context_length); nn.Module's attribute lookup cannot type it.
        self.context_length: int = model.context_length  # type: ignore[assignment]

    @torch.no_grad()
    def continuation_log_probs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[Float[Tensor, " tokens"]]:
        """Log-probability of each continuation token given the prompt and the tokens before it.

        Prompt and continuation are encoded separately and joined; the joined sequence is cut
        from the left to the model's context length; all pairs run as one right-padded batch.
        Returns one 1-D float32 tensor per pair, on the CPU (length = the continuation's number of
        tokens); the log-softmax is computed in float32 whatever the model's dtype (a bfloat16
        model's logits are cast first). The first continuation token is read from the prompt's last
        token, so a prompt that encodes to no token (``""``) is a ValueError, as is a continuation
        of no token or of ``context_length`` tokens or more (it must leave room for one prompt
        token). No pairs give ``[]`` (the model does not run); ``prompts`` and ``continuations`` of
        different lengths are a ValueError (checked here, before your code).
        """
        if len(prompts) != len(continuations):
            raise ValueError(
                f"{len(prompts)} prompts but {len(continuations)} continuations; give one continuation per prompt"
            )
        if not prompts:
            return []
        with eval_mode(self.model):
            # BEGIN SOLUTION
            sequences, lengths = [], []
            for prompt, continuation in zip(prompts, continuations, strict=True):
                continuation_ids = self.tokenizer.encode(continuation)
                if not 0 < len(continuation_ids) < self.context_length:
                    raise ValueError(
                        f"continuation {continuation!r} has {len(continuation_ids)} tokens; it must fit the context"
                    )
                prompt_ids = self.tokenizer.encode(prompt)
                if not prompt_ids:
                    raise ValueError(f"prompt {prompt!r} encodes to no token; the first continuation token needs one")
                ids = (prompt_ids + continuation_ids)[-self.context_length :]
                sequences.append(ids)
                lengths.append(len(continuation_ids))
            batch, _ = self._right_padded(sequences)
            log_probs = torch.log_softmax(self.model(batch).float(), dim=-1)
            results = []
            for row, (ids, length) in enumerate(zip(sequences, lengths, strict=True)):
                targets = torch.tensor(ids[-length:], device=self.device)
                # The logits at position t predict token t + 1.
                positions = torch.arange(len(ids) - length - 1, len(ids) - 1, device=self.device)
                results.append(log_probs[row, positions, targets].cpu())
            return results
            # END SOLUTION

    @torch.no_grad()
    def next_token_log_probs(self, prompts: Sequence[str]) -> Float[Tensor, "prompts vocab"]:
        """Log-probabilities of the token that follows each prompt (prompts cut from the left to fit)."""
        sequences = [self.tokenizer.encode(prompt)[-self.context_length :] for prompt in prompts]
        batch, lengths = self._right_padded(sequences)
        with eval_mode(self.model):
            logits = self.model(batch)[torch.arange(len(sequences)), lengths - 1]
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def letter_scores(
        self, records: Sequence[dict], template: PromptTemplate | None = None
    ) -> Float[Tensor, "questions choices"]:
        """Log-probability of each choice's label (" A", " B", ...) as the next token after the prompt
        (the first token of the label, if the tokenizer splits it)."""
        template = template or self.template
        num_choices = self._num_choices(records)
        label_ids = [self.tokenizer.encode(f" {template.label(index)}")[0] for index in range(num_choices)]
        prompts = [template.format(record) for record in records]
        log_probs = torch.cat(
            [
                self.next_token_log_probs(prompts[start : start + PROMPTS_PER_BATCH])
                for start in range(0, len(prompts), PROMPTS_PER_BATCH)
            ]
        )
        return log_probs[:, label_ids]

    def choice_log_probs(self, records: Sequence[dict], template: PromptTemplate | None = None) -> list[list[Tensor]]:
        """Per question and choice, the log-probabilities of the choice's continuation tokens
        (:meth:`PromptTemplate.continuation`) after the prompt."""
        template = template or self.template
        num_choices = self._num_choices(records)
        prompts = [template.format(record) for record in records for _ in range(num_choices)]
        continuations = [template.continuation(record, index) for record in records for index in range(num_choices)]
        flat = []
        for start in range(0, len(prompts), PROMPTS_PER_BATCH):
            end = start + PROMPTS_PER_BATCH
            flat += self.continuation_log_probs(prompts[start:end], continuations[start:end])
        return [flat[i : i + num_choices] for i in range(0, len(flat), num_choices)]

    def choice_scores(
        self, records: Sequence[dict], template: PromptTemplate | None = None, normalize: str = "sum"
    ) -> Float[Tensor, "questions choices"]:
        """Log-likelihood of each choice's continuation, summed over its tokens or, with
        ``normalize="mean"``, averaged per token (which favours long choices less)."""
        return _reduce(self.choice_log_probs(records, template), normalize)

    def scores(
        self, records: Sequence[dict], setup: ScoringSetup, cache: dict | None = None
    ) -> Float[Tensor, "questions choices"]:
        """Scores of every choice under ``setup``, calibrated against the content-free prompt if asked.

        ``cache`` (a dict kept by the caller for one list of records) remembers what the model
        computed, so setups that differ only in normalisation or calibration run it once.
        """
        cache = {} if cache is None else cache

        def raw(content_free: bool) -> Tensor:
            key = (_template_key(setup.template), setup.method, content_free)
            if key not in cache:
                batch = [setup.template.content_free(r) for r in records] if content_free else records
                if setup.method == "letter":
                    cache[key] = self.letter_scores(batch, setup.template)
                else:
                    cache[key] = self.choice_log_probs(batch, setup.template)
            return cache[key] if setup.method == "letter" else _reduce(cache[key], setup.normalize)

        return raw(False) - raw(True) if setup.calibrate else raw(False)

    def predict(
        self, records: Sequence[dict], setup: ScoringSetup | None = None, cache: dict | None = None
    ) -> list[int]:
        """The highest-scoring choice of each question (ties: the first)."""
        setup = setup or ScoringSetup(self.template)
        return self.scores(records, setup, cache).argmax(dim=-1).tolist()

    def accuracy(self, records: Sequence[dict], setup: ScoringSetup | None = None, cache: dict | None = None) -> float:
        """The fraction of ``records`` (which need answers) that :meth:`predict` gets right."""
        predictions = self.predict(records, setup, cache)
        return sum(p == record["answer"] for p, record in zip(predictions, records, strict=True)) / len(records)

    def select(
        self, dev: Sequence[dict], setups: Sequence[ScoringSetup]
    ) -> tuple[ScoringSetup, list[tuple[ScoringSetup, float]]]:
        """The setup with the best dev accuracy (the first on ties), and every setup's accuracy."""
        cache: dict = {}
        results = [(setup, self.accuracy(dev, setup, cache)) for setup in setups]
        best = max(results, key=lambda item: item[1])[0]
        return best, results

    def _right_padded(self, sequences: list[list[int]]) -> tuple[Tensor, Tensor]:
        """A (batch, longest) tensor of the sequences padded on the right, and their lengths. Right
        padding leaves a causal model's outputs at the real positions unchanged."""
        lengths = torch.tensor([len(ids) for ids in sequences])
        batch = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
        for row, ids in enumerate(sequences):
            batch[row, : len(ids)] = torch.tensor(ids)
        return batch.to(self.device), lengths.to(self.device)

    @staticmethod
    def _num_choices(records: Sequence[dict]) -> int:
        counts = {len(record["choices"]) for record in records}
        if len(counts) != 1:
            raise ValueError(f"every question must have the same number of choices, got {sorted(counts)}")
        return counts.pop()


def _template_key(template: PromptTemplate) -> tuple[str, str, str]:
    """What makes a template's prompts and continuations: a cache key that, unlike ``id()`` (reused
    once a template is freed), never matches a different template."""
    return template.template, template.choice_format, repr(template.demonstrations)


def _reduce(log_probs: list[list[Tensor]], normalize: str) -> Float[Tensor, "questions choices"]:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; choose one of {NORMALIZATIONS}")
    reduce = torch.sum if normalize == "sum" else torch.mean
    return torch.tensor([[float(reduce(choice)) for choice in question] for question in log_probs])


def default_setups(train: Sequence[dict], shots: int = 2, seed: int = 0) -> list[ScoringSetup]:
    """The setups the main job compares on dev: every template with the scoring rules that fit it.

    Listed templates are scored both by next letter and by choice likelihood; the cloze template
    only by likelihood (it lists no letters). Few-shot demonstrations are ``shots`` training
    questions drawn with ``seed``.
    """
    demonstrations = random.Random(seed).sample(list(train), shots) if shots else []
    templates = [
        PromptTemplate("basic"),
        PromptTemplate("instruction"),
        PromptTemplate("few_shot", demonstrations=demonstrations),
    ]
    setups = [
        ScoringSetup(template, method, normalize, calibrate)
        for template in templates
        for method, normalize in (("letter", "sum"), ("choice", "sum"), ("choice", "mean"))
        for calibrate in (False, True)
    ]
    cloze = PromptTemplate("cloze")
    setups += [
        ScoringSetup(cloze, "choice", normalize, calibrate)
        for normalize, calibrate in itertools.product(NORMALIZATIONS, (False, True))
    ]
    return setups
