"""A run's files: results.csv and results.jsonl (one row per item × model), metrics.json, and report.html.

report.html is one self-contained file to mail to someone: inline CSS, a few lines of inline script to sort its
table, confusion matrices as inline SVG, image thumbnails as data: URIs, and a Content-Security-Policy that lets
the page fetch nothing at all. Text cells of the CSV and JSONL that a spreadsheet would run as a formula (starting
with = + - @, a tab or a carriage return) are prefixed with a quote.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from mmdemo.evaluate import metrics

if TYPE_CHECKING:
    from mmdemo.evaluate.engine import EvalRun

THUMBNAIL_SIDE = 96  # px, the longer side of a report's thumbnail
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Columns of the results files after the common ones, per task (metrics named as metrics.py names them).
TASK_COLUMNS = {
    "speech": ("wer", "cer", "substitutions", "deletions", "insertions", "words", "alignment"),
    "vqa": ("question", "vqa_accuracy", "exact_match"),
    "zero_shot": ("top1", "top5", "ranking"),
    "sentiment": ("text", "accuracy"),
    "captioning": ("clip_score", "bleu"),
}
COMMON_COLUMNS = ("item", "file", "model", "reference", "prediction", "error")
TAIL_COLUMNS = ("ms", "batch_size")
# How each metric is shown: a label and a format (percentages for rates).
SHOWN = {
    "wer": ("WER", "{:.1%}"), "cer": ("CER", "{:.1%}"), "vqa_accuracy": ("VQA accuracy", "{:.1%}"),
    "exact_match": ("exact match", "{:.1%}"), "top1": ("top-1", "{:.1%}"), "top5": ("top-5", "{:.1%}"),
    "accuracy": ("accuracy", "{:.1%}"), "macro_f1": ("macro-F1", "{:.3f}"), "clip_score": ("CLIPScore", "{:.3f}"),
    "bleu": ("BLEU-4", "{:.1f}"), "items": ("items", "{}"), "errors": ("errors", "{}"),
}
SUMMARY_ORDER = ("wer", "cer", "vqa_accuracy", "exact_match", "top1", "top5", "accuracy", "macro_f1", "clip_score",
                 "bleu", "items", "errors")


def neutralise(value: Any) -> Any:
    """A text cell made inert for spreadsheets (a leading quote before = + - @ tab CR); other values as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def columns(task: str) -> tuple[str, ...]:
    return COMMON_COLUMNS + TASK_COLUMNS[task] + TAIL_COLUMNS


