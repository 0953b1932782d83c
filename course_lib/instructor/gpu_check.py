"""One prepared check of the CUDA paths, for a bare GPU machine: ``make gpu-check`` (instructor page).

    PYTHONPATH=. python -m course_lib.instructor.gpu_check --fashion-mnist DIR [--device cuda]

It needs only what a GPU machine's Python usually has (torch, torchvision, torchmetrics, transformers,
pandas, matplotlib), course_lib from the working tree on ``PYTHONPATH``, no network, and a folder
``DIR`` holding Fashion-MNIST's four IDX files (30 MB). In one run, under 8 minutes on one GPU, it:

1. runs the throughput benchmark (:mod:`course_lib.instructor.bench`) on the device: samples/s of
   the course's loop, a ``DataLoader`` loop and the bare compute, and their ratios;
2. trains chapter 02's conv VAE (latent 32) at the ``gpu`` profile's sizes (all 60,000 training
   images, its batch size and epochs) with ``fit``, as chapter 02 does, but as a script;
3. checks that a run interrupted after one epoch and resumed from its checkpoint on CUDA ends with
   the same weights as an uninterrupted one;
4. trains the same model in float32, in bfloat16 autocast, and in float16 autocast with a gradient
   scaler, a few epochs each, and compares seconds per epoch and held-out loss;

and prints one summary table. ``--device cpu --quick`` runs every step at toy sizes on a CPU (the AMP
rows then say that autocast runs on CUDA only): the test suite does that, so the script stays working
where no GPU is.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from course_lib.core.device import choose_device, seed_everything
from course_lib.core.io import load_checkpoint
from course_lib.core.losses import ELBO
from course_lib.core.profiles import PROFILES
from course_lib.core.train import fit
from course_lib.data.images import TensorLoader, load_fashion_mnist
from course_lib.instructor import bench
from course_lib.models import conv_vae

LATENT_DIM = 32  # chapter 02's main conv VAE


def _loaders(device: torch.device, batch_size: int, train_size: int | None) -> tuple[TensorLoader, TensorLoader]:
    train_images, train_labels = load_fashion_mnist("train", size=train_size, device=device)
    test_images, test_labels = load_fashion_mnist("test", size=None if train_size is None else 1_000, device=device)
    return (
        TensorLoader(train_images, train_labels, batch_size, seed=0),
        TensorLoader(test_images, test_labels, 512, shuffle=False),
    )


def _train(device, loaders, epochs: int, amp: bool | str = True, checkpoint: Path | None = None) -> pd.DataFrame:
    """Chapter 02's conv VAE, trained as the chapter trains it (``fit``, ELBO, Adam 2e-3, seed 0)."""
    seed_everything(0)  # the same initial weights on every call
    return fit(
        conv_vae(latent_dim=LATENT_DIM),
        loaders[0],
        ELBO(),
        epochs,
        test_data=loaders[1],
        device=device,
        amp=amp,
        checkpoint=checkpoint,
        verbose=False,
    )


def _row(step: str, history: pd.DataFrame, **extra) -> dict:
    seconds = history["seconds"]
    per_epoch = seconds.iloc[1:].mean() if len(seconds) > 1 else seconds.iloc[0]  # epoch 1 holds the warm-up
    return {
        "step": step,
        "epochs": len(history),
        "s / epoch": round(float(per_epoch), 2),
        "held-out -ELBO": round(float(history["test_loss"].iloc[-1]), 2),
    } | extra


def benchmark_rows(device: torch.device, quick: bool) -> list[dict]:
    """Step 1: the benchmark's samples/s of chapter 02's two models on ``device`` (instructor page)."""
    settings = (
        dict(steps=3, warmup=1, rounds=1, workers=0) if quick else dict(steps=150, warmup=20, rounds=5, workers=2)
    )
    batch_size = 8 if quick else 128
    rows = []
    for name in bench.MODELS:
        rates = bench.measure(name, device, batch_size=batch_size, **settings)
        rows.append(
            {
                "step": f"benchmark: {bench.MODELS[name][0]}, batch {batch_size}",
                "samples/s (course loop)": round(rates["course_lib"]),
                "samples/s (DataLoader)": round(rates["DataLoader"]),
                "course / DataLoader": round(rates["course_lib"] / rates["DataLoader"], 2),
                "course / compute only": round(rates["course_lib"] / rates["compute only"], 2),
            }
        )
    return rows


