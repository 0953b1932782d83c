"""The two-stage text-to-image VAE (chapter 07).

Stage 1 trains an image VAE on images alone. Stage 2 freezes it and trains a small text network to
map a caption to the image VAE's latent space: frozen BERT-family token features [B, L, D] and their
mask go through multi-head self-attention, a masked mean over the real tokens and an MLP, to a latent
mean (and optionally a log-variance). Its target is the frozen encoder's posterior q(z|x) of the
captioned image: the mean (squared error) or the whole Gaussian (KL). Inference: text -> z -> frozen
decoder -> image.

Seed 000 built this model and it failed in three ways that this module rules out: a KL weight that
collapsed stage 1's posterior (:func:`seed000_elbo` reproduces it), BERT fine-tuned at batch size 1
with inputs left on the CPU, and a "frozen" decoder whose BatchNorm statistics kept updating
(:class:`TwoStageVAE` keeps the image VAE in ``eval()`` with gradients off, whatever ``train()`` says).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from course_lib.checkpoint import write_atomic
from course_lib.data import cache_dir
from course_lib.models.blocks import ImageShape
from course_lib.models.vae import VAE, conv_vae
from course_lib.text import mean_pool

if TYPE_CHECKING:  # course_lib.losses imports course_lib.models: import it where it is used
    from course_lib.losses import ELBO

SEED000_CHANNELS = (8, 12, 16, 24, 32)  # seed 000's encoder widths: five stride-2 blocks, 64x64 -> 2x2
STAGE1_CHANNELS = (16, 32, 64, 128, 256)  # the course's default: same depth, wider
TARGETS = ("mean", "kl")


# ---------------------------------------------------------------- stage 1
def image_vae(image_shape: ImageShape = (3, 64, 64), latent_dim: int = 64,
              channels: Sequence[int] = STAGE1_CHANNELS) -> VAE:
    """Stage 1, the image VAE (chapter 07): :func:`~course_lib.models.vae.conv_vae` with five stride-2
    layers. ``channels=SEED000_CHANNELS`` with ``latent_dim=64`` is seed 000's configuration."""
    return conv_vae(image_shape, latent_dim, channels)


def seed000_beta(image_shape: Sequence[int], kl_weight: float = 1.0) -> float:
    """The beta that seed 000's loss amounts to (chapter 07).

    Seed 000 minimised ``mean squared error per pixel + kl_weight * KL`` (KL summed over latent
    dimensions). Multiplied by the number of pixel values P it is ``sum of squared errors + P *
    kl_weight * KL``: a Gaussian ELBO with sigma^2 = 1/2 and ``beta = P * kl_weight``.
    """
    return math.prod(image_shape) * kl_weight


def seed000_elbo(image_shape: Sequence[int], kl_weight: float = 1.0) -> ELBO:
    """Seed 000's stage-1 loss written as the course's ELBO (chapter 07): same minimiser, ``beta`` in plain sight."""
    from course_lib.losses import ELBO

    return ELBO(beta=seed000_beta(image_shape, kl_weight), likelihood="gaussian", sigma=math.sqrt(0.5))


@torch.no_grad()
def image_posteriors(vae: VAE, images: Tensor, batch_size: int = 256) -> Tensor:
    """Stage 2's targets (chapter 07): ``[mu, logvar]`` of q(z|x) for every image, ``[N, 2 * latent]`` on the CPU.

    Computed once with the frozen encoder in ``eval()``, batch by batch on the model's device.
    """
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    out = [torch.cat(vae.encode(images[i:i + batch_size].to(device)), dim=1).float().cpu()
           for i in range(0, len(images), batch_size)]
    vae.train(was_training)
    return torch.cat(out)


# ---------------------------------------------------------------- stage 2
def _check_tokens(features: Tensor, mask: Tensor, token_dim: int) -> None:
    if features.dim() != 3 or features.shape[-1] != token_dim:
        raise ValueError(f"Expected token features [B, L, {token_dim}], got {list(features.shape)}. Use "
                         "encoder.token_features(texts) (not encode(), which pools the tokens away).")
    if mask.shape != features.shape[:2]:
        raise ValueError(f"The mask {list(mask.shape)} must be [B, L] = {list(features.shape[:2])}.")
    if not mask.bool().any(1).all():
        raise ValueError("A text has no real token (its mask is all False): every text needs at least one.")


