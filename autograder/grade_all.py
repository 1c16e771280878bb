"""Grade a folder of submissions locally: one results.json per student, a CSV summary, a similarity report.

    python -m autograder.grade_all --submissions DIR --out DIR [--bundle dist/grader]
                                   [--no-similarity] [--sandbox-user USER]

Every subdirectory of ``--submissions`` is one student's submission (its name is the student's).
``--out`` receives ``<student>/results.json``, ``summary.csv`` (one row per student: the total, the
total of each part, flags such as "all stubs", then the score of every scored entry in
grading-config order; see :mod:`autograder.summary`) and, written first (before any submitted code
runs), ``similarity/``: the pairs of submissions ranked by their similarity over all student
modules, the reference solution among them, and the most similar pairs per module
(:mod:`autograder.similarity`; skipped, with a note, when copydetect from requirements-dev.txt is
not installed).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from autograder.bundle import cached_bundle
from autograder.grade import add_jobs_option, check_jobs_option, failure_results, grade, limits_from, write_results
from autograder.make_handout import REPO_ROOT, BuildError
from autograder.sandbox import grading_problem
from autograder.similarity import similarity_report
from autograder.summary import Layout, summary_row, write_summary


def grade_folder(
    submissions: Path, out: Path, bundle: Path, only: list[str] | None = None, user: str | None = None, jobs: int = 1
) -> list[dict]:
    """Grade every subdirectory of ``submissions``; write the results and the summary; return the rows.

    While one student's code runs, the whole ``submissions`` folder (the others' work) is hidden from it.
    ``jobs``: test modules of one submission run at once (see :func:`autograder.grade.grade`).
    """
    config = json.loads((bundle / "grading_config.json").read_text(encoding="utf-8"))
    limits = limits_from(config, None, None, user)
    layout = Layout.load(bundle)
    rows = []
    for student in sorted(p for p in submissions.iterdir() if p.is_dir()):
        try:
            results = grade(student, bundle, limits, only, hidden_paths=[submissions, out], jobs=jobs)
        except Exception as error:  # one broken submission must not stop the others
            traceback.print_exc()
            results = failure_results(error)
        write_results(results, out / student.name / "results.json")
        rows.append(summary_row(student.name, results, layout))
        print(f"{student.name}: {results['score']:g}")
    write_summary(rows, layout, out / "summary.csv")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=Path, required=True, help="one subdirectory per student")
    parser.add_argument("--out", type=Path, required=True, help="where the results and summary.csv go")
    parser.add_argument("--bundle", type=Path, help="grading bundle (default: the cached one of this repository)")
    parser.add_argument("--sandbox-user", help="when run as root, run the tests as this dedicated user")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run only these test modules")
    parser.add_argument("--no-similarity", action="store_true", help="skip the similarity report")
    add_jobs_option(parser)
    args = parser.parse_args(argv)
    check_jobs_option(parser, args)
    unsafe = grading_problem(args.sandbox_user)
    if unsafe is not None:
        print(f"grade_all: {unsafe}", file=sys.stderr)
        return 2
    try:
        bundle = cached_bundle() if args.bundle is None else args.bundle
    except BuildError as error:  # no bundle could be built from this repository: the operator's to fix
        print(f"grade_all: {error}", file=sys.stderr)
        return 2
    if not args.no_similarity:
        # Before any submitted code runs: copydetect imports much (and pygments finds lexers as
        # it goes), and once a test process has run the grader imports nothing more from disk.
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
        similarity_report(
            args.submissions,
            manifest["student_modules"],
            bundle / "handout",
            args.out / "similarity",
            reference=REPO_ROOT,
        )
    grade_folder(args.submissions, args.out, bundle, args.only, args.sandbox_user, args.jobs)
    print(f"summary written to {args.out / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
