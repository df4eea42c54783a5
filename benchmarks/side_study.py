"""What the one-question scripts beside `benchmarks.run` share: their arguments, the app's settings on the benchmark
models, folders for generated inputs and logs (in the benchmark cache, never in benchmarks/results), and their
Markdown table in benchmarks/results/<tag>/."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO

RESULTS = REPO / "benchmarks" / "results"


def side_study_parser(doc: str, repeats: int) -> argparse.ArgumentParser:
    """The arguments every side study takes (`--repeats`, `--tag`); a study adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--tag", default="cpu2", help="results folder under benchmarks/results")
    return parser


def bench_settings(model_ids: Iterable[str] | None = None, **overrides: Any) -> Any:
    """The app's settings from the environment on the benchmark models, the tasks registered: what the side
    studies' in-process runtimes run with.

    Args:
        model_ids: the benchmark models to build if missing (default: all of them).
        overrides: Settings fields to replace (device, quantize, ...).
    """
    import mmdemo.tasks  # noqa: F401  (registers the tasks)
    from benchmarks.bench_models import BENCH_MODEL_IDS, DEFAULT_ROOT, ensure_bench_models
    from mmdemo.config import settings_from_env

    models = ensure_bench_models(DEFAULT_ROOT, ids=BENCH_MODEL_IDS if model_ids is None else model_ids)
    return replace(settings_from_env(), model_dir=models, **overrides)


def bench_folder(name: str | Path) -> Path:
    """A folder of the benchmark cache (generated images, app logs), made if missing."""
    from benchmarks.bench_models import DEFAULT_ROOT

    folder = DEFAULT_ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_path(tag: str, name: str) -> Path:
    """Where a launched app's log goes: the benchmark cache's logs/<tag>/<name>.log (the results keep tables)."""
    return bench_folder(Path("logs") / tag) / f"{name}.log"


def write_table(tag: str, name: str, title: str, rows: list[str]) -> Path:
    """A side study's Markdown table, as benchmarks/results/<tag>/<name>.md."""
    out = RESULTS / tag / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {title}\n\n" + "\n".join(rows) + "\n")
    print(f"wrote {out}")
    return out
