"""How far the QA questions can be answered without a language model (given, instructor tooling).

The instructors' data generator prints this module's table for the files it writes. Each *rule* picks one choice per
question from what the question file itself shows, plus word-pair counts from the training
stories; a good question set keeps every rule near chance (25% with four choices) except the
ones that need real reading. The rules:

* **lookup**: the clause around the blank (:func:`cs288_lm.common.qa_data.leak_pattern`) searched, with
  each choice filled in, in every context and every other question of the same file (the
  students' copy of test shows all of them). A hit means the file gives the answer away; the
  generator makes sure no choice, right or wrong, is ever found, so this rule never answers.
* **most / least frequent**, **last / first occurrence**: the choice that occurs most (least)
  often in the context, or whose last (first) occurrence is latest (earliest); ties broken by
  the both-sides bigram fit.
* **bigram left / right / both**: the choice that best fits the word before the blank, the word
  after it, or both, by add-one-smoothed bigram counts of ``train.txt``.
* **combined**: a conditional logit over all the features above (counts, occurrence ranks,
  bigram fits), fit on the train questions.

Scores are fractions of questions answered right; a rule that cannot decide (lookup without a
hit) counts as wrong. The table also shows the answer positions and the mix of word kinds.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping, Sequence

import numpy as np

from cs288_lm.common.qa_data import Lexicon, leak_pattern
from cs288_lm.common.qa_rules import (
    RULES,
    WORD,
    BigramModel,
    ChoiceStats,
    question_stats,
    rule_choice,
)

AUDIT_RULES = ("lookup", *RULES, "combined")
NUM_CHOICES = 4


class FileTexts:
    """What a question file shows — every context and every question (with its blank) — indexed by
    the words each text contains, so that a phrase is only searched where all its words occur."""

    def __init__(self, records: Sequence[dict]):
        self.texts = [text for record in records for text in (record["context"], record["question"])]
        self.postings: dict[str, set[int]] = collections.defaultdict(set)
        for index, text in enumerate(self.texts):
            for word in WORD.findall(text.lower()):
                self.postings[word].add(index)

    def contains(self, phrase: str) -> bool:
        """Whether ``phrase`` occurs in a text as whole words, in any case."""
        words = set(WORD.findall(phrase.lower()))
        candidates = (
            set.intersection(*(self.postings.get(word, set()) for word in words)) if words else range(len(self.texts))
        )
        if not candidates:  # most phrases: no text has all their words, and compiling is the slow part
            return False
        pattern = re.compile(r"(?<![A-Za-z])" + re.escape(phrase) + r"(?![A-Za-z])", re.IGNORECASE)
        return any(pattern.search(self.texts[index]) for index in candidates)


def lookup_choice(record: dict, texts: FileTexts) -> int | None:
    """The choice whose filled-in clause (:func:`cs288_lm.common.qa_data.leak_pattern`) occurs in the file,
    if exactly one does; None otherwise."""
    left, right = leak_pattern(record["question"])
    found = [index for index, choice in enumerate(record["choices"]) if texts.contains(left + choice + right)]
    return found[0] if len(found) == 1 else None


def feature_matrix(stats: list[ChoiceStats]) -> np.ndarray:
    """(choices, features) for the combined rule: counts and their ranks, occurrence ranks, whether
    the choice is in the context, and the bigram fits."""

    def rank(values: Sequence[float]) -> np.ndarray:
        return np.argsort(np.argsort(np.asarray(values, dtype=float))).astype(float)

    counts = [s.count for s in stats]
    columns = [counts, rank(counts), rank([s.last for s in stats]), rank([-s.first for s in stats])]
    columns += [[float(s.count > 0) for s in stats], [s.fit_left for s in stats], [s.fit_right for s in stats]]
    return np.stack([np.asarray(column, dtype=float) for column in columns], axis=1)


def fit_conditional_logit(
    matrices: Sequence[np.ndarray], answers: Sequence[int], steps: int = 500, lr: float = 0.1
) -> np.ndarray:
    """Weights ``w`` of a softmax over choices with scores ``features @ w``, fit by gradient descent
    on the mean negative log-likelihood (features standardised first; returns weights for the
    standardised features, with their mean and scale)."""
    stacked = np.concatenate(matrices)
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0) + 1e-9
    x = (np.stack(matrices) - mean) / scale  # (questions, choices, features)
    y = np.asarray(answers)
    weights = np.zeros(x.shape[-1])
    for _ in range(steps):
        scores = x @ weights
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(len(y)), y] -= 1.0
        weights -= lr * np.einsum("qc,qcf->f", probs, x) / len(y)
    return np.concatenate([weights, mean, scale])


def apply_conditional_logit(parameters: np.ndarray, matrix: np.ndarray) -> int:
    size = matrix.shape[1]
    weights, mean, scale = parameters[:size], parameters[size : 2 * size], parameters[2 * size :]
    return int(np.argmax(((matrix - mean) / scale) @ weights))


def audit_split(
    records: Sequence[dict], bigrams: BigramModel, combined: np.ndarray, lexicon: Lexicon | None = None
) -> dict:
    """Scores of every rule on ``records`` (which need answers), the answer positions and word kinds.
    The lookup sees only what the students' copy shows (no answers)."""
    texts = FileTexts(records)
    right: collections.Counter[str] = collections.Counter()
    lookup_hits = 0
    for record in records:
        left, right_side = leak_pattern(record["question"])
        lookup_hits += sum(texts.contains(left + choice + right_side) for choice in record["choices"])
        right["lookup"] += lookup_choice(record, texts) == record["answer"]
        stats = question_stats(record, bigrams)
        for rule in RULES:
            right[rule] += rule_choice(rule, stats) == record["answer"]
        right["combined"] += apply_conditional_logit(combined, feature_matrix(stats)) == record["answer"]
    total = len(records)
    kinds = collections.Counter(lexicon.kind(r["choices"][r["answer"]]) if lexicon else None for r in records)
    return {
        "questions": total,
        "scores": {rule: right[rule] / total for rule in AUDIT_RULES},
        "lookup_hits": lookup_hits,
        "answer_positions": [sum(r["answer"] == index for r in records) for index in range(NUM_CHOICES)],
        "kinds": {str(kind): count for kind, count in sorted(kinds.items(), key=lambda item: str(item[0]))},
    }


