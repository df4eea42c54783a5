"""Starting, attaching to and stopping the Ray cluster, and deploying the families onto it."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psutil
import ray
from ray import serve

from mmdemo.config import Settings
from mmdemo.serving.board import existing_board
from mmdemo.serving.config import ServeConfig
from mmdemo.serving.families import families

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Processes a local Ray cluster runs (the replicas and other workers are named "ray::<Class>...").
RAY_DAEMONS = ("gcs_server", "raylet", "ray::", "dashboard/agent.py", "log_monitor.py", "ray/_private/monitor.py",
               "runtime_env/agent")


def start_local(config: ServeConfig, *, num_cpus: float | None = None, object_store_bytes: int | None = None) -> str:
    """Start a Ray cluster in this process (no dashboard), sized for `config`; returns its address.

    Ray's CPUs are scheduling units: the cluster offers at least what every deployment's largest replica count
    asks for, so they all fit on a small machine (their threads then share its cores).
    """
    # Replicas import mmdemo from this checkout: the workers inherit this environment.
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    cpus = num_cpus if num_cpus is not None else max(os.cpu_count() or 1, config.logical_cpus())
    context = ray.init(num_cpus=int(cpus + 0.999), include_dashboard=False, object_store_memory=object_store_bytes,
                       logging_level=logging.WARNING, log_to_driver=False)
    serve.start(proxy_location=config.proxy_location)
    return context.address_info["address"]


def connect(address: str) -> None:
    """Attach this process to a running cluster (`auto`, `host:port` or `ray://host:10001`)."""
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


def deploy(settings: Settings, config: ServeConfig, names: tuple[str, ...] | None = None, *,
           blocking: bool = True) -> float:
    """Deploy each family (default: every one in `config`) as its own Serve application, named after it; returns
    the seconds it took.

    `settings` reach every replica (the model directory must be visible there). With `blocking`, returns once every
    application is running.
    """
    from mmdemo.serving.deployments import bind_family

    started = time.perf_counter()
    serve.start(proxy_location=config.proxy_location)  # attaches to a running Serve as it is
    targets = [serve.RunTarget(bind_family(family, settings, config), name=family, route_prefix=None)
               for family in (names or tuple(config.deployments))]
    serve.run_many(targets, wait_for_ingress_deployment_creation=blocking, wait_for_applications_running=blocking)
    return time.perf_counter() - started


def undeploy() -> None:
    """Delete mmdemo's applications and the model board from the attached cluster (Serve itself keeps running)."""
    for family in families():
        serve.delete(family)
    board = existing_board()
    if board is not None:
        ray.kill(board)


def shutdown() -> None:
    """Stop Serve and disconnect; a cluster this process started stops with it."""
    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()


def ray_processes(since: float = 0.0) -> list[psutil.Process]:
    """This machine's Ray processes started at or after `since` (a time.time()), by name and command line."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
        try:
            if process.info["create_time"] < since or process.pid == os.getpid():
                continue
            text = " ".join([process.info["name"] or "", *(process.info["cmdline"] or [])])
            if any(marker in text for marker in RAY_DAEMONS):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
