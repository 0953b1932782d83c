"""The scene reader (chapter 06): targets from the recorded attributes, unknowns skipped, cached training."""

from __future__ import annotations

import pytest
import torch

from course_lib.core.io import CheckpointError
from course_lib.data import coco
from course_lib.data.scenes import write_scenes
from course_lib.evaluation.scene_reader import (
    ATTRIBUTES,
    UNKNOWN,
    AttributeLoss,
    SceneReader,
    attribute_accuracy,
    attribute_targets,
    chance_accuracy,
    load_or_train_scene_reader,
    reader_attributes,
    reader_path,
    reader_targets,
    sample_diversity,
    summary_line,
)


def record(colour: str, shape: str, position: str, greyscale: bool = False) -> dict:
    return {
        "greyscale": greyscale,
        "objects": [
            {"colour": colour, "shape": shape, "position": position},
            {"colour": "red", "shape": "star", "position": "top"},
        ],
    }


def test_targets_are_the_main_objects_and_unknown_where_nothing_can_be_seen():
    records = [
        record("blue", "heart", "top left"),
        record("red", "circle", "centre", greyscale=True),
        {"greyscale": False, "objects": []},
    ]
    targets = attribute_targets(records)
    assert targets.tolist() == [
        [ATTRIBUTES["colour"].index("blue"), ATTRIBUTES["shape"].index("heart"), 0],
        [UNKNOWN, ATTRIBUTES["shape"].index("circle"), ATTRIBUTES["position"].index("centre")],
        [UNKNOWN, UNKNOWN, UNKNOWN],
    ]


class Oracle(SceneReader):
    """Reads whatever it is told to, to test the metric without training."""

    def __init__(self, answers: torch.Tensor) -> None:
        super().__init__(image_size=16)
        self.answers = answers

    def read(self, images, batch_size=500):
        return self.answers


def test_accuracy_skips_unknown_targets_and_counts_all_three_only_where_all_are_known():
    targets = torch.tensor([[1, 2, 3], [UNKNOWN, 2, 3], [4, 5, 6], [1, 1, 1]])
    answers = torch.tensor([[1, 2, 3], [7, 2, 0], [4, 0, 6], [0, 1, 1]])
    result = attribute_accuracy(Oracle(answers), torch.zeros(4, 3, 16, 16), targets)
    assert result == {
        "colour": pytest.approx(2 / 3),
        "shape": pytest.approx(3 / 4),
        "position": pytest.approx(3 / 4),
        "all three": pytest.approx(1 / 3),
    }
    with pytest.raises(ValueError, match="4 images but 3"):
        attribute_accuracy(Oracle(answers), torch.zeros(4, 3, 16, 16), targets[:3])


def test_chance_is_the_majority_value_of_each_attribute():
    targets = torch.tensor([[0, 1, 2], [0, 3, 2], [1, 3, 2], [UNKNOWN, 3, 5]])
    assert chance_accuracy(targets) == {"colour": pytest.approx(2 / 3), "shape": 0.75, "position": 0.75}


def test_loss_ignores_unknown_targets():
    torch.manual_seed(0)
    reader = SceneReader(image_size=16)
    x = torch.rand(4, 3, 16, 16)
    known = torch.tensor([[1, 2, 3], [2, 3, 4], [0, 0, 0], [5, 5, 5]])
    masked = known.clone()
    masked[3] = UNKNOWN
    reader.eval()  # no dropout: the same logits in both calls
    full, partial = AttributeLoss()(reader, x, known), AttributeLoss()(reader, x, masked)
    logits = reader(x[:3])
    expected = sum(torch.nn.functional.cross_entropy(logits[name], known[:3, i]) for i, name in enumerate(ATTRIBUTES))
    assert torch.isfinite(full["loss"]) and torch.allclose(partial["loss"], expected, atol=1e-6)


def test_reader_reads_images_of_half_its_size_as_the_same_images_with_pixels_repeated():
    torch.manual_seed(0)
    reader = SceneReader(image_size=16).eval()
    small = torch.rand(3, 3, 8, 8)
    enlarged = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.equal(reader.features(small), reader.features(enlarged))
    with pytest.raises(ValueError, match=r"\[B, 3, 16, 16\]"):
        reader.features(torch.rand(3, 3, 12, 12))  # 12 does not divide 16: no silent resampling


