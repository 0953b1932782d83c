"""A prior that reads the condition: p(z | c) learned with the model (chapter 06).

Chapter 04's CVAE draws z from N(0, I) whatever the condition. That works when the condition says
most of what an image shows and z only the rest. With a sharp likelihood, however, the encoder puts
the image's content into z (where the object is, its shape: a few nats each), the decoder learns to
read it from there, and a z drawn from N(0, I) then asks for a random shape in a random place.

Sohn et al. (2015) give the CVAE a *prior network* instead: an MLP maps c to the mean and
log-variance of a Gaussian p(z | c), trained with the rest through the ELBO's KL term,
KL(q(z | x, c) || p(z | c)). The KL now charges z only for what the caption does not already say,
and at sampling time z is drawn where the codes of images with that caption lie.

Imports only torch.
"""

from __future__ import annotations

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
