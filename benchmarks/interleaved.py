"""(a) the app through gradio_client, (a') over plain HTTP, (b) `Runtime.run` in this process and (c) the bare
transformers call, taken in turns call after call for each case, so that a shared machine's drift over hours falls on
all of them alike. Speech cases also take faster-whisper (int8, greedy) in turns: handed the decoded samples,
as `benchmarks.run` does, and handed the file, as a user of faster-whisper would call it (it then decodes the file
itself, with PyAV).

`benchmarks.run` measures the app, then the in-process variants and the peers, minutes apart; this side study
answers two questions at one time: what the app adds over the same work, and how the app's speech compares with
faster-whisper's. The app runs `python app.py` on the benchmark models (as `benchmarks.run` does); (c) gets the same
Linear format as the app.

    python -m benchmarks.interleaved --repeats 5                 # -> benchmarks/results/<tag>/interleaved.md
    python -m benchmarks.interleaved --repeats 5 --tasks speech  # -> .../interleaved-speech.md
"""

from __future__ import annotations

import gc
import os
import statistics
from collections.abc import Callable
from typing import Any

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models, ensure_ct2_whisper
from benchmarks.cases import Case, build_cases, client_args
from benchmarks.harness import AppProcess, HttpClient, app_env, timed
from benchmarks.in_process import InProcess, bare_call
from benchmarks.side_study import log_path, side_study_parser, write_table

OVERHEAD_HEADER = ["| case | (a) app | (a') HTTP | (a) predict | (b) runtime | (c) bare | (a)/(c) | (a')/(c) | "
                   "(a) predict / (b) |", "|---|---|---|---|---|---|---|---|---|"]
SPEECH_HEADER = ["| case | (a) app | (a') HTTP | (b) runtime | fw, samples | fw, file | (a) / fw file | "
                 "(a') / fw file | (b) / fw samples | same text: app, fw |",
                 "|---|---|---|---|---|---|---|---|---|---|"]


def main() -> None:
    parser = side_study_parser(__doc__, repeats=5)
    parser.add_argument("--tasks", nargs="+", default=["vqa", "captioning", "zero_shot", "sentiment"],
                        help="tasks or case keys, as benchmarks.run --tasks (speech: every clip of both models)")
    parser.add_argument("--clips", nargs="+", help="speech clips by name (default: every English clip)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gradio_client import Client

    cases = build_cases(args.tasks, clips=args.clips)
    model_dir = ensure_bench_models(DEFAULT_ROOT, ids={case.model for case in cases})
    bench = InProcess(model_dir, args.repeats, "int8")
    speech_only = all(case.task == "speech" for case in cases)
    name = "interleaved-speech" if speech_only else "interleaved"
    app = AppProcess(app_env(dict(os.environ), model_dir, {}), log_path(args.tag, f"{name}-app"))
    app.start()
    overhead, speech = list(OVERHEAD_HEADER), list(SPEECH_HEADER)
    peers = FasterWhisper() if any(case.task == "speech" for case in cases) else None
    try:
        client, http = Client(app.url, verbose=False, ssl_verify=False), HttpClient(app.url)
        for case in cases:
            print(f"  {case.key}", flush=True)
            model, processor = bench.load_model(case.model, bench.runtime_quantization(case))
            inputs = bench.decoded_inputs(case)
            outputs: dict[str, Any] = {}
            predict_ms: list[float] = []

            def app_call(case=case, predict_ms=predict_ms, outputs=outputs) -> None:
                result = client.predict(*client_args(case), api_name=case.api_name)
                predict_ms.append(result["provenance"]["ms"])
                outputs["a"] = result

            def bare(case=case, model=model, processor=processor, inputs=inputs) -> Any:
                import torch

                with torch.inference_mode():
                    return bare_call(case)(model, processor, inputs, case, bench)

            calls: dict[str, Callable[[], Any]] = {
                "a": app_call,
                "http": lambda case=case: http.predict(*case.api_args, api_name=case.api_name),
                "b": lambda case=case: bench.runtime.run(case.task, case.raw),
                "c": bare,
            }
            if peers and case.task == "speech":
                calls.update(peers.calls(case, inputs["samples"], outputs))
            ms = in_turns(calls, args.repeats)
            predicted = statistics.median(predict_ms[-args.repeats:])
            if case.task == "speech":
                same = outputs["a"]["text"] == outputs.get("fw file")
                speech.append(f"| {case.key} | {ms['a']:,.0f} | {ms['http']:,.0f} | {ms['b']:,.0f} | "
                              f"{ms['fw samples']:,.0f} | {ms['fw file']:,.0f} | {ms['a'] / ms['fw file']:.2f} | "
                              f"{ms['http'] / ms['fw file']:.2f} | {ms['b'] / ms['fw samples']:.2f} | "
                              f"{'yes' if same else 'no'} |")
                print(speech[-1], flush=True)
            overhead.append(f"| {case.key} | {ms['a']:,.0f} | {ms['http']:,.0f} | {predicted:,.0f} | {ms['b']:,.0f} | "
                            f"{ms['c']:,.0f} | {ms['a'] / ms['c']:.2f} | {ms['http'] / ms['c']:.2f} | "
                            f"{predicted / ms['b']:.2f} |")
            print(overhead[-1], flush=True)
            del model, processor
            bench.release()
    finally:
        app.stop()
    rows = overhead + (["", "## Speech against faster-whisper (int8, greedy), in the same turns", ""] + speech
                       if len(speech) > len(SPEECH_HEADER) else [])
    write_table(args.tag, name, f"(a), (a'), (b), (c) in turns, warm medians of {args.repeats}", rows)


def in_turns(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Two first calls each (loads, caches), then `repeats` rounds calling each once in order: warm medians (ms).
    Each call on a thread of its own (`timed`)."""
    for call in calls.values():
        timed(call), timed(call)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            times[name].append(timed(call)[0])
    return {name: statistics.median(values) for name, values in times.items()}


class FasterWhisper:
    """faster-whisper on the offline pack's CTranslate2 files, one model loaded at a time, greedy like the app.

    faster-whisper's `decode_audio` ends with `gc.collect()` (to free PyAV's resampler). In a user's small script
    that collection is cheap; in this process, which holds the benchmark's models and clients, a full collection costs
    far more than the decode itself (compare 'fw, file' with and without it against 'fw, samples'). So it is skipped
    here: the file variant is what faster-whisper costs in a small process, a little less even.
    """

    def __init__(self) -> None:
        import types

        import faster_whisper.audio

        faster_whisper.audio.gc = types.SimpleNamespace(collect=lambda: 0)  # type: ignore[assignment]
        self.model_id: str | None = None
        self.model: Any = None

    def calls(self, case: Case, samples: Any, outputs: dict[str, Any]) -> dict[str, Callable[[], Any]]:
        """'fw samples' and 'fw file' for `case`; each stores its transcript in `outputs` under its name."""
        from faster_whisper import WhisperModel

        if self.model_id != case.model:
            self.model = None
            gc.collect()
            self.model = WhisperModel(str(ensure_ct2_whisper(case.model)), device="cpu", compute_type="int8")
            self.model_id = case.model
        language = None if case.model.endswith(".en") else "en"

        def transcribe(name: str, audio: Any) -> None:
            segments, _ = self.model.transcribe(audio, language=language, beam_size=1)
            outputs[name] = " ".join(s.text.strip() for s in segments)  # the generator decodes: consume it

        return {"fw samples": lambda: transcribe("fw samples", samples),
                "fw file": lambda: transcribe("fw file", str(case.audio))}


if __name__ == "__main__":
    main()
