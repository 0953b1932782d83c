"""Latent codes of a data set (chapter 01), for scatter plots and the analysis chapters.

Imports no other part of course_lib: numpy and torch, and scikit-learn and minisom where they are used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # minisom is imported where it is used, like scikit-learn
    from minisom import MiniSom


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


def knn_accuracy(
    train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor, k: int = 5
) -> float:
    """Held-out accuracy of a k-nearest-neighbour classifier on latent codes (chapter 04): how much
    class information the latent space keeps where a simple, local rule can read it."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k).fit(train_codes.numpy(), train_labels.numpy())
    return float(knn.score(test_codes.numpy(), test_labels.numpy()))


def silhouette(codes: Tensor, labels: Tensor, max_points: int = 5000, seed: int = 0) -> float:
    """Silhouette score of the classes in latent space, in [-1, 1]: near 0 means classes overlap
    (chapter 04). Computed on a seeded subset of at most ``max_points`` points (it is quadratic)."""
    from sklearn.metrics import silhouette_score

    return float(
        silhouette_score(codes.numpy(), labels.numpy(), sample_size=min(max_points, len(codes)), random_state=seed)
    )


def tsne(codes: Tensor, seed: int = 0, perplexity: float = 30.0) -> Tensor:
    """2-D t-SNE embedding of latent codes (chapter 04), seeded so figures are reproducible."""
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, (len(codes) - 1) / 3)  # sklearn requires perplexity < n_samples
    embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes.numpy())
    return torch.from_numpy(embedding)


