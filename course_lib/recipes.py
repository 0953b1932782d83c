"""Chapter recipes: the trained models that a later chapter reuses, built and trained by one function
each, with their sizes per profile in one place (chapters 04, 07 and 08).

A chapter that needs another chapter's model calls its recipe; it never retypes that chapter's
checkpoint name or copies its pipeline. The recipe trains once into the checkpoint cache and loads
from it afterwards, so chapter 08 reuses what chapters 04 and 07 trained (or trains it, when run
alone). Every checkpoint name comes from :func:`course_lib.core.train.checkpoint_path` with the
arguments that define the run.

``loaders=`` (the recipes that train on batches): the ``(train, test)`` batches to use. The chapter
that owns the model passes its own, so that the batch order continues its shuffling as it always did
(a loader's order moves on with every epoch it serves); a later chapter passes none and gets fresh
ones. Either way the checkpoint is the same file, so a later chapter loads the model the owning
chapter trained.

Layer rule: may import evaluation, text, data, core and models (today it imports core, data, text and
models); within course_lib only the instructor tools may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from course_lib.core.losses import ELBO, LatentRegression, MixtureNLL, report000_elbo
from course_lib.core.profiles import Profile
from course_lib.core.train import (
    PosteriorCollapseWarning,
    checkpoint_path,
    expected_warnings,
    fit,
    image_posteriors,
)
from course_lib.data.captions import caption_pairs
from course_lib.data.coco import CaptionData, PreparedCaptions, caption_data, load_prepared
from course_lib.data.images import SCENES_SMALL, TensorLoader, fashion_mnist_loaders
from course_lib.models import VAE, TextToLatent, TwoStageVAE, image_vae, mlp_vae, report000_vae
from course_lib.models.priors import MixtureDensityNetwork
from course_lib.models.two_stage import STAGE1_CHANNELS, pack_tokens
from course_lib.text.encoders import TextEncoder, text_encoder
from course_lib.text.tokens import cached_token_features

# Chapter 07's sizes per profile: scenes drawn, training images kept, stage 1's epochs, stage 2's epochs and
# captions per training image for the regression (None: all of them; the mixture density always reads all
# of them), the density's epochs, and the text model smoke uses instead of the one asked for.
TWO_STAGE_SIZES = {
    "smoke": {
        "n_scenes": SCENES_SMALL,
        "n_train": 500,
        "stage1_epochs": 1,
        "stage2_epochs": 2,
        "captions_per_image": 1,
        "density_epochs": 1,
        "text_model": "minilm",
    },
    "cpu": {
        "n_scenes": 12_000,
        "n_train": None,
        "stage1_epochs": 20,
        "stage2_epochs": 8,
        "captions_per_image": 1,
        "density_epochs": 20,
        "text_model": None,
    },
    "gpu": {
        "n_scenes": 12_000,
        "n_train": None,
        "stage1_epochs": 40,
        "stage2_epochs": 30,
        "captions_per_image": None,
        "density_epochs": 40,
        "text_model": None,
    },
}
STAGE1_SIGMA = 0.025  # stage 1's pixel noise: sharp enough that the reconstructions keep the shapes


# ---------------------------------------------------------------- chapters 06 and 07
def caption_density(
    conditions: Tensor,
    codes: Tensor,
    test_conditions: Tensor,
    test_codes: Tensor,
    epochs: int,
    name: str,
    profile: Profile,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
    **defines: object,
) -> tuple[MixtureDensityNetwork, pd.DataFrame]:
    """A :class:`~course_lib.models.priors.MixtureDensityNetwork` p(z | caption), fitted by maximum
    likelihood (:class:`~course_lib.core.losses.MixtureNLL`) to pairs (caption vector ``conditions[i]``,
    latent code of its image ``codes[i]``) and checked on the held-out pairs each epoch: chapter 06's
    density after the CVAE, chapter 07's stage 2. ``name``, ``lr`` and ``defines`` name the checkpoint
    (as :func:`~course_lib.core.train.checkpoint_path`). Returns ``(density in eval mode, history)``."""
    density = MixtureDensityNetwork(conditions.shape[1], codes.shape[1])
    history = fit(
        density,
        TensorLoader(conditions, codes, 256, seed=seed),
        MixtureNLL(),
        epochs,
        test_data=TensorLoader(test_conditions, test_codes, 512, shuffle=False),
        lr=lr,
        device=device,
        seed=seed,
        checkpoint=checkpoint_path(name, profile.name, lr=lr, **defines),
        verbose=False,
    )
    return density.eval(), history


# ---------------------------------------------------------------- chapter 04
def fashion_mlp_vae(
    profile: Profile,
    latent_dim: int = 20,
    device: str | torch.device | None = None,
    seed: int = 0,
    verbose: bool = True,
    loaders: tuple[TensorLoader, TensorLoader] | None = None,
) -> tuple[VAE, pd.DataFrame]:
    """Chapter 04's MLP VAE on Fashion-MNIST (hidden 400, Bernoulli ELBO, the profile's epochs), trained
    once and cached; chapter 08 maps its latent space. Returns ``(model, history)``.

    ``loaders``: the ``(train, test)`` batches, see the module docstring."""
    train_data, test_data = loaders or fashion_mnist_loaders(profile, device=device or "cpu", seed=seed)
    model = mlp_vae(latent_dim=latent_dim, hidden=(400,))
    history = fit(
        model,
        train_data,
        ELBO(),
        profile.epochs,
        test_data=test_data,
        device=device,
        seed=seed,
        checkpoint=checkpoint_path("ch04_mlp_vae", profile.name, latent_dim=latent_dim),
        verbose=verbose,
    )
    return model, history


# ---------------------------------------------------------------- chapter 07
@dataclass
class SceneImages:
    """The images of chapter 07: which data set (``data``: real COCO or the scenes), the prepared train and
    test parts (captions, supercategories, attributes) and their image tensors in [0, 1], the training
    images cut to the profile's ``n_train``."""

    data: CaptionData
    train_part: PreparedCaptions
    test_part: PreparedCaptions
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def loaders(self, batch_size: int, seed: int = 0) -> tuple[TensorLoader, TensorLoader]:
        """Shuffled training batches and the held-out images in order (batches of 256)."""
        return (
            TensorLoader(self.train_images, self.train_labels, batch_size, seed=seed),
            TensorLoader(self.test_images, self.test_labels, 256, shuffle=False),
        )


