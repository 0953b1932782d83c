"""Throughput benchmark for the training loop (chapter 01 explains why the data lives on the device).

    python -m course_lib.instructor.bench [--device cuda] [--steps 200] [--workers 2]

For chapter 02's MLP VAE (784-400-20) and conv VAE (latent 32) it trains the same model, batch size
and device three ways, in one run, and prints samples/s of each:

- ``course_lib``: :func:`course_lib.core.train.train_steps` on a :class:`~course_lib.data.images.TensorLoader`
  (data already on the device, shuffled by index);
- ``DataLoader``: the same ``train_steps`` fed by torchvision's ``FashionMNIST`` dataset with
  ``ToTensor()`` through a ``DataLoader`` (``--workers`` processes), the usual tutorial pipeline;
- ``compute only``: forward, backward and optimiser step on batches built beforehand, with no loop
  bookkeeping, the ceiling for any loop.

It reports course_lib / DataLoader (the speed-up) and course_lib / compute-only (1 - overhead).
Each way is timed in several interleaved rounds after a warm-up; the median round is reported.

Then the compute efficiency of one training step of the conv VAE: its FLOPs counted with
``torch.utils.flop_counter``, the achieved GFLOP/s eager and through ``torch.compile`` (with the
compile time; ``--no-compile`` skips it), and both as a fraction of this machine's measured float32
matrix-product peak (:func:`matmul_peak`).

    python -m course_lib.instructor.bench prepare [--images 1000] [--image-size 640x480] [--size 64]

times chapter 06's prepare step (:func:`course_lib.data.coco.prepare`) on synthetic scenes written as JPEGs
of COCO's typical size: images/s of the whole step with one worker and with all CPUs, images/s of
decoding alone with JPEG draft mode and with a full decode (one process), and the disk space per
1,000 prepared images, extrapolated to COCO val2017 (5,000) and train2017 (118,287).

Imports course_lib.core, course_lib.data and course_lib.models.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from course_lib.core.device import choose_device, seed_everything
from course_lib.core.losses import ELBO
from course_lib.core.train import amp_settings, train_steps
from course_lib.data.images import TensorLoader, fashion_mnist_root, load_fashion_mnist
from course_lib.models import conv_vae, mlp_vae

MODELS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "mlp": ("MLP VAE 784-400-20", lambda: mlp_vae(latent_dim=20, hidden=(400,))),
    "conv": ("conv VAE latent 32", lambda: conv_vae(latent_dim=32)),
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(run: Callable[[int], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` steps after ``warmup`` steps."""
    run(warmup)
    _synchronize(device)
    started = time.perf_counter()
    run(steps)
    _synchronize(device)
    return time.perf_counter() - started