def profile_row(device: torch.device, quick: bool) -> dict:
    """Step 2: chapter 02's conv VAE at the gpu profile's sizes (``--quick``: 2,000 images, 2 epochs)."""
    gpu = PROFILES["gpu"]  # its sizes; get_profile("gpu") refuses a machine without a GPU
    epochs, batch_size = (2, 16) if quick else (gpu.epochs, gpu.batch_size)
    loaders = _loaders(device, batch_size, 2_000 if quick else None)
    started = time.perf_counter()
    history = _train(device, loaders, epochs)
    return _row(
        f"chapter 02 conv VAE, gpu profile ({len(loaders[0].images):,} images, batch {batch_size})",
        history,
        **{"wall s": round(time.perf_counter() - started, 1)},
    )


def resume_row(device: torch.device, quick: bool, folder: Path) -> dict:
    """Step 3: one epoch, stop, resume for the second, against two epochs in one go: the same weights
    (instructor page)."""

    def loaders():  # fresh ones for each run: a loader's shuffling state moves on as it is used
        return _loaders(device, 16 if quick else 128, 2_000 if quick else 10_000)

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # same kernels both times
    straight = _train(device, loaders(), 2, checkpoint=folder / "straight.pt")
    _train(device, loaders(), 1, checkpoint=folder / "resumed.pt")  # the "interrupted" run ...
    resumed = _train(device, loaders(), 2, checkpoint=folder / "resumed.pt")  # ... picked up where it stopped
    a = load_checkpoint(folder / "straight.pt", map_location="cpu")["model"]
    b = load_checkpoint(folder / "resumed.pt", map_location="cpu")["model"]
    difference = max(float((a[key].float() - b[key].float()).abs().max()) for key in a)
    same_loss = abs(float(straight["test_loss"].iloc[-1]) - float(resumed["test_loss"].iloc[-1]))
    return _row(
        "resume after epoch 1 (vs 2 epochs straight)",
        resumed,
        **{"result": "same weights" if difference < 1e-4 else "DIFFERENT", "max |weight diff|": f"{difference:.1e}"},
        **{"|loss diff|": f"{same_loss:.1e}"},
    )


def amp_rows(device: torch.device, quick: bool) -> list[dict]:
    """Step 4: float32, bfloat16 autocast, float16 autocast with a GradScaler, same model and data
    (instructor page)."""
    epochs = 2 if quick else 5
    loaders = _loaders(device, 16 if quick else 128, 2_000 if quick else None)
    rows = []
    for name, amp in (
        ("float32", False),
        ("bfloat16 autocast", "bfloat16"),
        ("float16 autocast + GradScaler", "float16"),
    ):
        if amp and device.type != "cuda":
            rows.append({"step": f"AMP: {name}", "result": "skipped: autocast runs on CUDA only"})
            continue
        if amp == "bfloat16" and not torch.cuda.is_bf16_supported():
            rows.append(
                {"step": f"AMP: {name}", "result": f"skipped: {torch.cuda.get_device_name(device)} has no bf16"}
            )
            continue
        rows.append(_row(f"AMP: {name}", _train(device, loaders, epochs, amp=amp)))
    return rows


def environment_line(device: torch.device) -> str:
    """The first line of the check: torch, the device by name, Python (instructor page)."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return f"torch {torch.__version__} on {where}; python {sys.version.split()[0]}"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """``python -m course_lib.instructor.gpu_check`` (``make gpu-check``): the four steps and the summary
    table, which it also returns (instructor page)."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.instructor.gpu_check",
        description="The course's CUDA paths in one run: benchmark, gpu-profile training, resume, AMP.",
    )
    parser.add_argument(
        "--fashion-mnist", type=Path, required=True, help="folder with the four Fashion-MNIST IDX files"
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu, with --quick, to test the script")
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(
            "no CUDA device here (torch.cuda.is_available() is False): run make gpu-check on a GPU machine, "
            "or check the script on this one with --device cpu --quick."
        )
    if not args.fashion_mnist.is_dir():
        parser.error(
            f"--fashion-mnist {args.fashion_mnist}: no such folder; give the folder holding the four IDX files."
        )
    os.environ["COURSE_DATA_DIR"] = str(args.fashion_mnist.resolve())  # where load_fashion_mnist looks first
    device = choose_device(args.device)
    print(environment_line(device), flush=True)
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["COURSE_CHECKPOINT_DIR"] = folder  # nothing of this run is left behind
        steps = [
            ("benchmark", lambda: benchmark_rows(device, args.quick)),
            ("gpu profile", lambda: [profile_row(device, args.quick)]),
            ("resume", lambda: [resume_row(device, args.quick, Path(folder))]),
            ("AMP", lambda: amp_rows(device, args.quick)),
        ]
        for name, step in steps:
            step_started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                rows += step()
            print(f"  {name}: {time.perf_counter() - step_started:.0f} s", flush=True)
    table = pd.DataFrame(rows).set_index("step").astype(object).fillna("")
    print(table.to_string())
    print(f"gpu-check: {time.perf_counter() - started:.0f} s in all")
    return table


if __name__ == "__main__":
    main()
