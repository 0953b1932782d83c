"""Instructor workflow: the chapters' solutions pass their checks, student versions keep no solution
and no hidden test, assignments are configuration, and the grader turns checks into points."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from nbformat import NotebookNode

from course_lib import checks
from course_lib.checks import EXERCISES, check
from course_lib.instructor.grade import grade_tables
from course_lib.instructor.student import (
    SOLUTION,
    Assignment,
    ExerciseMarkupError,
    exercise_cells,
    exercise_ids,
    load_assignment,
    main,
    student_notebook,
    write_student_versions,
)

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))
SOLUTION_ADMONITION = re.compile(r"^(`{3,}|:{3,})\{admonition\} Solution.*?^\1$", re.MULTILINE | re.DOTALL)


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(checks, "results", {})
    monkeypatch.delenv(checks.RESULTS_ENV, raising=False)


def read(notebook: Path) -> NotebookNode:
    return nbformat.read(notebook, as_version=4)


def text_of(nb: NotebookNode) -> str:
    return "\n".join(cell.source for cell in nb.cells)


def solution_functions(nb: NotebookNode) -> dict[str, str]:
    """Exercise id -> the source of its function cell (a ``def`` whose body is the marked solution)."""
    return {
        exercise: cell.source
        for exercise, cell in exercise_cells(nb)
        if exercise and cell.cell_type == "code" and cell.source.startswith("def ") and SOLUTION[0] in cell.source
    }


def solution_only_lines(nb: NotebookNode) -> set[str]:
    """Lines that occur in the notebook's solutions (code regions and Solution admonitions) and nowhere else."""
    inside, outside = set(), set()
    for cell in nb.cells:
        in_region = False
        source = cell.source
        if cell.cell_type == "markdown":
            inside.update(
                line.strip()
                for block in SOLUTION_ADMONITION.finditer(source)
                for line in block.group(0).splitlines()[1:-1]
            )
            source = SOLUTION_ADMONITION.sub("", source)
        for line in source.splitlines():
            if SOLUTION[0] in line or SOLUTION[1] in line:
                in_region = SOLUTION[0] in line
            else:
                (inside if in_region else outside).add(line.strip())
    return {line for line in inside - outside if line}


def exercise_notebook() -> NotebookNode:
    """A tiny chapter in the course's exercise format: a checked exercise and a discussion."""
    new_code, new_markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        new_markdown("# 2. A tiny chapter"),
        new_code('profile = "auto"', metadata={"tags": ["parameters"]}),
        new_markdown("### Exercise 2.1: the closed-form KL\nWrite `my_kl(mu, logvar)`."),
        new_code(
            'import torch\n\n\ndef my_kl(mu, logvar):\n    """KL per image."""\n    ### BEGIN SOLUTION\n'
            "    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)\n    ### END SOLUTION",
            execution_count=3,
            outputs=[nbformat.v4.new_output("stream", text="left over\n")],
        ),
        new_code(
            'from course_lib.checks import check\n\nmy_kl = check("2.1", my_kl)\n### BEGIN HIDDEN TESTS\n'
            "assert my_kl(torch.zeros(1, 2), torch.zeros(1, 2)).item() == 0\n### END HIDDEN TESTS"
        ),
        new_code(
            '### BEGIN HIDDEN TESTS\nfrom course_lib.checks import assert_passed\n\nassert_passed("2.1")\n'
            "### END HIDDEN TESTS",
            metadata={"tags": ["remove-cell"]},
        ),
        new_markdown(
            "### Exercise 2.3 (discussion): why sum?\n\n:::{admonition} Solution\n:class: dropdown\n"
            "Because a mean would weigh the KL 784 times more.\n:::"
        ),
        new_code('### BEGIN SOLUTION\nanswer = "784"\n### END SOLUTION'),
        new_markdown("## Summary\nThe end."),
    ]
    return nb


