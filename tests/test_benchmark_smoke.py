"""The benchmark's word error rate on hand-checked cases (nothing slow: no model, no app)."""

from __future__ import annotations

import pytest

from benchmarks.wer import corpus_wer, edit_distance, normalize, wer


def test_normalize_drops_case_and_punctuation():
    expected = ["and", "so", "my", "fellow", "americans", "ask", "not"]
    assert normalize("And so, my fellow Americans: ASK not!") == expected
    assert normalize("don't stop—well-known") == ["don't", "stop", "well", "known"]
    assert normalize("I have 2 cats") == normalize("i have two cats.")


def test_identical_text_is_zero():
    assert wer("The birch canoe slid on the smooth planks.", "the birch canoe slid on the smooth planks") == 0.0


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("a b c d", "a x c d", 1 / 4),  # one substitution
        ("a b c d", "a b d", 1 / 4),  # one deletion
        ("a b c d", "a b c d e f", 2 / 4),  # two insertions
        ("a b c d", "", 1.0),  # everything deleted
        ("a b", "c d e f", 4 / 2),  # can exceed 1
        ("", "", 0.0),
        ("", "noise", 1.0),
    ],
)
def test_hand_cases(reference, hypothesis, expected):
    assert wer(reference, hypothesis) == pytest.approx(expected)


def test_edit_distance_is_levenshtein_on_words():
    assert edit_distance(["kitten", "sat"], ["sitting", "sat", "down"]) == 2
    assert edit_distance([], ["a"]) == 1


def test_corpus_wer_weights_by_reference_length():
    pairs = [("a b c d", "a b c d"), ("e f", "e x")]
    assert corpus_wer(pairs) == pytest.approx(1 / 6)
