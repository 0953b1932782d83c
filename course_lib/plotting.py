"""Figures used throughout the course: image grids, reconstructions, latent scatter plots, the latent
manifold, interpolation strips and training GIFs (chapters 01 and 02), and the caption box of chapter 06.

Imports course_lib.core only (for its switches), with matplotlib, numpy, torch, torchvision and PIL
(IPython for GIFs, ipywidgets for the caption box).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import make_grid

from course_lib.core.profiles import show_widgets


def _grid_array(images: Tensor, nrow: int) -> np.ndarray:
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1)
    return grid.permute(1, 2, 0).numpy()


def show_images(images: Tensor, nrow: int = 8, title: str | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """Show a batch [B, C, H, W] of images in [0, 1] as one grid (chapter 01)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(nrow * 0.8, (len(images) + nrow - 1) // nrow * 0.8 + 0.4))
    grid = _grid_array(images, nrow)
    ax.imshow(grid[..., 0] if images.shape[1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_reconstructions(
    originals: Tensor, reconstructions: Tensor, n: int = 10, title: str | None = None
) -> plt.Figure:
    """Originals (top row) above their reconstructions (bottom row; chapter 01)."""
    n = min(n, len(originals))
    fig, axes = plt.subplots(2, 1, figsize=(n * 0.9, 2.3))
    show_images(originals[:n], nrow=n, title="originals", ax=axes[0])
    show_images(reconstructions[:n], nrow=n, title="reconstructions", ax=axes[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_latent_scatter(
    codes: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    ax: plt.Axes | None = None,
    max_points: int = 5000,
) -> plt.Axes:
    """2-D latent codes (or a 2-D projection of them) coloured by class (chapter 01)."""
    codes, labels = np.asarray(codes)[:max_points], np.asarray(labels)[:max_points]
    if codes.shape[1] != 2:
        raise ValueError(
            f"plot_latent_scatter needs 2-D codes, got {codes.shape[1]} dimensions: project them "
            "first (PCA or t-SNE, chapter 08)."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab10")
    for k in np.unique(labels):
        mask = labels == k
        name = class_names[int(k)] if class_names is not None else str(k)
        ax.scatter(codes[mask, 0], codes[mask, 1], s=3, alpha=0.6, color=cmap(int(k) % 10), label=name)
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return ax


@torch.no_grad()
def latent_manifold(model: nn.Module, n: int = 20, dims: tuple[int, int] = (0, 1)) -> Tensor:
    """Decode an n x n grid of latent points placed at normal quantiles (TensorFlow VAE tutorial; chapter 02).

    The two latent dimensions ``dims`` sweep the quantiles 0.05 ... 0.95 of N(0, 1), so the grid
    covers where the prior puts its mass; all other dimensions are 0 (the prior's mean).
    """
    device = next(model.parameters()).device
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z = torch.zeros(n * n, model.latent_dim)
    grid_y, grid_x = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")  # z2 grows upwards
    z[:, dims[0]], z[:, dims[1]] = grid_x.reshape(-1), grid_y.reshape(-1)
    return model.decode(z.to(device)).cpu()


def show_latent_manifold(
    model: nn.Module, n: int = 20, dims: tuple[int, int] = (0, 1), title: str | None = None, ax: plt.Axes | None = None
) -> plt.Axes:
    """Plot :func:`latent_manifold` as one image with the quantile grid (chapter 02)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7))
    return show_images(latent_manifold(model, n, dims), nrow=n, title=title, ax=ax)


@torch.no_grad()
def interpolate(model: nn.Module, x_start: Tensor, x_end: Tensor, steps: int = 10) -> Tensor:
    """Decode ``steps`` points on the straight line between the codes of two images (chapter 02)."""
    device = next(model.parameters()).device
    codes = [model.encode(x.unsqueeze(0).to(device)) for x in (x_start, x_end)]
    z_start, z_end = (c[0] if isinstance(c, tuple) else c for c in codes)  # VAE: posterior mean
    weights = torch.linspace(0, 1, steps, device=device).unsqueeze(1)
    return model.decode((1 - weights) * z_start + weights * z_end).cpu()


def show_interpolation(
    model: nn.Module,
    x_start: Tensor,
    x_end: Tensor,
    steps: int = 10,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """An interpolation strip from ``x_start`` to ``x_end`` through latent space (chapter 02)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(steps * 0.9, 1.3))
    return show_images(interpolate(model, x_start, x_end, steps), nrow=steps, title=title, ax=ax)


def save_gif(frames: Sequence[Tensor], path: str | Path, seconds_per_frame: float = 0.5, upscale: int = 2) -> Path:
    """Write uint8 image grids [C, H, W] (e.g. ``Snapshots.frames``) as an animated GIF (chapter 02)."""
    if not frames:
        raise ValueError("No frames to write: train with a Snapshots callback first.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame.permute(1, 2, 0).numpy().squeeze()) for frame in frames]
    images = [im.resize((im.width * upscale, im.height * upscale), Image.NEAREST) for im in images]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(seconds_per_frame * 1000), loop=0)
    return path


def plot_history(history, columns: Sequence[str], title: str | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """Line plot of columns of a training history table against the epoch (chapter 06)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for column in columns:
        ax.plot(history.index, history[column], marker="o", label=column)
    ax.set_xlabel("epoch")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def show_gif(path: str | Path, width: int = 360):
    """Display a GIF inline, embedded as HTML (renders in Jupyter and in the built book; chapter 02)."""
    import base64

    from IPython.display import HTML

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return HTML(f'<img src="data:image/gif;base64,{data}" width="{width}" alt="{Path(path).name}"/>')


def plot_som(
    u_matrix: np.ndarray,
    hits: np.ndarray,
    majority: np.ndarray,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """A self-organising map in one panel (chapter 08): the U-matrix in grey (dark = close neighbours,
    light ridges = borders between clusters), and on each unit a dot coloured by its majority class,
    its area proportional to the unit's hit count (``majority`` is -1 for a unit that won no code).

    The inputs come from :func:`course_lib.evaluation.analysis.som_u_matrix`, :func:`~course_lib.evaluation.analysis.som_hit_map`
    and the majority label of each unit.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    rows, cols = hits.shape
    ax.imshow(u_matrix, cmap="Greys", origin="upper")
    cmap = plt.get_cmap("tab10")
    r, c = np.nonzero(hits)
    ax.scatter(c, r, s=250 * hits[r, c] / hits.max(), c=[cmap(int(k) % 10) for k in majority[r, c]], edgecolors="none")
    for k in np.unique(majority[majority >= 0]):
        name = class_names[int(k)] if class_names is not None else str(k)
        ax.scatter([], [], s=30, color=cmap(int(k) % 10), label=name)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def wrapped_title(text: str, width: int = 30) -> str:
    """``text`` broken into lines of at most ``width`` characters at spaces, for a small panel's title
    (chapter 06): cutting at a fixed position splits words."""
    return "\n".join(textwrap.wrap(text, width)) or " "


def show_caption_samples(draw: Callable[[str], Tensor], caption: str, ax: plt.Axes | None = None) -> plt.Axes:
    """The images ``draw(caption)`` returns, in one row under the caption (chapter 06)."""
    images = draw(caption)
    return show_images(images, nrow=len(images), title=wrapped_title(caption, 60), ax=ax)


def caption_box(draw: Callable[[str], Tensor], default: str) -> None:
    """A text box and a button: type a caption, see what ``draw(caption)`` makes of it (chapter 06).

    In JupyterLab and Colab it shows the widget, with the samples of ``default`` already drawn; with
    ``COURSE_WIDGETS=0`` (headless runs, the rendered book) only the static figure for ``default``.
    An error from ``draw`` (an empty caption, say) is printed under the box, and the box stays usable.
    """
    from IPython.display import display

    if not show_widgets():
        show_caption_samples(draw, default)
        plt.show()
        return
    import ipywidgets as widgets

    text = widgets.Text(
        value=default, description="caption", continuous_update=False, layout=widgets.Layout(width="70%")
    )
    button = widgets.Button(description="draw", button_style="primary")
    output = widgets.Output()

    def redraw(_=None) -> None:
        with output:
            output.clear_output(wait=True)
            try:
                show_caption_samples(draw, text.value)
                plt.show()
            except ValueError as error:
                print(f"{type(error).__name__}: {error}")

    button.on_click(redraw)
    text.observe(redraw, names="value")  # Enter (or leaving the box) draws too
    display(widgets.VBox([widgets.HBox([text, button]), output]))
    redraw()
