"""Short text to a Fashion-MNIST class, with one regular expression (chapter 04).

A conditional VAE trained on Fashion-MNIST takes a class index, not text. Before reaching for a text
encoder, chapter 04 turns a short description ("a red dress", "Ankle boots!") into that index by
looking for known words: the class names and a few synonyms, in the singular or plural.

Report 003 did this with a dict holding ``'Shirt'`` twice (as 0 and as 6, so the last one silently won)
and a loop of ``re.search`` calls, and *returned* ``Exception("No valid label")`` instead of raising
it. Here every word appears once, matching is done by one compiled pattern, overlapping words resolve
to the longest phrase ("t-shirt" is not also a "shirt"), and unknown text raises an error that lists
the words a student can type.

Imports course_lib.data (images) only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from course_lib.data.images import FASHION_MNIST_CLASSES

FASHION_SYNONYMS: dict[str, int] = {
    "t-shirt": 0,
    "tshirt": 0,
    "tee shirt": 0,
    "tee": 0,
    "top": 0,
    "trouser": 1,
    "pants": 1,
    "jeans": 1,
    "slacks": 1,
    "pullover": 2,
    "sweater": 2,
    "hoodie": 2,
    "jumper": 2,
    "sweatshirt": 2,
    "dress": 3,
    "gown": 3,
    "coat": 4,
    "jacket": 4,
    "parka": 4,
    "blazer": 4,
    "sandal": 5,
    "flip-flop": 5,
    "shirt": 6,
    "blouse": 6,
    "sneaker": 7,
    "trainer": 7,
    "shoe": 7,
    "bag": 8,
    "handbag": 8,
    "purse": 8,
    "backpack": 8,
    "tote": 8,
    "ankle boot": 9,
    "boot": 9,
}

PLURAL = r"(?:e?s)?"  # "boot" matches "boots", "dress" matches "dresses"
SEPARATOR = r"[\s-]*"  # a space or hyphen in a phrase: "t-shirt", "T shirt", "tshirt", "ankle-boot"


class ClassMatch(NamedTuple):
    """One class word found in a text (chapter 04): the class, and the word as written at ``text[start:]``."""

    index: int
    name: str
    word: str
    start: int


class UnknownClassError(ValueError):
    """The text names no known class; the message lists the words that would work (chapter 04)."""


def synonym_pattern(synonyms: Mapping[str, int]) -> re.Pattern[str]:
    """One case-insensitive pattern with a capturing group per synonym, longest synonym first (chapter 04).

    Group ``i`` (1-based) is ``_longest_first(synonyms)[i - 1]``. Words must stand alone: no letter,
    digit or underscore may touch them, so "topaz" has no "top" but "(coat)" and "dress!" match.
    """
    _check_synonyms(synonyms)
    alternatives = "|".join(f"({_phrase(word)})" for word in _longest_first(synonyms))
    return re.compile(rf"(?<!\w)(?:{alternatives}){PLURAL}(?!\w)", re.IGNORECASE)


def _check_synonyms(synonyms: Mapping[str, int]) -> None:
    """Refuse blank words, and one word (up to case, spaces and hyphens) given to two classes."""
    seen: dict[str, int] = {}
    for word, index in synonyms.items():
        key = re.sub(r"[\s-]+", "", word).lower()
        if not key:
            raise ValueError(f"synonym {word!r} is blank")
        if seen.setdefault(key, index) != index:
            raise ValueError(f"synonym {word!r} is given two classes, {seen[key]} and {index}")


def _phrase(word: str) -> str:
    """Regex for a word or phrase whose spaces and hyphens may be written either way, or left out."""
    return SEPARATOR.join(re.escape(part) for part in re.split(r"[\s-]+", word.strip()))


def _longest_first(synonyms: Mapping[str, int]) -> list[str]:
    """The synonyms, longest first (ties alphabetical, for a stable order)."""
    return sorted(synonyms, key=lambda word: (-len(word), word))


def find_classes(
    text: str, synonyms: Mapping[str, int] = FASHION_SYNONYMS, class_names: Sequence[str] = FASHION_MNIST_CLASSES
) -> list[ClassMatch]:
    """Every class word in ``text``, in order of appearance, case-insensitive, whole words only (chapter 04).

    Where known words overlap, the longest phrase wins: "ankle boots" is one Ankle boot (not also a
    Boot), "t-shirt" and "tee shirt" one T-shirt/top each (not also a Shirt), "flip-flops" one Sandal.
    """
    _require_str(text)
    words = _longest_first(synonyms)
    found = []
    for match in synonym_pattern(synonyms).finditer(text):
        index = synonyms[words[match.lastindex - 1]]
        found.append(ClassMatch(index, class_names[index], match.group(), match.start()))
    return found


def text_to_class(
    text: str, synonyms: Mapping[str, int] = FASHION_SYNONYMS, class_names: Sequence[str] = FASHION_MNIST_CLASSES
) -> ClassMatch:
    """The class a short text asks for: the **first mentioned** class wins (chapter 04).

    "a coat over a dress" is a Coat, "a dress under a coat" a Dress. Raises ``TypeError`` for a
    non-string, ``ValueError`` for empty or blank text, and :class:`UnknownClassError` (a
    ``ValueError``) when no known word appears; its message lists the known words by class.
    """
    _require_str(text)
    if not text.strip():
        raise ValueError("the text is empty: describe a piece of clothing, e.g. 'a red dress'")
    matches = find_classes(text, synonyms, class_names)
    if not matches:
        raise UnknownClassError(
            f"no Fashion-MNIST class in {text!r}. Known words (plurals work too): "
            + _known_words(synonyms, class_names)
        )
    return matches[0]


def class_words(
    synonyms: Mapping[str, int] = FASHION_SYNONYMS, class_names: Sequence[str] = FASHION_MNIST_CLASSES
) -> dict[str, list[str]]:
    """Class name -> its known words, classes in index order, words in ``synonyms`` order (chapter 04)."""
    words: dict[str, list[str]] = {name: [] for name in class_names}
    for word, index in synonyms.items():
        words[class_names[index]].append(word)
    return words


def _known_words(synonyms: Mapping[str, int], class_names: Sequence[str]) -> str:
    """``"T-shirt/top: t-shirt, tshirt, tee shirt, tee, top; Trouser: ..."``"""
    return "; ".join(f"{name}: {', '.join(words)}" for name, words in class_words(synonyms, class_names).items())


def _require_str(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
