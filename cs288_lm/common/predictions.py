"""Prediction files for Part 4 and the rule that turns test accuracy into points (given).

A predictions file is a UTF-8 JSON list with one record per test question,
``{"id": ..., "prediction": k}`` where ``id`` is the question's id (a string) and ``k`` is the
0-based index of the chosen answer, a JSON integer. :func:`load_predictions` checks a file against
the questions with the same code the autograder runs on a submitted file
(:func:`parse_predictions`) and says exactly what is wrong; :func:`part4_points` applies the
course's rule, whose thresholds live in ``configs/grading.json``:

* 4A (fine-tuned): 0 points at or below 30% accuracy, all 12 at 50% or above, linear in between;
* 4B (prompting): all 8 points if it beats the fine-tuned accuracy by at least 2 points, scaled
  down linearly to 0 when it does not beat it at all.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

# Computed here, not imported: the grader runs this file alone, from the bundle's bytes.
REPO_ROOT = Path(__file__).resolve().parents[2]
GRADING_CONFIG = REPO_ROOT / "configs" / "grading.json"

# Limits on a file before it is parsed. A valid file is about 50 bytes per question and nests two
# deep (a list of objects) with one-digit integers; the limits are far above that and far below what
# would make Python's json slow, recurse too deep (RecursionError) or refuse an int (over 4300 digits).
MAX_BYTES = 2 << 20
MAX_DEPTH = 20
MAX_DIGITS = 20

# A JSON string (possibly unterminated: the parser reports that) or a bracket outside strings.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[][{}]', re.DOTALL)

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
        data = path.read_bytes()
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
    predictions or a :class:`PredictionsError` naming ``source`` and the problem: more than
    ``max_bytes`` bytes; an empty file; text that is not UTF-8 (a UTF-8 byte-order mark is
    fine); invalid JSON, NaN and Infinity included; brackets nested more than ``MAX_DEPTH`` deep;
    an integer of more than ``MAX_DIGITS`` digits; an object with a repeated key; then everything
    :func:`validate_predictions` rejects.
    """
    if len(data) > max_bytes:
        raise PredictionsError(f"{source}: {len(data):,} bytes; a predictions file may have at most {max_bytes:,}")
    text = _utf8_text(data, source)
    if not text.strip():
        raise PredictionsError(f"{source}: not valid JSON (the file is empty)")
    _check_nesting(text, source)
    return validate_predictions(_strict_json(text, source), questions, source=source)


def validate_predictions(records: object, questions: Sequence[Mapping], source: str = "predictions") -> dict[str, int]:
    """Check decoded predictions; returns ``{id: prediction}``.

    Rejected, with a :class:`PredictionsError` naming ``source``, the entry and the problem:
    anything but a list of ``{"id", "prediction"}`` objects, an id that is not of the questions'
    id type (a string, not the number 7 for the question "7"), an id that is not a question, a
    duplicate id, a question without a prediction, and a prediction that is not an integer index
    into that question's choices (``true`` and ``1.0`` are not integers).
    """
    if not isinstance(records, list):
        raise PredictionsError(
            f"{source}: expected a JSON list of {{\"id\", \"prediction\"}} objects, got {_json_kind(records)}"
        )
    num_choices = {str(question["id"]): len(question["choices"]) for question in questions}
    id_types = tuple({type(question["id"]) for question in questions} & {str, int}) or (str,)
    predictions: dict[str, int] = {}
    for index, record in enumerate(records):
        where = f"{source}: entry {index}"
        if not isinstance(record, dict) or "id" not in record or "prediction" not in record:
            raise PredictionsError(f"{where} must be an object with 'id' and 'prediction', got {_show(record)}")
        record_id, prediction = record["id"], record["prediction"]
        if isinstance(record_id, bool) or not isinstance(record_id, id_types):
            expected = " or ".join(_JSON_KINDS[kind] for kind in sorted(id_types, key=str))
            raise PredictionsError(
                f"{where}: id {_show(record_id)} is {_json_kind(record_id)}, but a test question's id is {expected}"
            )
        question_id = str(record_id)
        if question_id not in num_choices:
            raise PredictionsError(f"{where}: id {_show(record_id)} is not a test question")
        if question_id in predictions:
            raise PredictionsError(f"{where}: id {_show(record_id)} appears more than once")
        if isinstance(prediction, bool) or not isinstance(prediction, int):
            raise PredictionsError(
                f"{where} (id {question_id!r}): prediction {_show(prediction)} is not an integer"
                f" (it is {_json_kind(prediction)})"
            )
        if not 0 <= prediction < num_choices[question_id]:
            raise PredictionsError(
                f"{where} (id {question_id!r}): prediction {_show(prediction)}"
                f" is outside 0..{num_choices[question_id] - 1}"
            )
        predictions[question_id] = prediction
    missing = [question_id for question_id in num_choices if question_id not in predictions]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise PredictionsError(f"{source}: {len(missing)} question(s) have no prediction: {shown}")
    return predictions