def scene_images(profile: Profile, seed: int = 0, size: int = 64) -> SceneImages:
    """The caption data set of chapter 07 (real COCO where prepared, else the synthetic scenes) at the
    profile's size: :data:`TWO_STAGE_SIZES`."""
    sizes = TWO_STAGE_SIZES[profile.name]
    data = caption_data(size=size, n_scenes=sizes["n_scenes"], seed=seed)
    train_part, test_part = load_prepared(data.path, "train", size), load_prepared(data.path, "test", size)
    train_images, train_labels = train_part.tensors()
    test_images, test_labels = test_part.tensors()
    if sizes["n_train"] is not None:  # a subset, the same one every run
        train_images, train_labels = train_images[: sizes["n_train"]], train_labels[: sizes["n_train"]]
    return SceneImages(data, train_part, test_part, train_images, train_labels, test_images, test_labels)


def stage1(
    scenes: SceneImages,
    profile: Profile,
    latent_dim: int = 64,
    sigma: float = STAGE1_SIGMA,
    device: str | torch.device | None = None,
    seed: int = 0,
    verbose: bool = True,
    loaders: tuple[TensorLoader, TensorLoader] | None = None,
) -> tuple[VAE, pd.DataFrame]:
    """Stage 1 of chapter 07: the image VAE (:func:`~course_lib.models.image_vae`) on the Gaussian ELBO with
    pixel noise ``sigma``, for the profile's ``stage1_epochs``. Returns ``(vae, history)``.

    ``loaders``: the ``(train, test)`` batches, see the module docstring."""
    train_data, test_data = loaders or scenes.loaders(profile.batch_size, seed)
    vae = image_vae(scenes.image_shape, latent_dim, STAGE1_CHANNELS)
    history = fit(
        vae,
        train_data,
        ELBO(likelihood="gaussian", sigma=sigma),
        TWO_STAGE_SIZES[profile.name]["stage1_epochs"],
        test_data=test_data,
        device=device,
        seed=seed,
        verbose=verbose,
        checkpoint=checkpoint_path(
            "ch07_stage1",
            profile.name,
            latent_dim=latent_dim,
            sigma=sigma,
            n=len(scenes.train_images),
            channels="-".join(map(str, STAGE1_CHANNELS)),
        ),
    )
    return vae, history


def report000_stage1(
    scenes: SceneImages,
    profile: Profile,
    latent_dim: int = 64,
    report000_weighting: bool = True,
    sigma: float = STAGE1_SIGMA,
    device: str | torch.device | None = None,
    seed: int = 0,
    verbose: bool = True,
    loaders: tuple[TensorLoader, TensorLoader] | None = None,
) -> tuple[VAE, pd.DataFrame]:
    """Report 000's stage-1 architecture (:func:`~course_lib.models.report000_vae`: BatchNorm and LeakyReLU
    in every block) for the profile's short epochs: with
    report 000's KL weighting (:func:`~course_lib.core.losses.report000_elbo`, which collapses the
    posterior) or, with ``report000_weighting=False``, with the ELBO at pixel noise ``sigma`` (chapter 07).

    ``loaders``: the ``(train, test)`` batches, see the module docstring."""
    train_data, test_data = loaders or scenes.loaders(profile.batch_size, seed)
    vae = report000_vae(scenes.image_shape, latent_dim)
    loss = report000_elbo(scenes.image_shape) if report000_weighting else ELBO(likelihood="gaussian", sigma=sigma)
    history = fit(
        vae,
        train_data,
        loss,
        profile.short_epochs,
        test_data=test_data,
        device=device,
        seed=seed,
        verbose=verbose,
        checkpoint=checkpoint_path(
            "ch07_stage1_report000_architecture",
            profile.name,
            latent_dim=latent_dim,
            loss="report000" if report000_weighting else f"elbo_sigma{sigma}",
            n=len(scenes.train_images),
            blocks="bn_leaky",
        ),
    )
    return vae, history


