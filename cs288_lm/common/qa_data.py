"""Multiple-choice questions from TinyStories, in the style of the Children's Book Test (given).

The Children's Book Test (Hill et al., 2016) shows a passage of consecutive sentences from a
story, blanks out one word of the sentence that follows, and asks which of several candidate
words fills the blank; the candidates are words of the same kind (names, nouns, verbs). This
module builds such questions from TinyStories:

* the context is up to ``context_sentences`` consecutive sentences of one story (a sentence keeps
  a quotation whole, see :func:`split_sentences`);
* the question is the next sentence with one word replaced by ``___``;
* the four choices are the right word and three distractors of the same kind from the same story,
  none of them an inflection of another (friend/friends, play/played).

Questions must be answered by reading, not by tricks, so the generator guarantees:

* **no lookup**: the question sentences of one story are more than ``context_sentences`` apart, so
  no question's sentence is inside another's context; and no choice, right or wrong, filled into
  the clause around the blank (:func:`leak_pattern`) occurs in any context or question sentence of
  the same split. A file never gives its own answers away.
* **no frequency or position rule**: among the acceptable (answer, distractors), each question
  takes the one that keeps the shallow rules of :mod:`cs288_lm.common.qa_rules` (most or least frequent
  choice in the context, its last or first occurrence, bigram fit) closest to their targets over
  the split: chance for frequency and position, a little above chance for bigram fit.
* whole, clean sentences: no question cut inside a quotation, no markup or stray symbols.

The audit (:mod:`cs288_lm.common.qa_audit`) measures all of this on the question files.

Word kinds come from simple corpus statistics instead of a tagger (students may not install one):
a *name* is a capitalised word seen in the middle of sentences and (almost) never in lower case; a
*noun* is a word seen after a determiner ("the", "a", "his", ...) but rarely after words that
introduce adjectives ("very", "was", "felt", ...); a *verb* is a past-tense form: a word in "-ed"
whose stem is also a word ("played" / "play", "liked" / "like") and that is not used after
determiners ("the bed") or as an adjective ("was scared"), or one of a list of irregular forms.

A record is ``{"id", "context", "question", "choices", "answer"}`` with ``answer`` the 0-based
index of the right choice. Generation is deterministic for a seed, and answer positions are
balanced (each index is the answer for a quarter of the questions, up to rounding).
:func:`load_questions` also reads the cs288 starter's ``qa_*.json`` files.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cs288_lm.common.pretokenization import EOT
from cs288_lm.common.qa_rules import BLANK, RULES, WORD, BigramModel, blank_neighbours, choice_stats, key_share

NUM_CHOICES = 4
MIN_QUESTIONWORDS = 5
MAX_QUESTIONWORDS = 40
MIN_CLAUSEWORDS = 3  # words besides the blank that a lookup needs (see leak_pattern)
MAX_POOL = 8  # distractor candidates per answer: C(8, 3) = 56 sets to choose from
# What the generator steers each shallow rule's accuracy to (chance is 1 / NUM_CHOICES). The
# bigram rules keep some of their signal: distractors that never fit the words around the blank
# would make the questions unnatural, and a language model should beat bigram counts by reading.
RULE_TARGETS = dict.fromkeys(RULES, 1 / 4) | {"bigram left": 0.35, "bigram right": 0.35, "bigram both": 0.35}
COMMON_NAMES = 20  # name distractors beyond the story's own: the split's most frequent names

# A sentence may end at . ! or ? (with closing quotes) before whitespace; see split_sentences.
_SENTENCE_END = re.compile(r"""[.!?]+["”']*\s+""")
# What a question may contain: letters, digits, spaces and ordinary punctuation (no markup, no
# stray symbols left by broken text).
_CLEAN_TEXT = re.compile(r"""[A-Za-z0-9 .,!?;:'"“”’\-]+""")
# Where a clause around the blank ends (see leak_pattern).
_CLAUSE_BOUNDARY = re.compile(r"""[.,!?;:"“”]""")
_DETERMINERS = {"the", "a", "an", "his", "her", "my", "their", "your", "its", "our"}
_ADJECTIVE_CUES = {"very", "so", "too", "was", "were", "is", "are", "be", "felt", "feel", "looked", "seemed", "got"}
_VERB_CUES = {"to", "will", "can", "could", "would", "should", "must", "didn't", "don't", "let's", "not"}
_NOT_NOUNS = {
    "lot",
    "bit",
    "way",
    "while",
    "end",
    "top",
    "few",
    "time",
    "day",
    "one",
    "other",
    "same",
    "next",
    "last",
    "sudden",
    "rest",
    "kind",
    "lots",
    "whole",
    "moment",
    "little",
    "big",
}
_IRREGULAR_PAST = {
    "ate",
    "became",
    "began",
    "bit",
    "blew",
    "bought",
    "brought",
    "built",
    "caught",
    "came",
    "dug",
    "drank",
    "drew",
    "drove",
    "fell",
    "felt",
    "flew",
    "forgot",
    "found",
    "gave",
    "got",
    "grew",
    "heard",
    "held",
    "hid",
    "hit",
    "kept",
    "knew",
    "left",
    "lost",
    "made",
    "met",
    "ran",
    "rode",
    "sang",
    "sat",
    "saw",
    "shook",
    "slept",
    "spun",
    "stood",
    "swam",
    "took",
    "taught",
    "thought",
    "threw",
    "told",
    "went",
    "woke",
    "won",
    "wore",
    "wrote",
}
# Too frequent or too vague to make a good question.
_FUNCTIONWORDS = {
    "and",
    "or",
    "but",
    "so",
    "to",
    "of",
    "in",
    "on",
    "at",
    "for",
    "with",
    "from",
    "into",
    "up",
    "down",
    "out",
    "was",
    "were",
    "is",
    "are",
    "had",
    "has",
    "he",
    "she",
    "it",
    "they",
    "we",
    "you",
    "i",
    "that",
    "this",
    "then",
    "when",
    "because",
    "too",
    "very",
    "all",
    "again",
    "there",
    "her",
    "his",
    "their",
    "the",
    "a",
    "an",
}
_NOT_NAMES = {
    "I",
    "The",
    "A",
    "Hey",
    "Hi",
    "Hello",
    "Yes",
    "No",
    "Oh",
    "Wow",
    "Please",
    "Thank",
    "Meow",
    "Woof",
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Ouch",
    "Yay",
    "Bye",
    "Okay",
    "Ok",
    "North",
    "South",
    "East",
    "West",
}
_SKIPWORDS = {"said", "asked", "was", "were", "had", "did", "wanted", "named", "called", "looked", "started"}
WORD_KINDS = ("name", "noun", "verb")


