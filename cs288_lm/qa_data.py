"""Multiple-choice questions from TinyStories, in the style of the Children's Book Test (given).

The Children's Book Test (Hill et al., 2016) shows a passage of consecutive sentences from a
story, blanks out one word of the sentence that follows, and asks which of several candidate
words fills the blank; the candidates are words of the same kind (names, nouns, verbs) taken from
the passage. This module builds such questions from TinyStories:

* the context is up to ``context_sentences`` consecutive sentences of one story;
* the question is the next sentence with one word replaced by ``___``;
* the four choices are the right word and three distractors of the same kind that occur in the
  context (and not in the question sentence), so every choice is a word the reader just saw;
* the right word also occurs in the context, so the answer can be found by reading.

Word kinds come from simple corpus statistics instead of a tagger (students may not install one):
a *name* is a capitalised word seen in the middle of sentences and never in lower case; a *noun*
is a word seen after a determiner ("the", "a", "his", ...) but rarely after words that introduce
adjectives ("very", "was", "felt", ...); a *verb* is a past-tense form ending in "-ed" whose stem is
also a word ("played" / "play", "liked" / "like") or one of a list of common irregular past forms.

A record is ``{"id", "context", "question", "choices", "answer"}`` with ``answer`` the 0-based
index of the right choice. Generation is deterministic for a seed, and answer positions are
balanced (each index is the answer for a quarter of the questions, up to rounding).
:func:`load_questions` also reads the cs288 starter's ``qa_*.json`` files.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BLANK = "___"
NUM_CHOICES = 4
MIN_QUESTION_WORDS = 5
STORY_SEPARATOR = "<|endoftext|>"

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
# A sentence ends at . ! or ? (optionally followed by a closing quote) before whitespace.
_SENTENCE_END = re.compile(r"""(?<=[.!?])\s+|(?<=[.!?]["'])\s+""")
_DETERMINERS = {"the", "a", "an", "his", "her", "my", "their", "your", "its", "our"}
_ADJECTIVE_CUES = {"very", "so", "too", "was", "were", "is", "are", "be", "felt", "feel", "looked", "seemed", "got"}
_VERB_CUES = {"to", "will", "can", "could", "would", "should", "must", "didn't", "don't", "let's", "not"}
_NOT_NOUNS = {"lot", "bit", "way", "while", "end", "top", "few", "time", "day", "one", "other", "same", "next", "last"}
_IRREGULAR_PAST = {
    "ate", "became", "began", "bit", "blew", "bought", "brought", "built", "caught", "came", "dug",
    "drank", "drew", "drove", "fell", "felt", "flew", "forgot", "found", "gave", "got", "grew",
    "heard", "held", "hid", "hit", "kept", "knew", "left", "lost", "made", "met", "ran", "rode",
    "sang", "sat", "saw", "shook", "slept", "spun", "stood", "swam", "took", "taught", "thought",
    "threw", "told", "went", "woke", "won", "wore", "wrote",
}
# Too frequent or too vague to make a good question.
_FUNCTION_WORDS = {
    "and", "or", "but", "so", "to", "of", "in", "on", "at", "for", "with", "from", "into", "up", "down", "out",
    "was", "were", "is", "are", "had", "has", "he", "she", "it", "they", "we", "you", "i", "that", "this",
    "then", "when", "because", "too", "very", "all", "again", "there", "her", "his", "their", "the", "a", "an",
}
_NOT_NAMES = {"I", "The", "A", "Hey", "Hi", "Hello", "Yes", "No", "Oh", "Wow", "Please", "Thank", "Meow", "Woof"}
_SKIP_WORDS = {"said", "asked", "was", "were", "had", "did", "wanted", "named", "called", "looked", "started"}
WORD_KINDS = ("name", "noun", "verb")


@dataclass(frozen=True)
class Lexicon:
    """The kind of each known word: ``{"Lily": "name", "ball": "noun", "played": "verb", ...}``."""

    kinds: dict[str, str]

    def kind(self, word: str) -> str | None:
        return self.kinds.get(word)


def split_stories(text: str) -> list[str]:
    """The stories of a TinyStories file, separated by ``<|endoftext|>``; empty ones dropped."""
    return [story.strip() for story in text.split(STORY_SEPARATOR) if story.strip()]


def split_sentences(story: str) -> list[str]:
    """Sentences of a story: text up to ``.``, ``!`` or ``?`` (and a closing quote), whitespace-separated."""
    return [sentence.strip() for sentence in _SENTENCE_END.split(story.replace("\n", " ")) if sentence.strip()]


def build_lexicon(stories: Iterable[str], min_count: int = 2) -> Lexicon:
    """Assign names, nouns and verbs from corpus statistics (see the module docstring)."""
    lower, capitalised_inside = collections.Counter(), collections.Counter()
    after_determiner, after_adjective_cue, after_verb_cue = collections.Counter(), collections.Counter(), collections.Counter()
    determiner_bigrams = []  # (word after a determiner, the word after it or "")
    for story in stories:
        for sentence in split_sentences(story):
            words = _WORD.findall(sentence)
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
        if after_determiner[following] >= min_count and following.lower() not in _FUNCTION_WORDS
    )
    kinds: dict[str, str] = {}
    for word, count in capitalised_inside.items():
        if count >= min_count and word.lower() not in lower and word not in _NOT_NAMES and "'" not in word:
            kinds[word] = "name"
    for word, count in lower.items():
        if word in _SKIP_WORDS or word in _DETERMINERS or len(word) < 3 or "'" in word:
            continue
        if word in _IRREGULAR_PAST or (word.endswith("ed") and _past_tense_stem(word, lower)):
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