def measure(
    model_name: str, device: torch.device, steps: int, warmup: int, batch_size: int, workers: int, rounds: int
) -> dict[str, float]:
    """Samples per second of the three pipelines for one model (instructor page; ``make bench``)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    loss_fn = ELBO()
    amp_dtype, use_scaler = amp_settings(device, amp=True)

    def fresh():
        seed_everything(0)
        model = MODELS[model_name][1]().to(device)
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        return model, torch.optim.Adam(model.parameters(), lr=1e-3), scaler

    images, labels = load_fashion_mnist("train", device=device)
    tensor_loader = TensorLoader(images, labels, batch_size, drop_last=True)
    dataset = datasets.FashionMNIST(str(fashion_mnist_root()), train=True, transform=transforms.ToTensor())
    data_loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    prebuilt = [images[i * batch_size : (i + 1) * batch_size] for i in range(warmup + steps)]

    def endless(loader):
        while True:
            yield from loader

    def course_lib_run():
        model, optimizer, scaler = fresh()
        batches = endless(tensor_loader)
        return lambda n: train_steps(model, itertools.islice(batches, n), loss_fn, optimizer, scaler, amp_dtype)

    def dataloader_run():
        model, optimizer, scaler = fresh()
        batches = endless(data_loader)
        return lambda n: train_steps(model, itertools.islice(batches, n), loss_fn, optimizer, scaler, amp_dtype)

    def compute_only_run():
        model, optimizer, scaler = fresh()
        model.train()

        def run(n):
            for x in prebuilt[:n]:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = loss_fn(model, x)["loss"]
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()

        return run

    pipelines = {"course_lib": course_lib_run, "DataLoader": dataloader_run, "compute only": compute_only_run}
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(rounds):  # interleaved, so machine noise hits every pipeline alike
        for name, make in pipelines.items():
            seconds[name].append(_timed(make(), steps, warmup, device))
    return {name: steps * batch_size / statistics.median(times) for name, times in seconds.items()}


REFERENCE_BATCH = 64
REFERENCE_STEPS = 60_000 // REFERENCE_BATCH + 1  # one epoch of Fashion-MNIST's training images: 938 steps


def reference_epoch(device: torch.device | str | None = None, steps: int = REFERENCE_STEPS, warmup: int = 5) -> float:
    """Seconds of one *reference epoch* on ``device`` (instructor page; ``make book``): chapter 02's conv
    VAE (latent 32, ELBO, Adam, the automatic mixed precision ``fit`` uses) over the 60,000 training
    images of Fashion-MNIST at batch 64, 938 steps. The unit the book's time budgets are stated in:
    machines differ about 2x in speed, reference epochs much less.

    ``steps`` < 938 times that many steps (after ``warmup``) and scales the time to a whole epoch: a
    quick estimate for tests and smoke runs."""
    device = choose_device(device)
    seed_everything(0)
    model = MODELS["conv"][1]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    amp_dtype, use_scaler = amp_settings(device, amp=True)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    images, _ = load_fashion_mnist("train", device=device)
    loader = TensorLoader(images, None, REFERENCE_BATCH, seed=0)

    def run(n: int) -> None:
        train_steps(model, itertools.islice(itertools.cycle(loader), n), ELBO(), optimizer, scaler, amp_dtype)

    steps = max(1, min(steps, REFERENCE_STEPS))
    return _timed(run, steps, warmup, device) * REFERENCE_STEPS / steps


def step_flops(model: nn.Module, images: Tensor) -> int:
    """FLOPs of one training step's forward and backward pass (``torch.utils.flop_counter``: matrix
    products and convolutions; the elementwise work and the optimiser's update are not counted; instructor page)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        ELBO()(model, images)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(device: torch.device, size: int | None = None, repeats: int = 10) -> float:
    """The machine's measured float32 matrix-product rate in GFLOP/s: the best of ``repeats`` products of
    two ``size`` x ``size`` matrices (2 size^3 FLOPs each), the ceiling a training step is compared with
    (instructor page)."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        _synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def achieved_gflops(
    device: torch.device, batch_size: int, steps: int, warmup: int, compiled: bool
) -> tuple[float, float, float]:
    """GFLOP/s achieved by training steps of chapter 02's conv VAE (float32, Adam) on random images,
    eager or through ``torch.compile``: ``(GFLOP/s, GFLOP per step, seconds spent compiling)`` (instructor page)."""
    seed_everything(0)
    model = MODELS["conv"][1]().to(device)
    images = torch.rand(batch_size, 1, 28, 28, device=device)
    flops = step_flops(model, images)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        ELBO()(model, images)["loss"].backward()
        optimizer.step()

    run_step = torch.compile(step) if compiled else step
    started = time.perf_counter()
    run_step()  # compiles, when compiled
    _synchronize(device)
    compile_seconds = time.perf_counter() - started if compiled else 0.0
    seconds = _timed(lambda n: [run_step() for _ in range(n)], steps, warmup, device)
    return flops * steps / seconds / 1e9, flops / 1e9, compile_seconds


def print_efficiency(device: torch.device, batch_size: int, steps: int, warmup: int, compile_too: bool) -> None:
    """The efficiency lines of ``make bench``: achieved GFLOP/s of a training step against the matmul peak
    (instructor page)."""
    peak = matmul_peak(device)
    print(f"\ncompute efficiency, chapter 02's conv VAE, batch {batch_size}, float32 (FLOPs: torch.utils.flop_counter)")
    print(f"  float32 matmul peak measured here: {peak:,.1f} GFLOP/s")
    for compiled in (False, True) if compile_too else (False,):
        rate, per_step, compile_seconds = achieved_gflops(device, batch_size, steps, warmup, compiled)
        how = f"compiled (compiling took {compile_seconds:.0f} s)" if compiled else "eager"
        print(f"  {how:<32}{rate:>9,.1f} GFLOP/s = {rate / peak:6.1%} of peak ({per_step:.2f} GFLOP per step)")


COCO_IMAGES = {"val2017": 5_000, "train2017": 118_287}


def _full_decode(path: Path, size: int):
    """The usual pipeline, for comparison: decode every pixel, then crop and resize."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BICUBIC)