@dataclass(frozen=True)
class Lexicon:
    """The kind of each known word: ``{"Lily": "name", "ball": "noun", "played": "verb", ...}``."""

    kinds: dict[str, str]

    def kind(self, word: str) -> str | None:
        return self.kinds.get(word)


def split_stories(text: str) -> list[str]:
    """The stories of a TinyStories file, separated by ``<|endoftext|>``; empty ones dropped."""
    return [story.strip() for story in text.split(EOT) if story.strip()]


def _quote_open_after(text: str, is_open: bool) -> bool:
    """Whether a quotation is open after ``text``, given whether one was open before it: a straight
    ``"`` toggles, a curly ``“`` opens and ``”`` closes."""
    for char in text:
        if char == '"':
            is_open = not is_open
        elif char == "“":
            is_open = True
        elif char == "”":
            is_open = False
    return is_open


def split_sentences(story: str) -> list[str]:
    """Sentences of a story, whitespace-normalised: text up to ``.``, ``!`` or ``?`` (with any closing
    quotes) before whitespace, but never inside an open quotation, so that an utterance stays whole
    (``Tom said, "I like it. Can I keep it?"`` is one sentence). A paragraph (a line)
    always ends a sentence and closes any quotation left open."""
    sentences = []
    for paragraph in story.split("\n"):
        is_open, start, scanned = False, 0, 0
        for match in _SENTENCE_END.finditer(paragraph + " "):
            is_open, scanned = _quote_open_after(paragraph[scanned : match.end()], is_open), match.end()
            if not is_open:
                sentence = " ".join(paragraph[start : match.end()].split())
                if sentence:
                    sentences.append(sentence)
                start = match.end()
        rest = " ".join(paragraph[start:].split())
        if rest:
            sentences.append(rest)
    return sentences


