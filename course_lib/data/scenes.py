"""Synthetic scenes written in COCO's own on-disk format, for offline runs and tests (chapter 06).

Real COCO needs the network. Offline, the course draws a small data set that looks to the code exactly
like COCO: ``root/{split}/{image_id:012d}.jpg`` plus ``root/annotations/captions_{split}.json`` and
``instances_{split}.json`` (categories with supercategories, boxes, polygon segmentations, areas).
It goes through the same pycocotools loader and prepare step (:mod:`course_lib.data.coco`) as real COCO.

Every image shows one main object (always the largest, by area) and 0-2 smaller ones: filled shapes
(:data:`SHAPES`, grouped into :data:`SUPERCATEGORIES`) in named colours (:data:`COLOURS`), placed in a
3x3 grid (:data:`POSITIONS`) on a light or dark, noisy background. Five or six paraphrased captions
describe the main object's colour, shape (or supercategory) and position, and often the smaller ones.
Objects are laid out inside the centred square that prepare's centre crop keeps, so the position
words stay true in the 64x64 images. What was drawn is recorded in ``attributes_{split}.json``, so a
generated image can be checked against its caption.

Imports course_lib.core (io) only.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from course_lib.core.io import write_json_atomic

SCENES_VERSION = 1  # part of every cache key: bump it when the drawing or the captions change

SHAPES: dict[str, str] = {  # shape -> supercategory
    "circle": "round",
    "ring": "round",
    "square": "angular",
    "triangle": "angular",
    "diamond": "angular",
    "star": "symbol",
    "cross": "symbol",
    "heart": "symbol",
}
SUPERCATEGORIES = ("round", "angular", "symbol")
COLOURS: dict[str, tuple[int, int, int]] = {  # hues about 45 degrees apart, all saturated
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 30),
    "green": (35, 160, 60),
    "cyan": (30, 190, 205),
    "blue": (35, 75, 220),
    "purple": (135, 55, 190),
    "pink": (240, 110, 185),
}
POSITIONS = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")
SIZES = ("small", "large")

# Object diameters as fractions of the layout square (the image's shorter side). At most 0.54: a larger
# object could not be centred inside a corner cell and its position word would be wrong.
MAIN_DIAMETER = {"large": (0.44, 0.54), "small": (0.27, 0.33)}
SECONDARY_DIAMETER = (0.14, 0.2)
MAX_SECONDARY_AREA = 0.6  # a smaller object covers at most this fraction of the main object's area
N_SECONDARY_PROBABILITIES = (0.5, 0.3, 0.2)  # 0, 1 or 2 smaller objects
COLOUR_JITTER = 12  # per channel, so a colour name covers a small cloud of RGB values


def _regular(n: int) -> np.ndarray:
    """``n`` points on the unit circle, the first at the top."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False) - np.pi / 2
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _ring() -> np.ndarray:
    # One "keyhole" polygon (outer circle, then the inner one backwards): COCO polygons have no holes.
    angles = np.linspace(0, 2 * np.pi, 49)
    outer = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.concatenate([outer, 0.55 * outer[::-1]])


def _star() -> np.ndarray:
    points = _regular(10)
    points[1::2] *= 0.45
    return points


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


def _centred(points: np.ndarray) -> np.ndarray:
    """Move the bounding box's centre to the origin and scale its longer side to 2."""
    low, high = points.min(0), points.max(0)
    return (points - (low + high) / 2) * 2 / (high - low).max()


# Outlines in unit coordinates (x right, y down), their boxes centred on 0 with the longer side 2, so
# an object's box centre is where it was placed and decides its position word.
OUTLINES: dict[str, np.ndarray] = {
    name: _centred(points)
    for name, points in {
        "circle": _regular(48),
        "ring": _ring(),
        "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]),
        "triangle": np.array([[0.0, -0.95], [1.0, 0.8], [-1.0, 0.8]]),
        "diamond": np.array([[0.0, -1.0], [0.75, 0.0], [0.0, 1.0], [-0.75, 0.0]]),
        "star": _star(),
        "cross": np.array(
            [
                [-0.3, -1],
                [0.3, -1],
                [0.3, -0.3],
                [1, -0.3],
                [1, 0.3],
                [0.3, 0.3],
                [0.3, 1],
                [-0.3, 1],
                [-0.3, 0.3],
                [-1, 0.3],
                [-1, -0.3],
                [-0.3, -0.3],
            ]
        ),
        "heart": _heart(),
    }.items()
}

