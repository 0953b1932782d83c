"""Checks of the chapters' exercises against the library's reference code (every chapter).

A chapter's check cell runs ``my_kl = check("2.1", my_kl)``. The check calls the student's function
and the library's reference on the cases the exercise shows, then on more cases (random inputs and
edge cases), and prints what it found:

- passed: the student's function comes back, and the rest of the notebook uses it;
- not done yet (the function still raises ``NotImplementedError``), or wrong: a note says so, with
  the case, the expected and the returned value, and the library's reference comes back instead,
  so every later cell still runs.

When ``$COURSE_CHECK_RESULTS`` names a JSON file (``python -m course_lib.instructor.grade`` sets it), every
result is recorded there too; the grader turns the records into points.

Imports course_lib.core, course_lib.evaluation, course_lib.text and course_lib.models (the layers below).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course_lib.core.losses import bits_per_dim, kl_per_dim, reconstruction_nll
from course_lib.evaluation.analysis import assignment_purity
from course_lib.models import VAE
from course_lib.models.cvae import one_hot
from course_lib.text.encoders import mean_pool

RESULTS_ENV = "COURSE_CHECK_RESULTS"
PASSED, FAILED, NOT_DONE = "passed", "failed", "not done"
RETURNED_NONE = "your function returned None (did you forget `return`?)"

results: dict[str, str] = {}
"""Status of every exercise checked in this session (exercise id -> passed / failed / not done)."""


class WrongAnswer(Exception):
    """Raised by a check's own code (not the student's) when a result has the wrong form (the exercise
    checks of chapters 01, 02, 03, 04, 05, 07 and 08)."""


@dataclass(frozen=True)
class Case:
    """One input of a check (chapters 01, 02, 03, 04, 05, 07 and 08). ``make`` builds fresh arguments on every call,
    so a function that changes its inputs in place cannot affect the reference's run."""

    name: str
    make: Callable[[], tuple]
    hidden: bool = False


def _call(function: Callable, args: tuple) -> Any:
    return function(*args)


@dataclass(frozen=True)
class Exercise:
    """What a check compares: the reference, the cases, and how to compare two results (one per
    exercise of chapters 01, 02, 03, 04, 05, 07 and 08)."""

    title: str
    reference: Callable
    reference_name: str
    cases: Callable[[], list[Case]]
    compare: Callable[[Any, Any], str | None]
    run: Callable[[Callable, tuple], Any] = _call  # what to observe of one call (the result by default)
    hint: str = ""


def check(exercise: str, candidate: Any) -> Callable:
    """Check a student's function for ``exercise`` (e.g. "2.1") and return the function later cells
    should use: the student's when it passes, the library's reference otherwise
    (chapters 01, 02, 03, 04, 05, 07 and 08)."""
    spec = _exercise(exercise)
    status, message = _evaluate(spec, candidate)
    if status == PASSED:
        message = f"Exercise {exercise} passed: {message}"
    elif status == NOT_DONE:
        message = (
            f"Exercise {exercise} is not done yet: the rest of the notebook uses the library's "
            f"reference implementation ({spec.reference_name})."
        )
    elif status == FAILED:
        message = (
            f"Exercise {exercise} ({spec.title}) is not right yet. {message}\n"
            f"The rest of the notebook uses the library's reference implementation "
            f"({spec.reference_name}) instead. Fix your function and run this cell again."
        )
    print(message)
    _record(exercise, status, message)
    return candidate if status == PASSED else spec.reference


def assert_passed(exercise: str) -> None:
    """Raise unless ``exercise`` passed its check in this session: the chapters' hidden tests use it,
    so the instructor's version fails loudly when its own solution stops passing
    (chapters 01, 02, 03, 04, 05, 07 and 08)."""
    status = results.get(exercise, "not run")
    if status != PASSED:
        raise AssertionError(
            f"Exercise {exercise}: the chapter's solution should pass its check, but it is {status!r}."
        )


def _exercise(exercise: str) -> Exercise:
    if exercise not in EXERCISES:
        raise ValueError(f"No check for exercise {exercise!r}; checks exist for {', '.join(EXERCISES)}.")
    return EXERCISES[exercise]