class TextToLatent(nn.Module):
    """Stage 2's text network (chapter 07): token features -> self-attention -> masked mean -> MLP -> z.

    A linear layer projects the frozen features to ``model_dim`` (``None``: keep ``token_dim``, as seed
    000 did; a smaller width makes the attention several times cheaper on a CPU). The attention
    (``heads`` heads, as seed 000's ``num_heads=3``) lets every token look at the others
    (``key_padding_mask`` hides the padding), with a residual connection and LayerNorm; the masked mean
    pools the real tokens; the MLP (linear, ReLU, linear) maps to the latent mean, and with
    ``predict_logvar=True`` to a log-variance as well.
    """

    def __init__(self, token_dim: int, latent_dim: int, heads: int = 3, model_dim: int | None = 192,
                 hidden: int = 512, predict_logvar: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        model_dim = model_dim or token_dim
        if model_dim % heads:
            raise ValueError(f"model_dim {model_dim} must be divisible by heads {heads}.")
        self.token_dim, self.latent_dim, self.predict_logvar = token_dim, latent_dim, predict_logvar
        self.project = nn.Linear(token_dim, model_dim) if model_dim != token_dim else nn.Identity()
        self.attention = nn.MultiheadAttention(model_dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(model_dim)
        self.mlp = nn.Sequential(nn.Linear(model_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, latent_dim * (2 if predict_logvar else 1)))

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
    statistics. Train stage 2 with :func:`~course_lib.train.fit` and :class:`LatentRegression`.
    """

    def __init__(self, vae: VAE, text: TextToLatent) -> None:
        super().__init__()
        if text.latent_dim != vae.latent_dim:
            raise ValueError(f"The text network predicts {text.latent_dim}-d codes but the image VAE's latent "
                             f"space has {vae.latent_dim} dimensions.")
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
            out = self(features[i:i + batch_size], mask[i:i + batch_size])
            codes.append((out[0] if isinstance(out, tuple) else out).float().cpu())
        self.train(was_training)
        return torch.cat(codes)

    @torch.no_grad()
    def generate(self, features: Tensor, mask: Tensor) -> Tensor:
        """Text -> z (the predicted mean) -> frozen decoder -> images in [0, 1], on the CPU."""
        z = self.encode_text(features, mask)
        return torch.cat([self.vae.decode(z[i:i + 256].to(self.device)).cpu() for i in range(0, len(z), 256)])

    def text_to_image(self, encoder, texts: Sequence[str]) -> Tensor:
        """Captions -> images: ``encoder.token_features`` (a frozen BERT-family model), then :meth:`generate`."""
        return self.generate(*encoder.token_features(texts))


# ---------------------------------------------------------------- stage 2's data and loss
def pack_tokens(features: Tensor, mask: Tensor, dtype: torch.dtype = torch.float16) -> Tensor:
    """Token features and mask as one tensor ``[N, L, D + 1]`` (the mask is the last channel), so a
    :class:`~course_lib.data.TensorLoader` can batch them (chapter 07). Stored as float16 by default:
    half the memory, and :func:`unpack_tokens` returns float32."""
    return torch.cat([features, mask.unsqueeze(-1).to(features.dtype)], dim=-1).to(dtype)


def unpack_tokens(packed: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`pack_tokens`: ``(features float32 [N, L, D], mask bool [N, L])``."""
    return packed[..., :-1].float(), packed[..., -1] > 0.5


@dataclass
class LatentRegression:
    """Stage 2's loss (chapter 07): the text's latent against the frozen image posterior q(z|x).

    ``y`` holds ``[mu, logvar]`` of q(z|x) (:func:`image_posteriors`). ``target="mean"``: squared error
    to the posterior mean, summed over latent dimensions. ``target="kl"``: KL(q(z|x) || p(z|text)) for a
    model that also predicts a log-variance; the text's Gaussian must then cover the image posterior.
    Either way ``mse`` reports the squared error of the predicted mean.
    """

    target: str = "mean"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {self.target!r}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        from course_lib.losses import kl_per_dim

        if y is None:
            raise ValueError("Stage 2 needs targets: the image posteriors [mu, logvar] as labels.")
        mu_x, logvar_x = y.float().chunk(2, dim=1)
        out = model(*unpack_tokens(x))
        mu_t = out[0] if isinstance(out, tuple) else out
        mse = ((mu_t - mu_x) ** 2).sum(1).mean()
        if self.target == "mean":
            return {"loss": mse, "mse": mse}
        if not isinstance(out, tuple):
            raise ValueError("target='kl' needs a text network with predict_logvar=True.")
        kl = kl_per_dim(mu_x, logvar_x, mu_t, out[1]).sum(1).mean()
        return {"loss": kl, "kl": kl, "mse": mse}


def caption_pairs(captions: Sequence[Sequence[str]], per_image: int | None = 1,
                  seed: int = 0) -> tuple[list[str], Tensor]:
    """Pick ``per_image`` captions of every image (all with ``None``), seeded (chapter 07).

    Returns ``(texts, owners)``: ``owners[i]`` is the index of the image that ``texts[i]`` describes.
    """
    rng = np.random.default_rng(seed)
    texts, owners = [], []
    for index, options in enumerate(captions):
        chosen = list(options) if per_image is None or per_image >= len(options) else \
            [options[i] for i in sorted(rng.choice(len(options), per_image, replace=False))]
        texts += chosen
        owners += [index] * len(chosen)
    return texts, torch.tensor(owners, dtype=torch.long)


def cached_token_features(encoder, texts: Sequence[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """``encoder.token_features(texts)``, stored once on disk per encoder and list of texts (chapter 07).

    Kept as float16 (relative error about 1e-3, ample for training stage 2); the first call returns
    the same rounded values as later ones, so a re-run trains on exactly the same inputs.
    """
    digest = hashlib.sha1("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = cache_dir() / "token_features" / encoder.key / f"{len(texts)}-{digest}.pt"
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        return stored["features"].float(), stored["mask"]
    features, mask = encoder.token_features(texts, batch_size)
    stored = {"features": features.half(), "mask": mask}
    write_atomic(path, lambda file: torch.save(stored, file))
    return stored["features"].float(), mask
