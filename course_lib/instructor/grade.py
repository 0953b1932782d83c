"""Grade an assignment's submitted notebooks from what their check cells recorded (instructor tool).

    python -m course_lib.instructor.grade --assignment A2 submissions/*/02_vae.ipynb

One folder per student: ``submissions/<student>/<chapter>.ipynb``; the folder's name is the student.
Each notebook runs with papermill under the smoke profile, as ``course_lib.instructor.execute`` runs chapters,
with ``$COURSE_CHECK_RESULTS`` naming a JSON file that every ``check(...)`` cell writes its result
to. An exercise scores its points (``assignments.yml``) when its check passed, and 0 when it
failed, was not done or did not run; a notebook that stops at an error keeps what its earlier
checks recorded. Exercises without an automatic check (discussions, open-ended plots) are listed
as graded by hand.

Writes ``grades.csv`` (one row per student: points per exercise, total, maximum), ``details.csv``
(one row per student and exercise, with the check's message) and the executed notebooks under
``--out`` (default ``_build/grades/<assignment>``), and prints the table.

Imports course_lib.checks, course_lib.core and course_lib.instructor (execute, student).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

from course_lib.checks import EXERCISES, PASSED, RESULTS_ENV
from course_lib.instructor.execute import execute_chapter, failure_summary
from course_lib.instructor.student import Assignment, ExerciseMarkupError, load_assignment

BY_HAND, NOT_RUN = "graded by hand", "not run"


def score(records: dict[str, dict[str, str]], assignment: Assignment) -> dict[str, dict]:
    """Status, points and message of each exercise of ``assignment``, from one student's check records.

    Points are None for an exercise graded by hand (it has no check in ``course_lib.checks``).
    See the instructor page, grading (``python -m course_lib.instructor.grade``)."""
    scored = {}
    for exercise, points in assignment.points.items():
        if exercise not in EXERCISES:
            scored[exercise] = {"status": BY_HAND, "points": None, "message": ""}
            continue
        record = records.get(exercise, {"status": NOT_RUN, "message": "its check cell did not run"})
        scored[exercise] = {
            "status": record["status"],
            "points": points if record["status"] == PASSED else 0.0,
            "message": record["message"],
        }
    return scored


def grade_tables(
    records: dict[str, dict], notes: dict[str, list[str]], assignment: Assignment
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The points table (one row per student) and the details (one row per student and exercise)
    (instructor page; ``python -m course_lib.instructor.grade``)."""
    rows, details = [], []
    automatic = [exercise for exercise in assignment.points if exercise in EXERCISES]
    for student in sorted(records):
        scored = score(records[student], assignment)
        row = {"student": student, **{exercise: s["points"] for exercise, s in scored.items()}}
        row["total"] = sum(scored[exercise]["points"] for exercise in automatic)
        row["out of"] = sum(assignment.points[exercise] for exercise in automatic)
        row["notes"] = "; ".join(notes.get(student, []))
        rows.append(row)
        details += [
            {"student": student, "exercise": exercise, "max points": assignment.points[exercise], **s}
            for exercise, s in scored.items()
        ]
    return pd.DataFrame(rows).set_index("student"), pd.DataFrame(details)


def run_submission(
    notebook: Path, executed: Path, results_file: Path, profile: str, timeout: int
) -> tuple[dict[str, dict[str, str]], str]:
    """Execute one submitted notebook; return what its checks recorded, and a note if it failed
    (instructor page; ``python -m course_lib.instructor.grade``)."""
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.unlink(missing_ok=True)
    os.environ[RESULTS_ENV] = str(results_file.resolve())  # the kernel inherits it; it runs in the notebook's folder
    print(f"grading {notebook} ...", flush=True)
    try:
        execute_chapter(notebook, executed, profile, timeout)
        note = ""
    except Exception as error:  # papermill's PapermillExecutionError, or a kernel that died
        note = failure_summary(notebook, error)
        print(note, flush=True)
    return (json.loads(results_file.read_text()) if results_file.exists() else {}), note


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.instructor.grade``: run the submissions and write the points tables (instructor page)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path, help="submitted notebooks, one folder per student")
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--config", type=Path, default=Path("assignments.yml"))
    parser.add_argument("--out", type=Path, help="default: _build/grades/ASSIGNMENT")
    parser.add_argument("--profile", default="smoke", help="profile the notebooks run under (default: smoke)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    try:
        assignment = load_assignment(args.config, args.assignment)
    except ExerciseMarkupError as error:
        parser.error(str(error))
    submissions = [(notebook.resolve().parent.name, notebook) for notebook in args.notebooks]
    seen = [(student, notebook.name) for student, notebook in submissions]
    if len(set(seen)) < len(seen):
        parser.error(
            "two submitted notebooks have the same name and folder: put each student's notebooks "
            "in a folder of their own (submissions/<student>/<chapter>.ipynb)."
        )

    from course_lib.core.profiles import get_profile

    profile = get_profile(args.profile).name
    out = args.out or Path("_build/grades") / assignment.name
    os.environ.update(
        COURSE_PROFILE=profile, COURSE_PROGRESS="0"
    )  # also binds a notebook that lost its parameters cell
    records: dict[str, dict] = defaultdict(dict)
    notes: dict[str, list[str]] = defaultdict(list)
    for student, notebook in submissions:
        recorded, note = run_submission(
            notebook,
            out / "executed" / student / notebook.name,
            out / "results" / student / f"{notebook.stem}.json",
            profile,
            args.timeout,
        )
        records[student].update(recorded)
        notes[student] += [note] if note else []
    grades, details = grade_tables(records, notes, assignment)
    grades.to_csv(out / "grades.csv")
    details.to_csv(out / "details.csv", index=False)
    by_hand = [exercise for exercise in assignment.points if exercise not in EXERCISES]
    print(
        f"\n{assignment.name} ({assignment.title}): points per exercise: "
        + ", ".join(f"{exercise} = {points:g}" for exercise, points in assignment.points.items())
        + (f"; graded by hand, not in the total: {', '.join(by_hand)}" if by_hand else "")
    )
    print(grades.drop(columns="notes").fillna(BY_HAND).to_string())
    print(f"\nwritten: {out / 'grades.csv'}, {out / 'details.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
