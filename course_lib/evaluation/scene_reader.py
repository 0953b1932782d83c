"""Reading a scene: a small CNN that names the main object's colour, shape and position (chapter 06).

Text-conditioned models are judged by whether their images show what the caption says. On the
synthetic scenes (:mod:`course_lib.data.scenes`) every image comes with what was drawn, so a network
trained on real scenes to read the main object's attributes can check generated ones, as the
Fashion-MNIST classifier checks chapter 04's samples (:mod:`course_lib.evaluation.classifier`). Its accuracy
on real held-out scenes is the ceiling a generator is measured against. Its 128-d penultimate layer
is also the feature space for FID/KID on scenes (pass the reader as ``extractor=``).

Targets are class indices into :data:`ATTRIBUTES`; ``-1`` means "unknown" and is skipped by the loss
and the metric: an image without objects has no main object, and the colour of a greyscale image
cannot be seen (its captions still name one, as COCO's annotators do).

Real COCO records no drawn attributes. There the reader reads the one label COCO gives every image,
the supercategory of its largest object (``"none"`` without one), learned from the training images:
:func:`reader_attributes` and :func:`reader_targets` say what a reader of a prepared set reads, and
every function here works for either.

Imports course_lib.core, course_lib.data, course_lib.evaluation.classifier and course_lib.models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.core.device import choose_device
from course_lib.core.io import cache_dir
from course_lib.core.train import frozen
from course_lib.data.coco import PreparedCaptions
from course_lib.data.images import TensorLoader
from course_lib.data.scenes import COLOURS, POSITIONS, SHAPES
from course_lib.evaluation.judges import load_judge, save_judge, train_judge
from course_lib.evaluation.metrics import mean_pairwise_distance
from course_lib.models.blocks import check_images, conv_block

ATTRIBUTES: dict[str, tuple[str, ...]] = {"colour": tuple(COLOURS), "shape": tuple(SHAPES), "position": POSITIONS}
READER_SEED = 0
UNKNOWN = -1


def reader_attributes(data: PreparedCaptions) -> dict[str, tuple[str, ...]]:
    """What a reader of ``data`` reads, with the values of each (chapters 06 and 07): the scenes' main
    object's colour, shape and position (:data:`ATTRIBUTES`), or on real COCO the supercategory."""
    return ATTRIBUTES if data.attributes is not None else {"supercategory": tuple(data.supercategory_names)}


def reader_targets(data: PreparedCaptions) -> Tensor:
    """int64 ``[N, len(reader_attributes(data))]``: :func:`attribute_targets` of the scenes, or on real COCO
    each image's supercategory index (chapters 06 and 07)."""
    if data.attributes is not None:
        return attribute_targets(data.attributes)
    return torch.as_tensor(data.supercategory, dtype=torch.int64).reshape(-1, 1).clone()


def all_key(names: Sequence[str]) -> str | None:
    """The name of the "every attribute right" entry of :func:`attribute_accuracy` (chapter 06):
    ``"all three"`` for the scenes, ``"all N"`` for other counts, None for a single attribute."""
    return None if len(names) < 2 else ("all three" if len(names) == 3 else f"all {len(names)}")


def attribute_targets(records: Sequence[dict]) -> Tensor:
    """The main object's ``[colour, shape, position]`` indices of each scene, int64 [N, 3] (chapter 06).

    ``records`` are :attr:`PreparedCaptions.attributes`. ``-1`` where the scene has no object, and for
    the colour of a greyscale image.
    """
    rows = []
    for record in records:
        if not record["objects"]:
            rows.append([UNKNOWN] * len(ATTRIBUTES))
            continue
        main = record["objects"][0]
        rows.append(
            [
                UNKNOWN if name == "colour" and record.get("greyscale") else values.index(main[name])
                for name, values in ATTRIBUTES.items()
            ]
        )
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, len(ATTRIBUTES))


