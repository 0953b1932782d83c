"""The headless chapter runner's helpers: failure messages and staging the book sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from course_lib.instructor.execute import (
    ParameterError,
    chapter_parameters,
    failure_summary,
    main,
    output_problems,
    resolve_chapters,
    stage_book,
    stage_unexecuted,
)


class FakePapermillError(Exception):
    """Carries what papermill's PapermillExecutionError carries."""

    def __init__(self, exec_count, ename, evalue):
        super().__init__(f"{ename}: {evalue}")
        self.exec_count, self.ename, self.evalue = exec_count, ename, evalue


def test_failure_summary_names_notebook_and_cell():
    error = FakePapermillError(7, "ValueError", "Expected an image batch of shape [B, 1, 28, 28]")
    summary = failure_summary(Path("chapters/02_vae.ipynb"), error)
    assert summary == (
        "FAILED chapters/02_vae.ipynb: cell In [7] raised ValueError: Expected an image batch of shape [B, 1, 28, 28]"
    )


def test_failure_summary_of_an_error_without_cell_information():
    summary = failure_summary(Path("chapters/01_autoencoders.ipynb"), RuntimeError("Kernel died"))
    assert summary == "FAILED chapters/01_autoencoders.ipynb: a cell raised RuntimeError: Kernel died"


def make_book_root(root: Path, config: dict) -> None:
    (root / "book" / "part").mkdir(parents=True)
    (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "book" / "part" / "notes.md").write_text("# Notes\n")
    (root / "chapters").mkdir()
    (root / "chapters" / "01.ipynb").write_text("{}")


def test_stage_book_copies_sources_and_turns_execution_off(tmp_path):
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    original = {"title": "Latent spaces", "execute": {"execute_notebooks": "cache", "timeout": 3600}}
    make_book_root(root, original)

    stage_book(root, out)

    assert (out / "_toc.yml").read_text() == "format: jb-book\nroot: book/intro\n"
    assert (out / "book" / "intro.md").read_text() == "# Intro\n"
    assert (out / "book" / "part" / "notes.md").is_file()
    assert not (out / "chapters").exists()  # executed chapters are written there by the runner, not copied
    staged = yaml.safe_load((out / "_config.yml").read_text())
    assert staged["execute"]["execute_notebooks"] == "off"
    assert staged["execute"]["timeout"] == 3600  # the rest of the configuration is kept
    assert staged["title"] == "Latent spaces"
    assert yaml.safe_load((root / "_config.yml").read_text()) == original  # the source is untouched


def test_stage_book_adds_a_missing_execute_section(tmp_path):
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    make_book_root(root, {"title": "Latent spaces"})
    stage_book(root, out)
    assert yaml.safe_load((out / "_config.yml").read_text())["execute"] == {"execute_notebooks": "off"}


def test_stage_book_over_an_earlier_staging(tmp_path):
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    make_book_root(root, {"title": "v1"})
    stage_book(root, out)
    (root / "_config.yml").write_text(yaml.safe_dump({"title": "v2"}))
    (root / "book" / "intro.md").write_text("# Intro v2\n")
    stage_book(root, out)
    assert yaml.safe_load((out / "_config.yml").read_text())["title"] == "v2"
    assert (out / "book" / "intro.md").read_text() == "# Intro v2\n"


