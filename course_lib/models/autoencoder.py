"""The plain autoencoder: a deterministic bottleneck (chapter 01).

Imports only torch and course_lib.models.blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from course_lib.models.blocks import ConvDecoder, ConvEncoder, ImageShape, MLPDecoder, MLPEncoder, check_size


class Autoencoder(nn.Module):
    """``x -> encoder -> z -> decoder -> x_hat`` (chapter 01).

    The decoder ends in a sigmoid, matching images scaled to [0, 1]; ``forward`` returns the logits
    before it, because the loss is computed more stably from logits.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.image_shape = encoder.image_shape
        self.latent_dim = check_size("latent_dim", latent_dim)
        self.encoder = encoder
        self.to_latent = nn.Linear(encoder.out_features, latent_dim)
        self.decoder = decoder

    def encode(self, x: Tensor) -> Tensor:
        return self.to_latent(self.encoder(x))

    def decode(self, z: Tensor) -> Tensor:
        """Latent codes -> images in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encode(x))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def mlp_autoencoder(
    image_shape: ImageShape = (1, 28, 28), latent_dim: int = 32, hidden: Sequence[int] = (512, 256)
) -> Autoencoder:
    """Fully connected autoencoder; the decoder mirrors the encoder's hidden sizes (chapter 01)."""
    check_size("latent_dim", latent_dim)
    return Autoencoder(MLPEncoder(image_shape, hidden), MLPDecoder(image_shape, latent_dim, hidden[::-1]), latent_dim)


def conv_autoencoder(
    image_shape: ImageShape = (1, 28, 28), latent_dim: int = 32, channels: Sequence[int] = (32, 64)
) -> Autoencoder:
    """Convolutional autoencoder for any image size (see :class:`ConvDecoder`; chapter 01)."""
    check_size("latent_dim", latent_dim)
    return Autoencoder(ConvEncoder(image_shape, channels), ConvDecoder(image_shape, latent_dim, channels), latent_dim)
