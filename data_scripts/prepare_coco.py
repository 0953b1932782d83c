"""Prepare a COCO split (real or synthetic scenes) for training: 64x64 or 128x128 uint8 arrays (chapter 06).

    python data_scripts/prepare_coco.py                       # COCO val2017 where get_coco.py put it
    python data_scripts/prepare_coco.py --split train2017 --size 128
    python data_scripts/prepare_coco.py --root ROOT           # scenes from make_scenes.py

Writes ROOT/prepared/{split}/images_{size}.npy and meta_{size}.json (or --out), prints what was
kept, skipped and how fast. A second run with the same arguments reuses the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.core.io import DataNotFoundError
from course_lib.data.coco import prepare
from course_lib.data.download import default_coco_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="COCO folder (default: $COURSE_DATA_DIR/coco, else the course cache's coco/)",
    )
    parser.add_argument("--split", default="val2017", help="COCO split (default: val2017)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: ROOT/prepared/SPLIT)")
    parser.add_argument("--size", type=int, choices=(64, 128), default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument(
        "--exclude-without-instances",
        action="store_true",
        help="leave out images without objects instead of labelling them 'none'",
    )
    args = parser.parse_args(argv)
    try:
        prepare(
            args.root or default_coco_root(),
            args.split,
            args.out,
            args.size,
            args.seed,
            workers=args.workers,
            keep_without_instances=not args.exclude_without_instances,
        )
    except DataNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
