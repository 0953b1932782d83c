"""Chapter 04's metrics: the course classifier (loss, caching), FID/KID in a pluggable feature space,
the FID floors, conditional accuracy, and GeneratorEvaluation (the measuring helper chapters 04
and 06 share). FID tests use a tiny random-weight classifier; nothing here
needs the real data, Inception weights or the network."""

from __future__ import annotations

import urllib.error

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchmetrics.image.fid
from torch import nn

import course_lib.evaluation.classifier
import course_lib.evaluation.judges
from course_lib.core.io import CheckpointError
from course_lib.data.images import TensorLoader
from course_lib.evaluation.classifier import (
    ClassificationLoss,
    FashionClassifier,
    classifier_path,
    load_or_train_classifier,
)
from course_lib.evaluation.generators import (
    GeneratorEvaluation,
    class_judge,
    per_class_columns,
    reconstructions,
    without_per_class,
)
from course_lib.evaluation.metrics import (
    ClassifierFeatures,
    conditional_accuracy,
    feature_extractor,
    fid_floors,
    fid_kid,
    predict,
    reconstruction_metrics,
)
from course_lib.models import mlp_cvae


def object_images(n: int, seed: int) -> torch.Tensor:
    """Fashion-MNIST-like stand-ins: one bright rectangle of random size, place and brightness on black."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 28, 28)
    corners = torch.randint(2, 12, (n, 2), generator=generator)
    sizes = torch.randint(8, 15, (n, 2), generator=generator)
    brightness = 0.5 + 0.5 * torch.rand(n, generator=generator)
    for image, (row, col), (height, width), value in zip(images, corners.tolist(), sizes.tolist(), brightness):
        image[0, row : row + height, col : col + width] = value
    return images


@pytest.fixture(scope="module")
def tiny_classifier() -> FashionClassifier:
    torch.manual_seed(0)
    return FashionClassifier(channels=(4, 8)).eval()


class Logits(nn.Module):
    """A stand-in classifier: predicts the class c written as c/10 into each image's top-left pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot((x[:, 0, 0, 0] * 10).round().long(), 10).float() + 0 * self.dummy


def images_predicted_as(classes: list[int]) -> torch.Tensor:
    images = torch.zeros(len(classes), 1, 28, 28)
    images[:, 0, 0, 0] = torch.tensor(classes, dtype=torch.float32) / 10
    return images


# --------------------------------------------------------------------------- classifier


def test_classifier_shapes_and_features():
    model = FashionClassifier().eval()
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    assert model.features(x).shape == (3, model.num_features) == (3, 128)
    with pytest.raises(ValueError, match="image batch"):
        model(torch.rand(1, 28, 28))


def test_classification_loss_accuracy_and_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 2])  # the last one is wrong: accuracy 3/4
    terms = ClassificationLoss()(lambda x: logits, torch.zeros(4, 1, 28, 28), labels)
    assert float(terms["accuracy"]) == 0.75
    assert float(terms["loss"]) == pytest.approx(float(F.cross_entropy(logits, labels)))
    with pytest.raises(ValueError, match="labels"):
        ClassificationLoss()(lambda x: logits, torch.zeros(4, 1, 28, 28), None)


def test_classifier_paths_separate_smoke_from_full():
    assert classifier_path("smoke") != classifier_path("cpu")
    assert classifier_path("gpu") == classifier_path("cpu")  # same recipe, one file
    assert "smoke" in classifier_path("smoke").name


