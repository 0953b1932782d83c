"""Chapter 06's text CVAE: a FiLM decoder that reads the caption at every stage, a learned prior p(z | c), and a
mixture density of the codes given the caption, fitted after training."""

import pytest
import torch

from course_lib.core.losses import ELBO, HybridELBO, kl_per_dim, prior_params
from course_lib.core.train import Snapshots, fit
from course_lib.data.images import TensorLoader
from course_lib.models.cvae import conv_cvae, text_cvae
from course_lib.models.film import FiLM, FiLMDecoder
from course_lib.models.priors import ConditionalPrior


@pytest.mark.parametrize(
    "shape, channels", [((3, 32, 32), (32, 64)), ((3, 64, 64), (16, 32, 64)), ((1, 28, 28), (8, 16))]
)
def test_film_decoder_draws_the_image_shape(shape, channels):
    decoder = FiLMDecoder(shape, latent_dim=8, condition_dim=5, channels=channels)
    assert decoder(torch.randn(2, 8), torch.randn(2, 5)).shape == (2, *shape)


def test_film_starts_as_the_identity_and_then_reads_the_condition():
    film = FiLM(condition_dim=4, channels=3)
    h = torch.randn(2, 3, 5, 5)
    assert torch.equal(film(h, torch.randn(2, 4)), h)
    torch.nn.init.normal_(film.to_scale_shift.weight)
    c = torch.randn(2, 4)
    assert not torch.allclose(film(h, c), film(h, -c))


def test_every_decoder_stage_reads_the_condition():
    torch.manual_seed(0)
    decoder = FiLMDecoder((3, 32, 32), latent_dim=8, condition_dim=5)
    decoder(torch.randn(4, 8), torch.randn(4, 5)).square().mean().backward()
    for film in decoder.film:  # zero-initialised, yet each gets a gradient from the condition
        assert film.to_scale_shift.weight.grad.abs().sum() > 0


def test_residual_blocks_start_as_the_identity_and_then_learn():
    torch.manual_seed(0)
    plain = FiLMDecoder((3, 32, 32), latent_dim=8, condition_dim=5)
    deeper = FiLMDecoder((3, 32, 32), latent_dim=8, condition_dim=5, residual_blocks=2)
    deeper.load_state_dict(plain.state_dict(), strict=False)  # the same stages; the blocks are new
    assert sum(len(stage) for stage in deeper.residual) == 2 * len(deeper.upsample)
    z, c = torch.randn(3, 8), torch.randn(3, 5)
    assert torch.allclose(deeper(z, c), plain(z, c))  # a new residual block passes its input on
    deeper(z, c).square().mean().backward()
    assert deeper.residual[0][0].conv2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("blocks", [-1, 1.5, True])
def test_residual_blocks_must_be_a_whole_number(blocks):
    with pytest.raises(ValueError, match="residual_blocks"):
        FiLMDecoder((3, 32, 32), latent_dim=8, condition_dim=5, residual_blocks=blocks)


def test_only_the_film_decoder_has_residual_blocks():
    with pytest.raises(ValueError, match="mode='film'"):
        text_cvae((3, 32, 32), condition_dim=6, latent_dim=8, mode="concat", residual_blocks=1)


def test_an_untrained_prior_is_the_standard_normal():
    prior = ConditionalPrior(condition_dim=5, latent_dim=8)
    mu, logvar = prior(torch.randn(3, 5))
    assert torch.equal(mu, torch.zeros(3, 8)) and torch.equal(logvar, torch.zeros(3, 8))


@pytest.mark.parametrize("mode", ["film", "concat", "add"])
@pytest.mark.parametrize("learned_prior", [True, False])
def test_text_cvae_shapes_in_every_mode(mode, learned_prior):
    model = text_cvae((3, 32, 32), condition_dim=6, latent_dim=8, mode=mode, learned_prior=learned_prior)
    x, c = torch.rand(4, 3, 32, 32), torch.randn(4, 6)
    logits, mu, logvar, z = model(x, c)
    assert logits.shape == x.shape and mu.shape == z.shape == (4, 8)
    samples = model.sample(c)
    assert samples.shape == x.shape and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_the_elbo_charges_the_kl_to_the_learned_prior():
    torch.manual_seed(0)
    model = text_cvae((3, 32, 32), condition_dim=6, latent_dim=8, learned_prior=True)
    torch.nn.init.normal_(model.prior.net[-1].weight)  # a prior that is not N(0, I)
    x, c = torch.rand(4, 3, 32, 32), torch.randn(4, 6)
    mu, logvar = model.encode(x, c)
    to_prior = kl_per_dim(mu, logvar, *model.prior(c)).sum(1).mean()
    to_standard = kl_per_dim(mu, logvar).sum(1).mean()
    assert not torch.isclose(to_prior, to_standard)
    torch.manual_seed(1)
    terms = ELBO(likelihood="gaussian", sigma=0.1)(model, x, c)
    assert torch.isclose(terms["kl"], to_prior)
    assert prior_params(conv_cvae((3, 32, 32), 6, 8), c) == ()