SHAPE_WORDS = {
    "circle": ("circle", "disc"),
    "ring": ("ring", "donut"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "heart": ("heart",),
}
SUPERCATEGORY_WORDS = {"round": "round shape", "angular": "angular shape", "symbol": "symbol"}
SIZE_WORDS = {"large": ("large", "big"), "small": ("small", "little")}


def _position_phrases(position: str) -> tuple[str, ...]:
    """Paraphrases of a grid position: ``"top left"`` -> ``"in the upper left corner"``, ..."""
    if position == "centre":
        return ("in the centre", "in the middle", "in the middle of the picture", "at the centre of the image")
    if position in ("left", "right"):
        return (
            f"on the {position}",
            f"on the {position} side",
            f"at the {position} of the picture",
            f"near the {position} edge",
        )
    if position in ("top", "bottom"):
        return (
            f"at the {position}",
            f"at the {position} of the picture",
            f"near the {position} edge",
            f"in the {position} middle",
        )
    vertical, horizontal = position.split()
    upper = "upper" if vertical == "top" else "lower"
    return (
        f"in the {position}",
        f"in the {position} corner",
        f"near the {upper} {horizontal} corner",
        f"at the {position} of the picture",
    )


def _pick(rng: np.random.Generator, options) -> str:
    return options[rng.integers(len(options))]


def _secondary_clause(rng: np.random.Generator, others: list[dict]) -> str:
    def phrase(obj: dict, with_position: bool) -> str:
        text = f"a {_pick(rng, SIZE_WORDS['small'])} {obj['colour']} {_pick(rng, SHAPE_WORDS[obj['shape']])}"
        return f"{text} {_pick(rng, _position_phrases(obj['position']))}" if with_position else text

    with_position = bool(rng.integers(2))
    joined = " and ".join(phrase(obj, with_position) for obj in others)
    return f" {_pick(rng, ('next to', 'with', 'and'))} {joined}"


CAPTION_TEMPLATES = (
    "a {size} {colour} {shape} {where}{others}",
    "a {colour} {super} {where}{others}",
    "there is a {colour} {shape} {where}{others}",
    "a {shape} coloured {colour} {where}, on a {background} background",
    "{where}, a {size} {colour} {shape}{others}",
    "a {size} {shape} in {colour} {where}{others}",
    "a picture of a {colour} {shape} {where} on a {background} background",
)
EMPTY_CAPTIONS = (
    "an empty {background} background",
    "nothing but a plain {background} background",
    "a {background} picture with no shapes",
    "a blank {background} image",
    "there is nothing on this {background} background",
)


# Shape and colour words a student may well type that the scenes never draw (chapter 06, exercise 6.1).
UNSEEN_SHAPES = (
    "hexagon",
    "pentagon",
    "octagon",
    "oval",
    "ellipse",
    "rectangle",
    "crescent",
    "moon",
    "arrow",
    "spiral",
)
UNSEEN_COLOURS = ("black", "white", "grey", "gray", "brown", "violet", "magenta", "turquoise", "gold", "silver")


def unseen_words(caption: str) -> list[str]:
    """The shape and colour words of ``caption`` that no scene caption uses ("hexagon", "brown"): a
    model trained on the scenes has never seen them drawn, so it can only guess from the words it
    has seen (chapter 06, exercise 6.1). A message names them and the words the scenes do use."""
    words = set(re.findall(r"[a-z]+", caption.lower()))
    return [word for word in (*UNSEEN_SHAPES, *UNSEEN_COLOURS) if word in words]


def unseen_words_message(caption: str) -> str | None:
    """What :func:`unseen_words` finds in ``caption``, said for a student, or ``None`` (chapter 06)."""
    found = unseen_words(caption)
    if not found:
        return None
    return (
        f"{caption!r}: the scenes never draw {', '.join(map(repr, found))}, so the model has not seen "
        f"{'it' if len(found) == 1 else 'them'} in training and can only guess from similar words. "
        f"The scenes' shapes: {', '.join(SHAPES)}; colours: {', '.join(COLOURS)}."
    )


def names_main_shape(caption: str) -> bool:
    """Whether a scene caption names its main object's shape ("a red heart"), not only its
    supercategory ("a red symbol"): only such captions can be checked for shape (chapter 06)."""
    words = caption.lower()
    return not any(re.search(rf"\b{phrase}\b", words) for phrase in SUPERCATEGORY_WORDS.values())


def captions_for(scene: dict, rng: np.random.Generator) -> list[str]:
    """Five or six different captions of a scene, each naming the main object's colour and position
    (chapter 06)."""
    if not scene["objects"]:
        return [text.format(background=scene["background"]).capitalize() + "." for text in EMPTY_CAPTIONS]
    main, others = scene["objects"][0], scene["objects"][1:]
    n_captions = 6 if rng.random() < 0.2 else 5
    captions = []
    for template in rng.choice(CAPTION_TEMPLATES, size=n_captions, replace=False):
        caption = template.format(
            size=_pick(rng, SIZE_WORDS[main["size"]]),
            colour=main["colour"],
            shape=_pick(rng, SHAPE_WORDS[main["shape"]]),
            super=SUPERCATEGORY_WORDS[main["supercategory"]],
            where=_pick(rng, _position_phrases(main["position"])),
            background=scene["background"],
            # like COCO's annotators, some captions leave the smaller objects out
            others=_secondary_clause(rng, others) if others and rng.random() < 0.6 else "",
        )
        caption = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", caption)  # "a orange" -> "an orange"
        captions.append(caption[0].upper() + caption[1:] + ".")
    return captions


def _polygon_area(polygon: np.ndarray, width: int, height: int) -> float:
    """Pixel area of a polygon as COCO computes it (pycocotools rasterises the segmentation)."""
    rles = mask_utils.frPyObjects([polygon.ravel().tolist()], height, width)
    return float(mask_utils.area(mask_utils.merge(rles)))


def _centre_in_cell(rng: np.random.Generator, cell: int, radius: float, side: float) -> np.ndarray:
    """A centre inside grid cell ``cell`` (row-major) of a square of ``side``, keeping the object inside."""
    row, col = divmod(cell, 3)
    third, pad = side / 3, 0.02 * side
    centre = []
    for index in (col, row):
        low = max(index * third + 0.12 * third, radius + pad)
        high = min((index + 1) * third - 0.12 * third, side - radius - pad)
        centre.append(rng.uniform(low, high))
    return np.array(centre)


def _overlaps(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """Whether two [x0, y0, x1, y1] boxes come closer than ``gap``."""
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


def _make_object(
    rng: np.random.Generator,
    shape: str,
    colour: str,
    size: str,
    cell: int,
    diameter: float,
    side: float,
    offset: np.ndarray,
) -> dict:
    radius = diameter * side / 2
    # Rounded as written to the segmentation, so drawing, area and annotation use the same polygon.
    polygon = (OUTLINES[shape] * radius + offset + _centre_in_cell(rng, cell, radius, side)).round(2)
    rgb = np.clip(np.array(COLOURS[colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
    return {
        "shape": shape,
        "supercategory": SHAPES[shape],
        "colour": colour,
        "rgb": rgb.tolist(),
        "size": size,
        "position": POSITIONS[cell],
        "polygon": polygon,
    }


def sample_scene(rng: np.random.Generator, width: int, height: int, empty: bool = False) -> dict:
    """Draw the attributes of one scene: background, main object first, then 0-2 smaller ones (chapter 06)."""
    side = min(width, height)
    offset = np.array([(width - side) / 2, (height - side) / 2])  # the square that a centre crop keeps
    light = bool(rng.integers(2))
    level = rng.uniform(185, 235) if light else rng.uniform(25, 70)
    scene = {
        "background": "light" if light else "dark",
        "background_rgb": (level + rng.uniform(-12, 12, 3)).round().tolist(),
        "objects": [],
    }
    if empty:
        return scene

    shapes, colours = list(SHAPES), list(COLOURS)
    size = "large" if rng.random() < 0.65 else "small"
    main = _make_object(
        rng,
        _pick(rng, shapes),
        _pick(rng, colours),
        size,
        int(rng.integers(9)),
        rng.uniform(*MAIN_DIAMETER[size]),
        side,
        offset,
    )
    main["area"] = _polygon_area(main["polygon"], width, height)
    scene["objects"].append(main)
    n_secondary = rng.choice(3, p=N_SECONDARY_PROBABILITIES)
    free_cells = [cell for cell in rng.permutation(9) if POSITIONS[cell] != main["position"]]
    for cell in free_cells:
        if len(scene["objects"]) > n_secondary:
            break
        colour = _pick(rng, [c for c in colours if c != main["colour"]])
        obj = _make_object(
            rng, _pick(rng, shapes), colour, "small", int(cell), rng.uniform(*SECONDARY_DIAMETER), side, offset
        )
        obj["area"] = _polygon_area(obj["polygon"], width, height)
        if obj["area"] > MAX_SECONDARY_AREA * main["area"]:  # a small square can outgrow a small star
            continue
        box = np.concatenate([obj["polygon"].min(0), obj["polygon"].max(0)])
        if any(
            _overlaps(box, np.concatenate([o["polygon"].min(0), o["polygon"].max(0)]), 0.03 * side)
            for o in scene["objects"]
        ):
            continue
        scene["objects"].append(obj)
    return scene


def render(scene: dict, width: int, height: int, rng: np.random.Generator, greyscale: bool = False) -> Image.Image:
    """Paint a scene: tinted background with a gentle gradient and noise, then the filled polygons
    (chapter 06)."""
    slope = 12 * rng.normal(size=2).astype(np.float32)
    # Built as rows of width*3 values with one in-place clip: broadcasting over a last axis of 3 and
    # fresh temporaries made this ten times slower at 640x480.
    row = np.repeat(slope[0] * np.linspace(-0.5, 0.5, width, dtype=np.float32), 3) + np.tile(
        np.asarray(scene["background_rgb"], np.float32) - 8, width
    )
    base = row + slope[1] * np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    base = np.clip(base, 0, 240, out=base).astype(np.uint8).reshape(height, width, 3)
    # Uniform noise in [0, 15] from raw random bytes, added in uint8 (base <= 240 cannot overflow):
    # a tenth of the cost of Gaussian noise in floating point.
    base += np.frombuffer(rng.bytes(height * width * 3), np.uint8).reshape(height, width, 3) >> 4
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene["objects"]:
        draw.polygon([tuple(point) for point in obj["polygon"]], fill=tuple(obj["rgb"]))
    return image.convert("L") if greyscale else image


def _render_one(
    item: tuple[int, int, str], folder: Path, width: int, height: int, seed: int, quality: int
) -> tuple[dict, list[str]]:
    """Draw, save and describe one image; ``item`` is (index, image id, "" | "greyscale" | "no_instances")."""
    index, image_id, kind = item
    rng = np.random.default_rng([seed, index])  # per image, so the result does not depend on workers
    scene = sample_scene(rng, width, height, empty=kind == "no_instances")
    file_name = f"{image_id:012d}.jpg"
    render(scene, width, height, rng, greyscale=kind == "greyscale").save(folder / file_name, quality=quality)
    scene.update(image_id=image_id, file_name=file_name, greyscale=kind == "greyscale")
    return scene, captions_for(scene, rng)


def _plan(n_images: int, seed: int, greyscale_fraction: float, defects: bool) -> tuple[list[int], dict[str, list[int]]]:
    """Sparse, sorted image ids (like COCO's) and which indices get a special treatment."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 10 * n_images + 1), size=n_images, replace=False)).tolist()
    n_grey = max(1, round(greyscale_fraction * n_images)) if greyscale_fraction > 0 else 0
    n_defects = 3 if defects else 0
    if n_grey + n_defects > n_images:
        raise ValueError(
            f"{n_images} images are too few for {n_grey} greyscale and {n_defects} defective "
            "images: ask for more images."
        )
    chosen = rng.permutation(n_images)[: n_grey + n_defects].tolist()
    special = {"greyscale": chosen[n_defects:]}
    if defects:
        special.update(unreadable=chosen[:1], no_captions=chosen[1:2], no_instances=chosen[2:3])
    return ids, special


def _scenes_info(
    n_images: int, image_size: tuple[int, int], seed: int, greyscale_fraction: float, defects: bool, quality: int
) -> dict:
    return {
        "description": "course_lib synthetic scenes",
        "version": SCENES_VERSION,
        "n_images": n_images,
        "image_size": list(image_size),
        "seed": seed,
        "greyscale_fraction": greyscale_fraction,
        "defects": defects,
        "quality": quality,
    }


def _coco_files(info: dict, scenes: list[dict], captions: list[list[str]], skip_captions: set[int]) -> dict[str, dict]:
    """The three JSON files of a split: COCO's captions and instances, and the drawn attributes."""
    images = [
        {
            "id": s["image_id"],
            "file_name": s["file_name"],
            "width": info["image_size"][0],
            "height": info["image_size"][1],
        }
        for s in scenes
    ]
    categories = [{"id": i, "name": shape, "supercategory": SHAPES[shape]} for i, shape in enumerate(SHAPES, 1)]
    category_id = {c["name"]: c["id"] for c in categories}
    caption_annotations, instances, attributes = [], [], []
    for scene, texts in zip(scenes, captions):
        if scene["image_id"] not in skip_captions:
            caption_annotations += [
                {"id": len(caption_annotations) + i, "image_id": scene["image_id"], "caption": text}
                for i, text in enumerate(texts, 1)
            ]
        objects = []
        for obj in scene["objects"]:
            polygon = obj.pop("polygon")
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            obj["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            obj["category_id"] = category_id[obj["shape"]]
            instances.append(
                {
                    "id": len(instances) + 1,
                    "image_id": scene["image_id"],
                    "category_id": obj["category_id"],
                    "segmentation": [polygon.ravel().tolist()],
                    "area": obj["area"],
                    "bbox": obj["bbox"],
                    "iscrowd": 0,
                }
            )
            objects.append(obj)
        attributes.append(
            {key: scene[key] for key in ("image_id", "file_name", "greyscale", "background", "background_rgb")}
            | {"objects": objects}
        )
    return {
        "captions": {"info": info, "images": images, "annotations": caption_annotations},
        "instances": {"info": info, "images": images, "annotations": instances, "categories": categories},
        "attributes": {"info": info, "images": attributes},
    }


def write_scenes(
    root: str | os.PathLike,
    split: str = "val2017",
    n_images: int = 500,
    image_size: tuple[int, int] = (640, 480),
    seed: int = 0,
    greyscale_fraction: float = 0.02,
    defects: bool = False,
    quality: int = 90,
    workers: int | None = 1,
) -> Path:
    """Write ``n_images`` scenes in COCO's layout under ``root`` and return ``root`` (chapter 06).

    ``image_size`` is (width, height), 640x480 like a typical COCO image by default. About
    ``greyscale_fraction`` of the images are saved as greyscale JPEGs (at least one when it is above 0),
    as COCO has some. ``defects=True`` adds one truncated JPEG, one image without captions and one image
    without objects, so that the prepare step's checks have something to catch; they are listed under
    ``"defects"`` in ``attributes_{split}.json``. The same arguments always give the same files; a second
    call with the same arguments finds them and returns at once. ``workers`` processes draw in parallel
    (``None``: all CPUs).
    """
    root, (width, height) = Path(root), image_size
    info = _scenes_info(n_images, image_size, seed, greyscale_fraction, defects, quality)
    annotations = root / "annotations"
    attributes_file = annotations / f"attributes_{split}.json"
    if attributes_file.is_file() and json.loads(attributes_file.read_text()).get("info") == info:
        return root  # written last, so its presence means the whole set is there

    started = time.perf_counter()
    image_ids, special = _plan(n_images, seed, greyscale_fraction, defects)
    kinds = {index: kind for kind in ("greyscale", "no_instances") for index in special.get(kind, [])}
    items = [(index, image_id, kinds.get(index, "")) for index, image_id in enumerate(image_ids)]
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for kind in ("attributes", "captions", "instances"):  # old annotations must not describe new images
        (annotations / f"{kind}_{split}.json").unlink(missing_ok=True)
    render_one = partial(_render_one, folder=folder, width=width, height=height, seed=seed, quality=quality)
    if workers == 1 or n_images < 64:  # below that, starting processes costs more than it saves
        results = [render_one(item) for item in items]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(render_one, items, chunksize=32))
    scenes, captions = [r[0] for r in results], [r[1] for r in results]

    defect_ids = {
        kind: [image_ids[i] for i in special.get(kind, [])] for kind in ("unreadable", "no_captions", "no_instances")
    }
    for image_id in defect_ids["unreadable"]:  # cut the JPEG off in the middle of its pixel data
        path = folder / f"{image_id:012d}.jpg"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    files = _coco_files(info, scenes, captions, set(defect_ids["no_captions"]))
    files["attributes"]["defects"] = defect_ids
    for kind in ("captions", "instances", "attributes"):  # attributes last: it marks a complete set
        write_json_atomic(annotations / f"{kind}_{split}.json", files[kind])
    seconds = time.perf_counter() - started
    print(
        f"wrote {n_images:,} scenes ({width}x{height}) to {folder} in {seconds:.1f} s "
        f"({n_images / seconds:,.0f} images/s)"
    )
    return root
