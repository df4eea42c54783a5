"""The model board: one small Ray actor where every replica posts the models it holds, for the Models panel.

A deployment handle reaches one replica per call, so no call can ask every replica; instead each replica posts its
report (fire and forget) whenever its models or their use change, and the front end reads them all at once. A
replica that died is dropped from the board when it is next read.
"""

from __future__ import annotations

from typing import Any

import ray

BOARD_NAME = "mmdemo-model-board"
BOARD_NAMESPACE = "mmdemo"
SERVE_NAMESPACE = "serve"  # where Serve names its replica actors


@ray.remote(num_cpus=0)
class ModelBoard:
    """Replica actor name -> that replica's latest report."""

    def __init__(self) -> None:
        self._reports: dict[str, dict[str, Any]] = {}

    def post(self, actor_name: str, report: dict[str, Any]) -> None:
        self._reports[actor_name] = report

    def reports(self) -> list[dict[str, Any]]:
        """Reports of the replicas still alive, by deployment and replica."""
        for name in list(self._reports):
            try:
                ray.get_actor(name, namespace=SERVE_NAMESPACE)
            except ValueError:  # the replica is gone (stopped, scaled down or killed)
                del self._reports[name]
        return sorted(self._reports.values(), key=lambda r: (r["deployment"], r["replica"]))


def board() -> Any:
    """The cluster's board, created on first use; detached, so it outlives whichever process made it."""
    return ModelBoard.options(name=BOARD_NAME, namespace=BOARD_NAMESPACE, lifetime="detached",
                              get_if_exists=True).remote()


def existing_board() -> Any | None:
    """The board if one runs, else None."""
    try:
        return ray.get_actor(BOARD_NAME, namespace=BOARD_NAMESPACE)
    except ValueError:
        return None
