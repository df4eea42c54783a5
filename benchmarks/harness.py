"""What every benchmark measures with: timed calls on a thread of their own, `Measurement`s of first and warm calls,
the app launched as `python app.py` in a subprocess, and a plain HTTP client of its REST API."""

from __future__ import annotations

import json
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ timing


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(milliseconds, result) of one call, the GPU synchronized around it.

    The call runs on a thread of its own, as the app runs its model calls: an OpenMP team left on this process's
    main thread by one variant (the bare call, a peer) would slow every other (`mmdemo.runtime.model_threads`).
    """
    from mmdemo.runtime.model_threads import run_on_own_thread

    _sync()
    started = time.perf_counter()
    result = run_on_own_thread(fn)
    _sync()
    return (time.perf_counter() - started) * 1000, result


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def rounded(value: float | None) -> float | None:
    """`value` to one decimal, None kept."""
    return None if value is None else round(value, 1)


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
        return {"variant": self.variant, "first_ms": rounded(self.first_ms), "warm_median_ms": self.warm_median,
                "warm_ms": [round(x, 1) for x in self.warm_ms], "load_ms": rounded(self.load_ms),
                "output": self.output, **self.extra, **({"error": self.error} if self.error else {})}


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


# ------------------------------------------------------------------------------------------------ the app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(base: dict[str, str], model_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The environment of a benchmarked app: `base` on `model_dir`, offline, no analytics, then `overrides`."""
    env = {**base, "MMDEMO_MODEL_DIR": str(model_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           **overrides}
    env.pop("MMDEMO_PORT", None)
    return env


class AppProcess:
    """`python app.py --port N` in a subprocess, with its RSS watched (VmHWM where Linux has it, else sampled).

    Args:
        env: the app's environment (`app_env`).
        log_path: where the app's output goes (appended); never under benchmarks/results.
        command: replaces `python app.py` (the port flag is appended), e.g. to run the app with something patched.
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
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
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
