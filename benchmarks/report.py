"""The benchmark's report: the machine it ran on, the targets (PASS / FAIL, a report, not a test), the Markdown
tables, the optional chart and the headline printed at the end."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.cases import Case
from benchmarks.harness import REPO, Measurement
from mmdemo.testing.wer import corpus_wer

TARGET_APP_OVER_BARE = 1.10
TARGET_WER_POINTS = 1.0
TARGET_THROUGHPUT_GAIN = 2.0
TARGET_STARTUP_OVER_IMPORT = 1.5


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu"] = platform.processor()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    for package in ("transformers", "gradio", "gradio_client", "faster_whisper", "ctranslate2"):
        try:
            info[package] = __import__(package).__version__
        except Exception:
            info[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        info["git"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        info["git"] = None
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def machine_tag(info: dict[str, Any], quick: bool) -> str:
    name = info["gpu"] or f"cpu{info['cpu_count']}"
    tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return tag + ("-quick" if quick else "")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target as a row: what, measured, limit, PASS / FAIL / n/a."""
    rows: list[dict[str, Any]] = []

    def add(target: str, config: str, value: float | None, limit: str, ok: bool | None, note: str = "") -> None:
        rows.append({"target": target, "config": config, "value": value, "limit": limit,
                     "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"), "note": note})

    for config, cfg in report["configs"].items():
        floor = cfg.get("client_floor_ms")
        for key, variants in report["cases"].items():
            app = cfg["app"].get(key, {}).get("warm_median_ms")
            bare = _bare_ms(variants)
            r = ratio(app, bare)
            http_ms = cfg["app"].get(key, {}).get("http_warm_median_ms")
            note = "; ".join(part for part in (
                f"over plain HTTP (a')/(c) {ratio(http_ms, bare)}" if http_ms and bare else "",
                f"gradio_client's floor {floor:.0f} ms" if r is not None and floor else "") if part)
            add(f"(a)/(c) warm {key}", config, r, f"<= {TARGET_APP_OVER_BARE}",
                None if r is None else r <= TARGET_APP_OVER_BARE, note)
        speech = [k for k in report["cases"] if k.startswith("speech/")]
        for model in sorted({k.split("/")[1] for k in speech}):
            keys = [k for k in speech if k.split("/")[1] == model]
            fw_label = next((v["variant"] for k in keys for v in report["cases"][k]
                             if v["variant"].startswith("faster-whisper") and v["variant"].endswith("greedy")), None)
            for key in keys:
                app = cfg["app"].get(key, {}).get("warm_median_ms")
                fw = _variant(report["cases"][key], fw_label)
                fw_ms = fw.get("warm_median_ms") if fw else None
                add(f"app speech <= {fw_label or 'faster-whisper'} {key}", config,
                    ratio(app, fw_ms), "app/fw <= 1", None if not (app and fw_ms) else app <= fw_ms)
            app_wer = cfg.get("wer", {}).get(model)
            fw_wer = report["wer"].get(model, {}).get(fw_label) if fw_label else None
            if app_wer is not None and fw_wer is not None:
                points = round((app_wer - fw_wer) * 100, 2)
                add(f"app WER - faster-whisper WER, {model}, all clips", config, points,
                    f"<= {TARGET_WER_POINTS} point", points <= TARGET_WER_POINTS,
                    f"app {app_wer:.1%}, {fw_label} {fw_wer:.1%}")
        if cfg.get("startup"):
            s = cfg["startup"]
            r = ratio(s["app_served_median_s"], s["bare_import_median_s"])
            add("start-up / bare import", config, r, f"<= {TARGET_STARTUP_OVER_IMPORT}",
                None if r is None else r <= TARGET_STARTUP_OVER_IMPORT)
    unbatched = [c for c, cfg in report["configs"].items() if cfg["env"].get("MMDEMO_MAX_BATCH") == "1"]
    batched = [c for c, cfg in report["configs"].items() if cfg["env"].get("MMDEMO_MAX_BATCH") != "1"]
    keys = {k for cfg in report["configs"].values() for k in cfg.get("concurrency", {})}
    for key in sorted(keys):
        if unbatched and batched:
            fast = report["configs"][batched[0]]["concurrency"].get(key, {}).get("concurrent_rps")
            slow = report["configs"][unbatched[0]]["concurrency"].get(key, {}).get("concurrent_rps")
            r = ratio(fast, slow)
            add(f"throughput gain {key}", f"{batched[0]} vs {unbatched[0]}", r, f">= {TARGET_THROUGHPUT_GAIN}x",
                None if r is None else r >= TARGET_THROUGHPUT_GAIN)
        else:
            add(f"throughput gain {key}", "-", None, f">= {TARGET_THROUGHPUT_GAIN}x", None,
                "needs a configuration with MMDEMO_MAX_BATCH=1: --compare MMDEMO_MAX_BATCH=1")
    return rows


