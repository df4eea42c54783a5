"""`python -m mmdemo.evaluate`: a test set through 1-4 models from the command line, the Evaluate tab's engine.

    python -m mmdemo.evaluate --task speech --models openai/whisper-tiny.en,openai/whisper-base DATA --out DIR

DATA is a ZIP or a folder (with an optional manifest.csv or manifest.jsonl). Writes results.csv, results.jsonl,
metrics.json and report.html into DIR and prints the metric table. Exit code 0 on success, 2 on bad input (with a
one-line message on stderr), 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from mmdemo.errors import VisitorError
from mmdemo.evaluate.manifest import TASKS

BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mmdemo.evaluate", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="the test set: a ZIP or a folder, optionally with a manifest")
    parser.add_argument("--task", required=True, choices=TASKS, help="which task's models to evaluate")
    parser.add_argument("--models", required=True, help="1-4 model ids, comma separated")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results and report.html")
    parser.add_argument("--labels", default="", help="zero-shot: candidate labels for rows without a labels cell")
    parser.add_argument("--limit", type=int, default=None, help="run only the first N items (a smoke check)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the exit code."""
    args = build_parser().parse_args(argv)
    import mmdemo.tasks  # noqa: F401  (registers the tasks)
    from mmdemo.backends import create_runtime
    from mmdemo.config import settings_from_env
    from mmdemo.evaluate.engine import EvalOptions, check_request, evaluate
    from mmdemo.evaluate.report import metrics_text

    try:
        settings = settings_from_env()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    runtime = create_runtime(settings)
    bar = None
    try:
        check_request(runtime, args.task, args.models)  # before the progress bar: a typo answers at once
        if not args.data.exists():
            print(f"error: {args.data} does not exist: give a ZIP file or a folder", file=sys.stderr)
            return BAD_INPUT
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=0, unit="item", file=sys.stderr)

        def progress(done: int, total: int, line: str) -> None:
            if bar is not None:
                bar.total = total
                bar.set_description(line.split(":")[0])
                bar.update(done - bar.n)

        run = evaluate(runtime, args.task, args.models, args.data, out_dir=args.out,
                       options=EvalOptions(labels=args.labels, limit=args.limit), on_progress=progress)
    except VisitorError as e:
        if bar is not None:
            bar.close()
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    if bar is not None:
        bar.close()
    print(metrics_text(run.metrics))
    errors = sum(summary["errors"] for summary in run.metrics["per_model"].values())
    if errors:
        print(f"{errors} row(s) failed: see the error column of {args.out / 'results.csv'}")
    print(f"Wrote {', '.join(str(path) for path in run.files.values())}")
    return 0