def test_classifier_is_trained_once_then_loaded_from_cache(fake_fashion_mnist, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    first = load_or_train_classifier("smoke", device="cpu", verbose=False)
    path = classifier_path("smoke")
    assert path.is_file() and not path.with_name(f"{path.stem}.training.pt").exists()
    assert "SMOKE" in first.description and 0.0 <= first.test_accuracy <= 1.0
    assert not first.training and not any(p.requires_grad for p in first.parameters())

    def no_training(*args, **kwargs):
        raise AssertionError("fit was called although a cached classifier exists")

    monkeypatch.setattr(course_lib.evaluation.judges, "fit", no_training)
    second = load_or_train_classifier("smoke", device="cpu", verbose=False)
    assert second.test_accuracy == first.test_accuracy and second.description == first.description
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    # "course" features follow the profile: the smoke profile uses the cached smoke classifier.
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert "SMOKE" in feature_extractor("course", "cpu", verbose=False).description


def test_corrupt_or_foreign_classifier_cache_raises(fake_fashion_mnist, monkeypatch):
    path = classifier_path("smoke")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_or_train_classifier("smoke", verbose=False)
    path.unlink()
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    load_or_train_classifier("smoke", device="cpu", verbose=False)
    path.replace(classifier_path("cpu"))  # a smoke classifier must never pass for the full one
    with pytest.raises(CheckpointError, match="smoke"):
        load_or_train_classifier("cpu", verbose=False)


# --------------------------------------------------------------------------- FID / KID


def test_identical_sets_have_zero_fid_and_kid(tiny_classifier):
    real = object_images(300, seed=1)
    same = fid_kid(real, real.clone(), tiny_classifier, batch_size=128, device="cpu", kid_subset_size=100)
    noise = fid_kid(
        real, torch.rand(300, 1, 28, 28), tiny_classifier, batch_size=128, device="cpu", kid_subset_size=100
    )
    assert noise["fid"] > 0 and noise["kid_mean"] > 0
    assert abs(same["fid"]) < 1e-4 * noise["fid"]  # only rounding error left
    # KID's subsets of two copies of one set share images, so it is near 0, not exactly 0.
    assert abs(same["kid_mean"]) < 1e-2 * noise["kid_mean"]


def test_blur_raises_fid_and_noise_raises_it_much_more(tiny_classifier):
    train, test = object_images(600, seed=1), object_images(300, seed=2)
    floors = fid_floors(train, test, tiny_classifier, batch_size=128, device="cpu", kid_subset_size=100)
    assert set(floors) == {"real train vs real test", "blurred test vs real test"}
    same_distribution, blurred = floors["real train vs real test"], floors["blurred test vs real test"]
    noise = fid_kid(
        test, torch.rand(300, 1, 28, 28), tiny_classifier, batch_size=128, device="cpu", kid_subset_size=100
    )
    assert blurred["fid"] > 3 * same_distribution["fid"] > 0
    assert blurred["kid_mean"] > 3 * same_distribution["kid_mean"]
    assert noise["fid"] > 2 * blurred["fid"]
    assert noise["fid"] > 20 * same_distribution["fid"]


def test_kid_is_repeatable_with_a_seed(tiny_classifier):
    a, b = object_images(200, seed=1), object_images(200, seed=2)
    runs = [fid_kid(a, b, tiny_classifier, device="cpu", kid_subset_size=50, kid_subsets=10) for _ in range(2)]
    assert runs[0] == runs[1]


def test_features_are_extracted_once_per_batch_for_fid_and_kid(tiny_classifier):
    calls = []
    extractor = ClassifierFeatures(tiny_classifier, 128, "counting")
    original = extractor.extract
    extractor.extract = lambda images: calls.append(len(images)) or original(images)
    fid_kid(object_images(100, 1), object_images(60, 2), extractor, batch_size=50, device="cpu")
    assert calls == [50, 50, 50, 10]


def test_fid_rejects_images_outside_unit_range(tiny_classifier):
    logits = torch.randn(10, 1, 28, 28) * 3
    with pytest.raises(ValueError, match="sigmoid"):
        fid_kid(object_images(10, 1), logits, tiny_classifier, device="cpu")
    with pytest.raises(ValueError, match="extractor"):
        fid_kid(object_images(10, 1), object_images(10, 2), "resnet", device="cpu")


def test_inception_without_weights_says_to_use_the_course_extractor(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchmetrics.image.fid.NoTrainInceptionV3, "__init__", offline)
    with pytest.raises(RuntimeError, match="extractor='course'") as error:
        fid_kid(object_images(10, 1), object_images(10, 2), "inception", device="cpu")
    assert "InceptionV3 weights" in str(error.value)


def test_inception_without_torch_fidelity_says_what_to_install(monkeypatch):
    def missing(self, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch_fidelity'")

    monkeypatch.setattr(torchmetrics.image.fid.NoTrainInceptionV3, "__init__", missing)
    with pytest.raises(RuntimeError, match="pip install torch-fidelity"):
        feature_extractor("inception", "cpu")


# --------------------------------------------------------------------------- conditional accuracy


def test_conditional_accuracy_overall_and_per_class():
    requested = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = [0, 0, 0, 5, 1, 0, 2, 2, 2, 2]  # one miss for class 0, one for class 1
    overall, per_class = conditional_accuracy(
        Logits(), images_predicted_as(predicted), requested, class_names=[f"c{i}" for i in range(10)], batch_size=3
    )
    assert overall == pytest.approx(0.8)
    expected = pd.Series([0.75, 0.5, 1.0], index=pd.Index(["c0", "c1", "c2"], name="requested class"), name="accuracy")
    pd.testing.assert_series_equal(per_class, expected)


def test_conditional_accuracy_without_names_and_all_wrong():
    overall, per_class = conditional_accuracy(Logits(), images_predicted_as([3, 3, 7]), torch.tensor([4, 9, 9]))
    assert overall == 0.0
    assert per_class.to_dict() == {4: 0.0, 9: 0.0}
    with pytest.raises(ValueError, match="requested labels"):
        conditional_accuracy(Logits(), images_predicted_as([3, 3]), torch.tensor([3]))


def test_predict_uses_eval_mode_and_restores_training_mode(tiny_classifier):
    model = FashionClassifier(channels=(4, 8)).train()
    x = object_images(8, 3)
    assert torch.equal(predict(model, x, batch_size=3), predict(model.eval(), x))
    model.train()
    predict(model, x)
    assert model.training


def test_clip_score_without_weights_is_a_clear_error_at_once(monkeypatch):
    import course_lib.text.encoders
    from course_lib.evaluation.metrics import clip_score
    from course_lib.text.encoders import WeightsNotFoundError

    monkeypatch.setattr(course_lib.text.encoders, "_hub_problem", lambda repo_id: "no network (test)")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # nothing in a local cache either
    with pytest.raises(WeightsNotFoundError, match="no network"):
        clip_score(torch.rand(2, 3, 32, 32), ["a red circle", "a blue star"])
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        clip_score(torch.rand(2, 3, 32, 32), ["a red circle"])


@pytest.fixture(scope="module")
def tiny_clip_folder(tmp_path_factory):
    """A random-weight CLIP (transformers) with a byte-level vocabulary, saved like a hub model: what
    torchmetrics' CLIPScore loads, without the network."""
    import json

    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny_clip")
    characters = sorted(ByteLevel.alphabet())
    vocab = {
        token: i
        for i, token in enumerate(characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"])
    }
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    special = dict(
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]
    )  # the text tower pools at the first end token
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=77, **special),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    with torch.no_grad():  # embeddings in a common positive cone: cosines > 0, which CLIP score does not clip to 0
        for projection in (model.visual_projection, model.text_projection):
            projection.weight.abs_()
        model.vision_model.post_layernorm.bias.fill_(0.5)
        model.text_model.final_layer_norm.bias.fill_(0.5)
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_score_loads_a_local_clip_and_matches_clip_itself(tiny_clip_folder):
    from transformers import CLIPModel, CLIPProcessor

    from course_lib.evaluation.metrics import clip_score

    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle", "a blue star at the top", "a green heart", "a small pink ring", "a cross"]
    score = clip_score(images, captions, model_name=str(tiny_clip_folder), batch_size=2)
    assert score == pytest.approx(clip_score(images, captions, model_name=str(tiny_clip_folder), batch_size=5))
    assert score != pytest.approx(clip_score(images, captions[::-1], model_name=str(tiny_clip_folder)))
    # The reference: CLIP's own forward pass, 100 * max(cos, 0) per pair, averaged (Hessel et al., 2021).
    model, processor = (
        CLIPModel.from_pretrained(tiny_clip_folder).eval(),
        CLIPProcessor.from_pretrained(tiny_clip_folder),
    )
    inputs = processor(
        text=captions, images=list((images * 255).round().to(torch.uint8)), return_tensors="pt", padding=True
    )
    with torch.no_grad():
        output = model(**inputs)
    expected = (100 * F.cosine_similarity(output.image_embeds, output.text_embeds).clamp(min=0)).mean()
    assert 0 < score <= 100
    assert score == pytest.approx(float(expected), rel=1e-4)


# --------------------------------------------------------------------------- GeneratorEvaluation (chapters 04, 06)

NAMES = [f"class {c}" for c in range(10)]


def test_class_judge_reports_overall_worst_and_per_class_accuracy():
    judge = class_judge(Logits(), NAMES)
    asked = torch.tensor([0, 0, 1, 1])
    columns = judge(images_predicted_as([0, 0, 1, 3]), asked)  # class 1 drawn right once of twice
    assert columns["conditional accuracy"] == pytest.approx(0.75)
    assert columns["worst class accuracy"] == pytest.approx(0.5)
    table = pd.DataFrame({"model": columns}).T
    per_class = per_class_columns(table)
    assert list(per_class.index) == ["class 0", "class 1"] and list(per_class.columns) == ["model"]
    assert per_class["model"].tolist() == pytest.approx([1.0, 0.5])
    assert list(without_per_class(table).columns) == ["conditional accuracy", "worst class accuracy"]


@pytest.fixture(scope="module")
def cvae_and_data():
    torch.manual_seed(0)
    images = torch.rand(40, 1, 28, 28)
    labels = torch.arange(40) % 10
    return mlp_cvae(latent_dim=4, hidden=(16,)).eval(), images, labels


def test_model_columns_read_the_history_and_the_reconstructions(cvae_and_data):
    model, images, labels = cvae_and_data
    torch.manual_seed(0)
    measure = GeneratorEvaluation(images, class_judge(FashionClassifier(channels=(4, 8)).eval(), NAMES), "course")
    loader = TensorLoader(images, labels, 16, shuffle=False)
    history = pd.DataFrame({"test_loss": [9.0, 7.5], "seconds": [1.0, 2.0]})
    columns = measure.model_columns(model, loader, history, labels)
    expected = reconstruction_metrics(model, loader)
    assert columns["held-out -ELBO (nats)"] == 7.5 and columns["train seconds"] == 3.0
    assert columns["held-out SSIM (recon.)"] == pytest.approx(expected["ssim"])
    assert columns["held-out MSE per image (recon.)"] == pytest.approx(expected["mse_per_pixel"] * 784)
    assert 0 <= columns["conditional accuracy (recon.)"] <= 1
    assert not any(name.startswith("accuracy: ") for name in columns)  # per-class columns are for samples
    hybrid = history.assign(test_neg_elbo=[8.0, 6.0])  # a hybrid objective logs the -ELBO apart
    assert measure.model_columns(model, loader, hybrid)["held-out -ELBO (nats)"] == 6.0
    assert reconstructions(model, loader).shape == images.shape


def test_samples_repeat_and_sample_columns_compare_them_with_the_held_out_images(cvae_and_data):
    model, images, labels = cvae_and_data
    torch.manual_seed(0)
    classifier = FashionClassifier(channels=(4, 8)).eval()
    measure = GeneratorEvaluation(images, class_judge(classifier, NAMES), classifier, seed=3)
    first, again = measure.samples(model, labels, batch_size=7), measure.samples(model, labels, batch_size=7)
    assert first.shape == images.shape and torch.equal(first, again)
    columns = measure.sample_columns(first, labels)
    assert {"conditional accuracy", "worst class accuracy", "FID", "KID", "accuracy: class 9"} <= set(columns)
    assert measure.sample_columns(images, labels)["FID"] == pytest.approx(0.0, abs=1e-3)  # real vs itself
    floors = measure.floors(torch.rand(60, 1, 28, 28))
    assert list(floors.index) == ["real train vs real test", "blurred test vs real test"]
