"""Words and how sure Whisper was of each, from the tokens and token probabilities of one greedy pass.

A word is a run of text tokens that starts with a space (Whisper's byte-level BPE marks a word start that way;
punctuation without a space stays with the word before it). Its probability is the mean of its tokens'
probabilities, as openai/whisper (`timing.add_word_timestamps`) and faster-whisper define it: a product would
make every long word look unsure merely for having more tokens.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

DEFAULT_CONFIDENCE = 0.5  # below this probability a word is marked as low-confidence (the UI's and API's default)
_NORMAL = re.compile(r"[^\w']+")


def split_words(tokenizer: Any, tokens: Sequence[int], probabilities: Sequence[float],
                first_special: int) -> list[dict[str, Any]]:
    """The words of `tokens` (ids at or above `first_special`, timestamps and markers, are skipped), each as
    {"text", "probability"} with the mean probability of its tokens."""
    words: list[dict[str, Any]] = []
    group: list[int] = []
    group_probabilities: list[float] = []

    def close() -> None:
        # Decoded as a group: a character's bytes may span several tokens.
        text = tokenizer.decode(group).strip()
        if text:
            words.append({"text": text, "probability": round(sum(group_probabilities) / len(group), 4)})
        group.clear()
        group_probabilities.clear()

    for token, probability in zip(tokens, probabilities, strict=True):
        if token >= first_special:
            continue
        if group and tokenizer.convert_ids_to_tokens(token).startswith("\u0120"):  # "Ġ": a space before it
            close()
        group.append(token)
        group_probabilities.append(probability)
    if group:
        close()
    return words


def mark_low_confidence(words: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Set each word's "low_confidence": its probability is under `threshold` (unknown probabilities are not)."""
    for word in words:
        probability = word.get("probability")
        word["low_confidence"] = probability is not None and probability < threshold
    return words


def normal_word(text: str) -> str:
    """A word as compared across hypotheses: lower case, punctuation dropped ("Hello," == "hello")."""
    return _NORMAL.sub("", text.lower())


def copy_probabilities(timed: list[dict[str, Any]], scored: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each word of `timed` the probability of the same word in `scored` (matched in order, by normalised
    text); words with no match get None."""
    a = [normal_word(word["text"]) for word in timed]
    b = [normal_word(word["text"]) for word in scored]
    for word in timed:
        word["probability"] = None
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            timed[block.a + k]["probability"] = scored[block.b + k]["probability"]
    return timed