def measure_prepare(
    n_images: int, image_size: tuple[int, int], size: int, workers: int, rounds: int, folder: Path
) -> dict[str, float]:
    """Images/s of prepare (1 and ``workers`` processes) and of decoding (draft vs full); bytes per image
    (instructor page)."""
    from course_lib.data.coco import load_image, prepare
    from course_lib.data.scenes import write_scenes

    write_scenes(folder, "val2017", n_images, image_size, seed=0, greyscale_fraction=0, workers=workers)
    paths = sorted((folder / "val2017").glob("*.jpg"))
    runs = itertools.count()

    def prepare_with(n_workers: int) -> Callable[[], None]:
        def run():
            with contextlib.redirect_stdout(io.StringIO()):  # the summary would drown the table
                prepare(folder, "val2017", folder / f"out{next(runs)}", size, workers=n_workers)

        return run

    ways = {
        "prepare, 1 worker": prepare_with(1),
        f"prepare, {workers} workers": prepare_with(workers),
        "decode, draft": lambda: [load_image(path, size) for path in paths],
        "decode, full": lambda: [_full_decode(path, size) for path in paths],
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):  # interleaved, so machine noise hits every way alike
        for name, run in ways.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    rates = {name: n_images / statistics.median(times) for name, times in seconds.items()}
    prepared = folder / "out0"
    rates["image bytes"] = (prepared / f"images_{size}.npy").stat().st_size / n_images
    rates["metadata bytes"] = (prepared / f"meta_{size}.json").stat().st_size / n_images
    return rates


def prepare_main(argv: list[str]) -> None:
    """``python -m course_lib.instructor.bench prepare``: the prepare step's speed and disk footprint
    (instructor page)."""
    from course_lib.data.coco import default_workers

    parser = argparse.ArgumentParser(
        prog="python -m course_lib.instructor.bench prepare",
        description="Speed and disk space of chapter 06's prepare step.",
    )
    parser.add_argument("--images", type=int, default=1000, help="synthetic JPEGs to write and prepare")
    parser.add_argument("--image-size", default="640x480", help="WIDTHxHEIGHT of the JPEGs (COCO's typical size)")
    parser.add_argument("--size", type=int, default=64, help="prepared side in pixels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = parser.parse_args(argv)
    image_size = tuple(int(part) for part in args.image_size.lower().split("x"))
    workers = args.workers or default_workers()

    # Other processes on the same CPUs cap the parallel speed-up (Windows has no load average).
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as folder:
        rate = measure_prepare(args.images, image_size, args.size, workers, args.rounds, Path(folder))
    print(
        f"{args.images:,} synthetic {args.image_size} JPEGs -> {args.size}x{args.size}, {workers} CPUs "
        f"(load average {load:.1f} before), median of {args.rounds} rounds, files in the page cache"
    )
    for name in ("prepare, 1 worker", f"prepare, {workers} workers", "decode, draft", "decode, full"):
        print(f"  {name:<24}{rate[name]:>8,.0f} images/s")
    print(
        f"  speed-up: {rate[f'prepare, {workers} workers'] / rate['prepare, 1 worker']:.2f}x with {workers} workers, "
        f"{rate['decode, draft'] / rate['decode, full']:.2f}x from draft mode"
    )
    per_1000 = {kind: rate[f"{kind} bytes"] * 1000 / 1e6 for kind in ("image", "metadata")}
    print(
        f"  disk per 1,000 images: {per_1000['image']:.1f} MB images + {per_1000['metadata']:.2f} MB metadata "
        "(captions, labels; scenes also store their attributes)"
    )
    for split, n in COCO_IMAGES.items():
        print(
            f"  COCO {split} ({n:,} images): {per_1000['image'] * n / 1000:,.0f} MB images "
            f"+ {per_1000['metadata'] * n / 1000:,.0f} MB metadata"
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m course_lib.instructor.bench`` (``make bench``): the training loop's throughput, or with
    ``prepare`` the prepare step's (instructor page)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        return prepare_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--steps", type=int, default=150, help="timed optimisation steps per round")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ",".join(MODELS))
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile efficiency line")
    args = parser.parse_args(argv)

    device = choose_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(
        f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"{args.steps} steps x {args.rounds} rounds, DataLoader workers {args.workers}"
    )
    header = f"{'model':<22}{'course_lib':>12}{'DataLoader':>12}{'compute only':>14}{'speed-up':>10}{'overhead':>10}"
    print(header + "\n" + "-" * len(header))
    for model_name in args.models.split(","):
        rate = measure(model_name.strip(), device, args.steps, args.warmup, args.batch_size, args.workers, args.rounds)
        speedup = rate["course_lib"] / rate["DataLoader"]
        overhead = 1 - rate["course_lib"] / rate["compute only"]
        print(
            f"{MODELS[model_name.strip()][0]:<22}{rate['course_lib']:>12,.0f}{rate['DataLoader']:>12,.0f}{rate['compute only']:>14,.0f}"
            f"{speedup:>9.2f}x{overhead:>10.1%}"
        )
    print("samples/s; speed-up = course_lib / DataLoader; overhead = 1 - course_lib / compute only")
    print_efficiency(device, args.batch_size, args.steps, args.warmup, compile_too=not args.no_compile)


if __name__ == "__main__":
    main()
