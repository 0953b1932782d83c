"""COCO captions and supercategories, prepared once into small uint8 arrays for training (chapter 06).

The same code reads real COCO 2017 (``python data_scripts/get_coco.py``) and the synthetic scenes of
:mod:`course_lib.data.scenes`, which are written in COCO's own layout::

    root/{split}/{image_id:012d}.jpg
    root/annotations/captions_{split}.json, instances_{split}.json   (attributes_{split}.json: scenes only)

:func:`load_annotations` reads them with pycocotools: all captions of every image and one
supercategory label per image, by the rule in :data:`SUPERCATEGORY_RULE`. :func:`prepare` turns a split
into a folder that :func:`load_prepared` reads back in a second::

    images_{size}.npy  uint8 [N, size, size, 3], RGB, channels last like PIL and matplotlib
                       (PreparedCaptions.tensors() gives [N, 3, size, size] floats); rows are the train
                       part, then val, then test, so each part is one slice of the memory map
    meta_{size}.json   image ids, captions, labels, label names, drawn attributes (scenes), the split
                       and the summary; written last, so its presence means the folder is complete

64x64 keeps COCO val2017 (5,000 images) at 61 MB and train2017 (118,287) at 1.45 GB.

Imports course_lib.core (io, profiles) and course_lib.data (download, scenes).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from PIL import Image, ImageOps
from torch import Tensor
from tqdm.auto import tqdm

from course_lib.core.io import DataNotFoundError, cache_dir, write_json_atomic
from course_lib.core.profiles import show_progress
from course_lib.data.download import default_coco_root
from course_lib.data.scenes import SCENES_VERSION, write_scenes

NO_INSTANCE = "none"
SUPERCATEGORY_RULE = (
    "the supercategory of the image's largest-area non-crowd instance (ties: the lowest "
    f"annotation id); '{NO_INSTANCE}' for an image without any"
)
SPLITS = ("train", "val", "test")
SCENES_SPLIT = "train2017"
FORMAT = 1  # part of the idempotency key: bump it when the prepared layout changes
MAX_CHUNK = 256  # images per task sent to a worker process


@dataclass(frozen=True)
class CocoImage:
    """One usable image: its file, all its captions and its supercategory label (chapter 06)."""

    image_id: int
    file_name: str
    captions: tuple[str, ...]
    supercategory: str


@dataclass
class Annotations:
    """What :func:`load_annotations` found in one split (chapter 06)."""

    images: list[CocoImage]  # sorted by image id
    supercategory_names: tuple[str, ...]  # label order: by first category id, then NO_INSTANCE
    skipped: dict[str, list[int]]  # reason -> image ids left out
    without_instances: list[int]  # image ids that have no non-crowd instance
    attributes: dict[int, dict] | None  # what was drawn, per image id (synthetic scenes only)


def prepared_dir(root: str | os.PathLike, split: str) -> Path:
    """Where :func:`prepare` writes a split by default: ``root/prepared/{split}`` (chapter 06)."""
    return Path(root) / "prepared" / split


def annotation_file(root: str | os.PathLike, kind: str, split: str) -> Path:
    """``root/annotations/{kind}_{split}.json``, or a :class:`DataNotFoundError` that says how to get it
    (chapter 06)."""
    path = Path(root) / "annotations" / f"{kind}_{split}.json"
    if path.is_file():
        return path
    present = sorted(p.name for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
    raise DataNotFoundError(
        f"COCO annotation file {path} not found"
        + (f" (that folder has: {', '.join(present)})" if present else "")
        + ".\n"
        "Download COCO 2017 (needs the network): python data_scripts/get_coco.py\n"
        "Or, offline, write synthetic scenes in COCO's format: "
        f"python data_scripts/make_scenes.py {root} --split {split}"
    )


def _read_coco(path: Path):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints timing chatter
            return COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataNotFoundError(
            f"{path} is not valid JSON ({error}): it may be truncated. Delete it and "
            "extract or generate the annotations again."
        ) from error


def load_annotations(
    root: str | os.PathLike, split: str = "val2017", keep_without_instances: bool = True
) -> Annotations:
    """Captions and one supercategory label per image of a COCO split, read with pycocotools (chapter 06).

    The label follows :data:`SUPERCATEGORY_RULE`. Images without any non-crowd instance (48 in
    val2017) get the label ``"none"``, or are left out when ``keep_without_instances=False``; either
    way they are listed in ``without_instances``. Images without a caption are left out and listed
    under ``skipped["no captions"]``: they never get a label.
    """
    root = Path(root)
    captions = _read_coco(annotation_file(root, "captions", split))
    instances = _read_coco(annotation_file(root, "instances", split))
    names = list(dict.fromkeys(c["supercategory"] for c in instances.loadCats(sorted(instances.getCatIds()))))
    images, without_instances = [], []
    skipped: dict[str, list[int]] = {"no captions": [], "no instances": []}
    for image_id in sorted(instances.getImgIds()):
        texts = tuple(
            text for ann in captions.loadAnns(captions.getAnnIds(imgIds=image_id)) if (text := ann["caption"].strip())
        )
        if not texts:
            skipped["no captions"].append(image_id)
            continue
        objects = instances.loadAnns(instances.getAnnIds(imgIds=image_id, iscrowd=False))
        if objects:
            largest = max(objects, key=lambda ann: (ann["area"], -ann["id"]))
            label = instances.loadCats(largest["category_id"])[0]["supercategory"]
        else:
            without_instances.append(image_id)
            if not keep_without_instances:
                skipped["no instances"].append(image_id)
                continue
            label = NO_INSTANCE
        images.append(CocoImage(image_id, instances.loadImgs(image_id)[0]["file_name"], texts, label))
    attributes_path = root / "annotations" / f"attributes_{split}.json"
    attributes = (
        {record["image_id"]: record for record in json.loads(attributes_path.read_text())["images"]}
        if attributes_path.is_file()
        else None
    )
    return Annotations(images, tuple(names) + (NO_INSTANCE,), skipped, without_instances, attributes)


def load_image(path: str | os.PathLike, size: int = 64) -> np.ndarray:
    """One image as uint8 [size, size, 3]: RGB, centre-cropped to a square and resized (chapter 06)."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still >= size
        return np.asarray(ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BICUBIC))


