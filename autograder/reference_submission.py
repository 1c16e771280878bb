"""Write the reference submission: the solution's student modules and the reference predictions.

    python -m autograder.reference_submission --out DIR

DIR gets every student module of this repository (the files with solution markers, solutions
included) at its path, and the two predictions files of the reference job, which publishing the
baselines writes beside ``baseline_metrics.json`` (``PUBLISH_COMMAND``, from the repository root).
Graded (``python -m autograder.grade --submission DIR``, or Gradescope's "Test Autograder" with
DIR's files) it must earn every point of Parts 1-3 and the Part 4 points this command prints.
DIR must be new or empty: nothing is overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autograder.make_handout import REPO_ROOT, BuildError, handout_files, inside_repository_problem
from autograder.markers import student_modules
from cs288_lm.common import predictions

REFERENCE_PREDICTIONS = Path(__file__).resolve().parent / "reference_predictions"
PUBLISH_COMMAND = (
    "python run_finetune_qa.py --write-baseline baseline_metrics.json"
    " --predictions-dir autograder/reference_predictions"
)
GRADING_CONFIG = Path(__file__).resolve().parent / "grading_config.json"
TEST_ANSWERS = REPO_ROOT / "data" / "qa" / "test.json"


class ReferenceSubmissionError(RuntimeError):
    """The reference submission cannot be written; the message says what to do."""


def predictions_files(config_path: Path = GRADING_CONFIG) -> dict[str, str]:
    """The predictions file of each part, by rule: ``{"finetuned": "finetuned_predictions.json", ...}``."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return {spec["rule"]: spec["file"] for spec in config["part4"]["predictions"].values()}


def reference_files(root: Path = REPO_ROOT, reference: Path = REFERENCE_PREDICTIONS) -> dict[str, bytes]:
    """The reference submission's files by relative path: the student modules, then the predictions."""
    files = {module: (root / module).read_bytes() for module in student_modules(root, handout_files(root))}
    for name in predictions_files().values():
        path = reference / name
        if not path.is_file():
            raise ReferenceSubmissionError(
                f"{path.relative_to(root) if path.is_relative_to(root) else path} is missing: publish the baselines"
                f" with `{PUBLISH_COMMAND}` (it writes both predictions files and baseline_metrics.json)"
            )
        files[name] = path.read_bytes()
    return files


def expected_points(files: dict[str, bytes], root: Path = REPO_ROOT) -> dict[str, float]:
    """What grading ``files`` must give: Parts 1-3 in full, and 4A and 4B from the predictions' test accuracy
    under ``configs/grading.json`` and the published baselines (as the grader scores them)."""
    rules = predictions.load_grading_rules(root / "configs" / "grading.json")
    questions = json.loads(TEST_ANSWERS.read_text(encoding="utf-8"))
    accuracies = {
        rule: predictions.accuracy(predictions.parse_predictions(files[name], questions, source=name), questions)
        for rule, name in predictions_files().items()
    }
    baselines = predictions.baseline_accuracies(
        predictions.load_baseline_metrics(root / "baseline_metrics.json"), "test"
    )
    part4 = predictions.part4_points(accuracies["finetuned"], accuracies["prompting"], rules, baselines)
    parts = sum(part["points"] for part in rules["parts"].values() if not part.get("bonus"))
    points = {"parts 1-3": float(parts), "4A": round(part4["4A"], 2), "4B": round(part4["4B"], 2)}
    return {**points, "total": round(sum(points.values()), 2)}


def check_out(out: Path) -> None:
    """Refuse an ``out`` that exists and is not an empty folder: nothing is overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReferenceSubmissionError(
            f"{out} exists and is not an empty folder: choose a new one (nothing is overwritten)"
        )
    problem = inside_repository_problem(out, "reference submission")
    if problem is not None:  # the solution, untracked in the repository, would ship with the next build
        raise ReferenceSubmissionError(problem)


def write_submission(files: dict[str, bytes], out: Path) -> None:
    """Write ``files`` under ``out``, which must be new or empty."""
    check_out(out)
    for relative, data in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for the submission's files")
    parser.add_argument(
        "--predictions-from",
        type=Path,
        default=REFERENCE_PREDICTIONS,
        metavar="DIR",
        help="the folder with the two predictions files (default: autograder/reference_predictions, written by"
        f" `{PUBLISH_COMMAND}`)",
    )
    args = parser.parse_args(argv)
    try:
        check_out(args.out)
        files = reference_files(reference=args.predictions_from)
        points = expected_points(files)
        write_submission(files, args.out)
    except (ReferenceSubmissionError, BuildError, predictions.PredictionsError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files to {args.out}")
    print(
        f"expected score: {points['total']:g} = {points['parts 1-3']:g} (Parts 1-3) + {points['4A']:g} (4A)"
        f" + {points['4B']:g} (4B)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