def test_samples_come_from_the_prior_of_their_caption():
    model = text_cvae((3, 32, 32), condition_dim=6, latent_dim=8, learned_prior=True)
    with torch.no_grad():
        model.prior.net[-1].bias[:8] = 5.0  # every caption's prior mean is 5, its spread 1
    with torch.no_grad():
        z = model.sample_latent(torch.randn(2000, 6), torch.Generator().manual_seed(0))
    assert abs(float(z.mean()) - 5) < 0.05 and abs(float(z.std()) - 1) < 0.05
    noise = torch.randn(3, 8)
    assert torch.allclose(model.sample_latent(torch.randn(3, 6), noise=noise), noise + 5)
    with pytest.raises(ValueError, match=r"noise must be \[3, 8\]"):
        model.sample_latent(torch.randn(3, 6), noise=torch.randn(2, 8))


def test_hybrid_elbo_draws_its_prior_term_from_the_learned_prior():
    torch.manual_seed(0)
    model = text_cvae((3, 32, 32), condition_dim=6, latent_dim=8, learned_prior=True)
    terms = HybridELBO(alpha=0.5, likelihood="gaussian", sigma=0.1)(model, torch.rand(4, 3, 32, 32), torch.randn(4, 6))
    terms["loss"].backward()
    assert model.prior.net[-1].weight.grad.abs().sum() > 0


def test_fit_trains_a_text_cvae_and_its_snapshots_map_noise_through_the_prior():
    torch.manual_seed(0)
    images, captions = torch.rand(32, 3, 32, 32), torch.randn(32, 6)
    model = text_cvae((3, 32, 32), condition_dim=6, latent_dim=8, learned_prior=True)
    frames = Snapshots.samples(torch.randn(4, 8), captions[:4], nrow=4)
    history = fit(
        model, TensorLoader(images, captions, 16), ELBO(likelihood="gaussian"), 2, callbacks=[frames], verbose=False
    )
    assert len(history) == 2 and len(frames.frames) == 2
    assert model.prior.net[-1].weight.abs().sum() > 0  # the prior learned


def test_conv_cvae_points_film_to_text_cvae():
    with pytest.raises(ValueError, match="text_cvae"):
        conv_cvae(mode="film")


# ---------------------------------------------------------------- measuring and showing text -> image
def test_summary_line_names_every_attribute_with_two_decimals():
    from course_lib.evaluation.scene_reader import summary_line

    line = summary_line({"colour": 0.8512, "shape": 0.7, "position": 0.9, "all three": 0.5049})
    assert line == "text -> image (reader): colour 0.85, shape 0.70, position 0.90, all three 0.50"


def test_mean_pairwise_distance_is_zero_for_copies_and_the_rms_difference_otherwise():
    from course_lib.evaluation.metrics import mean_pairwise_distance

    same = torch.rand(5, 1, 3, 8, 8).expand(5, 4, 3, 8, 8)
    assert mean_pairwise_distance(same) == pytest.approx(0, abs=1e-6)
    black_white = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])[None]  # one group of two
    assert mean_pairwise_distance(black_white) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k >= 2"):
        mean_pairwise_distance(torch.rand(5, 1, 3, 8, 8))


def test_same_attribute_groups_gather_real_images_one_caption_would_ask_for():
    from course_lib.evaluation.scene_reader import same_attribute_groups

    images = torch.arange(10.0).view(10, 1, 1, 1)
    targets = torch.tensor([[0, 0, 0]] * 4 + [[1, 1, 1]] * 3 + [[-1, 0, 0]] * 3)
    groups = same_attribute_groups(images, targets, k=3)
    assert groups.shape == (2, 3, 1, 1, 1)
    keys = {tuple(targets[int(i)].tolist()) for i in groups.flatten()}
    assert keys == {(0, 0, 0), (1, 1, 1)}  # unknown attributes never grouped
    for group in groups:
        assert len({tuple(targets[int(i)].tolist()) for i in group.flatten()}) == 1
    with pytest.raises(ValueError, match="smaller k"):
        same_attribute_groups(images, targets, k=5)


