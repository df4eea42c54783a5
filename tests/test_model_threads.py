"""CPU model work runs on threads of its own, so that the threads serving requests keep no OpenMP team."""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path

import pytest
import torch

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo import registry
from mmdemo.runtime.model_threads import run_on_own_thread

SENTIMENT = {"text": "What a lovely day", "model": "cardiffnlp/twitter-roberta-base-sentiment-latest"}
TASKS = Path("/proc/self/task")


def native_threads() -> int:
    """Threads of this process that Python did not start: OpenMP's team workers among them."""
    return len(list(TASKS.iterdir())) - threading.active_count()


def test_own_thread_returns_raises_and_keeps_the_context():
    user = contextvars.ContextVar("user")
    user.set("visitor")
    caller = threading.get_ident()
    assert run_on_own_thread(lambda a, b: (a + b, user.get(), threading.get_ident() != caller), 2, 3) == \
        (5, "visitor", True)
    with pytest.raises(KeyError, match="missing"):
        run_on_own_thread({}.__getitem__, "missing")


@pytest.fixture
def parallel_sentiment(monkeypatch):
    """The sentiment task with a predict that also runs one parallel region (an OpenMP team for its thread: the
    tiny test models are too small to start one), recording the threads it ran on."""
    task = registry.get("sentiment")
    predict_batch, threads = task.predict_batch, []

    def parallel_predict_batch(bundles, batch):
        threads.append(threading.current_thread())
        torch.ones(4_000_000).exp_()
        return predict_batch(bundles, batch)

    monkeypatch.setattr(task, "predict_batch", parallel_predict_batch)
    return threads


@pytest.mark.skipif(not TASKS.is_dir() or torch.get_num_threads() < 2,
                    reason="needs Linux's /proc and 2 intra-op threads (an OpenMP team)")
def test_threads_serving_requests_keep_no_openmp_team(tiny_runtime, parallel_sentiment):
    runtime = tiny_runtime()
    answers = []
    runtime.run("sentiment", SENTIMENT)  # loads the model; lazily started native pools start here
    baseline = native_threads()
    done = threading.Event()

    def serve() -> None:  # a server's worker thread: serves one request, then stays alive
        answers.append(runtime.run("sentiment", SENTIMENT)["label"])
        done.wait()

    servers = [threading.Thread(target=serve) for _ in range(4)]
    try:
        for server in servers:  # one after another, as requests that do not overlap
            server.start()
            while len(answers) < servers.index(server) + 1:
                time.sleep(0.01)
        deadline = time.monotonic() + 5  # a team's workers end just after their thread
        while native_threads() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert native_threads() <= baseline, "a thread that served a request kept an OpenMP team"
    finally:
        done.set()
        for server in servers:
            server.join()
    assert len(set(answers)) == 1 and answers[0]
    assert len(parallel_sentiment) == 5 and not set(servers) & set(parallel_sentiment)  # never on a server's thread


def test_only_cpu_work_moves_to_a_thread_of_its_own(tiny_runtime, monkeypatch):
    runtime = tiny_runtime()
    monkeypatch.setattr(runtime.predictor, "device", "cuda")  # only the thread choice reads it here
    assert runtime.predictor.on_model_thread(threading.get_ident) == threading.get_ident()
    monkeypatch.setattr(runtime.predictor, "device", "cpu")
    assert runtime.predictor.on_model_thread(threading.get_ident) != threading.get_ident()
