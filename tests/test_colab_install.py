"""A Colab-style install, kept working: a fresh virtual environment that already has torch and
torchvision (and Jupyter's kernel and papermill, as Colab does), the course installed with the exact
command of chapter 06's first cell (every extra the chapters use) but from a local ``git+file://``
clone (non-editable, so a module or package file that setuptools leaves out shows), torch left as it
was, every course_lib module imported, and chapter 01 executed under ``smoke`` from a folder outside
the repository.

The preinstalled packages are hard links to this environment's files (copies where hard links are
not possible), so the test costs seconds of disk instead of gigabytes; pip sees them as installed
distributions, exactly like Colab's.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "chapters" / "01_autoencoders.ipynb"  # executed: the quickest
INSTALLED_BY = REPO / "chapters" / "06_text_cvae.ipynb"  # whose install line asks for every extra the chapters use
COLAB_HAS = ("torch", "torchvision", "papermill", "ipykernel")  # and what they need
INSTALL_LINE = re.compile(r"pip install -q \"(course_lib(?:\[[a-z,]+\])? @ git\+https://[^\"@]+@(\w+))\"")
pytestmark = pytest.mark.install


def distributions_needed(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """``names`` and everything they require, with the extras they ask for (torch asks for
    ``cuda-toolkit[cublas,...]``), as installed here."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(name, "") for name in names]
    while todo:
        name, extra = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if (key, extra) in done:
            continue
        done.add((key, extra))
        try:
            dist = found.get(key) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                todo += [(requirement.name, wanted) for wanted in ("", *requirement.extras)]
    return list(found.values())


def link_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Every file of ``dist`` under site-packages (its code and its .dist-info), linked into ``site``."""
    for file in dist.files or []:
        if ".." in file.parts:  # console scripts in bin/: their shebangs name the other interpreter
            continue
        source, target = Path(dist.locate_file(file)), site / file
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system
            shutil.copy2(source, target)


def colab_like_venv(folder: Path) -> Path:
    """A new virtual environment holding torch, torchvision, papermill and ipykernel; its python."""
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    # Colab's pip is recent; Python 3.11's bundled pip 23.2 cannot parse a git+file:// requirement
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    for dist in distributions_needed(COLAB_HAS):
        link_distribution(dist, site)
    kernel = folder / "share" / "jupyter" / "kernels" / "python3"  # what installing ipykernel writes
    kernel.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernel / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return python


def torch_fingerprint(python: Path) -> dict[str, str]:
    script = (
        "import json, os, torch, torchvision, importlib.metadata as m; "
        "print(json.dumps({'torch': torch.__version__, 'torchvision': torchvision.__version__, "
        "'inode': str(os.stat(torch.__file__).st_ino), 'files': str(len(m.files('torch')))}))"
    )
    return json.loads(subprocess.check_output([python, "-c", script], text=True).strip().splitlines()[-1])


def test_the_chapters_install_line_works_in_a_colab_like_environment(tmp_path, smoke_env):
    cell = next(c for c in json.loads(INSTALLED_BY.read_text())["cells"] if c["cell_type"] == "code")
    match = INSTALL_LINE.search("".join(cell["source"]))
    assert match, f"{INSTALLED_BY.name}'s first cell no longer holds the pip install line this test expects"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    url = match.group(1).split(" @ ")[1]
    requirement = match.group(1).replace(url.rsplit("@", 1)[0], f"git+file://{clone}")

    python = colab_like_venv(tmp_path / "colab")
    before = torch_fingerprint(python)
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-3000:]
    assert torch_fingerprint(python) == before, "pip reinstalled or upgraded torch or torchvision"
    outside = tmp_path / "student"  # no repository files anywhere near
    outside.mkdir()
    where = subprocess.check_output(
        [python, "-c", "import course_lib; print(course_lib.__file__)"], cwd=outside, text=True
    )
    assert str(tmp_path / "colab") in where and "site-packages" in where  # installed, not the repository
    every_module = (
        "import importlib, pkgutil, course_lib; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(course_lib.__path__, 'course_lib.')]"
    )
    imported = subprocess.run([python, "-c", every_module], cwd=outside, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr[-2000:]  # no module or dependency left out
    shutil.copy(CHAPTER, outside / CHAPTER.name)
    # JUPYTER_DATA_DIR: no kernel of this user's may stand in for the new environment's own
    env = dict(smoke_env, PYTHONPATH="", COURSE_PROGRESS="0", JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    run = subprocess.run(
        [python, "-m", "papermill", CHAPTER.name, "executed.ipynb", "-p", "profile", "smoke", "-k", "python3"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    executed = json.loads((outside / "executed.ipynb").read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0]
