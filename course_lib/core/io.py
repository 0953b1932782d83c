"""Where the course keeps its files, and how it writes them: the cache folder, atomic writes and
checkpoints read safely (chapter 01). Imports only the standard library and torch.

A checkpoint is first written to a temporary file in the same folder and then renamed over the old
one, so a run killed mid-write leaves the previous checkpoint intact: at most one epoch is lost.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


class DataNotFoundError(FileNotFoundError):
    """A data set could not be found locally nor downloaded (chapter 03)."""


def cache_dir() -> Path:
    """Folder for unpacked data, checkpoints and caches: ``$COURSE_CACHE_DIR`` or ``~/.cache/course_lib``
    (chapter 02)."""
    path = Path(os.environ.get("COURSE_CACHE_DIR") or Path.home() / ".cache" / "course_lib")
    path.mkdir(parents=True, exist_ok=True)
    return path


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: corrupt, truncated or written for another model (chapter 01)."""


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file and a rename: a killed run leaves the old file or none,
    never half of one (chapter 01's checkpoints, prepared data, embedding caches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON atomically: a killed run leaves the old file or none, never half of one (chapter 06)."""
    # json.dumps uses the C encoder, json.dump does not: 10x faster
    write_atomic(path, lambda file: file.write(json.dumps(content).encode()))


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (temporary file + rename; chapter 01)."""
    write_atomic(path, lambda file: torch.save(state, file))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code runs on load; chapter 01)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as error:
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}). "
            "Delete it to train from scratch."
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a course_lib checkpoint. Delete it or choose another path.")
    return state
