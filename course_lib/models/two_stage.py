"""The two-stage text-to-image VAE (chapter 07).

Stage 1 trains an image VAE on images alone. Stage 2 freezes it and trains a small text network to
map a caption to the image VAE's latent space: frozen BERT-family token features [B, L, D] and their
mask go through multi-head self-attention, a masked mean over the real tokens and an MLP, to a latent
mean (and optionally a log-variance). Its target is the frozen encoder's posterior q(z|x) of the
captioned image: the mean (squared error) or the whole Gaussian (KL). Inference: text -> z -> frozen
decoder -> image.

Report 000 built this model and it failed in three ways that the course rules out: a KL weight that
collapsed stage 1's posterior (:func:`course_lib.core.losses.report000_elbo` reproduces it), BERT
fine-tuned at batch size 1 with inputs left on the CPU, and a "frozen" decoder whose BatchNorm
statistics kept updating (:class:`TwoStageVAE` keeps the image VAE in ``eval()`` with gradients off,
whatever ``train()`` says). Stage 2's loss is :class:`course_lib.core.losses.LatentRegression`.

Imports only torch and course_lib.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from course_lib.models.blocks import ImageShape, mean_pool
from course_lib.models.vae import VAE, conv_vae

REPORT000_CHANNELS = (8, 12, 16, 24, 32)  # report 000's encoder widths: five stride-2 blocks, 64x64 -> 2x2
STAGE1_CHANNELS = (32, 64)  # the course's stage 1: chapter 02's two stride-2 layers, 64x64 -> 16x16


# ---------------------------------------------------------------- stage 1
def image_vae(
    image_shape: ImageShape = (3, 64, 64), latent_dim: int = 64, channels: Sequence[int] = STAGE1_CHANNELS
) -> VAE:
    """Stage 1, the image VAE (chapter 07): chapter 02's :func:`~course_lib.models.vae.conv_vae`, two stride-2
    layers down to a 16x16 map. Its decoder draws from that map, where a shape is still several cells
    wide; five layers down to 2x2 (report 000's depth, :func:`report000_vae`) leave the decoder a 2x2 map
    to grow every edge from, and its reconstructions lose the shapes."""
    return conv_vae(image_shape, latent_dim, channels)


def report000_vae(image_shape: ImageShape = (3, 64, 64), latent_dim: int = 64) -> VAE:
    """Report 000's stage 1 (chapter 07): five blocks [Conv2d, BatchNorm, LeakyReLU] of 8, 12, 16, 24 and 32
    channels (:data:`REPORT000_CHANNELS`) down to 2x2, two linear heads to mu and log-variance, and the
    mirror image [ConvTranspose2d, BatchNorm, LeakyReLU] as the decoder."""
    return conv_vae(image_shape, latent_dim, REPORT000_CHANNELS, batch_norm=True, negative_slope=0.01)


# ---------------------------------------------------------------- stage 2
def _check_tokens(features: Tensor, mask: Tensor, token_dim: int) -> None:
    if features.dim() != 3 or features.shape[-1] != token_dim:
        raise ValueError(
            f"Expected token features [B, L, {token_dim}], got {list(features.shape)}. Use "
            "encoder.token_features(texts) (not encode(), which pools the tokens away)."
        )
    if mask.shape != features.shape[:2]:
        raise ValueError(f"The mask {list(mask.shape)} must be [B, L] = {list(features.shape[:2])}.")
    if not mask.bool().any(1).all():
        raise ValueError("A text has no real token (its mask is all False): every text needs at least one.")


class TextToLatent(nn.Module):
    """Stage 2's text network (chapter 07): token features -> self-attention -> masked mean -> MLP -> z.

    A linear layer projects the frozen features to ``model_dim`` (``None``: keep ``token_dim``, as report
    000 did; a smaller width makes the attention several times cheaper on a CPU). The attention
    (``heads`` heads, as report 000's ``num_heads=3``) lets every token look at the others
    (``key_padding_mask`` hides the padding), with a residual connection and LayerNorm; the masked mean
    pools the real tokens; the MLP (linear, ReLU, linear) maps to the latent mean, and with
    ``predict_logvar=True`` to a log-variance as well.
    """

    def __init__(
        self,
        token_dim: int,
        latent_dim: int,
        heads: int = 3,
        model_dim: int | None = 192,
        hidden: int = 512,
        predict_logvar: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        model_dim = model_dim or token_dim
        if model_dim % heads:
            raise ValueError(f"model_dim {model_dim} must be divisible by heads {heads}.")
        self.token_dim, self.latent_dim, self.predict_logvar = token_dim, latent_dim, predict_logvar
        self.project = nn.Linear(token_dim, model_dim) if model_dim != token_dim else nn.Identity()
        self.attention = nn.MultiheadAttention(model_dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(model_dim)
        self.mlp = nn.Sequential(
            nn.Linear(model_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, latent_dim * (2 if predict_logvar else 1)),
        )

    def forward(self, features: Tensor, mask: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """``features [B, L, token_dim]``, ``mask [B, L]`` (True at real tokens) -> ``mu [B, latent]``,
        or ``(mu, logvar)`` with ``predict_logvar``."""
        _check_tokens(features, mask, self.token_dim)
        mask = mask.bool()
        tokens = self.project(features)
        attended, _ = self.attention(tokens, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        out = self.mlp(mean_pool(self.norm(tokens + attended), mask))
        return tuple(out.chunk(2, dim=1)) if self.predict_logvar else out


class TwoStageVAE(nn.Module):
    """A frozen stage-1 image VAE and a trainable :class:`TextToLatent` (chapter 07).

    The image VAE's parameters never get gradients and it stays in ``eval()`` even when the whole
    model is put in training mode, so stage 2 cannot change its weights or its normalisation
    statistics. Train stage 2 with :func:`~course_lib.core.train.fit` and :class:`LatentRegression`.
    """

    def __init__(self, vae: VAE, text: TextToLatent) -> None:
        super().__init__()
        if text.latent_dim != vae.latent_dim:
            raise ValueError(
                f"The text network predicts {text.latent_dim}-d codes but the image VAE's latent "
                f"space has {vae.latent_dim} dimensions."
            )
        self.vae = vae.requires_grad_(False).eval()
        self.text = text
        self.latent_dim = vae.latent_dim

    def train(self, mode: bool = True) -> TwoStageVAE:
        super().train(mode)
        self.vae.eval()  # frozen: dropout off, BatchNorm statistics (if any) never updated
        return self

    @property
    def device(self) -> torch.device:
        return next(self.text.parameters()).device

    def forward(self, features: Tensor, mask: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Text latents for token features on any device (moved to the model's)."""
        return self.text(features.to(self.device, torch.float32), mask.to(self.device))

    @torch.no_grad()
    def encode_text(self, features: Tensor, mask: Tensor, batch_size: int = 256) -> Tensor:
        """The predicted latent mean of each text, ``[N, latent]`` on the CPU, computed in ``eval()``."""
        was_training = self.training
        self.eval()
        codes = []
        for i in range(0, len(features), batch_size):
            out = self(features[i : i + batch_size], mask[i : i + batch_size])
            codes.append((out[0] if isinstance(out, tuple) else out).float().cpu())
        self.train(was_training)
        return torch.cat(codes)

    @torch.no_grad()
    def generate(self, features: Tensor, mask: Tensor) -> Tensor:
        """Text -> z (the predicted mean) -> frozen decoder -> images in [0, 1], on the CPU."""
        z = self.encode_text(features, mask)
        return torch.cat([self.vae.decode(z[i : i + 256].to(self.device)).cpu() for i in range(0, len(z), 256)])

    def text_to_image(self, encoder, texts: Sequence[str]) -> Tensor:
        """Captions -> images: ``encoder.token_features`` (a frozen BERT-family model), then :meth:`generate`."""
        return self.generate(*encoder.token_features(texts))


# ---------------------------------------------------------------- stage 2's data and loss
def pack_tokens(features: Tensor, mask: Tensor, dtype: torch.dtype = torch.float16) -> Tensor:
    """Token features and mask as one tensor ``[N, L, D + 1]`` (the mask is the last channel), so a
    :class:`~course_lib.data.images.TensorLoader` can batch them (chapter 07). Stored as float16 by default:
    half the memory, and :func:`unpack_tokens` returns float32."""
    return torch.cat([features, mask.unsqueeze(-1).to(features.dtype)], dim=-1).to(dtype)


def unpack_tokens(packed: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`pack_tokens`: ``(features float32 [N, L, D], mask bool [N, L])`` (chapter 07)."""
    return packed[..., :-1].float(), packed[..., -1] > 0.5
