"""Stand-in pretrained weights, tiny and random, saved in the formats the real sources deliver.

The chapters load ``bert-base-uncased`` and CLIP's weights from the Hugging Face hub (or its cache).
CI has no network, so these writers put tiny random models where the hub cache would put the real
ones, in the files the hub serves:

* :func:`save_tiny_bert`: ``BertModel.save_pretrained`` + a WordPiece tokenizer (what
  ``bert-base-uncased`` is on the hub), loaded by ``transformers``' ``from_pretrained``.
* :func:`save_tiny_open_clip`: ``open_clip_config.json`` + ``open_clip_model.safetensors`` (what
  open_clip's ``push_to_hf_hub`` uploads, e.g. LAION's CLIPs), loaded by
  ``open_clip.create_model("hf-hub:org/name")``; CLIP's real BPE tokenizer.
* :func:`save_tiny_transformers_clip`: ``CLIPModel`` + ``CLIPProcessor`` saved with
  ``save_pretrained`` (what ``openai/clip-vit-base-patch32`` is on the hub), loaded by torchmetrics'
  CLIPScore.
* :func:`hub_snapshot`: the hub cache's layout, ``models--org--name/refs/main`` and
  ``snapshots/<commit>/``, where ``from_pretrained`` and ``hf_hub_download`` look when offline.

Every number these models produce is meaningless: they exist so that the code paths the chapters
take with real weights execute in CI.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch

LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
WORDS = (
    "a an the cat dog man woman car bus tree street road table bowl of on in with near next to is are "
    "sits rides red green small big riding parked busy city soup . , ! ?"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
BERT_ID = "bert-base-uncased"  # the chapters' default BERT
CLIP_SCORE_ID = "openai/clip-vit-base-patch32"  # course_lib.evaluation.metrics.CLIP_SCORE_MODEL
OPEN_CLIP_ID = "course-tests/tiny-open-clip"  # an open_clip model on the hub: clip_model="hf-hub:" + this
OPENAI_CLIP_ID = "timm/vit_base_patch32_clip_224.openai"  # where open_clip fetches ViT-B-32 "openai" from


def wordpiece_vocab(words: Iterable[str] = WORDS) -> list[str]:
    """Special tokens, every letter alone and as a ``##`` continuation (so any lowercase word can be
    spelled), and ``words`` whole."""
    whole = [word for word in dict.fromkeys(words) if word not in LETTERS]
    return [*SPECIAL, *LETTERS, *(f"##{c}" for c in LETTERS), *(str(d) for d in range(10)), *whole]


def save_tiny_bert(
    folder: Path, max_tokens: int = 512, words: Iterable[str] = WORDS, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """A tiny random BERT (``layers`` x ``hidden``, ``max_tokens`` positions) and its WordPiece tokenizer,
    saved as ``from_pretrained`` reads them."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab(words)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(folder, model_max_length=max_tokens).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_tokens,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def save_tiny_open_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny random open_clip model in the hub's format: ``open_clip_config.json`` (model and
    preprocessing config, as ``open_clip.push_to_hf_hub`` writes it) and ``open_clip_model.safetensors``."""
    import open_clip
    import safetensors.torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPEN_CLIP)
    safetensors.torch.save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    preprocess = {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)}
    config = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": preprocess}  # as push_to_hf_hub writes it
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return folder


def save_random_openai_clip(folder: Path, seed: int = 0) -> Path:
    """Random weights for open_clip's ``ViT-B-32`` with the ``openai`` tag's QuickGELU, in float16 (303 MB,
    half the real file's float32), saved as ``open_clip_model.safetensors``: the file open_clip fetches from
    :data:`OPENAI_CLIP_ID` for ``pretrained="openai"``. Not tiny: the architecture is OpenAI's own."""
    import open_clip
    import safetensors.torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    weights = {name: tensor.half().contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(weights, folder / "open_clip_model.safetensors")
    return folder / "open_clip_model.safetensors"


def save_tiny_transformers_clip(folder: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny random ``CLIPModel`` and its ``CLIPProcessor`` with CLIP's real byte-level BPE (the
    vocabulary and merges open_clip ships, so captions get as many tokens as with OpenAI's CLIP),
    saved with ``save_pretrained`` as torchmetrics' CLIPScore loads them."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = SimpleTokenizer()
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # Hugging Face's spelling
    vocab = {special.get(token, token): i for token, i in bpe.encoder.items()}
    merges = [pair for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda item: item[1])]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    images = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **layers,
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "bos_token_id": bpe.sot_token_id,
            "eos_token_id": bpe.eot_token_id,
            "pad_token_id": bpe.eot_token_id,
        },
        vision_config={**layers, "image_size": image_size, "patch_size": 16},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    return folder


def hub_snapshot(cache: Path, repo_id: str) -> Path:
    """The folder where the Hugging Face hub cache ``cache`` (``HF_HUB_CACHE``) keeps the current
    files of model ``repo_id``: ``models--org--name/snapshots/<commit>``, with ``refs/main`` naming it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def standin_hub_cache(cache: Path, words: Iterable[str] = WORDS) -> Path:
    """A hub cache holding stand-ins for every model the chapters fetch: :data:`BERT_ID`,
    :data:`CLIP_SCORE_ID` and the open_clip model :data:`OPEN_CLIP_ID`."""
    save_tiny_bert(hub_snapshot(cache, BERT_ID), words=words)
    save_tiny_transformers_clip(hub_snapshot(cache, CLIP_SCORE_ID))
    save_tiny_open_clip(hub_snapshot(cache, OPEN_CLIP_ID))
    return cache
