"""What the Evaluate tab saves: 64 photos through zero-shot evaluation (one `/evaluate` call with a ZIP) against the
same 64 photos as 64 sequential `/zero_shot` calls, on the same model (CLIP ViT-B/32, real size), through
gradio_client on `python app.py` with the benchmark models, taken in turns; and whether both give each photo the
same scores (evaluation must not buy its speed with other answers).

    python -m benchmarks.evaluate --repeats 3      # -> benchmarks/results/<tag>/evaluate.md

The target (issue 23): evaluation at least 1.3x faster on a 2-core CPU, from batching (the engine submits
MMDEMO_MAX_BATCH items at once) and no per-request overhead (one upload, one queue turn, one result).
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
from benchmarks.harness import REPO, AppProcess, app_env
from benchmarks.side_study import bench_folder, log_path, side_study_parser, write_table

MODEL = "openai/clip-vit-base-patch32"
LABELS = "cat, dog, bird, car, horse"  # words the benchmark models' tokenizer knows whole (benchmarks/README.md)
TEMPLATE = "a photo of a {}."
PHOTOS = 64
SOURCES = sorted((REPO / "assets").glob("skimage_*"))


def make_photos(folder: Path) -> list[Path]:
    """64 different 640x480 JPEGs: crops of the example photos at different places and mirrorings."""
    photos = []
    for i in range(PHOTOS):
        with Image.open(SOURCES[i % len(SOURCES)]) as source:
            image = source.convert("RGB").resize((800, 600))
        left, top = (i * 7) % 160, (i * 5) % 120
        image = image.crop((left, top, left + 640, top + 480))
        if i % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"photo{i:02d}.jpg"
        image.save(path, quality=90)
        photos.append(path)
    return photos


def make_zip(photos: list[Path], path: Path) -> Path:
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["file"])
    writer.writerows([photo.name] for photo in photos)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.csv", manifest.getvalue())
        for photo in photos:
            zf.write(photo, photo.name)
    return path


def measure(client: Any, photos: list[Path], archive: Path, repeats: int) -> dict[str, Any]:
    from gradio_client import handle_file

    def sequential() -> list[dict[str, float]]:
        results = [client.predict(image=handle_file(str(photo)), labels=LABELS, model=MODEL, template=TEMPLATE,
                                  ensemble=False, api_name="/zero_shot") for photo in photos]
        return [{entry["label"]: entry["score"] for entry in result["labels"]} for result in results]

    def evaluation() -> tuple[list[dict[str, float]], list[int]]:
        data, _ = client.predict("zero_shot", "", handle_file(str(archive)), None, [MODEL], LABELS, None,
                                 api_name="/evaluate")
        rows = sorted(data["rows"], key=lambda row: row["item"])
        return [dict(zip(row["ranking"], row["scores"])) for row in rows], [row["batch_size"] for row in rows]

    sequential(), evaluation()  # the model's load and first calls
    times: dict[str, list[float]] = {"sequential": [], "evaluation": []}
    gaps, batches = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        alone = sequential()
        times["sequential"].append(time.perf_counter() - started)
        started = time.perf_counter()
        together, batch_sizes = evaluation()
        times["evaluation"].append(time.perf_counter() - started)
        gaps += [max(abs(a[label] - b[label]) for label in a) for a, b in zip(alone, together, strict=True)]
        batches += batch_sizes
    return {"sequential": statistics.median(times["sequential"]),
            "evaluation": statistics.median(times["evaluation"]),
            "max_score_gap": max(gaps), "mean_batch": statistics.mean(batches), "samples": times}


def main() -> None:
    args = side_study_parser(__doc__, repeats=3).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gradio_client import Client

    folder = bench_folder("evaluate")
    photos = make_photos(folder)
    archive = make_zip(photos, folder / "photos.zip")
    model_dir = ensure_bench_models(DEFAULT_ROOT, ids={MODEL})
    app = AppProcess(app_env(dict(os.environ), model_dir, {"MMDEMO_FLAGGING": "0"}), log_path(args.tag, "evaluate"))
    app.start()
    try:
        result = measure(Client(app.url, verbose=False), photos, archive, args.repeats)
    finally:
        app.stop()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    ratio = result["sequential"] / result["evaluation"]
    rows = ["| 64 photos, zero-shot, CLIP B/32 | seconds (median) | per photo ms |", "|---|---|---|",
            f"| 64 sequential `/zero_shot` calls | {result['sequential']:.2f} | "
            f"{1000 * result['sequential'] / PHOTOS:.0f} |",
            f"| one `/evaluate` call (ZIP of the 64) | {result['evaluation']:.2f} | "
            f"{1000 * result['evaluation'] / PHOTOS:.0f} |",
            "", f"Evaluation is **{ratio:.2f}x** faster (target: 1.3x); mean batch {result['mean_batch']:.1f}; "
            f"largest difference of a label's score between the two: {result['max_score_gap']:.1e} (batched and "
            f"single passes round differently; the random-weight CLIP scores its labels nearly alike, so that can "
            f"swap near-tied labels: the scores are what to compare).",
            f"Samples (s): {result['samples']}.", f"`uptime` at the end: {uptime}"]
    print("\n".join(rows), flush=True)
    write_table(args.tag, "evaluate", f"Zero-shot evaluation of 64 photos vs 64 sequential calls, in turns, "
                f"{args.repeats} repeats", rows)


if __name__ == "__main__":
    main()