def word_stem(word: str) -> str:
    """A crude stem that maps the inflections of one word together: friend/friends, play/played/
    plays, like/liked/liking, hop/hopped, try/tried/tries, box/boxes."""
    word = word.lower()
    for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            word = word[: -len(suffix)] + replacement
            break
    if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # hopp -> hop
    return word


def build_lexicon(stories: Iterable[str], min_count: int = 2) -> Lexicon:
    """Assign names, nouns and verbs from corpus statistics (see the module docstring)."""
    lower, capitalised_inside = collections.Counter(), collections.Counter()
    after_determiner, after_adjective_cue, after_verb_cue = (
        collections.Counter(),
        collections.Counter(),
        collections.Counter(),
    )
    determiner_bigrams = []  # (word after a determiner, the word after it or "")
    for story in stories:
        for sentence in split_sentences(story):
            words = WORD.findall(sentence)
            for index, word in enumerate(words):
                if word[0].islower():
                    lower[word] += 1
                elif index > 0:
                    capitalised_inside[word] += 1
                previous = words[index - 1].lower() if index > 0 else ""
                if previous in _DETERMINERS:
                    after_determiner[word] += 1
                    determiner_bigrams.append((word, words[index + 1] if index + 1 < len(words) else ""))
                elif previous in _ADJECTIVE_CUES:
                    after_adjective_cue[word] += 1
                elif previous in _VERB_CUES:
                    after_verb_cue[word] += 1
    # An adjective sits between a determiner and a noun ("the little girl"): count how often a word
    # after a determiner is itself followed by a word that often follows determiners.
    before_noun = collections.Counter(
        word
        for word, following in determiner_bigrams
        if after_determiner[following] >= min_count and following.lower() not in _FUNCTIONWORDS
    )
    kinds: dict[str, str] = {}
    for word, count in capitalised_inside.items():
        # Never (or hardly ever) in lower case: "Lily" is a name though "a lily" occurs once.
        if count >= min_count and lower[word.lower()] <= 0.05 * count and word not in _NOT_NAMES and "'" not in word:
            kinds[word] = "name"
    for word, count in lower.items():
        if word in _SKIPWORDS or word in _DETERMINERS or len(word) < 3 or "'" in word:
            continue
        if word in _IRREGULAR_PAST or (
            _is_regular_past(word, lower)
            and after_determiner[word] <= 0.1 * count  # not a noun ("the bed", "a red ball")
            and after_adjective_cue[word] <= 0.2 * count  # not an adjective ("was scared", "felt tired")
        ):
            kinds[word] = "verb"
        elif (
            after_determiner[word] >= min_count
            and after_determiner[word] >= 0.1 * count  # often used as a noun
            and before_noun[word] <= 0.5 * after_determiner[word]  # not an adjective
            and after_adjective_cue[word] + after_verb_cue[word] <= 0.2 * after_determiner[word]
            and word not in _NOT_NOUNS
        ):
            kinds[word] = "noun"
    return Lexicon(kinds)


def _is_regular_past(word: str, known: collections.Counter) -> bool:
    """Whether ``word`` looks like the past tense of a known word: played/play, liked/like,
    hopped/hop, tried/try. Short words (bed, red, fed) and words in "-eed" (need, seed) are not."""
    if len(word) < 5 or not word.endswith("ed") or word.endswith("eed"):
        return False
    candidates = {word[:-2], word[:-1]}  # played -> play, liked -> like
    if word[-3] == word[-4]:
        candidates.add(word[:-3])  # hopped -> hop
    if word.endswith("ied"):
        candidates.add(word[:-3] + "y")  # tried -> try
    return any(candidate in known for candidate in candidates if len(candidate) >= 3)


