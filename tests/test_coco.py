"""The COCO loader and prepare step, run on synthetic scenes in COCO's format (and a hand-written COCO file)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from pycocotools.coco import COCO

from course_lib.core.io import DataNotFoundError
from course_lib.data import coco
from course_lib.data.download import default_coco_root
from course_lib.data.images import TensorLoader
from course_lib.data.scenes import COLOURS, SHAPES, write_scenes

# pycocotools 2.0 calls numpy in a way numpy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

N, SIZE = 48, (160, 120)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """48 scenes at 160x120: two greyscale, one truncated JPEG, one without captions, one without objects."""
    return write_scenes(
        tmp_path_factory.mktemp("scenes"), "val2017", N, SIZE, seed=5, greyscale_fraction=0.05, defects=True
    )


@pytest.fixture(scope="module")
def prepared(scenes, tmp_path_factory) -> tuple[Path, coco.PrepareSummary]:
    out = tmp_path_factory.mktemp("prepared")
    return out, coco.prepare(scenes, "val2017", out, size=64, seed=0, workers=2)


def attributes(root: Path) -> dict:
    return json.loads((root / "annotations" / "attributes_val2017.json").read_text())


def all_parts(out: Path) -> dict[str, coco.PreparedCaptions]:
    return {split: coco.load_prepared(out, split) for split in coco.SPLITS}


def test_all_captions_are_kept_and_labels_follow_the_largest_instance(scenes):
    annotations = coco.load_annotations(scenes, "val2017")
    source = COCO(str(scenes / "annotations" / "captions_val2017.json"))
    records = {r["image_id"]: r for r in attributes(scenes)["images"]}
    for image in annotations.images:
        expected = [ann["caption"] for ann in source.loadAnns(source.getAnnIds(imgIds=image.image_id))]
        assert list(image.captions) == expected and len(expected) >= 5
        objects = records[image.image_id]["objects"]
        assert image.supercategory == (SHAPES[objects[0]["shape"]] if objects else coco.NO_INSTANCE)
    assert annotations.supercategory_names == ("round", "angular", "symbol", "none")
    defects = attributes(scenes)["defects"]
    assert annotations.skipped["no captions"] == defects["no_captions"]
    assert annotations.without_instances == defects["no_instances"]


def write_coco(root: Path, images: list[int], captions: dict[int, list[str]], instances: list[tuple]) -> Path:
    """A minimal COCO split 'val2017'; ``instances`` are (id, image id, category id, area, iscrowd)."""
    (root / "annotations").mkdir(parents=True)
    image_list = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in images]
    categories = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 2, "name": "car", "supercategory": "vehicle"},
        {"id": 3, "name": "dog", "supercategory": "animal"},
    ]
    caption_anns = [
        {"id": 100 * i + k, "image_id": i, "caption": text}
        for i, texts in captions.items()
        for k, text in enumerate(texts)
    ]
    instance_anns = [
        {
            "id": a,
            "image_id": i,
            "category_id": c,
            "area": area,
            "iscrowd": crowd,
            "bbox": [0, 0, 1, 1],
            "segmentation": [[0, 0, 1, 0, 1, 1]],
        }
        for a, i, c, area, crowd in instances
    ]
    files = {
        "captions": {"images": image_list, "annotations": caption_anns},
        "instances": {"images": image_list, "annotations": instance_anns, "categories": categories},
    }
    for kind, content in files.items():
        (root / "annotations" / f"{kind}_val2017.json").write_text(json.dumps(content))
    return root


def test_rule_ignores_crowds_breaks_ties_by_id_and_handles_images_without_instances(tmp_path):
    root = write_coco(
        tmp_path,
        [1, 2, 3, 4],
        {1: ["a dog", "  "], 2: ["empty road"], 3: ["cars"]},
        [
            (10, 1, 1, 40.0, 0),
            (11, 1, 2, 900.0, 1),
            (12, 1, 3, 50.0, 0),
            (20, 3, 2, 30.0, 0),
            (19, 3, 1, 30.0, 0),
            (40, 4, 3, 99.0, 0),
        ],
    )
    found = coco.load_annotations(root, "val2017")
    labels = {image.image_id: image.supercategory for image in found.images}
    assert labels == {1: "animal", 2: "none", 3: "person"}  # 4 has no caption: no label at all
    assert found.images[0].captions == ("a dog",)  # blank captions are dropped
    assert found.skipped["no captions"] == [4] and found.without_instances == [2]
    assert found.supercategory_names == ("person", "vehicle", "animal", "none")

    excluded = coco.load_annotations(root, "val2017", keep_without_instances=False)
    assert [image.image_id for image in excluded.images] == [1, 3]
    assert excluded.skipped["no instances"] == [2]


def test_missing_annotation_file_says_how_to_get_it(tmp_path):
    for call in (lambda: coco.load_annotations(tmp_path, "val2017"), lambda: coco.prepare(tmp_path, "val2017")):
        with pytest.raises(DataNotFoundError, match="captions_val2017.json") as error:
            call()
        assert "get_coco.py" in str(error.value) and "make_scenes.py" in str(error.value)


def test_prepared_images_are_uint8_squares_split_into_disjoint_seeded_parts(prepared, scenes):
    out, summary = prepared
    parts = all_parts(out)
    n = N - 2  # one without captions, one unreadable
    assert summary.n_images == n and sum(len(part) for part in parts.values()) == n
    assert summary.split_sizes == {"train": len(parts["train"]), "val": len(parts["val"]), "test": len(parts["test"])}
    assert abs(len(parts["val"]) - 0.1 * (n + 1)) <= 1 and abs(len(parts["test"]) - 0.1 * (n + 1)) <= 1
    ids = [set(part.image_ids.tolist()) for part in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for part in parts.values():
        assert isinstance(part.images, np.memmap) and part.images.dtype == np.uint8
        assert part.images.shape == (len(part), 64, 64, 3)
        assert len(part.captions) == len(part.supercategory) == len(part.attributes) == len(part)
    pixels = np.asarray(parts["train"].images)
    assert pixels.min() < 60 and pixels.max() > 200 and pixels.std() > 20

    again = coco.split_indices(n + 1, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, coco.split_indices(n + 1, seed=0)))
    assert not np.array_equal(again[0], coco.split_indices(n + 1, seed=1)[0])


def test_greyscale_jpegs_become_three_equal_channels(prepared, scenes):
    out, _ = prepared
    greyscale = {r["image_id"] for r in attributes(scenes)["images"] if r["greyscale"]}
    found = 0
    for part in all_parts(out).values():
        for row, image_id in enumerate(part.image_ids):
            if image_id in greyscale:
                image = np.asarray(part.images[row])
                assert image.shape == (64, 64, 3) and (image == image[..., :1]).all()
                found += 1
    assert found == len(greyscale) == 2


def test_unreadable_jpeg_and_image_without_captions_are_skipped_and_reported(prepared, scenes, capsys):
    out, summary = prepared
    defects = attributes(scenes)["defects"]
    assert summary.skipped["unreadable"] == defects["unreadable"]
    assert summary.skipped["no captions"] == defects["no_captions"]
    assert "truncated" in summary.errors[defects["unreadable"][0]]
    kept = set().union(*(part.image_ids.tolist() for part in all_parts(out).values()))
    assert not kept & set(defects["unreadable"] + defects["no_captions"])
    assert summary.labelled_none == 1
    text = str(summary)
    assert "skipped 1 (unreadable)" in text and "skipped 1 (no captions)" in text and "images/s" in text


def test_second_prepare_reuses_the_output_and_a_new_seed_redoes_it(prepared, scenes, tmp_path, capsys):
    out, _ = prepared
    images = out / "images_64.npy"
    written = images.stat().st_mtime_ns
    again = coco.prepare(scenes, "val2017", out, size=64, seed=0, workers=2)
    assert again.reused and images.stat().st_mtime_ns == written
    assert "reused" in capsys.readouterr().out
    coco.prepare(scenes, "val2017", tmp_path, size=64, seed=0, workers=1)
    resplit = coco.prepare(scenes, "val2017", tmp_path, size=64, seed=1, workers=1)
    assert not resplit.reused
    assert coco.load_prepared(tmp_path, "val").image_ids.tolist() != coco.load_prepared(out, "val").image_ids.tolist()


def test_a_reused_set_is_found_where_it_is_now_not_where_a_link_once_led(scenes, tmp_path):
    link = tmp_path / "link"  # e.g. a dry run's temporary cache linking to the real data folder
    link.symlink_to(scenes, target_is_directory=True)
    first = coco.prepare(link, "val2017", size=64, seed=0, workers=1)
    assert first.out_dir == str(coco.prepared_dir(link, "val2017"))
    link.unlink()
    again = coco.prepare(scenes, "val2017", size=64, seed=0, workers=1)
    assert again.reused and again.out_dir == str(coco.prepared_dir(scenes, "val2017"))


@pytest.mark.parametrize("damaged", ["meta_64.json", "images_64.npy"])
def test_a_damaged_prepared_set_is_prepared_again_with_a_note(scenes, tmp_path, capsys, damaged):
    coco.prepare(scenes, "val2017", tmp_path, size=64, seed=0, workers=1)
    (tmp_path / damaged).write_bytes(b"{ half")  # a full disk or a killed copy
    again = coco.prepare(scenes, "val2017", tmp_path, size=64, seed=0, workers=1)
    assert not again.reused and "is damaged" in capsys.readouterr().out
    assert len(coco.load_prepared(tmp_path, "val").image_ids) > 0


def test_an_interrupted_prepare_leaves_nothing_that_looks_complete(scenes, tmp_path, monkeypatch):
    def interrupted(paths, size):
        raise KeyboardInterrupt

    monkeypatch.setattr(coco, "_load_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        coco.prepare(scenes, "val2017", tmp_path, workers=1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataNotFoundError, match="prepare_coco.py"):
        coco.load_prepared(tmp_path)


def test_tensors_feed_the_tensor_loader(prepared):
    out, _ = prepared
    part = coco.load_prepared(out, "train")
    images, labels = part.tensors()
    assert images.shape == (len(part), 3, 64, 64) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and images.max() > 0.8
    assert torch.equal(images[0], torch.from_numpy(np.array(part.images[0])).permute(2, 0, 1).float() / 255)
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(len(part.supercategory_names)))
    batch, batch_labels = next(iter(TensorLoader(images, labels, batch_size=8)))
    assert batch.shape == (8, 3, 64, 64) and batch_labels.shape == (8,)


def test_prepared_pixels_show_the_recorded_colour_of_the_main_object(prepared, scenes):
    out, _ = prepared
    instances = COCO(str(scenes / "annotations" / "instances_val2017.json"))
    checked = 0
    for part in all_parts(out).values():
        assert part.main_object("colour") == [
            r["objects"][0]["colour"] if r["objects"] else "none" for r in part.attributes
        ]
        for row, record in enumerate(part.attributes):
            if record["greyscale"] or not record["objects"]:
                continue
            ann = min(instances.loadAnns(instances.getAnnIds(imgIds=record["image_id"])), key=lambda a: a["id"])
            mask = Image.fromarray(instances.annToMask(ann) * 255).filter(ImageFilter.MinFilter(5))
            inside = np.asarray(ImageOps.fit(mask, (64, 64), Image.Resampling.BILINEAR)) > 250
            median = np.median(np.asarray(part.images[row])[inside], axis=0)
            nearest = min(COLOURS, key=lambda name: np.linalg.norm(np.subtract(COLOURS[name], median)))
            assert nearest == record["objects"][0]["colour"], record
            checked += 1
    assert checked >= N - 6


def test_wrong_arguments_are_clear_errors(prepared, scenes, tmp_path):
    out, _ = prepared
    with pytest.raises(ValueError, match="train, val, test"):
        coco.load_prepared(out, "validation")
    with pytest.raises(ValueError, match="sum to 1"):
        coco.prepare(scenes, "val2017", tmp_path, fractions=(0.8, 0.3, 0.1))
    broken = write_scenes(tmp_path / "no_images", n_images=4, image_size=(64, 48), greyscale_fraction=0)
    for jpeg in (broken / "val2017").iterdir():
        jpeg.unlink()
    with pytest.raises(DataNotFoundError, match="None of the 4 images"):
        coco.prepare(broken, "val2017", workers=1)


def test_synthetic_scenes_are_made_once_and_caption_data_prefers_real_coco(isolated_environment, capsys):
    first = coco.synthetic_scenes(24, size=32, image_size=(64, 48), workers=1)
    assert first.is_relative_to(isolated_environment) and (first / "images_32.npy").is_file()
    written = (first / "images_32.npy").stat().st_mtime_ns
    capsys.readouterr()
    choice = coco.caption_data(size=32, n_scenes=24, scene_size=(64, 48))
    assert choice.kind == "scenes" and choice.path == first and "No prepared COCO" in choice.description
    assert (first / "images_32.npy").stat().st_mtime_ns == written and "reused" in capsys.readouterr().out

    # A COCO-format split without attributes is what real COCO looks like to the loader.
    root = write_scenes(default_coco_root(), "val2017", 12, (64, 48), greyscale_fraction=0)
    (root / "annotations" / "attributes_val2017.json").unlink()
    coco.prepare(root, "val2017", size=32, workers=1)
    choice = coco.caption_data(size=32, n_scenes=24, scene_size=(64, 48))
    assert choice.kind == "coco" and choice.path == coco.prepared_dir(root, "val2017")
    part = coco.load_prepared(choice.path, "train", size=32)
    assert part.kind == "coco" and part.attributes is None
    with pytest.raises(ValueError, match="Only synthetic scenes"):
        part.main_object("colour")
    # COCO prepared at another size than the chapter reads: say so, instead of drawing scenes
    with pytest.raises(DataNotFoundError, match=r"prepared at 32x32, but this chapter reads 64x64.*--size 64"):
        coco.caption_data(size=64, n_scenes=24, scene_size=(64, 48))


def run_script(name: str, argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location(name, ROOT / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_command_line_scripts(tmp_path, capsys):
    assert run_script("make_scenes", [str(tmp_path), "--n", "10", "--image-size", "64x48", "--workers", "1"]) == 0
    assert run_script("prepare_coco", ["--root", str(tmp_path), "--size", "128", "--workers", "1"]) == 0
    assert coco.load_prepared(tmp_path / "prepared" / "val2017", "train", size=128).images.shape[1:] == (128, 128, 3)
    assert "prepared: 10 images" in capsys.readouterr().out
    assert run_script("prepare_coco", ["--root", str(tmp_path / "missing")]) == 1
    assert "get_coco.py" in capsys.readouterr().err
