"""Grade a folder of submissions locally: one results.json per student, a CSV summary, a similarity report.

    python -m autograder.grade_all --submissions DIR --out DIR [--bundle dist/grader]
                                   [--no-similarity] [--sandbox-user USER] [--workers N]

Every subdirectory of ``--submissions`` is one student's submission (its name is the student's);
a folder that is itself one submission (it holds ``cs288_lm/``) or holds none is refused.
``--workers N`` grades N submissions at once (not with a sandbox user: see :func:`workers_allowed`).
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
import dataclasses
import functools
import json
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from autograder.bundle import GRADING_CONFIG, cached_bundle
from autograder.grade import (
    Bundle,
    SubmissionError,
    TestProcessError,
    UsageError,
    add_jobs_option,
    check_bundle,
    check_jobs_option,
    failure_results,
    grade,
    limits_from,
    modules_to_run,
    not_graded_results,
    student_folders,
    timing_text,
    top_level_entries,
    writable_ancestor_problem,
    write_results,
)
from autograder.make_handout import REPO_ROOT, BuildError, handout_files
from autograder.markers import student_modules
from autograder.sandbox import Limits, grading_problem, share_of_cores
from autograder.similarity import similarity_report
from autograder.summary import Layout, summary_row, write_summary


def graded_paths(bundle: Path | None) -> list[str]:
    """The files a submission is made of: the bundle's student modules and predictions files (this
    repository's when there is no bundle yet, so that a wrong folder is refused before one is built)."""
    if bundle is None:
        students = student_modules(REPO_ROOT, handout_files(REPO_ROOT))
        config = json.loads(GRADING_CONFIG.read_text(encoding="utf-8"))
    else:
        students = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["student_modules"]
        config = json.loads((bundle / "grading_config.json").read_text(encoding="utf-8"))
    return [*students, *(spec["file"] for spec in config["part4"]["predictions"].values())]


def check_submissions_folder(submissions: Path, graded: list[str]) -> list[Path]:
    """The students' folders of ``submissions``; :class:`UsageError` when it is missing, holds no
    folder, or is itself one student's submission (it holds ``cs288_lm/`` or one of the ``graded`` files)."""
    if not submissions.is_dir():
        problem = "is a file, not a folder" if submissions.exists() else "does not exist"
        raise UsageError(f"--submissions {submissions} {problem}: give the folder that holds one folder per student")
    mine = {path.split("/")[0] for path in graded}  # cs288_lm/, and the files at a repository's top
    mine |= {path.split("/")[-1] for path in graded}  # the files themselves, submitted loose
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in submissions.iterdir() if p.name in mine)
    if found:
        raise UsageError(
            f"--submissions {submissions} holds {', '.join(found)}: it is one student's submission, not a folder "
            f"of them (each subfolder is a student). Grade it with `python -m autograder.grade --submission "
            f"{submissions}`, or give the folder that holds one folder per student"
        )
    students = student_folders(submissions)
    if not students:
        raise UsageError(
            f"--submissions {submissions} holds no folder ({top_level_entries(submissions)}): give the folder that "
            "holds one folder per student (a Gradescope export, unzipped)"
        )
    return students


def check_output_folder(out: Path, submissions: Path) -> None:
    """Refuse (:class:`UsageError`) an ``--out`` that is a file, cannot be made, or lies in ``submissions``
    (where the next run would grade it as a student)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder for the results")
    if out.is_dir() and any(out.iterdir()):
        # Earlier results beside new ones would read as one run (and keep students' code in similarity/).
        raise UsageError(f"--out {out} is not empty (an earlier run's results?): give a new folder, or delete it first")
    if submissions.resolve() in [out.resolve(), *out.resolve().parents]:
        raise UsageError(f"--out {out} is inside --submissions {submissions}: put the results elsewhere")
    problem = None if out.is_dir() else writable_ancestor_problem(out)
    if problem is not None:
        raise UsageError(f"--out {out} cannot be written: {problem}")


def workers_allowed(workers: int, user: str | None) -> bool:
    """Whether ``workers`` submissions may be graded at once: at least 1, and only 1 with a sandbox
    user (the end of each sandboxed run kills every process of that user, a run of another
    submission included)."""
    return workers == 1 or (workers > 1 and user is None)


def grade_folder(
    submissions: Path,
    out: Path,
    bundle: Path,
    only: list[str] | None = None,
    user: str | None = None,
    jobs: int = 1,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Grade every subdirectory of ``submissions``; write the results and the summary; return the rows.

    While one student's code runs, the whole ``submissions`` folder (the others' work) is hidden from it.
    ``jobs``: test modules of one submission run at once (see :func:`autograder.grade.grade`);
    ``workers``: submissions graded at once, each in its own sandboxes with its share of the cores
    (the results do not depend on either). ``progress`` gets a line per student, with an estimate
    of what is left. Several copies of a file in one submission: the shallowest is graded, as on
    Gradescope, and its results say so. :class:`TestProcessError` (no test process can start
    here) stops everything; what was written stays.
    """
    if not workers_allowed(workers, user):
        raise ValueError(f"workers={workers}: it must be at least 1, and 1 with a sandbox user")
    config = json.loads((bundle / "grading_config.json").read_text(encoding="utf-8"))
    limits = limits_from(config, None, None, user)
    layout = Layout.load(bundle)
    if workers * jobs > 1:
        limits = dataclasses.replace(limits, threads=share_of_cores(workers * jobs))
    students = student_folders(submissions)
    grade_one = functools.partial(
        grade_student, bundle=bundle, limits=limits, only=only, hidden=[submissions, out], jobs=jobs, out=out
    )
    rows: dict[str, dict] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(grade_one, student): student for student in students}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                student, (results, note) = futures[future], future.result()
                rows[student.name] = summary_row(student.name, results, layout)
                if progress is not None:
                    timing = timing_text(time.monotonic() - started, done, len(students))
                    progress(f"[{done}/{len(students)}] {student.name}: {results['score']:g} points{note} ({timing})")
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    ordered = [rows[student.name] for student in students]
    write_summary(ordered, layout, out / "summary.csv")
    return ordered