def _utf8_text(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8, without the byte-order mark some Windows editors write."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:2]:
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
            f"{source}: cannot be read: not UTF-8 (byte 0x{data[error.start]:02x} at line {line}, column {column})"
        ) from None


def _check_nesting(text: str, source: str) -> None:
    """Reject brackets nested more than ``MAX_DEPTH`` deep, before parsing: Python's json parser
    recurses once per level, so 100,000 ``[`` would end in a RecursionError."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        if match.group() in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - text.rfind("\n", 0, match.start())
                raise PredictionsError(
                    f"{source}: brackets nested more than {MAX_DEPTH} deep (line {line}, column {column});"
                    " a predictions file nests 2 deep"
                )
        elif match.group() in ("]", "}"):
            depth -= 1  # below 0 only in invalid JSON, which the parser rejects before going deeper


def _strict_json(text: str, source: str) -> object:
    """``json.loads(text)``, minus what Python accepts beyond the JSON standard or what makes a
    file ambiguous: NaN and Infinity, integers too long to convert quickly, repeated keys."""

    def integer(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > MAX_DIGITS:
            raise PredictionsError(f"{source}: an integer of {digits:,} digits ({literal[:10]}...); indices are small")
        return int(literal)

    def constant(name: str) -> NoReturn:
        raise PredictionsError(f"{source}: not valid JSON ({name} is not a JSON number)")

    def unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
        record: dict[str, object] = {}
        for key, value in pairs:
            if key in record:
                raise PredictionsError(f"{source}: an object has the key {_show(key)} twice; which one counts?")
            record[key] = value
        return record

    try:
        return json.loads(text, parse_int=integer, parse_constant=constant, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as error:
        raise PredictionsError(f"{source}: not valid JSON ({error})") from None


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
    records = [{"id": qid, "prediction": int(p)} for qid, p in zip(question_ids, predictions)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def accuracy(predictions: Mapping[str, int], questions: Sequence[Mapping]) -> float:
    """The fraction of ``questions`` whose prediction equals their answer."""
    if not questions:
        raise ValueError("accuracy of an empty question set")
    return sum(predictions.get(str(q["id"])) == q["answer"] for q in questions) / len(questions)


def load_grading_rules(path: str | os.PathLike = GRADING_CONFIG) -> dict:
    """The grading configuration (points per part and the Part 4 thresholds)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def part4_points(finetuned_accuracy: float | None, prompting_accuracy: float | None, rules: Mapping | None = None) -> dict[str, float]:
    """Points for 4A and 4B under the course's rule (module docstring); a missing accuracy earns 0.

    Returns ``{"4A": points, "4B": points, "total": points}``. 4B compares with the fine-tuned
    accuracy, so without a fine-tuned result 4B earns nothing.
    """
    rules = (rules or load_grading_rules())["part4"]
    finetuned, prompting = rules["finetuned"], rules["prompting"]
    points_4a = 0.0
    if finetuned_accuracy is not None:
        low, high = finetuned["zero_at_accuracy"], finetuned["full_at_accuracy"]
        points_4a = finetuned["points"] * _clamped_fraction(finetuned_accuracy - low, high - low)
    points_4b = 0.0
    if finetuned_accuracy is not None and prompting_accuracy is not None:
        points_4b = prompting["points"] * _clamped_fraction(prompting_accuracy - finetuned_accuracy, prompting["full_at_margin"])
    return {"4A": points_4a, "4B": points_4b, "total": points_4a + points_4b}


def _clamped_fraction(amount: float, full: float) -> float:
    """``amount / full`` clamped to [0, 1]; rounded so that 0.52 - 0.50 counts as the full 0.02."""
    return min(max(round(amount / full, 9), 0.0), 1.0)
