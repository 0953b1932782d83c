"""Reconstruction likelihoods, the closed-form KL, the ELBO and active units against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.core.losses import ELBO, ReconstructionLoss, active_units, kl_per_dim, reconstruction_nll
from course_lib.models import VAEOutput, mlp_autoencoder, mlp_vae

X = [[0.0, 1.0], [0.25, 0.5]]  # one 2x2 grey image
LOGITS = [[0.5, -1.0], [2.0, 0.0]]


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def image(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 2, 2)


def hand_bernoulli(logits, x) -> float:
    total = 0.0
    for row_l, row_x in zip(logits, x):
        for logit, t in zip(row_l, row_x):
            p = sigmoid(logit)
            total += -(t * math.log(p) + (1 - t) * math.log(1 - p))
    return total


def hand_gaussian(logits, x, sigma) -> float:
    total = 0.0
    for row_l, row_x in zip(logits, x):
        for logit, t in zip(row_l, row_x):
            total += (sigmoid(logit) - t) ** 2 / (2 * sigma**2) + math.log(sigma * math.sqrt(2 * math.pi))
    return total


def test_bernoulli_nll_matches_hand_computation():
    nll = reconstruction_nll(image(LOGITS), image(X), "bernoulli")
    assert nll.shape == (1,)
    assert float(nll[0]) == pytest.approx(hand_bernoulli(LOGITS, X), rel=1e-6)


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0])
def test_gaussian_nll_matches_hand_computation(sigma):
    nll = reconstruction_nll(image(LOGITS), image(X), "gaussian", sigma=sigma)
    assert float(nll[0]) == pytest.approx(hand_gaussian(LOGITS, X, sigma), rel=1e-6)


def test_nll_is_per_image_summed_over_pixels():
    other_logits = [[-2.0, 3.0], [0.1, -0.7]]
    other_x = [[1.0, 0.0], [0.9, 0.3]]
    logits = torch.cat([image(LOGITS), image(other_logits)])
    x = torch.cat([image(X), image(other_x)])
    for likelihood, hand in (("bernoulli", hand_bernoulli), ("gaussian", lambda lg, t: hand_gaussian(lg, t, 0.1))):
        nll = reconstruction_nll(logits, x, likelihood)
        assert nll.shape == (2,)
        assert nll.tolist() == pytest.approx([hand(LOGITS, X), hand(other_logits, other_x)], rel=1e-6)


def test_smaller_sigma_weighs_errors_more():
    loose = reconstruction_nll(image(LOGITS), image(X), "gaussian", sigma=1.0)
    tight = reconstruction_nll(image(LOGITS), image(X), "gaussian", sigma=0.05)
    assert float(tight) > float(loose)


def test_unknown_likelihood_raises():
    with pytest.raises(ValueError, match="laplace"):
        reconstruction_nll(image(LOGITS), image(X), "laplace")


def test_non_positive_sigma_raises():
    with pytest.raises(ValueError, match="sigma"):
        reconstruction_nll(image(LOGITS), image(X), "gaussian", sigma=0.0)


def test_kl_is_exactly_zero_at_the_prior():
    kl = kl_per_dim(torch.zeros(3, 4), torch.zeros(3, 4))
    assert kl.shape == (3, 4)
    assert torch.equal(kl, torch.zeros(3, 4))


def test_kl_matches_hand_computation():
    mu = [[1.5, -0.5, 0.0], [0.2, 2.0, -1.0]]
    logvar = [[0.3, -1.2, 1.0], [0.0, -3.0, 0.7]]
    kl = kl_per_dim(torch.tensor(mu), torch.tensor(logvar))
    expected = [
        [0.5 * (m**2 + math.exp(lv) - 1 - lv) for m, lv in zip(row_m, row_lv)] for row_m, row_lv in zip(mu, logvar)
    ]
    assert kl.shape == (2, 3)
    for got_row, want_row in zip(kl.tolist(), expected):
        assert got_row == pytest.approx(want_row, rel=1e-6)
    assert bool((kl > 0).all())


class FixedVAE(nn.Module):
    """Returns the same logits, mu and logvar for every image of the batch."""

    def __init__(self, logits, mu, logvar):
        super().__init__()
        self.logits, self.mu, self.logvar = logits, mu, logvar
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        n = len(x)
        expand = lambda t: t.expand(n, *t.shape[1:])  # noqa: E731
        return VAEOutput(expand(self.logits), expand(self.mu), expand(self.logvar), expand(self.mu))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_is_recon_plus_beta_kl(beta, likelihood):
    mu, logvar = torch.tensor([[1.5, -0.5]]), torch.tensor([[0.3, -1.2]])
    model = FixedVAE(image(LOGITS), mu, logvar)
    terms = ELBO(beta=beta, likelihood=likelihood, sigma=0.3)(model, image(X))

    hand_recon = hand_bernoulli(LOGITS, X) if likelihood == "bernoulli" else hand_gaussian(LOGITS, X, 0.3)
    hand_kl = sum(0.5 * (m**2 + math.exp(lv) - 1 - lv) for m, lv in ((1.5, 0.3), (-0.5, -1.2)))
    assert float(terms["recon"]) == pytest.approx(hand_recon, rel=1e-6)
    assert float(terms["kl"]) == pytest.approx(hand_kl, rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(hand_recon + beta * hand_kl, rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(float(terms["recon"] + beta * terms["kl"]), rel=1e-6)


def deterministic_vae():
    """A real VAE whose posterior variance is forced to ~exp(-60): sampling z gives mu."""
    torch.manual_seed(0)
    model = mlp_vae((1, 4, 4), latent_dim=3, hidden=(8,))
    with torch.no_grad():
        model.to_posterior.weight[3:] = 0
        model.to_posterior.bias[3:] = -60.0
    return model


def test_deterministic_vae_helper_really_is_deterministic():
    model = deterministic_vae()
    x = torch.rand(2, 1, 4, 4)
    out = model(x)
    assert torch.equal(out.z, out.mu)


def test_elbo_scale_does_not_depend_on_batch_size():
    model = deterministic_vae()
    loss = ELBO(beta=1.0)
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    single = loss(model, x)
    repeated = loss(model, x.repeat(4, 1, 1, 1))
    for key in ("loss", "recon", "kl"):
        assert float(repeated[key]) == pytest.approx(float(single[key]), rel=1e-5)
    assert float(single["kl"]) > 0  # the comparison is not 0 == 0


def test_elbo_of_a_batch_is_the_mean_over_its_images():
    model = deterministic_vae()
    loss = ELBO(beta=2.0, likelihood="gaussian")
    a, b, c = torch.rand(3, 1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    per_image = [float(loss(model, image_)["loss"]) for image_ in (a, b, c)]
    assert len(set(per_image)) == 3
    together = float(loss(model, torch.cat([a, b, c]))["loss"])
    assert together == pytest.approx(sum(per_image) / 3, rel=1e-5)


def test_reconstruction_loss_scale_does_not_depend_on_batch_size():
    torch.manual_seed(0)
    model = mlp_autoencoder((1, 4, 4), latent_dim=2, hidden=(8,))
    loss = ReconstructionLoss()
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    single = loss(model, x)
    repeated = loss(model, x.repeat(4, 1, 1, 1))
    assert float(repeated["loss"]) == pytest.approx(float(single["loss"]), rel=1e-5)
    assert float(single["loss"]) == pytest.approx(float(reconstruction_nll(model(x), x)[0]), rel=1e-6)
    assert torch.equal(single["loss"], single["recon"])


def test_reconstruction_loss_gaussian_uses_its_sigma():
    torch.manual_seed(0)
    model = mlp_autoencoder((1, 4, 4), latent_dim=2, hidden=(8,))
    x = torch.rand(2, 1, 4, 4)
    got = ReconstructionLoss("gaussian", sigma=0.3)(model, x)["loss"]
    want = reconstruction_nll(model(x), x, "gaussian", sigma=0.3).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_negative_beta_raises():
    with pytest.raises(ValueError, match="beta"):
        ELBO(beta=-1)


def test_elbo_with_unknown_likelihood_raises():
    with pytest.raises(ValueError, match="poisson"):
        ELBO(likelihood="poisson")


def test_active_units_counts_dimensions_that_vary():
    generator = torch.Generator().manual_seed(0)
    n = 1000
    mu = torch.stack(
        [
            torch.randn(n, generator=generator),  # variance ~1: active
            torch.full((n,), 3.0),  # constant: collapsed, whatever its value
            0.03 * torch.randn(n, generator=generator),  # variance ~0.001: collapsed
            0.5 * torch.randn(n, generator=generator),  # variance ~0.25: active
        ],
        dim=1,
    )
    assert active_units(mu) == 2
    assert active_units(mu, threshold=0.5) == 1
    assert active_units(mu, threshold=1e-4) == 3
    assert active_units(torch.zeros(10, 5)) == 0
    assert isinstance(active_units(mu), int)
