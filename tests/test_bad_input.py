"""The course's own battery of bad input (issue 19): what a student can get wrong, and the answer each
gets: the exception type, and a message that names the problem and says what to do. For files in
the way: that nothing is lost or left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from course_lib.core.io import (
    STALE_TEMPORARY_S,
    CheckpointError,
    CorruptDataError,
    DataNotFoundError,
    cache_dir,
    load_checkpoint,
    save_checkpoint,
    write_atomic,
)
from course_lib.core.losses import ELBO
from course_lib.core.profiles import get_profile
from course_lib.core.train import checkpoint_path, fit
from course_lib.data.images import TensorLoader, load_fashion_mnist
from course_lib.evaluation.analysis import pca, som_quality, train_som
from course_lib.instructor.execute import resolve_chapters
from course_lib.instructor.grade import main as grade_main
from course_lib.instructor.repository import main as repository_main
from course_lib.models import conv_autoencoder, conv_cvae, conv_vae, mlp_autoencoder, mlp_cvae, mlp_vae

IMAGES = torch.rand(16, 1, 28, 28)


def tiny_fit(images=IMAGES, **settings):
    settings = {"epochs": 1, "verbose": False} | settings
    epochs = settings.pop("epochs")
    return fit(mlp_vae(hidden=(8,), latent_dim=2), TensorLoader(images, None, 8), ELBO(), epochs, **settings)


# --------------------------------------------------------------------------- chapter parameters and sizes


@pytest.mark.parametrize("bad", [None, 3, ["cpu"]])
def test_a_profile_that_is_not_a_name(bad):
    with pytest.raises(TypeError, match=r"The profile is a name, got .*auto, smoke, cpu, gpu.*-p profile cpu"):
        get_profile(bad)


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown profile 'laptop'.*Choose one of: auto, smoke, cpu, gpu"):
        get_profile("laptop")


BUILDERS = [mlp_vae, conv_vae, mlp_autoencoder, conv_autoencoder, mlp_cvae, conv_cvae]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("bad", [0, -3, 2.5, "ten", True])
def test_a_latent_size_that_is_not_a_positive_whole_number(builder, bad):
    with pytest.raises(ValueError, match=r"latent_dim must be a positive whole number, got .*-p latent_dim 32"):
        builder(latent_dim=bad)


@pytest.mark.parametrize("builder", [mlp_cvae, conv_cvae], ids=lambda b: b.__name__)
def test_a_condition_size_of_zero(builder):
    with pytest.raises(ValueError, match=r"condition_dim must be a positive whole number, got 0.*condition_dim=32"):
        builder(condition_dim=0)


def test_sizes_from_numpy_are_whole_numbers_too():
    assert mlp_vae(latent_dim=np.int64(3), hidden=(8,)).latent_dim == 3


# --------------------------------------------------------------------------- training settings and data


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None])
def test_epochs_that_are_not_a_whole_number_of_at_least_one(bad):
    with pytest.raises(ValueError, match=r"epochs must be a whole number of at least 1.*-p epochs 5"):
        tiny_fit(epochs=bad)


@pytest.mark.parametrize("bad", [0, -1e-3, float("nan"), float("inf"), "1e-3"])
def test_a_learning_rate_that_is_not_a_positive_number(bad):
    with pytest.raises(ValueError, match=r"lr must be a positive number such as 1e-3"):
        tiny_fit(lr=bad)


def test_an_empty_training_set():
    with pytest.raises(ValueError, match=r"holds no images: check the data set or the subset"):
        tiny_fit(IMAGES[:0])


def test_nan_in_the_data_is_named_as_broken_data_not_a_learning_rate_problem():
    images = IMAGES.clone()
    images[5, 0, 3, 3] = float("nan")
    with pytest.raises(
        ValueError, match=r"1 NaN values \(the first in image 5\): the data is broken, not the learning"
    ):
        tiny_fit(images)


def test_images_outside_zero_one_are_named_with_the_fix():
    with pytest.raises(ValueError, match=r"Scale the images to \[0, 1\]"):
        tiny_fit(IMAGES * 255)


def test_a_loss_on_an_empty_batch_is_refused_instead_of_nan():
    with pytest.raises(ValueError, match=r"empty batch \(0 images\).*subset"):
        ELBO()(mlp_vae(hidden=(8,)), IMAGES[:0])


def test_a_single_image_without_its_batch_dimension():
    with pytest.raises(ValueError, match=r"x.unsqueeze\(0\)"):
        mlp_vae(hidden=(8,)).encode(IMAGES[0])


# --------------------------------------------------------------------------- files in the way


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03", b"hello world, this is not a checkpoint", b"\x80\x02}q\x00."], ids=repr
)
def test_stray_bytes_at_a_checkpoint_path_are_named_with_the_path_and_the_fix(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"{path}.*Delete it|{path}.*not a course_lib checkpoint"):
        load_checkpoint(path)
    assert path.read_bytes() == content  # nothing deleted behind the student's back


def test_fit_on_a_corrupt_checkpoint_says_which_file_to_delete(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"stray")
    with pytest.raises(CheckpointError, match=r"run.pt is corrupt or truncated.*Delete it to train from scratch"):
        tiny_fit(checkpoint=path)


def test_a_killed_write_leaves_the_old_file_and_its_temporary_is_cleaned_later(tmp_path):
    path = tmp_path / "state.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}}, path)

    def killed(file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, killed)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    leftover = tmp_path / ".state.pt.abc123.tmp"  # what a process killed outright (SIGKILL) leaves
    leftover.write_bytes(b"half")
    fresh = tmp_path / ".state.pt.def456.tmp"  # a write in progress elsewhere: left alone
    fresh.write_bytes(b"writing")
    old = time.time() - STALE_TEMPORARY_S - 60
    os.utime(leftover, (old, old))
    save_checkpoint({"model": {"w": torch.zeros(2)}}, path)
    assert not leftover.exists() and fresh.exists()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(2))


# --------------------------------------------------------------------------- where things run


def test_a_relative_cache_folder_is_refused_with_the_absolute_fix(monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", "my_cache")
    with pytest.raises(ValueError, match=r"COURSE_CACHE_DIR='my_cache' is a relative path.*\$PWD/my_cache"):
        cache_dir()


def test_a_cache_folder_under_home_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_CACHE_DIR", "~/course")
    assert cache_dir() == tmp_path / "course" and cache_dir().is_dir()


def test_a_relative_checkpoint_folder_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", "checkpoints")
    with pytest.raises(ValueError, match=r"COURSE_CHECKPOINT_DIR='checkpoints' is a relative path"):
        checkpoint_path("ch01_ae", "cpu")


# --------------------------------------------------------------------------- corrupt data and its cached copies


def damaged(folder, name, how):
    """Damage one unpacked IDX file of ``folder`` the way a broken download or disk does."""
    path = folder / name
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "magic": b"\x00\x00\x09\x99" + data[4:], "empty": b""}[how])
    return path


@pytest.mark.parametrize(
    "how, message", [("truncated", "the file is truncated"), ("magic", "magic number"), ("empty", "magic number None")]
)
def test_a_broken_idx_file_is_named_and_never_cached(monkeypatch, tmp_path, write_idx_files, how, message):
    folder = tmp_path / "data"
    write_idx_files(folder, gz=False)
    broken = damaged(folder, "train-images-idx3-ubyte", how)
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    with pytest.raises(CorruptDataError, match=rf"{broken}.*{message}.*Replace it with a good copy"):
        load_fashion_mnist("train")
    raw = cache_dir() / "torchvision" / "FashionMNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte").exists()  # the broken copy was not kept
    assert not list(raw.glob("*.partial"))


def test_replacing_a_broken_source_is_picked_up_without_clearing_the_cache(monkeypatch, tmp_path, write_idx_files):
    folder = tmp_path / "data"
    write_idx_files(folder, gz=True, seed=0)
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    first, _ = load_fashion_mnist("train")
    arrays = write_idx_files(folder, gz=True, seed=1)  # the student puts other (good) files in place
    second, _ = load_fashion_mnist("train")
    assert torch.equal(second[:, 0], torch.from_numpy(arrays["train"][0]).float() / 255)
    assert not torch.equal(first, second)


def test_a_broken_file_in_torchvision_layout_is_named(monkeypatch, tmp_path, write_idx_files):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    write_idx_files(raw, gz=False)
    broken = damaged(raw, "t10k-labels-idx1-ubyte", "truncated")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(CorruptDataError, match=rf"{broken} is .* bytes but its header"):
        load_fashion_mnist("test")


def test_a_missing_file_is_named(monkeypatch, tmp_path, write_idx_files):
    folder = tmp_path / "data"
    write_idx_files(folder, gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    monkeypatch.setattr(
        torchvision.datasets.FashionMNIST, "download", lambda self: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(DataNotFoundError, match=r"has 3 of the 4 files; missing: t10k-labels-idx1-ubyte"):
        load_fashion_mnist("test")


# --------------------------------------------------------------------------- latent analysis and devices


@pytest.mark.parametrize("n", [0, 1])
def test_a_map_of_fewer_than_two_codes_is_refused(n):
    with pytest.raises(
        ValueError, match=rf"train_som needs codes \[N, d\] with N >= 2, got shape \[{n}, 4\].*Encode more"
    ):
        train_som(torch.randn(n, 4), 3, 3, 10)


def test_som_quality_of_one_code_is_refused_instead_of_perfect():
    som = train_som(torch.randn(20, 4), 3, 3, 10)
    with pytest.raises(ValueError, match=r"som_quality needs codes .*one code is always perfectly mapped"):
        som_quality(som, torch.randn(1, 4))


def test_pca_of_codes_that_do_not_vary_names_a_collapsed_encoder():
    with pytest.raises(ValueError, match=r"All 50 codes are the same point.*collapsed encoder.*active units"):
        pca(torch.ones(50, 4))
    with pytest.raises(ValueError, match=r"pca needs codes"):
        pca(torch.randn(1, 4))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_for_data_on_a_machine_without_one_gets_the_course_message():
    with pytest.raises(RuntimeError, match=r"CUDA was requested but this machine has no usable CUDA GPU.*Colab"):
        TensorLoader(IMAGES, None, 8).to("cuda")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(latent_dim=3), r"layer shapes differ \(3 tensors, e.g. to_posterior.weight \[4, 8\] -> \[6, 8\]"),
        (dict(lr=1e-4), r"learning rate 0.002 saved, 0.0001 now"),
        (dict(beta=2.0), r"loss .*beta=1.0.* saved, .*beta=2.0.* now"),
    ],
)
def test_a_checkpoint_of_another_run_says_what_differs_on_each_side(tmp_path, change, message):
    path = tmp_path / "run.pt"

    def run(latent_dim=2, lr=2e-3, beta=1.0):
        model = mlp_vae(hidden=(8,), latent_dim=latent_dim)
        return fit(model, TensorLoader(IMAGES, None, 8), ELBO(beta=beta), 1, lr=lr, checkpoint=path, verbose=False)

    run()
    with pytest.raises(CheckpointError, match=rf"written for a different run: {message}.*Delete it"):
        run(**change)


# --------------------------------------------------------------------------- instructor tools outside the repository


def test_the_repository_tool_outside_the_repository_says_where_to_run(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        repository_main([])
    error = capsys.readouterr().err
    assert "no _config.yml in" in error and "run from the repository root, or pass --root" in error


def test_the_grader_outside_the_repository_says_where_to_run(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        grade_main(["--assignment", "a1", "x.ipynb"])
    assert "Run from the repository root, or pass --config" in capsys.readouterr().err


def test_a_chapter_number_outside_the_repository_says_where_to_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"No chapter '04'.*run from the repository root, or pass --root"):
        resolve_chapters(["04"], Path("."))