def audit(splits: Mapping[str, Sequence[dict]], train_text: str, lexicon: Lexicon | None = None) -> dict[str, dict]:
    """:func:`audit_split` for every split; the combined rule is fit on ``splits["train"]``."""
    bigrams = BigramModel(train_text)
    train = splits["train"]
    combined = fit_conditional_logit(
        [feature_matrix(question_stats(r, bigrams)) for r in train], [r["answer"] for r in train]
    )
    return {name: audit_split(records, bigrams, combined, lexicon) for name, records in splits.items()}


def format_audit(results: dict[str, dict]) -> str:
    """A Markdown table: one row per rule, one column per split; then positions and kinds."""
    names = list(results)
    lines = ["| rule | " + " | ".join(f"{name} ({results[name]['questions']})" for name in names) + " |"]
    lines.append("| --- |" + " --- |" * len(names))
    for rule in AUDIT_RULES:
        lines.append(f"| {rule} | " + " | ".join(f"{results[name]['scores'][rule]:.1%}" for name in names) + " |")
    lines.append(
        "| lookup hits (any choice) | " + " | ".join(str(results[name]["lookup_hits"]) for name in names) + " |"
    )
    lines.append(
        "| answer positions A/B/C/D | "
        + " | ".join("/".join(map(str, results[n]["answer_positions"])) for n in names)
        + " |"
    )
    lines.append(
        "| answer kinds | "
        + " | ".join(", ".join(f"{kind} {count}" for kind, count in results[n]["kinds"].items()) for n in names)
        + " |"
    )
    return "\n".join(lines)