# --- the chapters and their checks ---------------------------------------------------------


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_chapter_solutions_pass_their_checks(notebook, capsys):
    nb = read(notebook)
    functions = solution_functions(nb)
    checked = [exercise for exercise in exercise_ids(nb) if exercise in EXERCISES]
    assert sorted(functions) == checked, "every checked exercise needs one solution function, and vice versa"
    for exercise, source in functions.items():
        namespace = {"math": math, "np": np, "torch": torch, "F": torch.nn.functional}  # the chapters' imports
        exec(source, namespace)
        solution = namespace[re.match(r"def (\w+)", source).group(1)]
        assert check(exercise, solution) is solution, capsys.readouterr().out


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_each_check_cell_checks_its_own_exercise(notebook):
    calls = [
        (exercise, called)
        for exercise, cell in exercise_cells(read(notebook))
        if cell.cell_type == "code"
        for called in re.findall(r'check\("([\d.]+)"', cell.source)
    ]
    assert all(exercise == called for exercise, called in calls), calls
    assert {called for _, called in calls} == {e for e in exercise_ids(read(notebook)) if e in EXERCISES}


# --- student versions -------------------------------------------------------------------------


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_student_version_keeps_no_solution_and_no_hidden_test(notebook):
    nb = read(notebook)
    student = student_notebook(nb, where=notebook.name)
    text = text_of(student)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "{admonition} Solution", "assert_passed"):
        assert marker not in text, f"{notebook.name}: {marker!r} reached the student version"
    leaked = solution_only_lines(nb) & {line.strip() for line in text.splitlines()}
    assert not leaked, f"{notebook.name}: solution lines in the student version: {leaked}"
    for exercise, source in solution_functions(nb).items():
        assert source.splitlines()[0] in text and source.splitlines()[1] in text  # signature and docstring
        assert f'raise NotImplementedError("Exercise {exercise}: write your solution here")' in text


def test_stubs_placeholders_hidden_tests_and_outputs():
    nb = exercise_notebook()
    student = student_notebook(nb)
    text = text_of(student)
    assert (
        'def my_kl(mu, logvar):\n    """KL per image."""\n    # YOUR CODE HERE\n    raise NotImplementedError(' in text
    )
    assert 'my_kl = check("2.1", my_kl)' in text and "assert my_kl" not in text and "assert_passed" not in text
    assert len(student.cells) == len(nb.cells)  # the hidden-tests-only cell went, the student note came
    assert "Your exercises in this notebook: 2.1, 2.3" in student.cells[1].source
    assert "784 times" not in text and "**Your answer.**" in text
    assert "# YOUR CODE HERE (Exercise 2.3)" in text and 'answer = "784"' not in text
    assert all(
        cell.outputs == [] and cell.execution_count is None for cell in student.cells if cell.cell_type == "code"
    )
    assert nb.cells[3].outputs, "the instructor's notebook itself is left alone"


def test_exercises_outside_the_assignment_stay_as_worked_examples():
    text = text_of(student_notebook(exercise_notebook(), stub={"2.3"}))
    assert "return 0.5 * (mu.pow(2)" in text and "BEGIN SOLUTION" in text
    assert "HIDDEN TESTS" not in text, "hidden tests never reach students"
    assert 'answer = "784"' not in text and "**Your answer.**" in text


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda nb: nb.cells[3].update(source=nb.cells[3].source.replace("    ### END SOLUTION", "")),
            "cell 3, line 6: '### BEGIN SOLUTION' is never closed",
        ),
        (
            lambda nb: nb.cells.append(nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")),
            "cell 9: a solution outside any exercise",
        ),
        (
            lambda nb: nb.cells[4].update(source="### END HIDDEN TESTS"),
            "cell 4, line 1: '### END HIDDEN TESTS' without",
        ),
        (
            lambda nb: nb.cells[2].update(source="### Exercise 2.1: x\n### BEGIN SOLUTION\nanswer\n### END SOLUTION"),
            "solution markers belong in code cells",
        ),
    ],
)
def test_broken_markers_are_named_with_their_cell(change, message):
    nb = exercise_notebook()
    change(nb)
    with pytest.raises(ExerciseMarkupError, match=re.escape(message)):
        student_notebook(nb, where="tiny.ipynb")


