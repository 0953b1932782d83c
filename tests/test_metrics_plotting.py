"""Reconstruction metrics, the figures (Agg backend, set in conftest), GIFs and show_source."""

from __future__ import annotations

import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import course_lib.core.losses
from course_lib import show_source
from course_lib.core.train import encode_dataset
from course_lib.data.images import TensorLoader
from course_lib.evaluation.metrics import reconstruction_metrics
from course_lib.models import mlp_autoencoder, mlp_vae
from course_lib.plotting import (
    interpolate,
    latent_manifold,
    plot_history,
    plot_latent_scatter,
    save_gif,
    show_images,
    show_interpolation,
    show_latent_manifold,
    show_reconstructions,
)


def images(n=8, shape=(1, 16, 16), seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


class Reconstructor(nn.Module):
    """A stand-in model whose reconstruction is ``transform(x)``."""

    def __init__(self, transform):
        super().__init__()
        self.transform = transform
        self.dummy = nn.Parameter(torch.zeros(()))

    def reconstruct(self, x):
        return self.transform(x)


def test_agg_backend_is_active():
    assert matplotlib.get_backend().lower() == "agg"


# --------------------------------------------------------------------------- metrics


def test_perfect_reconstruction_has_zero_mse_and_unit_ssim():
    data = TensorLoader(images(10), batch_size=4, shuffle=False)  # uneven last batch
    metrics = reconstruction_metrics(Reconstructor(lambda x: x), data)
    assert metrics["mse_per_pixel"] == 0.0
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_noisy_reconstruction_has_positive_mse_and_lower_ssim():
    x = images(10)
    noise = 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

    def noisy(batch):
        return (batch + noise[: len(batch)]).clamp(0, 1)

    data = TensorLoader(x, batch_size=10, shuffle=False)
    metrics = reconstruction_metrics(Reconstructor(noisy), data)
    expected_mse = float(((noisy(x) - x) ** 2).mean())
    assert metrics["mse_per_pixel"] == pytest.approx(expected_mse, rel=1e-5)
    assert metrics["mse_per_pixel"] > 0.01
    assert metrics["ssim"] < 0.9


def test_mse_is_averaged_over_pixels_of_all_batches():
    x = images(6, shape=(3, 12, 12))
    data = TensorLoader(x, batch_size=4, shuffle=False)
    metrics = reconstruction_metrics(Reconstructor(lambda batch: torch.full_like(batch, 0.5)), data)
    assert metrics["mse_per_pixel"] == pytest.approx(float(((x - 0.5) ** 2).mean()), rel=1e-5)


def test_metrics_restore_training_mode():
    model = Reconstructor(lambda x: x).train()
    reconstruction_metrics(model, TensorLoader(images(4), batch_size=4))
    assert model.training


def test_encode_dataset_returns_codes_and_labels():
    torch.manual_seed(0)
    model = mlp_vae((1, 16, 16), latent_dim=3, hidden=(8,))
    x = images(10)
    codes, labels = encode_dataset(model, TensorLoader(x, torch.arange(10), batch_size=4, shuffle=False))
    assert codes.shape == (10, 3)
    assert torch.equal(labels, torch.arange(10))
    assert torch.allclose(codes, model.encode(x)[0].detach(), atol=1e-6)  # the posterior mean


def test_encode_dataset_can_sample_the_posterior():
    torch.manual_seed(0)
    model = mlp_vae((1, 16, 16), latent_dim=3, hidden=(8,))
    x = images(400)
    data = TensorLoader(x, None, batch_size=100, shuffle=False)
    mu, logvar = (t.detach() for t in model.encode(x))
    samples, labels = encode_dataset(model, data, sample=True)
    assert labels is None and samples.shape == (400, 3)
    standardised = (samples - mu) / (0.5 * logvar).exp()  # should be N(0, 1) draws
    assert abs(float(standardised.mean())) < 0.15 and abs(float(standardised.std()) - 1) < 0.1


# --------------------------------------------------------------------------- figures


def test_show_images_draws_one_grid():
    ax = show_images(images(6, shape=(1, 8, 8)), nrow=3, title="six")
    drawn = ax.images[0].get_array()
    assert drawn.shape == (2 * (8 + 2) + 2, 3 * (8 + 2) + 2)  # grey: one channel, padding 2
    assert ax.get_title() == "six"


def test_show_images_in_colour():
    ax = show_images(images(4, shape=(3, 8, 8)), nrow=4)
    assert ax.images[0].get_array().shape == (8 + 4, 4 * (8 + 2) + 2, 3)


def test_show_images_on_given_axes():
    _, ax = plt.subplots()
    assert show_images(images(2, shape=(1, 8, 8)), ax=ax) is ax


def test_show_reconstructions_has_two_rows():
    x = images(5, shape=(1, 8, 8))
    fig = show_reconstructions(x, x.flip(0), n=10, title="AE")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["originals", "reconstructions"]
    assert fig.axes[0].images[0].get_array().shape[1] == 5 * (8 + 2) + 2  # n capped at 5 images


def test_plot_latent_scatter_colours_each_class():
    codes = torch.randn(30, 2)
    labels = torch.arange(30) % 3
    ax = plot_latent_scatter(codes, labels, class_names=["zero", "one", "two"], title="latent")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    assert len(ax.collections) == 3
    assert sum(len(c.get_offsets()) for c in ax.collections) == 30


def test_plot_latent_scatter_respects_max_points():
    ax = plot_latent_scatter(np.random.randn(100, 2), np.zeros(100), max_points=40)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 40


def test_plot_latent_scatter_rejects_codes_that_are_not_2d():
    with pytest.raises(ValueError, match="2-D codes, got 3"):
        plot_latent_scatter(torch.randn(10, 3), torch.zeros(10))


class RecordingDecoder(nn.Module):
    """decode() keeps the latent codes it was given and returns images whose mean is z[:, 0]."""

    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen = None

    def decode(self, z):
        self.seen = z.clone()
        return torch.sigmoid(z[:, :1, None, None].expand(len(z), 1, 5, 4))


def test_latent_manifold_shape_and_quantile_grid():
    model = RecordingDecoder()
    grid = latent_manifold(model, n=4, dims=(0, 2))
    assert grid.shape == (16, 1, 5, 4)
    z = model.seen
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 4))
    assert torch.allclose(z[:4, 0], q)  # first row: z_dims[0] sweeps left to right
    assert torch.allclose(z[::4, 2], q.flip(0))  # first column: z_dims[1] grows upwards
    assert torch.equal(z[:, 1], torch.zeros(16))  # other dimensions at the prior mean
    assert z[0, 0] == pytest.approx(-1.6449, abs=1e-3)


