"""One training loop for every chapter (introduced in chapter 01, extended in chapter 02).

``fit`` trains any model whose loss function returns a dict with a ``"loss"`` entry. Each epoch it
evaluates on held-out data, calls the callbacks (e.g. :class:`Snapshots` for a GIF of training),
writes a checkpoint atomically, and on re-run resumes from that checkpoint.

Imports course_lib.core (device, io, losses, profiles) and course_lib.models (cvae), never a higher layer.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from course_lib.core.device import choose_device, seed_everything
from course_lib.core.dry_run import (
    DRY_RUN_EPOCHS,
    FirstBatches,
    device_memory,
    dry_run_checkpoint,
    dry_run_steps,
    report_memory,
)
from course_lib.core.io import CheckpointError, absolute_folder, cache_dir, load_checkpoint, save_checkpoint
from course_lib.core.losses import active_units
from course_lib.core.profiles import show_progress
from course_lib.models.cvae import conditioning

LossFn = Callable[[nn.Module, Tensor, Tensor | None], dict[str, Tensor]]
Batches = Iterable[tuple[Tensor, Tensor | None]]
Callback = Callable[[int, nn.Module], None]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite (:func:`fit` raises it, chapter 01; chapter 06 meets it)."""


class PosteriorCollapseWarning(UserWarning):
    """Almost no latent dimension carries information about the input (chapter 07)."""


@contextmanager
def expected_warnings(category: type[Warning]) -> Iterator[list[warnings.WarningMessage]]:
    """Catch the warnings of ``category`` that a cell expects, so that the chapter shows them as part
    of the lesson instead of as stray stderr (chapter 07 trains report 000's collapsing loss on
    purpose). Every warning of another category is issued again as usual, so an unexpected one still
    reaches stderr and fails the book build.

        with expected_warnings(PosteriorCollapseWarning) as caught:
            fit(...)
        for warning in caught:
            print(f"{warning.category.__name__}: {warning.message}")
    """
    expected: list[warnings.WarningMessage] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        yield expected
    for warning in caught:
        if issubclass(warning.category, category):
            expected.append(warning)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno, source=warning.source
            )


def checkpoint_path(name: str, profile_name: str, **defines: object) -> Path:
    """Where a chapter keeps the checkpoint of one model: one folder per profile, so a ``smoke`` run
    never resumes from a ``cpu`` one (chapter 01). Delete the file (or the folder) to retrain from scratch.

    One naming scheme for every chapter: ``name`` says which chapter trains what (``"ch04_mlp_vae"``),
    and the keyword arguments are what defines the run, written sorted into the file name
    (``ch04_mlp_vae-latent_dim=20.pt``). ``fit`` also stores a signature of the model, loss and
    optimiser in the file and refuses to resume a different run from it. A later chapter that reuses a
    model calls the recipe that trains it (:mod:`course_lib.recipes`), never this with another
    chapter's name.

    The folder is ``cache_dir()/checkpoints``, or ``$COURSE_CHECKPOINT_DIR`` when that is set
    (``make book-check`` points it at an empty folder so that every model trains from scratch while
    the data and the judges stay cached)."""
    if not re.fullmatch(r"ch\d\d_[a-z0-9_]+", name):
        raise ValueError(
            f"Checkpoint name {name!r}: start with the chapter (ch01_ .. ch99_) and use lower-case "
            "letters, digits and underscores; pass what defines the run as keyword arguments."
        )
    parts = [name] + [f"{key}={_file_safe(value)}" for key, value in sorted(defines.items())]
    root = absolute_folder("COURSE_CHECKPOINT_DIR", cache_dir() / "checkpoints")
    return root / profile_name / f"{'-'.join(parts)}.pt"


