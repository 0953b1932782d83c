"""The synthetic scene generator writes COCO's format, deterministically, and its records match its pixels."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from pycocotools.coco import COCO

from course_lib.data.scenes import COLOURS, POSITIONS, SHAPES, SIZES, SUPERCATEGORIES, write_scenes

# pycocotools 2.0 calls numpy in a way numpy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

N, SIZE = 48, (160, 120)
POSITION_WORDS = {
    "top": ("top", "upper"),
    "bottom": ("bottom", "lower"),
    "left": ("left",),
    "right": ("right",),
    "centre": ("centre", "middle"),
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """48 scenes at 160x120 with the three defects and two greyscale images."""
    return write_scenes(
        tmp_path_factory.mktemp("scenes"), "val2017", N, SIZE, seed=3, greyscale_fraction=0.05, defects=True
    )


def read(root: Path, kind: str) -> dict:
    return json.loads((root / "annotations" / f"{kind}_val2017.json").read_text())


def captions_by_image(root: Path) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for ann in read(root, "captions")["annotations"]:
        found.setdefault(ann["image_id"], []).append(ann["caption"])
    return found


def normal_images(root: Path) -> list[dict]:
    """Attribute records of the colour images that have objects and a readable file."""
    attributes = read(root, "attributes")
    unreadable = set(attributes["defects"]["unreadable"])
    return [r for r in attributes["images"] if r["objects"] and not r["greyscale"] and r["image_id"] not in unreadable]


def test_files_follow_coco_layout_and_pycocotools_reads_them(scenes):
    instances = read(scenes, "instances")
    assert len(instances["images"]) == N
    for image in instances["images"]:
        assert image["file_name"] == f"{image['id']:012d}.jpg"
        assert (scenes / "val2017" / image["file_name"]).is_file()
        assert (image["width"], image["height"]) == SIZE
    assert {(c["name"], c["supercategory"]) for c in instances["categories"]} == set(SHAPES.items())
    assert set(SHAPES.values()) == set(SUPERCATEGORIES)
    coco = COCO(str(scenes / "annotations" / "instances_val2017.json"))
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann["iscrowd"] == 0 and len(ann["bbox"]) == 4 and isinstance(ann["segmentation"], list)
        mask = coco.annToMask(ann)
        assert abs(mask.sum() - ann["area"]) <= 1  # the recorded area is the polygon's rasterised area
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1


def test_every_image_has_five_or_six_captions_that_name_the_main_object(scenes):
    attributes = read(scenes, "attributes")
    captions = captions_by_image(scenes)
    no_captions = attributes["defects"]["no_captions"]
    assert set(captions) == {r["image_id"] for r in attributes["images"]} - set(no_captions)
    counts = [len(texts) for texts in captions.values()]
    assert min(counts) >= 5 and max(counts) <= 6 and 6 in counts
    for record in attributes["images"]:
        if record["image_id"] in no_captions or not record["objects"]:
            continue
        texts = captions[record["image_id"]]
        assert len(set(texts)) == len(texts)  # paraphrases, not copies
        main = record["objects"][0]
        assert all(main["colour"] in text for text in texts)
        for word in main["position"].split():
            assert all(any(w in text for w in POSITION_WORDS[word]) for text in texts), (word, texts)


def test_main_object_is_the_largest_and_others_are_small(scenes):
    counts = []
    for record in read(scenes, "attributes")["images"]:
        objects = record["objects"]
        if not objects:
            continue
        counts.append(len(objects) - 1)
        assert objects[0]["size"] in SIZES
        assert all(obj["area"] < objects[0]["area"] for obj in objects[1:])
        assert all(obj["size"] == "small" for obj in objects[1:])
        assert len({obj["position"] for obj in objects}) == len(objects)
    assert set(counts) == {0, 1, 2}


def test_colours_and_positions_agree_with_the_pixels(scenes):
    coco = COCO(str(scenes / "annotations" / "instances_val2017.json"))
    side = min(SIZE)
    offset = ((SIZE[0] - side) / 2, (SIZE[1] - side) / 2)
    records = normal_images(scenes)
    assert len(records) >= N - 6
    for record in records:
        main = record["objects"][0]
        ann = min(coco.loadAnns(coco.getAnnIds(imgIds=record["image_id"])), key=lambda a: a["id"])
        inside = np.asarray(Image.fromarray(coco.annToMask(ann) * 255).filter(ImageFilter.MinFilter(3))) > 0
        pixels = np.asarray(Image.open(scenes / "val2017" / record["file_name"]).convert("RGB"))[inside]
        median = np.median(pixels, axis=0)
        assert np.abs(median - main["rgb"]).max() < 20, record
        nearest = min(COLOURS, key=lambda name: np.linalg.norm(np.subtract(COLOURS[name], median)))
        assert nearest == main["colour"]
        x, y, w, h = main["bbox"]
        col, row = ((x + w / 2 - offset[0]) * 3 // side, (y + h / 2 - offset[1]) * 3 // side)
        assert POSITIONS[int(row * 3 + col)] == main["position"]


def test_greyscale_and_defective_images(scenes):
    attributes = read(scenes, "attributes")
    modes = {r["image_id"]: Image.open(scenes / "val2017" / r["file_name"]).mode for r in attributes["images"]}
    greyscale = {r["image_id"] for r in attributes["images"] if r["greyscale"]}
    assert len(greyscale) == 2 and {modes[i] for i in greyscale} == {"L"}
    assert {mode for i, mode in modes.items() if i not in greyscale} == {"RGB"}

    defects = attributes["defects"]
    assert all(len(ids) == 1 for ids in defects.values())
    with pytest.raises(OSError):
        Image.open(scenes / "val2017" / f"{defects['unreadable'][0]:012d}.jpg").load()
    assert defects["no_captions"][0] not in captions_by_image(scenes)
    empty = defects["no_instances"][0]
    assert not [a for a in read(scenes, "instances")["annotations"] if a["image_id"] == empty]
    background = next(r["background"] for r in attributes["images"] if r["image_id"] == empty)
    for text in captions_by_image(scenes)[empty]:
        assert background in text and not any(colour in text for colour in COLOURS)


def test_same_seed_same_files_whatever_the_workers(tmp_path):
    serial = write_scenes(tmp_path / "serial", n_images=64, image_size=(64, 48), seed=1)
    parallel = write_scenes(tmp_path / "parallel", n_images=64, image_size=(64, 48), seed=1, workers=2)
    other = write_scenes(tmp_path / "other", n_images=64, image_size=(64, 48), seed=2)
    for path in sorted((serial / "val2017").iterdir()) + sorted((serial / "annotations").iterdir()):
        relative = path.relative_to(serial)
        assert path.read_bytes() == (parallel / relative).read_bytes(), relative
    assert read(serial, "captions") != read(other, "captions")


def test_second_call_reuses_the_files(tmp_path, capsys):
    root = write_scenes(tmp_path, n_images=8, image_size=(64, 48), greyscale_fraction=0)
    first = next((root / "val2017").iterdir()).stat().st_mtime_ns
    capsys.readouterr()
    write_scenes(tmp_path, n_images=8, image_size=(64, 48), greyscale_fraction=0)
    assert next((root / "val2017").iterdir()).stat().st_mtime_ns == first
    assert capsys.readouterr().out == ""


def test_too_few_images_for_the_defects_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="too few"):
        write_scenes(tmp_path, n_images=3, image_size=(64, 48), defects=True)