def _evaluate(spec: Exercise, candidate: Any) -> tuple[str, str]:
    """Run every case; return (status, what went wrong) at the first case that fails."""
    if not callable(candidate):
        return FAILED, f"Expected a function, got {type(candidate).__name__}."
    cases = spec.cases()
    for case in cases:
        try:
            got = _seeded(spec.run, candidate, case.make())
        except NotImplementedError:
            return NOT_DONE, ""
        except WrongAnswer as wrong:
            return FAILED, _failure(spec, case, str(wrong))
        except Exception as error:  # the student's code raised: report it, never crash the notebook
            return FAILED, _failure(spec, case, f"your function raised {type(error).__name__}: {error}")
        expected = _seeded(spec.run, spec.reference, case.make())
        problem = RETURNED_NONE if got is None else spec.compare(got, expected)
        if problem:
            return FAILED, _failure(spec, case, problem, got, expected)
    shown = sum(not case.hidden for case in cases)
    return PASSED, (
        f"your function agrees with {spec.reference_name} on all {len(cases)} cases ({shown} shown "
        f"in the exercise, {len(cases) - shown} more random and edge cases)."
    )


def _seeded(run: Callable[[Callable, tuple], Any], function: Callable, args: tuple) -> Any:
    """Call with the same random numbers for student and reference, leaving the notebook's RNG alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return run(function, args)


def _failure(spec: Exercise, case: Case, problem: str, got: Any = None, expected: Any = None) -> str:
    names = list(inspect.signature(spec.reference).parameters)
    inputs = ", ".join(f"{name} = {_describe(value)}" for name, value in zip(names, case.make()))
    lines = [f"On the case '{case.name}': {problem}.", f"  input:    {inputs}"]
    if expected is not None:
        lines += [f"  expected: {_describe(expected)}", f"  got:      {_describe(got)}"]
    if spec.hint:
        lines.append(f"  hint:     {spec.hint}")
    return "\n".join(lines)


def _describe(value: Any) -> str:
    """A short, readable description: small tensors in full, large ones by shape and range."""
    if isinstance(value, dict):
        return "; ".join(f"{key} {_describe(item)}" for key, item in value.items())
    if isinstance(value, Tensor):
        value = value.detach()
        if value.numel() <= 12:
            if not value.dim():
                return f"{value.item():.6g} (0-d tensor)"
            return f"{np.array2string(value.cpu().numpy(), precision=4, separator=', ')} ({value.dtype})"
        floats = value.float()
        return (
            f"tensor of shape {list(value.shape)} ({value.dtype}), values {floats.min().item():.4g} .. "
            f"{floats.max().item():.4g}"
        )
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _record(exercise: str, status: str, message: str) -> None:
    results[exercise] = status
    path = os.environ.get(RESULTS_ENV)
    if path:
        file = Path(path)
        recorded = json.loads(file.read_text()) if file.exists() else {}
        recorded[exercise] = {"status": status, "message": message}
        file.write_text(json.dumps(recorded, indent=2))


# --- comparisons ------------------------------------------------------------------------------


def _form_problem(got: Any, shape: Sequence[int]) -> str | None:
    """What is wrong with the type, shape or dtype of a tensor result, if anything."""
    if got is None:
        return RETURNED_NONE
    if not isinstance(got, Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if list(got.shape) != list(shape):
        return f"expected shape {list(shape)}, got shape {list(got.shape)}"
    if not got.is_floating_point():
        return f"expected a floating-point tensor, got dtype {got.dtype}"
    return None


def _tensors_close(rtol: float, atol: float) -> Callable[[Any, Tensor], str | None]:
    def compare(got: Any, expected: Tensor) -> str | None:
        problem = _form_problem(got, expected.shape)
        if problem:
            return problem
        got = got.detach().to(expected.device, expected.dtype)
        if torch.allclose(got, expected, rtol=rtol, atol=atol):
            return None
        return f"the values differ (largest difference {(got - expected).abs().max().item():.4g})"

    return compare


def _numbers_close(got: Any, expected: float) -> str | None:
    try:
        value = float(got)  # Python, NumPy and one-element torch numbers
    except (TypeError, ValueError, RuntimeError):
        return f"expected a single number, got {type(got).__name__}"
    if not math.isclose(value, float(expected), rel_tol=1e-6, abs_tol=1e-12):
        return f"expected {float(expected):.6g}, got {value:.6g}"
    return None


def _sample_summary(function: Callable, args: tuple) -> dict[str, Any]:
    """What a reparameterised sample must get right: its moments over the batch and its gradients."""
    mu, logvar = (t.clone().requires_grad_(True) for t in args)
    z = function(mu, logvar)
    problem = _form_problem(z, mu.shape)
    if problem:
        raise WrongAnswer(problem)
    if z.requires_grad:
        z.sum().backward()
    return {
        "mean over the batch": z.detach().mean(0),
        "std over the batch": z.detach().std(0),
        "gradient reaches mu": mu.grad is not None and bool(mu.grad.abs().sum() > 0),
        "gradient reaches logvar": logvar.grad is not None and bool(logvar.grad.abs().sum() > 0),
    }


def _samples_agree(got: dict[str, Any], expected: dict[str, Any]) -> str | None:
    for name in ("mu", "logvar"):
        if not got[f"gradient reaches {name}"]:
            return f"no gradient reaches {name}, so the encoder could not learn from this sample"
    std = expected["std over the batch"]
    # Tolerances of 7 and 6 standard errors (4096 samples), in case the noise was drawn another way.
    if not ((got["std over the batch"] - std).abs() <= 0.1 * std + 1e-5).all():
        return "the samples' standard deviation is not exp(0.5 * logvar)"
    if not ((got["mean over the batch"] - expected["mean over the batch"]).abs() <= 0.15 * std + 1e-5).all():
        return "the samples are not centred on mu"
    return None


# --- the exercises ------------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_reconstruction_nll(logits: Tensor, x: Tensor) -> Tensor:
    """Exercise 1.1's loss: the library's per-image Bernoulli NLL, averaged over the batch."""
    return reconstruction_nll(logits, x).mean()


def _reconstruction_cases() -> list[Case]:
    def batch(shape: tuple[int, ...], seed: int, binary: bool = False, scale: float = 1.0) -> Callable[[], tuple]:
        def make() -> tuple[Tensor, Tensor]:
            generator = _generator(seed)
            logits, x = torch.randn(shape, generator=generator) * scale, torch.rand(shape, generator=generator)
            return logits, (x > 0.5).float() if binary else x

        return make

    return [
        Case("random logits and pixels in [0, 1], 16 images of 1x28x28", batch((16, 1, 28, 28), 0)),
        Case("binary pixels (0 or 1)", batch((8, 1, 28, 28), 1, binary=True), hidden=True),
        Case("4 colour images of 3x5x7", batch((4, 3, 5, 7), 2), hidden=True),
        Case("a single image", batch((1, 1, 28, 28), 3), hidden=True),
        Case("confident logits (up to about +-10)", batch((8, 1, 28, 28), 4, scale=2.5), hidden=True),
    ]


def _kl_per_image(mu: Tensor, logvar: Tensor) -> Tensor:
    """Exercise 2.1's KL: the library's closed-form KL per dimension, summed over the dimensions."""
    return kl_per_dim(mu, logvar).sum(1)


def _kl_cases() -> list[Case]:
    def gaussian(shape: tuple[int, int], seed: int, mu_scale: float = 1.0, logvar_scale: float = 1.0) -> Callable:
        def make() -> tuple[Tensor, Tensor]:
            generator = _generator(seed)
            return (
                torch.randn(shape, generator=generator) * mu_scale,
                torch.randn(shape, generator=generator) * logvar_scale,
            )

        return make

    return [
        Case("random mu and logvar, 8 images x 5 dimensions", gaussian((8, 5), 0)),
        Case(
            "mu = 0 and logvar = 0, the prior itself: the KL must be 0", lambda: (torch.zeros(3, 5), torch.zeros(3, 5))
        ),
        Case(
            "a wide range of variances (logvar from about -9 to 9)", gaussian((16, 4), 1, logvar_scale=3.0), hidden=True
        ),
        Case("large means (up to about +-15)", gaussian((4, 8), 2, mu_scale=5.0), hidden=True),
        Case("a single latent dimension", gaussian((5, 1), 3), hidden=True),
    ]


def _reparameterize_cases() -> list[Case]:
    def posterior(mu: list[float], logvar: list[float], n: int = 4096) -> Callable[[], tuple]:
        return lambda: (torch.tensor(mu).expand(n, -1).clone(), torch.tensor(logvar).expand(n, -1).clone())

    log = math.log
    return [
        Case(
            "mu = 0 and standard deviation 2 (logvar = log 4), 4096 samples of 3 dimensions",
            posterior([0.0, 0.0, 0.0], [log(4.0)] * 3),
        ),
        Case(
            "mu = [1, -2, 0.5] and standard deviations [0.5, 1, 3]",
            posterior([1.0, -2.0, 0.5], [log(0.25), 0.0, log(9.0)]),
            hidden=True,
        ),
        Case("almost no noise (logvar = -20): z must be mu", posterior([0.3, -1.0, 2.0], [-20.0] * 3), hidden=True),
    ]


def _one_hot_cases() -> list[Case]:
    return [
        Case("labels [3, 0, 9, 3], k = 10", lambda: (torch.tensor([3, 0, 9, 3]), 10)),
        Case("k = 3, labels [2, 1, 0, 0]", lambda: (torch.tensor([2, 1, 0, 0]), 3), hidden=True),
        Case("a single label [7], k = 10", lambda: (torch.tensor([7]), 10), hidden=True),
        Case(
            "every class once, shuffled, k = 10", lambda: (torch.randperm(10, generator=_generator(0)), 10), hidden=True
        ),
    ]


def _bits_per_dim_cases() -> list[Case]:
    return [
        Case("543.2 nats per image of shape (1, 28, 28)", lambda: (543.2, (1, 28, 28))),
        Case("0 nats", lambda: (0.0, (1, 28, 28)), hidden=True),
        Case("RGB images of shape (3, 32, 32), 6000 nats", lambda: (6000.0, (3, 32, 32)), hidden=True),
        Case("the shape as a list [3, 64, 64]", lambda: (12000.0, [3, 64, 64]), hidden=True),
        Case("a NumPy number and a torch.Size", lambda: (np.float64(250.0), torch.Size([1, 28, 28])), hidden=True),
    ]


def _mean_pool_cases() -> list[Case]:
    def tokens(lengths: list[int], width: int, seed: int, max_length: int | None = None) -> Callable[[], tuple]:
        def make() -> tuple:
            length = max_length or max(lengths)
            hidden = torch.randn(len(lengths), length, width, generator=_generator(seed))
            mask = (torch.arange(length) < torch.tensor(lengths).unsqueeze(1)).long()  # as tokenizers return it
            return hidden, mask

        return make

    return [
        Case("3 captions of 5, 3 and 1 tokens, padded to 5, vectors of 4", tokens([5, 3, 1], 4, 0)),
        Case("no padding at all (every mask entry is 1)", tokens([6, 6], 8, 1), hidden=True),
        Case("a single caption with 7 of 10 tokens real", tokens([7], 16, 2, max_length=10), hidden=True),
        Case(
            "64 captions of random lengths, 384-d like MiniLM",
            tokens(torch.randint(1, 20, (64,), generator=_generator(3)).tolist(), 384, 4),
            hidden=True,
        ),
    ]


def _gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """Exercise 7.1's KL(q || p) of two diagonal Gaussians, summed over the dimensions: [B]."""
    return kl_per_dim(mu_q, logvar_q, mu_p, logvar_p).sum(1)


