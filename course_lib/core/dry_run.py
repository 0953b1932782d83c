"""Dry runs: every chapter at any profile's sizes, but a few optimisation steps per model (instructor page).

``COURSE_DRY_RUN=N`` (set by ``python -m course_lib.instructor.execute --dry-run N``) makes
:func:`course_lib.core.train.fit` train each model for at most :data:`DRY_RUN_EPOCHS` epochs of ``N``
steps, evaluate on ``N`` held-out batches, and keep its checkpoint beside the real one
(``<name>.dry-run.pt``), so a dry run never passes for, or resumes, a trained model. Everything else
in a chapter runs as it would: the profile's data, sizes, latent sizes, caption counts and code
branches, evaluation on the full test sets. So the ``gpu`` profile's code paths can be checked on a
CPU in minutes; :func:`course_lib.core.profiles.get_profile` allows the gpu profile without a GPU only
then.

For each model a dry run also estimates what training it would hold in GPU memory
(:func:`device_memory`): the parameters, their gradients and the optimiser's state, the tensors
autograd saves for the backward pass of one training batch, and the data a
:class:`~course_lib.data.images.TensorLoader` keeps on the device. With ``COURSE_DRY_RUN_REPORT`` set to a
file, each estimate is appended to it as one JSON line, named by ``COURSE_DRY_RUN_CHAPTER``.

Imports torch and the standard library only.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

DRY_RUN_EPOCHS = 2  # enough for a resume, a callback after each epoch and the collapse check


def dry_run_steps() -> int:
    """Optimisation steps per epoch in a dry run, from ``COURSE_DRY_RUN``; 0 for a real run (instructor page)."""
    value = os.environ.get("COURSE_DRY_RUN", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(f"COURSE_DRY_RUN must be a whole number of steps (e.g. 2), got {value!r}.")
    return int(value)


class FirstBatches:
    """The first ``n`` batches of ``data``, every time it is iterated (a dry run's epoch; instructor page)."""

    def __init__(self, data: Iterable, n: int) -> None:
        self.data, self.n = data, n

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.data), self.n)

    def __len__(self) -> int:
        return min(self.n, len(self.data)) if hasattr(self.data, "__len__") else self.n


def dry_run_checkpoint(path: Path | None) -> Path | None:
    """Where a dry run keeps a model's checkpoint: beside the real one, never in its place (instructor page)."""
    return None if path is None else path.with_name(f"{path.stem}.dry-run{path.suffix}")


def _nbytes(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def saved_for_backward(forward: Callable[[], Tensor], exclude: set[int] = frozenset()) -> int:
    """Bytes of the tensors autograd keeps from ``forward()`` for the backward pass: the activations
    of one training step (each storage counted once; storages whose ``data_ptr`` is in ``exclude``,
    e.g. the parameters, left out; instructor page)."""
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(seen.values())


def device_memory(
    model: nn.Module, optimizer: torch.optim.Optimizer, forward: Callable[[], Tensor], data: Iterable[Any]
) -> dict[str, float]:
    """Megabytes that training ``model`` holds on its device: parameters, gradients, optimiser state
    (read after a step), activations saved for one batch's backward pass (float32: mixed precision
    roughly halves them), and the images and labels of ``data`` loaders that live on the device
    (instructor page)."""
    parameters = list(model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    state = [value for group in optimizer.state.values() for value in group.values() if isinstance(value, Tensor)]
    on_device = [
        tensor
        for loader in data
        for tensor in (getattr(loader, "images", None), getattr(loader, "labels", None))
        if isinstance(tensor, Tensor)
    ]
    megabytes = {
        "parameters": _nbytes(parameters),
        "gradients": _nbytes(trainable),
        "optimiser state": _nbytes(state),
        "activations (one batch)": saved_for_backward(forward, {p.untyped_storage().data_ptr() for p in parameters}),
        "data on the device": _nbytes(on_device),
    }
    megabytes = {name: value / 2**20 for name, value in megabytes.items()}
    megabytes["total"] = sum(megabytes.values())
    return megabytes


def report_memory(model: nn.Module, batch_size: int, megabytes: dict[str, float]) -> None:
    """Print one line of the estimate, and append it to ``COURSE_DRY_RUN_REPORT`` when that is set
    (instructor page)."""
    parts = ", ".join(f"{name} {value:,.1f}" for name, value in megabytes.items() if name != "total")
    print(
        f"dry run, {type(model).__name__} at batch {batch_size}: {megabytes['total']:,.1f} MB on the device ({parts})"
    )
    report = os.environ.get("COURSE_DRY_RUN_REPORT")
    if report:
        line = {
            "chapter": os.environ.get("COURSE_DRY_RUN_CHAPTER", ""),
            "model": type(model).__name__,
            "batch_size": batch_size,
            **{name: round(value, 2) for name, value in megabytes.items()},
        }
        with open(report, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")
