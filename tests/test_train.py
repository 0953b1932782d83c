"""The training loop: history table, exact resume, checkpoint safety, divergence and collapse checks,
snapshots, run profiles and device choice. Everything trains tiny MLPs on 8x8 images on the CPU."""

from __future__ import annotations

import random
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import course_lib.core.train
from course_lib import choose_device, get_profile, seed_everything
from course_lib.core.io import CheckpointError, cache_dir, load_checkpoint, save_checkpoint
from course_lib.core.losses import ELBO, ReconstructionLoss
from course_lib.core.profiles import PROFILES
from course_lib.core.train import (
    PosteriorCollapseWarning,
    Snapshots,
    TrainingDivergedError,
    amp_settings,
    checkpoint_path,
    expected_warnings,
    fit,
    train_steps,
)
from course_lib.data.images import TensorLoader
from course_lib.models import mlp_autoencoder, mlp_vae

SHAPE = (1, 8, 8)

# Tiny VAEs on random noise collapse (there is nothing to encode); the collapse tests below check the
# warning explicitly, so it is only noise elsewhere.
pytestmark = pytest.mark.filterwarnings("ignore::course_lib.core.train.PosteriorCollapseWarning")


def random_images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def loaders(seed: int = 0):
    """A shuffled train loader (64 images, 4 batches) and an unshuffled test loader (32 images)."""
    train = TensorLoader(random_images(64, seed=1), torch.arange(64) % 10, batch_size=16, seed=seed)
    test = TensorLoader(random_images(32, seed=2), torch.arange(32) % 10, batch_size=16, shuffle=False)
    return train, test


def small_vae(latent_dim: int = 4, init_seed: int = 0):
    torch.manual_seed(init_seed)
    return mlp_vae(SHAPE, latent_dim=latent_dim, hidden=(16,))


def small_autoencoder(latent_dim: int = 4, init_seed: int = 0):
    torch.manual_seed(init_seed)
    return mlp_autoencoder(SHAPE, latent_dim=latent_dim, hidden=(16,))


def run(model, loss_fn, epochs, checkpoint=None, seed=0, callbacks=(), with_test=True, device="cpu", **kwargs):
    train, test = loaders(seed)
    return fit(
        model,
        train,
        loss_fn,
        epochs,
        test_data=test if with_test else None,
        checkpoint=checkpoint,
        callbacks=callbacks,
        device=device,
        seed=seed,
        lr=3e-3,
        verbose=False,
        **kwargs,
    )


def params(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def without_seconds(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="seconds")


# --------------------------------------------------------------------------- history


def test_autoencoder_history_table():
    model = small_autoencoder()
    before = params(model)
    history = run(model, ReconstructionLoss(), 3)
    assert isinstance(history, pd.DataFrame)
    assert history.index.name == "epoch"
    assert history.index.tolist() == [1, 2, 3]
    assert {"train_loss", "test_loss", "train_recon", "test_recon", "seconds"} <= set(history.columns)
    assert "active_units" not in history.columns  # not a VAE
    assert np.isfinite(history[["train_loss", "test_loss"]].to_numpy()).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # it learned something
    assert any(not torch.equal(before[k], v) for k, v in params(model).items())
    assert not model.training  # fit leaves the model in eval mode


def test_vae_history_has_kl_and_active_units():
    history = run(small_vae(latent_dim=4), ELBO(), 2)
    assert {"train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl", "active_units"} <= set(
        history.columns
    )
    assert history["active_units"].between(0, 4).all()
    # the loss is recon + beta * KL, averaged over the same images
    assert history["test_loss"].to_numpy() == pytest.approx(
        (history["test_recon"] + history["test_kl"]).to_numpy(), rel=1e-5
    )


def test_history_without_test_data_has_only_train_columns():
    history = run(small_vae(), ELBO(), 1, with_test=False)
    assert not [c for c in history.columns if c.startswith("test_") or c == "active_units"]
    assert "train_loss" in history.columns


def test_same_seed_same_result():
    a, b = small_vae(), small_vae()
    history_a = run(a, ELBO(), 2, seed=3)
    history_b = run(b, ELBO(), 2, seed=3)
    assert_same_params(params(a), params(b))
    pd.testing.assert_frame_equal(without_seconds(history_a), without_seconds(history_b))


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    "make_model, loss_fn",
    [(small_vae, ELBO(beta=0.5)), (small_autoencoder, ReconstructionLoss())],
    ids=["vae", "autoencoder"],
)
def test_resumed_run_matches_uninterrupted_run(tmp_path, capsys, make_model, loss_fn):
    frames_images = random_images(4, seed=9)

    model_a = make_model(init_seed=0)
    snapshots_a = Snapshots.reconstructions(frames_images, nrow=4)
    history_a = run(model_a, loss_fn, 4, checkpoint=tmp_path / "a.pt", callbacks=[snapshots_a])

    model_b = make_model(init_seed=0)
    history_b_first = run(
        model_b, loss_fn, 2, checkpoint=tmp_path / "b.pt", callbacks=[Snapshots.reconstructions(frames_images, nrow=4)]
    )
    assert len(history_b_first) == 2

    # A new process, in effect: new model object (other initial weights), new loaders, new callbacks.
    resumed = make_model(init_seed=123)
    snapshots_b = Snapshots.reconstructions(frames_images, nrow=4)
    capsys.readouterr()
    train, test = loaders(0)
    history_b = fit(
        resumed,
        train,
        loss_fn,
        4,
        test_data=test,
        checkpoint=tmp_path / "b.pt",
        callbacks=[snapshots_b],
        device="cpu",
        seed=0,
        lr=3e-3,
        verbose=True,
    )
    assert "Resumed from" in capsys.readouterr().out

    assert_same_params(params(model_a), params(resumed))
    pd.testing.assert_frame_equal(without_seconds(history_a), without_seconds(history_b))
    assert history_b.index.tolist() == [1, 2, 3, 4]
    # the frames of epochs 1-2 came back from the checkpoint
    assert len(snapshots_b.frames) == len(snapshots_a.frames) == 4
    for frame_a, frame_b in zip(snapshots_a.frames, snapshots_b.frames):
        assert torch.equal(frame_a, frame_b)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 4


