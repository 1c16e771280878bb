"""Prediction files for Part 4 and the rule that turns test accuracy into points (given).

A predictions file is a JSON list with one record per test question, ``{"id": ..., "prediction": k}``
where ``k`` is the 0-based index of the chosen answer. :func:`load_predictions` checks a file
against the questions and says exactly which entry is wrong; :func:`part4_points` applies the
course's rule, whose thresholds live in ``configs/grading.json``:

* 4A (fine-tuned): 0 points at or below 30% accuracy, all 12 at 50% or above, linear in between;
* 4B (prompting): all 8 points if it beats the fine-tuned accuracy by at least 2 points, scaled
  down linearly to 0 when it does not beat it at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GRADING_CONFIG = REPO_ROOT / "configs" / "grading.json"


class PredictionsError(ValueError):
    """A predictions file that cannot be graded; the message names the file and the bad entry."""


def load_predictions(path: str | os.PathLike, questions: Sequence[Mapping]) -> dict[str, int]:
    """Read and check a predictions file against ``questions``; returns ``{id: prediction}``.

    Rejected, with a :class:`PredictionsError` naming the problem: a missing or unreadable file,
    invalid JSON, anything but a list of ``{"id", "prediction"}`` objects, an id that is not a
    question, a duplicate id, a question without a prediction, and a prediction that is not an
    integer index into that question's choices.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PredictionsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PredictionsError(f"{path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise PredictionsError(f"{path}: not valid JSON ({error})") from None
    return validate_predictions(records, questions, source=str(path))


def validate_predictions(records: object, questions: Sequence[Mapping], source: str = "predictions") -> dict[str, int]:
    """Check decoded predictions (see :func:`load_predictions`); returns ``{id: prediction}``."""
    if not isinstance(records, list):
        raise PredictionsError(f"{source}: expected a JSON list of {{\"id\", \"prediction\"}} objects, got {type(records).__name__}")
    num_choices = {str(question["id"]): len(question["choices"]) for question in questions}
    predictions: dict[str, int] = {}
    for index, record in enumerate(records):
        where = f"{source}: entry {index}"
        if not isinstance(record, dict) or "id" not in record or "prediction" not in record:
            raise PredictionsError(f"{where} must be an object with 'id' and 'prediction', got {record!r:.80}")
        question_id, prediction = str(record["id"]), record["prediction"]
        if question_id not in num_choices:
            raise PredictionsError(f"{where}: id {record['id']!r} is not a test question")
        if question_id in predictions:
            raise PredictionsError(f"{where}: id {record['id']!r} appears more than once")
        if isinstance(prediction, bool) or not isinstance(prediction, int):
            raise PredictionsError(f"{where} (id {question_id!r}): prediction {prediction!r} is not an integer")
        if not 0 <= prediction < num_choices[question_id]:
            raise PredictionsError(
                f"{where} (id {question_id!r}): prediction {prediction} is outside 0..{num_choices[question_id] - 1}"
            )
        predictions[question_id] = prediction
    missing = [question_id for question_id in num_choices if question_id not in predictions]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise PredictionsError(f"{source}: {len(missing)} question(s) have no prediction: {shown}")
    return predictions


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