def test_make_student_writes_every_chapter(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in CHAPTERS]


# --- assignments --------------------------------------------------------------------------------


def write_config(path: Path, exercises: dict[str, float]) -> Path:
    path.write_text(yaml.safe_dump({"assignments": {"HW": {"title": "VAEs", "exercises": exercises}}}))
    return path


def test_swapping_an_assignment_changes_the_stubs_and_the_points(tmp_path):
    config = tmp_path / "assignments.yml"
    records = {
        "ann": {"2.1": {"status": "passed", "message": ""}, "2.2": {"status": "passed", "message": ""}},
        "bob": {"2.1": {"status": "not done", "message": ""}, "2.2": {"status": "failed", "message": "..."}},
    }

    first = load_assignment(write_config(config, {"2.1": 3}), "HW")
    [written] = write_student_versions(CHAPTERS, tmp_path / "first", first)
    text = text_of(read(written))
    assert written.name == "02_vae.ipynb"
    assert '"Exercise 2.1: write your solution here"' in text and "{admonition} Solution" in text
    assert "return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)" in text  # 2.2, a worked example
    grades, _ = grade_tables(records, {}, first)
    assert grades[["2.1", "total", "out of"]].to_dict("index") == {
        "ann": {"2.1": 3, "total": 3, "out of": 3},
        "bob": {"2.1": 0, "total": 0, "out of": 3},
    }

    swapped = load_assignment(write_config(config, {"2.2": 5, "2.3": 1}), "HW")
    [written] = write_student_versions(CHAPTERS, tmp_path / "swapped", swapped)
    text = text_of(read(written))
    assert "return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)" in text  # 2.1, now a worked example
    assert '"Exercise 2.2: write your solution here"' in text and "{admonition} Solution" not in text
    grades, _ = grade_tables(records, {}, swapped)
    assert "2.1" not in grades.columns and grades["2.3"].isna().all()  # 2.3 is a discussion, graded by hand
    assert grades[["2.2", "total", "out of"]].to_dict("index") == {
        "ann": {"2.2": 5, "total": 5, "out of": 5},
        "bob": {"2.2": 0, "total": 0, "out of": 5},
    }


def test_points_table_and_details():
    assignment = Assignment("A2", "VAEs", {"2.1": 4, "2.2": 4, "2.3": 2})
    records = {
        "ann": {"2.1": {"status": "passed", "message": "ok"}, "2.2": {"status": "failed", "message": "std"}},
        "bob": {},
    }
    grades, details = grade_tables(records, {"bob": ["FAILED 02_vae.ipynb: cell In [7] raised ..."]}, assignment)
    assert grades.loc["ann", ["2.1", "2.2", "total", "out of"]].tolist() == [4, 0, 4, 8]
    assert grades.loc["bob", ["total", "notes"]].tolist() == [0, "FAILED 02_vae.ipynb: cell In [7] raised ..."]
    statuses = details.set_index(["student", "exercise"])["status"]
    assert statuses[("bob", "2.1")] == "not run" and statuses[("ann", "2.3")] == "graded by hand"


def test_the_repositorys_assignments_name_existing_exercises(tmp_path):
    config = REPO / "assignments.yml"
    for name in yaml.safe_load(config.read_text())["assignments"]:
        assignment = load_assignment(config, name)
        assert write_student_versions(CHAPTERS, tmp_path / name, assignment)


@pytest.mark.parametrize(
    "content, message",
    [
        ("assignments:\n  HW:\n    exercises:\n      2.1: 3\n", 'quoted strings like "2.1"'),
        ("assignments:\n  HW:\n    exercises:\n      '2.1': lots\n", "needs a number of points"),
        ("assignments:\n  HW:\n    exercises:\n      '9.1': 3\n", "no notebook 09_*.ipynb"),
        ("assignments:\n  HW:\n    exercises:\n      '2.7': 3\n", "asks for 2.7, which no chapter"),
        ("assignments:\n  Other: {exercises: {'2.1': 1}}\n", "has no assignment 'HW'; it has Other"),
    ],
)
def test_configuration_mistakes_say_what_to_fix(tmp_path, content, message):
    config = tmp_path / "assignments.yml"
    config.write_text(content)
    with pytest.raises(ExerciseMarkupError, match=re.escape(message)):
        write_student_versions(CHAPTERS, tmp_path / "out", load_assignment(config, "HW"))


