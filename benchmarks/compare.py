"""What compare mode costs: `/compare` with two models against the two single-model requests one after the other,
through gradio_client on `python app.py` with the benchmark models, taken in turns; and whether each column equals
its single request's result (the accuracy side of the figure: a compare that answered differently would not count).

    python -m benchmarks.compare --repeats 5      # -> benchmarks/results/<tag>/compare.md
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.harness import REPO, AppProcess, app_env
from benchmarks.side_study import log_path, side_study_parser, write_table

IMAGE = REPO / "assets" / "skimage_chelsea.png"
CLIP = REPO.parent / "shared" / "media" / "audio" / "LJ050-0131.wav"
# task, its two models, the single endpoint's keyword inputs (the model added per call), /compare's options
CASES = [
    ("vqa", ("Salesforce/blip-vqa-base", "dandelin/vilt-b32-finetuned-vqa"),
     {"image": IMAGE, "question": "What animal is this?"}),
    ("zero_shot", ("openai/clip-vit-base-patch32", "google/siglip-base-patch16-224"),
     {"image": IMAGE, "labels": "cat, dog, bird, car", "template": "a photo of a {}.", "ensemble": False}),
    ("speech", ("openai/whisper-tiny.en", "openai/whisper-base"),
     {"audio": CLIP if CLIP.is_file() else REPO / "assets" / "LJ050-0131.wav", "language": "en",
      "task": "transcribe", "timestamps": "segment"}),
]


def strip(result: dict[str, Any]) -> dict[str, Any]:
    """A result without what varies between two runs (timing, batch) or is derived (downloads)."""
    return {k: v for k, v in result.items() if k not in ("provenance", "downloads")}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-4
    return a == b


def measure(client: Any, task: str, models: tuple[str, ...], inputs: dict[str, Any], repeats: int
            ) -> tuple[float, float, bool]:
    """Warm medians (ms) of /compare and of the singles one after the other, and whether the columns equal them."""
    from gradio_client import handle_file

    def upload(value: Any) -> Any:
        return handle_file(str(value)) if isinstance(value, Path) else value

    files = {k: upload(v) for k, v in inputs.items() if k in ("image", "audio")}
    options = {k: v for k, v in inputs.items() if k not in ("image", "audio")}

    def compare() -> list[dict[str, Any] | None]:
        out = client.predict(task, list(models), options, files.get("image"), files.get("audio"),
                             api_name="/compare")
        return [entry.get("result") for entry in out["results"]]

    def singles() -> list[dict[str, Any]]:
        return [client.predict(**{k: upload(v) for k, v in inputs.items()}, model=model, api_name=f"/{task}")
                for model in models]

    compare(), singles()  # loads, first-call work
    times: dict[str, list[float]] = {"compare": [], "singles": []}
    equal = True
    for _ in range(repeats):
        started = time.perf_counter()
        columns = compare()
        times["compare"].append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        alone = singles()
        times["singles"].append(1000 * (time.perf_counter() - started))
        equal &= all(c is not None and same(strip(c), strip(a)) for c, a in zip(columns, alone, strict=True))
    return statistics.median(times["compare"]), statistics.median(times["singles"]), equal


def main() -> None:
    args = side_study_parser(__doc__, repeats=5).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gradio_client import Client

    model_dir = ensure_bench_models(DEFAULT_ROOT, ids={m for _, models, _ in CASES for m in models})
    app = AppProcess(app_env(dict(os.environ), model_dir, {"MMDEMO_FLAGGING": "0"}), log_path(args.tag, "compare"))
    app.start()
    rows = ["| case | /compare ms | single A + single B ms | ratio | columns equal the singles |",
            "|---|---|---|---|---|"]
    try:
        client = Client(app.url, verbose=False)
        for task, models, inputs in CASES:
            c, s, equal = measure(client, task, models, inputs, args.repeats)
            rows.append(f"| {task}: {' vs '.join(m.split('/')[-1] for m in models)} | {c:,.0f} | {s:,.0f} | "
                        f"{c / s:.2f} | {'yes' if equal else 'NO'} |")
            print(rows[-1], flush=True)
    finally:
        app.stop()
    load = os.getloadavg()
    write_table(args.tag, "compare", f"/compare with two models vs the two single requests, warm medians of "
                f"{args.repeats} in turns (load average at the end: {load[0]:.2f})", rows)


if __name__ == "__main__":
    main()
