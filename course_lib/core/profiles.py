"""Run profiles: one switch that sizes every chapter (introduced in chapter 01).

``smoke`` is for CI and quick checks (tiny subsets, every notebook under a minute), ``cpu`` trains on
the full data set within a laptop budget, ``gpu`` runs at the scale of the source reports. ``auto`` picks ``gpu`` when
CUDA is available and ``cpu`` otherwise; the ``COURSE_PROFILE`` environment variable overrides ``auto``
so that nbval and ``jupyter-book build`` can execute every chapter as ``smoke``.

Imports the standard library, torch and course_lib.core.dry_run (which imports nothing of the course).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from course_lib.core.dry_run import dry_run_steps


@dataclass(frozen=True)
class Budget:
    """A time budget (chapter 01): ``amount`` seconds, or ``amount`` reference epochs when
    ``in_reference_epochs`` (one epoch of chapter 02's conv VAE on the same machine, timed by the
    runner at the start of a run: machines differ about 2x in seconds, much less in that unit)."""

    amount: float
    in_reference_epochs: bool = False

    def fraction(self, seconds: float, reference_s: float | None = None) -> float:
        """How much of the budget ``seconds`` used (1.0 = all of it); NaN for a budget in reference
        epochs when none was measured."""
        if not self.in_reference_epochs:
            return seconds / self.amount
        return seconds / reference_s / self.amount if reference_s else float("nan")

    def __str__(self) -> str:
        return f"{self.amount:g} reference epochs" if self.in_reference_epochs else f"{self.amount:g} s"


@dataclass(frozen=True)
class Profile:
    """Sizes for one run of a chapter (chapter 01). ``None`` subset sizes mean "the whole split"."""

    name: str
    train_size: int | None
    test_size: int | None
    epochs: int  # main models of a chapter
    short_epochs: int  # side experiments (beta sweeps, likelihood comparisons)
    batch_size: int
    chapter_budget: Budget | None = None  # the time budget of one chapter (DESIGN.md)
    book_budget: Budget | None = None  # of the whole book, from an empty cache

    def describe(self) -> str:
        train = "all" if self.train_size is None else f"{self.train_size:,}"
        test = "all" if self.test_size is None else f"{self.test_size:,}"
        return (
            f"profile '{self.name}': train images {train}, test images {test}, "
            f"epochs {self.epochs} (side experiments {self.short_epochs}), batch {self.batch_size}"
        )


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", train_size=2_000, test_size=1_000, epochs=2, short_epochs=1, batch_size=128, chapter_budget=Budget(60)
    ),
    "cpu": Profile(
        "cpu",
        train_size=None,
        test_size=None,
        epochs=8,
        short_epochs=3,
        batch_size=64,
        chapter_budget=Budget(40, in_reference_epochs=True),
        book_budget=Budget(200, in_reference_epochs=True),
    ),
    "gpu": Profile(
        "gpu",
        train_size=None,
        test_size=None,
        epochs=50,
        short_epochs=15,
        batch_size=128,
        chapter_budget=Budget(60 * 60),  # on a Colab T4
    ),
}


def get_profile(name: str = "auto") -> Profile:
    """Resolve ``"auto" | "smoke" | "cpu" | "gpu"`` into a :class:`Profile` (chapter 01)."""
    if not isinstance(name, str):
        raise TypeError(
            f"The profile is a name, got {name!r}. Choose one of: auto, {', '.join(PROFILES)} "
            '(in a notebook: profile = "cpu"; with papermill: -p profile cpu).'
        )
    requested = name.strip().lower()
    if requested == "auto":
        requested = os.environ.get("COURSE_PROFILE", "").strip().lower() or (
            "gpu" if torch.cuda.is_available() else "cpu"
        )
    if requested not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r} (COURSE_PROFILE={os.environ.get('COURSE_PROFILE')!r}). "
            f"Choose one of: auto, {', '.join(PROFILES)}."
        )
    if requested == "gpu" and not _has_gpu() and not dry_run_steps():
        raise ValueError(
            "The gpu profile trains at the seeds' scale (50 epochs on the full data, the text chapters at "
            "64x64): hours per chapter on a CPU, and this machine has no GPU that torch can use "
            '(torch.cuda.is_available() is False). Use profile = "cpu" (or "auto", which picks it here)'
            + (
                "; for a GPU on Colab: Runtime > Change runtime type > T4 GPU, then run the chapter again."
                if _on_colab()
                else ". To check the gpu profile's code paths on a CPU: a dry run, a few steps per model "
                "(COURSE_DRY_RUN=2, or python -m course_lib.instructor.execute --profile gpu --dry-run 2)."
            )
        )
    if name.strip().lower() == "auto" and requested == "cpu" and _on_colab():
        print(
            "note: this Colab runtime has no GPU, so profile 'auto' is 'cpu' (the full data at a laptop's "
            "budget). For the gpu profile: Runtime > Change runtime type > T4 GPU, then run the chapter again."
        )
    return PROFILES[requested]


def _has_gpu() -> bool:
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def _on_colab() -> bool:
    return "google.colab" in sys.modules


def show_progress() -> bool:
    """Progress bars are on unless ``COURSE_PROGRESS=0`` (set for headless papermill runs; chapter 01)."""
    return os.environ.get("COURSE_PROGRESS", "1") != "0"


def show_widgets() -> bool:
    """Interactive widgets are on unless ``COURSE_WIDGETS=0`` (set for headless papermill runs, where no
    one could type into them and the rendered book shows a static figure instead; chapter 06)."""
    return os.environ.get("COURSE_WIDGETS", "1") != "0"