def retrieval_recall(queries: Tensor, gallery: Tensor, ks: Iterable[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@k of cosine-similarity retrieval where query i's match is gallery item i (chapters 05 and 07).

    For each query the gallery is ranked by cosine similarity; recall@k is the fraction of queries
    whose own item is among the top k. Chance is ``k / len(gallery)``. Ties count against the query
    (an item ranks below every item at least as similar), so a constant embedding scores 0, not 1.
    """
    if queries.shape != gallery.shape:
        raise ValueError(f"queries {list(queries.shape)} and gallery {list(gallery.shape)} must pair up row by row.")
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    g = torch.nn.functional.normalize(gallery.float(), dim=1)
    similarity = q @ g.T
    own = similarity.diagonal().unsqueeze(1)
    rank = (similarity >= own).sum(1)  # 1 = the own item is strictly the most similar
    return {k: float((rank <= k).double().mean()) for k in ks}


# ---------------------------------------------------------------- chapter 08: latent analysis
def _check_codes(codes: Tensor, where: str, at_least: int = 2) -> None:
    """A clear error for a code set too small to measure anything (chapter 08)."""
    if codes.dim() != 2 or len(codes) < at_least:
        raise ValueError(
            f"{where} needs codes [N, d] with N >= {at_least}, got shape {list(codes.shape)}: with fewer "
            "codes there is nothing to measure (one code is always perfectly mapped). Encode more images."
        )


def pca(codes: Tensor, n_components: int = 2) -> tuple[Tensor, np.ndarray]:
    """Project latent codes on their first principal axes (chapter 08): ``(projected [N, n_components],
    explained_variance_ratio [n_components])``. The ratios say how flat the latent cloud is."""
    from sklearn.decomposition import PCA

    _check_codes(codes, "pca", at_least=max(2, n_components))
    if float(codes.float().var(0).sum()) == 0.0:
        raise ValueError(
            f"All {len(codes)} codes are the same point, so they have no principal axes (the ratios would "
            "be NaN). A collapsed encoder does this: check its active units (chapter 07)."
        )
    fitted = PCA(n_components=n_components).fit(codes.numpy())
    return torch.from_numpy(fitted.transform(codes.numpy())), fitted.explained_variance_ratio_


def linear_probe_accuracy(train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor) -> float:
    """Held-out accuracy of a logistic-regression probe on latent codes (chapter 08): how much class
    information a single linear read-out finds, the global counterpart of :func:`knn_accuracy`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # standardised inputs: latent dimensions differ in scale, and lbfgs converges far faster on them
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_codes.numpy(), train_labels.numpy())
    return float(probe.score(test_codes.numpy(), test_labels.numpy()))


def tsne_trustworthiness(
    codes: Tensor, embedding: Tensor, n_neighbors: int = 5, max_points: int = 5000, seed: int = 0
) -> float:
    """Trustworthiness of a 2-D embedding (e.g. :func:`tsne`) of ``codes``, in [0, 1] (chapter 08):
    1 when every embedding neighbour is also a neighbour in latent space. Computed on a seeded subset
    of at most ``max_points`` points (it is quadratic)."""
    from sklearn.manifold import trustworthiness

    keep = np.random.default_rng(seed).permutation(len(codes))[:max_points]  # same rows in both spaces
    return float(trustworthiness(codes.numpy()[keep], embedding.numpy()[keep], n_neighbors=n_neighbors))


def train_som(
    codes: Tensor, rows: int, cols: int, iterations: int, seed: int = 0, sigma: float = 1.0, learning_rate: float = 0.5
) -> MiniSom:
    """A ``rows`` x ``cols`` self-organising map (minisom) trained on latent codes (chapter 08).

    The map is fitted on the codes as given, not standardised, so its quantization error is in latent
    units and comparable with :func:`kmeans_quantization_error`. Seeded: the initial weights (drawn
    from the codes) and the order of the training samples both come from ``seed``.
    """
    from minisom import MiniSom

    _check_codes(codes, "train_som")
    data = codes.numpy().astype(np.float64)
    som = MiniSom(rows, cols, data.shape[1], sigma=sigma, learning_rate=learning_rate, random_seed=seed)
    som.random_weights_init(data)  # starts inside the data whatever its scale
    som.train(data, iterations, random_order=True)
    return som


def som_quality(som: MiniSom, codes: Tensor) -> dict[str, float]:
    """minisom's own quality measures of a map on ``codes`` (chapter 08): ``quantization_error`` (mean
    Euclidean distance to the best-matching unit) and ``topographic_error`` (fraction of codes whose
    two best units are not adjacent on the grid, in [0, 1])."""
    _check_codes(codes, "som_quality")
    data = codes.numpy().astype(np.float64)
    return {
        "quantization_error": float(som.quantization_error(data)),
        "topographic_error": float(som.topographic_error(data)),
    }


def kmeans_quantization_error(codes: Tensor, n_clusters: int, seed: int = 0) -> float:
    """Mean Euclidean distance from each code to its nearest k-means centre (chapter 08): the same
    definition as minisom's quantization error, so with ``n_clusters = rows * cols`` it is the baseline
    of a map with as many units but no grid to respect."""
    from sklearn.cluster import KMeans

    data = codes.numpy().astype(np.float64)
    kmeans = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(data)
    return float(kmeans.transform(data).min(axis=1).mean())


def assignment_purity(assignments: Tensor, labels: Tensor) -> float:
    """Fraction of points whose label is the majority label of their group (chapter 08, exercise 8.1).

    ``assignments [N]`` names each point's group (a SOM unit, a k-means cluster), ``labels [N]`` its
    class. 1 when every group holds one class; with many small groups even random labels score well
    above 1 / classes, so compare with shuffled labels.
    """
    if assignments.shape != labels.shape or assignments.dim() != 1 or not len(labels):
        raise ValueError(
            f"assignments {list(assignments.shape)} and labels {list(labels.shape)} must be "
            "two non-empty vectors of the same length."
        )
    pairs = torch.stack([torch.as_tensor(assignments).long(), torch.as_tensor(labels).long()], dim=1)
    groups_and_labels, counts = pairs.unique(dim=0, return_counts=True)
    _, group_index = groups_and_labels[:, 0].unique(return_inverse=True)
    majority = torch.zeros(int(group_index.max()) + 1, dtype=counts.dtype).scatter_reduce(
        0, group_index, counts, "amax"
    )
    return float(majority.sum()) / len(labels)


def som_purity(som: MiniSom, codes: Tensor, labels: Tensor) -> float:
    """:func:`assignment_purity` of the map's best-matching units (chapter 08).

    Biased upwards by chance: with few codes per unit, even random labels have a majority above
    1 / classes, so compare with the purity of shuffled labels.
    """
    winners = torch.from_numpy(som_winners(som, codes))
    return assignment_purity(winners[:, 0] * som.get_weights().shape[1] + winners[:, 1], labels)


def som_majority(som: MiniSom, codes: Tensor, labels: Tensor) -> np.ndarray:
    """The most frequent label among the codes each unit wins, ``[rows, cols]``, -1 where it wins none (chapter 08)."""
    winners = som_winners(som, codes)
    rows, cols = som.get_weights().shape[:2]
    counts = np.zeros((rows, cols, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (winners[:, 0], winners[:, 1], labels.numpy().astype(np.int64)), 1)
    return np.where(counts.sum(-1) > 0, counts.argmax(-1), -1)


def som_hit_map(som: MiniSom, codes: Tensor) -> np.ndarray:
    """Number of codes won by each unit, ``[rows, cols]`` integers summing to N (chapter 08)."""
    return som.activation_response(codes.numpy().astype(np.float64)).astype(np.int64)


def som_u_matrix(som: MiniSom) -> np.ndarray:
    """U-matrix ``[rows, cols]``: each unit's distance to its grid neighbours, normalised to [0, 1];
    ridges of high values separate clusters (chapter 08)."""
    return som.distance_map()


def som_winners(som: MiniSom, codes: Tensor) -> np.ndarray:
    """Grid position ``(row, col)`` of each code's best-matching unit, ``[N, 2]`` (chapter 08)."""
    return np.array([som.winner(x) for x in codes.numpy().astype(np.float64)], dtype=np.int64).reshape(-1, 2)


def unit_agreement(som: MiniSom, codes_a: Tensor, codes_b: Tensor, radius: int = 1, seed: int = 0) -> dict[str, float]:
    """How often paired codes (e.g. an image latent and its caption's, in the same latent space) land
    on the same map unit (chapter 08).

    Returns ``same`` (identical best-matching units) and ``neighbour`` (units within Chebyshev
    distance ``radius`` on the grid), and ``chance_same`` / ``chance_neighbour``: the same fractions
    after a seeded shuffle of ``codes_b``, which keeps both marginal hit maps but breaks the pairing.
    """
    win_a, win_b = som_winners(som, codes_a), som_winners(som, codes_b)
    shuffled = win_b[np.random.default_rng(seed).permutation(len(win_b))]

    def fractions(other: np.ndarray) -> tuple[float, float]:
        distance = np.abs(win_a - other).max(axis=1)  # Chebyshev: diagonal neighbours count as adjacent
        return float((distance == 0).mean()), float((distance <= radius).mean())

    (same, neighbour), (chance_same, chance_neighbour) = fractions(win_b), fractions(shuffled)
    return {"same": same, "neighbour": neighbour, "chance_same": chance_same, "chance_neighbour": chance_neighbour}
