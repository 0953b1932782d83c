"""Encoder and decoder bodies shared by every model (chapter 01).

Encoders map an image batch [B, C, H, W] to a feature vector [B, F]; decoders map a latent vector to
*logits* of shape [B, C, H, W]. Flatten sizes are computed from the image shape, never hard-coded,
so 28x28, 32x32 and 64x64 inputs all work.

Imports only torch: no other part of course_lib.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ImageShape = tuple[int, int, int]


def check_size(name: str, value: object) -> int:
    """``value`` as a positive int, or a clear error naming ``name`` (chapter 01: latent sizes, widths)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{name} must be a positive whole number, got {value!r}. "
            f"For example {name}=32 (in papermill: -p {name} 32, a number without quotes)."
        )
    return int(value)


def check_images(x: Tensor, image_shape: ImageShape) -> None:
    """Raise a clear error when ``x`` is not a batch of images of ``image_shape`` (chapter 01)."""
    if x.dim() == 4 and len(x) == 0:
        raise ValueError(
            "Got an empty batch (0 images): a loss or a mean over it would be NaN. "
            "Check the data set or the subset you selected (e.g. images[:n] with n > 0)."
        )
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        hint = " Add a batch dimension with x.unsqueeze(0)." if tuple(x.shape) == tuple(image_shape) else ""
        raise ValueError(
            f"Expected an image batch of shape [B, {', '.join(map(str, image_shape))}] "
            f"but got {list(x.shape)}.{hint} Build the model with the image_shape of your "
            "data, e.g. conv_vae(image_shape=(3, 64, 64))."
        )


class MLPEncoder(nn.Module):
    """Flatten, then fully connected layers with ReLU (chapter 01)."""

    def __init__(self, image_shape: ImageShape, hidden: Sequence[int] = (512, 256)) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        sizes = [int(torch.tensor(image_shape).prod()), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_features = sizes[-1]

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.image_shape)
        return self.net(x)


class MLPDecoder(nn.Module):
    """Fully connected layers back to one logit per pixel (chapter 01)."""

    def __init__(self, image_shape: ImageShape, in_features: int, hidden: Sequence[int] = (256, 512)) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers += [nn.Linear(sizes[-1], int(torch.tensor(image_shape).prod())), nn.Unflatten(1, tuple(image_shape))]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def conv_feature_shapes(image_shape: ImageShape, channels: Sequence[int]) -> list[tuple[int, int, int]]:
    """Shapes after each stride-2 convolution (3x3, padding 1): the spatial size halves, rounding up
    (chapter 01)."""
    shapes = [tuple(image_shape)]
    for ch in channels:
        _, h, w = shapes[-1]
        shapes.append((ch, (h + 1) // 2, (w + 1) // 2))
    return shapes


def activation(negative_slope: float = 0.0) -> nn.Module:
    """ReLU, or LeakyReLU with ``negative_slope`` where that is above 0 (report 000's blocks; chapter 07)."""
    return nn.LeakyReLU(negative_slope) if negative_slope > 0 else nn.ReLU()


def normalised(layer: nn.Module, channels: int, batch_norm: bool, negative_slope: float) -> list[nn.Module]:
    """``layer``, then BatchNorm over its ``channels`` where ``batch_norm``, then the activation: one block of
    the conv encoders and decoders (chapter 01; with BatchNorm and LeakyReLU, report 000's, chapter 07)."""
    return [layer, *([nn.BatchNorm2d(channels)] if batch_norm else []), activation(negative_slope)]


class ConvEncoder(nn.Module):
    """Stride-2 convolutions that halve the image per layer, then flatten (chapter 01).

    ``batch_norm`` / ``negative_slope``: BatchNorm after each convolution and LeakyReLU instead of ReLU, as
    in report 000's blocks (chapter 07); off by default."""

    def __init__(
        self,
        image_shape: ImageShape,
        channels: Sequence[int] = (32, 64),
        batch_norm: bool = False,
        negative_slope: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        shapes = conv_feature_shapes(image_shape, channels)
        layers: list[nn.Module] = []
        for (c_in, _, _), (c_out, _, _) in zip(shapes[:-1], shapes[1:]):
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1)
            layers += normalised(conv, c_out, batch_norm, negative_slope)
        self.net = nn.Sequential(*layers, nn.Flatten())
        c, h, w = shapes[-1]
        self.out_features = c * h * w

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.image_shape)
        return self.net(x)


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: a linear layer, then transposed convolutions that double
    the size, with ``output_padding`` chosen per layer so odd sizes (7 -> 14 -> 28) come out exact
    (chapter 01). ``batch_norm`` / ``negative_slope`` as in :class:`ConvEncoder`; the last layer, which
    gives the logits, has neither."""

    def __init__(
        self,
        image_shape: ImageShape,
        in_features: int,
        channels: Sequence[int] = (32, 64),
        batch_norm: bool = False,
        negative_slope: float = 0.0,
    ) -> None:
        super().__init__()
        shapes = conv_feature_shapes(image_shape, channels)[::-1]  # smallest first
        c, h, w = shapes[0]
        layers: list[nn.Module] = [nn.Linear(in_features, c * h * w), activation(negative_slope)]
        layers.append(nn.Unflatten(1, (c, h, w)))
        for i, ((c_in, h_in, w_in), (c_out, h_out, w_out)) in enumerate(zip(shapes[:-1], shapes[1:])):
            # ConvTranspose2d(k=3, s=2, p=1) gives 2*size - 1 + output_padding.
            padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layer = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=padding)
            last = i == len(shapes) - 2
            layers += [layer] if last else normalised(layer, c_out, batch_norm, negative_slope)
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, BatchNorm, ReLU, then 2x2 max-pooling (halves height and width): the judges of
    chapters 04 and 06."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token vectors ``[B, T, D]`` over the real tokens (``attention_mask`` [B, T] is 1
    for a token, 0 for padding) -> ``[B, D]`` (chapter 05, exercise 5.1). Padding must not count: a
    caption's embedding would otherwise depend on the longest caption in its batch."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
