"""A Fashion-MNIST classifier the course trains itself, for offline metrics (chapter 04).

Generated images are judged by a network that knows what clothes look like. The standard choice,
InceptionV3 (FID's extractor), needs weights from the network and was trained on ImageNet photos,
not 28x28 greyscale clothes. This small CNN is trained once on Fashion-MNIST with a fixed seed and
cached; it serves two metrics:

- its 128-d penultimate layer (:meth:`FashionClassifier.features`) is the feature space for FID/KID
  (:func:`course_lib.evaluation.metrics.fid_kid`);
- its predictions check that a conditional model draws the class it was asked for
  (:func:`course_lib.evaluation.metrics.conditional_accuracy`).

Imports course_lib.core, course_lib.data (images) and course_lib.models (blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_accuracy

from course_lib.core.device import choose_device
from course_lib.core.io import CheckpointError, cache_dir
from course_lib.core.profiles import PROFILES, get_profile
from course_lib.core.train import frozen
from course_lib.data.images import fashion_mnist_loaders
from course_lib.evaluation.judges import load_judge, save_judge, train_judge
from course_lib.models.blocks import ImageShape, check_images, conv_block

CLASSIFIER_SEED = 0
# Full classifier: 10 epochs of Adam with a cosine learning-rate decay on all 60,000 training images
# (>= 92% on the 10,000 test images). Smoke classifier: 1 epoch on the smoke subset, only so that CI
# can run the metric code end to end.
TRAINING = {
    "full": {"epochs": 10, "lr": 1e-3, "batch_size": 128},
    "smoke": {"epochs": 1, "lr": 2e-3, "batch_size": 128},
}


class FashionClassifier(nn.Module):
    """Two conv blocks, a 128-d feature layer and a linear layer to the 10 classes (chapter 04).

    ``forward(x)`` gives class logits [B, 10]; ``features(x)`` the 128-d penultimate activations
    used as the feature space of FID and KID. Images are [B, 1, 28, 28] in [0, 1], as everywhere in
    the course (no normalisation).
    """

    num_features = 128  # torchmetrics reads this attribute to size FID's statistics

    def __init__(
        self,
        image_shape: ImageShape = (1, 28, 28),
        num_classes: int = 10,
        channels: tuple[int, int] = (32, 64),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        # Two 2x2 poolings: 28x28 -> 7x7 (computed, so other image sizes work too).
        flat = channels[1] * (image_shape[1] // 4) * (image_shape[2] // 4)
        self.body = nn.Sequential(
            conv_block(image_shape[0], channels[0]),
            conv_block(*channels),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, self.num_features),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self.test_accuracy: float | None = None  # set when trained or loaded: held-out accuracy
        self.train_seconds: float | None = None  # how long its training took
        self.description = "untrained FashionClassifier"

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations [B, 128]: what FID/KID compare."""
        check_images(x, self.image_shape)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass
class ClassificationLoss:
    """Cross-entropy for :func:`course_lib.core.train.fit`, which also reports the batch accuracy (chapter 04)."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        if y is None:
            raise ValueError("ClassificationLoss needs labels: pass (images, labels) batches.")
        logits = model(x).float()
        # validate_args=False: the checks would synchronise with the GPU on every step.
        accuracy = multiclass_accuracy(
            logits.argmax(1), y, num_classes=logits.shape[1], average="micro", validate_args=False
        )
        return {"loss": F.cross_entropy(logits, y), "accuracy": accuracy}


def classifier_path(profile_name: str = "cpu") -> Path:
    """Cache file of the classifier: one full classifier for ``cpu`` and ``gpu`` (same recipe), a
    separate one for ``smoke``, so a smoke run never passes for a real measurement (chapter 04)."""
    return cache_dir() / "classifier" / f"fashion_cnn{'_smoke' if _kind(profile_name) == 'smoke' else ''}.pt"


def _kind(profile_name: str) -> str:
    """``"smoke"`` or ``"full"``; a name is only resolved for "auto" (asking for the gpu profile's
    classifier on a machine without a GPU is no mistake: it is the cpu one)."""
    name = profile_name.strip().lower() if isinstance(profile_name, str) else profile_name
    return "smoke" if (name if name in PROFILES else get_profile(name).name) == "smoke" else "full"


def load_or_train_classifier(
    profile_name: str = "cpu", device: str | torch.device | None = None, verbose: bool = True
) -> FashionClassifier:
    """The cached Fashion-MNIST classifier, trained first (with a fixed seed) if there is none (chapter 04).

    ``profile_name="smoke"`` gives a 1-epoch classifier on the smoke subset, labelled as such; any other
    profile gives the full classifier (10 epochs on all training images). The held-out accuracy is kept
    with the weights (``model.test_accuracy``). The model comes back frozen, in eval mode.
    """
    kind, path = _kind(profile_name), classifier_path(profile_name)
    device = choose_device(device)
    if path.exists():
        model = _load(path, kind)
    else:
        if verbose:
            print(f"Training the {kind} Fashion-MNIST classifier once (seed {CLASSIFIER_SEED}); later calls load it.")
        model = _train(kind, path, device, verbose)
    if verbose:
        print(f"{model.description}: test accuracy {model.test_accuracy:.2%} (cached in {path})")
    return frozen(model.to(device))


def _train(kind: str, path: Path, device: torch.device, verbose: bool) -> FashionClassifier:
    settings = TRAINING[kind]
    profile = get_profile("smoke" if kind == "smoke" else "cpu")  # "gpu" trains the same full classifier
    train_data, test_data = fashion_mnist_loaders(profile, device, settings["batch_size"], seed=CLASSIFIER_SEED)
    model, history = train_judge(
        FashionClassifier,
        train_data,
        ClassificationLoss(),
        settings,
        path,
        device,
        CLASSIFIER_SEED,
        test_data=test_data,
        verbose=verbose,
    )
    model.test_accuracy = float(history["test_accuracy"].iloc[-1])
    model.train_seconds = float(history["seconds"].sum())  # also right after a resumed training
    model.description = _describe(kind, len(train_data.images), len(test_data.images), settings["epochs"])
    save_judge(
        path,
        model,
        kind=kind,
        test_accuracy=model.test_accuracy,
        train_seconds=model.train_seconds,
        description=model.description,
        history=history.reset_index().to_dict("list"),
    )
    return model


def _describe(kind: str, n_train: int, n_test: int, epochs: int) -> str:
    name = "SMOKE classifier (for CI only, not a real measurement)" if kind == "smoke" else "Fashion-MNIST classifier"
    return f"{name}, {epochs} epoch(s) on {n_train:,} training images, tested on {n_test:,}"


def _load(path: Path, kind: str) -> FashionClassifier:
    model = FashionClassifier()
    state = load_judge(path, model)
    if state.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {state.get('kind')!r} classifier, not a {kind!r} one. Delete it to retrain."
        )
    model.test_accuracy, model.description = float(state["test_accuracy"]), str(state["description"])
    model.train_seconds = float(state.get("train_seconds", float("nan")))
    return model
