"""Where the course keeps its files, and how it writes them: the cache folder, atomic writes and
checkpoints read safely (chapter 01). Imports only the standard library and torch.

A checkpoint is first written to a temporary file in the same folder and then renamed over the old
one, so a run killed mid-write leaves the previous checkpoint intact: at most one epoch is lost.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

STALE_TEMPORARY_S = 600.0  # a temporary file of write_atomic untouched this long belongs to a killed run


class DataNotFoundError(FileNotFoundError):
    """A data set could not be found locally nor downloaded (chapter 03)."""


class CorruptDataError(ValueError):
    """A data file is truncated or not in the format it should be (chapter 03); the message names
    the file and how to get a good copy."""


def cache_dir() -> Path:
    """Folder for unpacked data, checkpoints and caches: ``$COURSE_CACHE_DIR`` or ``~/.cache/course_lib``
    (chapter 02). A relative ``$COURSE_CACHE_DIR`` is refused: it would name another folder in every
    working directory (a notebook's kernel runs in the notebook's folder)."""
    return absolute_folder("COURSE_CACHE_DIR", Path.home() / ".cache" / "course_lib")


def absolute_folder(variable: str, default: Path) -> Path:
    """The folder an environment variable names (``~`` expanded), created if missing, or ``default``;
    a clear error for a relative path (chapter 02)."""
    value = os.environ.get(variable, "").strip()
    path = Path(value).expanduser() if value else default
    if not path.is_absolute():
        raise ValueError(
            f"{variable}={value!r} is a relative path, so it would mean a different folder in each "
            f'working directory. Set an absolute one, e.g. export {variable}="$PWD/{value}".'
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: corrupt, truncated or written for another model (chapter 01)."""


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file and a rename: a killed run leaves the old file or none,
    never half of one (chapter 01's checkpoints, prepared data, embedding caches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
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


def remove_stale_temporaries(path: Path, older_than_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Delete the temporary files a killed :func:`write_atomic` of ``path`` left behind (chapter 01).

    Only those untouched for ``older_than_s`` seconds: a write in progress keeps its file's
    modification time fresh. Returns what was deleted."""
    removed = []
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if time.time() - leftover.stat().st_mtime > older_than_s:
                leftover.unlink()
                removed.append(leftover)
        except FileNotFoundError:  # another process finished or removed it meanwhile
            pass
    return removed


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
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as error:  # torch's unpickler raises many types on stray bytes (KeyError among them)
        detail = str(error).splitlines()[0][:120] if str(error).strip() else "no detail"
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or truncated, or not a file torch.save wrote "
            f"({type(error).__name__}: {detail}). Delete it to train from scratch."
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a course_lib checkpoint. Delete it or choose another path.")
    return state
