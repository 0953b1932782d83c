"""Shared fixtures of the course_lib unit tests.

Every test runs with its own cache folder, without progress bars, and blind to the machine's real
Fashion-MNIST (``$COURSE_DATA_DIR`` is unset and the Debian folder is pointed at an empty path), so
the suite never depends on installed data or on the network.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import course_lib.data  # noqa: E402

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
    monkeypatch.setattr(course_lib.data, "DEBIAN_FASHION_MNIST",
                        tmp_path_factory.mktemp("no_debian_data") / "fashion-mnist")
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
        for name, payload in ((f"{split}-images-idx3-ubyte", idx_images(images)),
                              (f"{split}-labels-idx1-ubyte", idx_labels(labels))):
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
