"""The Ray Serve backend on a real local Ray instance, driven through the Gradio front end with gradio_client.

Ray binds every network interface (a replica's gRPC server ignores a loopback node address), so the tests run in a
loopback-only network namespace: collected normally, this module re-runs itself under `unshare -n` (with `lo` up)
and each test reports the outcome of its twin in there. Inside, one small Ray instance (2 CPUs, no dashboard,
100 MB object store) serves every family on the tiny checkpoints; the last test shuts it down and checks that no Ray
process is left, and the outer run kills any leftover whatever happened.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

pytestmark = pytest.mark.integration

NAMESPACE_ENV = "MMDEMO_RAY_TEST_INSIDE"  # set in the loopback namespace's pytest run
INSIDE = os.environ.get(NAMESPACE_ENV) == "1"
INNER_TIMEOUT_S = 420  # the whole run inside the namespace
ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = str(ASSETS / "skimage_chelsea.png")
JFK = str(ASSETS / "jfk.flac")
TEMPORARY = "temporarily unavailable"
WHISPERS = ("openai/whisper-base", "openai/whisper-tiny", "openai/whisper-small")  # three checkpoints, one family


# ---------------------------------------------------------------- outside: run the module in the namespace


@dataclass
class LoopbackRun:
    """The outcome of every test of this module as run inside the loopback namespace."""

    outcomes: dict[str, tuple[str, str]]  # test name -> (passed | failed | skipped, message)
    output: str  # the tail of the inner pytest's output

    def check(self, name: str) -> None:
        outcome, message = self.outcomes.get(name, ("missing", ""))
        if outcome == "skipped":
            pytest.skip(message)
        if outcome != "passed":
            pytest.fail(f"{name} {outcome} in the loopback namespace:\n{message}\n--- inner output ---\n{self.output}",
                        pytrace=False)


def in_loopback_namespace(test):
    """Inside the namespace the test itself; outside, a stand-in that reports its twin's outcome from in there."""
    if INSIDE:
        return test

    def outcome(loopback_run: LoopbackRun) -> None:
        loopback_run.check(test.__name__)

    outcome.__name__ = outcome.__qualname__ = test.__name__
    outcome.__doc__ = test.__doc__
    return outcome


def _junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    outcomes = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        failure = case.find("failure")
        failure = failure if failure is not None else case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            outcomes[case.get("name")] = ("failed", (failure.get("message") or "") + "\n" + (failure.text or ""))
        elif skipped is not None:
            outcomes[case.get("name")] = ("skipped", skipped.get("message") or "")
        else:
            outcomes[case.get("name")] = ("passed", "")
    return outcomes


