"""Shared fixtures of the course_lib unit tests, and the session fixtures of the book tests.

Every test runs with its own cache folder, without progress bars, and blind to the machine's real
Fashion-MNIST (``$COURSE_DATA_DIR`` is unset and the Debian folder is pointed at an empty path), so
the suite never depends on installed data or on the network.

The book tests (markers ``notebooks`` and ``book``) share two session fixtures, so that the chapters
are executed once and the book is built once per session: ``executed`` (every chapter run under the
``smoke`` profile by ``python -m course_lib.instructor.execute``, as ``make book`` does) and ``book_build``
(``jupyter-book build`` of that staged copy, with warnings as errors).
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import course_lib.data.images  # noqa: E402

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
N_TRAIN, N_TEST = 64, 32


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """A private cache, no progress bars, no real data, no profile override."""
    cache = tmp_path_factory.mktemp("course_cache")
    monkeypatch.setenv("COURSE_CACHE_DIR", str(cache))
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(
        course_lib.data.images, "DEBIAN_FASHION_MNIST", tmp_path_factory.mktemp("no_debian_data") / "fashion-mnist"
    )
    yield cache
    plt.close("all")


def idx_images(images: np.ndarray) -> bytes:
    """IDX3 bytes: magic 2051, then N, rows, cols as big-endian int32, then the uint8 pixels."""
    n, rows, cols = images.shape
    return struct.pack(">iiii", IMAGE_MAGIC, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """IDX1 bytes: magic 2049, then N as big-endian int32, then the uint8 labels."""
    return struct.pack(">ii", LABEL_MAGIC, len(labels)) + labels.astype(np.uint8).tobytes()


def synthetic_fashion_mnist(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random 28x28 uint8 images (with both 0 and 255 present) and labels cycling through 0..9."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = (np.arange(n) % 10).astype(np.uint8)
        splits[split] = (images, labels)
    return splits


def write_fashion_mnist(folder: Path, gz: bool = True, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four Fashion-MNIST IDX files (gzipped or not) into ``folder``; return the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = synthetic_fashion_mnist(seed)
    for split, (images, labels) in splits.items():
        for name, payload in (
            (f"{split}-images-idx3-ubyte", idx_images(images)),
            (f"{split}-labels-idx1-ubyte", idx_labels(labels)),
        ):
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
    return splits


@pytest.fixture
def fake_fashion_mnist(tmp_path) -> Path:
    """A folder with tiny synthetic, gzipped Fashion-MNIST IDX files (64 train and 32 test images)."""
    folder = tmp_path / "fake_fashion_mnist"
    write_fashion_mnist(folder, gz=True)
    return folder


@pytest.fixture
def write_idx_files():
    """The writer behind :func:`fake_fashion_mnist`, for other layouts: ``write(folder, gz=..., seed=...)``."""
    return write_fashion_mnist


# ---------------------------------------------------------------- book tests (session fixtures)
REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def smoke_env(tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ, COURSE_CACHE_DIR=str(tmp_path_factory.mktemp("cache")), COURSE_PROGRESS="0")
    env.pop("COURSE_PROFILE", None)
    return env


@pytest.fixture(scope="session")
def executed(tmp_path_factory, smoke_env) -> Path:
    """Execute every chapter once with papermill under the smoke profile, as `make book` does."""
    out = tmp_path_factory.mktemp("executed")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "course_lib.instructor.execute",
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--reference-steps",  # a quick estimate: the whole epoch is for make book
            "20",
            *[str(p.relative_to(REPO)) for p in CHAPTERS],
        ],
        cwd=REPO,
        env=smoke_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"chapters failed under smoke:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def book_build(executed, smoke_env) -> SimpleNamespace:
    """Build the HTML book once from the executed chapters, as `make book` does.

    Returns ``result`` (the finished ``jupyter-book build``, checked by
    ``test_book_builds_from_executed_chapters``) and ``html``, the built site.
    """
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("jupyter-book")),
            "build",
            str(executed),
            "--path-output",
            str(executed),
            "--warningiserror",
            "--nitpick",
            "--keep-going",
        ],
        cwd=REPO,
        env=smoke_env,
        capture_output=True,
        text=True,
    )
    return SimpleNamespace(result=result, html=executed / "_build" / "html")


@pytest.fixture
def built_html(book_build) -> Path:
    """The built book's HTML folder; the tests that read it fail at once when the build did."""
    if book_build.result.returncode != 0:
        pytest.fail("the book build failed (see test_book_builds_from_executed_chapters)", pytrace=False)
    return book_build.html
