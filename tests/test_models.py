"""Autoencoder and VAE shapes, output ranges and input checks for several image sizes."""

from __future__ import annotations

import pytest
import torch

from course_lib.models import VAE, VAEOutput, conv_autoencoder, conv_vae, mlp_autoencoder, mlp_vae

SHAPES = [(1, 28, 28), (1, 32, 32), (3, 32, 32), (3, 64, 64), (1, 7, 9)]
LATENT = 5

# Small hidden sizes keep the 64x64 models light; the architecture is the same as the defaults'.
FACTORIES = {
    "mlp_autoencoder": lambda shape: mlp_autoencoder(shape, latent_dim=LATENT, hidden=(32, 16)),
    "conv_autoencoder": lambda shape: conv_autoencoder(shape, latent_dim=LATENT, channels=(4, 8)),
    "mlp_vae": lambda shape: mlp_vae(shape, latent_dim=LATENT, hidden=(32,)),
    "conv_vae": lambda shape: conv_vae(shape, latent_dim=LATENT, channels=(4, 8)),
}
VAE_FACTORIES = {name: make for name, make in FACTORIES.items() if name.endswith("vae")}
AE_FACTORIES = {name: make for name, make in FACTORIES.items() if name.endswith("autoencoder")}
shape_ids = ["x".join(map(str, shape)) for shape in SHAPES]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def batch(shape, n=3):
    return torch.rand(n, *shape)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_ids)
@pytest.mark.parametrize("name", AE_FACTORIES)
def test_autoencoder_output_has_the_input_shape(name, shape):
    model = FACTORIES[name](shape)
    x = batch(shape)
    logits = model(x)
    assert logits.shape == x.shape
    assert model.encode(x).shape == (3, LATENT)
    assert model.reconstruct(x).shape == x.shape
    assert model.image_shape == shape and model.latent_dim == LATENT


@pytest.mark.parametrize("shape", SHAPES, ids=shape_ids)
@pytest.mark.parametrize(
    "make",
    [mlp_autoencoder, conv_autoencoder, mlp_vae, conv_vae],
    ids=["mlp_autoencoder", "conv_autoencoder", "mlp_vae", "conv_vae"],
)
def test_default_architectures_reconstruct_the_input_shape(make, shape):
    model = make(shape)
    x = batch(shape, n=2)
    with torch.no_grad():
        out = model(x)
        reconstruction = model.reconstruct(x)
    logits = out.logits if isinstance(out, VAEOutput) else out
    assert logits.shape == reconstruction.shape == x.shape


@pytest.mark.parametrize("shape", SHAPES, ids=shape_ids)
@pytest.mark.parametrize("name", VAE_FACTORIES)
def test_vae_forward_returns_vae_output(name, shape):
    model = FACTORIES[name](shape)
    x = batch(shape)
    out = model(x)
    assert isinstance(out, VAEOutput)
    assert out.logits.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, LATENT)
    assert model.reconstruct(x).shape == x.shape


@pytest.mark.parametrize("shape", SHAPES, ids=shape_ids)
@pytest.mark.parametrize("name", FACTORIES)
def test_decode_outputs_lie_in_unit_interval(name, shape):
    model = FACTORIES[name](shape)
    z = 50 * torch.randn(6, LATENT)  # large codes push the logits far out
    with torch.no_grad():
        images = model.decode(z)
    assert images.shape == (6, *shape)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    with torch.no_grad():
        reconstruction = model.reconstruct(batch(shape))
    assert float(reconstruction.min()) >= 0.0 and float(reconstruction.max()) <= 1.0


@pytest.mark.parametrize("name", FACTORIES)
def test_gradients_reach_every_parameter(name):
    model = FACTORIES[name]((1, 7, 9))
    out = model(batch((1, 7, 9)))
    logits = out.logits if isinstance(out, VAEOutput) else out
    extra = out.mu.sum() + out.logvar.sum() if isinstance(out, VAEOutput) else 0
    (logits.sum() + extra).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", VAE_FACTORIES)
def test_vae_reconstruct_decodes_the_posterior_mean(name):
    model = FACTORIES[name]((1, 28, 28)).eval()
    x = batch((1, 28, 28))
    mu, _ = model.encode(x)
    assert torch.allclose(model.reconstruct(x), model.decode(mu))
    # forward samples around mu: z differs from mu but only by the posterior noise
    out = model(x)
    assert not torch.equal(out.z, out.mu)


def test_reparameterize_uses_the_posterior_scale():
    mu = torch.full((20000, 1), 3.0)
    logvar = torch.full((20000, 1), 2 * torch.log(torch.tensor(0.5)).item())  # sigma = 0.5
    z = VAE.reparameterize(mu, logvar)
    assert abs(float(z.mean()) - 3.0) < 0.02
    assert abs(float(z.std()) - 0.5) < 0.02


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64), (1, 7, 9)], ids=["1x28x28", "3x64x64", "1x7x9"])
@pytest.mark.parametrize("name", VAE_FACTORIES)
def test_vae_sample_shape_and_range(name, shape):
    model = FACTORIES[name](shape)
    samples = model.sample(4)
    assert samples.shape == (4, *shape)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_vae_sample_with_a_generator_is_reproducible():
    model = FACTORIES["mlp_vae"]((1, 28, 28))
    first = model.sample(3, generator=torch.Generator().manual_seed(1))
    again = model.sample(3, generator=torch.Generator().manual_seed(1))
    other = model.sample(3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", FACTORIES)
def test_missing_batch_dimension_raises_with_hint(name):
    model = FACTORIES[name]((1, 28, 28))
    with pytest.raises(ValueError) as info:
        model(torch.rand(1, 28, 28))
    message = str(info.value)
    assert "[B, 1, 28, 28]" in message
    assert "[1, 28, 28]" in message  # what it got
    assert "unsqueeze(0)" in message


@pytest.mark.parametrize("name", FACTORIES)
def test_two_dimensional_input_raises(name):
    model = FACTORIES[name]((1, 28, 28))
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\].*\[28, 28\]"):
        model(torch.rand(28, 28))


@pytest.mark.parametrize("name", FACTORIES)
def test_wrong_image_size_raises(name):
    model = FACTORIES[name]((1, 28, 28))
    with pytest.raises(ValueError) as info:
        model(torch.rand(2, 1, 32, 32))
    message = str(info.value)
    assert "[B, 1, 28, 28]" in message and "[2, 1, 32, 32]" in message
    assert "image_shape" in message
    assert "unsqueeze" not in message  # the batch dimension is there; no misleading hint


@pytest.mark.parametrize("name", FACTORIES)
def test_wrong_channel_count_raises(name):
    model = FACTORIES[name]((3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        model.encode(torch.rand(2, 1, 32, 32))
