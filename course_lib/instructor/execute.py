"""Execute chapters headlessly with papermill and stage them for Jupyter Book (instructor tool).

    python -m course_lib.instructor.execute --profile smoke --out _build/executed chapters/*.ipynb

Each chapter runs with its ``profile`` parameter set; the executed copies, the book sources and a
``execution_report.csv`` (chapter, profile, seconds, status, and ``of_budget``: seconds divided by
the profile's time budget per chapter, DESIGN's "every notebook under 60 s" for ``smoke``) are
written under ``--out``, ready for
``jupyter-book build``. The staged ``book/execution.md`` is replaced by a page with the same table,
the date and the machine (the committed page, used by a plain ``jupyter-book build .``, shows
Jupyter Book's own execution table instead). A chapter whose cell raises is reported with the cell
that failed, and the command exits non-zero. So does a chapter that ran to the end but left stderr
or an error in an output (a stray warning, a logged message): Jupyter Book's strict build would stop
on it after the long rendering step, so it is caught as soon as the chapter finishes, with its cell.
A chapter that expects a warning catches it and shows it as part of the lesson
(:func:`course_lib.core.train.expected_warnings`). Time budgets are reported as ratios, not enforced: a
chapter over budget is listed at the end but does not fail the run (run times depend on the machine
and on its load).

``cell_times.csv`` beside the report has every code cell's seconds (papermill's metadata), slowest
first per chapter; the three slowest of each chapter are printed as it finishes.

``--dry-run STEPS`` runs every chapter at the profile's sizes and code paths but trains each model
only STEPS steps per epoch for 2 epochs (:mod:`course_lib.core.dry_run`), in a temporary cache that
shares only the data, and adds to the report each chapter's peak host memory (also in a normal run)
and an estimate of the device memory its largest model needs: ``--profile gpu --dry-run 2`` checks
the gpu profile on a CPU.

Chapters are named by path or by number (``07``). ``--checkpoints DIR`` trains every model into DIR
(empty: from scratch) instead of the checkpoint cache, and ``--stage-unexecuted`` copies the chapters
that were not run, without outputs, so that the staged book is complete: ``make book-check
CHAPTERS="07"`` uses both to check one chapter on the path the book's users take.

Imports course_lib.core (profiles, io) and course_lib.instructor.student.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

from course_lib.core.io import cache_dir
from course_lib.core.profiles import Profile, get_profile
from course_lib.instructor.student import CHAPTER_GLOB

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
EXECUTION_PAGE = Path("book") / "execution.md"  # replaced in the staged copy by write_execution_page


class ParameterError(ValueError):
    """A ``-p NAME VALUE`` that a chapter's parameters cell does not define, or of the wrong type
    (instructor page)."""


def chapter_parameters(notebook: Path, given: dict[str, str]) -> dict[str, object]:
    """``given`` (names and the strings typed after ``-p``) checked against ``notebook``'s parameters
    cell, before anything runs (instructor page). A value is read as YAML (``32`` is a number,
    ``cpu`` a string) and must have the type of the cell's default: an int where the default is an
    int, a number where it is a float; a string parameter takes the text as typed."""
    import papermill as pm

    defined = pm.inspect_notebook(str(notebook))
    valid = ", ".join(f"{name} (default {info['default']})" for name, info in defined.items())
    checked: dict[str, object] = {}
    for name, text in given.items():
        if name not in defined:
            raise ParameterError(f"{notebook.name} has no parameter {name!r}. Its parameters: {valid}.")
        default = _default_value(defined[name]["default"])
        value = yaml.safe_load(text)
        if isinstance(default, str):
            value = text
        elif isinstance(default, int):  # bool included: True must stay a bool, 3 an int
            if type(value) is not type(default):
                raise ParameterError(_wrong_type(notebook, name, text, default))
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(_wrong_type(notebook, name, text, default))
            value = float(value)
        checked[name] = value
    return checked


def _default_value(source: str) -> object:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):  # an expression: no type to check against
        return None


def _wrong_type(notebook: Path, name: str, text: str, default: object) -> str:
    kind = {bool: "True or False", int: "whole number", float: "number"}[type(default)]
    return (
        f"{notebook.name}: parameter {name} takes a {kind} (default {default!r}), "
        f"got {text!r}. For example: -p {name} {default!r}."
    )


def execute_chapter(
    notebook: Path,
    output: Path,
    profile: str,
    timeout: int,
    parameters: dict[str, object] | None = None,
    memory: PeakMemory | None = None,
) -> float:
    """Run one notebook with papermill; return its wall time in seconds (instructor page; ``make book``).
    ``memory``: a :class:`PeakMemory` that watches the kernel meanwhile."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with memory or contextlib.nullcontext():
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters={**(parameters or {}), "profile": profile},
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout,
        )
    return time.perf_counter() - started


