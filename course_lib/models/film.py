"""A decoder that reads the condition at every stage: feature-wise linear modulation (chapter 06).

The decoder of chapter 04 sees the condition once, concatenated to z before its first layer; every
later layer only sees what that layer passed on. FiLM (Perez et al., 2018) lets the condition act on
every stage instead: a linear map of c gives one scale and one shift per channel,

    h <- h * (1 + gamma(c)) + beta(c),

so the caption can switch on "ring" or "red" features at the resolution where they are drawn. The
maps start at zero, so an untrained FiLM layer is the identity. The decoder ends with a 3x3
convolution at full resolution, where edges are drawn; the seeds' decoder ends with a transposed
convolution straight to the pixels. Optional residual blocks after every stage (seed 002's ResNet
ablation, a row of chapter 06's study) add depth that starts out as the identity too.

Imports only torch and course_lib.models.blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from course_lib.models.blocks import ImageShape, check_size, conv_feature_shapes


class FiLM(nn.Module):
    """Scale and shift every channel of a feature map by a linear function of the condition (chapter 06)."""

    def __init__(self, condition_dim: int, channels: int) -> None:
        super().__init__()
        self.to_scale_shift = nn.Linear(condition_dim, 2 * channels)
        nn.init.zeros_(self.to_scale_shift.weight)  # identity at the start
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, h: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.to_scale_shift(condition)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift


class ResidualBlock(nn.Module):
    """``h + conv(relu(conv(h)))`` with two 3x3 convolutions that keep the size and the channels; the
    second starts at zero, so a new block is the identity (chapter 06, seed 002's ResNet ablation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(torch.relu(self.conv1(h)))


class FiLMDecoder(nn.Module):
    """``(z, c)`` -> logits ``[B, C, H, W]``: a linear layer from ``[z, c]`` to the smallest feature
    map, then per stage a transposed convolution that doubles the size, FiLM from ``c`` and a ReLU,
    and a final 3x3 convolution to the image's channels (chapter 06).

    ``channels`` are those of the matching :class:`~course_lib.models.blocks.ConvEncoder`; odd sizes
    come out exact as in :class:`~course_lib.models.blocks.ConvDecoder`. ``residual_blocks`` residual
    blocks follow every stage (0: none, as the main model of chapter 06).
    """

    def __init__(
        self,
        image_shape: ImageShape,
        latent_dim: int,
        condition_dim: int,
        channels: Sequence[int] = (32, 64),
        residual_blocks: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = check_size("latent_dim", latent_dim)
        self.condition_dim = check_size("condition_dim", condition_dim)
        if isinstance(residual_blocks, bool) or not isinstance(residual_blocks, int) or residual_blocks < 0:
            raise ValueError(f"residual_blocks must be a whole number >= 0, got {residual_blocks!r}")
        shapes = conv_feature_shapes(image_shape, channels)[::-1]  # smallest first, the image last
        self.first_shape = shapes[0]
        self.to_features = nn.Linear(latent_dim + condition_dim, self.first_shape[0] * shapes[0][1] * shapes[0][2])
        widths = [c for c, _, _ in shapes[1:-1]] + [channels[0]]  # the last stage keeps the first width
        self.upsample, self.film, self.residual = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c_in = self.first_shape[0]
        for (_, h_in, w_in), (_, h_out, w_out), c_out in zip(shapes[:-1], shapes[1:], widths):
            padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))  # ConvTranspose2d(3, 2, 1): 2n - 1 + pad
            self.upsample.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=padding))
            self.film.append(FiLM(condition_dim, c_out))
            self.residual.append(nn.Sequential(*[ResidualBlock(c_out) for _ in range(residual_blocks)]))
            c_in = c_out
        self.to_pixels = nn.Conv2d(c_in, image_shape[0], 3, padding=1)

    def forward(self, z: Tensor, condition: Tensor) -> Tensor:
        h = torch.relu(self.to_features(torch.cat([z, condition], dim=1))).unflatten(1, self.first_shape)
        for upsample, film, residual in zip(self.upsample, self.film, self.residual):
            h = residual(torch.relu(film(upsample(h), condition)))
        return self.to_pixels(h)
