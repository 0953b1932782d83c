"""Latent codes of a data set (chapter 01), for scatter plots and the analysis chapters."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def encode_dataset(model: nn.Module, data: Iterable[tuple[Tensor, Tensor | None]]) -> tuple[Tensor, Tensor | None]:
    """Encode every batch of ``data``: ``(codes [N, D], labels [N])`` on the CPU.

    For a VAE the code is the posterior mean.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    codes, labels = [], []
    for x, y in data:
        code = model.encode(x.to(device))
        codes.append((code[0] if isinstance(code, tuple) else code).float().cpu())
        if y is not None:
            labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(codes), (torch.cat(labels) if labels else None)
