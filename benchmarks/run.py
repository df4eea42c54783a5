"""The mmdemo benchmark: one command, every task, the same inputs, in one run.

    python -m benchmarks.run            # full run (the lead's, on a quiet machine)
    python -m benchmarks.run --quick    # smoke run: 1 warm repeat, 2 clips, short captions

Sections (see benchmarks/README.md for what each column means):
  startup      `python app.py` until GET / answers 200, vs `python -c "import gradio, torch, transformers"`
  app    (a)   the launched app end to end through gradio_client (upload, queue, predict, result)
  runtime(b)   the task's own path in process: Runtime.run(task, raw)
  bare   (c)   the model called directly with transformers, same settings as the task: the floor
  peers  (d)   transformers.pipeline and faster-whisper, what a user would pick instead
  concurrency  N clients at once against the app, vs one client, for zero-shot and captioning
plus first-use model load times, peak RSS of the app process, WER for every speech variant, and the targets
(PASS/FAIL, a report, not a test). `--compare K=V[,K=V]` runs the app sections again under a second
configuration (e.g. MMDEMO_MAX_BATCH=1, MMDEMO_QUANTIZE=none).

Writes benchmarks/results/<tag>/results.md (the tables) and results.json (every sample); the apps' own logs go to
the benchmark cache (<bench cache>/logs/<tag>/), a chart only where `--chart PNG` names one. The code: `cases` (the
inputs), `harness` (timing, the app process), `app_sections` (a), `in_process` (b, c, d), `report` (tables, targets).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.app_sections import bench_app, bench_concurrency, bench_startup
from benchmarks.cases import QUICK_CLIPS, SPEECH_MODELS, Case, build_cases
from benchmarks.harness import REPO, AppProcess, Measurement, app_env
from benchmarks.in_process import InProcess
from benchmarks.report import (
    app_wer,
    chart,
    evaluate_targets,
    headline,
    machine_info,
    machine_tag,
    markdown,
    variant_wer,
)
from mmdemo.testing.wer import wer


def parse_env(items: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs from repeated, comma-separated `--env` / `--compare` values."""
    env = {}
    for item in items:
        for pair in item.split(","):
            if "=" not in pair:
                raise SystemExit(f"--env/--compare takes KEY=VALUE pairs, got {pair!r}")
            key, value = pair.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 warm repeat, 2 clips, 5-token captions, "
                   "8 concurrent requests, 1 start-up; results go to <tag>-quick")
    p.add_argument("--repeats", type=int, help="warm repeats per variant (default 5; quick 1)")
    p.add_argument("--startup-repeats", type=int, help="start-up measurements (default 3; quick 1)")
    p.add_argument("--tasks", nargs="+", help="only these tasks or case keys (vqa, captioning, zero_shot, speech, "
                   "sentiment, vqa/blip, ...)")
    p.add_argument("--speech-models", nargs="+", default=list(SPEECH_MODELS))
    p.add_argument("--clips", nargs="+", help="speech clips by file name (default: every English clip; quick: "
                   f"{' '.join(QUICK_CLIPS)})")
    p.add_argument("--caption-tokens", type=int, help="captioning max_new_tokens, forced (default 20; quick 5)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--concurrent-requests", type=int, help="requests in the concurrent burst (default 32; quick 8)")
    p.add_argument("--sequential-requests", type=int, help="requests one client sends in a row (default 8; quick 2)")
    p.add_argument("--concurrency-tasks", nargs="+", default=["zero_shot/clip", "captioning/blip"])
    p.add_argument("--env", action="append", default=[], metavar="K=V[,K=V]",
                   help="environment for the app and the in-process runtime (repeatable)")
    p.add_argument("--compare", metavar="K=V[,K=V]", help="a second app configuration: start-up, (a) and "
                   "concurrency run again under these env overrides, e.g. MMDEMO_MAX_BATCH=1")
    p.add_argument("--skip", nargs="+", default=[], choices=["startup", "app", "inprocess", "peers", "concurrency"])
    p.add_argument("--fw-compute-type", default="int8", help="faster-whisper compute type (default int8)")
    p.add_argument("--tag", help="results folder name (default: the device, e.g. cpu2 or nvidia-h100-80gb-hbm3)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--bench-cache", type=Path, help="where the benchmark models are built and the apps' logs go "
                   "(default ~/.cache/mmdemo-bench, or MMDEMO_BENCH_CACHE)")
    p.add_argument("--chart", type=Path, metavar="PNG", help="also draw the warm medians (log scale) into this PNG "
                   "(needs matplotlib); the results folder keeps only results.md and results.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats if args.repeats is not None else (1 if quick else 5)
    args.startup_repeats = args.startup_repeats or (1 if quick else 3)
    args.caption_tokens = args.caption_tokens or (5 if quick else 20)
    args.concurrent_requests = args.concurrent_requests or (args.clients if quick else 4 * args.clients)
    args.sequential_requests = args.sequential_requests if args.sequential_requests is not None else (2 if quick else 8)
    if quick and not args.clips:
        args.clips = list(QUICK_CLIPS)
        args.speech_models = args.speech_models[:1]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base_env = parse_env(args.env)
    os.environ.update(base_env)  # the in-process runtime reads MMDEMO_* too

    from benchmarks.bench_models import DEFAULT_ROOT, ensure_bench_models

    cases = build_cases(args.tasks, speech_models=args.speech_models, clips=args.clips,
                        caption_tokens=args.caption_tokens)
    bench_cache = args.bench_cache or DEFAULT_ROOT
    model_dir = ensure_bench_models(bench_cache, ids={case.model for case in cases})
    info = machine_info()
    tag = args.tag or machine_tag(info, quick)
    out_dir = args.out / tag
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = bench_cache / "logs" / tag  # the apps' own logs: beside the models, not among the results
    print(f"mmdemo benchmark -> {out_dir}: {len(cases)} cases, {args.repeats} warm repeats"
          + (" (quick)" if quick else ""), flush=True)

    configs = {"default": base_env}
    if args.compare:
        compared = parse_env([args.compare])
        configs[",".join(f"{k}={v}" for k, v in compared.items())] = {**base_env, **compared}
    report: dict[str, Any] = {"tag": tag, "quick": quick, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "machine": info, "repeats": args.repeats, "model_dir": str(model_dir),
                              "configs": {}, "cases": {}, "wer": {}, "runtime_load_s": {}}
    for name, overrides in configs.items():
        print(f"[app: {name}]", flush=True)
        env = app_env(dict(os.environ), model_dir, overrides)
        report["configs"][name] = {"env": overrides,
                                   **app_sections(args, cases, env, log_dir / f"app-{_slug(name)}.log")}
    per_case: dict[str, list[Measurement]] = {case.key: [] for case in cases}
    report["device"], report["dtype"] = "?", "?"
    if "inprocess" not in args.skip:
        print("[in process]", flush=True)
        bench = InProcess(model_dir, args.repeats, args.fw_compute_type)
        report["device"], report["dtype"] = bench.device, str(bench.dtype).removeprefix("torch.")
        in_process_sections(args, cases, bench, per_case, report["runtime_load_s"])
    for case in cases:
        report["cases"][case.key] = [_with_wer(case, m.to_json()) for m in per_case[case.key]]
        for cfg in report["configs"].values():
            if case.key in cfg["app"]:
                _with_wer(case, cfg["app"][case.key])
    report["wer"] = variant_wer(cases, per_case)
    report["targets"] = evaluate_targets(report)

    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "results.md").write_text(markdown(report))
    charted = bool(args.chart) and chart(report, args.chart)
    print()
    print(headline(report))
    print(f"\nwrote {out_dir / 'results.json'}, results.md" + (f", {args.chart}" if charted else "")
          + f"; the apps' logs are in {log_dir}")
    return 0


