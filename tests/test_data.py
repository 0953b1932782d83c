"""Fashion-MNIST lookup and loading (on synthetic IDX files), and the TensorLoader."""

from __future__ import annotations

import gzip

import pytest
import torch
from torchvision.datasets import FashionMNIST

import course_lib.data.images
from course_lib.core.io import CorruptDataError, DataNotFoundError
from course_lib.data.images import TensorLoader, fashion_mnist_root, load_fashion_mnist


def as_tensors(arrays):
    images, labels = arrays
    return torch.from_numpy(images).float().div(255).unsqueeze(1), torch.from_numpy(labels).long()


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "unpacked"])
@pytest.mark.parametrize("layout", ["", "fashion-mnist", "FashionMNIST/raw"], ids=["flat", "subfolder", "torchvision"])
def test_load_from_course_data_dir(tmp_path, monkeypatch, write_idx_files, gz, layout):
    written = write_idx_files(tmp_path / "data" / layout, gz=gz)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))

    for split, key, n in (("train", "train", 64), ("test", "t10k", 32)):
        images, labels = load_fashion_mnist(split)
        assert images.shape == (n, 1, 28, 28)
        assert images.dtype == torch.float32
        assert float(images.min()) == 0.0 and float(images.max()) == 1.0
        assert labels.dtype == torch.long
        assert labels.shape == (n,)
        expected_images, expected_labels = as_tensors(written[key])
        assert torch.equal(images, expected_images)  # byte order, dims and scaling are right
        assert torch.equal(labels, expected_labels)