def _is_clean_question(sentence: str) -> bool:
    """A sentence fit to become a question: a whole sentence (capitalised, closed quotations), of a
    reasonable length, with nothing but ordinary text in it."""
    words = WORD.findall(sentence)
    return (
        MIN_QUESTIONWORDS <= len(words) <= MAX_QUESTIONWORDS
        and (sentence[0].isupper() or sentence[0] in '"“')
        and not _quote_open_after(sentence, False)
        and sentence.count("“") == sentence.count("”")
        and _CLEAN_TEXT.fullmatch(sentence) is not None
        and BLANK not in sentence
    )


def _blank_span(sentence: str, word: str) -> tuple[int, int]:
    """Where ``word`` first occurs in ``sentence`` as a word-token (as :data:`WORD` splits it)."""
    for match in WORD.finditer(sentence):
        if match.group() == word:
            return match.span()
    raise ValueError(f"{word!r} is not a word of {sentence!r}")


def _blank_out(sentence: str, word: str) -> str:
    """``sentence`` with its first word-token ``word`` replaced by the blank."""
    start, end = _blank_span(sentence, word)
    return sentence[:start] + BLANK + sentence[end:]


def leak_pattern(question: str) -> tuple[str, str]:
    """The text on either side of the blank that a lookup would search for: the clause around the
    blank (up to the nearest punctuation or quotation mark), or the whole question when that clause
    has fewer than ``MIN_CLAUSEWORDS`` other words. Returns ``(left, right)``: "left + word + right"
    found in another text of the same file would give the answer away."""
    index = question.index(BLANK)
    left, right = question[:index], question[index + len(BLANK) :]
    boundaries = [m.end() for m in _CLAUSE_BOUNDARY.finditer(left)]
    clause_left = left[boundaries[-1] if boundaries else 0 :]
    following = _CLAUSE_BOUNDARY.search(right)
    clause_right = right[: following.start() if following else len(right)]
    if len(WORD.findall(clause_left + " " + clause_right)) < MIN_CLAUSEWORDS:
        clause_left, clause_right = left, right
    return clause_left.lstrip(), clause_right.rstrip()


class _TextIndex:
    """The texts of one split (lower case), with the texts each word occurs in, to count quickly how
    often a phrase occurs in them: only texts that contain all of its words are searched."""

    def __init__(self, texts: Iterable[str]):
        self.texts = [text.lower() for text in texts]
        self.postings: dict[str, set[int]] = collections.defaultdict(set)
        for index, text in enumerate(self.texts):
            for word in WORD.findall(text):
                self.postings[word].add(index)

    def count(self, phrase: str) -> int:
        """Occurrences of ``phrase`` (any case) as a substring of the texts."""
        phrase = phrase.lower()
        words = sorted(set(WORD.findall(phrase)), key=lambda word: len(self.postings.get(word, ())))
        if not words:
            return sum(text.count(phrase) for text in self.texts)
        candidates = set(self.postings.get(words[0], ()))
        for word in words[1:]:
            candidates &= self.postings.get(word, set())
        return sum(self.texts[index].count(phrase) for index in candidates)


def _words_of_kind(text: str, kind: str, lexicon: Lexicon) -> list[str]:
    """Distinct words of one kind in ``text``, in order of first appearance."""
    return list(dict.fromkeys(word for word in WORD.findall(text) if lexicon.kind(word) == kind))


@dataclass
class _Draft:
    """A question position before its answer and distractors are chosen."""

    id: str
    context: str
    sentence: str
    story_rest: str  # the story without the question sentence: where distractors come from


@dataclass
class _Option:
    """One way to make a question of a draft: the word to blank, and one set of distractors."""

    answer: str
    distractors: tuple[str, ...]
    rule_hits: tuple[float, ...]  # how much of it each shallow rule (qa_rules.RULES) gets right


def _choose_positions(
    sentences: list[str], rng: random.Random, context_sentences: int, min_context_sentences: int, limit: int | None
) -> list[int]:
    """Question positions of one story, in a random order, at least ``context_sentences + 1`` apart:
    no question sentence is then inside another question's context."""
    positions = [p for p in range(min_context_sentences, len(sentences)) if _is_clean_question(sentences[p])]
    rng.shuffle(positions)
    chosen: list[int] = []
    for position in positions:
        if limit is not None and len(chosen) == limit:
            break
        if all(abs(position - other) > context_sentences for other in chosen):
            chosen.append(position)
    return sorted(chosen)


