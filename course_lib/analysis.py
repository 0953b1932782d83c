"""Latent codes of a data set (chapter 01), for scatter plots and the analysis chapters."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from course_lib.models.cvae import conditioning


@torch.no_grad()
def encode_dataset(model: nn.Module, data: Iterable[tuple[Tensor, Tensor | None]],
                   sample: bool = False) -> tuple[Tensor, Tensor | None]:
    """Encode every batch of ``data``: ``(codes [N, D], labels [N])`` on the CPU.

    For a VAE the code is the posterior mean, or with ``sample=True`` one draw z ~ q(z|x): the kind
    of code its decoder was trained on (chapter 02).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    codes, labels = [], []
    for x, y in data:
        code = model.encode(x.to(device), *conditioning(model, y))
        if isinstance(code, tuple):  # VAE: (mu, logvar)
            code = model.reparameterize(*code) if sample else code[0]
        codes.append(code.float().cpu())
        if y is not None:
            labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(codes), (torch.cat(labels) if labels else None)


def empty_region_fraction(reference: Tensor, held_out: Tensor, samples: Tensor, quantile: float = 0.95) -> float:
    """Fraction of ``samples`` that land where the data has no codes (chapters 01 and 02).

    A sample counts as "in an empty region" when its distance to the nearest ``reference`` code
    (e.g. training codes) exceeds the ``quantile`` of the same distance for ``held_out`` data codes.
    Real held-out codes therefore score ``1 - quantile`` by construction; a latent space that can
    be sampled scores close to that.
    """
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=1).fit(reference.numpy())
    threshold = torch.quantile(torch.from_numpy(index.kneighbors(held_out.numpy())[0][:, 0]), quantile)
    distances = torch.from_numpy(index.kneighbors(samples.numpy())[0][:, 0])
    return float((distances > threshold).double().mean())