def test_fixture_files_load(fake_fashion_mnist, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    images, labels = load_fashion_mnist("train")
    assert images.shape == (64, 1, 28, 28)
    assert sorted(labels.unique().tolist()) == list(range(10))


def test_unpacked_torchvision_layout_is_used_in_place(tmp_path, monkeypatch, write_idx_files, isolated_environment):
    write_idx_files(tmp_path / "data" / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    assert fashion_mnist_root() == tmp_path / "data"
    assert not (isolated_environment / "torchvision").exists()  # nothing copied


def test_gzipped_files_are_unpacked_into_the_cache(fake_fashion_mnist, monkeypatch, isolated_environment):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    root = fashion_mnist_root()
    assert root == isolated_environment / "torchvision"
    raw = root / "FashionMNIST" / "raw"
    unpacked = sorted(p.name for p in raw.iterdir() if not p.name.endswith(".source.json"))
    assert unpacked == sorted(course_lib.data.images.FASHION_MNIST_FILES)
    assert len(list(raw.glob("*.source.json"))) == 4  # each copy remembers its source
    assert (raw / "train-images-idx3-ubyte").read_bytes()[:4] == (2051).to_bytes(4, "big")


def test_seeded_subset(fake_fashion_mnist, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    all_images, all_labels = load_fashion_mnist("train")
    first, first_labels = load_fashion_mnist("train", size=10, seed=1)
    again, again_labels = load_fashion_mnist("train", size=10, seed=1)
    other, _ = load_fashion_mnist("train", size=10, seed=2)

    assert first.shape == (10, 1, 28, 28) and first_labels.shape == (10,)
    assert torch.equal(first, again) and torch.equal(first_labels, again_labels)
    assert not torch.equal(first, other)
    # Every subset image is one of the data set's images, still paired with its own label.
    for image, label in zip(first, first_labels):
        matches = (all_images == image).flatten(1).all(1).nonzero().flatten()
        assert len(matches) == 1
        assert all_labels[matches[0]] == label


def test_subset_larger_than_the_split_keeps_everything(fake_fashion_mnist, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    images, _ = load_fashion_mnist("test", size=1000)
    full, _ = load_fashion_mnist("test")
    assert torch.equal(images, full)


def test_unknown_split_is_rejected(fake_fashion_mnist, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


# --------------------------------------------------------------------------- resolution order


def test_course_data_dir_beats_the_debian_folder(tmp_path, monkeypatch, write_idx_files):
    debian = tmp_path / "debian" / "fashion-mnist"
    debian_data = write_idx_files(debian, gz=True, seed=1)
    own_data = write_idx_files(tmp_path / "own", gz=True, seed=2)
    monkeypatch.setattr(course_lib.data.images, "DEBIAN_FASHION_MNIST", debian)

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache_own"))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "own"))
    images, _ = load_fashion_mnist("train")
    assert torch.equal(images, as_tensors(own_data["train"])[0])

    # Without COURSE_DATA_DIR the Debian files are used (fresh cache: unpacked files are reused).
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache_debian"))
    monkeypatch.delenv("COURSE_DATA_DIR")
    images, _ = load_fashion_mnist("train")
    assert torch.equal(images, as_tensors(debian_data["train"])[0])


def test_incomplete_course_data_dir_falls_back_to_debian(tmp_path, monkeypatch, write_idx_files):
    debian = tmp_path / "debian"
    debian_data = write_idx_files(debian, gz=True, seed=1)
    partial = tmp_path / "partial"
    write_idx_files(partial, gz=True, seed=2)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(course_lib.data.images, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setenv("COURSE_DATA_DIR", str(partial))
    images, _ = load_fashion_mnist("train")
    assert torch.equal(images, as_tensors(debian_data["train"])[0])


@pytest.fixture
def failing_download(monkeypatch):
    """Make torchvision's download raise like a machine without network; count the attempts."""
    calls = []

    def download(self):
        calls.append(self.root)
        raise ConnectionError("no network in the unit tests")

    monkeypatch.setattr(FashionMNIST, "download", download)
    return calls


def assert_names_three_ways(message: str) -> None:
    assert "COURSE_DATA_DIR" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download" in message and "network" in message


def test_missing_data_and_failed_download_explains_three_ways(failing_download):
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("train")
    message = str(info.value)
    assert_names_three_ways(message)
    assert "no network in the unit tests" in message  # the download's own error is shown
    assert len(failing_download) == 1
    assert isinstance(info.value, FileNotFoundError)


def test_failed_download_into_an_empty_course_data_dir(tmp_path, monkeypatch, failing_download):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(empty))
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist_root()
    assert_names_three_ways(str(info.value))
    assert failing_download == [str(empty)]  # downloads go into COURSE_DATA_DIR


def test_no_download_when_disabled(failing_download):
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist_root(download=False)
    assert_names_three_ways(str(info.value))
    assert failing_download == []


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_gz_raises_corrupt_data_naming_the_file(
    tmp_path, monkeypatch, write_idx_files, isolated_environment, damage
):
    folder = tmp_path / "data"
    write_idx_files(folder, gz=True)
    bad = folder / "train-images-idx3-ubyte.gz"
    if damage == "garbage":
        bad.write_bytes(b"this is not gzip data" * 20)
    else:
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises((OSError, EOFError)):  # the damage is real
        gzip.decompress(bad.read_bytes())
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))

    with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte.gz cannot be unpacked.*good copy"):
        load_fashion_mnist("train")
    raw = isolated_environment / "torchvision" / "FashionMNIST" / "raw"
    assert not list(raw.glob("*.partial"))
    assert not (raw / "train-images-idx3-ubyte").exists()


# --------------------------------------------------------------------------- TensorLoader


def index_loader(n=10, **kwargs):
    """Images that are their own index, so batches reveal the order."""
    return TensorLoader(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n), **kwargs)


def epoch_order(loader):
    return torch.cat([x.flatten() for x, _ in loader]).long().tolist()


@pytest.mark.parametrize(
    "n, batch_size, drop_last, expected",
    [
        (10, 3, False, 4),
        (10, 3, True, 3),
        (9, 3, False, 3),
        (9, 3, True, 3),
        (2, 5, False, 1),
        (2, 5, True, 0),
    ],
)
def test_batch_count(n, batch_size, drop_last, expected):
    loader = index_loader(n, batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == expected
    batches = list(loader)
    assert len(batches) == expected
    if drop_last:
        assert all(len(x) == batch_size for x, _ in batches)


def test_every_index_once_per_epoch():
    loader = index_loader(10, batch_size=3)
    orders = [epoch_order(loader) for _ in range(3)]
    for order in orders:
        assert sorted(order) == list(range(10))
    assert len({tuple(order) for order in orders}) > 1  # reshuffled each epoch


def test_labels_follow_their_images():
    loader = index_loader(10, batch_size=4)
    for x, y in loader:
        assert torch.equal(x.flatten().long(), y)


def test_same_seed_same_order_other_seed_other_order():
    first = [epoch_order(index_loader(20, batch_size=4, seed=5)) for _ in range(2)]
    again = [epoch_order(index_loader(20, batch_size=4, seed=5)) for _ in range(2)]
    other = epoch_order(index_loader(20, batch_size=4, seed=6))
    assert first == again
    assert other != first[0]


def test_no_shuffle_keeps_the_order():
    assert epoch_order(index_loader(7, batch_size=3, shuffle=False)) == list(range(7))


def test_state_dict_reproduces_the_next_epoch():
    loader = index_loader(20, batch_size=4, seed=3)
    epoch_order(loader)
    state = loader.state_dict()
    next_epochs = [epoch_order(loader) for _ in range(2)]

    restored = index_loader(20, batch_size=4, seed=99)  # another seed: the state must win
    restored.load_state_dict(state)
    assert [epoch_order(restored) for _ in range(2)] == next_epochs


def test_mismatched_labels_length_raises():
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        TensorLoader(torch.zeros(10, 1, 2, 2), torch.zeros(9))


def test_non_positive_batch_size_raises():
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(torch.zeros(10, 1, 2, 2), batch_size=0)


def test_loader_without_labels_yields_none():
    loader = TensorLoader(torch.zeros(5, 1, 2, 2), batch_size=2)
    assert all(y is None for _, y in loader)
