"""Real COCO through the text chapters (05-08): a split in COCO's own on-disk format (captions and
instances JSON, JPEGs, some of them greyscale) with no drawn attributes, prepared with
``data_scripts/prepare_coco.py`` as a student with the network prepares val2017, then the chapters
executed on it under the smoke profile. Nothing in a chapter may assume the scenes' attributes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.data.scenes import write_scenes

REPO = Path(__file__).resolve().parents[1]
TEXT_CHAPTERS = ["05_text_encoders", "06_text_cvae", "07_two_stage", "08_latent_analysis"]


@pytest.fixture(scope="module")
def coco_env(tmp_path_factory, smoke_env) -> dict[str, str]:
    """An environment whose COURSE_DATA_DIR holds a prepared COCO-format val2017 of 300 images."""
    data = tmp_path_factory.mktemp("data")
    root = write_scenes(data / "coco", "val2017", 300, (160, 120), seed=3, greyscale_fraction=0.1)
    (root / "annotations" / "attributes_val2017.json").unlink()  # what real COCO lacks
    env = dict(smoke_env, COURSE_DATA_DIR=str(data), COURSE_CACHE_DIR=str(tmp_path_factory.mktemp("coco_cache")))
    prepared = subprocess.run(
        [sys.executable, "data_scripts/prepare_coco.py", "--size", "64", "--workers", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    return env


def text_output(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.notebooks
def test_the_text_chapters_run_on_coco_and_say_so(coco_env, tmp_path):
    out = tmp_path / "executed"
    chapters = [f"chapters/{name}.ipynb" for name in TEXT_CHAPTERS]
    command = [sys.executable, "-m", "course_lib.instructor.execute", "--profile", "smoke", "--out", str(out)]
    result = subprocess.run(
        [*command, "--reference-steps", "20", *chapters], cwd=REPO, env=coco_env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"chapters failed on COCO:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    outputs = {}
    for name in TEXT_CHAPTERS:
        notebook = nbformat.read(out / "chapters" / f"{name}.ipynb", as_version=4)
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        outputs[name] = text_output(notebook)
    # Chapter 06 names the data it ran on and reads the supercategory where the scenes' attributes are missing.
    assert "COCO val2017, 300 images at 64x64" in outputs["06_text_cvae"]
    assert "Training the COCO supercategory reader once" in outputs["06_text_cvae"]
    assert "text -> image (reader): supercategory 0." in outputs["06_text_cvae"]
    assert "synthetic COCO-format scenes" not in outputs["06_text_cvae"]
    # Chapter 07 reads its stage-1 reconstructions and its text-drawn images by the supercategory too.
    assert "text -> image (reader): supercategory 0." in outputs["07_two_stage"]
