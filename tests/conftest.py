"""Shared pytest setup: offline Hugging Face, tiny local checkpoints."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Root of the tiny random-weight checkpoints (``<root>/<org>/<name>``), built once and kept between runs.

    ``MMDEMO_TINY_MODEL_DIR`` overrides the default ``<repo>/.pytest_cache/tiny-models``.
    """
    from tiny_models import ensure_tiny_models

    root = Path(os.environ.get("MMDEMO_TINY_MODEL_DIR") or REPO_ROOT / ".pytest_cache" / "tiny-models")
    return ensure_tiny_models(root)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    """Gradio's upload cache for one test module's apps (GRADIO_TEMP_DIR), so that what stays behind can be seen."""
    folder = tmp_path_factory.mktemp("gradio-uploads")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder
