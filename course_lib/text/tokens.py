"""Frozen token features of a text encoder, computed once and kept on disk (chapter 07).

Imports torch and course_lib.core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.core.io import cache_dir, write_atomic


def cached_token_features(encoder, texts: Sequence[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """``encoder.token_features(texts)``, stored once on disk per encoder and list of texts (chapter 07).

    Kept as float16 (relative error about 1e-3, ample for training stage 2); the first call returns
    the same rounded values as later ones, so a re-run trains on exactly the same inputs.
    """
    digest = hashlib.sha1("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = cache_dir() / "token_features" / encoder.key / f"{len(texts)}-{digest}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            return stored["features"].float(), stored["mask"]
        except Exception as error:  # stray or truncated bytes: nothing is lost by computing them again
            print(f"note: the token-feature cache {path} is damaged ({type(error).__name__}); computing it again.")
    features, mask = encoder.token_features(texts, batch_size)
    stored = {"features": features.half(), "mask": mask}
    write_atomic(path, lambda file: torch.save(stored, file))
    return stored["features"].float(), mask