class PeakMemory:
    """The largest resident memory of this process's children (the chapter's kernel and what it starts),
    sampled every ``interval`` seconds while the ``with`` block runs: :attr:`megabytes` (instructor page)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.megabytes = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            resident = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a process that ended between listing and reading
                    resident += child.memory_info().rss
            self.megabytes = max(self.megabytes, resident / 2**20)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def cell_times(executed: Path, chapter: str) -> pd.DataFrame:
    """Seconds of every code cell of an executed notebook, from papermill's metadata: chapter, cell
    (1-based, as in the executed copy), its first line, seconds; slowest first (instructor page)."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    rows = [
        {
            "chapter": chapter,
            "cell": number,
            "first_line": _first_line("".join(cell.source))[:80],
            "seconds": round(float(cell.metadata.get("papermill", {}).get("duration") or 0.0), 1),
        }
        for number, cell in enumerate(notebook.cells, start=1)
        if cell.cell_type == "code"
    ]
    return pd.DataFrame(rows, columns=["chapter", "cell", "first_line", "seconds"]).sort_values(
        "seconds", ascending=False, kind="stable"
    )


def output_problems(executed: Path) -> list[str]:
    """Each stderr stream or error output of an executed notebook: its cell (1-based, counted as in the
    executed copy, where papermill's injected-parameters cell comes first), the cell's first line and
    the output's first line. Jupyter Book's strict build fails on each of them (instructor page; ``make book``)."""
    import nbformat

    problems = []
    notebook = nbformat.read(executed, as_version=4)
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                what = f"wrote to stderr: {_first_line(output.get('text', ''))!r}"
            elif output.get("output_type") == "error":
                what = f"raised {output.get('ename')}: {output.get('evalue')}"
            else:
                continue
            problems.append(
                f"cell {number} (In [{cell.get('execution_count')}], first line: {_first_line(cell.source)!r}) {what}"
            )
    return problems


def resolve_chapters(names: list[str], root: Path) -> list[Path]:
    """Chapter notebooks from paths or numbers (``7``, ``07``); an unknown name lists the chapters
    (instructor page; ``make book-check``)."""
    available = sorted((root / "chapters").glob(CHAPTER_GLOB))
    paths = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            paths.append(path)
            continue
        matches = [c for c in available if name.isdigit() and c.name.startswith(f"{int(name):02d}_")]
        if len(matches) != 1:
            listing = ", ".join(c.name for c in available) or (
                f"none in {root.resolve() / 'chapters'}: run from the repository root, or pass --root"
            )
            raise SystemExit(f"No chapter {name!r}: name a notebook path or a chapter number (available: {listing}).")
        paths.append(matches[0])
    return paths


def stage_unexecuted(root: Path, out: Path, executed: list[Path]) -> list[Path]:
    """Copy the chapters that were not executed, as committed (without outputs), into ``out``, so that
    the staged book has every page its table of contents and cross-references name (instructor page;
    ``make book-check``)."""
    done = {path.resolve() for path in executed}
    copied = []
    for chapter in sorted((root / "chapters").glob(CHAPTER_GLOB)):
        if chapter.resolve() not in done:
            target = out / chapter.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(chapter, target)
            copied.append(target)
    return copied


