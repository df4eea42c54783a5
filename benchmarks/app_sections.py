"""The sections that run against the launched app: (a) every case through gradio_client and (a') over plain
HTTP, concurrency (one client in sequence against N at once), and start-up against the bare import."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.cases import Case, client_args, result_output
from benchmarks.harness import REPO, AppProcess, HttpClient, Measurement, median, repeat, rounded


def model_load_seconds(client, model_id: str) -> float | None:
    """The app's own record of how long `model_id` took to load (the Models panel's report)."""
    try:
        report = client.predict(api_name="/models")
        for entry in report.get("entries", []):
            if entry.get("model") == model_id:
                return entry.get("load_seconds")
    except Exception as e:
        print(f"    ! /models: {e}", flush=True)
    return None


def bench_app(cases: list[Case], app: AppProcess, repeats: int) -> tuple[dict[str, Measurement], dict[str, Any]]:
    """(a): every case through gradio_client; first call of a model includes its load (reported separately)."""
    from gradio_client import Client

    client = Client(app.url, verbose=False, ssl_verify=False)  # plain HTTP: no TLS context per upload (README)
    http = HttpClient(app.url)
    results: dict[str, Measurement] = {}
    loads: dict[str, float | None] = {}
    for case in cases:
        print(f"  app {case.key}", flush=True)
        stamp: dict[str, Any] = {}

        def call(case=case, stamp=stamp):
            result = client.predict(*client_args(case), api_name=case.api_name)
            stamp["model_ms"] = result.get("provenance", {}).get("ms")
            stamp.setdefault("all_model_ms", []).append(stamp["model_ms"])
            stamp["device"] = result.get("provenance", {}).get("device")
            stamp["dtype"] = result.get("provenance", {}).get("dtype")
            return result

        m = repeat("app", call, repeats, output=lambda r, case=case: result_output(case, r))
        m.extra.update({"model_ms_median": median([x for x in stamp.get("all_model_ms", [])[1:] if x is not None]),
                        "device": stamp.get("device"), "dtype": stamp.get("dtype")})
        over_http = repeat("app over HTTP", lambda case=case: http.predict(*case.api_args, api_name=case.api_name),
                           repeats)
        m.extra["http_warm_median_ms"] = over_http.warm_median
        if case.model not in loads:
            loads[case.model] = model_load_seconds(client, case.model)
            m.extra["model_load_s"] = loads[case.model]
        results[case.key] = m
    # The floor under every (a): a round trip that does no model work (the cache report), with the same client.
    floor = repeat("app", lambda: client.predict(api_name="/models"), repeats)
    http_floor = repeat("app over HTTP", lambda: http.predict(api_name="/models"), repeats)
    return results, {"model_load_s": loads, "client_floor_ms": floor.warm_median,
                     "http_floor_ms": http_floor.warm_median}


def own_images(case: Case, clients: int, folder: Path) -> list[Case]:
    """The case once per client, each with its own copy of the case's images (the client's number as a mark in a
    corner): requests batched together then never send the same image, which would share work
    (`mmdemo.models.attention`)."""
    from PIL import Image, ImageDraw

    copies = []
    for index in range(clients):
        args = []
        for arg in case.api_args:
            if isinstance(arg, Path) and arg.suffix.lower() in (".png", ".jpg", ".jpeg"):
                image = Image.open(arg).convert("RGB")
                ImageDraw.Draw(image).rectangle((0, 0, 7, 7), fill=(index * 37 % 256, index * 91 % 256, 255))
                arg = folder / f"{arg.stem}-client{index}.png"
                image.save(arg)
            args.append(arg)
        copies.append(replace(case, api_args=args))
    return copies


def bench_concurrency(app: AppProcess, cases: list[Case], clients: int, requests: int,
                      sequential: int) -> dict[str, Any]:
    """Throughput with one client in sequence and with `clients` clients at once, each client sending its own image."""
    from gradio_client import Client

    out: dict[str, Any] = {}
    pool = [Client(app.url, verbose=False, ssl_verify=False) for _ in range(clients)]
    folder = Path(tempfile.mkdtemp(prefix="mmdemo-bench-clients-"))
    for case in cases:
        print(f"  concurrency {case.key}: {sequential} sequential, {requests} over {clients} clients", flush=True)
        per_client = [client_args(copy) for copy in own_images(case, clients, folder)]
        args = per_client[0]
        pool[0].predict(*args, api_name=case.api_name)  # warm: the model is loaded
        started = time.perf_counter()
        for _ in range(sequential):
            pool[0].predict(*args, api_name=case.api_name)
        sequential_s = time.perf_counter() - started
        latencies: list[float] = []
        batch_sizes: list[int] = []
        errors: list[str] = []

        def worker(index: int, case: Case = case, per_client: list[list[Any]] = per_client,
                   latencies: list[float] = latencies, batch_sizes: list[int] = batch_sizes,
                   errors: list[str] = errors) -> None:
            client, args = pool[index], per_client[index]
            for _ in range(index, requests, clients):
                t0 = time.perf_counter()
                try:
                    result = client.predict(*args, api_name=case.api_name)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    batch_sizes.append(result.get("provenance", {}).get("batch_size", 1))
                except Exception as e:
                    errors.append(f"{type(e).__name__}: {e}"[:200])

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as executor:
            list(executor.map(worker, range(clients)))
        concurrent_s = time.perf_counter() - started
        out[case.key] = {
            "sequential_requests": sequential,
            "sequential_rps": round(sequential / sequential_s, 3) if sequential else None,
            "clients": clients, "requests": requests, "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "concurrent_rps": round(len(latencies) / concurrent_s, 3),
            "batch_size_median": median([float(b) for b in batch_sizes]),
            "batch_size_max": max(batch_sizes) if batch_sizes else None,
            "concurrent_latency_median_ms": median(latencies),
            "concurrent_latency_max_ms": rounded(max(latencies)) if latencies else None,
        }
    return out


def bench_startup(env: dict[str, str], repeats: int, log_path: Path) -> dict[str, Any]:
    """Seconds from `python app.py` to GET / = 200, against the bare import of its three big libraries."""
    imports, apps = [], []
    for i in range(repeats):
        print(f"  startup {i + 1}/{repeats}", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gradio, torch, transformers"], cwd=REPO, env=env, check=True)
        imports.append(time.perf_counter() - started)
        app = AppProcess(env, log_path)
        try:
            apps.append(app.start())
        finally:
            app.stop()
    return {"bare_import_s": [round(x, 2) for x in imports], "app_served_s": [round(x, 2) for x in apps],
            "bare_import_median_s": round(statistics.median(imports), 2),
            "app_served_median_s": round(statistics.median(apps), 2)}