def _in_noun_slot(words: Sequence[str], index: int, lexicon: Lexicon) -> bool:
    """Whether ``words[index]`` follows a determiner, directly or after one adjective ("the red ___")."""
    before = [word.lower() for word in words[max(0, index - 2) : index]]
    if before and before[-1] in _DETERMINERS:
        return True
    return len(before) == 2 and before[0] in _DETERMINERS and lexicon.kind(words[index - 1]) is None


def _options(
    draft: _Draft, lexicon: Lexicon, split_texts: _TextIndex, common_names: list[str], bigrams: BigramModel
) -> list[_Option]:
    """Every acceptable (answer, distractors) for a draft. The answer occurs once in the sentence, is
    not a function word, and its clause is not found anywhere else in the split (``split_texts``);
    nouns sit in a noun slot. Distractors are words of the same kind from the rest of the story (the
    first ``MAX_POOL`` of them; for names also ``common_names``), absent from the sentence, no
    inflection of another choice, and their clause is not found in the split either, so that a
    lookup tells nothing either way."""
    sentence, context = draft.sentence, draft.context
    words = WORD.findall(sentence)
    counts = collections.Counter(words)
    context_words = WORD.findall(context)
    options = []
    for index, word in enumerate(words):
        kind = lexicon.kind(word)
        if kind is None or counts[word] != 1 or word.lower() in _FUNCTIONWORDS:
            continue
        if kind == "noun" and not _in_noun_slot(words, index, lexicon):
            continue
        left, right = leak_pattern(_blank_out(sentence, word))
        if split_texts.count(left + word + right) > sentence.lower().count((left + word + right).lower()):
            continue  # the answer can be looked up elsewhere in the split
        pool = [
            w
            for w in _words_of_kind(draft.story_rest, kind, lexicon) + (common_names if kind == "name" else [])
            if w not in counts and word_stem(w) != word_stem(word) and split_texts.count(left + w + right) == 0
        ]
        pool = list(dict.fromkeys(pool))[:MAX_POOL]
        neighbours = blank_neighbours(_blank_out(sentence, word))
        # Each word's stem and rule keys, once: the loop below sees every word in many choice sets.
        stems = {w: word_stem(w) for w in pool}
        keys = {}
        for w in [word, *pool]:
            stats = choice_stats(context_words, neighbours, w, bigrams)
            keys[w] = [RULES[rule](stats) for rule in RULES]
        for distractors in itertools.combinations(pool, NUM_CHOICES - 1):
            if len({stems[w] for w in distractors}) < len(distractors):
                continue  # two inflections of one word
            per_rule = zip(keys[word], *(keys[w] for w in distractors), strict=True)
            options.append(_Option(word, distractors, tuple(key_share(rule_keys, 0) for rule_keys in per_rule)))
    return options


def make_questions(
    stories: Sequence[str],
    lexicon: Lexicon,
    split: str,
    seed: int = 0,
    context_sentences: int = 5,
    min_context_sentences: int = 2,
    questions_per_story: int | None = None,
    bigrams: BigramModel | None = None,
    rule_targets: dict[str, float] | None = None,
) -> list[dict]:
    """Cloze questions from ``stories`` (see the module docstring); ids are ``{split}-{story}-{sentence}``.

    Question sentences of one story are at least ``context_sentences + 1`` sentences apart (at most
    ``questions_per_story`` of them if given), each at least ``min_context_sentences`` into its story.
    Among the acceptable (answer, distractors) of a question, the one chosen keeps the shallow rules
    of :mod:`cs288_lm.common.qa_rules` closest to their ``rule_targets`` (default :data:`RULE_TARGETS`)
    over the questions made so far; ties are broken by the seeded generator. The bigram rules use
    ``bigrams`` (default: counts from ``stories``).
    """
    bigrams = bigrams or BigramModel("\n".join(stories))
    targets = [{**RULE_TARGETS, **(rule_targets or {})}[rule] for rule in RULES]
    rng = random.Random(f"{split}-{seed}")
    drafts = [
        draft
        for story_index, story in enumerate(stories)
        for draft in _story_drafts(
            story, f"{split}-{story_index:04d}", rng, context_sentences, min_context_sentences, questions_per_story
        )
    ]
    names = collections.Counter(w for story in stories for w in WORD.findall(story) if lexicon.kind(w) == "name")
    common_names = [name for name, _ in names.most_common(COMMON_NAMES)]
    # Every text a student's copy of this split shows: contexts and question sentences.
    split_texts = _TextIndex(text for draft in drafts for text in (draft.context, draft.sentence))
    made = _balance_rules(
        drafts, lambda draft: _options(draft, lexicon, split_texts, common_names, bigrams), targets, rng
    )
    return _questions(made, rng)