@pytest.fixture(scope="module")
def loopback_run(tiny_model_dir, tmp_path_factory) -> LoopbackRun:
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install -r requirements-ray.txt")
    from mmdemo.serving.cluster import ray_processes

    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("unshare or ip is missing: the Ray tests need a loopback-only network namespace")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here ({probe.stderr.strip()}): the Ray tests need a loopback-only "
                    "network namespace (root or CAP_SYS_ADMIN)")
    report = tmp_path_factory.mktemp("ray") / "junit.xml"
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    env = {**os.environ, NAMESPACE_ENV: "1", "MMDEMO_TINY_MODEL_DIR": str(tiny_model_dir),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.time()
    try:
        inner = subprocess.run(command, env=env, capture_output=True, text=True, timeout=INNER_TIMEOUT_S)
        output = inner.stdout[-6000:] + inner.stderr[-3000:]
    except subprocess.TimeoutExpired as e:
        output = f"timed out after {INNER_TIMEOUT_S} s\n{(e.stdout or b'')[-6000:]!r}"
    finally:
        for process in ray_processes(since=started):  # whatever the inner run left behind
            process.kill()
    if not report.exists():
        pytest.fail(f"The run in the loopback namespace wrote no report:\n{output}", pytrace=False)
    return LoopbackRun(_junit_outcomes(report), output)


# ---------------------------------------------------------------- inside: the backend and two front ends


@dataclass
class Backend:
    ray_url: str  # the front end on the Ray backend
    local_url: str  # the same app on the in-process backend, for comparison
    runtime: Any  # the Runtime over the Ray predictor
    local_runtime: Any
    started: float  # time.time() before Ray started: its processes are younger
    stop: Any  # idempotent: close the front ends, shut Serve and Ray down


def _test_config():
    """The repository's Serve config made small and deterministic: one replica per family on a quarter CPU each;
    two Whisper checkpoints per replica; zero-shot batches wait 0.3 s for company; Whisper gives up after 60 s."""
    from mmdemo.serving.config import load_config

    config = load_config()
    for family in config.deployments:
        config = config.with_options(family, num_replicas=1, ray_actor_options={"num_cpus": 0.25, "num_gpus": 0})
    config = config.with_options("clip", max_ongoing_requests=32,
                                 user_config={"max_batch_size": 8, "batch_wait_timeout_s": 0.3})
    return config.with_options("whisper", user_config={"max_models_per_replica": 2, "request_timeout_s": 60})


@pytest.fixture(scope="module")
def backend(tiny_model_dir, tiny_runtime):
    from test_extending import build_echo_tab

    import mmdemo.tasks  # noqa: F401
    from mmdemo import registry
    from mmdemo.backends import ray_runtime
    from mmdemo.config import Settings
    from mmdemo.serving import cluster
    from mmdemo.testing.echo import EchoTask
    from mmdemo.testing.servers import free_port
    from mmdemo.ui import build_demo
    from mmdemo.ui.tabs import register_tab, unregister_tab

    started = time.time()
    settings = Settings(model_dir=tiny_model_dir, device="cpu", memory_budget=4 * 1024**3, backend="ray")
    demos = []

    @functools.cache
    def stop() -> None:
        for demo in demos:
            demo.close()
        cluster.shutdown()
        registry.unregister("echo")
        unregister_tab("echo")

    # A task registered here, with no entry in serve_config.yaml, is deployed with the defaults and served.
    registry.register(EchoTask())
    register_tab("echo", build_echo_tab)
    try:
        config = _test_config()
        cluster.start_local(config, num_cpus=2, object_store_bytes=100 * 1024**2)
        cluster.deploy(settings, config)
        runtime = ray_runtime(settings, config=config)
        local_runtime = tiny_runtime()
        urls = []
        for each in (runtime, local_runtime):
            demo = build_demo(each)
            port = free_port()
            demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
            demos.append(demo)
            urls.append(f"http://127.0.0.1:{port}/")
        yield Backend(urls[0], urls[1], runtime, local_runtime, started, stop)
    finally:
        stop()
        for process in cluster.ray_processes(since=started):
            process.kill()


@pytest.fixture(scope="module")
def clients(backend):
    from gradio_client import Client

    return Client(backend.ray_url, verbose=False), Client(backend.local_url, verbose=False)


def assert_same(ray_result: Any, local_result: Any, path: str = "result") -> None:
    """Equal, floats within 1e-5 (a replica computes on fewer threads than the app, in another order)."""
    if isinstance(local_result, float) and isinstance(ray_result, (int, float)):
        assert math.isclose(ray_result, local_result, rel_tol=1e-5, abs_tol=1e-6), path
    elif isinstance(local_result, dict):
        assert isinstance(ray_result, dict) and set(ray_result) == set(local_result), path
        for key in local_result:
            assert_same(ray_result[key], local_result[key], f"{path}.{key}")
    elif isinstance(local_result, list):
        assert isinstance(ray_result, list) and len(ray_result) == len(local_result), path
        for i, (a, b) in enumerate(zip(ray_result, local_result)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert ray_result == local_result, path


def _without_timings(result: dict[str, Any]) -> dict[str, Any]:
    provenance = {key: value for key, value in result["provenance"].items() if key not in {"ms", "batch_size"}}
    return {**result, "provenance": provenance}


def _board(backend, deployment: str, predicate, timeout_s: float = 10.0) -> dict[str, Any]:
    """The deployment's first replica report once `predicate(report)` holds (replicas post fire-and-forget)."""
    deadline = time.monotonic() + timeout_s
    while True:
        replicas = [r for r in backend.runtime.cache_report()["replicas"] if r["deployment"] == deployment]
        if replicas and predicate(replicas[0]):
            return replicas[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{deployment} replicas never reached the expected state: {replicas}")
        time.sleep(0.05)


# ---------------------------------------------------------------- the tests (in file order: shutdown is last)


@in_loopback_namespace
def test_every_tab_gives_the_in_process_result(clients, backend):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from mmdemo.serving.families import families

    calls = [
        ("/vqa", (handle_file(CAT), "What animal is this?", "Salesforce/blip-vqa-base")),
        ("/vqa", (handle_file(CAT), "What animal is this?", "dandelin/vilt-b32-finetuned-vqa")),
        ("/captioning", (handle_file(CAT), "", "Salesforce/blip-image-captioning-base", "beam", 3, 0.9, 1.0, 0, 12, 2)),
        ("/captioning", (handle_file(CAT), "a", "microsoft/git-base-coco", "sample", 3, 0.9, 1.0, 7, 12, 2)),
        ("/zero_shot", (handle_file(CAT), "cat, dog, bird", "openai/clip-vit-base-patch32", "a photo of a {}.", False)),
        ("/zero_shot", (handle_file(CAT), "cat, dog", "google/siglip-base-patch16-224", "a photo of a {}.", True)),
        ("/speech", (handle_file(JFK), "openai/whisper-base", "auto", "transcribe", "segment")),
        ("/sentiment", ("What a lovely day!", handle_file(CAT), handle_file(JFK), "product_of_experts")),
    ]
    ray_client, local_client = clients
    for api_name, args in calls:
        ray_result = ray_client.predict(*args, api_name=api_name)
        local_result = local_client.predict(*args, api_name=api_name)
        assert_same(_without_timings(ray_result), _without_timings(local_result), api_name)
    # A visitor-facing error raised on a replica (no such checkpoint) reaches the visitor as the same line.
    missing = (handle_file(JFK), "openai/whisper-tiny.en", "auto", "transcribe", "none")
    messages = []
    for client in clients:
        with pytest.raises(AppError) as info:
            client.predict(*missing, api_name="/speech")
        messages.append(str(info.value))
    assert "whisper-tiny.en" in messages[0] and messages[0] == messages[1]
    # The Models panel shows what the replicas hold; unloading is refused in one line.
    report = ray_client.predict(api_name="/models")
    assert set(families()) <= {r["deployment"] for r in report["replicas"]}  # every family has a replica
    assert "openai/clip-vit-base-patch32" in {e["model"] for e in report["entries"]}
    with pytest.raises(AppError, match="not available with the Ray backend"):
        ray_client.predict("openai/clip-vit-base-patch32", api_name="/unload")


@in_loopback_namespace
def test_a_task_registered_by_the_front_end_is_served_by_a_deployment_of_its_own(clients, backend):
    from gradio_client.exceptions import AppError

    ray_client, local_client = clients
    jobs = [ray_client.submit(f"word {i}", api_name="/echo") for i in range(8)]
    results = [job.result(timeout=60) for job in jobs]
    assert [r["echo"] for r in results] == [f"WORD {i}" for i in range(8)]
    assert _without_timings(results[0]) == _without_timings(local_client.predict("word 0", api_name="/echo"))
    report = ray_client.predict(api_name="/models")
    assert "echo" in {r["deployment"] for r in report["replicas"]}
    with pytest.raises(AppError, match="Text is empty"):
        ray_client.predict("  ", api_name="/echo")


@in_loopback_namespace
def test_a_third_checkpoint_evicts_the_least_recently_used(clients, backend):
    from gradio_client import handle_file

    ray_client, _ = clients
    base, tiny, small = WHISPERS
    for model in (base, tiny, base, small):  # base is used again after tiny: tiny is the coldest when small comes
        result = ray_client.predict(handle_file(JFK), model, "en", "transcribe", "none", api_name="/speech")
        assert result["provenance"]["models"]["model"] == model
    replica = _board(backend, "whisper", lambda r: set(r["models"]) == {base, small})
    assert replica["max_models"] == 2 and replica["evictions"] >= 1


@in_loopback_namespace
def test_concurrent_requests_share_batches_and_get_their_own_answers(clients, backend):
    from gradio_client import handle_file

    ray_client, _ = clients
    words = ("bird", "horse", "car", "tree", "sky", "cup", "lion", "rocket", "camera", "table", "chair", "grass",
             "street", "water", "statue", "plate")
    requests = [(handle_file(CAT), f"cat, dog, {word}", "openai/clip-vit-base-patch32", "a photo of a {}.", False)
                for word in words]
    jobs = [ray_client.submit(*args, api_name="/zero_shot") for args in requests]
    results = [job.result(timeout=120) for job in jobs]
    batch_sizes = [result["provenance"]["batch_size"] for result in results]
    assert max(batch_sizes) > 1, batch_sizes
    for word, result in zip(words, results):
        alone = backend.local_runtime.run("zero_shot", {"image": CAT, "labels": f"cat, dog, {word}"})
        assert {item["label"] for item in result["labels"]} == {"cat", "dog", word}
        assert_same({i["label"]: i["score"] for i in result["labels"]},
                    {i["label"]: i["score"] for i in alone["labels"]})


@in_loopback_namespace
def test_a_killed_replica_gives_a_temporary_error_then_recovers(clients, backend, tmp_path):
    import ray
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from mmdemo.serving.board import SERVE_NAMESPACE

    ray_client, _ = clients
    long_clip = tmp_path / "long.wav"  # ten minutes of noise: long-form decoding keeps the replica busy for seconds
    soundfile.write(long_clip, (np.random.default_rng(0).standard_normal(16_000 * 590) * 0.1).astype(np.float32),
                    16_000)
    job = ray_client.submit(handle_file(str(long_clip)), WHISPERS[0], "en", "transcribe", "none", api_name="/speech")
    _board(backend, "whisper", lambda r: any(e["in_use"] for e in backend.runtime.cache_report()["entries"]
                                             if e["replica"] == r["replica"]), timeout_s=60)
    [name] = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
              if a["name"].startswith("SERVE_REPLICA::whisper#")]
    killed = time.monotonic()
    ray.kill(ray.get_actor(name, namespace=SERVE_NAMESPACE), no_restart=True)
    with pytest.raises(AppError, match=TEMPORARY) as info:
        job.result(timeout=60)
    assert "\n" not in str(info.value) and time.monotonic() - killed < 30
    deadline = time.monotonic() + 90
    while True:  # Serve starts a new replica; until it is up, requests fail the same clear way, never hang
        attempt = time.monotonic()
        try:
            result = ray_client.predict(handle_file(JFK), WHISPERS[0], "en", "transcribe", "none", api_name="/speech")
            break
        except AppError as e:
            assert TEMPORARY in str(e) and time.monotonic() - attempt < 65
            assert time.monotonic() < deadline, "no replica came back"
            time.sleep(1)
    assert result["text"] and result["provenance"]["models"]["model"] == WHISPERS[0]


@in_loopback_namespace
def test_shutdown_leaves_no_ray_processes(backend):
    from mmdemo.serving.cluster import ray_processes

    assert ray_processes(since=backend.started), "Ray should be running before the shutdown"
    backend.stop()
    deadline = time.monotonic() + 30
    while (left := ray_processes(since=backend.started)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, [" ".join(p.cmdline()[:3]) for p in left]