def test_reader_is_trained_once_then_loaded_and_a_corrupt_cache_is_a_clear_error(capsys):
    folder = coco.synthetic_scenes(48, size=16, image_size=(64, 48), workers=1)
    train, test = coco.load_prepared(folder, "train", 16), coco.load_prepared(folder, "test", 16)
    reader = load_or_train_scene_reader(train, test, smoke=True, device="cpu")
    assert "Training the scene reader once" in capsys.readouterr().out
    assert not reader.training and not any(p.requires_grad for p in reader.parameters())
    assert set(reader.test_accuracy) == {*ATTRIBUTES, "all three"} and "SMOKE" in reader.description
    again = load_or_train_scene_reader(train, test, smoke=True, device="cpu")
    assert "Training" not in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(reader.state_dict().values(), again.state_dict().values()))
    reader_path(train, smoke=True).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_or_train_scene_reader(train, test, smoke=True, device="cpu")


def test_attribute_curve_records_one_row_per_epoch_and_survives_a_checkpoint():
    from course_lib.evaluation.scene_reader import AttributeCurve
    from course_lib.models import conv_cvae

    targets = torch.tensor([[1, 2, 3], [4, 5, 6]])
    curve = AttributeCurve(Oracle(torch.tensor([[1, 2, 3], [0, 5, 6]])), torch.randn(2, 8), targets)
    model = conv_cvae((3, 16, 16), condition_dim=8, latent_dim=4, channels=(4, 8))
    curve(1, model)
    curve(2, model)
    assert [row["epoch"] for row in curve.rows] == [1, 2] and curve.rows[0]["colour"] == 0.5
    restored = AttributeCurve(curve.reader, curve.conditions, targets)
    restored.load_state_dict(curve.state_dict())
    assert restored.rows == curve.rows


def test_only_captions_that_name_the_main_shape_can_be_checked_for_shape():
    from course_lib.data.scenes import names_main_shape

    assert names_main_shape("A small orange heart in the top right with a little yellow square.")
    assert not names_main_shape("An orange symbol at the top right of the picture with a small yellow square.")
    assert not names_main_shape("A blue round shape in the middle.")


@pytest.fixture
def coco_parts(tmp_path):
    """A split in COCO's format without drawn attributes, prepared as real COCO is."""
    root = write_scenes(tmp_path / "coco", "val2017", 48, (64, 48), greyscale_fraction=0.1)
    (root / "annotations" / "attributes_val2017.json").unlink()
    out = coco.prepare(root, "val2017", size=16, workers=1).out_dir
    return coco.load_prepared(out, "train", 16), coco.load_prepared(out, "test", 16)


def test_on_real_coco_the_reader_reads_the_supercategory(coco_parts, capsys):
    train, test = coco_parts
    assert train.kind == "coco" and train.attributes is None
    assert reader_attributes(train) == {"supercategory": train.supercategory_names}
    targets = reader_targets(test)
    assert targets.shape == (len(test), 1) and torch.equal(targets[:, 0], torch.from_numpy(test.supercategory))
    reader = load_or_train_scene_reader(train, test, smoke=True, device="cpu")
    assert "COCO supercategory reader" in capsys.readouterr().out
    assert reader.description.startswith("SMOKE COCO supercategory reader") and "COCO images" in reader.description
    assert reader.columns == ["supercategory"] and set(reader.test_accuracy) == {"supercategory"}
    assert reader.read(test.tensors()[0]).shape == (len(test), 1)
    again = load_or_train_scene_reader(train, test, smoke=True, device="cpu")  # loaded with the same heads
    assert list(again.attributes) == ["supercategory"] and "Training" not in capsys.readouterr().out
    accuracy = attribute_accuracy(reader, test.tensors()[0], targets)
    assert (
        summary_line(accuracy, reader.columns)
        == f"text -> image (reader): supercategory {accuracy['supercategory']:.2f}"
    )
    chance = chance_accuracy(targets, reader.attributes)
    assert chance["supercategory"] == pytest.approx(float(targets[:, 0].bincount().max()) / len(targets))


def test_targets_of_the_wrong_data_set_are_a_clear_error(coco_parts):
    train, test = coco_parts
    coco_reader = SceneReader(16, attributes=reader_attributes(train))
    scene_targets = torch.zeros(len(test), 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="reader_targets"):
        attribute_accuracy(coco_reader, test.tensors()[0], scene_targets)
    with pytest.raises(ValueError, match="3 columns but 1 attributes"):
        chance_accuracy(scene_targets, coco_reader.attributes)


def test_diversity_on_coco_compares_with_real_images_of_one_supercategory(coco_parts):
    train, _ = coco_parts
    images, targets = train.tensors()[0], reader_targets(train)
    samples = images[:6].view(3, 2, *images.shape[1:])
    result = sample_diversity(samples, images, targets, "model", attributes=reader_attributes(train))
    assert list(result) == [
        "2 samples of one held-out caption (model)",
        "2 real training images with the same supercategory",
    ]
    assert all(value > 0 for value in result.values())
