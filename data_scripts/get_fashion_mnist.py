"""Find Fashion-MNIST (or fetch it) and say where it came from. Used by `make book` and `make test`.

Order: $COURSE_DATA_DIR, Debian's /usr/share/datasets/fashion-mnist, torchvision's download. If all
fail and apt-get can be used (as root), Debian's `dataset-fashion-mnist` package is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from course_lib.core.io import DataNotFoundError
from course_lib.data.images import fashion_mnist_root


def try_apt_install() -> bool:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    print("Fashion-MNIST not found: installing Debian's dataset-fashion-mnist ...", flush=True)
    for command in (
        ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"],
        ["sh", "-c", "apt-get update -q && apt-get install -y -q dataset-fashion-mnist"],
    ):
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode == 0:
            return True
    return False


def main() -> int:
    try:
        root = fashion_mnist_root()
    except DataNotFoundError as error:
        if not try_apt_install():
            print(error, file=sys.stderr)
            return 1
        root = fashion_mnist_root()
    print(f"Fashion-MNIST ready in {root / 'FashionMNIST' / 'raw'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
