"""Short text to Fashion-MNIST class: synonyms, whole words, overlaps, first mention, errors."""

from __future__ import annotations

import ast
import inspect

import pytest

import course_lib.text.to_class
from course_lib.data.images import FASHION_MNIST_CLASSES
from course_lib.text.to_class import (
    FASHION_SYNONYMS,
    ClassMatch,
    UnknownClassError,
    class_words,
    find_classes,
    synonym_pattern,
    text_to_class,
)

EXPECTED = {
    0: ["t-shirt", "tshirt", "tee shirt", "tee", "top"],
    1: ["trouser", "pants", "jeans", "slacks"],
    2: ["pullover", "sweater", "hoodie", "jumper", "sweatshirt"],
    3: ["dress", "gown"],
    4: ["coat", "jacket", "parka", "blazer"],
    5: ["sandal", "flip-flop"],
    6: ["shirt", "blouse"],
    7: ["sneaker", "trainer", "shoe"],
    8: ["bag", "handbag", "purse", "backpack", "tote"],
    9: ["ankle boot", "boot"],
}
ALL_WORDS = [(word, index) for index, words in EXPECTED.items() for word in words]


def index_of(text: str) -> int:
    return text_to_class(text).index


# --------------------------------------------------------------------------- the synonyms


@pytest.mark.parametrize(("word", "index"), ALL_WORDS, ids=[word for word, _ in ALL_WORDS])
def test_every_synonym_maps_to_its_class(word, index):
    assert FASHION_SYNONYMS[word] == index
    match = text_to_class(f"a picture of a {word}, please")
    assert (match.index, match.name, match.word) == (index, FASHION_MNIST_CLASSES[index], word)


def test_every_class_has_a_word_and_every_word_a_valid_class():
    assert set(FASHION_SYNONYMS.values()) == set(range(len(FASHION_MNIST_CLASSES)))


def test_synonyms_literal_has_no_duplicate_key():
    """Report 003's dict held 'Shirt' twice; a dict literal keeps the last one without a word."""
    tree = ast.parse(inspect.getsource(course_lib.text.to_class))
    literal = next(
        node.value for node in tree.body if isinstance(node, ast.AnnAssign) and node.target.id == "FASHION_SYNONYMS"
    )
    keys = [key.value for key in literal.keys]
    assert len(keys) == len(set(keys)) == len(FASHION_SYNONYMS)


def test_one_word_for_two_classes_is_refused():
    with pytest.raises(ValueError, match="two classes"):
        find_classes("a shirt", {"Shirt": 0, "shirt": 6})
    with pytest.raises(ValueError, match="blank"):
        find_classes("a shirt", {"shirt": 6, " ": 0})


def test_class_words_groups_by_class_in_index_order():
    assert class_words() == {FASHION_MNIST_CLASSES[index]: words for index, words in EXPECTED.items()}
    assert class_words({"hat": 1}, ("A", "B", "C")) == {"A": [], "B": ["hat"], "C": []}


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("text", ["A RED DRESS", "a red dress", "a Red Dress", "a rEd dReSs"])
def test_case_insensitive(text):
    match = text_to_class(text)
    assert (match.index, match.word) == (3, text[6:])


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("dresses", 3),
        ("boots", 9),
        ("sneakers", 7),
        ("pants", 1),
        ("shoes", 7),
        ("t-shirts", 0),
        ("ankle boots", 9),
        ("flip-flops", 5),
        ("Trousers", 1),
        ("shirts", 6),
        ("tees", 0),
        ("bags", 8),
    ],
)
def test_plurals(text, index):
    match = text_to_class(text)
    assert (match.index, match.word) == (index, text)


@pytest.mark.parametrize(
    "text",
    ["topaz", "shoelace", "bootleg", "stop", "coats2", "tee_shirt", "addressed", "baggage", "shirtless", "pantsuit"],
)
def test_whole_words_only(text):
    """A known word inside a longer word is not that word: "topaz" holds no "top"."""
    assert find_classes(text) == []
    with pytest.raises(UnknownClassError):
        text_to_class(text)


def test_bootleg_jeans_are_trousers():
    assert [match.index for match in find_classes("bootleg jeans")] == [1]


@pytest.mark.parametrize(
    ("text", "index", "word"),
    [
        ("t-shirt", 0, "t-shirt"),
        ("T-Shirt", 0, "T-Shirt"),
        ("t shirt", 0, "t shirt"),
        ("tshirt", 0, "tshirt"),
        ("tee shirt", 0, "tee shirt"),
        ("Tee-Shirts", 0, "Tee-Shirts"),
        ("tees", 0, "tees"),
        ("shirt", 6, "shirt"),
        ("ankle boot", 9, "ankle boot"),
        ("ankle-boots", 9, "ankle-boots"),
        ("boot", 9, "boot"),
        ("flip-flop", 5, "flip-flop"),
        ("flip flops", 5, "flip flops"),
    ],
)
def test_overlaps_resolve_to_the_longest_phrase(text, index, word):
    assert find_classes(f"my {text}.") == [ClassMatch(index, FASHION_MNIST_CLASSES[index], word, 3)]


