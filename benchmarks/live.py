"""Live transcription, simulated: a recorded clip streamed through the live policy and the `speech_live` task.

The same code path as the speech tab's Live mode (mmdemo.tasks.speech.live over Runtime.run), fed the way Gradio's
microphone feeds it: the browser records 0.1 s slices and sends all it has whenever the server is idle, so a slow
step means a larger next chunk, never lost audio. By default time is simulated (the clock advances by each step's
measured compute, so a 3-minute stream takes only its compute); `--realtime` paces the audio by the wall clock,
which is what several streams at once need (they share the CPU while each waits for its audio).

Reported per clip: committed-word lag (commit time minus the word's end in the audio, median and p90), tentative
lag (first time the word shows at all), compute per decoding step (median, p90, the first and last thirds of the
stream, and its growth per minute of stream by least squares, to see that it stays flat), and the final
transcript's WER against the reference and against the offline transcript. Word ends come from the speech task's
word timestamps on the whole clip.

    python -m benchmarks.live                                   # tiny.en: every English clip, the 34 s clip, 3 min
    python -m benchmarks.live --model openai/whisper-base --clips audio/vosk_dagon.wav
    python -m benchmarks.live --streams 4 --realtime --clips audio/vosk_dagon.wav
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

MEDIA = Path(os.environ.get("MMDEMO_BENCH_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
LONG = "long-3min"  # the English clips joined with 0.5 s pauses until three minutes
TICK = 0.1  # seconds: the browser's recording slice
LONG_SECONDS = 180.0


@dataclass
class StreamReport:
    clip: str
    seconds: float
    committed_lag: list[float] = field(default_factory=list)
    tentative_lag: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)  # compute per decoding step, in order
    step_at: list[float] = field(default_factory=list)  # seconds of audio received when each step ran
    text: str = ""
    rewritten: int = 0  # committed words changed afterwards (must stay 0)

    def summary(self, reference: str, offline: str) -> dict[str, Any]:
        from mmdemo.testing.wer import wer

        def q(values: list[float], p: float) -> float | None:
            return round(float(np.percentile(values, p)), 2) if values else None

        third = max(1, len(self.steps) // 3)
        # How much a step's compute grows per minute of stream (least squares): a policy whose buffer grows with
        # the stream (re-decoding everything heard) shows seconds here, a bounded one about zero.
        growth = (round(60 * statistics.linear_regression(self.step_at, self.steps).slope, 3)
                  if self.seconds >= 60 and len(set(self.step_at)) > 1 else None)  # a short clip has no trend
        return {
            "clip": self.clip, "audio_s": round(self.seconds, 1), "words": len(self.text.split()),
            "committed_lag_median": q(self.committed_lag, 50), "committed_lag_p90": q(self.committed_lag, 90),
            "tentative_lag_median": q(self.tentative_lag, 50), "tentative_lag_p90": q(self.tentative_lag, 90),
            "steps": len(self.steps), "step_median": q(self.steps, 50), "step_p90": q(self.steps, 90),
            "step_first_third": q(self.steps[:third], 50), "step_last_third": q(self.steps[-third:], 50),
            "step_growth_per_minute": growth,
            "wer_live": round(wer(reference, self.text), 4), "wer_offline": round(wer(reference, offline), 4),
            "wer_live_vs_offline": round(wer(offline, self.text), 4), "rewritten": self.rewritten, "text": self.text,
        }


def manifest() -> dict[str, dict[str, Any]]:
    return {item["path"]: item for item in json.loads((MEDIA / "MANIFEST.json").read_text())["audio"]}


def english_clips() -> list[str]:
    return sorted(path for path, item in manifest().items() if item.get("language") == "en" and "transcript" in item)


@cache
def load(clip: str) -> np.ndarray:
    from mmdemo.media import load_audio

    return load_audio(str(MEDIA / clip), max_seconds=600, target_rate=16_000).samples


def _normal(words: list[str]) -> list[str]:
    from mmdemo.tasks.speech.words import normal_word

    return [normal_word(w) for w in words]


class Offline:
    """The offline transcript and word timings of each clip, through the speech task (cached per clip)."""

    def __init__(self, runtime: Any, model: str) -> None:
        self.runtime, self.model = runtime, model
        self._cache: dict[str, tuple[str, list[tuple[str, float]]]] = {}

    def clip(self, clip: str) -> tuple[str, list[tuple[str, float]]]:
        if clip not in self._cache:
            path = str(MEDIA / clip)
            text = self.runtime.run("speech", {"audio": path, "model": self.model})["text"]
            timed = self.runtime.run("speech", {"audio": path, "model": self.model, "timestamps": "word"})["words"]
            self._cache[clip] = (text, [(w["text"], float(w["end"])) for w in timed])
        return self._cache[clip]


def long_stream(clips: list[str], offline: Offline) -> tuple[np.ndarray, str, str, list[tuple[str, float]]]:
    """The clips joined with 0.5 s pauses, repeated until LONG_SECONDS: samples, reference, offline text, word ends."""
    pause = np.zeros(8000, dtype=np.float32)
    pieces, references, texts, timed, offset = [], [], [], [], 0.0
    while offset < LONG_SECONDS:
        for clip in clips:
            samples = load(clip)
            text, words = offline.clip(clip)
            pieces += [samples, pause]
            references.append(manifest()[clip]["transcript"])
            texts.append(text)
            timed += [(word, offset + end) for word, end in words]
            offset += (len(samples) + len(pause)) / 16_000
            if offset >= LONG_SECONDS:
                break
    return np.concatenate(pieces), " ".join(references), " ".join(texts), timed


def stream(name: str, samples: np.ndarray, timed: list[tuple[str, float]], step: Callable[..., dict[str, Any]],
           options: Any, *, realtime: bool, synchronous: bool = False) -> StreamReport:
    """Feed `samples` as the browser would and record when each reference word is shown and committed.

    `synchronous`: the clock does not advance by a step's compute, so every step sees the audio up to when it was
    due, however slow the machine (for accuracy that does not depend on the load; the lags are then meaningless).
    """
    from mmdemo.tasks.speech.live import LiveTranscriber

    committed: list[Any] = []
    report = StreamReport(name, len(samples) / 16_000)
    live = LiveTranscriber(step, options, on_commit=committed.extend)
    reference = _normal([w for w, _ in timed])
    ends = [end for _, end in timed]
    first_shown: dict[int, float] = {}
    first_committed: dict[int, float] = {}

    def note(now: float, shown: list[str], into: dict[int, float]) -> None:
        matcher = difflib.SequenceMatcher(None, reference, _normal(shown), autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                into.setdefault(block.a + k, now)

    start_wall = time.perf_counter()
    clock, fed, total = 0.0, 0, len(samples)
    snapshot: list[str] = []
    while True:
        if realtime:
            clock = time.perf_counter() - start_wall
        available = min(total, int(clock * 16_000))
        if available > fed:
            live.insert(samples[fed:available])
            fed = available
        ended = fed >= total
        if ended or live.due():
            began = time.perf_counter()
            update = live.finish() if ended else live.process()
            spent = time.perf_counter() - began
            if update.decoded:
                report.steps.append(spent)
                report.step_at.append(fed / 16_000)
            clock = time.perf_counter() - start_wall if realtime else clock + (0.0 if synchronous else spent)
            words = [w.text for w in committed]
            if words[:len(snapshot)] != snapshot:
                report.rewritten += 1
            snapshot = words
            note(clock, words, first_committed)
            note(clock, words + [w.text for w in update.tentative], first_shown)
            if ended:
                break
        else:
            live.process()  # drops silence, as each chunk does in the app
            next_tick = (int(clock / TICK + 1e-9) + 1) * TICK
            if realtime:
                time.sleep(max(0.0, next_tick - (time.perf_counter() - start_wall)))
            else:
                clock = next_tick
    report.text = " ".join(w.text for w in committed)
    report.committed_lag = [first_committed[i] - ends[i] for i in first_committed]
    report.tentative_lag = [first_shown[i] - ends[i] for i in first_shown]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="openai/whisper-tiny.en")
    parser.add_argument("--clips", nargs="*", help=f"clips under {MEDIA} and/or {LONG} (default: all English + long)")
    parser.add_argument("--streams", type=int, default=1, help="simultaneous streams of each clip (threads)")
    parser.add_argument("--realtime", action="store_true", help="pace the audio by the wall clock")
    parser.add_argument("--synchronous", action="store_true",
                        help="steps take no simulated time: WER independent of the machine's speed (lags meaningless)")
    parser.add_argument("--step", type=float, default=None, help="min seconds of new audio per decoding step")
    parser.add_argument("--pause", type=float, default=None, help="seconds of silence that end a segment")
    parser.add_argument("--full-window", action="store_true",
                        help="encode a full 30 s window every step (the live step's shorter context switched off)")
    parser.add_argument("--decode-committed", action="store_true",
                        help="decode the committed words in the buffer again every step (no forced start)")
    parser.add_argument("--steps-at-once", type=int, default=None,
                        help="live steps let onto the CPU at once (default: one per core, in turn)")
    parser.add_argument("--json", type=Path, help="write the reports here")
    args = parser.parse_args()

    import torch

    import mmdemo.tasks  # noqa: F401
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings, default_model_dir
    from mmdemo.tasks.speech.live import LiveOptions

    runtime = local_runtime(Settings(model_dir=default_model_dir(), device="cpu", memory_budget=4 * 1024**3))
    offline = Offline(runtime, args.model)
    changed = {name: value for name, value in (("min_step_seconds", args.step), ("pause_seconds", args.pause))
               if value is not None}
    options = LiveOptions(**changed, forced_start=not args.decode_committed)
    if args.steps_at_once:
        from mmdemo.tasks.speech import step_threads

        step_threads.cores = lambda: args.steps_at_once
    if args.full_window:
        from mmdemo.tasks.speech import live_step

        live_step.MIN_CONTEXT_SECONDS = live_step.WINDOW_SECONDS

    def step(samples: np.ndarray, prompt: str, prefix: str, language: str | None) -> dict[str, Any]:
        return runtime.run("speech_live", {"model": args.model, "samples": samples, "prompt": prompt,
                                           "prefix": prefix, "language": language})

    clips = args.clips or [*english_clips(), LONG]
    print(f"model {args.model} · torch threads {torch.get_num_threads()} · {args.streams} stream(s) · "
          f"{'real time' if args.realtime else 'simulated time'} · load {os.getloadavg()}", flush=True)
    step(np.zeros(16_000, dtype=np.float32), "", "", None)  # load the model outside the measurements
    results = []
    for clip in clips:
        if clip == LONG:
            samples, reference, offline_text, timed = long_stream(english_clips(), offline)
        else:
            samples = load(clip)
            offline_text, timed = offline.clip(clip)
            reference = manifest()[clip]["transcript"]
        reports: list[StreamReport] = []

        def run_one(clip: str, samples: np.ndarray, timed: list[tuple[str, float]], reports: list) -> None:
            reports.append(stream(clip, samples, timed, step, options, realtime=args.realtime,
                                  synchronous=args.synchronous))

        threads = [threading.Thread(target=run_one, args=(clip, samples, timed, reports)) for _ in range(args.streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for report in reports:
            summary = report.summary(reference, offline_text)
            summary["streams"] = args.streams
            results.append(summary)
            print(json.dumps(summary), flush=True)
    clips_only = [r for r in results if r["clip"] != LONG]
    if len({r["clip"] for r in clips_only}) > 1:  # the clips as one corpus (the first stream of each)
        from mmdemo.testing.wer import corpus_wer

        firsts = {r["clip"]: r for r in reversed(clips_only)}
        pairs = [(manifest()[clip]["transcript"], r["text"], offline.clip(clip)[0]) for clip, r in firsts.items()]
        print(json.dumps({"corpus": len(pairs), "words": sum(len(ref.split()) for ref, _, _ in pairs),
                          "wer_live": round(corpus_wer([(ref, text) for ref, text, _ in pairs]), 4),
                          "wer_offline": round(corpus_wer([(ref, off) for ref, _, off in pairs]), 4)}), flush=True)
    print(f"load afterwards {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "realtime": args.realtime, "streams": args.streams,
                                         "options": vars(options), "results": results}, indent=1))


if __name__ == "__main__":
    main()
