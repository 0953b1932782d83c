"""Metrics. Chapter 01: held-out reconstruction error, MSE per pixel and SSIM (torchmetrics).
Chapter 04: FID and KID of generated images (torchmetrics, in a pluggable feature space) and the
conditional accuracy of a class-conditional generator. Chapter 06: CLIP score of images against their
captions (torchmetrics; needs the CLIP weights) and the diversity of several samples of one caption.

Imports course_lib.core, course_lib.models, course_lib.evaluation.classifier and (CLIP score) course_lib.text.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.kid import KernelInceptionDistance
from torchvision.transforms import GaussianBlur

from course_lib.core.device import choose_device
from course_lib.core.profiles import get_profile
from course_lib.evaluation.classifier import load_or_train_classifier
from course_lib.models.cvae import conditioning


@torch.no_grad()
def reconstruction_metrics(model: nn.Module, data: Iterable[tuple[Tensor, Tensor | None]]) -> dict[str, float]:
    """Mean squared error per pixel and SSIM (Gaussian 11x11 window, ``data_range=1``) of
    ``model.reconstruct(x)`` against ``x``, averaged over every image of ``data`` (chapter 01)."""
    return _reconstruct(model, data, keep=False)[1]


def reconstructions_and_metrics(
    model: nn.Module, data: Iterable[tuple[Tensor, Tensor | None]]
) -> tuple[Tensor, dict[str, float]]:
    """The reconstructions of every image of ``data`` (on the CPU, in order) and their
    :func:`reconstruction_metrics`, from one pass over ``data`` (chapter 04's evaluation table needs both)."""
    kept, metrics = _reconstruct(model, data, keep=True)
    return torch.cat(kept), metrics


@torch.no_grad()
def _reconstruct(model: nn.Module, data, keep: bool) -> tuple[list[Tensor], dict[str, float]]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    kept, squared_error, ssim_sum, n_images, n_values = [], 0.0, 0.0, 0, 0
    for x, y in data:
        x = x.to(device)
        x_hat = model.reconstruct(x, *conditioning(model, y)).float()
        squared_error += float(((x_hat - x) ** 2).sum())
        ssim_sum += float(structural_similarity_index_measure(x_hat, x, data_range=1.0, reduction="sum"))
        n_images += len(x)
        n_values += x.numel()
        if keep:
            kept.append(x_hat.cpu())
    model.train(was_training)
    return kept, {"mse_per_pixel": squared_error / n_values, "ssim": ssim_sum / n_images}


# --------------------------------------------------------------------------- chapter 04: generated images

FID_EXTRACTORS = ("course", "inception")


class FeatureExtractor(nn.Module):
    """Images [B, C, H, W] in [0, 1] -> features [B, num_features]: the ``feature=`` module that
    torchmetrics' FID and KID call on every batch (chapter 04).

    With a custom module (and ``normalize=True``) torchmetrics passes the tensor given to ``update``
    unchanged, float in [0, 1], and reads ``num_features`` to size FID's mean and covariance.
    """

    def __init__(self, net: nn.Module, num_features: int, description: str) -> None:
        super().__init__()
        self.net, self.num_features, self.description = net, int(num_features), description
        self._last: tuple[Tensor | None, Tensor | None] = (None, None)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Always in eval mode (BatchNorm running statistics, no dropout), as torchmetrics' own InceptionV3.
        return super().train(False)

    def extract(self, images: Tensor) -> Tensor:
        return self.net(images)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        # fid_kid updates FID and KID with the same batch one after the other: extract its features once.
        # float64: KID is a small difference of large kernel sums, which float32 rounds away.
        if self._last[0] is not images:
            self._last = (images, self.extract(images).double())
        return self._last[1]

    def forget(self) -> None:
        """Drop the last batch kept for the second metric (frees its memory)."""
        self._last = (None, None)


class ClassifierFeatures(FeatureExtractor):
    """The penultimate layer of a classifier (``classifier.features(x)``, e.g. the course's
    :class:`~course_lib.evaluation.classifier.FashionClassifier`); a module without ``features`` is called
    as is (chapter 04)."""

    def extract(self, images: Tensor) -> Tensor:
        return self.net.features(images) if hasattr(self.net, "features") else self.net(images)


class InceptionFeatures(FeatureExtractor):
    """The standard FID features: torchmetrics' InceptionV3 (torch-fidelity weights), 2048-d pool3 (chapter 04).

    Grey images are repeated to 3 channels and scaled to uint8 [0, 255], exactly as torchmetrics does
    with ``normalize=True``; the network resizes them to 299x299 itself.
    """

    def __init__(self) -> None:
        try:
            net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except ModuleNotFoundError as error:
            raise RuntimeError(
                "extractor='inception' needs torch-fidelity (pip install torch-fidelity) and, once, "
                "the network to download its InceptionV3 weights. Without them use "
                "extractor='course' (the course's Fashion-MNIST classifier) and say so next to "
                f"the numbers. ({error})"
            ) from error
        except Exception as error:  # a download raises URLError, HTTPError, ConnectionError, ...
            raise RuntimeError(
                "The InceptionV3 weights for standard FID could not be loaded: they are downloaded "
                "from GitHub on first use (then cached under torch.hub.get_dir()) and this machine "
                "could not get them. Use extractor='course' (the course's Fashion-MNIST classifier) "
                f"and say so next to the numbers. ({type(error).__name__}: {error})"
            ) from error
        super().__init__(net, 2048, "InceptionV3 pool3 features (standard FID)")

    def extract(self, images: Tensor) -> Tensor:
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        return self.net((rgb * 255).byte())


def feature_extractor(
    extractor: str | nn.Module = "course", device: str | torch.device | None = None, verbose: bool = True
) -> FeatureExtractor:
    """The feature space FID and KID compare images in (chapter 04).

    - ``"course"``: the course's Fashion-MNIST classifier (trained once and cached; with the ``smoke``
      profile a 1-epoch smoke classifier): works offline, but its numbers are not comparable with
      published FIDs;
    - ``"inception"``: the standard InceptionV3 (needs torch-fidelity and, once, the network);
    - an ``nn.Module``: a classifier with ``features(x)`` and ``num_features`` (like ``FashionClassifier``)
      or any module mapping images to [B, d]. It is moved to ``device`` and put in eval mode.
    """
    device = _metric_device(device)
    if isinstance(extractor, FeatureExtractor):
        return extractor.to(device)
    if isinstance(extractor, nn.Module):
        return ClassifierFeatures(extractor, _num_features(extractor), f"features of {type(extractor).__name__}").to(
            device
        )
    if extractor == "inception":
        return InceptionFeatures().to(device)
    if extractor == "course":
        classifier = load_or_train_classifier(get_profile("auto").name, device=device, verbose=verbose)
        return ClassifierFeatures(classifier, classifier.num_features, f"{classifier.description}, 128-d features")
    raise ValueError(f"Unknown extractor {extractor!r}; choose one of {FID_EXTRACTORS} or pass an nn.Module.")


def _num_features(net: nn.Module) -> int:
    """``net.num_features``, or the width of its output for one blank image."""
    if hasattr(net, "num_features"):
        return int(net.num_features)
    parameter = next(net.parameters(), None)
    blank = torch.zeros(
        2, *getattr(net, "image_shape", (1, 28, 28)), device=parameter.device if parameter is not None else "cpu"
    )
    with torch.no_grad():
        return int(ClassifierFeatures(net, 0, "").extract(blank).shape[1])


def _metric_device(device: str | torch.device | None) -> torch.device:
    device = choose_device(device)
    # FID keeps float64 statistics, which Apple's MPS does not support: compute there on the CPU.
    return torch.device("cpu") if device.type == "mps" else device


def _check_images(images: Tensor, name: str) -> None:
    if images.dim() != 4 or len(images) < 2:
        raise ValueError(f"{name} must be a batch of at least 2 images [N, C, H, W], got shape {list(images.shape)}.")
    low, high = float(images.min()), float(images.max())
    if not torch.is_floating_point(images) or low < 0 or high > 1:
        raise ValueError(
            f"{name} must be float images in [0, 1], got {images.dtype} in [{low:.3g}, {high:.3g}]. "
            "Decoders return logits: apply torch.sigmoid first; uint8 images: divide by 255."
        )


def fid_kid(
    real: Tensor,
    fake: Tensor,
    extractor: str | nn.Module = "course",
    batch_size: int = 500,
    device: str | torch.device | None = None,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID between two image sets [N, C, H, W] in [0, 1], with torchmetrics (chapter 04).

    Both compare the sets in a feature space (see :func:`feature_extractor`; report which one ran):
    FID fits a Gaussian to each set's features and measures the Fréchet distance between them; KID
    is the unbiased polynomial-kernel MMD, averaged over ``kid_subsets`` random subsets of
    ``kid_subset_size`` images (capped at the smaller set), drawn with ``seed`` so the number repeats.
    Lower is better; 0 means "same distribution". FID is biased upwards for small sets: compare
    numbers only at the same N, and next to :func:`fid_floors`.
    """
    _check_images(real, "real")
    _check_images(fake, "fake")
    device = _metric_device(device)
    features = feature_extractor(extractor, device)
    fid = FrechetInceptionDistance(feature=features, normalize=True).to(device)
    with warnings.catch_warnings():  # "KID keeps all features in memory": 10k x 2048 floats is fine
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        subset_size = min(kid_subset_size, len(real), len(fake))
        # When a subset is the whole of both sets, every subset is the same: compute it once.
        subsets = 1 if len(real) == len(fake) == subset_size else kid_subsets
        kid = KernelInceptionDistance(feature=features, subsets=subsets, normalize=True, subset_size=subset_size).to(
            device
        )
    for images, is_real in ((real, True), (fake, False)):
        for batch in images.split(batch_size):
            batch = batch.to(device)
            fid.update(batch, real=is_real)
            kid.update(batch, real=is_real)
    features.forget()
    with torch.random.fork_rng(devices=[]):  # KID's subsets come from torch.randperm on the CPU
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def fid_floors(
    real_train: Tensor,
    real_test: Tensor,
    extractor: str | nn.Module = "course",
    batch_size: int = 500,
    device: str | torch.device | None = None,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Reference values for a model's FID/KID, measured the same way (chapter 04).

    - ``"real train vs real test"``: a random subset of the training images (seeded, as many as there
      are test images) against the test images: what a perfect generator would score at this N.
    - ``"blurred test vs real test"``: the test images blurred with torchvision's
      ``GaussianBlur(kernel_size=5, sigma=1.0)`` (fixed, not tuned) against the sharp test images:
      what a slight blur alone costs, the typical flaw of VAE samples.

    ``pandas.DataFrame(fid_floors(...)).T`` shows them as a table.
    """
    subset = torch.randperm(len(real_train), generator=torch.Generator().manual_seed(seed))[: len(real_test)]
    features = feature_extractor(extractor, device)  # built (or loaded) once for both comparisons
    blurred = GaussianBlur(kernel_size=5, sigma=1.0)(real_test).clamp(0, 1)  # float rounding can pass 1
    pairs = {"real train vs real test": real_train[subset], "blurred test vs real test": blurred}
    return {
        name: fid_kid(real_test, other, features, batch_size, device, kid_subset_size, seed=seed)
        for name, other in pairs.items()
    }


@torch.no_grad()
def predict(classifier: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted class of every image [N] (on the CPU), batch by batch, in eval mode (chapter 04)."""
    was_training = classifier.training
    classifier.eval()
    parameter = next(classifier.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    predictions = [classifier(batch.to(device)).argmax(1).cpu() for batch in images.split(batch_size)]
    classifier.train(was_training)
    return torch.cat(predictions)


def conditional_accuracy(
    classifier: nn.Module,
    images: Tensor,
    requested_labels: Tensor,
    class_names: Sequence[str] | None = None,
    batch_size: int = 500,
) -> tuple[float, pd.Series]:
    """How often a classifier sees the class a conditional model was asked to draw (chapter 04).

    Returns ``(overall, per_class)``: the fraction of all ``images`` classified as their requested
    label, and the same fraction among the images requested for each class (only classes that were
    requested; indexed by ``class_names[c]`` or the class index). Judge it against the classifier's
    own accuracy on real test images (``classifier.test_accuracy``): a generator cannot beat its judge
    by much.
    """
    from sklearn.metrics import accuracy_score, recall_score

    if len(images) != len(requested_labels):
        raise ValueError(f"{len(images)} images but {len(requested_labels)} requested labels.")
    _check_images(images, "images")
    requested = requested_labels.cpu().numpy()
    predicted = predict(classifier, images, batch_size).numpy()
    classes = np.unique(requested)
    # Recall of class c = correct among the images *requested* as c: exactly the per-class accuracy.
    per_class = recall_score(requested, predicted, labels=classes, average=None, zero_division=0)
    index = pd.Index([class_names[c] for c in classes] if class_names is not None else classes, name="requested class")
    return float(accuracy_score(requested, predicted)), pd.Series(per_class, index=index, name="accuracy")


# --------------------------------------------------------------------------- chapter 06: text-conditioned images
CLIP_SCORE_MODEL = "openai/clip-vit-base-patch32"  # ViT-B/32, as report 004 used


def clip_score(
    images: Tensor,
    captions: Sequence[str],
    model_name: str = CLIP_SCORE_MODEL,
    batch_size: int = 100,
    device: str | torch.device | None = None,
) -> float:
    """torchmetrics' CLIPScore of images [N, 3, H, W] in [0, 1] against their captions (chapter 06).

    100 * max(cos(image, text), 0) averaged over the pairs, in CLIP's space (Hessel et al., 2021).
    Report 004 reported 0.195-0.202 on the 0-1 scale, i.e. about 20 here. Read it next to the same number
    for real images with their own captions, and for generated images with shuffled captions.
    Captions longer than CLIP's 77 tokens are read up to the limit, as torchmetrics does, and a note
    says how many. ``model_name`` is a hub id or a folder saved with ``save_pretrained``. Needs those CLIP weights (the
    hub, its local cache or the folder); without them it raises
    :class:`~course_lib.text.encoders.WeightsNotFoundError` at once instead of retrying for minutes.
    """
    from torchmetrics.multimodal.clip_score import CLIPScore

    from course_lib.text.encoders import WeightsNotFoundError, _hub_cache_only, _hub_problem

    _check_images(images, "images")
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions.")
    device = _metric_device(device)
    problem = _hub_problem(model_name)
    try:
        with _hub_cache_only(problem is not None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' deprecation notes about the processor
            # A loader, not the name: torchmetrics only accepts names of the hub models it lists.
            metric = CLIPScore(model_name_or_path=lambda: _clip_for_torchmetrics(model_name)).to(device)
    except Exception as error:  # OSError offline, ValueError for a bad name, ...
        raise WeightsNotFoundError(
            f"CLIP score needs the {model_name} weights, which could not be loaded ({problem or error}). Connect to "
            "the network once (they are cached by Hugging Face), or report the course's own metrics instead."
        ) from error
    limit = metric.model.config.text_config.max_position_embeddings
    too_long = sum(len(ids) > limit for ids in metric.processor.tokenizer(list(captions))["input_ids"])
    if too_long:  # said here, once, instead of a warning per batch on stderr
        print(
            f"note: {too_long:,} of {len(captions):,} captions are longer than CLIP's {limit} tokens; CLIP score "
            f"reads their first {limit} tokens (torchmetrics truncates them)."
        )
    for start in range(0, len(images), batch_size):
        batch = (images[start : start + batch_size] * 255).round().to(torch.uint8).to(device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Encountered caption longer than")
            metric.update(batch, list(captions[start : start + batch_size]))
    return float(metric.compute())


def _clip_for_torchmetrics(model_name: str) -> tuple[nn.Module, object]:
    """CLIP's model and processor for torchmetrics' CLIPScore, from a hub id or a local folder.

    From transformers 5, ``get_image_features`` / ``get_text_features`` return an output object whose
    ``pooler_output`` is the projected embedding; torchmetrics 1.9 expects the tensor itself and fails
    (torchmetrics issue #3407, fixed after 1.9.0). The model's two methods are wrapped to return it.
    """
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_name)
    for name in ("get_image_features", "get_text_features"):
        setattr(model, name, functools.partial(_projected_features, getattr(model, name)))
    return model, CLIPProcessor.from_pretrained(model_name)


def _projected_features(features: Callable[..., object], *args: object, **kwargs: object) -> Tensor:
    output = features(*args, **kwargs)
    return output if isinstance(output, Tensor) else output.pooler_output


def mean_pairwise_distance(groups: Tensor) -> float:
    """How different the images of each group are: ``groups [G, k, C, H, W]`` (k >= 2 images per
    group, e.g. k samples of one caption) -> the root-mean-square pixel difference of every pair in a
    group, averaged over pairs and groups (chapter 06). 0 means every sample of a caption is the same
    image; real images that share the caption's attributes give the level to compare with."""
    if groups.dim() < 3 or groups.shape[1] < 2:
        raise ValueError(f"Expected groups [G, k, ...] with k >= 2 images each, got {list(groups.shape)}.")
    flat = groups.detach().float().flatten(2)
    distances = torch.cdist(flat, flat) / flat.shape[-1] ** 0.5  # [G, k, k], RMS difference per pixel value
    k = flat.shape[1]
    return float(distances.sum((1, 2)).mean() / (k * (k - 1)))
