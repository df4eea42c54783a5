"""The benchmarked inputs: one `Case` per task and model (and per clip for speech), the same request as
`Runtime.run` gets it and as the app's API gets it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO

MEDIA = Path(os.environ.get("MMDEMO_BENCH_MEDIA", REPO.parent / "shared" / "media"))
IMAGE = REPO / "assets" / "skimage_chelsea.png"
# Prompts use only words the benchmark checkpoints' (tiny) tokenizers know whole, so they are as many tokens as
# with the real vocabularies.
QUESTION = "what color is the cat?"
LABELS = ("cat", "dog", "bird", "car", "horse")
TEMPLATE = "a photo of a {}."
SENTIMENT_TEXT = "i really love this movie, the food was great but the service was terrible"
CAPTION_BEAMS = 3  # the captioning task's default beam width
CAPTION_TOKENS = 20  # captioning's max_new_tokens, forced: the benchmark models never stop early
SPEECH_MODELS = ("openai/whisper-tiny.en", "openai/whisper-base")
LONG_CLIP = "vosk_dagon.wav"
QUICK_CLIPS = ("jfk.flac", LONG_CLIP)


@dataclass
class Case:
    """One benchmarked input: the task's raw request, the same request as API arguments, and its peers."""

    key: str  # "vqa/blip", "speech/whisper-base/jfk"
    task: str
    model: str
    raw: dict[str, Any]  # what Runtime.run gets (file paths)
    api_name: str
    api_args: list[Any]  # positional gradio_client arguments; Path values are uploaded with handle_file
    reference: str | None = None  # transcript, for WER
    audio: Path | None = None


def speech_clips(names: Iterable[str] | None = None) -> list[tuple[Path, str]]:
    """English clips with a transcript from the shared media manifest (the long-form one included), or those of
    them named (file name or stem)."""
    manifest = json.loads((MEDIA / "MANIFEST.json").read_text())
    clips = [(MEDIA / a["path"], a["transcript"]) for a in manifest["audio"]
             if a.get("language") == "en" and a.get("transcript")]
    if names:
        names = set(names)
        clips = [(p, t) for p, t in clips if p.name in names or p.stem in names]
    return clips


def build_cases(tasks: Iterable[str] | None = None, *, speech_models: Iterable[str] = SPEECH_MODELS,
                clips: Iterable[str] | None = None, caption_tokens: int = CAPTION_TOKENS) -> list[Case]:
    """The cases of `tasks` (task names or case keys such as "vqa/blip"; default: all).

    Args:
        tasks: which cases; a speech task or key brings every clip of every speech model.
        speech_models: the Whisper checkpoints the speech cases run.
        clips: speech clips by file name or stem (default: every English clip of the shared media).
        caption_tokens: captioning's max_new_tokens.
    """
    tasks = list(tasks or ())
    img = IMAGE
    labels = ", ".join(LABELS)
    cases = [
        Case("vqa/blip", "vqa", "Salesforce/blip-vqa-base",
             {"image": str(img), "question": QUESTION, "model": "Salesforce/blip-vqa-base"},
             "/vqa", [img, QUESTION, "Salesforce/blip-vqa-base"]),
        Case("vqa/vilt", "vqa", "dandelin/vilt-b32-finetuned-vqa",
             {"image": str(img), "question": QUESTION, "model": "dandelin/vilt-b32-finetuned-vqa"},
             "/vqa", [img, QUESTION, "dandelin/vilt-b32-finetuned-vqa"]),
        Case("captioning/blip", "captioning", "Salesforce/blip-image-captioning-base",
             {"image": str(img), "prefix": "", "model": "Salesforce/blip-image-captioning-base", "mode": "beam",
              "num_beams": CAPTION_BEAMS, "max_new_tokens": caption_tokens, "num_captions": 1},
             "/captioning", [img, "", "Salesforce/blip-image-captioning-base", "beam", CAPTION_BEAMS, 0.9, 1.0, 0,
                             caption_tokens, 1]),
        Case("zero_shot/clip", "zero_shot", "openai/clip-vit-base-patch32",
             {"image": str(img), "labels": labels, "model": "openai/clip-vit-base-patch32", "template": TEMPLATE},
             "/zero_shot", [img, labels, "openai/clip-vit-base-patch32", TEMPLATE, False]),
        Case("zero_shot/siglip", "zero_shot", "google/siglip-base-patch16-224",
             {"image": str(img), "labels": labels, "model": "google/siglip-base-patch16-224", "template": TEMPLATE},
             "/zero_shot", [img, labels, "google/siglip-base-patch16-224", TEMPLATE, False]),
        Case("sentiment/text", "sentiment", "cardiffnlp/twitter-roberta-base-sentiment-latest",
             {"text": SENTIMENT_TEXT, "text_model": "cardiffnlp/twitter-roberta-base-sentiment-latest"},
             "/sentiment", [SENTIMENT_TEXT, None, None, "weighted_average", 1, 1, 1,
                            "cardiffnlp/twitter-roberta-base-sentiment-latest", "openai/clip-vit-base-patch32",
                            "openai/whisper-base", "", "", ""]),
    ]
    wants_speech = not tasks or any(t == "speech" or t.startswith("speech/") for t in tasks)
    for model in speech_models if wants_speech else ():  # the clips' manifest is read only when needed
        language = "auto" if model.endswith(".en") else "en"
        for path, transcript in speech_clips(clips):
            cases.append(Case(
                f"speech/{model.split('/')[-1]}/{path.stem}", "speech", model,
                {"audio": str(path), "model": model, "language": language, "task": "transcribe", "timestamps": "none"},
                "/speech", [path, model, language, "transcribe", "none"], reference=transcript, audio=path))
    if tasks:
        cases = [c for c in cases if c.task in tasks or c.key in tasks]
    return cases


def result_output(case: Case, result: dict[str, Any]) -> Any:
    """The part of a task result worth keeping: the transcript, answer, caption, top label."""
    if case.task == "speech":
        return result.get("text")
    if case.task == "vqa":
        return result.get("answer")
    if case.task == "captioning":
        return result.get("caption")
    if case.task == "zero_shot":
        return [item["label"] for item in result.get("labels", [])][:3]
    return result.get("label")


def client_args(case: Case) -> list[Any]:
    """The case's API arguments for gradio_client: files as `handle_file` uploads."""
    from gradio_client import handle_file

    return [handle_file(str(a)) if isinstance(a, Path) else a for a in case.api_args]