def failure_summary(notebook: Path, error: Exception) -> str:
    """Name the notebook, the cell that raised and its first line (papermill's error carries them;
    instructor page; ``make book``)."""
    cell = getattr(error, "exec_count", None)
    where = f"cell In [{cell}]" if cell is not None else "a cell"
    source = (getattr(error, "source", "") or "").strip().splitlines()
    first_line = f" (first line: {source[0].strip()!r})" if source else ""
    name = getattr(error, "ename", type(error).__name__)
    value = getattr(error, "evalue", str(error))
    return f"FAILED {notebook}: {where}{first_line} raised {name}: {value}"


def stage_book(root: Path, out: Path) -> None:
    """Copy the book sources next to the executed chapters; Jupyter Book must not re-execute them
    (instructor page; ``make book``)."""
    for name in BOOK_SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, out / name)
    config_path = out / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def machine_description() -> dict[str, str]:
    """Date, machine and software of this run, for the execution page (instructor page; ``make book``)."""
    import torch

    from course_lib.core.device import choose_device

    device = choose_device()
    if device.type == "cuda":
        device_text = f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    elif device.type == "mps":
        device_text = "Apple MPS"
    else:
        device_text = "CPU only (no CUDA or MPS device)"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
        "device": device_text,
        "software": f"Python {platform.python_version()}, PyTorch {torch.__version__}",
    }


def _toc_files(out: Path) -> set[str]:
    """Document names listed in the staged _toc.yml (a link to any other page would be a warning)."""

    def walk(node) -> set[str]:
        if isinstance(node, dict):
            found = {str(node["file"])} if "file" in node else set()
            return found | {name for value in node.values() for name in walk(value)}
        if isinstance(node, list):
            return {name for item in node for name in walk(item)}
        return set()

    toc = out / "_toc.yml"
    if not toc.is_file():
        return set()
    data = yaml.safe_load(toc.read_text()) or {}
    return walk(data) | ({str(data["root"])} if "root" in data else set())


