"""The mmdemo benchmark: one command, every task, the same inputs, in one run.

    python -m benchmarks.run            # full run (the lead's, on a quiet machine)
    python -m benchmarks.run --quick    # smoke run: 1 warm repeat, 2 clips, short captions

Sections (see benchmarks/README.md for what each column means):
  startup      `python app.py` until GET / answers 200, vs `python -c "import gradio, torch, transformers"`
  app    (a)   the launched app end to end through gradio_client (upload, queue, predict, result)
  runtime(b)   the task's own path in process: Runtime.run(task, raw)
  bare   (c)   the model called directly with transformers, same settings as the task: the floor
  peers  (d)   transformers.pipeline and faster-whisper, what a user would pick instead
  concurrency  N clients at once against the app, vs one client, for zero-shot and captioning
plus first-use model load times, peak RSS of the app process, WER for every speech variant, and the targets
(PASS/FAIL, a report, not a test). `--compare K=V[,K=V]` runs the app sections again under a second
configuration (e.g. MMDEMO_MAX_BATCH=1, MMDEMO_QUANTIZE=none).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.wer import corpus_wer, wer  # noqa: E402

MEDIA = Path(os.environ.get("MMDEMO_BENCH_MEDIA", REPO.parent / "shared" / "media"))
IMAGE = REPO / "assets" / "skimage_chelsea.png"
# Prompts use only words the benchmark checkpoints' (tiny) tokenizers know whole, so they are as many tokens as
# with the real vocabularies.
QUESTION = "what color is the cat?"
LABELS = ("cat", "dog", "bird", "car", "horse")
TEMPLATE = "a photo of a {}."
SENTIMENT_TEXT = "i really love this movie, the food was great but the service was terrible"
CAPTION_BEAMS = 3  # the captioning task's default beam width
LONG_CLIP = "vosk_dagon.wav"
QUICK_CLIPS = ("jfk.flac", LONG_CLIP)

TARGET_APP_OVER_BARE = 1.10
TARGET_WER_POINTS = 1.0
TARGET_THROUGHPUT_GAIN = 2.0
TARGET_STARTUP_OVER_IMPORT = 1.5


# ------------------------------------------------------------------------------------------------ timing helpers


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(milliseconds, result) of one call, the GPU synchronized around it.

    The call runs on a thread of its own, as the app runs its model calls: an OpenMP team left on this process's
    main thread by one variant (the bare call, a peer) would slow every other (mmdemo/model_threads.py).
    """
    from mmdemo.runtime.model_threads import run_on_own_thread

    _sync()
    started = time.perf_counter()
    result = run_on_own_thread(fn)
    _sync()
    return (time.perf_counter() - started) * 1000, result


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


@dataclass
class Measurement:
    """One variant of one case: the first call, the warm calls, and what came out."""

    variant: str  # "app", "runtime", "bare", "pipeline greedy", ...
    first_ms: float | None = None
    warm_ms: list[float] = field(default_factory=list)
    load_ms: float | None = None  # model load, where it is separate from the first call
    output: Any = None  # transcript, answer, label list (last call)
    extra: dict[str, Any] = field(default_factory=dict)  # tokens, model ms inside the app, wer, ...
    error: str | None = None

    @property
    def warm_median(self) -> float | None:
        return median(self.warm_ms)

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "first_ms": _round(self.first_ms), "warm_median_ms": self.warm_median,
                "warm_ms": [round(x, 1) for x in self.warm_ms], "load_ms": _round(self.load_ms),
                "output": self.output, **self.extra, **({"error": self.error} if self.error else {})}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def repeat(variant: str, call: Callable[[], Any], repeats: int, *, load: Callable[[], Any] | None = None,
           output: Callable[[Any], Any] = lambda r: r) -> Measurement:
    """Load (timed, if given), one first call, then `repeats` warm calls; failures are recorded, not raised."""
    m = Measurement(variant)
    try:
        if load is not None:
            m.load_ms, _ = timed(load)
        m.first_ms, result = timed(call)
        for _ in range(repeats):
            ms, result = timed(call)
            m.warm_ms.append(ms)
        m.output = output(result)
    except Exception as e:  # report and carry on: one broken variant must not end the run
        m.error = f"{type(e).__name__}: {e}"[:500]
        print(f"    ! {variant}: {m.error}", flush=True)
    return m


# ------------------------------------------------------------------------------------------------ cases


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


def speech_clips(names: list[str] | None) -> list[tuple[Path, str]]:
    """English clips with a transcript from the shared media manifest (the long-form one included)."""
    manifest = json.loads((MEDIA / "MANIFEST.json").read_text())
    clips = [(MEDIA / a["path"], a["transcript"]) for a in manifest["audio"]
             if a.get("language") == "en" and a.get("transcript")]
    if names:
        clips = [(p, t) for p, t in clips if p.name in names or p.stem in names]
    return clips


