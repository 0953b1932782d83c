"""Chapters: committed clean, executable under the smoke profile, and the whole book renders from
the executed copies. How long each chapter took against its 60 s budget is a ratio in the execution
report (printed by ``course_lib.instructor.execute``), not a test: run times depend on the machine's load. The
slow part runs once per session (the session fixtures `executed` and `book_build` are in
conftest.py, shared with the other book tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from course_lib.core.profiles import get_profile

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{notebook.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_notebook_has_a_papermill_parameters_cell(notebook):
    nb = nbformat.read(notebook, as_version=4)
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'profile = "auto"' in tagged[0].source


def _run(command: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_chapter_runs_under_smoke(executed, notebook):
    report = pd.read_csv(executed / "execution_report.csv").set_index("chapter")
    row = report.loc[str(notebook.relative_to(REPO))]
    assert row["status"] == "ok" and row["profile"] == "smoke"
    assert row["of_budget"] == pytest.approx(get_profile("smoke").chapter_budget.fraction(row["seconds"]), abs=0.01)
    assert row["reference_epochs"] > 0  # the runner timed the reference epoch first (20 steps, scaled)
    nb = nbformat.read(executed / notebook.relative_to(REPO), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.book
def test_book_builds_from_executed_chapters(book_build):
    result = book_build.result
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    html = book_build.html
    for notebook in CHAPTERS:
        page = (html / "chapters" / f"{notebook.stem}.html").read_text()
        assert "<img" in page, f"{notebook.stem}: no figure rendered"
        assert "output traceback" not in page and "output stderr" not in page, f"{notebook.stem}: error output"
    assert (html / "index.html").exists()


def run_chapter(tmp_path: Path, name: str, cells: list[str], env: dict[str, str], argument: str | None = None):
    """Write a chapter ``chapters/<name>`` (a parameters cell, then ``cells``) into a fresh book root and
    run ``course_lib.instructor.execute`` on it under smoke; ``argument`` names it (default: its path)."""
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_code_cell('profile = "auto"', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    notebook = tmp_path / "chapters" / name
    notebook.parent.mkdir()
    nbformat.write(nb, notebook)
    (tmp_path / "_config.yml").write_text("title: t\n")
    command = [sys.executable, "-m", "course_lib.instructor.execute", "--profile", "smoke", "--root", str(tmp_path)]
    command += ["--reference-steps", "0"]  # these tests are about failures, not times
    return _run([*command, "--out", str(tmp_path / "out"), argument or str(notebook)], env)


def test_failing_cell_is_named_and_fails_the_run(tmp_path, smoke_env):
    result = run_chapter(tmp_path, "99_broken.ipynb", ["x = 1", "raise ValueError('broken on purpose')"], smoke_env)
    assert result.returncode != 0
    assert "99_broken.ipynb" in result.stderr and "ValueError: broken on purpose" in result.stderr
    assert "In [4]" in result.stderr  # papermill inserts the injected-parameters cell before it
    assert "raise ValueError('broken on purpose')" in result.stderr


def test_a_cell_writing_to_stderr_fails_the_run_naming_the_cell(tmp_path, smoke_env):
    """A stray warning would fail Jupyter Book's strict build after the long rendering step; the runner
    catches it as soon as the chapter finishes, and a warning caught with expected_warnings is not stray."""
    expected = (
        "import warnings\n"
        "from course_lib.core.train import PosteriorCollapseWarning, expected_warnings\n"
        "with expected_warnings(PosteriorCollapseWarning) as caught:\n"
        "    warnings.warn('shown as part of the lesson', PosteriorCollapseWarning)\n"
        "print(caught[0].message)"
    )
    stray = "warnings.warn('nobody expected this', UserWarning)"
    result = run_chapter(tmp_path, "98_stray.ipynb", [expected, stray], smoke_env, argument="98")
    assert result.returncode != 0
    assert "1 chapter(s) failed" in result.stderr
    assert (
        "98_stray.ipynb: cell 4 (In [4], first line: \"warnings.warn('nobody expected this', UserWarning)\")"
        in result.stderr
    )
    assert "UserWarning: nobody expected this" in result.stderr
    assert "shown as part of the lesson" not in result.stderr  # caught: stdout of cell 3, not a failure
    report = pd.read_csv(tmp_path / "out" / "execution_report.csv")
    assert list(report["status"]) == ["stderr"]
