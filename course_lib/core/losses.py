"""Losses with explicit reductions: sum over pixels and latent dimensions, mean over the batch.

Written this way a loss is "nats per image", its scale does not depend on the batch size, and the
KL weight ``beta`` means what it says (report 000 weighted a per-pixel *mean* error against a summed KL
and collapsed its posterior). Introduced in chapter 01 (reconstruction) and chapter 02 (ELBO);
chapter 07 adds report 000's weighting and stage 2's regression onto the image posterior.

Core layer: imports torch and course_lib.models only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.models.cvae import conditioning
from course_lib.models.two_stage import unpack_tokens

LIKELIHOODS = ("bernoulli", "gaussian")


def reconstruction_nll(logits: Tensor, x: Tensor, likelihood: str = "bernoulli", sigma: float = 0.1) -> Tensor:
    """-log p(x|z) per image, summed over pixels: shape [B], in nats (chapter 01).

    ``bernoulli``: binary cross-entropy of the decoder's logits against x in [0, 1].
    ``gaussian``: a Gaussian with mean sigmoid(logits) and fixed standard deviation ``sigma``,
    i.e. squared error / (2 sigma^2) plus a constant. A smaller sigma trusts pixels more: it acts like
    a smaller beta.
    """
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
    elif likelihood == "gaussian":
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        nll = (torch.sigmoid(logits.float()) - x) ** 2 / (2 * sigma**2) + math.log(sigma * math.sqrt(2 * math.pi))
    else:
        raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
    return nll.flatten(1).sum(1)


def kl_per_dim(
    mu: Tensor, logvar: Tensor, prior_mu: Tensor | None = None, prior_logvar: Tensor | None = None
) -> Tensor:
    """KL(q(z|x) || N(0, I)) for each latent dimension, in closed form: shape [B, D] (chapter 02).

    With ``prior_mu`` and ``prior_logvar`` the second Gaussian is N(prior_mu, exp(prior_logvar))
    instead of N(0, I), e.g. the text's Gaussian in chapter 07's stage 2 (exercise 7.1).
    """
    mu, logvar = mu.float(), logvar.float()
    if prior_mu is None and prior_logvar is None:
        return 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    prior_mu = torch.zeros_like(mu) if prior_mu is None else prior_mu.float()
    prior_logvar = torch.zeros_like(logvar) if prior_logvar is None else prior_logvar.float()
    return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu) ** 2) / prior_logvar.exp() - 1)


def bits_per_dim(nats_per_image: float | Tensor, image_shape: Sequence[int]) -> float | Tensor:
    """A loss in nats per image as bits per dimension (chapter 03, exercise 3.1): nats / (C*H*W * ln 2).

    Dividing by the number of pixel values makes images of different sizes comparable; dividing by
    ln 2 turns nats into bits.
    """
    return nats_per_image / (math.prod(image_shape) * math.log(2))


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across the data (Burda et al., 2016; chapter 02).

    ``mu`` is [N, D] over a data set. A dimension with Var_x(E[z|x]) below ``threshold`` ignores its
    input: the posterior has collapsed to the prior there.
    """
    return int((mu.float().var(dim=0) > threshold).sum())


@dataclass
class ReconstructionLoss:
    """Autoencoder loss: -log p(x|x_hat) per image, averaged over the batch (chapter 01)."""

    likelihood: str = "bernoulli"
    sigma: float = 0.1

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        recon = reconstruction_nll(model(x, *conditioning(model, y)), x, self.likelihood, self.sigma).mean()
        return {"loss": recon, "recon": recon}