def test_execution_page_lists_chapters_with_links_and_the_machine(tmp_path):
    import pandas as pd

    from course_lib.instructor.execute import write_execution_page

    out = tmp_path / "out"
    out.mkdir()
    (out / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: chapters/01_ae\n")
    report = pd.DataFrame(
        [
            {
                "chapter": "chapters/01_ae.ipynb",
                "profile": "smoke",
                "seconds": 12.34,
                "reference_epochs": 1.54,
                "of_budget": 0.21,
                "status": "ok",
                "output": "chapters/01_ae.ipynb",
            },
            {
                "chapter": "chapters/99_new.ipynb",
                "profile": "smoke",
                "seconds": 3.0,
                "reference_epochs": float("nan"),
                "of_budget": float("nan"),
                "status": "failed",
                "output": "chapters/99_new.ipynb",
            },
        ]
    )
    machine = {"date": "2026-01-01 00:00 UTC", "machine": "Linux x86_64, 2 CPU cores", "device": "CPU only"}
    page = write_execution_page(out, report, machine).read_text()
    assert page.startswith("# Execution report\n")
    assert "| {doc}`/chapters/01_ae` | `smoke` | 12.3 | 1.5 | 0.21 | ok |" in page
    assert "| `chapters/99_new.ipynb` | `smoke` | 3.0 |  |  | failed |" in page  # not in the toc: no link
    assert "A *reference epoch* is one epoch of chapter 02's conv VAE" in page
    assert "Total: 15.3 s for 2 chapter(s), 1 of them ran to the end." in page
    assert "| device | CPU only |" in page and "2 CPU cores" in page


def test_machine_description_names_date_cores_and_device():
    from course_lib.instructor.execute import machine_description

    machine = machine_description()
    assert set(machine) == {"date", "machine", "device", "software"}
    assert "CPU cores" in machine["machine"] and "PyTorch" in machine["software"]


def test_budget_summary_names_chapters_over_budget_without_failing():
    import pandas as pd

    from course_lib.core.profiles import get_profile
    from course_lib.instructor.execute import budget_summary

    report = pd.DataFrame(
        [
            {"chapter": "chapters/01_ae.ipynb", "seconds": 30.0, "of_budget": 0.5},
            {"chapter": "chapters/04_cvae.ipynb", "seconds": 66.0, "of_budget": 1.1},
        ]
    )
    summary = budget_summary(report, get_profile("smoke")).splitlines()
    assert summary == [
        "total 96.0 s for 2 chapter(s)",
        "over budget: chapters/04_cvae.ipynb took 66.0 s (1.10 of 60 s)",
    ]
    cpu = budget_summary(report.assign(of_budget=float("nan")), get_profile("cpu"), reference=4.8)
    assert (
        cpu
        == "total 96.0 s (20.0 reference epochs of 4.8 s) for 2 chapter(s), 0.10 of the book budget of 200 reference epochs"
    )
    unmeasured = budget_summary(report.assign(of_budget=float("nan")), get_profile("cpu"))
    assert unmeasured == "total 96.0 s for 2 chapter(s) (the book budget is 200 reference epochs)"
    part = budget_summary(report.assign(of_budget=float("nan")), get_profile("cpu"), whole_book=False, reference=4.8)
    assert part == "total 96.0 s (20.0 reference epochs of 4.8 s) for 2 chapter(s)"  # the book's budget: not a part


def test_the_execution_page_says_what_the_budgets_mean_here():
    from course_lib.core.profiles import get_profile
    from course_lib.instructor.execute import reference_rows

    rows = reference_rows(get_profile("cpu"), 38.7)
    assert rows["reference epoch"].startswith("38.7 s (chapter 02's conv VAE")
    assert (
        rows["cpu budgets"]
        == "40 reference epochs = 26 min per chapter here; 200 reference epochs = 129 min for the book here"
    )
    assert "smoke budgets" not in reference_rows(get_profile("smoke"), 38.7)  # smoke's budget is in seconds
    assert reference_rows(get_profile("cpu"), None) == {}


def test_budgets_in_seconds_and_in_reference_epochs():
    from course_lib.core.profiles import Budget, get_profile

    assert Budget(60).fraction(30) == 0.5 and str(Budget(60)) == "60 s"
    cpu = get_profile("cpu").chapter_budget
    assert str(cpu) == "40 reference epochs" and cpu.fraction(200, reference_s=10) == 0.5
    assert cpu.fraction(200) != cpu.fraction(200)  # NaN: no reference epoch measured


def executed_notebook(path: Path, outputs_per_cell: list[list]) -> Path:
    """An executed notebook as papermill writes it: the injected-parameters cell first."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter")]
    for number, outputs in enumerate(outputs_per_cell, start=1):
        nb.cells.append(nbformat.v4.new_code_cell(f"step_{number}()\nmore()", execution_count=number, outputs=outputs))
    nbformat.write(nb, path)
    return path


def test_output_problems_names_cell_source_and_the_first_line_of_stderr(tmp_path):
    stdout = nbformat.v4.new_output("stream", name="stdout", text="epoch 1 | loss 3.0\n")
    stderr = nbformat.v4.new_output(
        "stream",
        name="stderr",
        text="\n/x/train.py:42: PosteriorCollapseWarning: only 0 of 64 active\n  warnings.warn(\n",
    )
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="bad size", traceback=[])
    path = executed_notebook(tmp_path / "ch.ipynb", [[stdout], [stdout, stderr], [], [error]])
    assert output_problems(path) == [
        "cell 3 (In [2], first line: 'step_2()') wrote to stderr: "
        "'/x/train.py:42: PosteriorCollapseWarning: only 0 of 64 active'",
        "cell 5 (In [4], first line: 'step_4()') raised ValueError: bad size",
    ]


def test_output_problems_of_a_clean_notebook_is_empty(tmp_path):
    display = nbformat.v4.new_output("display_data", data={"text/plain": "figure"})
    assert output_problems(executed_notebook(tmp_path / "ch.ipynb", [[display], []])) == []


def test_chapters_by_number_or_path(tmp_path):
    root = tmp_path / "repo"
    (root / "chapters").mkdir(parents=True)
    for name in ("01_ae.ipynb", "07_two_stage.ipynb", "notes.ipynb"):
        (root / "chapters" / name).write_text("{}")
    assert resolve_chapters(["7", "01"], root) == [
        root / "chapters" / "07_two_stage.ipynb",
        root / "chapters" / "01_ae.ipynb",
    ]
    assert resolve_chapters([str(root / "chapters" / "notes.ipynb")], root) == [root / "chapters" / "notes.ipynb"]
    with pytest.raises(SystemExit, match=r"No chapter '09'.*01_ae.ipynb, 07_two_stage.ipynb"):
        resolve_chapters(["09"], root)


def test_stage_unexecuted_copies_only_the_chapters_not_run(tmp_path):
    root, out = tmp_path / "repo", tmp_path / "out"
    (root / "chapters").mkdir(parents=True)
    for name in ("01_ae.ipynb", "02_vae.ipynb"):
        (root / "chapters" / name).write_text(name)
    (out / "chapters").mkdir(parents=True)
    (out / "chapters" / "02_vae.ipynb").write_text("executed")
    copied = stage_unexecuted(root, out, [root / "chapters" / "02_vae.ipynb"])
    assert copied == [out / "chapters" / "01_ae.ipynb"]
    assert (out / "chapters" / "01_ae.ipynb").read_text() == "01_ae.ipynb"
    assert (out / "chapters" / "02_vae.ipynb").read_text() == "executed"  # the executed copy is kept


def parameters_chapter(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    source = (
        'profile = "auto"\nseed = 0\nlatent_dim = 20  # size\nsigma = 0.1\nencoder = "bert"\nsteps = None\nshow = True'
    )
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})]
    path = tmp_path / "09_example.ipynb"
    nbformat.write(nb, path)
    return path


def test_chapter_parameters_are_read_with_the_type_of_their_default(tmp_path):
    chapter = parameters_chapter(tmp_path)
    given = {"latent_dim": "32", "sigma": "1", "encoder": "42", "steps": "[1, 2]", "show": "false"}
    assert chapter_parameters(chapter, given) == {
        "latent_dim": 32,
        "sigma": 1.0,
        "encoder": "42",  # a string parameter takes the text as typed
        "steps": [1, 2],  # default None: nothing to check against
        "show": False,
    }


@pytest.mark.parametrize(
    "given, message",
    [
        (
            {"latentdim": "32"},
            r"09_example.ipynb has no parameter 'latentdim'. Its parameters: profile .*latent_dim \(default 20\)",
        ),
        (
            {"latent_dim": "ten"},
            r"latent_dim takes a whole number \(default 20\), got 'ten'. For example: -p latent_dim 20",
        ),
        ({"latent_dim": "2.5"}, r"latent_dim takes a whole number"),
        ({"sigma": "small"}, r"sigma takes a number \(default 0.1\), got 'small'"),
        ({"show": "1"}, r"show takes a True or False"),
    ],
)
def test_a_wrong_chapter_parameter_is_named_with_the_valid_ones(tmp_path, given, message):
    with pytest.raises(ParameterError, match=message):
        chapter_parameters(parameters_chapter(tmp_path), given)


def test_the_runner_refuses_a_wrong_parameter_before_running_anything(tmp_path, capsys):
    chapter = parameters_chapter(tmp_path)
    assert main([str(chapter), "--root", str(tmp_path), "--out", str(tmp_path / "out"), "-p", "latent_dim", "ten"]) == 2
    assert "latent_dim takes a whole number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def one_cell_chapter(tmp_path: Path, name: str, source: str) -> tuple[Path, Path]:
    """A book root holding ``chapters/<name>.ipynb``: a parameters cell (``profile``) and ``source``."""
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell('profile = "auto"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(source),
    ]
    root = tmp_path / "repo"
    root.mkdir()
    make_book_root(root, {"title": "t"})
    chapter = root / "chapters" / f"{name}.ipynb"
    nbformat.write(nb, chapter)
    return root, chapter


def test_the_runner_runs_chapters_headless_without_progress_bars_or_widgets(tmp_path):
    record = tmp_path / "environment.txt"
    root, chapter = one_cell_chapter(
        tmp_path,
        "09_headless",
        "import os, pathlib\n"
        f"pathlib.Path({str(record)!r}).write_text("
        "os.environ.get('COURSE_PROGRESS', '') + os.environ.get('COURSE_WIDGETS', ''))",
    )
    out = tmp_path / "out"
    assert main([str(chapter), "--root", str(root), "--out", str(out), "--reference-steps", "0"]) == 0
    assert record.read_text() == "00"  # the kernel saw both switches off


def test_a_dry_run_runs_the_gpu_profile_on_a_cpu_with_memory_in_the_report(tmp_path, monkeypatch):
    """--profile gpu --dry-run 2: the chapter's own sizes, 2 steps per epoch, a temporary cache, and
    the kernel's peak host memory and the model's device memory in the report."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_DRY_RUN", raising=False)
    record = tmp_path / "record.json"
    root, chapter = one_cell_chapter(
        tmp_path,
        "09_dry",
        (
            "import json, pathlib, torch\n"
            "from course_lib import get_profile\n"
            "from course_lib.core.losses import ReconstructionLoss\n"
            "from course_lib.core.train import checkpoint_path, fit\n"
            "from course_lib.data.images import TensorLoader\n"
            "from course_lib.models import mlp_autoencoder\n"
            "P = get_profile(profile)\n"
            "images = torch.rand(4096, 1, 28, 28)\n"
            "train = TensorLoader(images, None, P.batch_size)\n"
            "history = fit(mlp_autoencoder(latent_dim=4), train, ReconstructionLoss(), P.epochs,\n"
            "              checkpoint=checkpoint_path('ch09_toy', P.name), verbose=False)\n"
            f"pathlib.Path({str(record)!r}).write_text(json.dumps({{'profile': P.name, 'epochs': len(history),\n"
            "    'checkpoints': sorted(p.name for p in checkpoint_path('ch09_toy', P.name).parent.iterdir())}))"
        ),
    )
    out = tmp_path / "out"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main([str(chapter), "--root", str(root), "--out", str(out), "--profile", "gpu", "--dry-run", "2"]) == 0
    seen = json.loads(record.read_text())
    assert seen == {"profile": "gpu", "epochs": 2, "checkpoints": ["ch09_toy.dry-run.pt"]}
    assert not (tmp_path / "cache" / "checkpoints").exists()  # nothing of the dry run in the real cache
    report = pd.read_csv(out / "execution_report.csv")
    assert report.loc[0, "status"] == "ok" and report.loc[0, "peak_host_mb"] > 50  # a kernel with torch
    assert report.loc[0, "largest_model"] == "Autoencoder at batch 128"
    cells = pd.read_csv(out / "cell_times.csv")  # every code cell with papermill's duration, slowest first
    assert len(cells) == 3 and cells["seconds"].is_monotonic_decreasing  # (with papermill's injected cell)
    assert cells.iloc[0]["first_line"] == "import json, pathlib, torch"  # the training cell is the slowest
    data_mb = 4096 * 28 * 28 * 4 / 2**20  # the loader's images, kept on the device
    assert data_mb < report.loc[0, "device_mb"] < data_mb + 20


def test_the_runner_leaves_the_callers_environment_as_it_was(tmp_path, monkeypatch):
    """In one process with other tests: a dry run's COURSE_DRY_RUN must not cut their training short."""
    monkeypatch.delenv("COURSE_DRY_RUN", raising=False)
    root, chapter = one_cell_chapter(tmp_path, "09_env", "x = 1")
    before = dict(os.environ)
    out = tmp_path / "out"
    main([str(chapter), "--root", str(root), "--out", str(out), "--dry-run", "2", "--checkpoints", str(tmp_path)])
    assert dict(os.environ) == before