def _past_tense_stem(word: str, known: collections.Counter) -> bool:
    """Whether ``word`` (ending in "ed") is a past tense of a known word: played/play, liked/like, hopped/hop."""
    candidates = {word[:-2], word[:-1]}
    if len(word) > 4 and word[-3] == word[-4]:
        candidates.add(word[:-3])  # hopped -> hop
    if word.endswith("ied"):
        candidates.add(word[:-3] + "y")  # tried -> try
    return any(candidate in known for candidate in candidates if len(candidate) >= 2)


def _words_of_kind(text: str, kind: str, lexicon: Lexicon) -> list[str]:
    """Distinct words of one kind in ``text``, in order of first appearance."""
    return list(dict.fromkeys(word for word in _WORD.findall(text) if lexicon.kind(word) == kind))


def _blank_candidates(question: str, context: str, lexicon: Lexicon) -> list[tuple[str, str]]:
    """``(word, kind)`` pairs that could be blanked in ``question``: the word occurs exactly once
    there, also occurs in the context, and the context holds three other words of its kind that the
    question does not contain. Nouns must follow a determiner in the question (a noun slot).
    Sentences shorter than ``MIN_QUESTION_WORDS`` words or not starting with a capital (fragments
    left by quotations, such as 'said the fish.') are not used."""
    question_words = _WORD.findall(question)
    if len(question_words) < MIN_QUESTION_WORDS or not question[0].isupper():
        return []  # a fragment such as 'said the fish.' left by a quotation
    counts = collections.Counter(question_words)
    candidates = []
    for index, word in enumerate(question_words):
        kind = lexicon.kind(word)
        if kind is None or counts[word] != 1 or word not in _WORD.findall(context):
            continue
        if kind == "noun" and (index == 0 or question_words[index - 1].lower() not in _DETERMINERS):
            continue
        distractors = [w for w in _words_of_kind(context, kind, lexicon) if w != word and w not in counts]
        if len(distractors) >= NUM_CHOICES - 1:
            candidates.append((word, kind))
    return candidates


