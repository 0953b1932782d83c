"""Caption-image pairs for training on captions (chapter 07).

Imports numpy and torch only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def caption_pairs(
    captions: Sequence[Sequence[str]], per_image: int | None = 1, seed: int = 0
) -> tuple[list[str], Tensor]:
    """Pick ``per_image`` captions of every image (all with ``None``), seeded (chapter 07).

    Returns ``(texts, owners)``: ``owners[i]`` is the index of the image that ``texts[i]`` describes.
    """
    rng = np.random.default_rng(seed)
    texts, owners = [], []
    for index, options in enumerate(captions):
        chosen = (
            list(options)
            if per_image is None or per_image >= len(options)
            else [options[i] for i in sorted(rng.choice(len(options), per_image, replace=False))]
        )
        texts += chosen
        owners += [index] * len(chosen)
    return texts, torch.tensor(owners, dtype=torch.long)
