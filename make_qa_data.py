"""Build the multiple-choice QA splits from TinyStories (Children's Book Test style).

    python make_qa_data.py            # data/qa/{train,dev,test,test_questions}.json, then the audit
    python make_qa_data.py --audit    # only the audit of the files in --out

The audit (cs288_lm/common/qa_audit.py) scores shallow rules that use no language model on every split:
looking the answer up elsewhere in the file, choosing by frequency or position in the context,
bigram fit. It exits with status 1 if a lookup recovers any answer or a frequency or position rule
scores above MAX_RULE_ACCURACY on dev or test.

Train questions come from the training stories; dev and test from disjoint halves of the held-out
stories, which are never used for pretraining or fine-tuning. ``test_questions.json`` is the test
split without answers, the copy students get. See cs288_lm/common/qa_data.py for how questions are made.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from cs288_lm.common.qa_audit import audit, format_audit
from cs288_lm.common.qa_data import build_lexicon, build_qa_splits, load_questions, save_questions, split_stories
from cs288_lm.common.qa_rules import FREQUENCY_RULES
from cs288_lm.training.settings import REPO_ROOT, HelpFormatter

MAX_RULE_ACCURACY = 0.35  # a frequency or position rule above this would make the questions too easy
SPLITS = ("train", "dev", "test")


def audit_problems(results: dict[str, dict]) -> list[str]:
    """What makes the questions answerable without reading: lookups, or a rule far above chance."""
    problems = []
    for name in ("dev", "test"):
        if name not in results:
            continue
        scores = results[name]["scores"]
        if scores["lookup"] > 0 or results[name]["lookup_hits"] > 0:
            problems.append(
                f"{name}: a lookup finds {results[name]['lookup_hits']} choices ({scores['lookup']:.1%} right)"
            )
        problems += [
            f"{name}: the rule '{rule}' scores {scores[rule]:.1%} (above {MAX_RULE_ACCURACY:.0%})"
            for rule in FREQUENCY_RULES
            if scores[rule] > MAX_RULE_ACCURACY
        ]
    return problems


def run_audit(qa_dir: Path, train: Path, heldout: Path) -> int:
    """Print the audit table of the question files in ``qa_dir``; 1 if it finds a problem."""
    splits = {name: load_questions(qa_dir / f"{name}.json", require_answers=True) for name in SPLITS}
    stories = split_stories(train.read_text(encoding="utf-8")) + split_stories(heldout.read_text(encoding="utf-8"))
    results = audit(splits, train.read_text(encoding="utf-8"), build_lexicon(stories))
    print(format_audit(results))
    problems = audit_problems(results)
    for problem in problems:
        print(f"audit: {problem}", file=sys.stderr)
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "--train", type=Path, default=REPO_ROOT / "data/tinystories/train.txt", help="stories for train questions"
    )
    parser.add_argument(
        "--heldout", type=Path, default=REPO_ROOT / "data/tinystories/heldout.txt", help="stories for dev and test"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data/qa", help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev/test split and of the questions made")
    parser.add_argument(
        "--questions-per-story", type=int, default=None, help="at most this many per story (default: as many as fit)"
    )
    parser.add_argument(
        "--context-sentences", type=int, default=5, help="most sentences of story in a question's context"
    )
    parser.add_argument("--audit", action="store_true", help="only audit the files already in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in (args.train, args.heldout):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    if args.audit:
        return run_audit(args.out, args.train, args.heldout)
    splits = build_qa_splits(
        args.train.read_text(encoding="utf-8"),
        args.heldout.read_text(encoding="utf-8"),
        seed=args.seed,
        questions_per_story=args.questions_per_story,
        context_sentences=args.context_sentences,
    )
    for name, questions in splits.items():
        save_questions(questions, args.out / f"{name}.json")
        answers = collections.Counter(question["answer"] for question in questions)
        print(f"{name}: {len(questions)} questions, answer positions {dict(sorted(answers.items()))}")
    save_questions(splits["test"], args.out / "test_questions.json", with_answers=False)
    print(f"wrote {args.out}/{{train,dev,test,test_questions}}.json")
    return run_audit(args.out, args.train, args.heldout)


if __name__ == "__main__":
    sys.exit(main())