@dataclass
class CaptionFeatures:
    """Stage 2's inputs: the captions, the image each describes (``owner``), and their frozen token
    features and padding mask (chapter 07)."""

    texts: list[str]
    owner: Tensor
    features: Tensor
    mask: Tensor


def caption_features(
    encoder: TextEncoder, captions: Sequence[Sequence[str]], per_image: int | None, seed: int = 0
) -> CaptionFeatures:
    """``per_image`` seeded captions of every image with their cached token features (chapter 07)."""
    texts, owner = caption_pairs(captions, per_image, seed=seed)
    features, mask = cached_token_features(encoder, texts)
    return CaptionFeatures(texts, owner, features, mask)


def stage2(
    vae: VAE,
    encoder: TextEncoder,
    train: CaptionFeatures,
    test: CaptionFeatures,
    train_targets: Tensor,
    test_targets: Tensor,
    profile: Profile,
    device: str | torch.device | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> tuple[TwoStageVAE, pd.DataFrame]:
    """Stage 2 of chapter 07: a :class:`~course_lib.models.TextToLatent` regressed onto the frozen image
    posterior means (:class:`~course_lib.core.losses.LatentRegression`, lr 1e-3) for the profile's
    stage-2 epochs. ``train_targets`` / ``test_targets``: the frozen VAE's posteriors of the images
    (:func:`~course_lib.core.train.image_posteriors`), computed once by the caller, who uses them too.
    Returns ``(two_stage_model, history)``; the image VAE stays frozen."""
    latent_dim = vae.latent_dim
    train_data = TensorLoader(
        pack_tokens(train.features, train.mask), train_targets[train.owner], profile.batch_size, seed=seed
    )
    test_data = TensorLoader(pack_tokens(test.features, test.mask), test_targets[test.owner], 256, shuffle=False)
    model = TwoStageVAE(vae, TextToLatent(encoder.dim, latent_dim))
    history = fit(
        model,
        train_data,
        LatentRegression(),
        TWO_STAGE_SIZES[profile.name]["stage2_epochs"],
        lr=1e-3,
        test_data=test_data,
        device=device,
        seed=seed,
        verbose=verbose,
        checkpoint=checkpoint_path(
            "ch07_stage2", profile.name, text=encoder.key, latent_dim=latent_dim, n=len(train.texts)
        ),
    )
    return model.eval(), history


@dataclass
class TwoStage:
    """Everything chapter 07 trains, as chapter 08 needs it. ``collapse_warnings``: the messages of the
    posterior-collapse warning that training report 000's stage 1 gives on purpose (empty when it was
    loaded from chapter 07's checkpoint), for the chapter to show rather than as stray stderr."""

    scenes: SceneImages
    vae: VAE
    collapsed: VAE
    encoder: TextEncoder
    train_captions: CaptionFeatures
    test_captions: CaptionFeatures
    model: TwoStageVAE
    train_targets: Tensor  # the frozen VAE's posteriors [mu, logvar] of the training and held-out images
    test_targets: Tensor
    collapse_warnings: list[str]


def two_stage(
    profile: Profile,
    latent_dim: int = 64,
    sigma: float = STAGE1_SIGMA,
    text_model: str = "bert",
    device: str | torch.device | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> TwoStage:
    """The whole pipeline of chapter 07 with its defaults, as chapter 08 reuses it: the scenes, stage 1,
    report 000's collapsed stage 1, the text encoder (smoke: MiniLM), the captions (one per held-out image)
    and stage 2."""
    scenes = scene_images(profile, seed)
    vae, _ = stage1(scenes, profile, latent_dim, sigma, device, seed, verbose)
    with expected_warnings(PosteriorCollapseWarning) as caught:  # report 000's weighting collapses: the lesson
        collapsed, _ = report000_stage1(scenes, profile, latent_dim, device=device, seed=seed, verbose=verbose)
    sizes = TWO_STAGE_SIZES[profile.name]
    encoder = text_encoder(sizes["text_model"] or text_model)
    train = caption_features(
        encoder, scenes.train_part.captions[: len(scenes.train_images)], sizes["captions_per_image"], seed
    )
    test = caption_features(encoder, scenes.test_part.captions, 1, seed + 1)
    train_targets, test_targets = image_posteriors(vae, scenes.train_images), image_posteriors(vae, scenes.test_images)
    model, _ = stage2(vae, encoder, train, test, train_targets, test_targets, profile, device, seed, verbose)
    warnings = [str(w.message) for w in caught]
    return TwoStage(scenes, vae, collapsed, encoder, train, test, model, train_targets, test_targets, warnings)
