"""Conditional VAEs: encoder and decoder both see a condition c (chapter 04).

The model learns q(z | x, c) and p(x | z, c), so the prior's z only has to carry what c does not
say: the class says "trouser", z says which trouser (reports 002, 003, 004). The condition may be a
class index [B] (turned into a one-hot vector), a one-hot vector [B, K], or any embedding vector
[B, K] (the text chapters pass BERT/CLIP embeddings). Two ways to inject it (report 003):

- ``"concat"``: concatenate c to the encoder's features and to z;
- ``"add"``: map c with a linear layer to the size of the features (of z) and add it;
- ``"film"`` (chapter 06): concatenate c to the encoder's features, and give it to a decoder that
  reads it at every stage (:class:`~course_lib.models.film.FiLMDecoder`).

A CVAE may also learn its prior, p(z | c) (:class:`~course_lib.models.priors.ConditionalPrior`,
chapter 06); without one the prior is N(0, I). After training, ``density`` may hold a density of the
codes fitted ex post (:class:`~course_lib.models.priors.MixtureDensityNetwork`, chapter 06): samples
then draw z from it, while the ELBO keeps its prior.

Imports only torch and course_lib.models (blocks, film, priors, vae).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.models.blocks import ConvDecoder, ConvEncoder, ImageShape, MLPDecoder, MLPEncoder, check_size
from course_lib.models.film import FiLMDecoder
from course_lib.models.priors import ConditionalPrior, MixtureDensityNetwork
from course_lib.models.vae import VAE, VAEOutput

MODES = ("concat", "add", "film")


def conditioning(model: nn.Module, condition: Tensor | None) -> tuple[Tensor, ...]:
    """The extra arguments a model call needs: ``(condition,)`` for a conditional model, else ``()``
    (chapter 04).

    Lets one training loop, loss and metric serve both kinds of model: data loaders always yield
    ``(images, labels)``, and only conditional models are given the labels.
    """
    if not getattr(model, "conditional", False):
        return ()
    if condition is None:
        raise ValueError(
            f"{type(model).__name__} is conditional: pass a condition (class indices [B], one-hot "
            "vectors [B, K] or embeddings [B, K]) along with the images."
        )
    return (condition,)


def one_hot(labels: Tensor, k: int) -> Tensor:
    """Class indices [B] -> float one-hot vectors [B, k], the condition a CVAE sees (chapter 04, exercise 4.1)."""
    return F.one_hot(labels.long(), k).float()


def mlp_head(in_features: int, out_features: int, hidden: Sequence[int] = ()) -> nn.Sequential:
    """Linear layers with ReLU between them: in -> hidden... -> out (the CVAE's heads, chapter 04)."""
    sizes = [in_features, *hidden, out_features]
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class CVAE(VAE):
    """A VAE whose encoder and decoder are conditioned on c, by concatenation or addition (chapter 04),
    or through FiLM at every decoder stage; with ``prior`` its prior p(z | c) is learned (chapter 06)."""

    conditional = True

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        condition_dim: int,
        mode: str = "concat",
        head_hidden: Sequence[int] = (),
        prior: ConditionalPrior | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Unknown conditioning mode {mode!r}; choose one of {MODES}.")
        condition_dim = check_size("condition_dim", condition_dim)
        latent_dim = check_size("latent_dim", latent_dim)
        features = encoder.out_features + (condition_dim if mode in ("concat", "film") else 0)
        super().__init__(encoder, decoder, latent_dim, mlp_head(features, 2 * latent_dim, head_hidden))
        self.condition_dim, self.mode, self.prior = condition_dim, mode, prior
        self.density: MixtureDensityNetwork | None = None  # fitted after training: where samples draw z
        if mode == "add":
            self.condition_to_features = nn.Linear(condition_dim, encoder.out_features, bias=False)
            self.condition_to_latent = nn.Linear(condition_dim, latent_dim, bias=False)

    def as_condition(self, condition: Tensor, batch_size: int | None = None) -> Tensor:
        """Class indices [B] -> one-hot [B, K]; vectors [B, K] pass through. Checks the sizes."""
        device = next(self.parameters()).device
        if not torch.is_floating_point(condition):
            if condition.dim() != 1 or int(condition.min()) < 0 or int(condition.max()) >= self.condition_dim:
                raise ValueError(
                    f"Class indices must be a 1-D tensor of values in 0..{self.condition_dim - 1}, "
                    f"got shape {list(condition.shape)} with values {condition.min()}..{condition.max()}."
                )
            condition = one_hot(condition, self.condition_dim)
        if condition.dim() != 2 or condition.shape[1] != self.condition_dim:
            raise ValueError(
                f"Expected conditions of shape [B, {self.condition_dim}] (or class indices [B]), "
                f"got {list(condition.shape)}."
            )
        if batch_size is not None and len(condition) != batch_size:
            raise ValueError(f"{batch_size} images but {len(condition)} conditions.")
        return condition.to(device)

    def encode(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        c = self.as_condition(condition, len(x))
        features = self.encoder(x)
        if self.mode == "add":
            features = features + self.condition_to_features(c)
        else:
            features = torch.cat([features, c], dim=1)
        mu, logvar = self.to_posterior(features).chunk(2, dim=1)
        return mu, logvar

    def decoder_logits(self, z: Tensor, condition: Tensor) -> Tensor:
        c = self.as_condition(condition, len(z))
        if self.mode == "film":
            return self.decoder(z, c)
        return self.decoder(torch.cat([z, c], dim=1) if self.mode == "concat" else z + self.condition_to_latent(c))

    def prior_params(self, condition: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(mu, logvar)`` of the learned prior p(z | c), or ``None`` for N(0, I) (chapter 06)."""
        return None if self.prior is None else self.prior(self.as_condition(condition))

    def sample_latent(
        self, condition: Tensor, generator: torch.Generator | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """One z per condition: from the fitted ``density`` if there is one, else from the prior, the
        learned p(z | c) or N(0, I) (chapter 06).

        ``noise`` [B, D], standard normal, fixes the draw: z = mu(c) + sigma(c) * noise (for N(0, I),
        z = noise; for a mixture, its most probable component), so that one noise vector can be decoded
        under many captions."""
        c = self.as_condition(condition)
        if noise is not None and noise.shape != (len(c), self.latent_dim):
            raise ValueError(
                f"noise must be [{len(c)}, {self.latent_dim}] (one row per condition), got {list(noise.shape)}."
            )
        if self.density is not None:
            return self.density.sample(c, generator, noise)
        if noise is None:
            device = generator.device if generator else c.device
            noise = torch.randn(len(c), self.latent_dim, generator=generator, device=device)
        noise = noise.to(c.device)
        if self.prior is None:
            return noise
        mu, logvar = self.prior(c)
        return mu + torch.exp(0.5 * logvar) * noise

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """Latent codes and conditions -> images in [0, 1]."""
        return torch.sigmoid(self.decoder_logits(z, condition))

    def forward(self, x: Tensor, condition: Tensor) -> VAEOutput:
        mu, logvar = self.encode(x, condition)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(self.decoder_logits(z, condition), mu, logvar, z)

    def reconstruct(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x, condition)[0], condition)

    @torch.no_grad()
    def sample(self, condition: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per condition, decoding z drawn from the prior: ``sample(torch.tensor([3, 3, 7]))``."""
        return self.decode(self.sample_latent(condition, generator), condition)


def mlp_cvae(
    image_shape: ImageShape = (1, 28, 28), condition_dim: int = 10, latent_dim: int = 20, hidden: Sequence[int] = (400,)
) -> CVAE:
    """The one-hot MLP CVAE of reports 002/004: [784 pixels + 10] -> 400 -> z (20); [z + 10] -> 400 -> 784
    (chapter 04)."""
    check_size("latent_dim", latent_dim)
    check_size("condition_dim", condition_dim)
    encoder = MLPEncoder(image_shape, hidden=())  # flatten only: the condition joins the raw pixels
    decoder = MLPDecoder(image_shape, latent_dim + condition_dim, hidden[::-1])
    return CVAE(encoder, decoder, latent_dim, condition_dim, "concat", head_hidden=hidden)


def conv_cvae(
    image_shape: ImageShape = (1, 28, 28),
    condition_dim: int = 10,
    latent_dim: int = 128,
    channels: Sequence[int] = (32, 64, 128),
    mode: str = "concat",
) -> CVAE:
    """Report 003's convolutional CVAE (3 conv layers, latent 128), condition concatenated or added
    (chapters 04 and 06)."""
    check_size("latent_dim", latent_dim)
    check_size("condition_dim", condition_dim)
    if mode == "film":
        raise ValueError("conv_cvae builds the seeds' decoder (concat or add); text_cvae(mode='film') builds FiLM's.")
    decoder_in = latent_dim + (condition_dim if mode == "concat" else 0)
    return CVAE(
        ConvEncoder(image_shape, channels),
        ConvDecoder(image_shape, decoder_in, channels),
        latent_dim,
        condition_dim,
        mode,
    )


def text_cvae(
    image_shape: ImageShape = (3, 32, 32),
    condition_dim: int = 384,
    latent_dim: int = 64,
    channels: Sequence[int] = (32, 64),
    mode: str = "film",
    learned_prior: bool = False,
    residual_blocks: int = 0,
) -> CVAE:
    """The text-to-image CVAE of chapter 06: a conv encoder, a decoder that reads the caption at every stage
    (``mode="film"``; ``"concat"`` and ``"add"`` give the seeds' :class:`ConvDecoder`), and the prior
    N(0, I), as the seeds (``learned_prior=True``: Sohn et al.'s p(z | c), learned with the model; in
    chapter 06's study a mixture density fitted afterwards, ``model.density``, draws better samples).
    ``residual_blocks`` per decoder stage: see :class:`FiLMDecoder` (FiLM only)."""
    if mode != "film":
        if residual_blocks:
            raise ValueError(f"residual_blocks is a FiLM decoder option; mode {mode!r} has none (use mode='film')")
        model = conv_cvae(image_shape, condition_dim, latent_dim, channels, mode)
    else:
        latent_dim, condition_dim = check_size("latent_dim", latent_dim), check_size("condition_dim", condition_dim)
        decoder = FiLMDecoder(image_shape, latent_dim, condition_dim, channels, residual_blocks)
        model = CVAE(ConvEncoder(image_shape, channels), decoder, latent_dim, condition_dim, mode)
    model.prior = ConditionalPrior(model.condition_dim, model.latent_dim) if learned_prior else None
    return model