def app_sections(args: argparse.Namespace, cases: list[Case], env: dict[str, str], log: Path) -> dict[str, Any]:
    """One app configuration: start-up, (a) and (a'), memory, concurrency, as `args` asks."""
    cfg: dict[str, Any] = {"app": {}, "model_load_s": {}}
    if "startup" not in args.skip:
        cfg["startup"] = bench_startup(env, args.startup_repeats, log)
    if {"app", "concurrency"} <= set(args.skip):
        return cfg
    app = AppProcess(env, log)
    try:
        cfg["served_s"] = round(app.start(), 2)
        if "app" not in args.skip:
            measured, extra = bench_app(cases, app, args.repeats)
            cfg["app"] = {k: m.to_json() for k, m in measured.items()}
            cfg["model_load_s"] = extra["model_load_s"]
            cfg["client_floor_ms"] = extra["client_floor_ms"]
            cfg["http_floor_ms"] = extra["http_floor_ms"]
            cfg["memory"] = app.memory()  # all tabs used
            cfg["wer"] = app_wer(cases, measured)
        if "concurrency" not in args.skip:
            chosen = [c for c in cases if c.key in args.concurrency_tasks]
            cfg["concurrency"] = bench_concurrency(app, chosen, args.clients, args.concurrent_requests,
                                                   args.sequential_requests)
        cfg.setdefault("memory", app.memory())
    finally:
        app.stop()
    return cfg


def in_process_sections(args: argparse.Namespace, cases: list[Case], bench: InProcess,
                        per_case: dict[str, list[Measurement]], load_s: dict[str, float | None]) -> None:
    """(b), (c) and (d), model by model: the runtime's copy is released before the bare call loads its own."""
    for model in dict.fromkeys(c.model for c in cases):
        group = [c for c in cases if c.model == model]
        for case in group:
            print(f"  runtime {case.key}", flush=True)
            m = bench.runtime_run(case)
            per_case[case.key].append(m)
            if case.task == "zero_shot":
                per_case[case.key].append(bench.runtime_new_labels(case))
            load_s.setdefault(model, m.extra.get("model_load_s"))
        quantized = bench.runtime_quantization(group[0]) if bench.device == "cpu" else None
        bench.release()
        for case in group:
            print(f"  bare {case.key}", flush=True)
            per_case[case.key].append(bench.bare(case, quantized))
            if "peers" not in args.skip:
                print(f"  peers {case.key}", flush=True)
                per_case[case.key].extend(bench.peers(case))


def _with_wer(case: Case, row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its transcript's word error rate added, for a speech case."""
    if case.reference is not None and isinstance(row.get("output"), str):
        row["wer"] = round(wer(case.reference, row["output"]), 4)
    return row


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "default"


if __name__ == "__main__":
    sys.exit(main())