def _blank_out(sentence: str, word: str) -> str:
    """``sentence`` with its first word-token ``word`` (as :data:`_WORD` splits it, so also before a
    closing quote, as in "the point'.") replaced by the blank."""
    for match in _WORD.finditer(sentence):
        if match.group() == word:
            return sentence[: match.start()] + BLANK + sentence[match.end() :]
    raise ValueError(f"{word!r} is not a word of {sentence!r}")


def make_questions(
    stories: Sequence[str],
    lexicon: Lexicon,
    split: str,
    seed: int = 0,
    context_sentences: int = 5,
    min_context_sentences: int = 3,
    questions_per_story: int = 6,
) -> list[dict]:
    """Cloze questions from ``stories`` (see the module docstring); ids are ``{split}-{story}-{sentence}``.

    Up to ``questions_per_story`` question sentences are drawn per story (distinct sentences, at
    least ``min_context_sentences`` into the story). The word to blank is drawn among the
    candidates of the sentence; the distractors among the context's words of the same kind.
    """
    rng = random.Random(f"{split}-{seed}")
    drafts = []
    for story_index, story in enumerate(stories):
        sentences = split_sentences(story)
        positions = list(range(min_context_sentences, len(sentences)))
        rng.shuffle(positions)
        made = 0
        for position in positions:
            if made == questions_per_story:
                break
            context = " ".join(sentences[max(0, position - context_sentences) : position])
            candidates = _blank_candidates(sentences[position], context, lexicon)
            if not candidates:
                continue
            answer, kind = rng.choice(candidates)
            question_words = set(_WORD.findall(sentences[position]))
            pool = [w for w in _words_of_kind(context, kind, lexicon) if w != answer and w not in question_words]
            drafts.append(
                {
                    "id": f"{split}-{story_index:04d}-{position:02d}",
                    "context": context,
                    "question": _blank_out(sentences[position], answer),
                    "answer_word": answer,
                    "distractors": rng.sample(pool, NUM_CHOICES - 1),
                    "position": position,
                }
            )
            made += 1
    # Balanced answer positions: each index the same number of times, in a shuffled order.
    answer_indices = [index % NUM_CHOICES for index in range(len(drafts))]
    rng.shuffle(answer_indices)
    questions = []
    for draft, answer_index in zip(sorted(drafts, key=lambda d: d["id"]), answer_indices):
        choices = list(draft["distractors"])
        choices.insert(answer_index, draft["answer_word"])
        questions.append(
            {"id": draft["id"], "context": draft["context"], "question": draft["question"], "choices": choices, "answer": answer_index}
        )
    return questions


# ---- reading and writing question files -------------------------------------------------------


class QuestionFileError(ValueError):
    """A question file that cannot be read: the message names the file and the bad record."""


def load_questions(path: str | os.PathLike, require_answers: bool = False) -> list[dict]:
    """Read questions from a JSON file: a list of records, or an object holding one under
    ``"data"``, ``"questions"`` or ``"examples"`` (the cs288 starter's ``qa_*.json`` layout).

    Each record needs ``context``, ``question`` and ``choices`` (a list of at least two strings);
    ``answer`` may be a 0-based index, a letter ("A", "B", ...) or the text of a choice, and may be
    missing (test questions) unless ``require_answers``. A missing ``id`` becomes the record's
    position. Returns records with ``answer`` normalised to an index (or None).
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
            raise QuestionFileError(f"{where}: answer {answer!r} is neither a choice nor a letter A-{chr(64 + len(choices))}")
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
    train_text: str, heldout_text: str, seed: int = 0, questions_per_story: int = 6, context_sentences: int = 5
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
    settings = dict(seed=seed, questions_per_story=questions_per_story, context_sentences=context_sentences)
    return {
        "train": make_questions(train_stories, lexicon, "train", **settings),
        "dev": make_questions(dev_stories, lexicon, "dev", **settings),
        "test": make_questions(test_stories, lexicon, "test", **settings),
    }