def _story_drafts(
    story: str,
    id_prefix: str,
    rng: random.Random,
    context_sentences: int,
    min_context_sentences: int,
    limit: int | None,
) -> list[_Draft]:
    """The question positions of one story (:func:`_choose_positions`) as drafts with ids ``{id_prefix}-{sentence}``."""
    sentences = split_sentences(story)
    drafts = []
    for position in _choose_positions(sentences, rng, context_sentences, min_context_sentences, limit):
        context = " ".join(sentences[max(0, position - context_sentences) : position])
        rest = " ".join(sentences[:position] + sentences[position + 1 :])
        drafts.append(_Draft(f"{id_prefix}-{position:02d}", context, sentences[position], rest))
    return drafts


def _balance_rules(
    drafts: Sequence[_Draft],
    options_of: Callable[[_Draft], list[_Option]],
    targets: Sequence[float],
    rng: random.Random,
) -> list[tuple[_Draft, _Option]]:
    """Each draft that has an acceptable option, with the option that keeps every shallow rule's hits
    over the questions so far closest to its target (least squares; ties broken by ``rng``)."""
    rule_totals = [0.0] * len(targets)
    made = []
    for draft in drafts:
        options = options_of(draft)
        if not options:
            continue
        expected = [target * (len(made) + 1) for target in targets]
        imbalances = [
            sum((t + h - e) ** 2 for t, h, e in zip(rule_totals, o.rule_hits, expected, strict=True)) for o in options
        ]
        best = min(imbalances)
        option = rng.choice([o for o, imbalance in zip(options, imbalances, strict=True) if imbalance == best])
        rule_totals = [total + hit for total, hit in zip(rule_totals, option.rule_hits, strict=True)]
        made.append((draft, option))
    return made


def _questions(made: Sequence[tuple[_Draft, _Option]], rng: random.Random) -> list[dict]:
    """The records of the chosen options, with balanced answer positions: each index the same number
    of times (up to rounding), in a shuffled order; the distractors shuffled around the answer."""
    answer_indices = [index % NUM_CHOICES for index in range(len(made))]
    rng.shuffle(answer_indices)
    questions = []
    for (draft, option), answer_index in zip(made, answer_indices, strict=True):
        choices = list(option.distractors)
        rng.shuffle(choices)
        choices.insert(answer_index, option.answer)
        questions.append(
            {
                "id": draft.id,
                "context": draft.context,
                "question": _blank_out(draft.sentence, option.answer),
                "choices": choices,
                "answer": answer_index,
            }
        )
    return questions


# ---- reading and writing question files -------------------------------------------------------


def has_one_blank(question: str) -> bool:
    """Whether ``question`` has exactly one blank ``___``: what a cloze reading (the choice put
    into the blank) needs. The generated questions always have one; other files may have none."""
    return question.count(BLANK) == 1


def check_one_blank(question: str, what: str) -> None:
    """A ValueError naming the question unless it has exactly one blank (see :func:`has_one_blank`)."""
    if not has_one_blank(question):
        raise ValueError(
            f"{what}: question {question!r} has {question.count(BLANK)} blanks {BLANK!r}; a cloze template "
            "needs exactly one (use a template without {filled} or {question_before_blank} for it)"
        )


class QuestionFileError(ValueError):
    """A question file that cannot be read: the message names the file and the bad record."""