def test_sample_diversity_sets_samples_of_one_caption_beside_real_scenes_of_the_same_attributes():
    from course_lib.evaluation.scene_reader import sample_diversity

    copies = torch.rand(3, 1, 3, 4, 4).expand(3, 2, 3, 4, 4)  # 2 identical samples for each of 3 captions
    real = torch.linspace(0, 1, 4).view(4, 1, 1, 1).expand(4, 3, 4, 4)  # four greys, same attributes
    targets = torch.tensor([[0, 1, 2]] * 4)
    result = sample_diversity(copies, real, targets, "model")
    samples, scenes = result.values()
    assert samples == pytest.approx(0, abs=1e-6)
    assert scenes >= 1 / 3 - 1e-6  # any two of the four greys differ by at least 1/3 in every pixel
    assert list(result) == [
        "2 samples of one held-out caption (model)",
        "2 real training images with the same colour, shape and position",
    ]


def test_unseen_words_are_named_with_the_words_the_scenes_use():
    from course_lib.data.scenes import unseen_words, unseen_words_message

    assert unseen_words("A large red heart in the centre.") == []
    assert unseen_words_message("A large red heart in the centre.") is None
    assert unseen_words("A brown Hexagon at the top.") == ["hexagon", "brown"]
    message = unseen_words_message("A hexagon at the top.")
    assert "'hexagon'" in message and "heart" in message and "purple" in message


def test_wrapped_title_breaks_at_spaces():
    from course_lib.plotting import wrapped_title

    title = wrapped_title("A large green circle in the bottom right corner.", 20)
    assert all(len(line) <= 20 for line in title.splitlines())
    assert title.replace("\n", " ") == "A large green circle in the bottom right corner."


