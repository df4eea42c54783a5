"""Where a model's files come from: a local directory, the Hugging Face cache, or the hub.

The hub is probed once (quickly) and the answer remembered, so that on a machine without network
no visitor waits for huggingface_hub's retries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from mmdemo.errors import ModelUnavailableError
from mmdemo.i18n import Message

log = logging.getLogger(__name__)

# Files a transformers checkpoint needs; everything else in a repo (other frameworks, ONNX, ...) is skipped.
CHECKPOINT_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "merges.txt",
]
LEGACY_WEIGHT_PATTERNS = ["pytorch_model*.bin"]
WEIGHT_SUFFIXES = (".safetensors", ".bin")
RECHECK_UNREACHABLE_SECONDS = 300.0


def hub_offline_by_setting() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network."""
    return any(os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


class HubProbe:
    """Remembers whether the hub answers, asking at most every few minutes when it did not."""

    def __init__(self, timeout: float = 3.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._reachable: bool | None = None
        self._checked_at = 0.0

    def reachable(self) -> bool:
        if hub_offline_by_setting():
            return False
        with self._lock:
            stale = self._reachable is False and time.monotonic() - self._checked_at > RECHECK_UNREACHABLE_SECONDS
            if self._reachable is None or stale:
                self._reachable = self._ask()
                self._checked_at = time.monotonic()
                if not self._reachable:
                    log.warning("The Hugging Face hub is unreachable; only local models can be loaded")
            return self._reachable

    def _ask(self) -> bool:
        import httpx
        from huggingface_hub import constants

        try:
            httpx.head(constants.ENDPOINT, timeout=self.timeout, follow_redirects=True)
        except httpx.HTTPError:
            return False
        return True


def local_model_dir(model_dir: Path, model_id: str) -> Path:
    """The directory `<model_dir>/<org>/<name>` for a model id, refusing ids that would escape it."""
    parts = model_id.split("/")
    if not model_id or any(part in {"", ".", ".."} for part in parts) or len(parts) > 2 or "\\" in model_id:
        raise ModelUnavailableError("error.model.invalid_id", model=model_id)
    return model_dir.joinpath(*parts)


def is_checkpoint_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir())


class ModelLocator:
    """Finds a model's files: `<model_dir>/<org>/<name>` first, then the hub (or its local cache)."""

    def __init__(self, model_dir: Path, probe: HubProbe | None = None) -> None:
        self.model_dir = model_dir
        self.probe = probe or HubProbe()
        # Hub downloads by (id, revision): later requests skip snapshot_download's round trip to the hub.
        self._downloaded: dict[tuple[str, str | None], Path] = {}

    def is_local(self, model_id: str) -> bool:
        """Whether the model can be loaded without network (local directory or the hub cache)."""
        try:
            if is_checkpoint_dir(local_model_dir(self.model_dir, model_id)):
                return True
        except (ModelUnavailableError, OSError):
            return False
        return self._from_hub_cache(model_id, None) is not None

    def locate(self, model_id: str, revision: str | None = None) -> Path:
        """A local directory holding the checkpoint, downloading it if needed and possible.

        Raises:
            ModelUnavailableError: with a message naming the model and how to provide it.
        """
        local = local_model_dir(self.model_dir, model_id)
        if local.is_dir() and is_checkpoint_dir(local):
            return local
        if not self.probe.reachable():
            cached = self._from_hub_cache(model_id, revision)
            if cached is not None:
                return cached
            why = Message("error.model.why.offline_setting" if hub_offline_by_setting()
                          else "error.model.why.unreachable")
            raise ModelUnavailableError("error.model.offline", model=model_id, why=why, path=str(local))
        known = self._downloaded.get((model_id, revision))
        if known is not None and is_checkpoint_dir(known):
            return known
        path = self._download(model_id, revision)
        self._downloaded[(model_id, revision)] = path
        return path

    def _from_hub_cache(self, model_id: str, revision: str | None) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            path = Path(snapshot_download(model_id, revision=revision, allow_patterns=CHECKPOINT_PATTERNS,
                                          local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        return path if is_checkpoint_dir(path) else None

    def _download(self, model_id: str, revision: str | None) -> Path:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        try:
            path = Path(snapshot_download(model_id, revision=revision, allow_patterns=CHECKPOINT_PATTERNS))
            if not is_checkpoint_dir(path):  # an old repository with pickled weights only
                path = Path(snapshot_download(model_id, revision=revision,
                                              allow_patterns=CHECKPOINT_PATTERNS + LEGACY_WEIGHT_PATTERNS))
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise ModelUnavailableError("error.model.not_found", model=model_id) from e
        except (HfHubHTTPError, OSError) as e:
            raise ModelUnavailableError("error.model.download_failed", model=model_id, error=type(e).__name__,
                                        path=str(local_model_dir(self.model_dir, model_id))) from e
        if not is_checkpoint_dir(path):
            raise ModelUnavailableError("error.model.no_weights", model=model_id)
        return path