# --- executing student notebooks and grading them -------------------------------------------------


@pytest.fixture
def grade_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ, COURSE_CACHE_DIR=str(tmp_path / "cache"), COURSE_PROGRESS="0")
    env.pop("COURSE_PROFILE", None)
    env.pop(checks.RESULTS_ENV, None)
    return env


def run_grader(args: list[str], env: dict[str, str]) -> pd.DataFrame:
    result = subprocess.run(
        [sys.executable, "-m", "course_lib.instructor.grade", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"grader failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = Path(args[args.index("--out") + 1])
    return pd.read_csv(out / "grades.csv", index_col="student", dtype={"student": str})


STUDENT_RUNS = [  # chapter, the assignment that stubs its exercises, the exercises that have a check
    ("01_autoencoders", "A1", ["1.1"]),
    ("02_vae", "A2", ["2.1", "2.2"]),
    ("03_latent_complexity", "A3", ["3.1"]),
    ("04_cvae", "A4", ["4.1"]),
    ("05_text_encoders", "A5", ["5.1"]),
    ("06_text_cvae", "A6", []),
    ("07_two_stage", "A7", ["7.1"]),
    ("08_latent_analysis", "A8", ["8.1"]),
]


def test_student_runs_cover_every_chapter():
    assert sorted(f"{name}.ipynb" for name, _, _ in STUDENT_RUNS) == sorted(path.name for path in CHAPTERS)


@pytest.mark.notebooks
@pytest.mark.parametrize(("chapter", "assignment", "checked"), STUDENT_RUNS, ids=[run[0] for run in STUDENT_RUNS])
def test_student_chapter_runs_to_the_end_with_its_exercises_not_done(tmp_path, grade_env, chapter, assignment, checked):
    """Every chapter, as a student gets it, executed under smoke by the grader."""
    submitted = tmp_path / "submissions" / "unsolved"
    write_student_versions([REPO / "chapters" / f"{chapter}.ipynb"], submitted)
    grades = run_grader(
        ["--assignment", assignment, "--out", str(tmp_path / "grades"), str(submitted / f"{chapter}.ipynb")], grade_env
    )
    executed = read(tmp_path / "grades" / "executed" / "unsolved" / f"{chapter}.ipynb")
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    for exercise in checked:
        assert f"Exercise {exercise} is not done yet: the rest of the notebook uses the library's reference" in printed
    assert grades.loc["unsolved", [*checked, "total"]].tolist() == [0] * (len(checked) + 1)


@pytest.mark.notebooks
def test_grader_gives_full_points_when_solved_and_none_when_not(tmp_path, grade_env):
    nb = exercise_notebook()
    for student, version in (("solved", nb), ("unsolved", student_notebook(nb))):
        (tmp_path / student).mkdir()
        nbformat.write(version, tmp_path / student / "02_tiny.ipynb")
    config = write_config(tmp_path / "assignments.yml", {"2.1": 4, "2.3": 1})
    grades = run_grader(
        [
            "--assignment",
            "HW",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "grades"),
            str(tmp_path / "solved" / "02_tiny.ipynb"),
            str(tmp_path / "unsolved" / "02_tiny.ipynb"),
        ],
        grade_env,
    )
    assert grades[["2.1", "total", "out of"]].to_dict("index") == {
        "solved": {"2.1": 4, "total": 4, "out of": 4},
        "unsolved": {"2.1": 0, "total": 0, "out of": 4},
    }
    assert grades["2.3"].isna().all()  # a discussion: graded by hand
    details = pd.read_csv(tmp_path / "grades" / "details.csv", dtype={"exercise": str}).set_index(
        ["student", "exercise"]
    )
    assert details.loc[("unsolved", "2.1"), "status"] == "not done"