def load_questions(path: str | os.PathLike, require_answers: bool = False) -> list[dict]:
    """Read questions from a JSON file: a list of records, or an object holding one under
    ``"data"``, ``"questions"`` or ``"examples"`` (the cs288 starter's ``qa_*.json`` layout).

    Each record needs ``context``, ``question`` and ``choices`` (a list of at least two strings);
    ``answer`` may be a 0-based index, the text of a choice or a letter ("A", "b", ...; a string is
    looked up among the choices first, then read as a letter, in either case), and may be missing
    or ``null`` (test questions: no answer) unless ``require_answers``. A missing ``id`` becomes the
    record's position; ids are returned as strings. Returns records with ``answer`` normalised to
    an index, or None for no answer (which :class:`~cs288_lm.datasets.MultipleChoiceQADataset`
    labels ``NO_ANSWER``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuestionFileError(f"question file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise QuestionFileError(f"question file {path} is not valid JSON: {error}") from None
    if isinstance(data, dict):
        for key in ("data", "questions", "examples"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise QuestionFileError(f"question file {path}: expected a list of records, got {type(data).__name__}")
    return [_normalise_record(record, index, path, require_answers) for index, record in enumerate(data)]


def _normalise_record(record: object, index: int, path: Path, require_answers: bool) -> dict:
    where = f"question file {path}, record {index}"
    if not isinstance(record, dict):
        raise QuestionFileError(f"{where}: expected an object, got {type(record).__name__}")
    for field in ("context", "question"):
        if not isinstance(record.get(field), str):
            raise QuestionFileError(f"{where}: {field!r} must be a string")
    choices = record.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise QuestionFileError(f"{where}: 'choices' must be a list of at least two strings")
    answer = record.get("answer")
    if isinstance(answer, str):
        if answer in choices:
            answer = choices.index(answer)
        elif len(answer) == 1 and 0 <= ord(answer.upper()) - ord("A") < len(choices):
            answer = ord(answer.upper()) - ord("A")
        else:
            raise QuestionFileError(
                f"{where}: answer {answer!r} is neither a choice nor a letter A-{chr(64 + len(choices))}"
            )
    elif answer is None:
        if require_answers:
            raise QuestionFileError(f"{where}: 'answer' is missing")
    elif isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise QuestionFileError(f"{where}: answer {answer!r} is not an index into {len(choices)} choices")
    return {
        "id": str(record.get("id", index)),
        "context": record["context"],
        "question": record["question"],
        "choices": list(choices),
        "answer": answer,
    }


def save_questions(questions: Sequence[dict], path: str | os.PathLike, with_answers: bool = True) -> None:
    """Write questions as a JSON list, one record per line (readable, and diffs stay small); the
    students' copy of the test split is written ``with_answers=False``."""
    fields = ("id", "context", "question", "choices") + (("answer",) if with_answers else ())
    lines = [json.dumps({field: question[field] for field in fields}, ensure_ascii=False) for question in questions]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")


def build_qa_splits(
    train_text: str,
    heldout_text: str,
    seed: int = 0,
    questions_per_story: int | None = None,
    context_sentences: int = 5,
) -> dict[str, list[dict]]:
    """``train`` from the training stories; ``dev`` and ``test`` from disjoint halves of the held-out
    stories (a seeded shuffle of whole stories, so no story feeds both)."""
    train_stories, heldout_stories = split_stories(train_text), split_stories(heldout_text)
    lexicon = build_lexicon(train_stories + heldout_stories)
    order = list(range(len(heldout_stories)))
    random.Random(f"heldout-{seed}").shuffle(order)
    half = len(order) // 2
    dev_stories = [heldout_stories[i] for i in sorted(order[:half])]
    test_stories = [heldout_stories[i] for i in sorted(order[half:])]
    bigrams = BigramModel("\n".join(train_stories))
    settings = {"seed": seed, "questions_per_story": questions_per_story, "context_sentences": context_sentences}
    settings["bigrams"] = bigrams
    return {
        "train": make_questions(train_stories, lexicon, "train", **settings),
        "dev": make_questions(dev_stories, lexicon, "dev", **settings),
        "test": make_questions(test_stories, lexicon, "test", **settings),
    }