def _file_safe(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", str(value))


def amp_settings(device: torch.device, amp: bool | str) -> tuple[torch.dtype | None, bool]:
    """Mixed precision on CUDA only (chapter 01): ``amp=True`` takes bfloat16 where the GPU supports it,
    else float16 with a gradient scaler; ``"bfloat16"`` or ``"float16"`` asks for one of them (``make
    gpu-check`` trains with both). Returns ``(autocast dtype or None, whether a GradScaler is needed)``."""
    if not (isinstance(amp, bool) or amp in ("bfloat16", "float16")):
        raise ValueError(f"amp={amp!r}: use True (automatic), False (float32), 'bfloat16' or 'float16'.")
    if amp is False or device.type != "cuda":
        return None, False
    if amp == "float16" or (amp is True and not torch.cuda.is_bf16_supported()):
        return torch.float16, True
    if not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"{torch.cuda.get_device_name(device)} has no bfloat16: train with amp='float16' (with a gradient "
            "scaler) or amp=True, which picks it."
        )
    return torch.bfloat16, False


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


def train_steps(
    model: nn.Module,
    batches: Batches,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: Any = None,
    check_every: int = 50,
) -> dict[str, float]:
    """One pass of optimisation steps; returns each loss term averaged over the images seen (chapter 01).

    Loss terms are summed on the device and read back every ``check_every`` steps only, so the GPU is
    not forced to wait for the CPU after every step.
    """
    model.train()
    device = next(model.parameters()).device
    names: list[str] = []
    sums, n_images = None, 0
    for step, (x, y) in enumerate(batches, start=1):
        x = x.to(device, non_blocking=True)
        y = None if y is None else y.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            terms = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(terms["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            terms["loss"].backward()
            optimizer.step()
        if sums is None:
            names = list(terms)
            sums = torch.zeros(len(names), device=device)
        sums += torch.stack([terms[k].detach().float() for k in names]) * len(x)
        n_images += len(x)
        if progress is not None:
            progress.update(1)
        if step % check_every == 0 and not torch.isfinite(sums).all():
            raise TrainingDivergedError(_diverged_message(step))
    if sums is None:
        raise ValueError("The training data yielded no batches: is the data set empty?")
    if not torch.isfinite(sums).all():
        raise TrainingDivergedError(_diverged_message(n_images))
    return {name: value / n_images for name, value in zip(names, sums.tolist())}


def _diverged_message(where: int) -> str:
    return (
        f"The loss became NaN or infinite (within the last steps before {where}). Lower the learning "
        "rate, check that the images are scaled to [0, 1], or train with amp=False. The last "
        "checkpoint (previous epoch) is intact; delete it to start over."
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Batches, loss_fn: LossFn, amp_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Average every loss term over all images of ``data``; for a VAE add its active units (chapter 01)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    n_images = 0
    for x, y in data:
        x = x.to(device)
        y = None if y is None else y.to(device)
        with _autocast(device, amp_dtype):
            terms = loss_fn(model, x, y)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(x)
        n_images += len(x)
    result = {name: value / n_images for name, value in sums.items()}
    if hasattr(model, "reparameterize"):
        result["active_units"] = active_units(encode_dataset(model, data)[0])
    model.train(was_training)
    return result


class Snapshots:
    """Images made from a fixed input after every epoch: the frames of a training GIF (chapter 02).

    Use :meth:`reconstructions` to re-encode a fixed evaluation batch, or :meth:`samples` to decode a
    fixed set of latent vectors. Frames are saved in checkpoints, so a resumed run keeps them.
    """

    def __init__(self, make_images: Callable[[nn.Module], Tensor], nrow: int = 8) -> None:
        self.make_images, self.nrow = make_images, nrow
        self.frames: list[Tensor] = []  # uint8 [3, H, W] grids on the CPU

    @classmethod
    def reconstructions(cls, images: Tensor, labels: Tensor | None = None, nrow: int = 8) -> Snapshots:
        """Re-encode a fixed batch (a conditional model also needs its ``labels``)."""
        return cls(
            lambda model: model.reconstruct(images.to(next(model.parameters()).device), *conditioning(model, labels)),
            nrow,
        )

    @classmethod
    def samples(cls, z: Tensor, labels: Tensor | None = None, nrow: int = 8) -> Snapshots:
        """Decode fixed latent vectors (a conditional model also needs the ``labels`` to draw). For a
        model with a learned prior p(z | c) (chapter 06), ``z`` is the standard-normal noise that the
        prior shifts and scales for each label."""

        def draw(model: nn.Module) -> Tensor:
            codes = z.to(next(model.parameters()).device)
            if hasattr(model, "sample_latent"):  # a CVAE: its prior maps the noise (N(0, I): unchanged)
                codes = model.sample_latent(labels, noise=codes)
            return model.decode(codes, *conditioning(model, labels))

        return cls(draw, nrow)

    def __call__(self, epoch: int, model: nn.Module) -> None:
        grid = make_grid(self.make_images(model).float().clamp(0, 1).cpu(), nrow=self.nrow, padding=2, pad_value=1)
        self.frames.append((grid * 255).round().to(torch.uint8))

    def state_dict(self) -> dict[str, list[Tensor]]:
        return {"frames": self.frames}

    def load_state_dict(self, state: dict[str, list[Tensor]]) -> None:
        self.frames = list(state["frames"])


def _signature(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer, seed: int) -> dict[str, Any]:
    """What must match for a checkpoint to continue this run (a changed learning rate would otherwise
    be silently replaced by the saved optimiser's)."""
    # Memory addresses ("<function my_loss at 0x7f...>") change in every session: leave them out.
    return {
        "model": type(model).__name__,
        "loss": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(loss_fn)),
        "seed": seed,
        "optimizer": [type(optimizer).__name__, *(group["lr"] for group in optimizer.param_groups)],
        "shapes": {name: list(p.shape) for name, p in model.state_dict().items()},
    }


def _difference(key: str, saved: Any, now: Any) -> str:
    """One part of a signature, saved against now, in words (for the mismatch message of :func:`fit`)."""
    if key == "shapes" and isinstance(saved, dict):
        changed = [name for name in now if saved.get(name) != now[name]] + [name for name in saved if name not in now]
        shown = ", ".join(f"{name} {saved.get(name, 'absent')} -> {now.get(name, 'absent')}" for name in changed[:3])
        return f"layer shapes differ ({len(changed)} tensors, e.g. {shown})"
    if key == "optimizer" and isinstance(saved, list) and saved[:1] == now[:1]:
        return f"learning rate {', '.join(map(str, saved[1:]))} saved, {', '.join(map(str, now[1:]))} now"
    return f"{key} {saved!r} saved, {now!r} now"


def _restore(
    path: Path,
    state: dict[str, Any],
    expected: dict[str, Any],
    model: nn.Module,
    optimizer,
    scaler,
    train_data,
    callbacks: Sequence[Callback],
) -> None:
    saved = state.get("signature", {})
    if saved != expected:
        differences = [_difference(key, saved.get(key), now) for key, now in expected.items() if saved.get(key) != now]
        raise CheckpointError(
            f"Checkpoint {path} was written for a different run: "
            f"{'; '.join(differences) or 'it was written by an older course_lib'}. "
            "Delete it, or pass another checkpoint path for this configuration."
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if hasattr(train_data, "load_state_dict") and "data" in state:
        train_data.load_state_dict(state["data"])
    for callback, callback_state in zip(callbacks, state.get("callbacks", [])):
        if hasattr(callback, "load_state_dict") and callback_state is not None:
            callback.load_state_dict(callback_state)
    torch.set_rng_state(state["rng_cpu"].cpu())
    if torch.cuda.is_available() and "rng_cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])


def fit(
    model: nn.Module,
    train_data: Batches,
    loss_fn: LossFn,
    epochs: int,
    *,
    test_data: Batches | None = None,
    lr: float = 2e-3,
    optimizer: torch.optim.Optimizer | None = None,
    checkpoint: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    amp: bool | str = True,
    seed: int = 0,
    collapse_fraction: float = 0.1,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` epochs and return the history table (one row per epoch; chapter 01).

    - ``train_data`` / ``test_data``: iterables of ``(images, labels)`` batches, e.g. a
      :class:`~course_lib.data.images.TensorLoader` (moved to the training device) or a ``DataLoader``.
    - ``loss_fn(model, x, y)`` returns a dict of scalar tensors with the key ``"loss"``.
    - ``checkpoint``: a file written after every epoch; if it exists, training resumes from it, and a
      finished run is simply loaded. Optimiser, data order, random state and callbacks are restored,
      so a resumed run matches an uninterrupted one.
    - A NaN loss raises :class:`TrainingDivergedError`; a VAE with fewer than ``collapse_fraction``
      of its latent dimensions active warns with :class:`PosteriorCollapseWarning`.
    - The default optimiser (Adam, ``lr``) only holds the parameters with ``requires_grad``.
    - ``amp``: mixed precision on CUDA (:func:`amp_settings`): ``True`` picks bfloat16, or float16 with a
      gradient scaler; ``"bfloat16"`` / ``"float16"`` choose; ``False`` trains in float32.
    """
    _check_settings(epochs, lr)
    device = choose_device(device)
    model.to(device)
    if hasattr(train_data, "to"):
        train_data.to(device)
    if test_data is not None and hasattr(test_data, "to"):
        test_data.to(device)
    _check_data_range(train_data)
    optimizer = optimizer or torch.optim.Adam(trainable_parameters(model), lr=lr)
    amp_dtype, use_scaler = amp_settings(device, amp)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    seed_everything(seed)
    signature = _signature(model, loss_fn, optimizer, seed)

    rows: list[dict[str, float]] = []
    path = Path(checkpoint) if checkpoint is not None else None
    dry_steps = dry_run_steps()
    if dry_steps:  # a few steps at the profile's sizes, checkpointed beside the real model (instructor page)
        epochs, path = min(epochs, DRY_RUN_EPOCHS), dry_run_checkpoint(path)
    if path is not None and path.exists():
        # On the CPU: the loader's generator state and the snapshot frames must stay there;
        # load_state_dict moves model and optimiser tensors to the device.
        state = load_checkpoint(path, map_location="cpu")
        _restore(path, state, signature, model, optimizer, scaler, train_data, callbacks)
        rows = list(state["history"])
        if verbose and len(rows) > epochs:
            print(
                f"{path} holds a model trained for {len(rows)} epochs (more than the {epochs} asked for); "
                f"using it as it is. Delete the file to train for exactly {epochs} epochs."
            )
        elif verbose:
            print(f"Resumed from {path} after epoch {len(rows)} of {epochs}.")

    warned = False
    train_batches = FirstBatches(train_data, dry_steps) if dry_steps else train_data
    test_batches = FirstBatches(test_data, dry_steps) if dry_steps and test_data is not None else test_data
    steps_per_epoch = len(train_batches) if hasattr(train_batches, "__len__") else None
    for epoch in range(len(rows) + 1, epochs + 1):
        started = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not show_progress())
        with bar:
            train_terms = train_steps(model, train_batches, loss_fn, optimizer, scaler, amp_dtype, progress=bar)
        if dry_steps and epoch == 1:
            _report_dry_run_memory(model, train_data, test_data, loss_fn, optimizer)
        row: dict[str, float] = {"epoch": epoch, **{f"train_{k}": v for k, v in train_terms.items()}}
        if test_batches is not None:
            test_terms = evaluate(model, test_batches, loss_fn, amp_dtype)
            row.update({(k if k == "active_units" else f"test_{k}"): v for k, v in test_terms.items()})
        model.eval()
        with torch.no_grad():
            for callback in callbacks:
                callback(epoch, model)
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        if verbose:
            tqdm.write(_epoch_line(row, epochs))
        # a dry run's few steps leave any VAE collapsed: no warning means anything there
        warned = warned or dry_steps > 0 or _warn_on_collapse(model, row, epoch, collapse_fraction)
        if path is not None:
            save_checkpoint(
                {
                    "signature": signature,
                    "epoch": epoch,
                    "history": rows,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                    **({"data": train_data.state_dict()} if hasattr(train_data, "state_dict") else {}),
                    "callbacks": [c.state_dict() if hasattr(c, "state_dict") else None for c in callbacks],
                    "rng_cpu": torch.get_rng_state(),
                    **({"rng_cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
                },
                path,
            )
    model.eval()
    return pd.DataFrame(rows).set_index("epoch")


def _report_dry_run_memory(
    model: nn.Module, train_data: Batches, test_data: Batches | None, loss_fn: LossFn, optimizer: torch.optim.Optimizer
) -> None:
    """A dry run's estimate of the device memory this training needs (:mod:`course_lib.core.dry_run`)."""
    device = next(model.parameters()).device
    x, y = next(iter(train_data))
    x, y = x.to(device), None if y is None else y.to(device)
    model.train()
    megabytes = device_memory(model, optimizer, lambda: loss_fn(model, x, y)["loss"], [train_data, test_data])
    report_memory(model, len(x), megabytes)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that get gradients: what the optimiser updates. A frozen part (chapter 07's
    stage-1 VAE inside the two-stage model) stays out, so no optimiser state is kept for it."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"{type(model).__name__} has no trainable parameter (all have requires_grad=False).")
    return parameters


def _check_settings(epochs: object, lr: object) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(
            f"epochs must be a whole number of at least 1, got {epochs!r} "
            "(in papermill: -p epochs 5, a number without quotes)."
        )
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number such as 1e-3, got {lr!r}.")


def _check_data_range(data: Batches) -> None:
    images = getattr(data, "images", None)
    if images is None or images.dim() != 4:  # only image batches [N, C, H, W]; e.g. token features are not
        return
    if len(images) == 0:
        raise ValueError("The training data holds no images: check the data set or the subset you selected.")
    missing = torch.isnan(images)
    if missing.any():
        first = int(missing.flatten(1).any(1).nonzero()[0])
        raise ValueError(
            f"The images contain {int(missing.sum()):,} NaN values (the first in image {first}): the data is "
            "broken, not the learning rate. Rebuild or re-download it, or drop those images."
        )
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"Images range over [{low:.3g}, {high:.3g}] but the models decode through a sigmoid "
            "into [0, 1]. Scale the images to [0, 1] (uint8 / 255) and do not normalise them."
        )


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"train loss {row['train_loss']:.2f}"]
    if "test_loss" in row:
        parts.append(f"test loss {row['test_loss']:.2f}")
    if "test_kl" in row:
        parts.append(f"test KL {row['test_kl']:.2f}")
    if "active_units" in row:
        parts.append(f"active units {int(row['active_units'])}")
    parts.append(f"{row['seconds']:.1f} s")
    return " | ".join(parts)


def _warn_on_collapse(model: nn.Module, row: dict[str, float], epoch: int, fraction: float) -> bool:
    if "active_units" not in row or epoch < 2:
        return False
    latent_dim = getattr(model, "latent_dim", None) or 1
    if row["active_units"] >= max(1.0, fraction * latent_dim):
        return False
    warnings.warn(
        f"Posterior collapse: only {int(row['active_units'])} of {latent_dim} latent dimensions are "
        "active, so the decoder ignores z. The KL term dominates the reconstruction term: lower "
        "beta, sum (not average) the reconstruction error over pixels, or use a smaller sigma.",
        PosteriorCollapseWarning,
        stacklevel=3,
    )
    return True


@torch.no_grad()
def encode_dataset(
    model: nn.Module, data: Iterable[tuple[Tensor, Tensor | None]], sample: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Encode every batch of ``data``: ``(codes [N, D], labels [N])`` on the CPU.

    For a VAE the code is the posterior mean, or with ``sample=True`` one draw z ~ q(z|x): the kind
    of code its decoder was trained on (chapter 02).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    codes, labels = [], []
    for x, y in data:
        code = model.encode(x.to(device), *conditioning(model, y))
        if isinstance(code, tuple):  # VAE: (mu, logvar)
            code = model.reparameterize(*code) if sample else code[0]
        codes.append(code.float().cpu())
        if y is not None:
            labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(codes), (torch.cat(labels) if labels else None)


@torch.no_grad()
def image_posteriors(vae: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Stage 2's targets (chapter 07): ``[mu, logvar]`` of q(z|x) for every image, ``[N, 2 * latent]`` on the CPU.

    Computed once with the frozen encoder in ``eval()``, batch by batch on the model's device.
    """
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    out = [
        torch.cat(vae.encode(images[i : i + batch_size].to(device)), dim=1).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    vae.train(was_training)
    return torch.cat(out)


class EpochScheduler:
    """Steps a learning-rate scheduler after every epoch of :func:`course_lib.core.train.fit` (a callback).

    Its state goes into fit's checkpoints, so a resumed training continues the same schedule. The judges of
    chapters 04 and 06 (the Fashion-MNIST classifier, the scene reader) train with it.
    """

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler

    def __call__(self, epoch: int, model: nn.Module) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm uses its running statistics, no dropout) and no gradients (the judges of
    chapters 04 and 06)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
