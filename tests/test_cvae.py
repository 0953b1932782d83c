"""Conditional VAEs: shapes for every kind of condition, both injection modes, clear errors."""

import pytest
import torch

from course_lib.core.losses import ELBO, HybridELBO, reconstruction_nll
from course_lib.core.samplers import ClassGaussians
from course_lib.core.train import Snapshots, fit
from course_lib.data.images import TensorLoader
from course_lib.evaluation.metrics import reconstruction_metrics
from course_lib.models import CVAE, conditioning, conv_cvae, mlp_cvae, mlp_vae

CONDITIONS = {
    "class index": lambda b, k: torch.arange(b) % k,
    "one-hot": lambda b, k: torch.nn.functional.one_hot(torch.arange(b) % k, k).float(),
    "embedding": lambda b, k: torch.randn(b, k),
}


@pytest.mark.parametrize("kind", CONDITIONS)
@pytest.mark.parametrize(
    "factory",
    [mlp_cvae, lambda **kw: conv_cvae(mode="concat", **kw), lambda **kw: conv_cvae(mode="add", **kw)],
    ids=["mlp", "conv-concat", "conv-add"],
)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cvae_shapes_for_every_condition_kind(kind, factory, shape):
    k = 10 if kind != "embedding" else 16
    model = factory(image_shape=shape, condition_dim=k, latent_dim=8)
    x, c = torch.rand(4, *shape), CONDITIONS[kind](4, k)
    logits, mu, logvar, z = model(x, c)
    assert logits.shape == x.shape and mu.shape == logvar.shape == z.shape == (4, 8)
    assert model.reconstruct(x, c).shape == x.shape
    samples = model.sample(c)
    assert samples.shape == x.shape and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_mlp_cvae_is_the_seeds_784_plus_10_to_400_to_20_model():
    model = mlp_cvae()
    first = model.to_posterior[0]
    assert (first.in_features, first.out_features) == (784 + 10, 400)
    assert model.to_posterior[-1].out_features == 2 * 20
    assert model.decoder.net[0].in_features == 20 + 10


def test_condition_changes_the_decoding():
    torch.manual_seed(0)
    model = conv_cvae(latent_dim=8)
    z = torch.randn(2, 8)
    assert not torch.allclose(model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([1, 1])))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([0, 10]), "0..9"),  # class index out of range
        (torch.tensor([[0, 1]]), "1-D"),  # integer tensor that is not 1-D
        (torch.randn(2, 7), r"\[B, 10\]"),  # embedding of the wrong size
    ],
)
def test_bad_conditions_raise_clear_errors(bad, message):
    model = mlp_cvae()
    with pytest.raises(ValueError, match=message):
        model(torch.rand(2, 1, 28, 28), bad)


def test_condition_count_must_match_batch():
    with pytest.raises(ValueError, match="2 images but 3 conditions"):
        mlp_cvae()(torch.rand(2, 1, 28, 28), torch.tensor([0, 1, 2]))


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="concat"):
        conv_cvae(mode="multiply")


def test_conditioning_passes_labels_only_to_conditional_models():
    labels = torch.tensor([1, 2])
    assert conditioning(mlp_vae(), labels) == ()
    assert conditioning(mlp_cvae(), labels)[0] is labels
    with pytest.raises(ValueError, match="conditional"):
        conditioning(mlp_cvae(), None)


@pytest.mark.filterwarnings(
    "ignore::course_lib.core.train.PosteriorCollapseWarning"
)  # random images: nothing to encode
def test_fit_metrics_and_snapshots_work_with_a_cvae():
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    train, test = TensorLoader(images, labels, 16), TensorLoader(images[:32], labels[:32], 16, shuffle=False)
    model = mlp_cvae(latent_dim=4, hidden=(32,))
    frames = Snapshots.samples(torch.randn(10, 4), torch.arange(10), nrow=10)
    history = fit(model, train, ELBO(), 2, test_data=test, callbacks=[frames], device="cpu", verbose=False)
    assert {"test_loss", "test_kl", "active_units"} <= set(history.columns)
    assert len(frames.frames) == 2
    assert 0 < reconstruction_metrics(model, test)["ssim"] <= 1
    assert isinstance(model, CVAE) and model.conditional


