"""Download COCO 2017 for chapter 06: val2017 images and the 2017 annotations, train2017 on request.

    python data_scripts/get_coco.py                  # val2017 (816 MB) + annotations (253 MB)
    python data_scripts/get_coco.py --train          # also train2017 (19.3 GB)
    python data_scripts/get_coco.py --root D:\\coco   # somewhere else (any OS)

Interrupted? Run the same command again: it resumes. Every archive is checked against its official
size and SHA-1, and a second run does nothing. Offline, the course runs on synthetic COCO-format
scenes instead (python data_scripts/make_scenes.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.data.download import (
    COCO_DEFAULT,
    COCO_FILES,
    DownloadError,
    RemoteFile,
    default_coco_root,
    download,
    extract,
    human_size,
    is_downloaded,
    is_extracted,
)

TRAIN = "train2017.zip"


def status(remote: RemoteFile, root: Path, unzip: bool) -> tuple[str, int]:
    """What is left to do for one archive, and how many bytes remain to download."""
    if unzip and is_extracted(root / remote.name, root):
        return "already extracted", 0
    if is_downloaded(remote, root):
        return "already downloaded", 0
    part = root / f"{remote.name}.part"
    have = min(part.stat().st_size, remote.size) if part.is_file() else 0
    return (f"resumes at {human_size(have)}" if have else "to download"), remote.size - have


def print_layout(root: Path, names: list[str], unzip: bool) -> None:
    print(f"\nCOCO 2017 is ready in {root}:")
    if not unzip:
        for name in names:
            print(f"  {root / name}  (run again without --no-extract to unzip)")
        return
    for name in names:
        if name.startswith(("val", "train")):
            images = root / name.removesuffix(".zip")
            print(f"  {images / '*.jpg'}  ({sum(1 for _ in images.glob('*.jpg'))} images)")
    for split in ("train2017", "val2017") if TRAIN in names else ("val2017",):
        for kind in ("captions", "instances"):
            print(f"  {root / 'annotations' / f'{kind}_{split}.json'}")
    print("The .zip files may be deleted now; this script will not download them again.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder for COCO (default: $COURSE_DATA_DIR/coco, else the course cache's coco/)",
    )
    parser.add_argument("--train", action="store_true", help="also download train2017 (19.3 GB, 118k images)")
    parser.add_argument("--no-extract", action="store_true", help="download and verify the zips, do not unzip")
    args = parser.parse_args(argv)
    root, unzip = (args.root or default_coco_root()).expanduser(), not args.no_extract
    names = list(COCO_DEFAULT) + ([TRAIN] if args.train else [])

    remaining = 0
    print(f"COCO 2017 into {root}:")
    for name in names:
        remote = COCO_FILES[name]
        text, missing = status(remote, root, unzip)
        remaining += missing
        print(f"  {name:<30} {human_size(remote.size):>9}  {text}")
    print(f"To download: {human_size(remaining)}" + ("" if args.train else " (add --train for train2017)"))

    try:
        for name in names:
            remote = COCO_FILES[name]
            if unzip and is_extracted(root / name, root):
                continue
            path = download(remote, root)
            if unzip:
                extract(path, root)
    except DownloadError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted: run the same command again to resume.", file=sys.stderr)
        return 130
    print_layout(root, names, unzip)
    print(f"\nNext: python data_scripts/prepare_coco.py --root {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
