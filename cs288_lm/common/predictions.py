"""Prediction files for Part 4 and the rule that turns test accuracy into points (given).

A predictions file is a UTF-8 JSON list with one record per test question,
``{"id": ..., "prediction": k}`` where ``id`` is the question's id (a string) and ``k`` is the
0-based index of the chosen answer, a JSON integer. :func:`load_predictions` checks a file against
the questions with the same code the autograder runs on a submitted file
(:func:`parse_predictions`) and says exactly what is wrong; :func:`part4_points` applies the
course's rule, whose thresholds live in ``configs/grading.json``:

* 4A (fine-tuned): 0 points at or below 30% accuracy, all 12 at 50% or above, linear in between;
* 4B (prompting): all 8 points if it beats the fine-tuned accuracy by at least 2 points, scaled
  down linearly to 0 when it does not beat it at all. The margin is measured over 4A's zero point
  (30%) when the fine-tuned accuracy is lower, so neither part earns anything at or below 30%
  (fine-tuned at 20% and prompting at 25%: 0 + 0, not 8 for a 5-point margin);
* with ``"require_beating_baselines": true`` a part earns points only if its test accuracy is above
  the published baseline's (``baseline_metrics.json``, the reference job's accuracies).
"""

from __future__ import annotations

import codecs
import json
import os
import re
import reprlib
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

# Computed here, not imported: the grader runs this file alone, from the bundle's bytes.
REPO_ROOT = Path(__file__).resolve().parents[2]
GRADING_CONFIG = REPO_ROOT / "configs" / "grading.json"
BASELINE_METRICS = REPO_ROOT / "baseline_metrics.json"
RULES = ("finetuned", "prompting")  # the rules of configs/grading.json's "part4", for 4A and 4B

# Limits on a file before it is parsed. A valid file is about 50 bytes per question and nests two
# deep (a list of objects) with one-digit integers; the limits are far above that and far below what
# would make Python's json slow, recurse too deep (RecursionError) or refuse an int (over 4300 digits).
MAX_BYTES = 2 << 20
MAX_DEPTH = 20
MAX_DIGITS = 20

# The tokens of JSON text that the checks look at: a string (possibly unterminated: the parser reports
# that), so that nothing inside one counts; NaN and Infinity; a number; a bracket or a comma.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|-?Infinity|NaN|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[][{},]', re.DOTALL)

_JSON_KINDS = {
    bool: "true/false",
    int: "an integer",
    float: "a number with a fraction or an exponent",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}

# Error messages quote what was submitted, which can be huge: at most a few dozen characters of it.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


class PredictionsError(ValueError):
    """A predictions file that cannot be graded; the message names the file and the bad entry."""