def grade_student(
    student: Path, *, bundle: Path, limits: Limits, only: list[str] | None, hidden: list[Path], jobs: int, out: Path
) -> tuple[dict, str]:
    """Grade one student's folder (``hidden`` covered) and write its ``out/<student>/results.json``; return
    the results and a note for the progress line when it was not graded or the grader failed on it."""
    try:
        results, note = grade(student, bundle, limits, only, hidden, jobs, "shallowest"), ""
    except SubmissionError as error:
        results, note = not_graded_results(error), f" (not graded: {error})"
    except TestProcessError:
        raise
    except Exception as error:  # noqa: BLE001 (one broken submission must not stop the others)
        traceback.print_exc()
        results, note = failure_results(error), f" (the grader failed: {type(error).__name__}: {error})"
    write_results(results, out / student.name / "results.json")
    return results, note


def print_progress(line: str) -> None:
    print(f"grade_all: {line}", flush=True)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with ``--jobs`` and ``--workers`` checked (a usage error, exit 2, otherwise)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=Path, required=True, help="one subdirectory per student")
    parser.add_argument("--out", type=Path, required=True, help="where the results and summary.csv go")
    parser.add_argument("--bundle", type=Path, help="grading bundle (default: the cached one of this repository)")
    parser.add_argument("--sandbox-user", help="when run as root, run the tests as this dedicated user")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run only these test modules")
    parser.add_argument("--no-similarity", action="store_true", help="skip the similarity report")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="submissions graded at once, each with its share of the cores (default 1; 1 with --sandbox-user)",
    )
    add_jobs_option(parser)
    args = parser.parse_args(argv)
    check_jobs_option(parser, args)
    if not workers_allowed(args.workers, args.sandbox_user):
        parser.error(
            f"--workers must be at least 1, and 1 with --sandbox-user (got {args.workers}): the end of each "
            "sandboxed run kills every process of that user, another submission's too"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    unsafe = grading_problem(args.sandbox_user)
    if unsafe is not None:
        print(f"grade_all: {unsafe}", file=sys.stderr)
        return 2
    try:
        if args.bundle is not None:
            check_bundle(args.bundle)
        check_submissions_folder(args.submissions, graded_paths(args.bundle))
        check_output_folder(args.out, args.submissions)
        bundle = cached_bundle() if args.bundle is None else args.bundle
        modules_to_run(Bundle.load(bundle), args.only)  # a mistyped --only is refused before anything runs
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
        grade_folder(
            args.submissions,
            args.out,
            bundle,
            args.only,
            args.sandbox_user,
            args.jobs,
            args.workers,
            print_progress,
        )
    except (UsageError, BuildError) as error:
        print(f"grade_all: {error}", file=sys.stderr)
        return 2
    except TestProcessError as error:
        print(f"grade_all: {error}; stopped (the results written so far stay)", file=sys.stderr)
        return 1
    except OSError as error:  # --out cannot be written after all (a path under /proc, the disk full)
        where = f" {error.filename}" if error.filename else ""
        print(f"grade_all: cannot write{where} ({error.strerror or error}): give a writable --out", file=sys.stderr)
        return 2
    print(f"summary written to {args.out / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
