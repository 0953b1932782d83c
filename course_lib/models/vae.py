"""The variational autoencoder (chapter 02).

The encoder outputs the mean and log-variance of a diagonal Gaussian q(z|x); a sample is drawn with
the reparameterisation z = mu + sigma * eps so gradients flow through mu and sigma; the decoder
outputs the parameters of p(x|z) (Bernoulli logits, or a Gaussian mean after the sigmoid).

Imports only torch and course_lib.models.blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from course_lib.models.blocks import ConvDecoder, ConvEncoder, ImageShape, MLPDecoder, MLPEncoder, check_size


class VAEOutput(NamedTuple):
    """What :meth:`VAE.forward` returns: the decoder's logits, the posterior's mean and log-variance, and
    the sample z that was decoded (chapter 02)."""

    logits: Tensor  # decoder output before the sigmoid, [B, C, H, W]
    mu: Tensor  # posterior mean, [B, D]
    logvar: Tensor  # posterior log-variance, [B, D]
    z: Tensor  # the reparameterised sample that was decoded, [B, D]


class VAE(nn.Module):
    """The variational autoencoder of chapter 02: the encoder gives the mean and log-variance of q(z|x),
    a reparameterised sample z goes through the decoder to the parameters of p(x|z)."""

    conditional = False  # see CVAE (chapter 04)

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, to_posterior: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.image_shape = encoder.image_shape
        self.latent_dim = check_size("latent_dim", latent_dim)
        self.encoder = encoder
        # Features -> mu and log-variance; a CVAE passes a head that also takes the condition.
        self.to_posterior = to_posterior or nn.Linear(encoder.out_features, 2 * latent_dim)
        self.decoder = decoder

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mu, logvar)`` of q(z|x)."""
        mu, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: Tensor) -> Tensor:
        """Latent codes -> images in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(self.decoder(z), mu, logvar, z)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean: the model's best reconstruction, used for MSE and SSIM."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` images by decoding z ~ N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=generator.device if generator else device)
        return self.decode(z.to(device))


def mlp_vae(image_shape: ImageShape = (1, 28, 28), latent_dim: int = 20, hidden: Sequence[int] = (400,)) -> VAE:
    """Fully connected VAE; the default 784-400-20 is the model of reports 002 and 004 (chapter 02)."""
    check_size("latent_dim", latent_dim)
    return VAE(MLPEncoder(image_shape, hidden), MLPDecoder(image_shape, latent_dim, hidden[::-1]), latent_dim)


def conv_vae(
    image_shape: ImageShape = (1, 28, 28),
    latent_dim: int = 32,
    channels: Sequence[int] = (32, 64),
    batch_norm: bool = False,
    negative_slope: float = 0.0,
) -> VAE:
    """Convolutional VAE for any image size (see :class:`~course_lib.models.blocks.ConvDecoder`; chapter 02).
    ``batch_norm`` / ``negative_slope``: BatchNorm and LeakyReLU in every block (report 000's, chapter 07)."""
    check_size("latent_dim", latent_dim)
    blocks = dict(batch_norm=batch_norm, negative_slope=negative_slope)
    encoder = ConvEncoder(image_shape, channels, **blocks)
    return VAE(encoder, ConvDecoder(image_shape, latent_dim, channels, **blocks), latent_dim)
