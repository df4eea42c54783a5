"""The garbage collector around start-up: paused by `python app.py`, resumed (and start-up frozen) once served.

Each case runs in its own Python process: pausing, collecting and freezing are process-wide.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mmdemo.testing.servers import free_port

REPO = Path(__file__).resolve().parents[1]

SETTLE = """
import gc, json, weakref
from mmdemo import collector

class Node:
    pass

def garbage_cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

def tracked(obj):
    return any(o is obj for o in gc.get_objects())  # frozen objects are in no generation

gc.disable()
collector.settle()  # not paused by collector.pause(): left alone
untouched = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
gc.enable()

collector.pause()
paused = not gc.isenabled()
dead = garbage_cycle()
kept = Node()
kept.itself = kept  # a live cycle, like start-up's modules
before = {"dead_alive": dead() is not None, "kept_tracked": tracked(kept)}
collector.settle(freeze=FREEZE)
print(json.dumps({"untouched": untouched, "paused": paused, "before": before, "enabled": gc.isenabled(),
                  "dead_collected": dead() is None, "kept_tracked": tracked(kept),
                  "frozen": gc.get_freeze_count()}))
"""


def run_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("freeze", [True, False])
def test_settle_collects_start_up_garbage_freezes_the_survivors_and_resumes(freeze):
    report = run_python(SETTLE.replace("FREEZE", str(freeze)))
    assert report["untouched"] == {"enabled": False, "frozen": 0}  # only a process that paused is touched
    assert report["paused"] is True
    assert report["before"] == {"dead_alive": True, "kept_tracked": True}  # nothing collected while paused
    assert report["enabled"] is True
    assert report["dead_collected"] is True  # start-up's garbage is freed before anything is frozen
    if freeze:
        assert report["kept_tracked"] is False and report["frozen"] > 0  # the survivor moved to the permanent gen
    else:
        assert report["kept_tracked"] is True and report["frozen"] == 0


@pytest.mark.parametrize("preload", ["", "sentiment"])
def test_app_py_resumes_the_collector_once_served_and_the_model_code_imported(tiny_model_dir, tmp_path, preload):
    """`python app.py` pauses the collector; after the page is served and the model code imported it collects once
    and freezes start-up (hundreds of thousands of objects), but freezes nothing when a model was preloaded."""
    port = free_port()
    log_path = tmp_path / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MMDEMO_MODEL_DIR": str(tiny_model_dir), "MMDEMO_PRELOAD": preload,
           "GRADIO_ANALYTICS_ENABLED": "False"}
    with log_path.open("w") as log:
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline, resumed = time.monotonic() + 180, None
        while resumed is None and time.monotonic() < deadline and app.poll() is None:
            time.sleep(0.2)
            text = log_path.read_text()
            resumed = re.search(r"Garbage collector resumed: \d+ start-up objects collected, (\d+) frozen", text)
            if "Imported the model code of every tab" in text:  # settling follows at once: a few seconds at most
                deadline = min(deadline, time.monotonic() + 30)
        text = log_path.read_text()
        assert resumed, text[-3000:]
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).status == 200
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert text.index("Imported the model code of every tab") < resumed.start()  # after the background import
    frozen = int(resumed.group(1))
    if preload:
        assert "Preloaded" in text and frozen == 0  # a preloaded model may be evicted: nothing frozen
    else:
        assert frozen > 100_000


def test_settling_runs_before_a_load_waiting_for_the_model_code_goes_ahead(tiny_runtime):
    """The freeze must not catch a model half loaded: loads wait for the import, and `then` runs before they go."""
    import threading


    runtime = tiny_runtime()
    loads_released: list[bool] = []
    done = threading.Event()

    def then() -> None:
        loads_released.append(runtime.predictor.loader._code_imported.is_set())
        done.set()

    runtime.import_model_code_in_background(then=then)
    assert done.wait(120)
    assert loads_released == [False]
    assert runtime.predictor.loader._code_imported.wait(10)  # and then they go