@dataclass
class ELBO:
    """Negative ELBO: E_q[-log p(x|z)] + beta * KL(q(z|x) || p(z)), per image, mean over the batch.

    ``beta = 1`` is the true (negative) evidence lower bound in nats; other values give the beta-VAE
    objective (chapter 02). For a CVAE with a learned prior the KL is to p(z | c) (chapter 06).
    """

    beta: float = 1.0
    likelihood: str = "bernoulli"
    sigma: float = 0.1

    def __post_init__(self) -> None:
        self.beta, self.sigma = float(self.beta), float(self.sigma)  # ELBO(beta=1) == ELBO(beta=1.0) in checkpoints
        if self.beta < 0:
            raise ValueError(
                f"beta must be >= 0 (it weights a KL divergence), got {self.beta}. "
                "beta = 1 is the ELBO; 0 < beta < 1 favours reconstructions."
            )
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {self.likelihood!r}; choose one of {LIKELIHOODS}.")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        logits, mu, logvar, _ = model(x, *conditioning(model, y))  # a CVAE also gets the labels
        recon = reconstruction_nll(logits, x, self.likelihood, self.sigma).mean()
        kl = kl_per_dim(mu, logvar, *prior_params(model, y)).sum(1).mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}


@dataclass
class HybridELBO(ELBO):
    """Sohn et al. (2015)'s hybrid objective for a conditional VAE (chapter 06):
    ``alpha * (-ELBO) + (1 - alpha) * (-log p(x | z, c))`` with z drawn from the prior N(0, I).

    In the ELBO the decoder only sees codes from q(z | x, c), which can carry everything the image
    shows: where the object is, for about log 9 = 2.2 nats. At sampling time it gets z ~ N(0, I), which
    carries nothing about the image, so whatever the decoder learned to read from z is drawn at random.
    The second term (their "GSNN" loss) trains the decoder on such z, so it must take what the condition
    says from c. ``alpha = 1`` is the plain ELBO. The returned ``neg_elbo`` is the -ELBO itself (beta = 1),
    comparable with other models' losses; ``loss`` is the hybrid objective.
    """

    alpha: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha = float(self.alpha)
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] (the weight of the ELBO), got {self.alpha}.")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        if not getattr(model, "conditional", False):
            raise TypeError(
                f"HybridELBO trains a conditional VAE; {type(model).__name__} has no condition to read. "
                "Use ELBO for an unconditional model."
            )
        terms = super().__call__(model, x, y)
        z = model.sample_latent(y)
        prior_recon = reconstruction_nll(model.decoder_logits(z, y), x, self.likelihood, self.sigma).mean()
        return terms | {
            "loss": self.alpha * terms["loss"] + (1 - self.alpha) * prior_recon,
            "neg_elbo": terms["recon"] + terms["kl"],
            "prior_recon": prior_recon,
        }


def report000_beta(image_shape: Sequence[int], kl_weight: float = 1.0) -> float:
    """The beta that report 000's loss amounts to (chapter 07).

    Report 000 minimised ``mean squared error per pixel + kl_weight * KL`` (KL summed over latent
    dimensions). Multiplied by the number of pixel values P it is ``sum of squared errors + P *
    kl_weight * KL``: a Gaussian ELBO with sigma^2 = 1/2 and ``beta = P * kl_weight``.
    """
    return math.prod(image_shape) * kl_weight


def report000_elbo(image_shape: Sequence[int], kl_weight: float = 1.0) -> ELBO:
    """Report 000's stage-1 loss written as the course's ELBO (chapter 07): same minimiser, ``beta`` in plain sight."""
    return ELBO(beta=report000_beta(image_shape, kl_weight), likelihood="gaussian", sigma=math.sqrt(0.5))


def prior_params(model: nn.Module, condition: Tensor | None) -> tuple[Tensor, ...]:
    """``(mu, logvar)`` of the model's learned prior p(z | c) for :func:`kl_per_dim`, or ``()`` for
    N(0, I) (chapter 06)."""
    params = model.prior_params(condition) if hasattr(model, "prior_params") else None
    return () if params is None else params


@dataclass
class MixtureNLL:
    """-log p(z | c) of a :class:`~course_lib.models.priors.MixtureDensityNetwork`, mean over the batch,
    for :func:`~course_lib.core.train.fit` on batches ``(conditions, codes)`` (chapter 06)."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        if y is None:
            raise ValueError("MixtureNLL needs the codes: batches of (conditions, posterior means).")
        nll = -model.log_prob(x, y.float()).mean()
        return {"loss": nll, "nll": nll}


TARGETS = ("mean", "kl")


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