def test_caption_box_headless_shows_the_default_captions_samples(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from course_lib.plotting import caption_box

    monkeypatch.setenv("COURSE_WIDGETS", "0")
    asked = []
    caption_box(lambda caption: asked.append(caption) or torch.rand(4, 3, 8, 8), "A red heart.")
    assert asked == ["A red heart."]


def test_caption_box_in_a_notebook_draws_the_default_and_redraws_on_click(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import ipywidgets

    from course_lib.plotting import caption_box

    monkeypatch.setenv("COURSE_WIDGETS", "1")
    shown, asked = [], []
    monkeypatch.setattr("IPython.display.display", lambda widget: shown.append(widget))

    def draw(caption):
        asked.append(caption)
        if not caption.strip():
            raise ValueError("empty caption")
        return torch.rand(4, 3, 8, 8)

    caption_box(draw, "A red heart.")
    (box,) = shown
    assert isinstance(box, ipywidgets.VBox) and asked == ["A red heart."]
    text, button = box.children[0].children
    text.value = ""  # a bad caption: the message is printed, no exception escapes
    button.click()
    assert asked == ["A red heart.", "", ""]


# ---------------------------------------------------------------- ex-post: a mixture density network p(z | c)
def test_mixture_density_network_fits_a_code_that_depends_on_the_condition():
    from course_lib.core.losses import MixtureNLL
    from course_lib.models.priors import MixtureDensityNetwork

    torch.manual_seed(0)
    conditions = torch.nn.functional.one_hot(torch.arange(600) % 3, 3).float()  # three "captions"
    side = torch.where(torch.rand(600) < 0.5, -3.0, 3.0)  # each caption leaves one thing open: two modes
    codes = torch.stack([conditions.argmax(1).float() * 4, side], 1) + 0.1 * torch.randn(600, 2)
    torch.manual_seed(0)
    mdn = MixtureDensityNetwork(condition_dim=3, latent_dim=2, components=4, hidden=64)
    optimizer = torch.optim.Adam(mdn.parameters(), lr=1e-2)
    for step in range(1200):  # a plain loop: fit's per-epoch bookkeeping costs more than this tiny model
        batch = torch.randint(600, (100,))
        loss = MixtureNLL()(mdn, conditions[batch], codes[batch])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    drawn = mdn.sample(conditions, torch.Generator().manual_seed(1))
    assert ((drawn[:, 0] - codes[:, 0]).abs() < 0.6).float().mean() > 0.95  # what the caption says
    assert ((drawn[:, 1].abs() - 3).abs() < 0.6).float().mean() > 0.9  # on a mode, not between them
    assert 0.3 < (drawn[:, 1] > 0).float().mean() < 0.7  # both modes drawn
    assert mdn.log_prob(conditions, codes).mean() > mdn.log_prob(conditions, codes.flip(0)).mean()


def test_mixture_density_network_explains_bad_input():
    from course_lib.core.losses import MixtureNLL
    from course_lib.models.priors import MixtureDensityNetwork

    mdn = MixtureDensityNetwork(condition_dim=3, latent_dim=2)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        mdn.sample(torch.randn(4, 5))
    with pytest.raises(ValueError, match="needs the codes"):
        MixtureNLL()(mdn, torch.randn(4, 3), None)
    history = fit(mdn, TensorLoader(torch.randn(32, 3), torch.randn(32, 2), 16), MixtureNLL(), 1, verbose=False)
    assert "train_nll" in history


def test_samples_draw_z_from_the_fitted_density_once_there_is_one():
    from course_lib.models.priors import MixtureDensityNetwork

    torch.manual_seed(0)
    model = text_cvae((3, 32, 32), condition_dim=6, latent_dim=8)
    assert model.prior is None  # the default: N(0, I) in the ELBO, as the seeds
    density = MixtureDensityNetwork(6, 8, components=3, hidden=16)
    with torch.no_grad():
        density.net[-1].bias[3:] = 0.0
        density.net[-1].bias[3 : 3 + 8] = 4.0  # component 0's mean is 4 (the others 0), every spread 1
        density.net[-1].bias[:3] = torch.tensor([12.0, 0.0, 0.0])  # and it carries almost all the weight
        density.net[-1].weight.zero_()
    c = torch.randn(1000, 6)
    assert abs(float(model.sample_latent(c, torch.Generator().manual_seed(0)).mean())) < 0.1
    model.density = density
    z = model.sample_latent(c, torch.Generator().manual_seed(0))
    assert abs(float(z.mean()) - 4) < 0.1 and abs(float(z.std()) - 1) < 0.1
    noise = torch.randn(1000, 8)  # fixed noise takes the most probable component, for every row
    assert torch.allclose(model.sample_latent(c, noise=noise), noise + 4)
    density.temperature = 0.5  # half the spread around the same means
    z = model.sample_latent(c, torch.Generator().manual_seed(0))
    assert abs(float(z.mean()) - 4) < 0.1 and abs(float(z.std()) - 0.5) < 0.05
    density.temperature = 0.0  # the component's mean itself
    assert torch.allclose(model.sample_latent(c, noise=noise), torch.full_like(noise, 4.0))
    density.temperature = -1.0
    with pytest.raises(ValueError, match="temperature"):
        model.sample_latent(c)
    density.temperature = 1.0
    assert model.sample(c[:2]).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"noise must be \[3, 8\]"):
        model.sample_latent(c[:3], noise=torch.randn(2, 8))


def test_caption_density_recipe_fits_resumes_from_its_checkpoint_and_names_it(tmp_path, monkeypatch):
    from course_lib import recipes
    from course_lib.core.profiles import get_profile

    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    torch.manual_seed(0)
    conditions = torch.nn.functional.one_hot(torch.arange(400) % 4, 4).float()
    codes = conditions[:, :2] * 3 + 0.1 * torch.randn(400, 2)  # the code is what the caption says
    args = (conditions[:300], codes[:300], conditions[300:], codes[300:], 5, "ch06_density", get_profile("smoke"))
    density, history = recipes.caption_density(*args, seed=0, latent=2)
    assert not density.training and list(history.index) == [1, 2, 3, 4, 5]
    assert history["test_nll"].iloc[-1] < history["test_nll"].iloc[0]
    assert (tmp_path / "smoke" / "ch06_density-latent=2-lr=0.001.pt").exists()
    again, history_again = recipes.caption_density(*args, seed=0, latent=2)  # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(density.state_dict().values(), again.state_dict().values()))
    assert history_again["test_nll"].tolist() == history["test_nll"].tolist()


def test_as_condition_gives_every_caption_vector_length_sqrt_d():
    from course_lib.text.encoders import as_condition

    vectors = as_condition(torch.randn(5, 16) * torch.tensor([0.01, 1, 10, 100, 1000]).unsqueeze(1))
    assert torch.allclose(vectors.norm(dim=1), torch.full((5,), 4.0))