def flat_row(task: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's cells for the CSV and the tab's table (alignment and ranking as text)."""
    cells = {name: row.get(name) for name in columns(task)}
    if row.get("alignment") is not None:
        cells["alignment"] = metrics.alignment_text(row["alignment"])
    if row.get("ranking") is not None:
        cells["ranking"] = " | ".join(row["ranking"][:5])
    return cells


def write_all(run: EvalRun, out_dir: Path) -> dict[str, Path]:
    """Write the four files into `out_dir`; their paths by name."""
    files = {name: out_dir / name for name in ("results.csv", "results.jsonl", "metrics.json", "report.html")}
    with open(files["results.csv"], "w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=columns(run.task))
        writer.writeheader()
        for row in run.rows:
            writer.writerow({key: neutralise(value) for key, value in flat_row(run.task, row).items()})
    with open(files["results.jsonl"], "w", encoding="utf-8") as sink:
        for row in run.rows:
            public = {key: value for key, value in row.items() if key != "media"}
            sink.write(json.dumps(_neutralise_deep(public), ensure_ascii=False) + "\n")
    files["metrics.json"].write_text(metrics_json(run.metrics), encoding="utf-8")
    files["report.html"].write_text(report_html(run), encoding="utf-8")
    return files


def metrics_json(data: Mapping[str, Any]) -> str:
    """metrics.json's text: sorted keys, no timings, so equal runs write equal files."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


def _neutralise_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _neutralise_deep(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_neutralise_deep(item) for item in value]
    return neutralise(value)


def format_metric(name: str, value: Any) -> str:
    if value is None:
        return ""
    label_format = SHOWN.get(name)
    return label_format[1].format(value) if label_format else str(value)


def summary_table(per_model: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-model metrics: one row per model, the metrics any model has as columns."""
    present = [name for name in SUMMARY_ORDER if any(name in summary for summary in per_model.values())]
    header = ["model"] + [SHOWN[name][0] for name in present]
    rows = [[model] + [format_metric(name, summary.get(name)) for name in present]
            for model, summary in per_model.items()]
    return header, rows


def metrics_text(data: Mapping[str, Any]) -> str:
    """The per-model metrics and model differences as an aligned plain-text table (the CLI prints it)."""
    header, rows = summary_table(data["per_model"])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in [header, *rows]]
    lines += [difference_line(entry) for entry in data.get("comparison", {}).get("differences", [])]
    return "\n".join(lines)


def difference_line(entry: Mapping[str, Any]) -> str:
    """'whisper-base − whisper-tiny.en on WER: -3.1 points (95 % CI -6.0 to -0.4; lower is better), 9 items'."""
    label = SHOWN[entry["metric"]][0]
    if "difference" not in entry:
        return f"{entry['model']} vs {entry['baseline']} on {label}: no item scored by both"
    scale, unit = (100, " points") if entry["metric"] not in ("clip_score", "bleu") else (1, "")
    better = "higher" if entry["higher_is_better"] else "lower"
    return (f"{entry['model']} − {entry['baseline']} on {label}: {entry['difference'] * scale:+.2f}{unit} "
            f"(95 % CI {entry['low'] * scale:+.2f} to {entry['high'] * scale:+.2f}; {better} is better), "
            f"{entry['items']} items")


# ---------------------------------------------------------------- report.html


def confusion_svg(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> str:
    """A confusion matrix as an inline SVG heat map (rows: expected, columns: predicted)."""
    cell, left, top = 34, 150, 120
    n = len(labels)
    peak = max((value for line in matrix for value in line), default=0) or 1
    width, height = left + cell * n + 10, top + cell * n + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
             f'<text x="4" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="{left}" y="30">predicted →</text><text x="4" y="{top - 6}">expected ↓</text>']
    for j, label in enumerate(labels):
        x = left + cell * j + cell / 2
        parts.append(f'<text transform="translate({x},{top - 6}) rotate(-60)">{html.escape(label[:18])}</text>')
    for i, label in enumerate(labels):
        y = top + cell * i
        parts.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">{html.escape(label[:22])}</text>')
        for j in range(n):
            value = matrix[i][j]
            shade = int(255 - 200 * value / peak)
            colour = f"rgb({shade},{shade},255)" if i != j else f"rgb({shade},255,{shade})"
            x = left + cell * j
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" stroke="#fff"/>'
                         f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def thumbnail_uri(path: Path) -> str | None:
    """A small JPEG of the image as a data: URI, or None where it cannot be read."""
    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=80)
    except Exception:  # an unreadable image is already that row's error; the report shows its name instead
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def alignment_html(alignment: Sequence[Sequence[str]]) -> str:
    """Substitutions, deletions and insertions marked in colour."""
    out = []
    for op, ref, hyp in alignment:
        ref, hyp = html.escape(ref), html.escape(hyp)
        if op == "equal":
            out.append(ref)
        elif op == "substitute":
            out.append(f'<span class="sub" title="substitution"><s>{ref}</s> {hyp}</span>')
        elif op == "delete":
            out.append(f'<span class="del" title="deletion"><s>{ref}</s></span>')
        else:
            out.append(f'<span class="ins" title="insertion">{hyp}</span>')
    return " ".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1f2937; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 28px; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #d1d5db; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef2ff; cursor: pointer; user-select: none; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.err { color: #b91c1c; } .sub { background: #fef3c7; } .del { background: #fee2e2; } .ins { background: #dcfce7; }
.banner { background: #fef3c7; padding: 8px; border-radius: 4px; }
img.thumb { max-width: 96px; max-height: 96px; }
"""
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
  const dir = th.dataset.dir === "asc" ? -1 : 1; th.dataset.dir = dir === 1 ? "asc" : "desc";
  const key = r => { const c = r.cells[col]; const v = c.dataset.v ?? c.innerText; const n = parseFloat(v);
                     return isNaN(n) ? v : n; };
  rows.sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * dir; });
  rows.forEach(r => body.appendChild(r));
}));
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, sortable: bool = False) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(run: EvalRun) -> str:
    """The whole report as one HTML document."""
    data = run.metrics
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
             f"<title>mmdemo evaluation: {esc(run.task)}</title><style>{STYLE}</style></head><body>",
             f"<h1>Evaluation: {esc(run.task)}, {len(run.items)} items × {len(run.models)} model(s)</h1>",
             f"<p>Made by mmdemo on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {run.seconds:.1f} s. "
             f"Models: {', '.join(esc(m) for m in run.models)}.</p>"]
    if run.cancelled:
        parts.append("<p class='banner'>This run was cancelled: the results below are partial.</p>")
    parts.append("<h2>Metrics per model</h2>")
    header, rows = summary_table(data["per_model"])
    parts.append(_table(header, rows))
    comparison = data.get("comparison") or {}
    if comparison:
        parts.append("<h2>Between models</h2><ul>")
        parts += [f"<li>{esc(difference_line(entry))} (paired bootstrap, {metrics.BOOTSTRAP_RESAMPLES} resamples)"
                  f"</li>" for entry in comparison["differences"]]
        names = {item.index: item.name for item in run.items}
        for key, label in (("disagreements", "Items where the models disagree"),
                           ("all_wrong", "Items every model gets wrong")):
            listed = ", ".join(f"#{index} {names.get(index, '')}" for index in comparison[key][:50])
            parts.append(f"<li>{label}: {len(comparison[key])}{': ' + esc(listed) if listed else ''}</li>")
        parts.append("</ul>")
    charts = [confusion_svg(summary["confusion"]["labels"], summary["confusion"]["matrix"], model)
              for model, summary in data["per_model"].items() if summary.get("confusion")]
    if charts:
        parts.append("<h2>Confusion matrices</h2>" + "".join(f"<div>{chart}</div>" for chart in charts))
    for note in data.get("notes", []) + (["Files skipped: " + ", ".join(run.skipped_files[:20])]
                                         if run.skipped_files else []):
        parts.append(f"<p>{esc(note)}</p>")
    parts.append("<h2>Items, worst first</h2><p>Click a column's title to sort by it.</p>")
    parts.append(_items_table(run))
    parts.append(f"<script>{SORT_SCRIPT}</script></body></html>")
    return "".join(parts)


