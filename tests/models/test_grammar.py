"""models/grammar.py: the exact validity checker against a recursive-descent parser."""

import itertools

import numpy as np
import pytest

from probdyn.models import grammar as g


@pytest.mark.parametrize(
    "s, valid",
    [
        ("C", True),
        ("CC(N)O", True),
        ("C1CCC1", True),
        ("C1CC(N2CC2)C1", True),
        ("C12CC1C2", True),
        ("C(C(C)N)O", True),
        ("C11", False),  # a ring closing on its own atom
        ("C1CC", False),  # unclosed ring
        ("C(", False),
        ("C()", False),  # empty branch
        ("(C)", False),
        ("C)(", False),
        ("1C", False),
        ("C(1C)", False),  # a digit must follow an atom
        ("CC)", False),
        ("", False),
        ("CX", False),
    ],
)
def test_checker_examples(s, valid):
    assert g.is_valid(s) is valid
    assert g.parse(s) is valid


def test_checker_equals_parser_on_all_short_strings():
    """Brute force: every string of up to 6 characters over C ( ) 1 2."""
    alphabet = "C()12"
    disagree, num_valid = [], 0
    for n in range(7):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            a, b = g.is_valid(s), g.parse(s)
            num_valid += a
            if a != b:
                disagree.append(s)
    assert not disagree, disagree[:10]
    assert num_valid > 20  # the language is not trivially small at this length


def test_samples_are_valid_and_varied():
    strings = g.sample(0, 1000)
    assert all(g.is_valid(s) for s in strings)
    assert len(set(strings)) > 400  # one-atom strings ("C") recur by design
    text = "".join(strings)
    for tok in ("(", "1", "2", "N", "O"):
        assert tok in text
    assert max(len(s) for s in strings) <= 40
    # reproducible
    assert g.sample(0, 50) == g.sample(0, 50)


def test_encode_decode_round_trip():
    strings = g.sample(np.random.default_rng(1), 100)
    tokens = g.encode(strings, 40)
    assert tokens.shape == (100, 42)
    assert (tokens[:, 0] == g.BOS).all()
    assert g.decode(tokens) == strings
    with pytest.raises(ValueError, match="strings\\[0\\]"):
        g.encode(["CCCC"], 2)
    with pytest.raises(ValueError, match="VOCAB"):
        g.encode(["CX"], 5)
    with pytest.raises(ValueError, match="num"):
        g.sample(0, 0)