def test_latent_manifold_of_a_vae():
    torch.manual_seed(0)
    model = mlp_vae((3, 8, 8), latent_dim=2, hidden=(8,))
    grid = latent_manifold(model, n=3)
    assert grid.shape == (9, 3, 8, 8)
    assert float(grid.min()) >= 0 and float(grid.max()) <= 1
    ax = show_latent_manifold(model, n=3, title="manifold")
    assert ax.images[0].get_array().shape == (3 * 10 + 2, 3 * 10 + 2, 3)


@pytest.mark.parametrize("make", [mlp_autoencoder, mlp_vae], ids=["autoencoder", "vae"])
def test_interpolate_runs_from_start_to_end(make):
    torch.manual_seed(0)
    model = make((1, 8, 8), latent_dim=3, hidden=(8,)).eval()
    start, end = images(2, shape=(1, 8, 8))
    strip = interpolate(model, start, end, steps=5)
    assert strip.shape == (5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(strip[0], model.reconstruct(start[None])[0], atol=1e-6)
        assert torch.allclose(strip[-1], model.reconstruct(end[None])[0], atol=1e-6)
    assert not torch.allclose(strip[0], strip[-1])
    ax = show_interpolation(model, start, end, steps=5)
    assert ax.images[0].get_array().shape == (8 + 4, 5 * 10 + 2)


def test_plot_history_draws_each_column():
    import pandas as pd

    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "test_loss": [3.1, 2.2, 1.9]}).set_index(
        "epoch"
    )
    ax = plot_history(history, ["train_loss", "test_loss"], title="loss")
    assert [line.get_label() for line in ax.get_lines()] == ["train_loss", "test_loss"]
    assert list(ax.get_lines()[1].get_ydata()) == [3.1, 2.2, 1.9]


# --------------------------------------------------------------------------- GIFs


@pytest.mark.parametrize("channels", [3, 1])
def test_save_gif_writes_every_frame(tmp_path, channels):
    frames = [torch.full((channels, 6, 10), 25 * i, dtype=torch.uint8) for i in range(5)]  # all distinct
    path = save_gif(frames, tmp_path / "sub" / "training.gif", seconds_per_frame=0.1, upscale=3)
    assert path == tmp_path / "sub" / "training.gif"
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == len(frames)
        assert gif.size == (30, 18)  # upscaled (width, height)
        assert gif.info["duration"] == 100


def test_save_gif_of_snapshot_frames(tmp_path):
    from course_lib.core.train import Snapshots

    torch.manual_seed(0)
    snapshots = Snapshots.reconstructions(images(4, shape=(1, 8, 8)), nrow=2)
    for epoch in range(3):
        model = mlp_autoencoder((1, 8, 8), latent_dim=2, hidden=(8,))
        snapshots(epoch, model)
    with Image.open(save_gif(snapshots.frames, tmp_path / "s.gif")) as gif:
        assert gif.n_frames == 3


def test_save_gif_without_frames_raises(tmp_path):
    with pytest.raises(ValueError, match="No frames"):
        save_gif([], tmp_path / "empty.gif")
    assert not (tmp_path / "empty.gif").exists()


# --------------------------------------------------------------------------- show_source


def test_show_source_returns_the_code():
    shown = show_source(course_lib.core.losses.kl_per_dim)
    text = getattr(shown, "data", shown)
    assert "def kl_per_dim" in text
    assert "logvar.exp()" in text


def test_show_source_without_ipython_returns_text(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython.display", None)  # makes the import fail
    shown = show_source(course_lib.core.losses.ELBO)
    assert isinstance(shown, str)
    assert shown.startswith("@dataclass\nclass ELBO")
    assert "def __call__" in shown


def test_latent_structure_numbers_separate_clusters_from_shuffled_labels():
    from course_lib.evaluation.analysis import knn_accuracy, silhouette, tsne

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(600) % 3
    codes = torch.randn(600, 5, generator=generator) * 0.3 + torch.nn.functional.one_hot(labels, 5).float() * 4
    shuffled = labels[torch.randperm(600, generator=generator)]
    assert knn_accuracy(codes[:400], labels[:400], codes[400:], labels[400:]) > 0.95
    assert knn_accuracy(codes[:400], shuffled[:400], codes[400:], shuffled[400:]) < 0.5  # chance is 1/3
    assert silhouette(codes, labels) > 0.7 and abs(silhouette(codes, shuffled)) < 0.1
    embedding = tsne(codes[:150])
    assert embedding.shape == (150, 2)
    assert knn_accuracy(embedding[:100], labels[:100], embedding[100:], labels[100:150]) > 0.9
