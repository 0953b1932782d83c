"""Exercise checks: references pass, wrong answers fail with a message that helps, unfinished
exercises fall back to the reference, and every result is recorded for the grader."""

from __future__ import annotations

import json
import math

import pytest
import torch

from course_lib import checks
from course_lib.checks import EXERCISES, assert_passed, check
from course_lib.core.losses import kl_per_dim
from course_lib.models import mlp_cvae
from course_lib.models.cvae import one_hot

FALLBACK = "The rest of the notebook uses the library's reference implementation"


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    """Each test sees only its own check results, and none is written to a file unless it asks."""
    monkeypatch.setattr(checks, "results", {})
    monkeypatch.delenv(checks.RESULTS_ENV, raising=False)


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_every_reference_passes_its_own_check(exercise, capsys):
    reference = EXERCISES[exercise].reference
    assert check(exercise, reference) is reference
    assert checks.results[exercise] == "passed"
    assert f"Exercise {exercise} passed" in capsys.readouterr().out


def test_an_unfinished_exercise_says_so_and_returns_the_reference(capsys):
    def my_kl(mu, logvar):
        raise NotImplementedError("Exercise 2.1: write your solution here")

    assert check("2.1", my_kl) is EXERCISES["2.1"].reference
    assert checks.results["2.1"] == "not done"
    assert capsys.readouterr().out.startswith(
        "Exercise 2.1 is not done yet: the rest of the notebook uses the library's reference implementation"
    )


def _reparameterize_with_one_noise_per_dimension(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[1])


WRONG_ANSWERS = {
    "KL summed over the batch too": (
        "2.1",
        lambda mu, logvar: 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(),
        ["'random mu and logvar, 8 images x 5 dimensions'", "expected shape [8], got shape []"],
    ),
    "KL without the 1/2": (
        "2.1",
        lambda mu, logvar: (mu**2 + logvar.exp() - 1 - logvar).sum(1),
        ["the values differ", "expected: [", "got:      ["],
    ),
    "loss summed over the batch": (
        "1.1",
        lambda logits, x: torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum"),
        ["the values differ", "expected: 633.", "got:      1013"],
    ),
    "variance used as standard deviation": (
        "2.2",
        lambda mu, logvar: mu + logvar.exp() * torch.randn_like(mu),
        ["standard deviation is not exp(0.5 * logvar)", "std over the batch"],
    ),
    "sample without gradients": (
        "2.2",
        lambda mu, logvar: torch.normal(mu, (0.5 * logvar).exp()).detach(),
        ["no gradient reaches mu"],
    ),
    "sample without mu": (
        "2.2",
        lambda mu, logvar: torch.exp(0.5 * logvar) * torch.randn_like(mu),
        ["no gradient reaches mu"],
    ),
    "one standard deviation for all dimensions (caught by a hidden case)": (
        "2.2",
        lambda mu, logvar: mu + torch.exp(0.5 * logvar).mean() * torch.randn_like(mu),
        ["'mu = [1, -2, 0.5] and standard deviations [0.5, 1, 3]'", "standard deviation is not"],
    ),
    "samples shifted away from mu": (
        "2.2",
        lambda mu, logvar: mu + 0.5 + torch.exp(0.5 * logvar) * torch.randn_like(mu),
        ["not centred on mu"],
    ),
    "one noise value per dimension for the whole batch": (
        "2.2",
        _reparameterize_with_one_noise_per_dimension,
        ["standard deviation is not"],
    ),
    "integer one-hot vectors": (
        "4.1",
        lambda labels, k: torch.nn.functional.one_hot(labels, k),
        ["expected a floating-point tensor, got dtype torch.int64"],
    ),
    "ten classes hard-coded (caught by a hidden case)": (
        "4.1",
        lambda labels, k: torch.nn.functional.one_hot(labels, 10).float(),
        ["'k = 3, labels [2, 1, 0, 0]'", "expected shape [4, 3], got shape [4, 10]"],
    ),
    "nats per dimension, not bits": (
        "3.1",
        lambda nats, shape: nats / math.prod(shape),
        ["expected 0.999582, got 0.692857", "hint:     divide"],
    ),
    "a function that raises": (
        "4.1",
        lambda labels, k: torch.zeros(len(labels), k)[labels.max() + 1],
        ["your function raised IndexError"],
    ),
    "a function that returns nothing": ("3.1", lambda nats, shape: None, ["returned None (did you forget `return`?)"]),
}


@pytest.mark.parametrize("name", WRONG_ANSWERS)
def test_a_wrong_answer_is_explained_and_falls_back_to_the_reference(name, capsys):
    exercise, wrong, phrases = WRONG_ANSWERS[name]
    assert check(exercise, wrong) is EXERCISES[exercise].reference
    assert checks.results[exercise] == "failed"
    out = capsys.readouterr().out
    assert out.startswith(f"Exercise {exercise} (") and "is not right yet" in out and FALLBACK in out
    for phrase in phrases:
        assert phrase in out, f"{phrase!r} missing from:\n{out}"


def test_something_that_is_not_a_function_fails_without_crashing(capsys):
    assert check("2.1", torch.zeros(3)) is EXERCISES["2.1"].reference
    assert "Expected a function, got Tensor" in capsys.readouterr().out


def test_an_unknown_exercise_is_an_authoring_error():
    with pytest.raises(ValueError, match="No check for exercise '9.9'; checks exist for 1.1, 2.1"):
        check("9.9", abs)


def test_results_are_recorded_in_the_file_the_grader_names(tmp_path, monkeypatch):
    results_file = tmp_path / "results.json"
    monkeypatch.setenv(checks.RESULTS_ENV, str(results_file))
    check("4.1", one_hot)
    check("3.1", lambda nats, shape: 0.0)
    recorded = json.loads(results_file.read_text())
    assert {exercise: r["status"] for exercise, r in recorded.items()} == {"4.1": "passed", "3.1": "failed"}
    assert "expected 0.999582, got 0" in recorded["3.1"]["message"]


def test_checking_leaves_the_notebooks_random_numbers_alone():
    torch.manual_seed(1)
    before = torch.rand(3)
    torch.manual_seed(1)
    check("2.2", EXERCISES["2.2"].reference)
    assert torch.equal(torch.rand(3), before)


def test_assert_passed_guards_the_chapters_own_solutions():
    with pytest.raises(AssertionError, match="'not run'"):
        assert_passed("2.1")
    check("2.1", lambda mu, logvar: kl_per_dim(mu, logvar).sum(1))
    assert_passed("2.1")


def test_kl_reference_matches_torch_distributions():
    """What chapter 02's check compared with before the reference moved into course_lib."""
    mu, logvar = torch.randn(8, 5), torch.randn(8, 5)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    expected = torch.distributions.kl_divergence(q, prior).sum(1)
    assert torch.allclose(EXERCISES["2.1"].reference(mu, logvar), expected, atol=1e-5)


def test_one_hot_reference_is_what_the_cvae_builds():
    """What chapter 04's check compared with before the reference moved into course_lib."""
    labels = torch.tensor([3, 0, 9, 3])
    assert torch.equal(mlp_cvae().as_condition(labels).cpu(), one_hot(labels, 10))
    assert torch.equal(one_hot(labels, 10), torch.nn.functional.one_hot(labels, 10).float())
