"""mmdemo.testing.wer: jiwer's alignment on Whisper's normalised text, on hand-computed pairs."""

from __future__ import annotations

import pytest

from mmdemo.testing.wer import corpus_wer, normalize, wer, word_errors


def test_whisper_normalisation_makes_spelled_and_written_numbers_and_titles_agree():
    assert normalize("And so, my fellow Americans: ASK not!") == "and so my fellow americans ask not"
    assert normalize("Twenty-five dollars, Mr. Smith.") == normalize("$25, mister smith")
    assert wer("I have two cats.", "i have 2 cats") == 0.0
    assert normalize("Привет, мир!", language="ru") == "привет мир"


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("the cat sat down", "the dog sat down", 1 / 4),  # one substitution
        ("the cat sat down", "the cat down", 1 / 4),  # one deletion
        ("the cat sat down", "the cat sat down on it", 2 / 4),  # two insertions
        ("the cat sat down", "", 1.0),  # everything deleted
        ("the cat", "red green blue sky", 4 / 2),  # can exceed 1
        ("", "", 0.0),
        ("", "noise", 1.0),
    ],
)
def test_hand_computed_word_error_rates(reference, hypothesis, expected):
    assert wer(reference, hypothesis) == pytest.approx(expected)


def test_alignment_counts_and_corpus_rate_weighted_by_reference_length():
    errors = word_errors(["the cat sat down", "red green"], ["a cat sat", "red blue green"])
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.words) == (1, 1, 1, 6)
    assert corpus_wer([("the cat sat down", "the cat sat down"), ("red green", "red blue")]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_errors(["a", "b"], ["a"])