def load_predictions(path: str | os.PathLike, questions: Sequence[Mapping]) -> dict[str, int]:
    """Read and check a predictions file against ``questions``; returns ``{id: prediction}``.

    The checks are the autograder's (:func:`parse_predictions`); a file that cannot be read is
    also a :class:`PredictionsError`.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a folder, a pipe, a device: reading could block
            raise PredictionsError(f"{path}: cannot be read: not a regular file; give the predictions file itself")
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)  # more than the limit is refused by its size
    except FileNotFoundError:
        raise PredictionsError(f"{path}: no such file") from None
    except OSError as error:
        raise PredictionsError(f"{path}: cannot be read ({error})") from None
    return parse_predictions(data, questions, source=str(path))


def parse_predictions(
    data: bytes, questions: Sequence[Mapping], source: str, max_bytes: int = MAX_BYTES
) -> dict[str, int]:
    """Check the bytes of the predictions file named ``source``; returns ``{id: prediction}``.

    This is what the autograder runs on a submitted file. Any bytes at all give either the
    predictions or a :class:`PredictionsError` that names ``source``, where the problem is (line
    and column, counted as editors count them, and the entry) and what was expected instead: more
    than ``max_bytes`` bytes; an empty file; text that is not UTF-8 (a UTF-8 byte-order mark is
    fine); invalid JSON (a trailing or missing comma, single quotes, a truncated file, ...), NaN and
    Infinity included; brackets nested more than ``MAX_DEPTH`` deep; an integer of more than
    ``MAX_DIGITS`` digits; an object with a repeated key; then everything
    :func:`validate_predictions` rejects.
    """
    if len(data) > max_bytes:
        raise PredictionsError(f"{source}: {len(data):,} bytes; a predictions file may have at most {max_bytes:,}")
    text = _utf8_text(data, source)
    if not text.strip():
        raise PredictionsError(f"{source}: the file is empty (not valid JSON)")
    _check_nesting(text, source)
    records = _strict_json(text, source)
    return validate_predictions(records, questions, source, locate=lambda index: _entry_place(text, source, index))


def validate_predictions(
    records: object,
    questions: Sequence[Mapping],
    source: str = "predictions",
    locate: Callable[[int], str] | None = None,
) -> dict[str, int]:
    """Check decoded predictions; returns ``{id: prediction}``.

    Rejected, with a :class:`PredictionsError` naming ``source``, the entry and the problem:
    anything but a list of ``{"id", "prediction"}`` objects, an id that is not of the questions'
    id type (a string, not the number 7 for the question "7"), an id that is not a question, a
    duplicate id, a question without a prediction, and a prediction that is not an integer index
    into that question's choices (``true`` and ``1.0`` are not integers). ``locate(index)`` names
    where entry ``index`` is (by default ``"SOURCE: entry INDEX"``); it is called only for an error.
    """
    if not isinstance(records, list):
        raise PredictionsError(
            f'{source}: expected a JSON list of {{"id", "prediction"}} objects, got {_json_kind(records)}'
        )
    num_choices = {str(question["id"]): len(question["choices"]) for question in questions}
    id_types = tuple({type(question["id"]) for question in questions} & {str, int}) or (str,)
    predictions: dict[str, int] = {}
    for index, record in enumerate(records):
        problem = _record_problem(record, num_choices, id_types, predictions)
        if problem is not None:
            place = locate(index) if locate is not None else f"{source}: entry {index}"
            raise PredictionsError(place + problem)
        predictions[str(record["id"])] = record["prediction"]
    missing = [question_id for question_id in num_choices if question_id not in predictions]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise PredictionsError(f"{source}: {len(missing)} question(s) have no prediction: {shown}")
    return predictions


def _record_problem(
    record: object, num_choices: Mapping[str, int], id_types: tuple[type, ...], seen: Mapping[str, int]
) -> str | None:
    """What is wrong with one entry (the end of a message that starts with where it is), or None."""
    if not isinstance(record, dict) or "id" not in record or "prediction" not in record:
        return f": expected an object with 'id' and 'prediction', got {_show(record)}"
    record_id, prediction = record["id"], record["prediction"]
    if isinstance(record_id, bool) or not isinstance(record_id, id_types):
        expected = " or ".join(_JSON_KINDS[kind] for kind in sorted(id_types, key=str))
        return f": id {_show(record_id)} is {_json_kind(record_id)}, but a test question's id is {expected}"
    question_id = str(record_id)
    if question_id not in num_choices:
        return f": id {_show(record_id)} is not a test question"
    if question_id in seen:
        return f": id {_show(record_id)} appears more than once"
    if isinstance(prediction, bool) or not isinstance(prediction, int):
        return (
            f" (id {question_id!r}): prediction {_show(prediction)} is not an integer (it is {_json_kind(prediction)})"
        )
    if not 0 <= prediction < num_choices[question_id]:
        return f" (id {question_id!r}): prediction {_show(prediction)} is outside 0..{num_choices[question_id] - 1}"
    return None


def _utf8_text(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8, without the byte-order mark some Windows editors write."""
    head = data[:64]
    every_other_is_nul = len(head) >= 2 and (not any(head[0::2]) or not any(head[1::2]))
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or every_other_is_nul:
        # JSON outside strings is ASCII, which UTF-16 and UTF-32 (and only they) write with NUL bytes.
        raise PredictionsError(f"{source}: cannot be read: it looks like UTF-16 or UTF-32 text; save it as UTF-8")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        column = len(data[line_start : error.start].decode("utf-8")) + 1  # in characters, as editors count
        raise PredictionsError(
            f"{source} line {line} column {column}: byte 0x{data[error.start]:02x} is not UTF-8"
            " (the file cannot be read; save it as UTF-8)"
        ) from None


