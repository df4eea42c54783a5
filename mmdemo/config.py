"""Settings: one frozen dataclass built from CLI flags > MMDEMO_* environment > auto-detection."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def mmdemo_home() -> Path:
    """mmdemo's folder under HF_HOME (persistent on a Space with /data, where HF_HOME points there)."""
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "mmdemo"


def default_model_dir() -> Path:
    """Where local model directories live: MMDEMO_MODEL_DIR, else under HF_HOME (persistent on Spaces)."""
    explicit = os.environ.get("MMDEMO_MODEL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return mmdemo_home() / "models"


def default_flag_dir() -> Path:
    """Where flags are stored: MMDEMO_FLAG_DIR, else under HF_HOME."""
    explicit = os.environ.get("MMDEMO_FLAG_DIR")
    return Path(explicit).expanduser() if explicit else mmdemo_home() / "flags"


FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
FLAG_CHOICES = "1/0, true/false, yes/no or on/off"
SWITCH_MODES = ("auto", "on", "off")  # a setting that is on or off, or decided from where the app runs


def parse_flag(value: str) -> bool:
    """A yes-or-no setting: 1/0, true/false, yes/no or on/off, in any case."""
    word = value.strip().lower()
    if word not in FLAG_WORDS:
        raise ValueError(f"use {FLAG_CHOICES}")
    return FLAG_WORDS[word]


def parse_switch(value: str) -> str:
    """One of SWITCH_MODES, from auto or any word `parse_flag` reads."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return "on" if parse_flag(value) else "off"
    except ValueError:
        raise ValueError(f"use auto, {FLAG_CHOICES}") from None


def env_value(name: str, convert: Callable[[str], T], environ: Mapping[str, str] | None = None) -> T | None:
    """`convert` applied to environment variable `name`, None when it is unset or blank; a value `convert` refuses
    raises a ValueError that names the variable, the value and (from `convert`) the valid ones."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return convert(raw)
    except ValueError as e:
        raise ValueError(f"{name}={raw!r} is not valid: {e}") from e


def env_flag(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """A yes-or-no environment variable (see `parse_flag`); `default` when it is unset or blank."""
    value = env_value(name, parse_flag, environ)
    return default if value is None else value


def on_space(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the app runs on a Hugging Face Space, which sets SPACE_ID."""
    return bool((os.environ if environ is None else environ).get("SPACE_ID", "").strip())


def parse_bytes(text: str) -> int:
    """Parse '8GB', '512MiB', '1.5G' or a plain number of bytes."""
    cleaned = text.strip().upper().replace(" ", "")
    units = {
        "TIB": 1024**4, "GIB": 1024**3, "MIB": 1024**2, "KIB": 1024,
        "TB": 1000**4, "GB": 1000**3, "MB": 1000**2, "KB": 1000,
        "T": 1024**4, "G": 1024**3, "M": 1024**2, "K": 1024, "B": 1,
    }
    suffix = next((unit for unit in units if cleaned.endswith(unit)), "")
    number, factor = (cleaned[: -len(suffix)], units[suffix]) if suffix else (cleaned, 1)
    try:
        value = float(number)
    except ValueError as e:
        raise ValueError(f"Cannot read {text!r} as a size: use bytes or a unit such as 8GB or 512MiB") from e
    if value <= 0:
        raise ValueError(f"Size must be positive, got {text!r}")
    return int(value * factor)


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured, each field with its env var and CLI flag."""

    device: str = "auto"  # MMDEMO_DEVICE / --device: auto, cuda, cuda:1, mps or cpu
    dtype: str = "auto"  # MMDEMO_DTYPE / --dtype: auto, float32, float16 or bfloat16
    memory_budget: int | None = None  # MMDEMO_MEMORY_BUDGET / --memory-budget: bytes; None derives it from the device
    model_dir: Path = field(default_factory=default_model_dir)  # MMDEMO_MODEL_DIR / --model-dir
    preload: tuple[str, ...] = ()  # MMDEMO_PRELOAD / --preload: task names whose default models load at start
    allow_custom_models: bool = False  # MMDEMO_ALLOW_CUSTOM_MODELS: free-text model ids beyond the curated lists
    # MMDEMO_MODEL_ADMIN: whether the Models panel (and its /preload, /unload endpoints) may load and unload models:
    # on, off, or auto: on, but off on a Space, where any visitor could otherwise churn the shared cache
    model_admin: str = "auto"
    max_audio_seconds: float = 600.0  # MMDEMO_MAX_AUDIO_SECONDS: longer recordings are refused
    max_image_pixels: int = 40_000_000  # MMDEMO_MAX_IMAGE_PIXELS: larger images are refused before decoding
    max_text_chars: int = 2_000  # MMDEMO_MAX_TEXT_CHARS: longest question, prefix or label list
    max_labels: int = 50  # MMDEMO_MAX_LABELS: most candidate labels for zero-shot classification
    max_upload_bytes: int = 100_000_000  # MMDEMO_MAX_UPLOAD_BYTES: larger uploads are refused by the server
    hub_timeout: float = 3.0  # MMDEMO_HUB_TIMEOUT: seconds to wait when probing whether the hub is reachable
    host: str = "127.0.0.1"  # MMDEMO_HOST / --host (0.0.0.0 on Spaces)
    port: int = 7860  # MMDEMO_PORT / --port
    concurrency: int = 2  # MMDEMO_CONCURRENCY: requests a tab runs at the same time
    max_queue: int = 64  # MMDEMO_MAX_QUEUE: waiting requests before visitors are told the app is busy
    quantize: str = "auto"  # MMDEMO_QUANTIZE: CPU format: auto (measured per model), int8, fp16 (weights), bf16, none
    batch_window_ms: float = 10.0  # MMDEMO_BATCH_WINDOW_MS: how long a request waits for others to batch with
    max_batch: int = 8  # MMDEMO_MAX_BATCH: most requests in one batch; 1 turns batching off
    backend: str = "local"  # MMDEMO_BACKEND: local (models in this process) or ray (Ray Serve deployments)
    ray_address: str = "auto"  # MMDEMO_RAY_ADDRESS: the Ray cluster the ray backend attaches to
    # MMDEMO_FLAGGING: whether visitors can flag results (👍/👎 and a note, stored with their inputs) and review them:
    # on, off, or auto: on, but off on a Space, where flags would keep other visitors' uploads
    flagging: str = "auto"
    flag_dir: Path = field(default_factory=default_flag_dir)  # MMDEMO_FLAG_DIR: the flag store
    flag_max_bytes: int = 1_000_000_000  # MMDEMO_FLAG_MAX_BYTES: new flags are refused once the store is this big
    # MMDEMO_MAX_EVAL_ITEMS: items (rows) one evaluation run takes; None: 500, or 50 on a Space
    max_eval_items: int | None = None
    live_max_seconds: float = 600.0  # MMDEMO_LIVE_MAX_SECONDS: how long one live transcription stream may run
    max_live_streams: int = 4  # MMDEMO_MAX_LIVE_STREAMS: live streams at once; more are refused with a message

    def __post_init__(self) -> None:
        # A zero or negative limit would refuse every request (or none): say which variable is wrong instead.
        for name in LIMITS:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}: fix {_ENV[name][0]}")
        for name in ("model_admin", "flagging"):
            if getattr(self, name) not in SWITCH_MODES:
                raise ValueError(f"{name} must be {', '.join(SWITCH_MODES)}, got {getattr(self, name)!r}: "
                                 f"fix {_ENV[name][0]}")
        if self.max_eval_items is not None and self.max_eval_items <= 0:
            raise ValueError(f"max_eval_items must be positive, got {self.max_eval_items!r}: fix MMDEMO_MAX_EVAL_ITEMS")


LIMITS = ("max_audio_seconds", "max_image_pixels", "max_text_chars", "max_labels", "max_upload_bytes",
          "concurrency", "max_queue", "flag_max_bytes", "live_max_seconds",
          "max_live_streams")  # what a visitor can ask of the app, each a Settings field above


_ENV: dict[str, tuple[str, object]] = {
    "device": ("MMDEMO_DEVICE", str),
    "dtype": ("MMDEMO_DTYPE", str),
    "memory_budget": ("MMDEMO_MEMORY_BUDGET", parse_bytes),
    "model_dir": ("MMDEMO_MODEL_DIR", lambda v: Path(v).expanduser()),
    "preload": ("MMDEMO_PRELOAD", lambda v: tuple(x.strip() for x in v.split(",") if x.strip())),
    "allow_custom_models": ("MMDEMO_ALLOW_CUSTOM_MODELS", parse_flag),
    "model_admin": ("MMDEMO_MODEL_ADMIN", parse_switch),
    "max_audio_seconds": ("MMDEMO_MAX_AUDIO_SECONDS", float),
    "max_image_pixels": ("MMDEMO_MAX_IMAGE_PIXELS", int),
    "max_text_chars": ("MMDEMO_MAX_TEXT_CHARS", int),
    "max_labels": ("MMDEMO_MAX_LABELS", int),
    "max_upload_bytes": ("MMDEMO_MAX_UPLOAD_BYTES", parse_bytes),
    "hub_timeout": ("MMDEMO_HUB_TIMEOUT", float),
    "host": ("MMDEMO_HOST", str),
    "port": ("MMDEMO_PORT", int),
    "concurrency": ("MMDEMO_CONCURRENCY", int),
    "max_queue": ("MMDEMO_MAX_QUEUE", int),
    "quantize": ("MMDEMO_QUANTIZE", str),
    "batch_window_ms": ("MMDEMO_BATCH_WINDOW_MS", float),
    "max_batch": ("MMDEMO_MAX_BATCH", int),
    "backend": ("MMDEMO_BACKEND", lambda v: v.strip().lower()),
    "ray_address": ("MMDEMO_RAY_ADDRESS", str),
    "flagging": ("MMDEMO_FLAGGING", parse_switch),
    "flag_dir": ("MMDEMO_FLAG_DIR", lambda v: Path(v).expanduser()),
    "flag_max_bytes": ("MMDEMO_FLAG_MAX_BYTES", parse_bytes),
    "max_eval_items": ("MMDEMO_MAX_EVAL_ITEMS", int),
    "live_max_seconds": ("MMDEMO_LIVE_MAX_SECONDS", float),
    "max_live_streams": ("MMDEMO_MAX_LIVE_STREAMS", int),
}


def env_var(field_name: str) -> str:
    """The environment variable that sets a Settings field."""
    return _ENV[field_name][0]


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from MMDEMO_* variables, defaults elsewhere."""
    values: dict[str, object] = {}
    for name, (var, convert) in _ENV.items():
        value = env_value(var, convert, environ)  # type: ignore[arg-type]
        if value is not None:
            values[name] = value
    return Settings(**values)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py",
                                     description="mmdemo: multimodal transformers demos in one Gradio app")
    parser.add_argument("--device", help="auto, cuda, cuda:N, mps or cpu (env MMDEMO_DEVICE)")
    parser.add_argument("--dtype", help="auto, float32, float16 or bfloat16 (env MMDEMO_DTYPE)")
    parser.add_argument("--memory-budget", type=parse_bytes,
                        help="model cache budget, e.g. 6GB (env MMDEMO_MEMORY_BUDGET)")
    parser.add_argument("--model-dir", type=Path, help="local model directories <org>/<name> (env MMDEMO_MODEL_DIR)")
    parser.add_argument(
        "--preload", nargs="*", metavar="TASK",
        help="load these tasks' default models at start; no names means all tasks (env MMDEMO_PRELOAD)",
    )
    parser.add_argument("--host", help="interface to serve on (env MMDEMO_HOST)")
    parser.add_argument("--port", type=int, help="port to serve on (env MMDEMO_PORT)")
    return parser


def settings_from_args(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from CLI flags over the environment."""
    args = build_arg_parser().parse_args(argv)
    settings = settings_from_env(environ)
    overrides = {
        name: getattr(args, name)
        for name in ("device", "dtype", "memory_budget", "model_dir", "host", "port")
        if getattr(args, name) is not None
    }
    if args.preload is not None:
        overrides["preload"] = tuple(args.preload) or ("all",)
    return replace(settings, **overrides)


def model_admin_enabled(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether visitors may preload and unload models: `settings.model_admin`, with auto off on a Space."""
    if settings.model_admin == "auto":
        return not on_space(environ)
    return settings.model_admin == "on"


def flagging_enabled(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether visitors may flag results and open the Review tab: `settings.flagging`, with auto off on a Space."""
    if settings.flagging == "auto":
        return not on_space(environ)
    return settings.flagging == "on"


def eval_item_limit(settings: Settings, environ: Mapping[str, str] | None = None) -> int:
    """The most items one evaluation run takes: `settings.max_eval_items`, else 500, or 50 on a Space."""
    if settings.max_eval_items is not None:
        return settings.max_eval_items
    return 50 if on_space(environ) else 500
