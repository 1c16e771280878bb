"""Build the multiple-choice QA splits from TinyStories (Children's Book Test style).

    python make_qa_data.py                      # data/qa/{train,dev,test,test_questions}.json

Train questions come from the training stories; dev and test from disjoint halves of the held-out
stories, which are never used for pretraining or fine-tuning. ``test_questions.json`` is the test
split without answers, the copy students get. See cs288_lm/qa_data.py for how questions are made.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from cs288_lm.qa_data import build_qa_splits, save_questions

REPO_ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=REPO_ROOT / "data/tinystories/train.txt", help="stories for train questions")
    parser.add_argument("--heldout", type=Path, default=REPO_ROOT / "data/tinystories/heldout.txt", help="stories for dev and test")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data/qa", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions-per-story", type=int, default=6)
    parser.add_argument("--context-sentences", type=int, default=5)
    args = parser.parse_args(argv)
    for path in (args.train, args.heldout):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