def _load_chunk(paths: list[str], size: int) -> tuple[np.ndarray, dict[int, str]]:
    """Images of one task, and why any of them could not be read (their rows stay zero)."""
    pixels = np.zeros((len(paths), size, size, 3), np.uint8)
    errors = {}
    for i, path in enumerate(paths):
        try:
            pixels[i] = load_image(path, size)
        except (OSError, SyntaxError, ValueError) as error:  # missing, truncated or not an image
            errors[i] = f"{type(error).__name__}: {error}"
    return pixels, errors


def default_workers() -> int:
    """The CPUs this process may use (chapter 06's prepare step): containers and job schedulers often
    allow fewer than the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _decode_into(target: np.ndarray, paths: list[Path], size: int, workers: int, desc: str) -> dict[int, str]:
    """Fill ``target`` row by row from ``paths`` with ``workers`` processes; return {row: error}."""
    chunk = max(1, min(MAX_CHUNK, -(-len(paths) // (4 * workers))))  # >= 4 tasks per worker, for balance
    starts = range(0, len(paths), chunk)
    tasks = [[str(p) for p in paths[start : start + chunk]] for start in starts]
    load = partial(_load_chunk, size=size)
    errors = {}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(workers)) if workers > 1 and len(tasks) > 1 else None
        bar = stack.enter_context(
            tqdm(total=len(paths), desc=desc, unit="img", leave=False, disable=not show_progress())
        )
        for start, (pixels, failed) in zip(starts, pool.map(load, tasks) if pool else map(load, tasks)):
            target[start : start + len(pixels)] = pixels
            errors.update({start + row: message for row, message in failed.items()})
            bar.update(len(pixels))
    return errors


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) that sum to 1, not {fractions}"
        )


def split_indices(n: int, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[np.ndarray]:
    """A seeded random split of ``range(n)`` into sorted train, val and test indices (chapter 06)."""
    _check_fractions(fractions)
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.split(order, [n - n_val - n_test, n - n_test])]


@dataclass
class PrepareSummary:
    """What :func:`prepare` did (``print(summary)`` reports it; chapter 06)."""

    out_dir: str
    source: str
    size: int
    split_sizes: dict[str, int]
    labelled_none: int  # images without instances kept with the label "none"
    skipped: dict[str, list[int]]  # reason -> image ids left out
    errors: dict[int, str]  # image id -> why its file could not be read
    workers: int
    seconds: float
    megabytes: float
    reused: bool = False

    @property
    def n_images(self) -> int:
        return sum(self.split_sizes.values())

    @property
    def images_per_second(self) -> float:
        return (self.n_images + len(self.skipped.get("unreadable", []))) / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        verb = "already prepared (reused)" if self.reused else "prepared"
        parts = " / ".join(f"{name} {count:,}" for name, count in self.split_sizes.items())
        lines = [
            f"{verb}: {self.n_images:,} images of {self.source} at {self.size}x{self.size} in {self.out_dir}",
            (
                f"  {parts}; {self.megabytes:.1f} MB on disk; {self.seconds:.1f} s, "
                f"{self.images_per_second:,.0f} images/s with {self.workers} worker(s)"
            ),
            f"  label: {SUPERCATEGORY_RULE}; {self.labelled_none:,} labelled '{NO_INSTANCE}'",
        ]
        for reason, ids in self.skipped.items():
            if ids:
                shown = ", ".join(str(i) + (f" ({self.errors[i]})" if i in self.errors else "") for i in ids[:5])
                lines.append(f"  skipped {len(ids):,} ({reason}): {shown}{', ...' if len(ids) > 5 else ''}")
        return "\n".join(lines)


def _key(root: Path, split: str, size: int, seed: int, fractions, keep_without_instances: bool) -> dict:
    """Everything that determines a prepared folder; the annotation files by size and modification time."""
    stats = {
        kind: [path.stat().st_size, path.stat().st_mtime_ns]
        for kind in ("captions", "instances")
        for path in [annotation_file(root, kind, split)]
    }
    return {
        "format": FORMAT,
        "root": str(root.resolve()),
        "split": split,
        "size": size,
        "seed": seed,
        "fractions": list(fractions),
        "keep_without_instances": keep_without_instances,
        "annotations": stats,
    }


def _reusable(out_dir: Path, size: int, key: dict) -> PrepareSummary | None:
    meta_path, images_path = out_dir / f"meta_{size}.json", out_dir / f"images_{size}.npy"
    if not (meta_path.is_file() and images_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        shape = np.load(images_path, mmap_mode="r").shape
    except (ValueError, OSError) as error:  # damaged by a full disk or a killed copy: prepare again
        print(f"note: the prepared set in {out_dir} is damaged ({type(error).__name__}); preparing it again.")
        return None
    if meta.get("key") != key or shape != (len(meta.get("image_ids", ())), size, size, 3):
        return None
    errors = {int(i): e for i, e in meta["summary"]["errors"].items()}
    # out_dir as reached now: the recorded one may be a link's path that is gone (a dry run's cache)
    summary = meta["summary"] | {"reused": True, "errors": errors, "out_dir": str(out_dir)}
    return PrepareSummary(**summary)


def _temporary(folder: Path, name: str) -> Path:
    handle, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(handle)
    return Path(path)


def _without_rows(source: np.ndarray, bad: list[int], path: Path) -> None:
    """Copy ``source`` minus rows ``bad`` into a new .npy at ``path``, a block at a time."""
    keep = np.setdiff1d(np.arange(len(source)), bad)
    target = open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(keep),) + source.shape[1:])
    for start in range(0, len(keep), 4096):
        target[start : start + 4096] = source[keep[start : start + 4096]]
    target.flush()


def _write_images(images_path: Path, paths: list[Path], size: int, workers: int) -> dict[int, str]:
    """Decode ``paths`` into ``images_path`` (readable rows only) via a temporary file; return {row: error}."""
    decoded, compacted = (_temporary(images_path.parent, images_path.name) for _ in range(2))
    try:
        target = open_memmap(decoded, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        errors = _decode_into(target, paths, size, workers, desc=f"{paths[0].parent.name} -> {size}x{size}")
        if len(errors) == len(paths):
            raise DataNotFoundError(
                f"None of the {len(paths):,} images of {paths[0].parent} could be read "
                f"(first error: {next(iter(errors.values()))}). Are they extracted? For COCO, "
                "run python data_scripts/get_coco.py again."
            )
        target.flush()
        del target
        if errors:
            _without_rows(np.load(decoded, mmap_mode="r"), sorted(errors), compacted)
            os.replace(compacted, decoded)
        os.replace(decoded, images_path)
    finally:
        decoded.unlink(missing_ok=True)
        compacted.unlink(missing_ok=True)
    return errors


def prepare(
    root: str | os.PathLike,
    split: str = "val2017",
    out_dir: str | os.PathLike | None = None,
    size: int = 64,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    workers: int | None = None,
    keep_without_instances: bool = True,
) -> PrepareSummary:
    """Prepare a COCO split for training: labels, captions, seeded split and square uint8 images (chapter 06).

    Every image is converted to RGB (COCO has greyscale JPEGs), centre-cropped to a square and resized to
    ``size`` x ``size``, in ``workers`` processes (default: all CPUs). Images without captions and files
    that cannot be read are skipped, counted and reported, never labelled. The split is drawn with
    ``seed`` over the images that have captions (``fractions`` of train, val, test); an image that then
    fails to decode leaves its part. Writes ``out_dir`` (default ``root/prepared/{split}``) atomically;
    a second call with the same arguments and unchanged annotation files reuses it. Prints the summary.
    """
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else prepared_dir(root, split)
    workers = workers or default_workers()
    _check_fractions(fractions)
    key = _key(root, split, size, seed, fractions, keep_without_instances)
    if (summary := _reusable(out_dir, size, key)) is not None:
        print(f"already prepared (reused): {sum(summary.split_sizes.values()):,} images at {size}x{size} in {out_dir}")
        return summary

    started = time.perf_counter()
    annotations = load_annotations(root, split, keep_without_instances)
    if not annotations.images:
        raise DataNotFoundError(
            f"No image of {root / split} has both captions and a label "
            f"(skipped: {annotations.skipped}); check the annotation files."
        )
    parts = split_indices(len(annotations.images), seed, fractions)
    images = [annotations.images[i] for i in np.concatenate(parts)]  # rows: train, then val, then test
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path, images_path = out_dir / f"meta_{size}.json", out_dir / f"images_{size}.npy"
    meta_path.unlink(missing_ok=True)  # from here on the folder does not count as prepared
    errors = _write_images(images_path, [root / split / image.file_name for image in images], size, workers)

    kept = [row for row in range(len(images)) if row not in errors]
    sizes = np.bincount(np.repeat(np.arange(3), [len(p) for p in parts])[kept], minlength=3)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    kept_images = [images[row] for row in kept]
    names, attributes = annotations.supercategory_names, annotations.attributes
    meta = {
        "key": key,
        "kind": "coco" if attributes is None else "scenes",
        "supercategory_rule": SUPERCATEGORY_RULE,
        "supercategory_names": list(names),
        "splits": {name: bounds[i : i + 2] for i, name in enumerate(SPLITS)},
        "image_ids": [image.image_id for image in kept_images],
        "captions": [list(image.captions) for image in kept_images],
        "supercategory": [names.index(image.supercategory) for image in kept_images],
        "attributes": None if attributes is None else [attributes[image.image_id] for image in kept_images],
    }
    summary = PrepareSummary(
        out_dir=str(out_dir),
        source=str(root / split),
        size=size,
        split_sizes={name: int(count) for name, count in zip(SPLITS, sizes)},
        labelled_none=sum(image.supercategory == NO_INSTANCE for image in kept_images),
        skipped=annotations.skipped | {"unreadable": [images[row].image_id for row in sorted(errors)]},
        errors={images[row].image_id: message for row, message in errors.items()},
        workers=workers,
        seconds=time.perf_counter() - started,
        megabytes=(images_path.stat().st_size + len(json.dumps(meta))) / 1e6,
    )
    write_json_atomic(meta_path, meta | {"summary": asdict(summary)})
    print(summary)
    return summary


@dataclass
class PreparedCaptions:
    """One part (train, val or test) of a prepared split, as :func:`load_prepared` returns it (chapter 06)."""

    images: np.ndarray  # uint8 [N, size, size, 3], RGB, memory-mapped (read-only)
    captions: list[list[str]]  # all captions of each image
    supercategory: np.ndarray  # int64 [N], an index into supercategory_names
    supercategory_names: tuple[str, ...]
    image_ids: np.ndarray
    attributes: list[dict] | None  # what was drawn, main object first (synthetic scenes only)
    kind: str  # "coco" or "scenes"
    source: str  # the COCO split folder it was prepared from

    def __len__(self) -> int:
        return len(self.images)

    def tensors(self, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """``(images, labels)`` for :class:`~course_lib.data.images.TensorLoader`: float [N, 3, H, W] in [0, 1], int64 [N]."""
        pixels = torch.from_numpy(np.array(self.images)).to(device)  # a writable copy of the memory map
        images = pixels.permute(0, 3, 1, 2).contiguous().float().div_(255)
        return images, torch.from_numpy(self.supercategory).to(device)

    def main_object(self, attribute: str) -> list[str]:
        """One drawn attribute (``"colour"``, ``"shape"``, ``"position"``, ``"size"``) of each main object."""
        if self.attributes is None:
            raise ValueError("Only synthetic scenes record what was drawn; real COCO has no attributes.")
        return [record["objects"][0][attribute] if record["objects"] else NO_INSTANCE for record in self.attributes]


def load_prepared(out_dir: str | os.PathLike, split: str = "train", size: int = 64) -> PreparedCaptions:
    """Read one part (``"train"``, ``"val"`` or ``"test"``) of a folder written by :func:`prepare` (chapter 06)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    out_dir = Path(out_dir)
    meta_path = out_dir / f"meta_{size}.json"
    if not meta_path.is_file():
        raise DataNotFoundError(
            f"No prepared {size}x{size} data in {out_dir}. Prepare COCO with python data_scripts/prepare_coco.py "
            f"--size {size}, or use course_lib.data.coco.caption_data(), which falls back to synthetic scenes."
        )
    meta = json.loads(meta_path.read_text())
    start, stop = meta["splits"][split]
    attributes = meta["attributes"]
    return PreparedCaptions(
        images=np.load(out_dir / f"images_{size}.npy", mmap_mode="r")[start:stop],
        captions=meta["captions"][start:stop],
        supercategory=np.array(meta["supercategory"][start:stop], dtype=np.int64),
        supercategory_names=tuple(meta["supercategory_names"]),
        image_ids=np.array(meta["image_ids"][start:stop], dtype=np.int64),
        attributes=None if attributes is None else attributes[start:stop],
        kind=meta["kind"],
        source=meta["summary"]["source"],
    )