def _gaussian_kl_cases() -> list[Case]:
    def gaussians(shape: tuple[int, int], seed: int, logvar_scale: float = 1.0) -> Callable[[], tuple]:
        def make() -> tuple[Tensor, ...]:
            generator = _generator(seed)
            mu_q, mu_p = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
            logvar_q, logvar_p = (torch.randn(shape, generator=generator) * logvar_scale for _ in range(2))
            return mu_q, logvar_q, mu_p, logvar_p

        return make

    def standard_prior() -> tuple[Tensor, ...]:
        mu_q, logvar_q, _, _ = gaussians((8, 5), 1)()
        return mu_q, logvar_q, torch.zeros(8, 5), torch.zeros(8, 5)

    def same() -> tuple[Tensor, ...]:
        mu, logvar, _, _ = gaussians((4, 3), 2)()
        return mu, logvar, mu.clone(), logvar.clone()

    return [
        Case("random q and p, 6 texts x 4 dimensions", gaussians((6, 4), 0)),
        Case("p = N(0, I): the KL of exercise 2.1", standard_prior),
        Case("q = p: the KL must be 0", same, hidden=True),
        Case(
            "a wide range of variances (logvar from about -9 to 9)",
            gaussians((16, 4), 3, logvar_scale=3.0),
            hidden=True,
        ),
        Case("a single latent dimension", gaussians((5, 1), 4), hidden=True),
    ]


