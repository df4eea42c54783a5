"""Shared pytest setup: offline Hugging Face, tiny local checkpoints, a runtime over them, launched apps."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Flags the tests make go to a throwaway store, never to the developer's $HF_HOME.
os.environ.setdefault("MMDEMO_FLAG_DIR", tempfile.mkdtemp(prefix="mmdemo-test-flags-"))

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from mmdemo.testing.servers import free_port  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_BUDGET = 4 * 1024**3  # bytes: every tiny checkpoint fits many times over


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Root of the tiny random-weight checkpoints (``<root>/<org>/<name>``), built once and kept between runs.

    ``MMDEMO_TINY_MODEL_DIR`` overrides the default ``<repo>/.pytest_cache/tiny-models``.
    """
    from mmdemo.testing.tiny_models import ensure_tiny_models

    root = Path(os.environ.get("MMDEMO_TINY_MODEL_DIR") or REPO_ROOT / ".pytest_cache" / "tiny-models")
    return ensure_tiny_models(root)


@pytest.fixture(scope="session")
def tiny_runtime(tiny_model_dir: Path) -> Callable[..., Any]:
    """A function making a local runtime over the tiny checkpoints on CPU: `tiny_runtime(quantize="none")`.

    Keyword arguments are Settings fields (default: the tiny model dir, device cpu, a 4 GiB budget), and `cache`.
    """
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings

    def make(*, cache: Any = None, **settings: Any) -> Any:
        settings = {"model_dir": tiny_model_dir, "device": "cpu", "memory_budget": TEST_BUDGET, **settings}
        return local_runtime(Settings(**settings), cache=cache)

    return make


@pytest.fixture(scope="module")
def launched() -> Iterator[Callable[..., str]]:
    """A function serving a built demo on a free loopback port: `launched(demo, **launch_kwargs)` -> its URL.

    Every demo it served closes when the test module ends.
    """
    demos = []

    def launch(demo: Any, **kwargs: Any) -> str:
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **kwargs)
        demos.append(demo)
        return f"http://127.0.0.1:{port}/"

    try:
        yield launch
    finally:
        for demo in demos:
            demo.close()


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    """Gradio's upload cache for one test module's apps (GRADIO_TEMP_DIR), so that what stays behind can be seen."""
    folder = tmp_path_factory.mktemp("gradio-uploads")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder
