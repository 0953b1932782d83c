"""Student versions of the chapters: solutions become stubs, hidden tests go (instructor tool).

    python -m course_lib.instructor.student                    # every chapter, every exercise -> _build/student/
    python -m course_lib.instructor.student --assignment A2    # A2's chapters, only A2's exercises -> _build/student/A2/

Exercises are written once, with their solutions, in the chapters, marked the way nbgrader marks them:

- a markdown heading ``### Exercise 2.1: title`` opens exercise 2.1; it lasts until the next heading;
- in its code cells, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` are the
  solution. Inside a function they become ``raise NotImplementedError("Exercise 2.1: ...")``, so the
  signature and docstring stay; at the top level of a cell they become a ``# YOUR CODE HERE`` comment;
- a ``{admonition} Solution`` block in its markdown becomes a "your answer" placeholder;
- lines between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` never reach students (a cell
  left empty is dropped).

With ``--assignment``, the exercises the assignment does not ask for keep their solutions, as worked
examples. ``assignments.yml`` at the repository root says which exercises each assignment asks for
and what they are worth (``python -m course_lib.instructor.grade`` turns checks into points). Outputs are cleared.

Imports no other part of course_lib.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml
from nbformat import NotebookNode

CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_TESTS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
HEADING = re.compile(r"^#{1,6}\s")
EXERCISE_HEADING = re.compile(r"^#{1,6}\s+Exercise\s+(\d+\.\d+)\b")
EXERCISE_ID = re.compile(r"^\d+\.\d+$")
FENCE = re.compile(r"^(`{3,}|:{3,})")
SOLUTION_ADMONITION = re.compile(r"^(`{3,}|:{3,})\{admonition\}\s+Solution\b")
ANSWER_PLACEHOLDER = "**Your answer.** _Double-click this cell and write your answer here._"


class ExerciseMarkupError(ValueError):
    """A chapter's exercise markers do not match up, or an assignment names what does not exist
    (instructor page; ``make student``)."""


@dataclass(frozen=True)
class Assignment:
    """One entry of ``assignments.yml``: the exercises it asks for, with their points (instructor page)."""

    name: str
    title: str
    points: dict[str, float]

    @property
    def chapters(self) -> list[str]:
        """The two-digit numbers of the chapters it needs ("2.1" lives in chapter 02)."""
        return sorted({f"{int(exercise.split('.')[0]):02d}" for exercise in self.points})


def load_assignment(config: Path, name: str) -> Assignment:
    """Read assignment ``name`` from ``config`` (``assignments.yml``), with messages that say what to fix
    (instructor page)."""
    if not config.is_file():
        raise ExerciseMarkupError(
            f"{config} not found: it lists the assignments (see book/instructors.md). "
            "Run from the repository root, or pass --config path/to/assignments.yml."
        )
    assignments = (yaml.safe_load(config.read_text()) or {}).get("assignments") or {}
    if name not in assignments:
        raise ExerciseMarkupError(f"{config} has no assignment {name!r}; it has {', '.join(map(str, assignments))}.")
    entry = assignments[name] or {}
    points = entry.get("exercises") or {}
    for exercise, value in points.items():
        if not isinstance(exercise, str) or not EXERCISE_ID.match(exercise):
            raise ExerciseMarkupError(
                f'{config}, assignment {name}: exercise ids are quoted strings like "2.1" '
                f"(YAML reads an unquoted 2.10 as the number 2.1), got {exercise!r}."
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ExerciseMarkupError(
                f"{config}, assignment {name}: exercise {exercise} needs a number of points (0 or more), got {value!r}."
            )
    if not points:
        raise ExerciseMarkupError(f"{config}, assignment {name}: list its exercises and their points.")
    return Assignment(name, entry.get("title", name), {exercise: float(value) for exercise, value in points.items()})


def exercise_cells(nb: NotebookNode) -> list[tuple[str | None, NotebookNode]]:
    """Each cell with the exercise open at its end: the last ``### Exercise N.M`` heading, until the
    next heading of any other kind (None outside exercises; instructor page; ``make student``)."""
    exercise, cells = None, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in _outside_fences(cell.source.splitlines()):
                if HEADING.match(line):
                    match = EXERCISE_HEADING.match(line)
                    exercise = match.group(1) if match else None
        cells.append((exercise, cell))
    return cells


def exercise_ids(nb: NotebookNode) -> list[str]:
    """The exercises of a notebook, in order (instructor page; ``make student``)."""
    return list(dict.fromkeys(exercise for exercise, _ in exercise_cells(nb) if exercise))


def student_notebook(nb: NotebookNode, stub: Collection[str] | None = None, where: str = "notebook") -> NotebookNode:
    """A student copy of ``nb``: the exercises in ``stub`` (all when None) lose their solutions, hidden
    tests go everywhere, outputs are cleared. ``where`` names the notebook in error messages
    (instructor page; ``make student``)."""
    student = copy.deepcopy(nb)
    exercise, cells, stubbed = None, [], []
    for index, cell in enumerate(student.cells):
        context = f"{where}, cell {index}"
        if cell.cell_type == "markdown":
            cell.source, exercise, done = _student_markdown(cell.source, exercise, stub, context)
            stubbed += done
        else:
            had_code = bool(cell.source.strip())
            lines = _replace_regions(cell.source.splitlines(), HIDDEN_TESTS, lambda indent: [], context)
            if any(SOLUTION[0] in line for line in lines):
                if exercise is None:
                    raise ExerciseMarkupError(
                        f"{context}: a solution outside any exercise; put it under an "
                        "'### Exercise N.M: title' heading."
                    )
                if stub is None or exercise in stub:
                    lines = _replace_regions(lines, SOLUTION, _code_stub(exercise), context)
                    stubbed.append(exercise)
            cell.source = "\n".join(lines)
            if had_code and not cell.source.strip():
                continue  # nothing but hidden tests
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    student.cells = cells
    if stubbed:
        student.cells.insert(1, nbformat.v4.new_markdown_cell(_student_note(list(dict.fromkeys(stubbed)))))
    return student


def _student_note(exercises: list[str]) -> str:
    return (
        f"**Student version.** Your exercises in this notebook: {', '.join(exercises)}. Each check cell "
        "tells you whether your answer is right. Until it is, the notebook goes on with the library's "
        "reference implementation, so every later cell still runs."
    )


def _code_stub(exercise: str) -> Callable[[str], list[str]]:
    def stub(indent: str) -> list[str]:
        if indent:  # inside a function: keep its signature and docstring, make calling it say "not done"
            return [
                f"{indent}# YOUR CODE HERE",
                f'{indent}raise NotImplementedError("Exercise {exercise}: write your solution here")',
            ]
        return [f"# YOUR CODE HERE (Exercise {exercise})"]

    return stub


def _replace_regions(
    lines: list[str], markers: tuple[str, str], replacement: Callable[[str], list[str]], context: str
) -> list[str]:
    """Replace every region from a ``begin`` line to an ``end`` line with ``replacement(indent of begin)``."""
    begin, end = markers
    out: list[str] = []
    opened: int | None = None
    for number, line in enumerate(lines):
        if begin in line:
            if opened is not None:
                raise ExerciseMarkupError(f"{context}, line {number + 1}: {begin!r} again before {end!r}.")
            opened = number
            out += replacement(line[: len(line) - len(line.lstrip())])
        elif end in line:
            if opened is None:
                raise ExerciseMarkupError(f"{context}, line {number + 1}: {end!r} without {begin!r}.")
            opened = None
        elif opened is None:
            out.append(line)
    if opened is not None:
        raise ExerciseMarkupError(f"{context}, line {opened + 1}: {begin!r} is never closed by {end!r}.")
    return out


def _outside_fences(lines: list[str]) -> list[str]:
    """The markdown lines that are not inside a fenced block (``` or :::)."""
    out, fence = [], None
    for line in lines:
        stripped = line.strip()
        if fence is not None:
            fence = None if stripped == fence else fence
        elif opening := FENCE.match(stripped):
            fence = opening.group(1)
        else:
            out.append(line)
    return out


def _student_markdown(
    source: str, exercise: str | None, stub: Collection[str] | None, context: str
) -> tuple[str, str | None, list[str]]:
    """Follow the exercise headings; replace the solution admonitions of stubbed exercises.

    Returns the new source, the exercise open at the end of the cell and the exercises stubbed here."""
    if SOLUTION[0] in source or HIDDEN_TESTS[0] in source:
        raise ExerciseMarkupError(
            f"{context}: solution markers belong in code cells; in markdown, put the "
            "answer in a ```{admonition} Solution block."
        )
    out, stubbed, fence, skipping = [], [], None, False
    for line in source.splitlines():
        stripped = line.strip()
        if fence is not None:  # inside a fenced block: only its closing fence matters
            if stripped == fence:
                fence = None
                if skipping:
                    skipping = False
                    continue
            if not skipping:
                out.append(line)
            continue
        if HEADING.match(line):
            match = EXERCISE_HEADING.match(line)
            exercise = match.group(1) if match else None
        opening = FENCE.match(stripped)
        if opening:
            fence = opening.group(1)
            if SOLUTION_ADMONITION.match(stripped):
                if exercise is None:
                    raise ExerciseMarkupError(f"{context}: a Solution admonition outside any exercise.")
                if stub is None or exercise in stub:
                    out.append(ANSWER_PLACEHOLDER)
                    stubbed.append(exercise)
                    skipping = True
                    continue
        out.append(line)
    if fence is not None:
        raise ExerciseMarkupError(f"{context}: the fenced block opened with {fence!r} is never closed.")
    return "\n".join(out), exercise, stubbed


def chapters_of(assignment: Assignment, notebooks: list[Path]) -> list[Path]:
    """The notebooks among ``notebooks`` that hold the assignment's exercises (chapter 02 is 02_*.ipynb;
    instructor page; ``make student ASSIGNMENT=A2``)."""
    chosen = []
    for number in assignment.chapters:
        matches = [notebook for notebook in notebooks if notebook.name.startswith(f"{number}_")]
        if not matches:
            raise ExerciseMarkupError(
                f"Assignment {assignment.name} asks for exercises of chapter {number}, but no "
                f"notebook {number}_*.ipynb is among {', '.join(map(str, notebooks))}."
            )
        chosen += matches
    return chosen


def write_student_versions(notebooks: list[Path], out: Path, assignment: Assignment | None = None) -> list[Path]:
    """Write the student version of each notebook (of the assignment's chapters only, with one) into ``out``
    (instructor page; ``make student``)."""
    if assignment is not None:
        notebooks = chapters_of(assignment, notebooks)
    out.mkdir(parents=True, exist_ok=True)
    written, found = [], set()
    for notebook in notebooks:
        nb = nbformat.read(notebook, as_version=4)
        exercises = exercise_ids(nb)
        found.update(exercises)
        stub = None if assignment is None else set(assignment.points) & set(exercises)
        nbformat.write(student_notebook(nb, stub, where=str(notebook)), out / notebook.name)
        to_do = exercises if stub is None else [e for e in exercises if e in stub]
        examples = [e for e in exercises if e not in to_do]
        print(
            f"{out / notebook.name}: exercises {', '.join(to_do) or 'none'}"
            + (f"; worked examples {', '.join(examples)}" if examples else "")
        )
        written.append(out / notebook.name)
    missing = sorted(set(assignment.points) - found) if assignment else []
    if missing:
        raise ExerciseMarkupError(
            f"Assignment {assignment.name} asks for {', '.join(missing)}, which no chapter "
            "has a '### Exercise N.M' heading for."
        )
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.instructor.student`` (``make student``): write the student versions (instructor page)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help=f"default: chapters/{CHAPTER_GLOB}")
    parser.add_argument("--assignment", help="an assignment of the config file; default: every exercise")
    parser.add_argument("--config", type=Path, default=Path("assignments.yml"))
    parser.add_argument("--out", type=Path, help="default: _build/student (_build/student/ASSIGNMENT with one)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    notebooks = args.notebooks or sorted(Path("chapters").glob(CHAPTER_GLOB))
    if not notebooks:
        parser.error(f"no chapters/{CHAPTER_GLOB} here: run from the repository root, or name the notebooks.")
    try:
        assignment = load_assignment(args.config, args.assignment) if args.assignment else None
        out = args.out or Path("_build/student", *([assignment.name] if assignment else []))
        written = write_student_versions(notebooks, out, assignment)
    except ExerciseMarkupError as error:
        parser.error(str(error))
    print(f"{len(written)} student notebook(s) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