def test_class_gaussians_recover_each_class_mean_and_spread():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0, 0.0], [-5.0, 2.0, 0.0]])
    labels = torch.arange(2).repeat(2000)
    codes = centres[labels] + torch.randn(len(labels), 3, generator=generator) * torch.tensor([1.0, 0.5, 0.1])
    prior = ClassGaussians.fit(codes, labels)
    drawn = prior.sample(torch.ones(4000, dtype=torch.long), torch.Generator().manual_seed(1))
    assert torch.allclose(drawn.mean(0), centres[1], atol=0.1)
    assert torch.allclose(drawn.std(0), torch.tensor([1.0, 0.5, 0.1]), rtol=0.1)
    again = prior.sample(torch.tensor([0, 1]), torch.Generator().manual_seed(1))
    assert torch.equal(again, prior.sample(torch.tensor([0, 1]), torch.Generator().manual_seed(1)))


def test_class_mixtures_stay_on_a_class_clusters_where_one_gaussian_fills_the_gap():
    generator = torch.Generator().manual_seed(0)
    sides = torch.randint(0, 2, (2000,), generator=generator) * 2 - 1  # one class, two clusters at x = -5, +5
    codes = torch.randn(2000, 2, generator=generator) * 0.5 + torch.stack([5.0 * sides, torch.zeros(2000)], 1)
    labels = torch.zeros(2000, dtype=torch.long)
    requested = torch.zeros(4000, dtype=torch.long)
    one = ClassGaussians.fit(codes, labels).sample(requested, torch.Generator().manual_seed(1))
    two = ClassGaussians.fit(codes, labels, components=2).sample(requested, torch.Generator().manual_seed(1))
    in_the_gap = lambda z: (z[:, 0].abs() < 2).float().mean()  # noqa: E731 - where no training code lies
    assert in_the_gap(one) > 0.15
    assert in_the_gap(two) < 0.01
    assert abs((two[:, 0] > 0).float().mean() - 0.5) < 0.05  # both clusters, by their weights


def test_class_gaussians_explain_too_few_codes_and_bad_labels():
    with pytest.raises(ValueError, match="Class 1 has 2 codes"):
        ClassGaussians.fit(torch.randn(12, 3), torch.tensor([0] * 10 + [1] * 2))
    with pytest.raises(ValueError, match="fewer components"):
        ClassGaussians.fit(torch.randn(40, 3), torch.arange(2).repeat(20), components=10)
    prior = ClassGaussians.fit(torch.randn(40, 3), torch.arange(2).repeat(20))
    with pytest.raises(ValueError, match="0..1"):
        prior.sample(torch.tensor([2]))


def test_hybrid_elbo_mixes_the_elbo_with_decoding_prior_draws():
    model = mlp_cvae(latent_dim=4)
    x, c = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    torch.manual_seed(0)
    elbo = ELBO(beta=2.0)(model, x, c)
    torch.manual_seed(0)
    hybrid = HybridELBO(alpha=0.25, beta=2.0)(model, x, c)
    torch.manual_seed(0)
    torch.randn(8, 4)  # the ELBO's reparameterisation noise comes first, then the prior draw
    prior_recon = reconstruction_nll(model.decoder_logits(torch.randn(8, 4), c), x).mean()
    assert torch.allclose(hybrid["neg_elbo"], elbo["recon"] + elbo["kl"])  # the -ELBO itself, whatever beta
    assert torch.allclose(hybrid["prior_recon"], prior_recon)
    assert torch.allclose(hybrid["loss"], 0.25 * elbo["loss"] + 0.75 * prior_recon)


def test_hybrid_elbo_prior_term_trains_only_the_decoder():
    model = mlp_cvae(latent_dim=4)
    HybridELBO(alpha=0.0)(model, torch.rand(8, 1, 28, 28), torch.arange(8) % 10)["loss"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.to_posterior.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.decoder.parameters())


def test_hybrid_elbo_explains_bad_alpha_and_unconditional_models():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        HybridELBO(alpha=1.5)
    with pytest.raises(TypeError, match="Use ELBO"):
        HybridELBO()(mlp_vae(latent_dim=4), torch.rand(2, 1, 28, 28))