def test_resume_without_restoring_state_would_differ(tmp_path):
    """Guard for the test above: a fresh 2-epoch continuation does not match 4 straight epochs."""
    model_a = small_vae()
    run(model_a, ELBO(), 4)
    model_b = small_vae()
    run(model_b, ELBO(), 2)
    run(model_b, ELBO(), 2)  # no checkpoint: optimiser, data order and RNG start over
    assert any(not torch.equal(params(model_a)[k], v) for k, v in params(model_b).items())


def test_finished_checkpoint_is_loaded_without_training(tmp_path, monkeypatch):
    path = tmp_path / "done.pt"
    trained = small_vae()
    history = run(trained, ELBO(), 2, checkpoint=path)
    modified = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(course_lib.core.train, "train_steps", no_training)
    fresh = small_vae(init_seed=7)
    again = run(fresh, ELBO(), 2, checkpoint=path)
    pd.testing.assert_frame_equal(history, again)  # seconds included: rows come from the checkpoint
    assert_same_params(params(trained), params(fresh))
    assert path.stat().st_mtime_ns == modified  # not rewritten


def test_checkpoint_for_another_latent_dim_raises(tmp_path):
    path = tmp_path / "vae.pt"
    run(small_vae(latent_dim=4), ELBO(), 1, checkpoint=path)
    with pytest.raises(CheckpointError, match="different run") as info:
        run(small_vae(latent_dim=3), ELBO(), 2, checkpoint=path)
    assert "shapes" in str(info.value) and "Delete it" in str(info.value)


def test_checkpoint_for_another_beta_raises(tmp_path):
    path = tmp_path / "vae.pt"
    run(small_vae(), ELBO(beta=1.0), 1, checkpoint=path)
    with pytest.raises(CheckpointError) as info:
        run(small_vae(), ELBO(beta=4.0), 2, checkpoint=path)
    assert "loss" in str(info.value) and "beta=4.0" in str(info.value)


def test_checkpoint_with_another_learning_rate_or_seed_raises(tmp_path):
    path = tmp_path / "vae.pt"
    run(small_vae(), ELBO(), 1, checkpoint=path)
    train, test = loaders(0)
    with pytest.raises(CheckpointError, match=r"learning rate 0.003 saved, 0.01 now"):
        fit(small_vae(), train, ELBO(), 2, test_data=test, checkpoint=path, lr=1e-2, device="cpu", verbose=False)
    with pytest.raises(CheckpointError, match="seed"):
        run(small_vae(), ELBO(), 2, checkpoint=path, seed=1)