def _purity_cases() -> list[Case]:
    def random(n: int, groups: int, classes: int, seed: int) -> Callable[[], tuple]:
        def make() -> tuple[Tensor, Tensor]:
            generator = _generator(seed)
            return (
                torch.randint(0, groups, (n,), generator=generator),
                torch.randint(0, classes, (n,), generator=generator),
            )

        return make

    return [
        Case(
            "9 points on 3 map units, 3 classes",
            lambda: (torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]), torch.tensor([0, 0, 1, 1, 1, 1, 2, 0, 1])),
        ),
        Case(
            "every point alone on its unit: purity 1",
            lambda: (torch.arange(6), torch.tensor([0, 1, 0, 1, 0, 1])),
            hidden=True,
        ),
        Case(
            "all points on one unit: the majority class's share",
            lambda: (torch.zeros(5, dtype=torch.long), torch.tensor([3, 3, 1, 3, 1])),
            hidden=True,
        ),
        Case(
            "unit numbers with gaps (units 4, 17 and 399 of a 20x20 map)",
            lambda: (torch.tensor([399, 4, 17, 4, 399, 399]), torch.tensor([1, 0, 2, 1, 1, 0])),
            hidden=True,
        ),
        Case("2,000 random points on 100 units, 10 classes", random(2000, 100, 10, 5), hidden=True),
    ]


