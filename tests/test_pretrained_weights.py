"""The chapters' pretrained branches, run offline on stand-in weights in the formats the hub delivers.

A Hugging Face hub cache (tests/standin_weights.py) holds tiny random models where the real ones
would be: ``bert-base-uncased`` (``save_pretrained``), ``openai/clip-vit-base-patch32`` (what
torchmetrics' CLIPScore loads) and an open_clip model in the format open_clip publishes on the hub.
With ``HF_HUB_OFFLINE=1`` the course reads them through the same loaders that read the real
downloads: no fallback to MiniLM, no random-weight CLIP. Chapters 05 and 06 then run their CLIP
rows (similarity, CLIP conditioning, CLIP score, CLIP against BERT) on them under ``smoke``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import huggingface_hub
import nbformat
import open_clip
import pytest
import torch
from standin_weights import (
    BERT_ID,
    CLIP_SCORE_ID,
    OPEN_CLIP_ID,
    OPENAI_CLIP_ID,
    hub_snapshot,
    save_random_openai_clip,
    save_tiny_open_clip,
    standin_hub_cache,
)

from course_lib.evaluation.metrics import clip_score
from course_lib.text.encoders import WeightsNotFoundError, text_encoder

REPO = Path(__file__).resolve().parents[1]
SCENE_WORDS = (
    "a an the red orange yellow green blue purple pink white black grey brown small large big circle square "
    "triangle star heart cross ring diamond shape in on at of near top bottom left right centre center corner "
    "edge middle upper lower and with next to . ,"
).split()


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    return standin_hub_cache(tmp_path_factory.mktemp("hub"), words=SCENE_WORDS)


@pytest.fixture
def offline_hub(hub_cache, monkeypatch) -> Path:
    """This process reads the stand-in cache, as it would read the real one with no network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def test_bert_base_uncased_loads_from_the_hub_cache_not_minilm(offline_hub, capsys):
    encoder = text_encoder("bert", device="cpu")  # the chapters' default: bert-base-uncased
    assert encoder.name == BERT_ID and encoder.description == f"{BERT_ID} (pretrained), mean pooling"
    assert "MiniLM" not in capsys.readouterr().out  # no fallback note
    assert encoder.encode(["a red circle at the top left."]).shape == (1, 32)


def test_an_open_clip_model_from_the_hub_cache(offline_hub):
    encoder = text_encoder("clip", model=f"hf-hub:{OPEN_CLIP_ID}", device="cpu")
    assert "random weights" not in encoder.description and OPEN_CLIP_ID in encoder.description
    assert encoder.dim == 16 and encoder.max_tokens == 77
    vectors = encoder.encode(["a red circle", "a blue square"])
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(2))
    stored = open_clip.create_model(f"local-dir:{save_tiny_open_clip(offline_hub / 'folder')}")
    assert torch.equal(encoder.model.token_embedding.weight, stored.token_embedding.weight)  # the saved weights


def test_openai_clip_through_open_clip_from_the_hub_cache_and_from_a_file(tmp_path, monkeypatch):
    """The chapters' default CLIP (ViT-B-32, pretrained="openai") read where open_clip's download puts it."""
    weights = save_random_openai_clip(hub_snapshot(tmp_path / "hub", OPENAI_CLIP_ID))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from safetensors.torch import load_file

    saved = load_file(weights)["token_embedding.weight"].float()
    encoder = text_encoder("clip", device="cpu")  # the defaults: ViT-B-32, OpenAI's weights
    assert encoder.description == "CLIP ViT-B-32 text tower, pretrained='openai'" and encoder.dim == 512
    assert torch.equal(encoder.model.token_embedding.weight, saved)
    from_file = text_encoder("clip", model="ViT-B-32", pretrained=str(weights), device="cpu")
    assert torch.equal(from_file.model.token_embedding.weight, saved) and str(weights) in from_file.description


def test_an_open_clip_model_from_a_local_folder(tmp_path):
    folder = save_tiny_open_clip(tmp_path / "tiny")
    encoder = text_encoder("clip", model=f"local-dir:{folder}", device="cpu")
    assert "a local folder" in encoder.description and encoder.dim == 16


def test_clip_score_reads_the_default_clip_from_the_hub_cache(offline_hub):
    images = torch.rand(4, 3, 32, 32)
    score = clip_score(images, ["a red circle", "a blue square", "a star", "a heart"], device="cpu")
    assert 0.0 <= score <= 100.0
    assert CLIP_SCORE_ID.replace("/", "--") in str(next(offline_hub.glob("models--openai*")))


def test_missing_hub_models_and_wrong_weight_files_say_what_to_do(offline_hub, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="Connect to the network once"):
        text_encoder("clip", model="hf-hub:course-tests/no-such-model", device="cpu")
    with pytest.raises(WeightsNotFoundError, match="open_clip_config.json"):
        text_encoder("clip", model=f"local-dir:{tmp_path}", device="cpu")
    weights = save_tiny_open_clip(tmp_path / "tiny") / "open_clip_model.safetensors"
    with pytest.raises(WeightsNotFoundError, match="does not hold weights of the open_clip architecture RN50"):
        text_encoder("clip", model="RN50", pretrained=str(weights), device="cpu")


@pytest.mark.notebooks
def test_chapters_05_and_06_run_their_clip_rows_on_pretrained_weights(hub_cache, smoke_env, tmp_path):
    env = dict(smoke_env, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    out = tmp_path / "executed"
    chapters = ["chapters/05_text_encoders.ipynb", "chapters/06_text_cvae.ipynb"]
    command = [sys.executable, "-m", "course_lib.instructor.execute", "--profile", "smoke", "--out", str(out)]
    command += ["--reference-steps", "20", "-p", "clip_model", f"hf-hub:{OPEN_CLIP_ID}", *chapters]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"chapters failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    text = {}
    for chapter in chapters:
        notebook = nbformat.read(out / chapter, as_version=4)
        text[Path(chapter).stem] = "\n".join(
            output.get("text", "") or output.get("data", {}).get("text/plain", "")
            for cell in notebook.cells
            for output in cell.get("outputs", [])
        )
    ch05, ch06 = text["05_text_encoders"], text["06_text_cvae"]
    for chapter in (ch05, ch06):
        assert f"{BERT_ID} (pretrained)" in chapter and "offline stand-in" not in chapter
        assert f"CLIP {OPEN_CLIP_ID} text tower" in chapter and "random weights" not in chapter
    assert "No CLIP weights here" not in ch05
    assert "skipped, no pretrained weights" not in ch06  # CLIP conditions a model (the study's encoder row)
    assert "real images, own captions" in ch06 and "CLIP score not measured" not in ch06  # section 6.9


def test_clip_score_says_how_many_captions_it_truncates(offline_hub, capsys):
    long = "a red circle next to a blue square and " * 12 + "a green star"
    clip_score(torch.rand(2, 3, 32, 32), [long, "a star"], device="cpu")
    assert "note: 1 of 2 captions are longer than CLIP's 77 tokens" in capsys.readouterr().out
