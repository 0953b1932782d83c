"""Samplers: where to draw latent codes from once a model is trained (chapter 04).

Imports torch and scikit-learn only: no other part of course_lib.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ClassGaussians:
    """Ex-post density estimation (Ghosh et al., 2020; chapter 04): a full-covariance Gaussian, or a
    mixture of ``components`` of them, per class, fitted to the posterior means of the training images,
    to draw z from instead of N(0, I).

    The KL term pulls the codes of all images towards N(0, I) but never makes them fill it: each
    class's codes sit in their own region, and z drawn from N(0, I) often lands between them, where
    the decoder has seen no data (a "prior hole"). Drawing from the class's own density stays where
    that class's training codes are. One Gaussian still covers the gaps between a class's own
    clusters (long and short sleeves, say); a mixture (Ghosh et al. use 10 components) follows them.
    """

    def __init__(self, weights: Tensor, means: Tensor, cholesky: Tensor) -> None:
        self.weights, self.means, self.cholesky = weights, means, cholesky  # [K, M], [K, M, D], [K, M, D, D]

    @classmethod
    def fit(cls, codes: Tensor, labels: Tensor, components: int = 1, seed: int = 0) -> ClassGaussians:
        """A mixture of ``components`` full-covariance Gaussians for the ``codes [N, D]`` of each class in
        ``labels [N]`` (0..K-1), fitted by EM (scikit-learn's ``GaussianMixture``; ``seed`` fixes its start)."""
        from sklearn.mixture import GaussianMixture

        codes, labels = codes.detach().double().cpu(), labels.cpu()
        weights, means, factors = [], [], []
        for k in range(int(labels.max()) + 1):
            members = codes[labels == k]
            if len(members) <= components * codes.shape[1]:
                raise ValueError(
                    f"Class {k} has {len(members)} codes; {components} full covariance(s) in "
                    f"{codes.shape[1]} dimensions need more than {components * codes.shape[1]}. "
                    "Encode more training images or use fewer components."
                )
            mixture = GaussianMixture(components, covariance_type="full", reg_covar=1e-5, random_state=seed).fit(
                members.numpy()
            )
            weights.append(torch.from_numpy(mixture.weights_))
            means.append(torch.from_numpy(mixture.means_))
            factors.append(torch.linalg.cholesky(torch.from_numpy(mixture.covariances_)))
        return cls(torch.stack(weights).float(), torch.stack(means).float(), torch.stack(factors).float())

    def sample(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One z per requested class index in ``labels [B]``: pick a component of that class by its weight,
        then mean + Cholesky factor @ eps, on the CPU."""
        labels = labels.cpu().long()
        if int(labels.min()) < 0 or int(labels.max()) >= len(self.means):
            raise ValueError(f"Class indices must be in 0..{len(self.means) - 1}.")
        component = torch.multinomial(self.weights[labels], 1, generator=generator).squeeze(1)
        noise = torch.randn(len(labels), self.means.shape[-1], generator=generator)
        factor = self.cholesky[labels, component]
        return self.means[labels, component] + (factor @ noise.unsqueeze(-1)).squeeze(-1)