def synthetic_scenes(
    n_images: int, size: int = 64, seed: int = 0, image_size: tuple[int, int] = (320, 240), workers: int | None = None
) -> Path:
    """Draw ``n_images`` scenes and prepare them once, in the course cache; return the prepared folder (chapter 06).

    Keyed by the arguments (and the generator's version): a second call costs well under a second.
    """
    width, height = image_size
    root = cache_dir() / "scenes" / f"v{SCENES_VERSION}_{n_images}_{width}x{height}_seed{seed}"
    write_scenes(root, SCENES_SPLIT, n_images, image_size, seed, workers=workers or default_workers())
    return Path(prepare(root, SCENES_SPLIT, size=size, seed=seed, workers=workers).out_dir)


@dataclass(frozen=True)
class CaptionData:
    """Which captioned image set a chapter runs on: a folder for :func:`load_prepared`, and what it is
    (chapter 06)."""

    path: Path
    kind: str  # "coco" or "scenes"
    description: str


def caption_data(
    size: int = 64,
    n_scenes: int = 12_000,
    seed: int = 0,
    scene_size: tuple[int, int] = (320, 240),
    coco_split: str = "val2017",
) -> CaptionData:
    """Prepared real COCO if there is one, else synthetic scenes (drawn and prepared once) (chapter 06).

    COCO is looked for in ``$COURSE_DATA_DIR/coco/prepared/{coco_split}`` and
    ``<course cache>/coco/prepared/{coco_split}``, where ``data_scripts/prepare_coco.py`` puts it.
    """
    candidates = dict.fromkeys(
        [prepared_dir(default_coco_root(), coco_split), prepared_dir(cache_dir() / "coco", coco_split)]
    )
    for folder in candidates:
        other_sizes = sorted(int(p.stem[5:]) for p in folder.glob("meta_*.json") if p.stem[5:].isdigit())
        if other_sizes and size not in other_sizes:
            raise DataNotFoundError(
                f"{folder} holds {coco_split} prepared at {', '.join(f'{s}x{s}' for s in other_sizes)}, but this "
                f"chapter reads {size}x{size}. Prepare that size too (the other stays): python "
                f"data_scripts/prepare_coco.py --split {coco_split} --size {size}. Or delete the folder to "
                "train on the synthetic scenes instead."
            )
        if (folder / f"meta_{size}.json").is_file():
            meta = json.loads((folder / f"meta_{size}.json").read_text())
            n = len(meta["image_ids"])
            what = "COCO" if meta["kind"] == "coco" else "synthetic scenes"
            return CaptionData(
                folder, meta["kind"], f"{what} {coco_split}, {n:,} images at {size}x{size}, from {folder}"
            )
    path = synthetic_scenes(n_scenes, size, seed, scene_size)
    return CaptionData(
        path,
        "scenes",
        (
            f"synthetic COCO-format scenes: {n_scenes:,} images drawn at {scene_size[0]}x{scene_size[1]} (seed {seed}), "
            f"prepared at {size}x{size}. No prepared COCO was found in {', '.join(map(str, candidates))}: "
            "python data_scripts/get_coco.py, then python data_scripts/prepare_coco.py, to use real COCO."
        ),
    )
