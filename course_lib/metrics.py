"""Held-out reconstruction metrics (chapter 01): MSE per pixel and SSIM (torchmetrics)."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from course_lib.models.cvae import conditioning


@torch.no_grad()
def reconstruction_metrics(model: nn.Module, data: Iterable[tuple[Tensor, Tensor | None]]) -> dict[str, float]:
    """Mean squared error per pixel and SSIM (Gaussian 11x11 window, ``data_range=1``) of
    ``model.reconstruct(x)`` against ``x``, averaged over every image of ``data``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    squared_error, ssim_sum, n_images, n_values = 0.0, 0.0, 0, 0
    for x, y in data:
        x = x.to(device)
        x_hat = model.reconstruct(x, *conditioning(model, y)).float()
        squared_error += float(((x_hat - x) ** 2).sum())
        ssim_sum += float(structural_similarity_index_measure(x_hat, x, data_range=1.0, reduction="sum"))
        n_images += len(x)
        n_values += x.numel()
    model.train(was_training)
    return {"mse_per_pixel": squared_error / n_values, "ssim": ssim_sum / n_images}
