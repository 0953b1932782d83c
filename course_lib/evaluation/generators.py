"""One way to measure a conditional generator, shared by chapters 04 and 06.

A conditional VAE is judged on two things: the model itself (its held-out -ELBO and how well it
reconstructs held-out images) and what it draws (does an independent judge see what was asked for,
and are the images distributed like real ones, FID/KID). Chapter 04 asks for Fashion-MNIST classes
and its judge is the course classifier (:mod:`course_lib.evaluation.classifier`); chapter 06 asks for
captions and its judge is the scene reader (:mod:`course_lib.evaluation.scene_reader`). Both judges
also give the feature space FID/KID is measured in. :class:`GeneratorEvaluation` fixes the judge,
the held-out images and the seed once, so that every row of a chapter's table is measured the same
way and next to the same floors.

Imports course_lib.evaluation (metrics, classifier, scene_reader) and course_lib.models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from course_lib.evaluation.metrics import conditional_accuracy, fid_floors, fid_kid, reconstructions_and_metrics
from course_lib.evaluation.scene_reader import SceneReader, attribute_accuracy
from course_lib.models.cvae import conditioning

# (images, what was asked for) -> {column: accuracy}
Judge = Callable[[Tensor, Tensor], dict[str, float]]
PER_CLASS = "accuracy: "  # prefix of the per-class columns of class_judge


def class_judge(classifier: nn.Module, class_names: Sequence[str]) -> Judge:
    """A judge for class-conditional images (chapter 04): ``conditional accuracy`` overall,
    ``worst class accuracy``, and one ``accuracy: <class>`` column per requested class
    (:func:`per_class_columns` picks those out of a table)."""

    def judge(images: Tensor, labels: Tensor) -> dict[str, float]:
        overall, per_class = conditional_accuracy(classifier, images, labels, class_names)
        columns = {"conditional accuracy": overall, "worst class accuracy": float(per_class.min())}
        return columns | {f"{PER_CLASS}{name}": float(value) for name, value in per_class.items()}

    return judge


def attribute_judge(reader: SceneReader) -> Judge:
    """A judge for caption-conditional scenes (chapter 06): the reader's accuracy on colour, shape,
    position and all three, against the attributes of the images the captions describe."""
    return lambda images, targets: attribute_accuracy(reader, images, targets)


def per_class_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The ``accuracy: <class>`` columns of a table of :class:`GeneratorEvaluation` rows, as one
    column per row of the table and one row per class (chapter 04)."""
    columns = [name for name in table.columns if name.startswith(PER_CLASS)]
    per_class = table[columns].rename(columns=lambda name: name.removeprefix(PER_CLASS)).T
    per_class.index.name = "requested class"
    return per_class.astype(float)


def without_per_class(table: pd.DataFrame) -> pd.DataFrame:
    """A table of :class:`GeneratorEvaluation` rows without its per-class columns (chapter 04)."""
    return table.drop(columns=[name for name in table.columns if name.startswith(PER_CLASS)])


@dataclass
class GeneratorEvaluation:
    """Measures conditional generators against one judge and one set of held-out images (chapters 04, 06).

    ``real_test`` [N, C, H, W] in [0, 1] are the held-out images FID/KID compares samples with;
    ``judge`` says how often images show what was asked for (:func:`class_judge`,
    :func:`attribute_judge`); ``extractor`` is the feature space of FID/KID (the judge's network);
    ``seed`` fixes KID's subsets and the floors' training subset.
    """

    real_test: Tensor
    judge: Judge
    extractor: nn.Module | str
    device: torch.device | str | None = None
    seed: int = 0

    def floors(self, real_train: Tensor) -> pd.DataFrame:
        """FID/KID of real training images and of blurred held-out images against the held-out
        images: what a perfect generator and a slight blur score here (:func:`fid_floors`)."""
        floors = fid_floors(real_train, self.real_test, self.extractor, device=self.device, seed=self.seed)
        return pd.DataFrame(floors).T

    def model_columns(
        self,
        model: nn.Module,
        test_data: Iterable[tuple[Tensor, Tensor]],
        history: pd.DataFrame,
        targets: Tensor | None = None,
    ) -> dict[str, float]:
        """What depends on the model alone: the last epoch's held-out -ELBO (``test_neg_elbo`` when
        the objective was not the ELBO), SSIM and squared error per image of its held-out
        reconstructions, training seconds, and, given ``targets`` (what the judge should see in each
        test image, in ``test_data``'s order), the judge's columns on the reconstructions."""
        elbo = history["test_neg_elbo"] if "test_neg_elbo" in history else history["test_loss"]
        reconstructed, reconstruction = reconstructions_and_metrics(model, test_data)
        pixels = self.real_test[0].numel()
        columns = {
            "held-out -ELBO (nats)": float(elbo.iloc[-1]),
            "held-out SSIM (recon.)": reconstruction["ssim"],
            "held-out MSE per image (recon.)": reconstruction["mse_per_pixel"] * pixels,
            "train seconds": float(history["seconds"].sum()),
        }
        if targets is not None:
            judged = self.judge(reconstructed, targets)
            columns |= {f"{name} (recon.)": value for name, value in judged.items() if not name.startswith(PER_CLASS)}
        return columns

    def samples(self, model: nn.Module, conditions: Tensor, batch_size: int = 500) -> Tensor:
        """One sample per condition, z from the prior, on the CPU, drawn with ``seed`` batch by batch:
        the same samples on every call (chapter 06)."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        device = next(model.parameters()).device
        return torch.cat([model.sample(batch.to(device), generator).cpu() for batch in conditions.split(batch_size)])

    def sample_columns(self, samples: Tensor, targets: Tensor) -> dict[str, float]:
        """What is measured on generated images (one per row of ``targets``, what each was asked to
        show): the judge's columns, then FID and KID against ``real_test``."""
        distances = fid_kid(self.real_test, samples, self.extractor, device=self.device, seed=self.seed)
        return self.judge(samples, targets) | {"FID": distances["fid"], "KID": distances["kid_mean"]}


@torch.no_grad()
def reconstructions(model: nn.Module, data: Iterable[tuple[Tensor, Tensor]]) -> Tensor:
    """``model.reconstruct`` of every image of ``data``, in order, on the CPU (chapter 04)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    images = [model.reconstruct(x.to(device), *conditioning(model, y)).float().cpu() for x, y in data]
    model.train(was_training)
    return torch.cat(images)
