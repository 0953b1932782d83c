"""A prior that reads the condition: p(z | c) learned with the model (chapter 06).

Chapter 04's CVAE draws z from N(0, I) whatever the condition. That works when the condition says
most of what an image shows and z only the rest. With a sharp likelihood, however, the encoder puts
the image's content into z (where the object is, its shape: a few nats each), the decoder learns to
read it from there, and a z drawn from N(0, I) then asks for a random shape in a random place.

Sohn et al. (2015) give the CVAE a *prior network* instead: an MLP maps c to the mean and
log-variance of a Gaussian p(z | c), trained with the rest through the ELBO's KL term,
KL(q(z | x, c) || p(z | c)). The KL now charges z only for what the caption does not already say,
and at sampling time z is drawn where the codes of images with that caption lie.

The second way, chapter 04's ex-post density estimation carried over to captions: train the VAE,
then fit a density of its codes given the caption, here a mixture density network.

Imports only torch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ConditionalPrior(nn.Module):
    """``c [B, K]`` -> ``(mu, logvar)`` of a diagonal Gaussian p(z | c) over ``latent_dim``
    dimensions: linear, ReLU, linear (chapter 06). The last layer starts at zero, so the untrained
    prior is N(0, I), chapter 04's."""

    def __init__(self, condition_dim: int, latent_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Linear(condition_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(condition).chunk(2, dim=1)
        return mu, logvar


class MixtureDensityNetwork(nn.Module):
    """``c [B, K]`` -> a mixture of ``components`` diagonal Gaussians over z (Bishop, 1994; chapter 06).

    Chapter 04 drew z from a density fitted to the training codes of each class (ex-post density
    estimation). A caption is not one of ten classes, so the density here is a network: an MLP maps the
    caption vector to the weights, means and log-variances of a Gaussian mixture, fitted after the VAE
    by maximum likelihood on pairs (caption, posterior mean of its image) (:class:`MixtureNLL`). A
    mixture can put one component on each place or shape a caption leaves open, where one Gaussian
    would put its mass between them.

    ``temperature`` scales each component's spread when sampling (1: the fitted density; 0: the
    component's mean): lower draws more typical codes, fewer off-manifold ones, at some cost in diversity.
    """

    def __init__(self, condition_dim: int, latent_dim: int, components: int = 8, hidden: int = 512) -> None:
        super().__init__()
        self.condition_dim, self.latent_dim, self.components = condition_dim, latent_dim, components
        self.temperature = 1.0
        self.net = nn.Sequential(
            nn.Linear(condition_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, components * (1 + 2 * latent_dim)),
        )

    def forward(self, condition: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_weights [B, M], means [B, M, D], logvars [B, M, D])`` of the mixture for each condition."""
        if condition.dim() != 2 or condition.shape[1] != self.condition_dim:
            raise ValueError(f"Expected conditions [B, {self.condition_dim}], got {list(condition.shape)}.")
        out = self.net(condition)
        log_weights = torch.log_softmax(out[:, : self.components], dim=1)
        means, logvars = out[:, self.components :].unflatten(1, (self.components, 2 * self.latent_dim)).chunk(2, -1)
        return log_weights, means, logvars.clamp(-10, 5)  # a component may not shrink to a point

    def log_prob(self, condition: Tensor, z: Tensor) -> Tensor:
        """log p(z | c) of each row, ``[B]``: the log-sum-exp over components of weight times density."""
        log_weights, means, logvars = self(condition)
        per_component = -0.5 * (((z.unsqueeze(1) - means) ** 2) / logvars.exp() + logvars + math.log(2 * math.pi))
        return torch.logsumexp(log_weights + per_component.sum(-1), dim=1)

    @torch.no_grad()
    def sample(
        self, condition: Tensor, generator: torch.Generator | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """One z per condition: pick a component by its weight, then its mean + ``temperature`` times its
        spread times noise.

        ``noise`` [B, D], standard normal, fixes the draw: each row then takes its most probable
        component, so one noise vector decoded under several captions shows what the captions change."""
        if not self.temperature >= 0:
            raise ValueError(
                f"temperature must be >= 0 (1: the fitted density, 0: component means), got {self.temperature}."
            )
        log_weights, means, logvars = self(condition)
        rows = torch.arange(len(condition), device=condition.device)
        if noise is None:
            device = generator.device if generator else condition.device
            component = torch.multinomial(log_weights.exp().to(device), 1, generator=generator).squeeze(1)
            noise = torch.randn(means.shape[0], means.shape[2], generator=generator, device=device)
        else:
            component = log_weights.argmax(1)
        component, noise = component.to(condition.device), noise.to(condition.device)
        mean, logvar = means[rows, component], logvars[rows, component]
        return mean + self.temperature * torch.exp(0.5 * logvar) * noise
