"""VQA-v2 answer normalisation and accuracy, ported from the official evaluation (GT-Vision-Lab/VQA,
`PythonEvaluationTools/vqaEvaluation/vqaEval.py`): no maintained package ships it.

Normalisation: lower case, punctuation removed (or replaced by a space), periods kept only inside numbers, number
words to digits, articles dropped, missing apostrophes of contractions restored ("dont" -> "don't").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The official table's contracted forms; the key each is found under is the form without its apostrophes.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's I'd I'd've I'm I've isn't it'd it'd've it'll let's ma'am mightn't mightn't've "
    "might've "
    "mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd she'd've she's should've shouldn't "
    "shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's "
    "something'd something'd've something'll that's there'd there'd've there're there's they'd they'd've they'll "
    "they're they've 'twas wasn't we'd we'd've we're we've weren't what'll what're what's what've when's where'd "
    "where's where've who'd who'd've who'll who're who's who've why'll why're why's won't would've wouldn't "
    "wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've"
).split()
CONTRACTIONS = {form.replace("'", "").lower(): form.lower() for form in _CONTRACTED}  # keys lower case: they are
# looked up after lower-casing (the official table's "Im" never matches there)
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the official pattern, quirk included: a period not before a digit
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
MATCHES_FOR_FULL_CREDIT = 3  # "an answer is deemed 100% accurate if at least 3 workers provided that exact answer"


def _punctuation(text: str) -> str:
    out = text
    for mark in PUNCTUATION:
        if f"{mark} " in text or f" {mark}" in text or _COMMA_IN_NUMBER.search(text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out)


def _digits_and_articles(text: str) -> str:
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(answer: str) -> str:
    """An answer as the official evaluation compares it."""
    text = " ".join(answer.replace("\n", " ").replace("\t", " ").split())
    return _digits_and_articles(_punctuation(text))


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """min(#references equal to the prediction / 3, 1) after normalisation; exact match (0 or 1) with one reference."""
    if not references:
        raise ValueError("VQA accuracy needs at least one reference answer")
    answer = normalize_answer(prediction)
    matches = sum(normalize_answer(reference) == answer for reference in references)
    if len(references) == 1:
        return float(matches)
    return min(matches / MATCHES_FOR_FULL_CREDIT, 1.0)
