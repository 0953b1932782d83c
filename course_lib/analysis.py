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


def knn_accuracy(train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor,
                 k: int = 5) -> float:
    """Held-out accuracy of a k-nearest-neighbour classifier on latent codes (chapter 04): how much
    class information the latent space keeps where a simple, local rule can read it."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k).fit(train_codes.numpy(), train_labels.numpy())
    return float(knn.score(test_codes.numpy(), test_labels.numpy()))


def silhouette(codes: Tensor, labels: Tensor, max_points: int = 5000, seed: int = 0) -> float:
    """Silhouette score of the classes in latent space, in [-1, 1]: near 0 means classes overlap
    (chapter 04). Computed on a seeded subset of at most ``max_points`` points (it is quadratic)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(codes.numpy(), labels.numpy(), sample_size=min(max_points, len(codes)),
                                  random_state=seed))


def tsne(codes: Tensor, seed: int = 0, perplexity: float = 30.0) -> Tensor:
    """2-D t-SNE embedding of latent codes (chapter 04), seeded so figures are reproducible."""
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, (len(codes) - 1) / 3)  # sklearn requires perplexity < n_samples
    embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes.numpy())
    return torch.from_numpy(embedding)