def build_cases(args: argparse.Namespace) -> list[Case]:
    img = IMAGE
    labels = ", ".join(LABELS)
    tokens = args.caption_tokens
    cases = [
        Case("vqa/blip", "vqa", "Salesforce/blip-vqa-base",
             {"image": str(img), "question": QUESTION, "model": "Salesforce/blip-vqa-base"},
             "/vqa", [img, QUESTION, "Salesforce/blip-vqa-base"]),
        Case("vqa/vilt", "vqa", "dandelin/vilt-b32-finetuned-vqa",
             {"image": str(img), "question": QUESTION, "model": "dandelin/vilt-b32-finetuned-vqa"},
             "/vqa", [img, QUESTION, "dandelin/vilt-b32-finetuned-vqa"]),
        Case("captioning/blip", "captioning", "Salesforce/blip-image-captioning-base",
             {"image": str(img), "prefix": "", "model": "Salesforce/blip-image-captioning-base", "mode": "beam",
              "num_beams": CAPTION_BEAMS, "max_new_tokens": tokens, "num_captions": 1},
             "/captioning", [img, "", "Salesforce/blip-image-captioning-base", "beam", CAPTION_BEAMS, 0.9, 1.0, 0,
                             tokens, 1]),
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
    wants_speech = not args.tasks or any(t == "speech" or t.startswith("speech/") for t in args.tasks)
    for model in args.speech_models if wants_speech else ():  # the clips' manifest is read only when needed
        language = "auto" if model.endswith(".en") else "en"
        for path, transcript in speech_clips(args.clips):
            cases.append(Case(
                f"speech/{model.split('/')[-1]}/{path.stem}", "speech", model,
                {"audio": str(path), "model": model, "language": language, "task": "transcribe", "timestamps": "none"},
                "/speech", [path, model, language, "transcribe", "none"], reference=transcript, audio=path))
    if args.tasks:
        cases = [c for c in cases if c.task in args.tasks or c.key in args.tasks]
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


# ------------------------------------------------------------------------------------------------ the app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`python app.py --port N` in a subprocess, with its RSS watched (VmHWM where Linux has it, else sampled).

    `command` replaces `python app.py` (the port flag is appended), e.g. to run the app with something patched.
    """

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] | None = None) -> None:
        self.env, self.log_path = env, log_path
        self.command = command or [sys.executable, "app.py"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self._peak_sampled = 0
        self._stop = threading.Event()

    def start(self, timeout: float = 300) -> float:
        """Launch and wait until GET / answers 200; returns the seconds that took."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen([*self.command, "--port", str(self.port)], cwd=REPO, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        threading.Thread(target=self._sample, daemon=True).start()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"app.py did not serve {self.url} within {timeout} s; see {self.log_path}")

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set() and self.proc and self.proc.poll() is None:
            try:
                process = psutil.Process(self.proc.pid)
                rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
                self._peak_sampled = max(self._peak_sampled, rss)
            except Exception:
                pass
            self._stop.wait(0.2)

    def memory(self) -> dict[str, float | None]:
        """Peak and current RSS of the app process, in MiB."""
        import psutil

        hwm = None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
        except (OSError, AttributeError):
            pass
        rss = psutil.Process(self.proc.pid).memory_info().rss
        peak = max(hwm or 0, self._peak_sampled, rss)
        return {"peak_rss_mib": round(peak / 2**20, 1), "rss_now_mib": round(rss / 2**20, 1),
                "peak_source": "VmHWM" if hwm else "sampled every 0.2 s"}

    def stop(self) -> None:
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def app_env(base: dict[str, str], model_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    env = {**base, "MMDEMO_MODEL_DIR": str(model_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           **overrides}
    env.pop("MMDEMO_PORT", None)
    return env


def client_args(case: Case) -> list[Any]:
    from gradio_client import handle_file

    return [handle_file(str(a)) if isinstance(a, Path) else a for a in case.api_args]


class HttpClient:
    """The app's REST API with one plain httpx connection: upload the files, POST the call, read its event stream.

    What any HTTP client (curl, a browser, JavaScript) pays; gradio_client adds its own polling on top.
    """

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=600)

    def predict(self, *args: Any, api_name: str) -> Any:
        data = [self._upload(a) if isinstance(a, Path) else a for a in args]
        event_id = self.http.post(f"/gradio_api/call{api_name}", json={"data": data}).json()["event_id"]
        event = None
        with self.http.stream("GET", f"/gradio_api/call{api_name}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ").strip()
                elif line.startswith("data: ") and event in {"complete", "error"}:
                    payload = json.loads(line.removeprefix("data: "))
                    if event == "error":
                        raise RuntimeError(f"{api_name}: {payload}")
                    return payload[0]
        raise RuntimeError(f"{api_name}: the event stream ended without a result")

    def _upload(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as file:
            uploaded = self.http.post("/gradio_api/upload", files={"files": (path.name, file)}).json()[0]
        return {"path": uploaded, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


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
    corner): requests batched together then never send the same image, which would share work (mmdemo.models.attention)."""
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
            "concurrent_latency_max_ms": _round(max(latencies)) if latencies else None,
        }
    return out


# ------------------------------------------------------------------------------------------------ start-up


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


# ------------------------------------------------------------------------------------------------ in process


class InProcess:
    """(b) Runtime.run, (c) the bare transformers call, (d) the peers; models loaded once per model."""

    def __init__(self, model_dir: Path, repeats: int, fw_compute_type: str) -> None:
        import mmdemo.tasks  # noqa: F401  (registers the tasks)
        from mmdemo.config import settings_from_env
        from mmdemo.runtime import Runtime

        self.model_dir = model_dir
        self.repeats = repeats
        self.fw_compute_type = fw_compute_type
        self.runtime = Runtime(replace(settings_from_env(), model_dir=model_dir))
        self.device, self.dtype = self.runtime.device, self.runtime.dtype

    # (b)
    def runtime_run(self, case: Case) -> Measurement:
        m = repeat("runtime", lambda: self.runtime.run(case.task, case.raw), self.repeats,
                   output=lambda r: result_output(case, r))
        report = self.runtime.cache_report()
        for entry in report["entries"]:
            if entry["model"] == case.model:
                m.extra["model_load_s"] = entry["load_seconds"]
        return m

    def runtime_new_labels(self, case: Case) -> Measurement:
        """(b) for zero-shot as if every call brought labels the model had not seen: the text tower runs each time."""
        from mmdemo import registry

        task = registry.get(case.task)
        spec = task.model_spec(case.model)

        def call():
            with self.runtime.bundles(task, {"model": spec}) as bundles:
                bundles["model"].memo.clear()
            return self.runtime.run(case.task, case.raw)

        return repeat("(b) runtime, new labels", call, self.repeats, output=lambda r: result_output(case, r))

    def runtime_quantization(self, case: Case) -> str | None:
        """The runtime's CPU format for `case`'s model, if any: quantized Linear layers ("int8", "fp16") or a bf16
        model on a CPU in fp32 ("bf16"). The bare call gets the same."""
        import torch

        from mmdemo import registry

        task = registry.get(case.task)
        spec = task.model_spec(case.model)
        with self.runtime.bundles(task, {"model": spec}) as bundles:
            model = bundles["model"].model
        if bundles["model"].dtype == torch.bfloat16 and self.dtype == torch.float32:
            return "bf16"
        for module in model.modules():
            packed = getattr(module, "_packed_params", None)
            if packed is not None:
                return "fp16" if packed.dtype == torch.float16 else "int8"
        return None

    def release(self) -> None:
        for entry in self.runtime.cache_report()["entries"]:
            self.runtime.unload(entry["model"])
        gc.collect()

    # (c) and (d)
    def path(self, model_id: str) -> Path:
        return self.model_dir / model_id

    def load_model(self, model_id: str, quantize: str | None):
        import torch
        import transformers

        from mmdemo.models.loading import quantize_linear

        config = json.loads((self.path(model_id) / "config.json").read_text())
        cls = getattr(transformers, config["architectures"][0])
        dtype = torch.bfloat16 if quantize == "bf16" else self.dtype
        model = cls.from_pretrained(self.path(model_id), dtype=dtype).to(self.device).eval()
        if quantize in ("int8", "fp16"):
            model = quantize_linear(model, quantize)
        if model_id.startswith(("cardiffnlp/",)):
            processor = transformers.AutoTokenizer.from_pretrained(self.path(model_id))
        else:
            processor = transformers.AutoProcessor.from_pretrained(self.path(model_id))
        return model, processor

    def bare(self, case: Case, quantize: str | None) -> Measurement:
        """(c): processor + forward/generate with the task's settings, on already-decoded inputs."""
        import torch

        holder: dict[str, Any] = {}

        def load():
            holder["model"], holder["processor"] = self.load_model(case.model, quantize)

        inputs = self.decoded_inputs(case)

        def call():
            with torch.inference_mode():
                return bare_call(case)(holder["model"], holder["processor"], inputs, case, self)

        label = {None: "bare", "bf16": "bare (bf16)"}.get(quantize, f"bare ({quantize} linear)")
        m = repeat(label, call, self.repeats, load=load, output=lambda r: r["output"])
        if m.error is None:
            last = call()
            m.extra.update({k: v for k, v in last.items() if k != "output"})
        holder.clear()
        gc.collect()
        return m

    def decoded_inputs(self, case: Case) -> dict[str, Any]:
        from mmdemo.media import load_audio, load_image

        if case.audio is not None:
            return {"samples": load_audio(str(case.audio), max_seconds=3600, target_rate=16_000).samples}
        return {"image": load_image(str(IMAGE), max_pixels=40_000_000)}

    def peers(self, case: Case) -> list[Measurement]:
        """(d): the transformers pipeline for this task (and faster-whisper for speech)."""
        if case.task == "zero_shot":
            return [self._pipeline(case, "zero-shot-image-classification", "pipeline",
                                   lambda p, x: p(x["image"], candidate_labels=list(LABELS),
                                                  hypothesis_template=TEMPLATE),
                                   lambda r: [item["label"] for item in r][:3])]
        if case.task == "sentiment":
            return [self._pipeline(case, "text-classification", "pipeline",
                                   lambda p, x: p(SENTIMENT_TEXT, top_k=None), lambda r: r[0]["label"])]
        if case.task != "speech":
            return []
        multilingual = not case.model.endswith(".en")
        long_form = len(self.decoded_inputs(case)["samples"]) > 30 * 16_000
        greedy = {"num_beams": 1, **({"language": "en", "task": "transcribe"} if multilingual else {})}
        timestamps = {"return_timestamps": True} if long_form else {}
        found = [
            self._pipeline(case, "automatic-speech-recognition", "pipeline greedy",
                           lambda p, x: p(x["samples"].copy(), generate_kwargs=greedy, **timestamps),
                           lambda r: r["text"].strip()),
            self._pipeline(case, "automatic-speech-recognition", "pipeline defaults",
                           lambda p, x: p(x["samples"].copy(), **timestamps), lambda r: r["text"].strip()),
        ]
        found += self._faster_whisper(case)
        return found

    def _pipeline(self, case: Case, task: str, label: str, call: Callable, output: Callable) -> Measurement:
        from transformers import pipeline

        holder: dict[str, Any] = {}
        inputs = self.decoded_inputs(case)

        def load():
            holder["pipe"] = pipeline(task, model=str(self.path(case.model)), device=self.device, dtype=self.dtype)

        m = repeat(label, lambda: call(holder["pipe"], inputs), self.repeats, load=load, output=output)
        holder.clear()
        gc.collect()
        return m

    def _faster_whisper(self, case: Case) -> list[Measurement]:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            return [Measurement("faster-whisper", error="not installed: pip install -r benchmarks/requirements.txt")]
        from benchmarks.bench_models import ensure_ct2_whisper

        samples = self.decoded_inputs(case)["samples"]
        language = None if case.model.endswith(".en") else "en"
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        holder: dict[str, Any] = {}

        def load():
            holder["model"] = WhisperModel(str(ensure_ct2_whisper(case.model)), device=device,
                                           compute_type=self.fw_compute_type)

        def transcribe(**options):
            segments, _info = holder["model"].transcribe(samples, language=language, **options)
            return " ".join(s.text.strip() for s in segments)  # the generator decodes: consume it

        found = []
        for label, options in ((f"faster-whisper {self.fw_compute_type} greedy", {"beam_size": 1}),
                               (f"faster-whisper {self.fw_compute_type} defaults", {})):
            found.append(repeat(label, lambda options=options: transcribe(**options), self.repeats,
                                load=load if not holder else None))
        holder.clear()
        return found


def _to(bench: InProcess, batch: Any, model: Any) -> dict[str, Any]:
    """A processor's tensors on the device, floats in the model's dtype (what ModelBundle.prepare does)."""
    dtype = next(model.parameters()).dtype
    return {k: v.to(bench.device, dtype=dtype) if v.is_floating_point() else v.to(bench.device)
            for k, v in batch.items()}


def _bare_vqa_blip(model, processor, x, case, bench) -> dict[str, Any]:
    from mmdemo.tasks.vqa import MAX_ANSWER_TOKENS

    batch = _to(bench, processor(images=x["image"], text=QUESTION, return_tensors="pt"), model)
    ids = model.generate(**batch, max_new_tokens=MAX_ANSWER_TOKENS)
    return {"output": processor.decode(ids[0], skip_special_tokens=True).strip(), "new_tokens": ids.shape[1] - 1}


def _bare_vqa_vilt(model, processor, x, case, bench) -> dict[str, Any]:
    batch = _to(bench, processor(images=x["image"], text=QUESTION, return_tensors="pt"), model)
    scores, indices = model(**batch).logits[0].float().sigmoid().topk(5)
    return {"output": model.config.id2label[int(indices[0])]}


def _bare_captioning(model, processor, x, case, bench) -> dict[str, Any]:
    batch = _to(bench, processor(images=x["image"], return_tensors="pt"), model)
    beams = case.raw["num_beams"]
    ids = model.generate(**batch, num_beams=beams, num_return_sequences=beams, do_sample=False,
                         max_new_tokens=case.raw["max_new_tokens"])
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    return {"output": texts[0], "new_tokens": ids.shape[1] - 1, "sequences": ids.shape[0]}


def _bare_zero_shot(model, processor, x, case, bench) -> dict[str, Any]:
    siglip = "siglip" in case.model
    prompts = [TEMPLATE.format(label) for label in LABELS]
    batch = _to(bench, processor(text=prompts, images=x["image"], padding="max_length" if siglip else True,
                                 return_tensors="pt"), model)
    logits = model(**batch).logits_per_image.float()
    scores = logits.sigmoid()[0] if siglip else logits.softmax(dim=-1)[0]
    order = scores.argsort(descending=True).tolist()
    return {"output": [LABELS[i] for i in order][:3]}


def _bare_speech(model, processor, x, case, bench) -> dict[str, Any]:
    samples = x["samples"]
    long_form = len(samples) > 30 * 16_000
    kwargs: dict[str, Any] = {"sampling_rate": 16_000, "return_tensors": "pt", "return_attention_mask": True}
    if long_form:
        kwargs.update(truncation=False, padding="longest")
    features = processor.feature_extractor(samples, **kwargs)
    batch = {"input_features": features.input_features.to(bench.device, next(model.parameters()).dtype),
             "attention_mask": features.attention_mask.to(bench.device)}
    options = {} if case.model.endswith(".en") else {"language": "en", "task": "transcribe"}
    if long_form:
        options["return_timestamps"] = True
    ids = model.generate(**batch, **options)
    return {"output": processor.batch_decode(ids, skip_special_tokens=True)[0].strip(), "new_tokens": ids.shape[1]}


def _bare_sentiment(model, tokenizer, x, case, bench) -> dict[str, Any]:
    batch = _to(bench, tokenizer(SENTIMENT_TEXT, truncation=True, max_length=512, return_tensors="pt"), model)
    probs = model(**batch).logits.float().softmax(dim=-1)[0]
    return {"output": model.config.id2label[int(probs.argmax())]}


_BARE: dict[str, Callable[..., dict[str, Any]]] = {
    "vqa/blip": _bare_vqa_blip, "vqa/vilt": _bare_vqa_vilt, "captioning": _bare_captioning,
    "zero_shot": _bare_zero_shot, "speech": _bare_speech, "sentiment": _bare_sentiment,
}


def bare_call(case: Case) -> Callable[..., dict[str, Any]]:
    """(c) for `case`: called as f(model, processor, decoded inputs, case, InProcess)."""
    return _BARE[case.key.split("/")[0] if case.task != "vqa" else case.key]


# ------------------------------------------------------------------------------------------------ report


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu"] = platform.processor()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    for package in ("transformers", "gradio", "gradio_client", "faster_whisper", "ctranslate2"):
        try:
            info[package] = __import__(package).__version__
        except Exception:
            info[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        info["git"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        info["git"] = None
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def machine_tag(info: dict[str, Any], quick: bool) -> str:
    name = info["gpu"] or f"cpu{info['cpu_count']}"
    tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return tag + ("-quick" if quick else "")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target as a row: what, measured, limit, PASS / FAIL / n/a."""
    rows: list[dict[str, Any]] = []

    def add(target: str, config: str, value: float | None, limit: str, ok: bool | None, note: str = "") -> None:
        rows.append({"target": target, "config": config, "value": value, "limit": limit,
                     "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"), "note": note})

    for config, cfg in report["configs"].items():
        floor = cfg.get("client_floor_ms")
        for key, variants in report["cases"].items():
            app = cfg["app"].get(key, {}).get("warm_median_ms")
            bare = _bare_ms(variants)
            r = ratio(app, bare)
            http_ms = cfg["app"].get(key, {}).get("http_warm_median_ms")
            note = "; ".join(part for part in (
                f"over plain HTTP (a')/(c) {ratio(http_ms, bare)}" if http_ms and bare else "",
                f"gradio_client's floor {floor:.0f} ms" if r is not None and floor else "") if part)
            add(f"(a)/(c) warm {key}", config, r, f"<= {TARGET_APP_OVER_BARE}",
                None if r is None else r <= TARGET_APP_OVER_BARE, note)
        speech = [k for k in report["cases"] if k.startswith("speech/")]
        for model in sorted({k.split("/")[1] for k in speech}):
            keys = [k for k in speech if k.split("/")[1] == model]
            fw_label = next((v["variant"] for k in keys for v in report["cases"][k]
                             if v["variant"].startswith("faster-whisper") and v["variant"].endswith("greedy")), None)
            for key in keys:
                app = cfg["app"].get(key, {}).get("warm_median_ms")
                fw = _variant(report["cases"][key], fw_label)
                fw_ms = fw.get("warm_median_ms") if fw else None
                add(f"app speech <= {fw_label or 'faster-whisper'} {key}", config,
                    ratio(app, fw_ms), "app/fw <= 1", None if not (app and fw_ms) else app <= fw_ms)
            app_wer = cfg.get("wer", {}).get(model)
            fw_wer = report["wer"].get(model, {}).get(fw_label) if fw_label else None
            if app_wer is not None and fw_wer is not None:
                points = round((app_wer - fw_wer) * 100, 2)
                add(f"app WER - faster-whisper WER, {model}, all clips", config, points,
                    f"<= {TARGET_WER_POINTS} point", points <= TARGET_WER_POINTS,
                    f"app {app_wer:.1%}, {fw_label} {fw_wer:.1%}")
        if cfg.get("startup"):
            s = cfg["startup"]
            r = ratio(s["app_served_median_s"], s["bare_import_median_s"])
            add("start-up / bare import", config, r, f"<= {TARGET_STARTUP_OVER_IMPORT}",
                None if r is None else r <= TARGET_STARTUP_OVER_IMPORT)
    unbatched = [c for c, cfg in report["configs"].items() if cfg["env"].get("MMDEMO_MAX_BATCH") == "1"]
    batched = [c for c, cfg in report["configs"].items() if cfg["env"].get("MMDEMO_MAX_BATCH") != "1"]
    keys = {k for cfg in report["configs"].values() for k in cfg.get("concurrency", {})}
    for key in sorted(keys):
        if unbatched and batched:
            fast = report["configs"][batched[0]]["concurrency"].get(key, {}).get("concurrent_rps")
            slow = report["configs"][unbatched[0]]["concurrency"].get(key, {}).get("concurrent_rps")
            r = ratio(fast, slow)
            add(f"throughput gain {key}", f"{batched[0]} vs {unbatched[0]}", r, f">= {TARGET_THROUGHPUT_GAIN}x",
                None if r is None else r >= TARGET_THROUGHPUT_GAIN)
        else:
            add(f"throughput gain {key}", "-", None, f">= {TARGET_THROUGHPUT_GAIN}x", None,
                "needs a configuration with MMDEMO_MAX_BATCH=1: --compare MMDEMO_MAX_BATCH=1")
    return rows


def _variant(variants: list[dict[str, Any]], label: str | None) -> dict[str, Any] | None:
    return next((v for v in variants if v["variant"] == label), None)


def _bare_ms(variants: list[dict[str, Any]]) -> float | None:
    bare = next((v for v in variants if v["variant"].startswith("bare")), None)
    return bare.get("warm_median_ms") if bare else None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    configs = list(report["configs"])
    lines = [f"# mmdemo benchmark: {report['tag']}", "",
             f"{report['when']} · {report['machine'].get('gpu') or report['machine'].get('cpu')} · "
             f"{report['machine']['cpu_count']} CPUs · device {report['device']} · dtype {report['dtype']} · "
             f"git {report['machine'].get('git')} · warm repeats {report['repeats']}"
             + (" · **quick run**" if report["quick"] else ""), ""]
    for name in configs:
        lines.append(f"- config `{name}`: env {report['configs'][name]['env'] or '(none)'}")
    lines += ["", "## Warm medians (ms), first call in brackets", ""]
    peer_labels = sorted({v["variant"] for vs in report["cases"].values() for v in vs
                          if not v["variant"].startswith(("runtime", "bare"))})
    # "(a) predict": the app's own predict time (each result's provenance), to place a gap inside or outside it.
    header = ["case", *(f"(a) app {c}" for c in configs), *(f"(a) predict {c}" for c in configs),
              *(f"(a') HTTP {c}" for c in configs), "(b) runtime",
              "(c) bare", *peer_labels, *(f"(a)/(c) {c}" for c in configs), *(f"(a')/(c) {c}" for c in configs),
              "tokens"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, variants in report["cases"].items():
        cells = [key]
        for c in configs:
            app = report["configs"][c]["app"].get(key, {})
            cells.append(f"{_fmt(app.get('warm_median_ms'))} ({_fmt(app.get('first_ms'))})")
        for c in configs:
            cells.append(_fmt(report["configs"][c]["app"].get(key, {}).get("model_ms_median")))
        for c in configs:
            cells.append(_fmt(report["configs"][c]["app"].get(key, {}).get("http_warm_median_ms")))
        for prefix in ("runtime", "bare"):
            v = next((v for v in variants if v["variant"].startswith(prefix)), {})
            cells.append(f"{_fmt(v.get('warm_median_ms'))} ({_fmt(v.get('first_ms'))})" if v else "-")
        for label in peer_labels:
            v = _variant(variants, label) or {}
            cells.append(_fmt(v.get("warm_median_ms")) if v else "")
        for c in configs:
            app_ms = report["configs"][c]["app"].get(key, {}).get("warm_median_ms")
            cells.append(_fmt(ratio(app_ms, _bare_ms(variants))))
        for c in configs:
            http_ms = report["configs"][c]["app"].get(key, {}).get("http_warm_median_ms")
            cells.append(_fmt(ratio(http_ms, _bare_ms(variants))))
        bare = next((v for v in variants if v["variant"].startswith("bare")), {})
        cells.append(_fmt(bare.get("new_tokens")) + (f"×{bare['sequences']}" if bare.get("sequences") else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if report["wer"]:
        lines += ["", "## Speech: word error rate over all clips", "", "| model | variant | WER |", "|---|---|---|"]
        for model, by_variant in report["wer"].items():
            for variant, value in by_variant.items():
                lines.append(f"| {model} | {variant} | {value:.1%} |")
            for c in configs:
                value = report["configs"][c].get("wer", {}).get(model)
                if value is not None:
                    lines.append(f"| {model} | app {c} | {value:.1%} |")
    lines += ["", "## Model load on first use (s)", "", "| model | app " + " | app ".join(configs)
              + " | runtime |", "|---|" + "---|" * (len(configs) + 1)]
    for model in report["runtime_load_s"]:
        cells = [_fmt(report["configs"][c]["model_load_s"].get(model)) for c in configs]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {_fmt(report['runtime_load_s'][model])} |")
    lines += ["", "## App process", "", "| config | start-up to GET / 200 (s) | bare import (s) | peak RSS (MiB) "
              "| round trip without model work: gradio_client / HTTP (ms) |", "|---|---|---|---|---|"]
    for c in configs:
        cfg = report["configs"][c]
        s = cfg.get("startup") or {}
        lines.append(f"| {c} | {_fmt(s.get('app_served_median_s'))} | {_fmt(s.get('bare_import_median_s'))} | "
                     f"{_fmt(cfg.get('memory', {}).get('peak_rss_mib'))} | {_fmt(cfg.get('client_floor_ms'))} / "
                     f"{_fmt(cfg.get('http_floor_ms'))} |")
    if any(cfg.get("concurrency") for cfg in report["configs"].values()):
        lines += ["", "## Concurrency (requests/s)", "",
                  "| config | case | 1 client | N clients | N | median latency (ms) | max latency (ms) "
                  "| batch size median / max | errors |", "|---|---|---|---|---|---|---|---|---|"]
        for c in configs:
            for key, row in report["configs"][c].get("concurrency", {}).items():
                lines.append(f"| {c} | {key} | {_fmt(row['sequential_rps'])} | {_fmt(row['concurrent_rps'])} | "
                             f"{row['clients']} | {_fmt(row['concurrent_latency_median_ms'])} | "
                             f"{_fmt(row.get('concurrent_latency_max_ms'))} | {_fmt(row.get('batch_size_median'))} / "
                             f"{_fmt(row.get('batch_size_max'))} | {row['errors']} |")
    lines += ["", "## Targets", "", "| target | config | value | limit | status | note |", "|---|---|---|---|---|---|"]
    for row in report["targets"]:
        lines.append(f"| {row['target']} | {row['config']} | {_fmt(row['value'])} | {row['limit']} | "
                     f"**{row['status']}** | {row['note']} |")
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """Warm medians per case and variant, log scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (no matplotlib: skipping the chart; pip install -r benchmarks/requirements.txt)")
        return
    keys = list(report["cases"])
    series: dict[str, list[float]] = {}
    for c, cfg in report["configs"].items():
        series[f"(a) app {c}"] = [cfg["app"].get(k, {}).get("warm_median_ms") or 0 for k in keys]
    labels = sorted({v["variant"] for vs in report["cases"].values() for v in vs})
    for label in labels:
        series[label] = [(_variant(report["cases"][k], label) or {}).get("warm_median_ms") or 0 for k in keys]
    height = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(11, 0.5 + 0.45 * len(keys) * max(1, len(series)) / 3))
    for i, (label, values) in enumerate(series.items()):
        ax.barh([k + i * height for k in range(len(keys))], values, height=height, label=label)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(keys))], keys)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("warm median, ms (log)")
    ax.set_title(f"mmdemo benchmark · {report['tag']}" + (" · quick run" if report["quick"] else ""))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline(report: dict[str, Any]) -> str:
    """The table printed at the end: app vs bare vs the best peer per case, then the targets."""
    lines = [f"{'case':<34} {'app ms':>9} {'runtime':>9} {'bare':>9} {'a/c':>6}  best peer"]
    first = next(iter(report["configs"]))
    for key, variants in report["cases"].items():
        app = report["configs"][first]["app"].get(key, {}).get("warm_median_ms")
        run = next((v.get("warm_median_ms") for v in variants if v["variant"] == "runtime"), None)
        bare = _bare_ms(variants)
        peers = [(v.get("warm_median_ms"), v["variant"]) for v in variants
                 if not v["variant"].startswith(("runtime", "bare")) and v.get("warm_median_ms")]
        best = min(peers) if peers else None
        lines.append(f"{key:<34} {_fmt(app):>9} {_fmt(run):>9} {_fmt(bare):>9} {_fmt(ratio(app, bare)):>6}  "
                     + (f"{_fmt(best[0])} ({best[1]})" if best else "-"))
    lines.append("")
    for row in report["targets"]:
        lines.append(f"[{row['status']:>4}] {row['target']} ({row['config']}): {_fmt(row['value'])} "
                     f"(limit {row['limit']}) {row['note']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        for pair in item.split(","):
            if "=" not in pair:
                raise SystemExit(f"--env/--compare takes KEY=VALUE pairs, got {pair!r}")
            key, value = pair.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def side_study_parser(doc: str, repeats: int) -> argparse.ArgumentParser:
    """The arguments of the one-question scripts beside this one (benchmarks.beam_cache, .linear_formats, ...)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--tag", default="cpu2", help="results folder under benchmarks/results")
    return parser


def bench_settings(**overrides: Any) -> Any:
    """The app's settings from the environment on the benchmark models (built on first use), the tasks registered:
    what the side studies' in-process runtimes run with."""
    import mmdemo.tasks  # noqa: F401  (registers the tasks)
    from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models
    from mmdemo.config import settings_from_env

    return replace(settings_from_env(), model_dir=ensure_bench_models(DEFAULT_ROOT), **overrides)


def bench_folder(name: str) -> Path:
    """A folder of the benchmark cache for a side study's generated inputs (images), made if missing."""
    from benchmarks.bench_models import DEFAULT_ROOT

    folder = DEFAULT_ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_table(tag: str, name: str, title: str, rows: list[str]) -> Path:
    """A side study's Markdown table, as benchmarks/results/<tag>/<name>.md."""
    out = REPO / "benchmarks" / "results" / tag / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {title}\n\n" + "\n".join(rows) + "\n")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 warm repeat, 2 clips, 5-token captions, "
                   "8 concurrent requests, 1 start-up; results go to <tag>-quick")
    p.add_argument("--repeats", type=int, help="warm repeats per variant (default 5; quick 1)")
    p.add_argument("--startup-repeats", type=int, help="start-up measurements (default 3; quick 1)")
    p.add_argument("--tasks", nargs="+", help="only these tasks or case keys (vqa, captioning, zero_shot, speech, "
                   "sentiment, vqa/blip, ...)")
    p.add_argument("--speech-models", nargs="+", default=["openai/whisper-tiny.en", "openai/whisper-base"])
    p.add_argument("--clips", nargs="+", help="speech clips by file name (default: every English clip; quick: "
                   f"{' '.join(QUICK_CLIPS)})")
    p.add_argument("--caption-tokens", type=int, help="captioning max_new_tokens, forced (default 20; quick 5)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--concurrent-requests", type=int, help="requests in the concurrent burst (default 32; quick 8)")
    p.add_argument("--sequential-requests", type=int, help="requests one client sends in a row (default 8; quick 2)")
    p.add_argument("--concurrency-tasks", nargs="+", default=["zero_shot/clip", "captioning/blip"])
    p.add_argument("--env", action="append", default=[], metavar="K=V[,K=V]",
                   help="environment for the app and the in-process runtime (repeatable)")
    p.add_argument("--compare", metavar="K=V[,K=V]", help="a second app configuration: start-up, (a) and "
                   "concurrency run again under these env overrides, e.g. MMDEMO_MAX_BATCH=1")
    p.add_argument("--skip", nargs="+", default=[], choices=["startup", "app", "inprocess", "peers", "concurrency"])
    p.add_argument("--fw-compute-type", default="int8", help="faster-whisper compute type (default int8)")
    p.add_argument("--tag", help="results folder name (default: the device, e.g. cpu2 or nvidia-h100-80gb-hbm3)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--bench-cache", type=Path, help="where the benchmark models are built "
                   "(default ~/.cache/mmdemo-bench, or MMDEMO_BENCH_CACHE)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats if args.repeats is not None else (1 if quick else 5)
    args.startup_repeats = args.startup_repeats or (1 if quick else 3)
    args.caption_tokens = args.caption_tokens or (5 if quick else 20)
    args.concurrent_requests = args.concurrent_requests or (args.clients if quick else 4 * args.clients)
    args.sequential_requests = args.sequential_requests if args.sequential_requests is not None else (2 if quick else 8)
    if quick and not args.clips:
        args.clips = list(QUICK_CLIPS)
        args.speech_models = args.speech_models[:1]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base_env = parse_env(args.env)
    os.environ.update(base_env)  # the in-process runtime reads MMDEMO_* too

    from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models

    model_dir = ensure_bench_models(args.bench_cache or DEFAULT_ROOT)
    cases = build_cases(args)
    info = machine_info()
    tag = args.tag or machine_tag(info, quick)
    out_dir = args.out / tag
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"mmdemo benchmark -> {out_dir}: {len(cases)} cases, {args.repeats} warm repeats"
          + (" (quick)" if quick else ""), flush=True)

    configs = {"default": base_env}
    if args.compare:
        configs[",".join(f"{k}={v}" for k, v in parse_env([args.compare]).items())] = {**base_env,
                                                                                      **parse_env([args.compare])}
    report: dict[str, Any] = {"tag": tag, "quick": quick, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "machine": info, "repeats": args.repeats, "model_dir": str(model_dir),
                              "configs": {}, "cases": {}, "wer": {}, "runtime_load_s": {}}

    # App sections, once per configuration: start-up, (a), memory, concurrency.
    for name, overrides in configs.items():
        print(f"[app: {name}]", flush=True)
        env = app_env(dict(os.environ), model_dir, overrides)
        cfg: dict[str, Any] = {"env": overrides, "app": {}, "model_load_s": {}}
        if "startup" not in args.skip:
            cfg["startup"] = bench_startup(env, args.startup_repeats, out_dir / f"app-{_slug(name)}.log")
        if not {"app", "concurrency"} <= set(args.skip):
            app = AppProcess(env, out_dir / f"app-{_slug(name)}.log")
            try:
                cfg["served_s"] = round(app.start(), 2)
                if "app" not in args.skip:
                    measured, extra = bench_app(cases, app, args.repeats)
                    cfg["app"] = {k: m.to_json() for k, m in measured.items()}
                    cfg["model_load_s"] = extra["model_load_s"]
                    cfg["client_floor_ms"] = extra["client_floor_ms"]
                    cfg["http_floor_ms"] = extra["http_floor_ms"]
                    cfg["memory"] = app.memory()  # all tabs used
                    cfg["wer"] = _app_wer(cases, measured)
                if "concurrency" not in args.skip:
                    chosen = [c for c in cases if c.key in args.concurrency_tasks]
                    cfg["concurrency"] = bench_concurrency(app, chosen, args.clients, args.concurrent_requests,
                                                           args.sequential_requests)
                cfg.setdefault("memory", app.memory())
            finally:
                app.stop()
        report["configs"][name] = cfg

    # In-process sections: (b), (c), (d), model by model.
    per_case: dict[str, list[Measurement]] = {case.key: [] for case in cases}
    if "inprocess" not in args.skip:
        print("[in process]", flush=True)
        bench = InProcess(model_dir, args.repeats, args.fw_compute_type)
        report["device"], report["dtype"] = bench.device, str(bench.dtype).removeprefix("torch.")
        for model in dict.fromkeys(c.model for c in cases):
            group = [c for c in cases if c.model == model]
            for case in group:
                print(f"  runtime {case.key}", flush=True)
                m = bench.runtime_run(case)
                per_case[case.key].append(m)
                if case.task == "zero_shot":
                    per_case[case.key].append(bench.runtime_new_labels(case))
                report["runtime_load_s"].setdefault(model, m.extra.get("model_load_s"))
            quantized = bench.runtime_quantization(group[0]) if bench.device == "cpu" else None
            bench.release()
            for case in group:
                print(f"  bare {case.key}", flush=True)
                per_case[case.key].append(bench.bare(case, quantized))
                if "peers" not in args.skip:
                    print(f"  peers {case.key}", flush=True)
                    per_case[case.key].extend(bench.peers(case))
    else:
        report["device"], report["dtype"] = "?", "?"
    for case in cases:
        variants = []
        for m in per_case[case.key]:
            row = m.to_json()
            if case.reference is not None and isinstance(m.output, str):
                row["wer"] = round(wer(case.reference, m.output), 4)
            variants.append(row)
        for cfg in report["configs"].values():
            app_row = cfg["app"].get(case.key)
            if app_row and case.reference is not None and isinstance(app_row.get("output"), str):
                app_row["wer"] = round(wer(case.reference, app_row["output"]), 4)
        report["cases"][case.key] = variants
    report["wer"] = _variant_wer(cases, per_case)
    report["targets"] = evaluate_targets(report)

    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "results.md").write_text(markdown(report))
    chart(report, out_dir / "chart.png")
    print()
    print(headline(report))
    print(f"\nwrote {out_dir / 'results.json'}, results.md, chart.png")
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "default"


def _app_wer(cases: list[Case], measured: dict[str, Measurement]) -> dict[str, float]:
    """Corpus WER of the app's transcripts, per speech model."""
    found: dict[str, list[tuple[str, str]]] = {}
    for case in cases:
        m = measured.get(case.key)
        if case.reference is not None and m and isinstance(m.output, str):
            found.setdefault(case.model.split("/")[-1], []).append((case.reference, m.output))
    return {model: round(corpus_wer(pairs), 4) for model, pairs in found.items()}


def _variant_wer(cases: list[Case], per_case: dict[str, list[Measurement]]) -> dict[str, dict[str, float]]:
    """Corpus WER per speech model and in-process variant."""
    found: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for case in cases:
        if case.reference is None:
            continue
        for m in per_case[case.key]:
            if isinstance(m.output, str):
                found.setdefault(case.model.split("/")[-1], {}).setdefault(m.variant, []).append(
                    (case.reference, m.output))
    return {model: {variant: round(corpus_wer(pairs), 4) for variant, pairs in by.items()}
            for model, by in found.items()}


if __name__ == "__main__":
    sys.exit(main())
