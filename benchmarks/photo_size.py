"""A phone photo through each image task, three ways: decoded in full and handed to the processor (its one-step
resize from 12 megapixels); decoded in full, then reduced for the processor (`mmdemo.media.pixels`); and decoded at the
JPEG scale that keeps `mmdemo.media.DECODE_SIDE`, then reduced (what the app does).

`Runtime.run` in this process on the benchmark models (real size, random weights), the three ways alternating call
by call; a 12-megapixel JPEG (4032 x 3024, the shared media's merlion.jpg upscaled) and, as a control, the
benchmark's own 451 x 300 PNG, which every way hands over untouched.

    python -m benchmarks.photo_size --repeats 5   # -> benchmarks/results/<tag>/photo_size.md
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from benchmarks.cases import IMAGE, MEDIA, build_cases, result_output
from benchmarks.side_study import bench_folder, bench_settings, side_study_parser, write_table

PHONE = (4032, 3024)
WAYS = ("full decode, one-step resize", "full decode, reduced", "scaled decode, reduced")


def phone_photo(folder: Path) -> Path:
    """A 12-megapixel JPEG made from a real photo (the assets' when the shared media is not there)."""
    from PIL import Image

    path = folder / "phone-12mp.jpg"
    if not path.is_file():
        source = MEDIA / "images" / "merlion.jpg"
        with Image.open(source if source.is_file() else IMAGE) as image:
            image.convert("RGB").resize(PHONE, Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def main() -> None:
    parser = side_study_parser(__doc__, repeats=5)
    parser.add_argument("--tasks", nargs="+", default=["vqa", "captioning", "zero_shot"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mmdemo.media
    import mmdemo.media.pixels
    from mmdemo.backends import local_runtime
    from mmdemo.models.devices import resolve_device

    cases = build_cases(args.tasks)
    settings = bench_settings({case.model for case in cases})
    runtime = local_runtime(settings)
    folder = bench_folder("photo-size-images")
    images = {"12 MP JPEG": phone_photo(folder), "451 x 300 PNG": IMAGE}
    gap, decode_defaults = mmdemo.media.pixels.REDUCING_GAP, dict(mmdemo.media.load_image.__kwdefaults__)
    rows = [f"| case | image | {' (ms) | '.join(WAYS)} (ms) | first / last | same output |",
            "|---|---|---|---|---|---|---|"]
    for case in cases:
        for label, path in images.items():
            raw = {**case.raw, "image": str(path)}
            times: dict[str, list[float]] = {way: [] for way in WAYS}
            outputs: dict[str, object] = {}
            try:
                for repeat in range(args.repeats + 1):  # the first call of each way warms up (and loads)
                    for way in WAYS:
                        mmdemo.media.pixels.REDUCING_GAP = float("inf") if way == WAYS[0] else gap
                        # The decode side is load_image's keyword default, read at each call.
                        mmdemo.media.load_image.__kwdefaults__["decode_side"] = (
                            decode_defaults["decode_side"] if way == WAYS[2] else 1 << 30)
                        started = time.perf_counter()
                        result = runtime.run(case.task, raw)
                        if repeat:
                            times[way].append((time.perf_counter() - started) * 1000)
                        outputs[way] = result_output(case, result)
            finally:
                mmdemo.media.pixels.REDUCING_GAP = gap
                mmdemo.media.load_image.__kwdefaults__.update(decode_defaults)
            ms = [statistics.median(times[way]) for way in WAYS]
            same = len({repr(output) for output in outputs.values()}) == 1
            rows.append(f"| {case.key} | {label} | {' | '.join(f'{m:,.0f}' for m in ms)} | {ms[0] / ms[-1]:.2f} | "
                        f"{str(same).lower()} |")
            print(rows[-1], flush=True)
        runtime.unload(case.model)
    write_table(args.tag, "photo_size", f"Runtime.run per image, {resolve_device(settings.device)}: warm medians of "
                f"{args.repeats}, the three ways alternating", rows)


if __name__ == "__main__":
    main()