def test_checkpoint_for_another_model_class_raises(tmp_path):
    path = tmp_path / "model.pt"
    run(small_autoencoder(), ReconstructionLoss(), 1, checkpoint=path)
    with pytest.raises(CheckpointError, match="model"):
        run(small_vae(), ReconstructionLoss(), 2, checkpoint=path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_checkpoint_raises_and_says_delete_it(tmp_path, damage):
    path = tmp_path / "vae.pt"
    run(small_vae(), ELBO(), 1, checkpoint=path)
    content = path.read_bytes()
    path.write_bytes(
        {"garbage": b"\x00garbage\xff" * 100, "truncated": content[: len(content) // 2], "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match="Delete it"):
        run(small_vae(), ELBO(), 2, checkpoint=path)


def test_file_that_is_not_a_checkpoint_raises(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a course_lib checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing.pt")


def test_save_checkpoint_roundtrip_creates_folders(tmp_path):
    path = tmp_path / "deep" / "er" / "ck.pt"
    save_checkpoint({"model": {"w": torch.arange(3.0)}, "epoch": 2}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.arange(3.0))


@pytest.mark.parametrize(
    "failure", [OSError("No space left on device"), KeyboardInterrupt()], ids=["disk_full", "interrupted"]
)
def test_save_checkpoint_is_atomic(tmp_path, monkeypatch, failure):
    path = tmp_path / "ck.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 1}, path)
    real_save = torch.save

    def save_half_then_fail(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.seek(0)
        file.truncate(10)  # a half-written file...
        raise failure  # ...and then the disk fills up, or the run is killed

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(type(failure)):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "epoch": 2}, path)

    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_failed_save_during_fit_keeps_the_previous_epoch(tmp_path, monkeypatch):
    path = tmp_path / "vae.pt"
    run(small_vae(), ELBO(), 1, checkpoint=path)

    def failing_save(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        run(small_vae(), ELBO(), 3, checkpoint=path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["vae.pt"]


# --------------------------------------------------------------------------- divergence and data checks


def nan_loss(model, x, y=None):
    out = model(x)
    return {"loss": out.sum() * float("nan")}


def test_nan_loss_raises_training_diverged():
    with pytest.raises(TrainingDivergedError, match="NaN or infinite"):
        run(small_autoencoder(), nan_loss, 2)


def test_infinite_loss_raises_training_diverged():
    def inf_loss(model, x, y=None):
        return {"loss": model(x).sum() * 0 + float("inf")}

    with pytest.raises(TrainingDivergedError):
        run(small_autoencoder(), inf_loss, 1)


def test_divergence_is_caught_within_check_every_steps():
    model = small_autoencoder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    seen = []

    def batches():
        for step in range(1, 11):
            seen.append(step)
            yield random_images(2), None

    def loss_fn(model, x, y=None):
        loss = model(x).sum()
        return {"loss": loss * float("nan") if len(seen) == 3 else loss}

    with pytest.raises(TrainingDivergedError):
        train_steps(model, batches(), loss_fn, optimizer, check_every=2)
    assert len(seen) == 4  # found at the first check after step 3, not at the end


def test_divergence_leaves_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "ae.pt"
    calls = []

    def loss_after_one_epoch(model, x, y=None):
        calls.append(1)
        loss = ReconstructionLoss()(model, x)["loss"]
        return {"loss": loss if len(calls) <= 4 else loss * float("nan")}  # 4 steps per epoch

    with pytest.raises(TrainingDivergedError):
        run(small_autoencoder(), loss_after_one_epoch, 3, checkpoint=path, with_test=False)
    assert load_checkpoint(path)["epoch"] == 1


@pytest.mark.parametrize("scale", [(-1.0, 1.0), (0.0, 255.0)], ids=["normalised", "unscaled"])
def test_data_outside_unit_interval_raises(scale):
    low, high = scale
    images = low + (high - low) * random_images(32)
    model = small_autoencoder()
    before = params(model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit(model, TensorLoader(images, batch_size=16), ReconstructionLoss(), 1, device="cpu", verbose=False)
    assert_same_params(before, params(model))  # refused before any step


def test_empty_training_data_raises():
    with pytest.raises(ValueError, match="no batches"):
        fit(small_autoencoder(), [], ReconstructionLoss(), 1, device="cpu", verbose=False)


# --------------------------------------------------------------------------- posterior collapse


def two_factor_images(n: int = 128, seed: int = 0) -> torch.Tensor:
    """Images whose left and right halves have independent random brightness: two latent factors."""
    a, b = torch.rand(2, n, 1, 1, generator=torch.Generator().manual_seed(seed))
    images = torch.empty(n, *SHAPE)
    images[:, 0, :, :4] = a
    images[:, 0, :, 4:] = b
    return images


def fit_structured(beta: float, epochs: int = 4):
    images = two_factor_images()
    torch.manual_seed(0)
    model = mlp_vae(SHAPE, latent_dim=4, hidden=(32,))
    return fit(
        model,
        TensorLoader(images, batch_size=16, seed=0),
        ELBO(beta=beta),
        epochs,
        test_data=TensorLoader(images, batch_size=128, shuffle=False),
        lr=1e-2,
        device="cpu",
        seed=0,
        verbose=False,
    )


def test_huge_beta_warns_posterior_collapse():
    with pytest.warns(PosteriorCollapseWarning, match="Posterior collapse") as record:
        history = fit_structured(beta=1000.0)
    assert history["active_units"].iloc[-1] == 0
    assert len([w for w in record if w.category is PosteriorCollapseWarning]) == 1  # once per run


def test_beta_one_on_structured_data_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        history = fit_structured(beta=1.0)
    assert history["active_units"].iloc[-1] >= 1


def test_no_collapse_warning_after_the_first_epoch_only():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        history = fit_structured(beta=1000.0, epochs=1)
    assert history["active_units"].iloc[0] == 0


def test_expected_warnings_catches_the_collapse_the_lesson_expects():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # anything that escapes the helper fails the test
        with expected_warnings(PosteriorCollapseWarning) as caught:
            fit_structured(beta=1000.0)
    assert [w.category for w in caught] == [PosteriorCollapseWarning]
    assert "Posterior collapse" in str(caught[0].message)


def test_expected_warnings_reissues_every_other_warning():
    with pytest.warns(RuntimeWarning, match="unexpected") as record:
        with expected_warnings(PosteriorCollapseWarning) as caught:
            warnings.warn("unexpected", RuntimeWarning)
    assert caught == []
    assert [w.category for w in record] == [RuntimeWarning]


def test_checkpoint_path_follows_course_checkpoint_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_CHECKPOINT_DIR", raising=False)
    assert checkpoint_path("ch01_ae", "cpu") == cache_dir() / "checkpoints" / "cpu" / "ch01_ae.pt"
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "fresh"))
    assert checkpoint_path("ch01_ae", "cpu") == tmp_path / "fresh" / "cpu" / "ch01_ae.pt"
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", "fresh")  # relative: another folder in every working directory
    with pytest.raises(ValueError, match=r"COURSE_CHECKPOINT_DIR='fresh' is a relative path.*absolute"):
        checkpoint_path("ch01_ae", "cpu")


def test_checkpoint_names_follow_one_scheme():
    path = checkpoint_path("ch07_stage2", "smoke", text="bert/mean", n=500, latent_dim=64, sigma=0.1)
    assert path.name == "ch07_stage2-latent_dim=64-n=500-sigma=0.1-text=bert_mean.pt"  # sorted, file-safe
    assert path.parent.name == "smoke"
    for bad in ("06_main", "ch4_vae", "ch04_MLP", "ch04_vae_d{20}"):
        with pytest.raises(ValueError, match="start with the chapter"):
            checkpoint_path(bad, "cpu")


# --------------------------------------------------------------------------- snapshots


def test_snapshots_collect_one_frame_per_epoch():
    fixed = random_images(6, seed=5)
    reconstructions = Snapshots.reconstructions(fixed, nrow=3)
    samples = Snapshots.samples(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)), nrow=2)
    run(small_vae(latent_dim=4), ELBO(), 3, callbacks=[reconstructions, samples])
    assert len(reconstructions.frames) == len(samples.frames) == 3
    for frame in reconstructions.frames:
        assert frame.dtype == torch.uint8
        assert frame.shape == (3, 2 * (8 + 2) + 2, 3 * (8 + 2) + 2)  # 2 rows x 3 columns, padding 2
    assert samples.frames[0].shape == (3, 2 * 10 + 2, 2 * 10 + 2)
    assert not torch.equal(reconstructions.frames[0], reconstructions.frames[-1])  # training changed them


def test_callbacks_see_the_epoch_and_an_eval_model():
    seen = []
    run(
        small_autoencoder(),
        ReconstructionLoss(),
        2,
        callbacks=[lambda epoch, model: seen.append((epoch, model.training))],
    )
    assert seen == [(1, False), (2, False)]


# --------------------------------------------------------------------------- profiles, device, seeding


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", " SMOKE ", "Gpu"])
def test_profile_names_resolve(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    profile = get_profile(name)
    assert profile is PROFILES[name.strip().lower()]
    assert profile.name in profile.describe()


def test_smoke_profile_is_small():
    smoke = get_profile("smoke")
    assert smoke.train_size is not None and smoke.train_size <= 5000
    assert smoke.epochs <= 2


def test_auto_profile_honours_course_profile(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert get_profile("auto").name == "smoke"
    assert get_profile().name == "smoke"
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert get_profile("auto").name == "gpu"
    assert get_profile("cpu").name == "cpu"  # an explicit name wins over the variable


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
def test_auto_profile_follows_cuda(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_profile("auto").name == expected


@pytest.mark.parametrize("colab", [False, True])
def test_the_gpu_profile_without_a_gpu_says_what_to_do(monkeypatch, colab):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    for how in ("gpu", "auto"):
        monkeypatch.setenv("COURSE_PROFILE", "gpu")  # read by "auto" only
        with pytest.raises(ValueError, match='no GPU that torch can use.*Use profile = "cpu"') as info:
            get_profile(how)
        assert ("Change runtime type" in str(info.value)) == colab


def test_auto_on_a_colab_runtime_without_a_gpu_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert get_profile("auto").name == "cpu"
    assert "this Colab runtime has no GPU" in capsys.readouterr().out
    assert get_profile("cpu").name == "cpu" and capsys.readouterr().out == ""  # asked for by name: no note


def test_unknown_profile_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get_profile("laptop")
    message = str(info.value)
    assert "'laptop'" in message
    for name in ("auto", "smoke", "cpu", "gpu"):
        assert name in message


def test_unknown_course_profile_variable_raises(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="COURSE_PROFILE='fast'"):
        get_profile("auto")


def test_choose_cuda_without_cuda_mentions_colab(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="Colab"):
        choose_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_choose_cuda_on_this_cpu_machine_mentions_colab():
    with pytest.raises(RuntimeError, match="Colab"):
        choose_device("cuda")


def test_choose_mps_without_mps_raises(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="MPS"):
        choose_device("mps")


def test_choose_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device() == torch.device("cpu")
    assert choose_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device() == torch.device("cuda")


def test_amp_is_off_on_the_cpu():
    assert amp_settings(torch.device("cpu"), True) == (None, False)


def test_seed_everything_repeats_all_generators():
    seed_everything(11)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(11)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
    seed_everything(12)
    assert random.random() != first[0]


# --------------------------------------------------------------------------- regressions


def make_function_loss(name: str = "bce_loss"):
    """A plain-function loss, created anew like a notebook cell that is run again (or a new kernel)."""

    def loss(model, x, y=None):
        return ReconstructionLoss()(model, x, y)

    loss.__name__ = loss.__qualname__ = name
    return loss


def test_function_loss_resumes_in_a_new_session(tmp_path):
    path = tmp_path / "ae.pt"
    first, again = make_function_loss(), make_function_loss()
    assert first is not again  # as after re-running the cell: same code, another object and address
    model_a = small_autoencoder()
    history_a = run(model_a, make_function_loss(), 3)

    run(small_autoencoder(), first, 2, checkpoint=path)
    resumed = small_autoencoder(init_seed=5)
    history_b = run(resumed, again, 3, checkpoint=path)
    assert_same_params(params(model_a), params(resumed))
    pd.testing.assert_frame_equal(without_seconds(history_a), without_seconds(history_b))


def test_another_function_loss_is_still_refused(tmp_path):
    path = tmp_path / "ae.pt"
    run(small_autoencoder(), make_function_loss("bce_loss"), 1, checkpoint=path)
    with pytest.raises(CheckpointError, match="loss"):
        run(small_autoencoder(), make_function_loss("mse_loss"), 2, checkpoint=path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_on_cuda_keeps_loader_and_frames_usable(tmp_path):
    from course_lib.plotting import save_gif

    path = tmp_path / "vae.pt"
    fixed = random_images(4, seed=9)
    model_a = small_vae()
    frames_a = Snapshots.reconstructions(fixed, nrow=4)
    run(model_a, ELBO(), 3, callbacks=[frames_a], device="cuda")
    run(small_vae(), ELBO(), 2, checkpoint=path, callbacks=[Snapshots.reconstructions(fixed, nrow=4)], device="cuda")
    resumed = small_vae(init_seed=5)
    frames_b = Snapshots.reconstructions(fixed, nrow=4)
    run(resumed, ELBO(), 3, checkpoint=path, callbacks=[frames_b], device="cuda")
    assert all(frame.device.type == "cpu" for frame in frames_b.frames)
    save_gif(frames_b.frames, tmp_path / "training.gif")
    for name, value in params(model_a).items():
        assert torch.allclose(value, params(resumed)[name], atol=1e-5), name