def _items_table(run: EvalRun) -> str:
    media = {item.index: item.media for item in run.items}
    names = [name for name in columns(run.task) if name not in ("ms", "batch_size")]
    head = "<th>media</th>" + "".join(f"<th>{html.escape(SHOWN.get(n, (n,))[0])}</th>" for n in names)
    lines = []
    thumbnails: dict[int, str | None] = {}  # one per item, shared by its models' rows
    for row in metrics.sort_worst_first(run.task, run.rows):
        image = media.get(row["item"], {}).get("image")
        if row["item"] not in thumbnails:
            thumbnails[row["item"]] = thumbnail_uri(image) if image is not None else None
        uri = thumbnails[row["item"]]
        thumb = f'<img class="thumb" alt="" src="{uri}">' if uri else html.escape(row.get("file") or "")
        cells = [f"<td>{thumb}</td>"]
        flat = flat_row(run.task, row)
        for name in names:
            value = flat.get(name)
            if name == "alignment" and row.get("alignment") is not None:
                cells.append(f"<td>{alignment_html(row['alignment'])}</td>")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                cells.append(f'<td class="num" data-v="{value}">{html.escape(format_metric(name, value))}</td>')
            else:
                css = ' class="err"' if name == "error" and value else ""
                cells.append(f"<td{css}>{html.escape('' if value is None else str(value))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
