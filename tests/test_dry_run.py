"""Dry runs (course_lib.core.dry_run): fit's few steps, its separate checkpoint, and the memory estimate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from course_lib.core.dry_run import FirstBatches, device_memory, dry_run_steps, saved_for_backward
from course_lib.core.losses import ReconstructionLoss
from course_lib.core.train import fit
from course_lib.data.images import TensorLoader
from course_lib.models import mlp_autoencoder

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_dry_run_steps_reads_the_variable(monkeypatch):
    monkeypatch.delenv("COURSE_DRY_RUN", raising=False)
    assert dry_run_steps() == 0
    monkeypatch.setenv("COURSE_DRY_RUN", "3")
    assert dry_run_steps() == 3
    monkeypatch.setenv("COURSE_DRY_RUN", "a few")
    with pytest.raises(ValueError, match="COURSE_DRY_RUN must be a whole number"):
        dry_run_steps()


def test_first_batches_gives_the_same_number_every_epoch():
    loader = TensorLoader(torch.rand(100, 1, 4, 4), None, 10)
    first = FirstBatches(loader, 3)
    assert len(first) == 3 and len(list(first)) == 3 and len(list(first)) == 3
    assert len(FirstBatches(loader, 50)) == 10


def test_fit_in_a_dry_run_trains_a_few_steps_beside_the_real_checkpoint(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_DRY_RUN", "2")
    model, loader = mlp_autoencoder(latent_dim=4), TensorLoader(torch.rand(640, 1, 28, 28), None, 64)
    steps = []
    model.register_forward_pre_hook(lambda module, args: steps.append(module.training))
    history = fit(model, loader, ReconstructionLoss(), 50, test_data=loader, checkpoint=tmp_path / "model.pt")
    assert len(history) == 2  # of 50
    # per epoch: 2 training steps and 2 held-out batches; one more forward pass for the estimate
    assert steps.count(True) == 2 * 2 + 1 and steps.count(False) == 2 * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.dry-run.pt"]
    assert "dry run, Autoencoder at batch 64:" in capsys.readouterr().out


def test_device_memory_counts_parameters_optimiser_state_activations_and_data():
    model = nn.Sequential(nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 10))
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.rand(32, 100)
    model(x).sum().backward()
    optimizer.step()
    loader = TensorLoader(torch.rand(1000, 100), torch.zeros(1000, dtype=torch.long), 32)
    megabytes = device_memory(model, optimizer, lambda: model(x).sum(), [loader, None])
    parameters = (100 * 200 + 200 + 200 * 10 + 10) * 4 / 2**20
    assert megabytes["parameters"] == pytest.approx(parameters) == megabytes["gradients"]
    assert megabytes["optimiser state"] == pytest.approx(2 * parameters, rel=0.01)  # Adam's two moments (+ steps)
    assert megabytes["data on the device"] == pytest.approx((1000 * 100 * 4 + 1000 * 8) / 2**20)
    # saved for backward: the input and the ReLU's output (the weights are parameters, not counted)
    assert saved_for_backward(lambda: model(x).sum(), set()) > megabytes["activations (one batch)"] > 0
    assert megabytes["activations (one batch)"] * 2**20 >= 32 * 100 * 4 + 32 * 200 * 4


@pytest.mark.notebooks
def test_every_chapter_runs_the_gpu_profile_in_a_dry_run(smoke_env, tmp_path):
    """What only the gpu profile does (64x64 text models, all captions per image, latent 1,024, the
    full test sets, 40-50 epoch schedules) executes in every CI run, on the CPU (`make dry-run`)."""
    out = tmp_path / "dry-run"
    command = [sys.executable, "-m", "course_lib.instructor.execute", "--profile", "gpu", "--dry-run", "2"]
    result = subprocess.run(
        [*command, "--out", str(out), *[str(p.relative_to(REPO)) for p in CHAPTERS]],
        cwd=REPO,
        env=smoke_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"gpu dry run failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
    report = pd.read_csv(out / "execution_report.csv")
    assert (report["profile"] == "gpu").all() and (report["status"] == "ok").all()
    assert len(report) == len(CHAPTERS) and (report["peak_host_mb"] > 0).all()
    trained = report[report["models"].fillna(0) > 0]
    # every chapter but 05 (frozen encoders) and 08 (it loads chapters 04 and 07's models) trains models
    assert {Path(c).stem[:2] for c in trained["chapter"]} == {"01", "02", "03", "04", "06", "07"}
    assert (trained["device_mb"] > 0).all()
    print(result.stdout[result.stdout.index("| chapter | status") :])  # the table, for the log