def _line_column(text: str, position: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[position]``, as JSON errors and editors count them."""
    return text.count("\n", 0, position) + 1, position - text.rfind("\n", 0, position)


def _place(text: str, source: str, position: int) -> str:
    """``"SOURCE line L column C"`` for ``text[position]``."""
    line, column = _line_column(text, position)
    return f"{source} line {line} column {column}"


def _entry_place(text: str, source: str, index: int) -> str:
    """Where entry ``index`` of the top-level list in ``text`` (valid JSON) starts, and its index."""
    depth, commas = 0, 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("]", "}"):
            depth -= 1
            continue
        if token in ("[", "{"):
            depth += 1
            starts_entry = depth == 1 and index == 0
        else:
            commas += token == "," and depth == 1
            starts_entry = token == "," and depth == 1 and commas == index
        if starts_entry:
            start = len(text) - len(text[match.end() :].lstrip())
            return f"{_place(text, source, start)}, entry {index}"
    return f"{source}: entry {index}"


def _check_nesting(text: str, source: str) -> None:
    """Reject brackets nested more than ``MAX_DEPTH`` deep, before parsing: Python's json parser
    recurses once per level, so 100,000 ``[`` would end in a RecursionError."""
    depth = 0
    for match in _TOKEN.finditer(text):
        if match.group() in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise PredictionsError(
                    f"{_place(text, source, match.start())}: brackets nested more than {MAX_DEPTH} deep;"
                    " a predictions file nests 2 deep (a list of objects)"
                )
        elif match.group() in ("]", "}"):
            depth -= 1  # below 0 only in invalid JSON, which the parser rejects before going deeper


class _Refused(Exception):
    """A literal that the JSON parser accepts and this module does not; ``is_it`` finds it among the tokens."""

    def __init__(self, problem: str, is_it: Callable[[str], bool]) -> None:
        super().__init__(problem)
        self.problem, self.is_it = problem, is_it


class _RepeatedKey(dict):
    """An object with a repeated key (``key``): kept while parsing, reported with the entry it is in."""

    key: str


def _strict_json(text: str, source: str) -> object:
    """``json.loads(text)``, minus what Python accepts beyond the JSON standard or what makes a
    file ambiguous: NaN and Infinity, integers too long to convert quickly, repeated keys."""

    def integer(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > MAX_DIGITS:
            raise _Refused(f"an integer of {digits:,} digits ({literal[:10]}...); indices are small", _is_long_integer)
        return int(literal)

    def constant(name: str) -> NoReturn:
        raise _Refused(f"{name} is not a JSON number (not valid JSON)", lambda token: token == name)

    repeated: list[str] = []

    def keep_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
        record: dict[str, object] = {}
        for key, value in pairs:
            if key in record:
                repeated.append(key)
                marked = _RepeatedKey(record)
                marked.key = key
                return marked
            record[key] = value
        return record

    try:
        records = json.loads(text, parse_int=integer, parse_constant=constant, object_pairs_hook=keep_pairs)
    except _Refused as refused:
        # The parser stops at the first such literal, so it is the first among the tokens.
        position = next((m.start() for m in _TOKEN.finditer(text) if refused.is_it(m.group())), 0)
        raise PredictionsError(f"{_place(text, source, position)}: {refused.problem}") from None
    except json.JSONDecodeError as error:
        raise PredictionsError(
            f"{source} line {error.lineno} column {error.colno}: {_syntax_problem(text, error)} (not valid JSON)"
        ) from None
    if repeated:
        _check_repeated_keys(records, text, source)
    return records


def _is_long_integer(token: str) -> bool:
    """Whether ``token`` (from ``_TOKEN``) is an integer of more than ``MAX_DIGITS`` digits."""
    digits = token.lstrip("-")
    return digits.isdigit() and len(digits) > MAX_DIGITS


def _check_repeated_keys(records: object, text: str, source: str) -> None:
    """Reject an object with a repeated key (which value counts?), naming the entry it is in."""
    entries = records if isinstance(records, list) else [records]
    for index, entry in enumerate(entries):
        repeated = _find_repeated(entry)
        if repeated is not None:
            place = _entry_place(text, source, index) if isinstance(records, list) else source
            raise PredictionsError(f"{place}: an object has the key {_show(repeated.key)} twice; which one counts?")


def _find_repeated(value: object) -> _RepeatedKey | None:
    """The first object with a repeated key in ``value`` (nested at most ``MAX_DEPTH`` deep)."""
    if isinstance(value, _RepeatedKey):
        return value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((found for child in children if (found := _find_repeated(child)) is not None), None)


def _syntax_problem(text: str, error: json.JSONDecodeError) -> str:
    """What a JSON syntax error means, in the words of the usual mistakes, and what was expected."""
    rest, message = text[error.pos :], error.msg
    found = f"found {_show(rest[:12])}"
    if message.startswith("Unterminated string"):
        return "the file ends inside this string (is it truncated?)"
    if not rest.strip():
        return "the file ends before the JSON is complete (is it truncated?)"
    if message.startswith("Illegal trailing comma") or (rest[0] in "]}" and text[: error.pos].rstrip()[-1:] == ","):
        return "trailing comma after the last item"  # "Illegal trailing comma": Python 3.13's json
    if rest[0] == "'":
        return 'single quotes: JSON strings and keys take double quotes (")'
    if python := next((word for word in ("True", "False", "None") if rest.startswith(word)), None):
        return f"{python} is Python, not JSON: write true, false or null"
    if message.startswith("Expecting ',' delimiter"):
        return f"missing comma: expected ',' or a closing bracket after the item before, {found}"
    if message.startswith("Expecting ':' delimiter"):
        return f"expected ':' after the key, {found}"
    if message.startswith("Expecting property name"):
        return f'expected a key in double quotes ("id"), {found}'
    if message.startswith("Expecting value"):
        return f"expected a value (a number, a string, true, false, null, a list or an object), {found}"
    if message.startswith("Extra data"):
        return f"more text after the end of the list, {found}; a predictions file holds one JSON list"
    if message.startswith("Invalid control character"):
        return "a line break or control character inside a string (write it as \\n)"
    if message.startswith("Invalid \\"):
        return "an invalid backslash escape inside a string"
    return message


def _json_kind(value: object) -> str:
    """What ``value`` is, in JSON's words ("a string", "null")."""
    return _JSON_KINDS.get(type(value), f"a Python {type(value).__name__}")


def _show(value: object) -> str:
    """``repr(value)``, cut short."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # an int over sys.get_int_max_str_digits() digits, which only Python code can pass
        return f"<{type(value).__name__} too long to show>"


def save_predictions(path: str | os.PathLike, question_ids: Sequence[str], predictions: Sequence[int]) -> None:
    """Write ``[{"id", "prediction"}, ...]`` for the questions, in order."""
    if len(question_ids) != len(predictions):
        raise ValueError(f"{len(question_ids)} question ids but {len(predictions)} predictions")
    records = [{"id": qid, "prediction": int(p)} for qid, p in zip(question_ids, predictions, strict=True)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def accuracy(predictions: Mapping[str, int], questions: Sequence[Mapping]) -> float:
    """The fraction of ``questions`` whose prediction equals their answer."""
    if not questions:
        raise ValueError("accuracy of an empty question set")
    return sum(predictions.get(str(q["id"])) == q["answer"] for q in questions) / len(questions)


def load_grading_rules(path: str | os.PathLike = GRADING_CONFIG) -> dict:
    """The grading configuration (points per part and the Part 4 rules)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_baseline_metrics(path: str | os.PathLike = BASELINE_METRICS) -> dict:
    """The published baselines: the reference job's accuracies (``baseline_metrics.json``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def baseline_accuracies(metrics: Mapping, split: str) -> dict[str, float]:
    """The baselines' accuracies on ``split`` ("dev" or "test") by rule: ``{"finetuned": ..., "prompting": ...}``."""
    keys = {rule: f"{rule}_{split}_accuracy" for rule in RULES}
    missing = [key for key in keys.values() if not isinstance(metrics.get(key), (int, float))]
    if missing:
        raise ValueError(f"the baseline metrics have no {', '.join(missing)}")
    return {rule: float(metrics[key]) for rule, key in keys.items()}


def part4_points(
    finetuned_accuracy: float | None,
    prompting_accuracy: float | None,
    rules: Mapping | None = None,
    baselines: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Points for 4A and 4B under the course's rule (module docstring); a missing accuracy earns 0.

    Returns ``{"4A": points, "4B": points, "total": points}``. 4B's margin is measured over the
    fine-tuned accuracy or over 4A's zero point, whichever is higher, so prompting at or below that
    point earns nothing; a missing fine-tuned result counts as 0% there (a file that does not parse
    costs no more than one that is all wrong). ``baselines`` are the
    published baselines' accuracies on the same questions (:func:`baseline_accuracies`); they are
    needed when the rules set ``require_beating_baselines``, and then a part whose accuracy is not
    above its baseline's earns 0 (equal does not beat it).
    """
    rules = (rules or load_grading_rules())["part4"]
    finetuned, prompting = rules["finetuned"], rules["prompting"]
    required = bool(rules.get("require_beating_baselines"))
    if required and baselines is None:
        raise ValueError("the Part 4 rules require beating the baselines, and no baseline accuracies were given")

    floors = baselines or {}  # every rule's baseline when required (checked above)

    def earns(rule: str, score: float | None) -> bool:
        return score is not None and (not required or score > floors[rule])

    points_4a = 0.0
    if earns("finetuned", finetuned_accuracy):
        low, high = finetuned["zero_at_accuracy"], finetuned["full_at_accuracy"]
        points_4a = finetuned["points"] * _clamped_fraction(finetuned_accuracy - low, high - low)
    points_4b = 0.0
    if earns("prompting", prompting_accuracy):
        over = max(finetuned_accuracy or 0.0, finetuned["zero_at_accuracy"])
        points_4b = prompting["points"] * _clamped_fraction(prompting_accuracy - over, prompting["full_at_margin"])
    return {"4A": points_4a, "4B": points_4b, "total": points_4a + points_4b}


def _clamped_fraction(amount: float, full: float) -> float:
    """``amount / full`` clamped to [0, 1]; rounded so that 0.52 - 0.50 counts as the full 0.02."""
    return min(max(round(amount / full, 9), 0.0), 1.0)
