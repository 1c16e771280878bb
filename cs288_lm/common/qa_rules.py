"""Shallow rules that answer a cloze question without reading it (given).

The question generator (:mod:`cs288_lm.common.qa_data`) chooses distractors so that these rules stay near
chance, and the audit (:mod:`cs288_lm.common.qa_audit`) measures them on the files it wrote. A rule sees,
for each choice, how often and where it occurs in the context, and how well it fits the words
around the blank by bigram counts of the training stories; it picks the choice with the highest
key (a tuple: ties on the first part are broken by the second, then by the first choice).
"""

from __future__ import annotations

import collections
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

BLANK = "___"
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


class BigramModel:
    """Add-one-smoothed word bigram log-probabilities from a text (lower case)."""

    def __init__(self, text: str):
        words = [word.lower() for word in WORD.findall(text)]
        self.unigrams = collections.Counter(words)
        self.bigrams = collections.Counter(itertools.pairwise(words))
        self.vocabulary = len(self.unigrams) + 1

    def log_prob(self, previous: str, word: str) -> float:
        """log P(word | previous); 0 when a word is missing (the blank starts or ends the sentence)."""
        if not previous or not word:
            return 0.0
        previous, word = previous.lower(), word.lower()
        return math.log((self.bigrams[previous, word] + 1) / (self.unigrams[previous] + self.vocabulary))


@dataclass(frozen=True)
class ChoiceStats:
    """What the rules see of one choice."""

    count: int  # occurrences in the context
    first: int  # word index of the first occurrence (the context's length if absent)
    last: int  # word index of the last occurrence (-1 if absent)
    fit_left: float  # log P(choice | word before the blank)
    fit_right: float  # log P(word after the blank | choice)

    @property
    def fit(self) -> float:
        return self.fit_left + self.fit_right


RULES: dict[str, Callable[[ChoiceStats], tuple[float, float]]] = {
    "most frequent": lambda s: (s.count, s.fit),
    "least frequent": lambda s: (-s.count, s.fit),
    "last occurrence": lambda s: (s.last, s.fit),
    "first occurrence": lambda s: (-s.first, s.fit),
    "bigram left": lambda s: (s.fit_left, s.fit),
    "bigram right": lambda s: (s.fit_right, s.fit),
    "bigram both": lambda s: (s.fit, s.count),
}
FREQUENCY_RULES = ("most frequent", "least frequent", "last occurrence", "first occurrence")
BIGRAM_RULES = ("bigram left", "bigram right", "bigram both")


def blank_neighbours(question: str) -> tuple[str, str]:
    """The words right before and right after the blank ("" at the sentence's edge)."""
    left, right = question.split(BLANK, 1)
    before, after = WORD.findall(left), WORD.findall(right)
    return (before[-1] if before else ""), (after[0] if after else "")


def choice_stats(
    context_words: Sequence[str], neighbours: tuple[str, str], word: str, bigrams: BigramModel
) -> ChoiceStats:
    indices = [index for index, token in enumerate(context_words) if token == word]
    first, last = (indices[0], indices[-1]) if indices else (len(context_words), -1)
    before, after = neighbours
    return ChoiceStats(len(indices), first, last, bigrams.log_prob(before, word), bigrams.log_prob(word, after))


def question_stats(record: dict, bigrams: BigramModel) -> list[ChoiceStats]:
    """:class:`ChoiceStats` of every choice of a question record."""
    context_words, neighbours = WORD.findall(record["context"]), blank_neighbours(record["question"])
    return [choice_stats(context_words, neighbours, choice, bigrams) for choice in record["choices"]]


def rule_choice(rule: str, stats: Sequence[ChoiceStats]) -> int:
    """The choice ``rule`` picks: the highest key, the first one on a full tie."""
    keys = [RULES[rule](s) for s in stats]
    return keys.index(max(keys))


def key_share(keys: Sequence[tuple[float, float]], answer: int) -> float:
    """How much of a question a rule gets right when full ties are broken at random, from the rule's
    keys of the choices (``RULES[rule](stats)``)."""
    best = max(keys)
    return 1.0 / keys.count(best) if keys[answer] == best else 0.0
