"""Check Part 4 predictions files with the grader's own checks, before submitting them.

    python -m cs288_lm.pipelines.check_predictions finetuned_predictions.json prompting_predictions.json

Each file gets one line: how many predictions it holds, or what is wrong and where (a missing or
duplicate id, an id that is not a string of the test questions, a prediction that is not a choice's
index, JSON that does not parse). The exit status is 1 if any file is invalid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cs288_lm.common.predictions import PredictionsError, load_predictions
from cs288_lm.common.qa_data import load_questions
from cs288_lm.training.settings import HelpFormatter

TEST_QUESTIONS = "data/qa/test_questions.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("files", nargs="+", help="the predictions files to check")
    parser.add_argument("--questions", default=TEST_QUESTIONS, help="the questions they answer")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check(path: str, questions: list[dict]) -> tuple[bool, str]:
    """Whether the file ``path`` is valid, and the line that says so (or what is wrong)."""
    try:
        predictions = load_predictions(path, questions)
    except PredictionsError as error:
        return False, f"invalid: {error}"
    return True, f"{path}: {len(predictions)} valid predictions"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        questions = load_questions(args.questions)
    except (OSError, ValueError) as error:
        hint = "run from the repository root" if args.questions == TEST_QUESTIONS else "check --questions"
        print(f"error: cannot read the questions {args.questions} ({error}); {hint}", file=sys.stderr)
        return 2
    results = [check(path, questions) for path in args.files]
    for valid, line in results:
        print(line, file=sys.stdout if valid else sys.stderr)
    return 0 if all(valid for valid, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
