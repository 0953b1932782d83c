"""Device choice and seeding (introduced in chapter 01).

Imports only the standard library, numpy and torch: no other part of course_lib.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def choose_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU (chapter 01).

    Passing ``preferred`` ("cuda", "mps", "cpu") insists on that device and explains how to get it
    when it is not there, instead of failing deep inside PyTorch.
    """
    if preferred is not None:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                "CUDA was requested but this machine has no usable CUDA GPU "
                "(torch.cuda.is_available() is False). On Colab choose Runtime > "
                "Change runtime type > GPU; elsewhere pass device='cpu' or leave it "
                "unset to pick the best device automatically."
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(
                "MPS was requested but is not available (Apple silicon with macOS 12.3+ "
                "is needed). Pass device='cpu' or leave it unset."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated (chapter 01)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