def test_seed_003_bugs_shirt_is_shirt_and_t_shirt_is_t_shirt():
    """Report 003 mapped 'Shirt' to 0 and then to 6 in one dict, and searched 'shirt' inside 't-shirt'."""
    assert text_to_class("shirt") == ClassMatch(6, "Shirt", "shirt", 0)
    assert text_to_class("t-shirt") == ClassMatch(0, "T-shirt/top", "t-shirt", 0)
    assert text_to_class("a white t-shirt and a shirt").index == 0
    assert text_to_class("a shirt and a white t-shirt").index == 6


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("dress!", 0),
        ("(coat)", 1),
        ("'sandal'", 1),
        ('"bag".', 1),
        ("a coat, please", 2),
        ("jacket?", 0),
        ("sneaker;", 0),
        ("-gown-", 1),
        ("[hoodie]", 1),
        ("top\n", 0),
    ],
)
def test_punctuation_around_words(text, start):
    match = text_to_class(text)
    assert text[match.start : match.start + len(match.word)] == match.word
    assert match.start == start
    assert match.word.strip("!()'\";,.?-[]\n ") == match.word


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("a coat over a dress", "Coat"),
        ("a dress under a coat", "Dress"),
        ("sneakers or sandals", "Sneaker"),
        ("sandals or sneakers", "Sandal"),
        ("a bag with a boot print", "Bag"),
        ("boots in a bag", "Ankle boot"),
    ],
)
def test_first_mentioned_class_wins(text, name):
    assert text_to_class(text).name == name


def test_find_classes_returns_all_matches_in_order_with_positions():
    text = "A Hoodie, two T-shirts and ankle boots; no topaz, one BAG"
    assert find_classes(text) == [
        ClassMatch(2, "Pullover", "Hoodie", 2),
        ClassMatch(0, "T-shirt/top", "T-shirts", 14),
        ClassMatch(9, "Ankle boot", "ankle boots", 27),
        ClassMatch(8, "Bag", "BAG", 54),
    ]
    for match in find_classes(text):
        assert text[match.start : match.start + len(match.word)] == match.word


def test_find_classes_repeats_a_class_mentioned_twice():
    assert [(m.index, m.start) for m in find_classes("coat, jacket, coat")] == [(4, 0), (4, 6), (4, 14)]


def test_custom_synonyms_and_class_names():
    names = ("zero", "one")
    assert find_classes("A Cat and a DOG", {"cat": 0, "dog": 1}, names) == [
        ClassMatch(0, "zero", "Cat", 2),
        ClassMatch(1, "one", "DOG", 12),
    ]


def test_a_longer_phrase_wins_over_its_own_first_word():
    """Only sorting the alternatives longest first stops "tee" from matching inside "tee shirt"."""
    assert find_classes("a tee shirt", {"tee": 0, "tee shirt": 1}, ("A", "B")) == [ClassMatch(1, "B", "tee shirt", 2)]


def test_alternatives_are_tried_longest_first():
    pattern = synonym_pattern({"boot": 9, "ankle boot": 9, "shirt": 6, "t-shirt": 0}).pattern
    assert pattern.index("ankle") < pattern.index("(boot)")
    assert pattern.index("(t") < pattern.index("(shirt)")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_empty_text_is_a_value_error(text):
    with pytest.raises(ValueError, match="empty") as error:
        text_to_class(text)
    assert not isinstance(error.value, UnknownClassError)


@pytest.mark.parametrize("text", [None, 3, b"dress", ["dress"]])
def test_non_str_is_a_type_error(text):
    with pytest.raises(TypeError, match="str"):
        text_to_class(text)
    with pytest.raises(TypeError, match="str"):
        find_classes(text)


def test_unknown_text_lists_the_known_words():
    with pytest.raises(UnknownClassError) as error:
        text_to_class("a purple hat")
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert "'a purple hat'" in message
    assert "T-shirt/top: t-shirt, tshirt, tee shirt, tee, top; Trouser: trouser, pants, jeans, slacks" in message
    assert "Ankle boot: ankle boot, boot" in message
    for word in ("hoodie", "flip-flop", "blouse", "backpack", "gown"):
        assert word in message


def test_unknown_class_error_is_raised_not_returned():
    """Report 003 *returned* Exception("No valid label"), which a caller could mistake for a label."""
    assert issubclass(UnknownClassError, ValueError)
    with pytest.raises(ValueError):
        text_to_class("nothing to wear")
