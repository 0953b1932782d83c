"""Train (or load) the course's Fashion-MNIST classifier and say how good it is and where it is cached.

The classifier is the offline feature extractor for FID/KID and the judge of conditional accuracy
(chapter 04). Training takes several minutes on a 2-core CPU; it runs once, later calls load it.

    python data_scripts/train_classifier.py            # the full classifier (profile cpu)
    python data_scripts/train_classifier.py --profile smoke
"""

from __future__ import annotations

import argparse
import sys
import time

from course_lib.evaluation.classifier import classifier_path, load_or_train_classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", default="cpu", help="cpu (default) or gpu: the full classifier; smoke: a 1-epoch one"
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = load_or_train_classifier(args.profile, device=args.device, verbose=True)
    print(f"test accuracy: {model.test_accuracy:.4f}")
    print(f"cached in: {classifier_path(args.profile)}")
    print(f"training time: {model.train_seconds:.0f} s (this call: {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
