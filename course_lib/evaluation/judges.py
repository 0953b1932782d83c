"""Judges: networks trained once, with a fixed seed, to measure the course's generators, then cached
(chapter 04's Fashion-MNIST classifier, chapter 06's scene reader).

One way to train, save and load them: Adam with a cosine learning rate over the epochs, fit's own
checkpoint while training (so an interrupted training resumes), and the cache file written only when
training has finished, so its existence means "finished". Imports course_lib.core only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from course_lib.core.device import seed_everything
from course_lib.core.io import CheckpointError, load_checkpoint, save_checkpoint
from course_lib.core.train import Batches, EpochScheduler, LossFn, fit


def train_judge(
    build: Callable[[], nn.Module],
    train_data: Batches,
    loss: LossFn,
    settings: dict[str, Any],
    path: Path,
    device: torch.device,
    seed: int,
    test_data: Batches | None = None,
    verbose: bool = True,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train a judge (chapters 04 and 06): ``build()`` after seeding (so the initial weights are fixed
    too), Adam at ``settings["lr"]`` annealed to zero over ``settings["epochs"]`` (large steps first,
    small ones at the end, so the last epochs settle into a minimum). Resumable through a
    ``<name>.training.pt`` file next to ``path``, which is removed by :func:`save_judge`."""
    seed_everything(seed)
    model = build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    schedule = EpochScheduler(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings["epochs"]))
    history = fit(
        model,
        train_data,
        loss,
        settings["epochs"],
        test_data=test_data,
        optimizer=optimizer,
        callbacks=[schedule],
        checkpoint=_resume_path(path),
        device=device,
        seed=seed,
        verbose=verbose,
    )
    return model, history


def save_judge(path: Path, model: nn.Module, **record: Any) -> None:
    """Write the finished judge and what it measured (``record``) atomically, then drop its resume file
    (chapters 04 and 06)."""
    save_checkpoint({"model": model.state_dict(), **record}, path)
    _resume_path(path).unlink(missing_ok=True)


def load_judge(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load a cached judge's weights into ``model`` and return the rest of its record (chapters 04 and
    06). A corrupt file, or one that no longer fits the architecture, raises :class:`CheckpointError`
    with the path to delete."""
    state = load_checkpoint(path)  # weights_only=True; a corrupt file raises CheckpointError
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # the architecture changed since the file was written
        raise CheckpointError(
            f"{path} does not fit the current {type(model).__name__} ({error}). Delete it to retrain."
        ) from error
    return state


def _resume_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.training.pt")
