"""make gpu-check's script runs end to end on a CPU at toy sizes, with only what a bare GPU machine's
Python has (torch, torchvision, torchmetrics, transformers, pandas, matplotlib), and refuses to start
where no GPU is unless told to check itself on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the course installs but a bare GPU machine does not have: importing any of them fails in the run.
NOT_ON_A_BARE_MACHINE = [
    "sklearn",
    "scipy",
    "minisom",
    "pycocotools",
    "open_clip",
    "papermill",
    "nbformat",
    "yaml",
    "nbval",
    "sentence_transformers",
    "ipywidgets",
    "IPython",
    "torch_fidelity",
]
RUN = """
import importlib.abc, importlib.machinery, runpy, sys
blocked = set(sys.argv[1].split(","))
class Missing(importlib.abc.Loader):  # importing the module fails, as where it is not installed
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (not on a bare GPU machine)")
    def exec_module(self, module):
        pass
class Bare(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:  # origin None: probes such as torch._dynamo's skip it
            return importlib.machinery.ModuleSpec(name, Missing(), origin=None)
sys.meta_path.insert(0, Bare())
sys.argv = ["gpu_check", *sys.argv[2:]]
runpy.run_module("course_lib.instructor.gpu_check", run_name="__main__")
"""


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), COURSE_CACHE_DIR=str(tmp_path / "cache"), COURSE_PROGRESS="0")
    command = [sys.executable, "-c", RUN, ",".join(NOT_ON_A_BARE_MACHINE), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_gpu_check_runs_every_step_on_a_bare_python_and_prints_one_table(fake_fashion_mnist, tmp_path):
    done = run("--fashion-mnist", str(fake_fashion_mnist), "--device", "cpu", "--quick", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for step in (
        "benchmark: MLP VAE",
        "benchmark: conv VAE",
        "chapter 02 conv VAE, gpu profile",
        "resume after epoch 1",
    ):
        assert step in out
    assert "same weights" in out  # the resumed run ends where the uninterrupted one does
    assert out.count("skipped: autocast runs on CUDA only") == 2  # bf16 and fp16 rows, named, not silent
    assert "gpu-check:" in out and "s in all" in out
    assert not list((tmp_path / "cache").glob("checkpoints/**/*.pt"))  # nothing of the run left behind


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_what_to_do(fake_fashion_mnist, tmp_path):
    done = run("--fashion-mnist", str(fake_fashion_mnist), tmp_path=tmp_path)
    assert done.returncode == 2
    assert "no CUDA device here" in done.stderr and "--device cpu --quick" in done.stderr


def test_gpu_check_names_a_missing_data_folder(tmp_path):
    done = run("--fashion-mnist", str(tmp_path / "nowhere"), "--device", "cpu", "--quick", tmp_path=tmp_path)
    assert done.returncode == 2 and "no such folder" in done.stderr


def test_amp_choices_are_checked_and_float32_on_the_cpu():
    import torch

    from course_lib.core.train import amp_settings

    for amp in (True, False, "bfloat16", "float16"):
        assert amp_settings(torch.device("cpu"), amp) == (None, False)  # autocast is for CUDA only
    with pytest.raises(ValueError, match="'bfloat16' or 'float16'"):
        amp_settings(torch.device("cpu"), "fp16")