EXERCISES: dict[str, Exercise] = {
    "1.1": Exercise(
        "the reconstruction loss by hand",
        _mean_reconstruction_nll,
        "course_lib.core.losses.reconstruction_nll(logits, x).mean()",
        _reconstruction_cases,
        _tensors_close(rtol=1e-4, atol=1e-4),
        hint="sum the binary cross-entropy over the pixels of each image, then average over the images.",
    ),
    "2.1": Exercise(
        "the closed-form KL",
        _kl_per_image,
        "course_lib.core.losses.kl_per_dim(mu, logvar).sum(1)",
        _kl_cases,
        _tensors_close(rtol=1e-4, atol=1e-5),
        hint="0.5 * (mu^2 + exp(logvar) - 1 - logvar), summed over dimension 1 (the latent dimensions).",
    ),
    "2.2": Exercise(
        "the reparameterisation trick",
        VAE.reparameterize,
        "course_lib.models.VAE.reparameterize",
        _reparameterize_cases,
        _samples_agree,
        run=_sample_summary,
        hint="z = mu + exp(0.5 * logvar) * eps with eps = torch.randn_like(mu): "
        "exp(0.5 * logvar) is the standard deviation.",
    ),
    "3.1": Exercise(
        "bits per dimension",
        bits_per_dim,
        "course_lib.core.losses.bits_per_dim",
        _bits_per_dim_cases,
        _numbers_close,
        hint="divide by the number of values per image (the product of the shape) and by "
        "math.log(2), which turns nats into bits.",
    ),
    "4.1": Exercise(
        "one-hot vectors",
        one_hot,
        "course_lib.models.cvae.one_hot",
        _one_hot_cases,
        _tensors_close(rtol=0.0, atol=0.0),
        hint="start from torch.zeros(len(labels), k) and set one entry per row to 1.0.",
    ),
    "5.1": Exercise(
        "masked mean pooling",
        mean_pool,
        "course_lib.models.blocks.mean_pool",
        _mean_pool_cases,
        _tensors_close(rtol=1e-5, atol=1e-6),
        hint="multiply the vectors by the mask (as floats, with a last dimension of 1), sum over the "
        "tokens (dimension 1), and divide by the number of real tokens of each caption.",
    ),
    "7.1": Exercise(
        "the KL between two Gaussians",
        _gaussian_kl,
        "course_lib.core.losses.kl_per_dim(mu_q, logvar_q, mu_p, logvar_p).sum(1)",
        _gaussian_kl_cases,
        _tensors_close(rtol=1e-4, atol=1e-5),
        hint="per dimension 0.5 * (logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1), "
        "summed over dimension 1; with mu_p = 0 and logvar_p = 0 it is exercise 2.1's KL.",
    ),
    "8.1": Exercise(
        "purity of map units",
        assignment_purity,
        "course_lib.evaluation.analysis.assignment_purity",
        _purity_cases,
        _numbers_close,
        hint="for each unit, count how often each label occurs there and keep the largest count; "
        "add these up over the units and divide by the number of points.",
    ),
}
"""Every exercise with an automatic check, by id ("chapter.number", as in the chapters' headings)."""