class SceneReader(nn.Module):
    """A strided conv stem, two conv blocks, a 128-d feature layer, one linear head per attribute (chapter 06).

    ``forward(x)`` returns ``{attribute: logits [B, n_values]}``; ``features(x)`` the 128-d
    activations FID/KID compare. The features are flattened, not averaged over space: averaging
    would throw away where the object is. ``attributes`` (name -> values) are the scenes' by default;
    on real COCO, :func:`reader_attributes` gives the supercategory.
    """

    num_features = 128

    def __init__(
        self,
        image_size: int = 64,
        channels: tuple[int, int, int] = (16, 32, 64),
        dropout: float = 0.3,
        attributes: dict[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.attributes = {name: tuple(values) for name, values in (attributes or ATTRIBUTES).items()}
        self.image_shape = (3, image_size, image_size)
        flat = channels[-1] * (image_size // 8) ** 2  # the stem and two blocks each halve the size
        # A strided stem instead of a full-resolution block: 4x less work on the largest feature map.
        stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU()
        )
        self.body = nn.Sequential(
            stem,
            conv_block(channels[0], channels[1]),
            conv_block(channels[1], channels[2]),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, self.num_features),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.num_features, len(values)) for name, values in self.attributes.items()}
        )
        self.test_accuracy: dict[str, float] = {}  # on real held-out scenes: the ceiling for generated ones
        self.description = "untrained SceneReader"

    @property
    def columns(self) -> list[str]:
        """The keys of :func:`attribute_accuracy` for this reader, in order: its attributes, then the
        "every attribute right" entry where there are several (``[colour, shape, position, all three]``;
        chapters 06 and 07 name their table columns by it)."""
        return [*self.attributes, *filter(None, [all_key(list(self.attributes))])]

    def features(self, x: Tensor) -> Tensor:
        """The 128-d features of images at the reader's size, or at a size that divides it: those are
        enlarged first by repeating pixels (chapter 06's cpu models draw at 32x32 for a reader of 64x64)."""
        size = self.image_shape[-1]
        if (
            x.dim() == 4
            and len(x)
            and x.shape[1] == 3
            and x.shape[-2] == x.shape[-1] < size
            and size % x.shape[-1] == 0
        ):
            x = F.interpolate(x, scale_factor=size // x.shape[-1], mode="nearest")
        check_images(x, self.image_shape)
        return self.body(x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.features(x)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """Predicted value indices of every image, one column per attribute (``[colour, shape, position]``
        on the scenes), int64 [N, len(attributes)] on the CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        rows = [
            torch.stack([logits.argmax(1) for logits in self(batch.to(device)).values()], 1).cpu()
            for batch in images.split(batch_size)
        ]
        self.train(was_training)
        return torch.cat(rows)


class AttributeLoss:
    """Cross-entropy summed over the attributes, skipping unknown targets, for :func:`fit` (chapter 06)."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        if y is None:
            raise ValueError("AttributeLoss needs targets: pass (images, attribute_targets(records)) batches.")
        terms = {}
        for column, (name, logits) in enumerate(model(x).items()):
            target = y[:, column]
            terms[f"{name}_loss"] = F.cross_entropy(logits.float(), target, ignore_index=UNKNOWN)
            known = target != UNKNOWN
            terms[f"{name}_accuracy"] = (logits.argmax(1)[known] == target[known]).float().mean()
        return {"loss": sum(terms[f"{name}_loss"] for name in model.heads), **terms}


def attribute_accuracy(reader: SceneReader, images: Tensor, targets: Tensor, batch_size: int = 500) -> dict[str, float]:
    """How often the reader sees the requested colour, shape and position (on real COCO: supercategory)
    (chapter 06).

    ``targets`` is int64 [N, 3] as :func:`attribute_targets` makes it (``-1`` entries are skipped), one
    column per attribute of the reader (:func:`reader_targets`). Returns ``{attribute: accuracy}`` plus
    ``"all three"``, the fraction of images (with all three known) right on every attribute (keys:
    ``reader.columns``). On real images this is the reader's own accuracy; on generated ones, how well
    the generator followed its caption.
    """
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} rows of targets.")
    names = list(reader.attributes)
    if targets.dim() != 2 or targets.shape[1] != len(names):
        raise ValueError(
            f"targets must have one column per attribute the reader reads ({', '.join(names)}), got shape "
            f"{tuple(targets.shape)}; make them with reader_targets(data) for the data the reader was trained on."
        )
    predicted = reader.read(images, batch_size)
    known = targets != UNKNOWN
    correct = (predicted == targets.cpu()) & known
    result = {name: float(correct[:, i].sum() / known[:, i].sum().clamp(min=1)) for i, name in enumerate(names)}
    complete = known.all(1)
    if all_key(names):
        result[all_key(names)] = float(correct[complete].all(1).float().mean()) if complete.any() else float("nan")
    return result


def summary_line(accuracy: dict[str, float], columns: Sequence[str] = (*ATTRIBUTES, "all three")) -> str:
    """One line to check a text-to-image run by: ``text -> image (reader): colour 0.xx, shape 0.xx,
    position 0.xx, all three 0.xx`` from :func:`attribute_accuracy` (chapters 06 and 07); ``columns``:
    which entries, ``reader.columns`` (``supercategory`` on real COCO)."""
    return "text -> image (reader): " + ", ".join(f"{name} {accuracy[name]:.2f}" for name in columns)


def same_attribute_groups(images: Tensor, targets: Tensor, k: int = 4, seed: int = 0) -> Tensor:
    """Groups of ``k`` real images whose main object has the same colour, shape and position (every
    column of ``targets``), as one caption would ask for: ``[G, k, C, H, W]``, one group per attribute
    triple with at least ``k``
    images (the first ``k`` of a seeded shuffle), for comparing with k samples of one caption (chapter 06)."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    members: dict[tuple[int, ...], list[int]] = {}
    for i in order.tolist():
        key = tuple(targets[i].tolist())
        if UNKNOWN not in key:
            members.setdefault(key, []).append(i)
    groups = [torch.tensor(index[:k]) for index in members.values() if len(index) >= k]
    if not groups:
        raise ValueError(f"No colour-shape-position triple has {k} images here; use a smaller k or more images.")
    return images[torch.stack(groups)]


def sample_diversity(
    samples: Tensor, images: Tensor, targets: Tensor, label: str, seed: int = 0, attributes: Sequence[str] = ATTRIBUTES
) -> dict[str, float]:
    """Does a model draw k different images for one caption, as real scenes with the caption's attributes
    differ? ``samples [G, k, C, H, W]`` (k samples of each of G captions) -> the mean pairwise RMS pixel
    difference of the samples (:func:`~course_lib.evaluation.metrics.mean_pairwise_distance`) and that
    of k real ``images`` sharing every attribute (``targets``, :func:`same_attribute_groups`; ``attributes``
    names them: colour, shape and position, or ``reader.attributes``), keyed by what they are; ``label``
    names the model (chapters 06 and 07)."""
    k = samples.shape[1]
    real = same_attribute_groups(images, targets, k=k, seed=seed)
    names = list(attributes)
    shared = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    return {
        f"{k} samples of one held-out caption ({label})": mean_pairwise_distance(samples),
        f"{k} real training images with the same {shared}": mean_pairwise_distance(real),
    }


def chance_accuracy(targets: Tensor, attributes: Sequence[str] = ATTRIBUTES) -> dict[str, float]:
    """What guessing the most frequent value of each attribute scores on ``targets`` (chapter 06);
    ``attributes`` names the columns (``reader.attributes`` on real COCO)."""
    names = list(attributes)
    if targets.shape[1] != len(names):
        raise ValueError(f"targets have {targets.shape[1]} columns but {len(names)} attributes are named: {names}")
    result = {}
    for i, name in enumerate(names):
        known = targets[:, i][targets[:, i] != UNKNOWN]
        result[name] = float(known.bincount().max() / len(known)) if len(known) else float("nan")
    return result


class AttributeCurve:
    """A :func:`~course_lib.core.train.fit` callback: after every epoch, decode fixed latent vectors under fixed
    conditions and record how often the reader sees the requested attributes (chapter 06).

    ``conditions`` [N, K] are what the model is asked to draw (e.g. caption embeddings) and ``targets``
    [N, 3] what those captions say (:func:`attribute_targets`). :attr:`rows` holds one dict per epoch
    (``pandas.DataFrame(curve.rows)``); it is saved in fit's checkpoints, so a resumed run keeps it.
    """

    def __init__(self, reader: SceneReader, conditions: Tensor, targets: Tensor, seed: int = 0) -> None:
        self.reader, self.conditions, self.targets, self.seed = reader, conditions, targets, seed
        self.rows: list[dict[str, float]] = []

    @torch.no_grad()
    def __call__(self, epoch: int, model: nn.Module) -> None:
        device = next(model.parameters()).device
        noise = torch.randn(len(self.conditions), model.latent_dim, generator=torch.Generator().manual_seed(self.seed))
        conditions = self.conditions.to(device)
        images = model.decode(model.sample_latent(conditions, noise=noise.to(device)), conditions)
        self.rows.append({"epoch": epoch, **attribute_accuracy(self.reader, images.float(), self.targets)})

    def state_dict(self) -> dict[str, list[dict[str, float]]]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, list[dict[str, float]]]) -> None:
        self.rows = list(state["rows"])


# ---------------------------------------------------------------- training once, cached
TRAINING = {"full": {"epochs": 5, "lr": 2e-3, "batch_size": 128}, "smoke": {"epochs": 1, "lr": 2e-3, "batch_size": 128}}


def reader_path(data: PreparedCaptions, smoke: bool) -> Path:
    """One cached reader per prepared data set (named by its folder) and image size (chapter 06)."""
    folder = Path(data.source).parent.name or "scenes"
    return cache_dir() / "scene_reader" / f"{folder}_{data.images.shape[1]}{'_smoke' if smoke else ''}.pt"


def load_or_train_scene_reader(
    train: PreparedCaptions,
    test: PreparedCaptions,
    smoke: bool = False,
    device: str | torch.device | None = None,
    verbose: bool = True,
) -> SceneReader:
    """The cached reader of ``train``'s scenes, trained first (fixed seed) if there is none (chapter 06).
    On real COCO it reads the supercategory (:func:`reader_attributes`).

    ``smoke=True`` trains one epoch only, labelled as such: for CI, not a measurement. The held-out
    accuracy per attribute on ``test`` is kept with the weights (``reader.test_accuracy``). The model
    comes back frozen, in eval mode.
    """
    if (train.attributes is None) != (test.attributes is None):
        raise ValueError("train and test must come from one prepared set: one has drawn attributes, the other not.")
    path = reader_path(train, smoke)
    device = choose_device(device)
    if path.exists():
        reader = _load(path, train.images.shape[1], reader_attributes(train))
    else:
        if verbose:
            what = "scene reader" if train.attributes is not None else "COCO supercategory reader"
            print(f"Training the {what} once (seed {READER_SEED}); later calls load it from {path}.")
        reader = _train(train, test, smoke, path, device, verbose)
    if verbose:
        accuracy = ", ".join(f"{name} {value:.1%}" for name, value in reader.test_accuracy.items())
        print(f"{reader.description}: held-out accuracy {accuracy}")
    return frozen(reader.to(device))


def _train(
    train: PreparedCaptions, test: PreparedCaptions, smoke: bool, path: Path, device: torch.device, verbose: bool
) -> SceneReader:
    settings = TRAINING["smoke" if smoke else "full"]
    train_images, _ = train.tensors()
    test_images, _ = test.tensors()
    attributes = reader_attributes(train)
    batches = TensorLoader(train_images, reader_targets(train), settings["batch_size"], shuffle=True, seed=READER_SEED)
    reader, _ = train_judge(
        lambda: SceneReader(train.images.shape[1], attributes=attributes),
        batches,
        AttributeLoss(),
        settings,
        path,
        device,
        READER_SEED,
        verbose=verbose,
    )
    reader.test_accuracy = attribute_accuracy(reader, test_images, reader_targets(test))
    kind = "scene reader" if train.attributes is not None else "COCO supercategory reader"
    kind = f"SMOKE {kind} (for CI only, not a real measurement)" if smoke else kind[0].upper() + kind[1:]
    images = "scenes" if train.attributes is not None else "COCO images"
    reader.description = f"{kind}, {settings['epochs']} epoch(s) on {len(train):,} {images}, tested on {len(test):,}"
    save_judge(path, reader, test_accuracy=reader.test_accuracy, description=reader.description)
    return reader


def _load(path: Path, image_size: int, attributes: dict[str, tuple[str, ...]]) -> SceneReader:
    reader = SceneReader(image_size, attributes=attributes)
    state = load_judge(path, reader)
    reader.test_accuracy, reader.description = dict(state["test_accuracy"]), str(state["description"])
    return reader
