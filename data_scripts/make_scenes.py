"""Write synthetic scenes in COCO's on-disk format: the offline stand-in for COCO (chapter 06).

    python data_scripts/make_scenes.py ROOT                       # 500 images, 640x480, as val2017
    python data_scripts/make_scenes.py ROOT --n 12000 --image-size 320x240 --split train2017
    python data_scripts/prepare_coco.py --root ROOT               # then prepare them like real COCO

Writes ROOT/{split}/*.jpg and ROOT/annotations/{captions,instances,attributes}_{split}.json.
The same arguments always give the same files; a second run finds them and does nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.data.scenes import write_scenes


def image_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, not {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write the COCO-format data set into")
    parser.add_argument("--split", default="val2017", help="split name, as in COCO (default: val2017)")
    parser.add_argument("--n", type=int, default=500, help="number of images (default: 500)")
    parser.add_argument("--image-size", type=image_size, default=(640, 480), help="WIDTHxHEIGHT (default: 640x480)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--defects", action="store_true", help="add a truncated JPEG, an image without captions and one without objects"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = parser.parse_args(argv)
    write_scenes(args.root, args.split, args.n, args.image_size, args.seed, defects=args.defects, workers=args.workers)
    print(f"Next: python data_scripts/prepare_coco.py --root {args.root} --split {args.split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