def _variant(variants: list[dict[str, Any]], label: str | None) -> dict[str, Any] | None:
    return next((v for v in variants if v["variant"] == label), None)


def _bare_ms(variants: list[dict[str, Any]]) -> float | None:
    bare = next((v for v in variants if v["variant"].startswith("bare")), None)
    return bare.get("warm_median_ms") if bare else None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    configs = list(report["configs"])
    lines = [f"# mmdemo benchmark: {report['tag']}", "",
             f"{report['when']} · {report['machine'].get('gpu') or report['machine'].get('cpu')} · "
             f"{report['machine']['cpu_count']} CPUs · device {report['device']} · dtype {report['dtype']} · "
             f"git {report['machine'].get('git')} · warm repeats {report['repeats']}"
             + (" · **quick run**" if report["quick"] else ""), ""]
    for name in configs:
        lines.append(f"- config `{name}`: env {report['configs'][name]['env'] or '(none)'}")
    lines += ["", "## Warm medians (ms), first call in brackets", ""]
    peer_labels = sorted({v["variant"] for vs in report["cases"].values() for v in vs
                          if not v["variant"].startswith(("runtime", "bare"))})
    # "(a) predict": the app's own predict time (each result's provenance), to place a gap inside or outside it.
    header = ["case", *(f"(a) app {c}" for c in configs), *(f"(a) predict {c}" for c in configs),
              *(f"(a') HTTP {c}" for c in configs), "(b) runtime",
              "(c) bare", *peer_labels, *(f"(a)/(c) {c}" for c in configs), *(f"(a')/(c) {c}" for c in configs),
              "tokens"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, variants in report["cases"].items():
        cells = [key]
        for c in configs:
            app = report["configs"][c]["app"].get(key, {})
            cells.append(f"{_fmt(app.get('warm_median_ms'))} ({_fmt(app.get('first_ms'))})")
        for c in configs:
            cells.append(_fmt(report["configs"][c]["app"].get(key, {}).get("model_ms_median")))
        for c in configs:
            cells.append(_fmt(report["configs"][c]["app"].get(key, {}).get("http_warm_median_ms")))
        for prefix in ("runtime", "bare"):
            v = next((v for v in variants if v["variant"].startswith(prefix)), {})
            cells.append(f"{_fmt(v.get('warm_median_ms'))} ({_fmt(v.get('first_ms'))})" if v else "-")
        for label in peer_labels:
            v = _variant(variants, label) or {}
            cells.append(_fmt(v.get("warm_median_ms")) if v else "")
        for c in configs:
            app_ms = report["configs"][c]["app"].get(key, {}).get("warm_median_ms")
            cells.append(_fmt(ratio(app_ms, _bare_ms(variants))))
        for c in configs:
            http_ms = report["configs"][c]["app"].get(key, {}).get("http_warm_median_ms")
            cells.append(_fmt(ratio(http_ms, _bare_ms(variants))))
        bare = next((v for v in variants if v["variant"].startswith("bare")), {})
        cells.append(_fmt(bare.get("new_tokens")) + (f"×{bare['sequences']}" if bare.get("sequences") else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if report["wer"]:
        lines += ["", "## Speech: word error rate over all clips", "", "| model | variant | WER |", "|---|---|---|"]
        for model, by_variant in report["wer"].items():
            for variant, value in by_variant.items():
                lines.append(f"| {model} | {variant} | {value:.1%} |")
            for c in configs:
                value = report["configs"][c].get("wer", {}).get(model)
                if value is not None:
                    lines.append(f"| {model} | app {c} | {value:.1%} |")
    lines += ["", "## Model load on first use (s)", "", "| model | app " + " | app ".join(configs)
              + " | runtime |", "|---|" + "---|" * (len(configs) + 1)]
    for model in report["runtime_load_s"]:
        cells = [_fmt(report["configs"][c]["model_load_s"].get(model)) for c in configs]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {_fmt(report['runtime_load_s'][model])} |")
    lines += ["", "## App process", "", "| config | start-up to GET / 200 (s) | bare import (s) | peak RSS (MiB) "
              "| round trip without model work: gradio_client / HTTP (ms) |", "|---|---|---|---|---|"]
    for c in configs:
        cfg = report["configs"][c]
        s = cfg.get("startup") or {}
        lines.append(f"| {c} | {_fmt(s.get('app_served_median_s'))} | {_fmt(s.get('bare_import_median_s'))} | "
                     f"{_fmt(cfg.get('memory', {}).get('peak_rss_mib'))} | {_fmt(cfg.get('client_floor_ms'))} / "
                     f"{_fmt(cfg.get('http_floor_ms'))} |")
    if any(cfg.get("concurrency") for cfg in report["configs"].values()):
        lines += ["", "## Concurrency (requests/s)", "",
                  "| config | case | 1 client | N clients | N | median latency (ms) | max latency (ms) "
                  "| batch size median / max | errors |", "|---|---|---|---|---|---|---|---|---|"]
        for c in configs:
            for key, row in report["configs"][c].get("concurrency", {}).items():
                lines.append(f"| {c} | {key} | {_fmt(row['sequential_rps'])} | {_fmt(row['concurrent_rps'])} | "
                             f"{row['clients']} | {_fmt(row['concurrent_latency_median_ms'])} | "
                             f"{_fmt(row.get('concurrent_latency_max_ms'))} | {_fmt(row.get('batch_size_median'))} / "
                             f"{_fmt(row.get('batch_size_max'))} | {row['errors']} |")
    lines += ["", "## Targets", "", "| target | config | value | limit | status | note |", "|---|---|---|---|---|---|"]
    for row in report["targets"]:
        lines.append(f"| {row['target']} | {row['config']} | {_fmt(row['value'])} | {row['limit']} | "
                     f"**{row['status']}** | {row['note']} |")
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> bool:
    """Draw warm medians per case and variant, log scale, into the PNG `path` (only where `--chart` names one: the
    results folder keeps text); whether it was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (no matplotlib: skipping the chart; pip install -r benchmarks/requirements.txt)")
        return False
    keys = list(report["cases"])
    series: dict[str, list[float]] = {}
    for c, cfg in report["configs"].items():
        series[f"(a) app {c}"] = [cfg["app"].get(k, {}).get("warm_median_ms") or 0 for k in keys]
    labels = sorted({v["variant"] for vs in report["cases"].values() for v in vs})
    for label in labels:
        series[label] = [(_variant(report["cases"][k], label) or {}).get("warm_median_ms") or 0 for k in keys]
    height = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(11, 0.5 + 0.45 * len(keys) * max(1, len(series)) / 3))
    for i, (label, values) in enumerate(series.items()):
        ax.barh([k + i * height for k in range(len(keys))], values, height=height, label=label)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(keys))], keys)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("warm median, ms (log)")
    ax.set_title(f"mmdemo benchmark · {report['tag']}" + (" · quick run" if report["quick"] else ""))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def headline(report: dict[str, Any]) -> str:
    """The table printed at the end: app vs bare vs the best peer per case, then the targets."""
    lines = [f"{'case':<34} {'app ms':>9} {'runtime':>9} {'bare':>9} {'a/c':>6}  best peer"]
    first = next(iter(report["configs"]))
    for key, variants in report["cases"].items():
        app = report["configs"][first]["app"].get(key, {}).get("warm_median_ms")
        run = next((v.get("warm_median_ms") for v in variants if v["variant"] == "runtime"), None)
        bare = _bare_ms(variants)
        peers = [(v.get("warm_median_ms"), v["variant"]) for v in variants
                 if not v["variant"].startswith(("runtime", "bare")) and v.get("warm_median_ms")]
        best = min(peers) if peers else None
        lines.append(f"{key:<34} {_fmt(app):>9} {_fmt(run):>9} {_fmt(bare):>9} {_fmt(ratio(app, bare)):>6}  "
                     + (f"{_fmt(best[0])} ({best[1]})" if best else "-"))
    lines.append("")
    for row in report["targets"]:
        lines.append(f"[{row['status']:>4}] {row['target']} ({row['config']}): {_fmt(row['value'])} "
                     f"(limit {row['limit']}) {row['note']}")
    return "\n".join(lines)


def app_wer(cases: list[Case], measured: dict[str, Measurement]) -> dict[str, float]:
    """Corpus WER of the app's transcripts, per speech model."""
    found: dict[str, list[tuple[str, str]]] = {}
    for case in cases:
        m = measured.get(case.key)
        if case.reference is not None and m and isinstance(m.output, str):
            found.setdefault(case.model.split("/")[-1], []).append((case.reference, m.output))
    return {model: round(corpus_wer(pairs), 4) for model, pairs in found.items()}


def variant_wer(cases: list[Case], per_case: dict[str, list[Measurement]]) -> dict[str, dict[str, float]]:
    """Corpus WER per speech model and in-process variant."""
    found: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for case in cases:
        if case.reference is None:
            continue
        for m in per_case[case.key]:
            if isinstance(m.output, str):
                found.setdefault(case.model.split("/")[-1], {}).setdefault(m.variant, []).append(
                    (case.reference, m.output))
    return {model: {variant: round(corpus_wer(pairs), 4) for variant, pairs in by.items()}
            for model, by in found.items()}
