"""The Ray Serve backend's costs on this machine: start-up, per-request overhead, throughput with 1 and 2 replicas.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m benchmarks.ray_overhead'

(a loopback-only network namespace: Ray binds every interface; plain `python -m benchmarks.ray_overhead` works too.)

- start-up: a fresh local Ray (`cluster.start_local`) and every family deployed and running (`cluster.deploy`).
- overhead: the same request, sequentially, through `Runtime.run` in this process (measured first, before Ray starts)
  and the Ray backend's `Runtime.run` (`mmdemo.backends.ray_runtime`: validate and format here, predict on the
  replica through a deployment handle); medians of
  `--repeats` warm requests, whole and outside predict (the backend's own cost). Tiny
  random-weight checkpoints (the tests'), so the difference is the backend's, not the model's.
- throughput: `--requests` speech requests from `--clients` threads, in-process and on the whisper deployment with 1
  and 2 replicas (1 CPU each: one torch thread per replica), with the real `openai/whisper-tiny.en` where the
  offline pack is installed (else the tiny checkpoint).
Every number is wall-clock on a shared machine: run it when nothing else runs, and compare within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO

CAT = str(REPO / "assets" / "skimage_chelsea.png")
JFK = str(REPO / "assets" / "jfk.flac")
OVERHEAD_CASES = {  # task -> raw inputs, on tiny checkpoints
    "vqa": {"image": CAT, "question": "What animal is this?", "model": "dandelin/vilt-b32-finetuned-vqa"},
    "zero_shot": {"image": CAT, "labels": "cat, dog, bird", "model": "openai/clip-vit-base-patch32"},
}
REAL_SPEECH_MODEL = "openai/whisper-tiny.en"


def model_dir(tiny: Path, real: Path) -> Path:
    """The tiny checkpoints plus the real Whisper tiny.en, when installed, in one directory of links."""
    root = Path(tempfile.mkdtemp(prefix="mmdemo-ray-bench-"))
    for source in (tiny, real):
        for checkpoint in source.glob("*/*"):
            target = root / checkpoint.parent.name / checkpoint.name
            if checkpoint.is_dir() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(checkpoint.resolve())
    return root


def sequential_ms(runtime: Any, task: str, raw: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Medians of `repeats` warm sequential requests: (whole request, the part outside predict) in milliseconds.

    The part outside predict (validate, format, and for Ray the handle call) is the backend's cost; predict itself
    differs only by the threads torch gets (a 1-CPU replica computes on one).
    """
    runtime.run(task, raw)  # warm: the model loads
    totals, outside = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        result = runtime.run(task, raw)
        total = (time.perf_counter() - started) * 1000
        totals.append(total)
        outside.append(total - result["provenance"]["ms"])
    return statistics.median(totals), statistics.median(outside)


def throughput(runtime: Any, raw: dict[str, Any], requests: int, clients: int) -> float:
    """Speech requests per second with `clients` threads sending `requests` in all (after a warm-up each)."""
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: runtime.run("speech", raw), range(clients)))
        started = time.perf_counter()
        list(pool.map(lambda _: runtime.run("speech", raw), range(requests)))
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="sequential requests per overhead median")
    parser.add_argument("--requests", type=int, default=16, help="speech requests per throughput figure")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for throughput")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cpu2-ray" / "ray_overhead.json")
    args = parser.parse_args()

    import mmdemo.tasks  # noqa: F401
    from mmdemo.backends import local_runtime, ray_runtime
    from mmdemo.config import Settings, default_model_dir
    from mmdemo.serving import cluster
    from mmdemo.serving.config import load_config
    from mmdemo.testing.tiny_models import ensure_tiny_models

    models = model_dir(ensure_tiny_models(REPO / ".pytest_cache" / "tiny-models"), default_model_dir())
    speech_model = REAL_SPEECH_MODEL if (models / REAL_SPEECH_MODEL).exists() else "openai/whisper-tiny"
    speech = {"audio": JFK, "model": speech_model, "language": "en"}
    config = load_config()
    for family in config.deployments:  # one replica each to start with, as the default config on this machine
        config = config.with_options(family, num_replicas=1)
    settings = Settings(model_dir=models, device="cpu", backend="ray")
    results: dict[str, Any] = {"speech_model": speech_model, "clients": args.clients, "requests": args.requests}

    # In-process first, with no Ray on the machine: as the app runs without the ray backend.
    local = local_runtime(Settings(model_dir=models, device="cpu"))
    local_ms: dict[str, tuple[float, float]] = {}
    for task, raw in OVERHEAD_CASES.items():
        local_ms[task] = sequential_ms(local, task, raw, args.repeats)
    results["speech_local_rps"] = throughput(local, speech, args.requests, args.clients)
    del local

    started = time.perf_counter()
    cluster.start_local(config, num_cpus=config.with_options("whisper", num_replicas=2).logical_cpus())
    results["ray_start_s"] = time.perf_counter() - started
    results["deploy_s"] = cluster.deploy(settings, config)
    results["startup_s"] = time.perf_counter() - started
    try:
        on_ray = ray_runtime(settings, config=config)
        for task, raw in OVERHEAD_CASES.items():
            ray_ms, ray_outside = sequential_ms(on_ray, task, raw, args.repeats)
            results[f"{task}_local_ms"], results[f"{task}_local_outside_predict_ms"] = local_ms[task]
            results[f"{task}_ray_ms"], results[f"{task}_ray_outside_predict_ms"] = ray_ms, ray_outside
            results[f"{task}_overhead_ms"] = ray_outside - local_ms[task][1]
        results["speech_ray_1_replica_rps"] = throughput(on_ray, speech, args.requests, args.clients)
        cluster.deploy(settings, config.with_options("whisper", num_replicas=2), ("whisper",))
        results["speech_ray_2_replicas_rps"] = throughput(on_ray, speech, args.requests, args.clients)
        results["speech_2_over_1_replicas"] = results["speech_ray_2_replicas_rps"] / results["speech_ray_1_replica_rps"]
    finally:
        cluster.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:32} {value:.3f}" if isinstance(value, float) else f"{key:32} {value}")


if __name__ == "__main__":
    main()
