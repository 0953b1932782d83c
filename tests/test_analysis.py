"""The latent-analysis helpers of chapter 08 on data with known structure: well-separated blobs must
score close to 1, shuffled labels close to chance (1 / classes), so every check can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from course_lib.evaluation.analysis import (
    assignment_purity,
    kmeans_quantization_error,
    knn_accuracy,
    linear_probe_accuracy,
    pca,
    som_hit_map,
    som_majority,
    som_purity,
    som_quality,
    som_u_matrix,
    som_winners,
    train_som,
    tsne_trustworthiness,
    unit_agreement,
)

CLASSES, N, DIM = 4, 800, 8
ROWS, COLS = 4, 4


@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """Four well-separated 8-D Gaussian blobs (seeded): codes float32 [N, 8], labels [N]."""
    x, y = make_blobs(N, n_features=DIM, centers=CLASSES, cluster_std=1.0, center_box=(-20, 20), random_state=0)
    return torch.from_numpy(x).float(), torch.from_numpy(y)


@pytest.fixture(scope="module")
def som(blobs):
    return train_som(blobs[0], ROWS, COLS, iterations=2000, seed=0)


def shuffled(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return labels[torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))]


def split(codes, labels):
    half = len(codes) // 2
    return codes[:half], labels[:half], codes[half:], labels[half:]


@pytest.mark.parametrize("probe", [knn_accuracy, linear_probe_accuracy])
def test_probes_read_separable_classes_and_not_shuffled_ones(blobs, probe):
    codes, labels = blobs
    assert probe(*split(codes, labels)) > 0.97
    # shuffle train and test labels alike, so that no label depends on its code; shuffling only the
    # training labels would map each blob to one random class and score a multiple of 1 / CLASSES
    assert probe(*split(codes, shuffled(labels))) == pytest.approx(1 / CLASSES, abs=0.1)


def test_pca_of_a_plane_in_10d_explains_everything_with_two_components():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 10)) + rng.normal(size=10)
    projected, ratio = pca(torch.from_numpy(plane).float(), n_components=3)
    assert projected.shape == (500, 3)
    assert ratio[:2].sum() == pytest.approx(1.0, abs=1e-4)
    assert ratio[2] < 1e-4
    # isotropic noise has no such plane: two of ten components explain about 2/10
    _, noise_ratio = pca(torch.from_numpy(rng.normal(size=(500, 10))).float())
    assert noise_ratio.sum() < 0.35


def test_trustworthiness_is_one_for_the_data_itself_and_low_for_noise(blobs):
    codes = blobs[0]
    assert tsne_trustworthiness(codes, codes) == pytest.approx(1.0)
    assert tsne_trustworthiness(codes, torch.randn(len(codes), 2, generator=torch.Generator().manual_seed(0))) < 0.7
    # the seeded subset keeps rows paired across both spaces
    assert tsne_trustworthiness(codes, codes.clone(), max_points=200) == pytest.approx(1.0)


def test_som_is_seeded(blobs, som):
    again = train_som(blobs[0], ROWS, COLS, iterations=2000, seed=0)
    np.testing.assert_array_equal(again.get_weights(), som.get_weights())
    assert not np.array_equal(train_som(blobs[0], ROWS, COLS, iterations=2000, seed=1).get_weights(), som.get_weights())


def test_som_quantization_error_is_close_to_kmeans_with_as_many_units(blobs, som):
    quality = som_quality(som, blobs[0])
    kmeans = kmeans_quantization_error(blobs[0], ROWS * COLS, seed=0)
    # the grid costs the map a little precision, not a different order of magnitude
    assert 0.9 * kmeans < quality["quantization_error"] < 1.5 * kmeans
    assert 0.0 <= quality["topographic_error"] < 0.1


def test_som_purity_is_high_for_blobs_and_near_chance_for_shuffled_labels(blobs):
    codes, labels = blobs
    small = train_som(codes, 3, 3, iterations=2000, seed=0)  # ~90 codes a unit: little upward bias by chance
    assert som_purity(small, codes, labels) > 0.97
    assert som_purity(small, codes, shuffled(labels)) == pytest.approx(1 / CLASSES, abs=0.1)


def test_hit_map_counts_every_code_and_u_matrix_covers_the_grid(blobs, som):
    hits = som_hit_map(som, blobs[0])
    assert hits.shape == (ROWS, COLS) and hits.sum() == N
    assert hits.max() < N  # the codes spread over several units
    u_matrix = som_u_matrix(som)
    assert u_matrix.shape == (ROWS, COLS)
    assert u_matrix.max() == pytest.approx(1.0) and u_matrix.min() >= 0.0


def test_unit_agreement_of_paired_codes_is_high_and_shuffled_chance_is_low(blobs, som):
    codes = blobs[0]
    identical = unit_agreement(som, codes, codes)
    assert identical["same"] == 1.0 and identical["neighbour"] == 1.0
    assert identical["chance_same"] < 0.3
    assert identical["chance_same"] <= identical["chance_neighbour"] < 1.0
    # a small perturbation keeps most pairs on their unit; the radius only adds agreement
    noisy = codes + 0.05 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    perturbed = unit_agreement(som, codes, noisy, radius=1)
    assert perturbed["same"] > 0.9 and perturbed["neighbour"] >= perturbed["same"]
    assert unit_agreement(som, codes, shuffled(codes), radius=0)["same"] < 0.3


def test_retrieval_recall_of_matching_pairs_is_one_and_of_shuffled_pairs_near_chance():
    from course_lib.evaluation.analysis import retrieval_recall

    generator = torch.Generator().manual_seed(0)
    items = torch.randn(500, 16, generator=generator)
    noisy = items + 0.1 * torch.randn(500, 16, generator=generator)
    assert retrieval_recall(noisy, items) == {1: 1.0, 5: 1.0, 10: 1.0}
    shuffled = retrieval_recall(noisy[torch.randperm(500, generator=generator)], items, ks=(10,))
    assert abs(shuffled[10] - 10 / 500) < 0.03
    assert retrieval_recall(torch.ones(50, 4), torch.ones(50, 4), ks=(1, 10)) == {1: 0.0, 10: 0.0}
    with pytest.raises(ValueError, match="pair up"):
        retrieval_recall(items[:10], items)


def test_assignment_purity_counts_the_majority_label_of_each_group():
    assignments = torch.tensor([0, 0, 0, 1, 1, 7])
    assert assignment_purity(assignments, torch.tensor([2, 2, 1, 0, 0, 5])) == pytest.approx(5 / 6)
    assert assignment_purity(assignments, assignments) == 1.0
    assert assignment_purity(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 3])) == 0.25
    with pytest.raises(ValueError, match="same length"):
        assignment_purity(assignments, torch.tensor([1, 2]))


def test_som_majority_names_each_units_most_frequent_label(blobs, som):
    codes, labels = blobs
    majority = som_majority(som, codes, labels)
    assert majority.shape == (ROWS, COLS) and set(np.unique(majority)) <= set(range(-1, CLASSES))
    winners = som_winners(som, codes)
    row, col = winners[0]
    assert majority[row, col] == np.bincount(labels[(winners == winners[0]).all(1)].numpy()).argmax()
    assert (majority == -1).sum() == (som_hit_map(som, codes) == 0).sum()
