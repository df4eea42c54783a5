"""Serving an app in a test or a benchmark: a free loopback port."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