def write_execution_page(out: Path, report: pd.DataFrame, machine: dict[str, str]) -> Path:
    """Write the staged ``book/execution.md``: one row per chapter, then the date and the machine
    (instructor page; ``make book``)."""
    documents = _toc_files(out)
    lines = [
        "# Execution report",
        "",
        "How this build of the book executed its chapters: `python -m course_lib.instructor.execute` ran each",
        "notebook with papermill, then Jupyter Book rendered the executed copies without running them",
        "again. The same numbers are in `execution_report.csv` next to the executed chapters.",
        "",
        "| chapter | profile | seconds | reference epochs | of budget | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in report.itertuples(index=False):
        docname = Path(str(row.output)).with_suffix("").as_posix()
        name = f"{{doc}}`/{docname}`" if docname in documents else f"`{row.chapter}`"
        of_budget = "" if pd.isna(row.of_budget) else f"{row.of_budget:.2f}"
        epochs = getattr(row, "reference_epochs", float("nan"))
        epochs = "" if pd.isna(epochs) else f"{epochs:.1f}"
        lines.append(f"| {name} | `{row.profile}` | {row.seconds:.1f} | {epochs} | {of_budget} | {row.status} |")
    lines += [
        "",
        f"Total: {report['seconds'].sum():.1f} s for {len(report)} chapter(s), "
        f"{(report['status'] == 'ok').sum()} of them ran to the end.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in machine.items()]
    lines += [
        "",
        "A *reference epoch* is one epoch of chapter 02's conv VAE (latent 32) over the 60,000",
        "Fashion-MNIST training images at batch 64, timed on this machine at the start of the run: a",
        "unit that changes much less from machine to machine than seconds do.",
        "",
        "*Of budget* is the chapter's time divided by its profile's budget per chapter: 60 s under",
        "`smoke`, 40 reference epochs under `cpu` (and 200 for the whole book, from an empty cache),",
        "1 h on a Colab T4 under `gpu`. Over 1.00 means over budget on this machine.",
        "",
        "The profile sets data sizes and epochs (see {ref}`the profile table <setup-profiles>`);",
        "run times depend on the machine and on the checkpoint cache: a chapter whose models were",
        "trained by an earlier run with the same profile only reloads them.",
        "",
    ]
    page = out / EXECUTION_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    return page


def measure_reference_epoch(steps: int | None) -> float | None:
    """Seconds of one reference epoch on this machine (:func:`course_lib.instructor.bench.reference_epoch`),
    printed; ``None`` when ``steps`` is 0 or the data is missing (instructor page; ``make book``)."""
    if steps == 0:
        return None
    from course_lib.core.io import DataNotFoundError
    from course_lib.instructor.bench import REFERENCE_STEPS, reference_epoch

    steps = REFERENCE_STEPS if steps is None else steps
    try:
        seconds = reference_epoch(steps=steps)
    except DataNotFoundError as error:
        print(f"reference epoch not measured: {str(error).splitlines()[0]}", flush=True)
        return None
    timed = "the whole epoch" if steps >= REFERENCE_STEPS else f"{steps} of its {REFERENCE_STEPS} steps, scaled"
    print(f"reference epoch: {seconds:.1f} s on this machine ({timed})", flush=True)
    return seconds


def reference_rows(profile: Profile, reference: float | None) -> dict[str, str]:
    """The execution page's lines on the reference epoch: its seconds here, and what the profile's
    budgets in that unit mean in minutes on this machine (instructor page; ``make book``)."""
    if not reference:
        return {}
    rows = {"reference epoch": f"{reference:.1f} s (chapter 02's conv VAE, one epoch of 60,000 images at batch 64)"}
    budgets = [
        f"{budget} = {budget.amount * reference / 60:.0f} min {per} here"
        for budget, per in ((profile.chapter_budget, "per chapter"), (profile.book_budget, "for the book"))
        if budget is not None and budget.in_reference_epochs
    ]
    if budgets:
        rows[f"{profile.name} budgets"] = "; ".join(budgets)
    return rows


def budget_summary(
    report: pd.DataFrame, profile: Profile, whole_book: bool = True, reference: float | None = None
) -> str:
    """One line per chapter over its budget, and the run against the book's budget when it ran every chapter
    (instructor page; ``make book``)."""
    total = report["seconds"].sum()
    lines = [
        f"total {total:.1f} s"
        + (f" ({total / reference:.1f} reference epochs of {reference:.1f} s)" if reference else "")
        + f" for {len(report)} chapter(s)"
    ]
    book = profile.book_budget
    if book is not None and whole_book:
        share = book.fraction(total, reference)
        lines[0] += (
            f" (the book budget is {book})" if math.isnan(share) else f", {share:.2f} of the book budget of {book}"
        )
    over = report[report["of_budget"] > 1]
    lines += [
        f"over budget: {row.chapter} took {row.seconds:.1f} s ({row.of_budget:.2f} of {profile.chapter_budget})"
        for row in over.itertuples(index=False)
    ]
    return "\n".join(lines)


DATA_FOLDERS = ("torchvision", "scenes", "coco", "text_embeddings", "token_features")  # in the course cache
T4_MEMORY_MB = 16 * 1024  # a Colab T4


def dry_run_cache(folder: Path) -> Path:
    """A course cache for a dry run: the real cache's data folders linked in (data is data, however few
    steps are trained on it), nothing of its models, judges or checkpoints (instructor page)."""
    real = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in DATA_FOLDERS:
        (real / name).mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(real / name, target_is_directory=True)
    return folder


def device_estimates(report: Path) -> pd.DataFrame:
    """Per chapter, the largest device-memory estimate of its models in a dry run (the JSON lines of
    :func:`course_lib.core.dry_run.report_memory`) and which model it was (instructor page)."""
    lines = [json.loads(line) for line in report.read_text().splitlines()] if report.is_file() else []
    if not lines:
        return pd.DataFrame(columns=["chapter", "device_mb", "largest_model", "models"])
    table = pd.DataFrame(lines)
    largest = table.loc[table.groupby("chapter")["total"].idxmax()]
    return pd.DataFrame(
        {
            "chapter": largest["chapter"].to_numpy(),
            "device_mb": largest["total"].round().to_numpy(),
            "largest_model": [f"{m} at batch {b}" for m, b in zip(largest["model"], largest["batch_size"])],
            "models": table.groupby("chapter").size().reindex(largest["chapter"]).to_numpy(),
        }
    )


def dry_run_table(report: pd.DataFrame) -> str:
    """A dry run's summary: peak host memory and the device estimate per chapter, against a 16 GB T4
    (instructor page)."""
    lines = [
        "",
        "| chapter | status | seconds | peak host memory | models | largest model | its device memory | of a 16 GB T4 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report.itertuples(index=False):
        device = "" if pd.isna(row.device_mb) else f"{row.device_mb:,.0f} MB"
        share = "" if pd.isna(row.device_mb) else f"{row.device_mb / T4_MEMORY_MB:.1%}"
        models = "0" if pd.isna(row.models) else f"{row.models:.0f}"
        lines.append(
            f"| {Path(row.chapter).stem} | {row.status} | {row.seconds:.0f} | {row.peak_host_mb:,} MB | {models} | "
            f"{row.largest_model if isinstance(row.largest_model, str) else ''} | {device} | {share} |"
        )
    lines.append(
        "Device memory: parameters, gradients, optimiser state, the activations autograd keeps for one "
        "float32 batch (mixed precision about halves them) and the data the loaders keep on the device; "
        "not counted: the CUDA context (about 0.3-0.5 GB) and the allocator's caching."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.instructor.execute`` (``make book``): execute chapters and stage the book
    (instructor page). The environment variables it sets for the kernels (progress bars, checkpoint
    folder, dry run) are undone when it returns, so a caller in the same process (a test) keeps its own."""
    saved = dict(os.environ)
    try:
        return _run(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="chapter notebooks, by path or by number (07)")
    parser.add_argument("--profile", default="auto", help="auto | smoke | cpu | gpu (default: auto)")
    parser.add_argument("--out", type=Path, default=Path("_build/executed"))
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root holding the book sources")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="train into this checkpoint folder instead of the cache (empty: every model from scratch)",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a chapter parameter, checked against each chapter's parameters cell (e.g. -p latent_dim 32)",
    )
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help="time this many steps of the reference epoch and scale them to the whole epoch "
        "(default: the whole epoch, 938 steps; 0: do not measure)",
    )
    parser.add_argument(
        "--stage-unexecuted",
        action="store_true",
        help="stage the chapters not run, without outputs, so the staged book is complete",
    )
    parser.add_argument(
        "--dry-run",
        type=int,
        default=0,
        metavar="STEPS",
        help="every model trains STEPS steps per epoch for 2 epochs, into a temporary cache and checkpoint folder "
        "(the data is shared), and its device memory is estimated: the gpu profile's code paths on a CPU",
    )
    args = parser.parse_args(argv)
    if args.dry_run < 0:
        parser.error("--dry-run takes a number of steps of at least 1")
    if args.dry_run:
        os.environ["COURSE_DRY_RUN"] = str(args.dry_run)  # before the profile: it lets gpu run on a CPU

    profile = get_profile(args.profile)  # fail early on an unknown name; resolve "auto" once
    notebooks = resolve_chapters(args.notebooks, args.root)
    given = dict(args.parameter)
    if "profile" in given:
        parser.error("pass the profile with --profile, not -p profile")
    try:  # every chapter's parameters checked before the first one runs
        parameters = {notebook: chapter_parameters(notebook, given) for notebook in notebooks}
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.environ["COURSE_PROGRESS"] = "0"  # progress bars would only clutter the rendered pages
    os.environ["COURSE_WIDGETS"] = "0"  # nobody can type into a rendered page: static figures instead
    if args.dry_run:
        dry_cache = dry_run_cache(Path(tempfile.mkdtemp(prefix="course-dry-run-")))
        os.environ["COURSE_CACHE_DIR"] = str(dry_cache)
        args.checkpoints = args.checkpoints or dry_cache / "checkpoints"
        memory_report = (args.out / "dry_run_memory.jsonl").resolve()
        memory_report.parent.mkdir(parents=True, exist_ok=True)
        memory_report.unlink(missing_ok=True)
        os.environ["COURSE_DRY_RUN_REPORT"] = str(memory_report)
        print(f"dry run, {args.dry_run} steps per epoch: models and judges in {dry_cache}", flush=True)
    if args.checkpoints is not None:
        args.checkpoints.mkdir(parents=True, exist_ok=True)
        os.environ["COURSE_CHECKPOINT_DIR"] = str(args.checkpoints.resolve())  # the kernels inherit it
        print(f"checkpoints of this run: {args.checkpoints.resolve()}", flush=True)
    # a dry run's times are no budget's: its models train a few steps (and fit would cut the reference epoch too)
    reference = None if args.dry_run else measure_reference_epoch(args.reference_steps)
    rows, failures, times = [], [], []
    for notebook in notebooks:
        output = (
            args.out / notebook.relative_to(args.root)
            if notebook.is_relative_to(args.root)
            else args.out / notebook.name
        )
        print(f"executing {notebook} (profile {profile.name}) ...", flush=True)
        if output.exists():
            output.unlink()  # a copy from an earlier run must not pass for this one's cell times
        os.environ["COURSE_DRY_RUN_CHAPTER"] = str(notebook)
        started, memory = time.perf_counter(), PeakMemory()
        try:
            seconds = execute_chapter(notebook, output, profile.name, args.timeout, parameters[notebook], memory)
            problems = [f"FAILED {notebook}: {problem}" for problem in output_problems(output)]
            status = "stderr" if problems else "ok"
            failures += problems
            for problem in problems:
                print(problem, flush=True)
        except Exception as error:  # papermill's PapermillExecutionError, or a kernel that died
            seconds, status = time.perf_counter() - started, "failed"
            failures.append(failure_summary(notebook, error))
            print(failures[-1], flush=True)
        if output.is_file():  # also after a failure: papermill saves the notebook as far as it ran
            times.append(cell_times(output, str(notebook)))
            slowest = times[-1].head(3)
            print(
                "  slowest cells: "
                + "; ".join(f"{r.cell} ({r.first_line[:40]!r}) {r.seconds:.0f} s" for r in slowest.itertuples()),
                flush=True,
            )
        budget = profile.chapter_budget
        of_budget = budget.fraction(seconds, reference) if budget else float("nan")
        print(
            f"  {status} in {seconds:.1f} s"
            + (f" ({seconds / reference:.1f} reference epochs)" if reference else "")
            + ("" if math.isnan(of_budget) else f", {of_budget:.2f} of the {budget} budget"),
            flush=True,
        )
        rows.append(
            {
                "chapter": str(notebook),
                "profile": profile.name,
                "seconds": round(seconds, 1),
                "reference_epochs": round(seconds / reference, 2) if reference else float("nan"),
                "of_budget": round(of_budget, 2),
                "peak_host_mb": round(memory.megabytes),
                "status": status,
                "output": output.relative_to(args.out).as_posix(),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = pd.DataFrame(rows)
    if args.dry_run:
        report = report.merge(device_estimates(memory_report), on="chapter", how="left")
        print(dry_run_table(report), flush=True)
    report.drop(columns="output").to_csv(args.out / "execution_report.csv", index=False)
    if times:
        pd.concat(times).to_csv(args.out / "cell_times.csv", index=False)
    if args.dry_run:
        shutil.rmtree(dry_cache, ignore_errors=True)  # a few steps' models: of no use to anyone
    stage_book(args.root, args.out)
    if args.stage_unexecuted:
        for copied in stage_unexecuted(args.root, args.out, notebooks):
            print(f"staged without executing: {copied}", flush=True)
    write_execution_page(args.out, report, machine_description() | reference_rows(profile, reference))
    every_chapter = {path.resolve() for path in (args.root / "chapters").glob(CHAPTER_GLOB)}
    whole_book = every_chapter <= {path.resolve() for path in notebooks}
    print(budget_summary(report, profile, whole_book, reference), flush=True)
    if failures:
        failed = sum(status != "ok" for status in report["status"])
        print(
            "\n".join(
                [
                    "",
                    f"{failed} chapter(s) failed (a cell raised, or wrote to stderr: catch a warning "
                    "the lesson expects with course_lib.core.train.expected_warnings):",
                    *failures,
                ]
            ),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
