"""Evaluation (issue 23): each metric against hand-computed values, safe intake, the engine's batching, cancelling and
clean-up, the CLI's exit codes, and the tab's API giving the CLI's very metrics.json.

Tiny random-weight checkpoints throughout: their answers are nonsense, so the checks compare the engine with
independent computations (a direct CLIP pass, jiwer, scikit-learn on the rows) rather than with expected answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.backends import local_runtime
from mmdemo.config import Settings
from mmdemo.errors import InputError
from mmdemo.evaluate import archive, cli, clip_score, metrics, presets, report
from mmdemo.evaluate.engine import EvalOptions, evaluate
from mmdemo.evaluate.manifest import read_rows
from mmdemo.evaluate.vqa_answers import normalize_answer, vqa_accuracy

REPO = Path(__file__).resolve().parents[1]
CLIP = "openai/clip-vit-base-patch32"
SIGLIP = "google/siglip-base-patch16-224"
BLIP = "Salesforce/blip-image-captioning-base"


@pytest.fixture(scope="module")
def runtime(tiny_model_dir):
    # fp32 (the CLIPScore check compares with a direct fp32 pass); a window long enough that a busy 2-core machine
    # still gathers the submitted items into batches.
    return local_runtime(Settings(model_dir=tiny_model_dir, device="cpu", memory_budget=4 * 1024**3,
                                  quantize="none", batch_window_ms=200, max_eval_items=50))


def picture(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def image_set(tmp: Path, count: int, manifest: str | None = None) -> Path:
    """A ZIP of `count` random PNGs (img0.png ...) and an optional manifest.csv."""
    members: dict[str, bytes | str] = {}
    for i in range(count):
        members[f"img{i}.png"] = picture(tmp / f"img{i}.png", i).read_bytes()
    if manifest is not None:
        members["manifest.csv"] = manifest
    return make_zip(tmp / "set.zip", members)


def leftover_workspaces() -> set[str]:
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("mmdemo-eval-*")}


# ---------------------------------------------------------------- metrics against hand-computed values


def test_speech_wer_cer_and_alignment_on_known_pairs():
    item = metrics.speech_item("the cat sat on the mat", "the cat sat on a mat today", "en")
    # one substitution (the -> a) and one insertion (today) over 6 reference words
    assert (item["substitutions"], item["deletions"], item["insertions"], item["words"]) == (1, 0, 1, 6)
    assert item["wer"] == pytest.approx(2 / 6)
    assert ["substitute", "the", "a"] in item["alignment"] and ["insert", "", "today"] in item["alignment"]
    assert metrics.speech_item("hello world", "hello", "en")["wer"] == pytest.approx(0.5)
    assert metrics.speech_item("abc", "abd", "en")["cer"] == pytest.approx(1 / 3)
    # Whisper's English normaliser: spelled-out numbers, case and punctuation are no error
    assert metrics.speech_item("Twenty dollars.", "20 dollars", "en")["wer"] == 0.0
    summary = metrics.summarize("speech", [{"model": "m", **metrics.speech_item(r, h, "en")} for r, h in
                                           [("a b c d", "a b c"), ("e f", "x f")]])
    assert summary["wer"] == pytest.approx(2 / 6)  # corpus: total edits over total words, not the mean of 1/4, 1/2


def test_vqa_normaliser_follows_the_official_evaluation():
    # The official evaluation's documented processing: case, periods (kept in numbers), number words, articles,
    # contractions, punctuation to spaces.
    assert normalize_answer("Two") == "2"
    assert normalize_answer("the dog.") == "dog"
    assert normalize_answer("dont") == "don't"
    assert normalize_answer("3.5") == "3.5"
    assert normalize_answer("yes!") == "yes"
    assert normalize_answer("tennis-racket") == "tennis racket"
    assert normalize_answer("red, white and blue") == "red white and blue"
    assert vqa_accuracy("2", ["two", "2", "2", "3"]) == 1.0  # 3 matches: full credit
    assert vqa_accuracy("2", ["2", "3", "4"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("Two.", ["2"]) == 1.0 and vqa_accuracy("3", ["2"]) == 0.0  # one reference: exact match


def test_classification_and_bleu_come_from_their_libraries():
    rows = [{"expected": e, "prediction": p, "top5": 1.0} for e, p in
            [("pos", "pos"), ("pos", "neg"), ("neg", "neg"), ("neg", "neg")]]
    result = metrics.classification("sentiment", rows)
    assert result["accuracy"] == 0.75
    assert result["confusion"] == {"labels": ["neg", "pos"], "matrix": [[2, 0], [1, 1]]}
    # F1: neg = 2*2/(2*2+1) = 0.8, pos = 2*1/(2*1+1) = 2/3
    assert result["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics.corpus_bleu(["a cat sits on the red mat"], [["a cat sits on the red mat"]]) == pytest.approx(100)
    assert metrics.corpus_bleu(["a b c d e", "x y z w v"], [["a b c d e", "q"], ["x y z w v"]]) == pytest.approx(100)


def test_bootstrap_interval_covers_a_known_difference():
    rng = np.random.default_rng(1)
    truth = 0.10
    covered = 0
    experiments = 60
    for _ in range(experiments):
        a = rng.normal(0.5, 0.2, 200)
        b = a + truth + rng.normal(0, 0.1, 200)  # paired: the same items, b better by 0.1 on average
        interval = metrics.paired_bootstrap([(x, 1.0) for x in a], [(x, 1.0) for x in b], seed=int(rng.integers(1e6)))
        covered += interval["low"] <= truth <= interval["high"]
        assert interval["low"] > 0  # the difference is clear from 200 paired items
    assert covered / experiments >= 0.85  # a 95 % interval; 60 draws leave room for chance
    same = metrics.paired_bootstrap([(1, 4), (0, 3)], [(1, 4), (0, 3)])
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}


def test_clip_score_equals_a_direct_clip_computation(runtime, tiny_model_dir, tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    images = [picture(tmp_path / f"{i}.png", i) for i in range(3)]
    captions = ["a cat on a sofa", "a red rocket", "two dogs"]
    got = clip_score.clip_scores(runtime, images, captions)
    path = tiny_model_dir / CLIP
    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    with torch.no_grad():
        inputs = processor(text=[clip_score.PROMPT + c for c in captions], images=[Image.open(i) for i in images],
                           return_tensors="pt", padding=True)
        image = model.get_image_features(pixel_values=inputs.pixel_values).pooler_output
        text = model.get_text_features(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask).pooler_output
        cosine = torch.nn.functional.cosine_similarity(image, text)
    want = (2.5 * cosine.clamp(min=0)).tolist()
    assert got == pytest.approx(want, abs=1e-4)
    assert clip_score.clip_model_id() == CLIP


def test_formula_cells_are_neutralised():
    assert report.neutralise("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert [report.neutralise(v) for v in ("+1", "-1", "@a", "\tx", "ok")] == ["'+1", "'-1", "'@a", "'\tx", "ok"]
    assert report.neutralise(-1.5) == -1.5


# ---------------------------------------------------------------- intake


def test_zip_members_leaving_the_folder_are_refused(tmp_path):
    work = archive.Workspace()
    try:
        for name in ("../evil.png", "/etc/evil.png", "C:/evil.png"):
            bad = make_zip(tmp_path / "bad.zip", {name: b"x"})
            with pytest.raises(InputError, match="outside the folder"):
                archive.extract_zip(bad, work.path / "data")
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)
        with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
            zf.writestr(link, "/etc/passwd")
        with pytest.raises(InputError, match="symbolic link"):
            archive.extract_zip(tmp_path / "link.zip", work.path / "data")
        assert not (work.path / "data").exists() or not any((work.path / "data").rglob("*"))
    finally:
        work.cleanup()
    assert not work.path.exists()


def test_zip_caps_are_checked_before_extracting(tmp_path):
    many = make_zip(tmp_path / "many.zip", {f"{i}.png": b"" for i in range(6)})
    with pytest.raises(InputError, match="6 members; the limit is 5"):
        archive.extract_zip(many, tmp_path / "out", max_members=5)
    big = make_zip(tmp_path / "big.zip", {"a.png": b"\0" * 2000, "b.png": b"\0" * 2000})
    with pytest.raises(InputError, match="unpacks to"):
        archive.extract_zip(big, tmp_path / "out2", max_bytes=3000)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()  # nothing written


def test_bom_is_read_and_other_encodings_are_refused(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufefffile,label\na.png,cat\n".encode())
    assert read_rows(tmp_path / "bom.csv", max_rows=5) == [{"file": "a.png", "label": "cat"}]
    (tmp_path / "latin.csv").write_bytes("file,label\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_rows(tmp_path / "latin.csv", max_rows=5)


# ---------------------------------------------------------------- the engine


def test_zero_shot_items_run_in_real_batches_model_after_model(runtime, tmp_path):
    labels = "cat|dog|bird|car|tree|house"
    manifest = "file,label,labels\n" + "".join(f"img{i}.png,{'cat' if i % 2 else 'dog'},{labels}\n" for i in range(8))
    run = evaluate(runtime, "zero_shot", [CLIP, SIGLIP], image_set(tmp_path, 8, manifest), out_dir=tmp_path / "out")
    assert [row["model"] for row in run.rows] == [CLIP] * 8 + [SIGLIP] * 8  # one model after the other
    assert max(row["batch_size"] for row in run.rows) > 1, [row["batch_size"] for row in run.rows]
    per_model = run.metrics["per_model"]
    for model in (CLIP, SIGLIP):
        rows = [row for row in run.rows if row["model"] == model]
        assert per_model[model]["top1"] == pytest.approx(np.mean([r["prediction"] == r["expected"] for r in rows]))
        assert per_model[model]["top5"] == pytest.approx(np.mean([r["expected"] in r["ranking"][:5] for r in rows]))
    assert len(run.metrics["comparison"]["differences"]) == 1
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written == run.metrics
    html = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/jpeg;base64," in html and "<svg" in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_beam_captioning_batches_and_gets_clip_scores(runtime, tmp_path):
    manifest = "file,reference\n" + "".join(f"img{i}.png,a photo of noise|random pixels\n" for i in range(6))
    run = evaluate(runtime, "captioning", [BLIP], image_set(tmp_path, 6, manifest))
    assert max(row["batch_size"] for row in run.rows) > 1
    assert all(0 <= row["clip_score"] <= 2.5 for row in run.rows)
    summary = run.metrics["per_model"][BLIP]
    assert summary["clip_score"] == pytest.approx(np.mean([row["clip_score"] for row in run.rows]))
    assert summary["bleu"] == pytest.approx(metrics.corpus_bleu([r["prediction"] for r in run.rows],
                                                                [r["references"] for r in run.rows]))


def test_bad_rows_become_row_errors_and_the_run_goes_on(runtime, tmp_path):
    manifest = ("file,label,labels\nimg0.png,cat,cat|dog\nmissing.png,cat,cat|dog\nbroken.png,cat,cat|dog\n"
                "img1.png,horse,cat|dog\n")
    members = {"img0.png": picture(tmp_path / "a.png", 0).read_bytes(), "img1.png": picture(tmp_path / "b.png", 1)
               .read_bytes(), "broken.png": "not an image", "manifest.csv": manifest}
    run = evaluate(runtime, "zero_shot", [CLIP], make_zip(tmp_path / "set.zip", members))
    errors = {row["file"]: row["error"] for row in run.rows}
    assert errors["img0.png"] is None
    assert errors["missing.png"] == "missing.png is not in the upload"
    assert errors["broken.png"].startswith("This file is not an image")
    assert errors["img1.png"] == "label 'horse' is not among the candidate labels"
    assert run.metrics["per_model"][CLIP]["errors"] == 3


def test_cancel_keeps_partial_results_and_removes_working_files(runtime, tmp_path):
    before = leftover_workspaces()
    cancel = threading.Event()
    seen = []

    def progress(done: int, total: int, line: str) -> None:
        seen.append(line)
        cancel.set()  # after the first finished row

    run = evaluate(runtime, "zero_shot", [CLIP], image_set(tmp_path, 30), options=EvalOptions(labels="a, b"),
                   out_dir=tmp_path / "out", on_progress=progress, cancel=cancel)
    assert run.cancelled and 1 <= len(run.rows) < 30
    assert "about" in seen[0] and "left" in seen[0]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["cancelled"] is True
    assert leftover_workspaces() <= before


def test_two_runs_at_once_see_only_their_own_files(runtime, tmp_path):
    results = {}

    def one(name: str, label: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        set_zip = make_zip(folder / "set.zip", {"a.png": picture(folder / "a.png", len(name)).read_bytes(),
                                                "manifest.csv": f"file,label,labels\na.png,{label},cat|dog|{label}\n"})
        results[name] = evaluate(runtime, "zero_shot", [CLIP], set_zip)

    threads = [threading.Thread(target=one, args=(name, label)) for name, label in (("x", "fox"), ("y", "yak"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["x"].rows[0]["expected"] == "fox" and results["y"].rows[0]["expected"] == "yak"


def test_ready_made_sets_run(runtime, tmp_path):
    for name, task in presets.PRESETS.items():
        if task == "speech":
            continue  # the tiny Whisper is slow and says nothing; the speech set runs in the acceptance test
        model = "vader" if task == "sentiment" else CLIP
        run = evaluate(runtime, task, [model], presets.preset_files(name))
        assert run.rows and not any(row["error"] for row in run.rows), run.rows
    sentiment = evaluate(runtime, "sentiment", ["vader"], presets.preset_files("sentiment"))
    assert sentiment.metrics["per_model"]["vader"]["accuracy"] >= 0.75  # VADER reads plain review sentences well


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(monkeypatch, tiny_model_dir):
    for name, value in {"MMDEMO_MODEL_DIR": str(tiny_model_dir), "MMDEMO_DEVICE": "cpu", "MMDEMO_QUANTIZE": "none",
                        "MMDEMO_MEMORY_BUDGET": "4GiB", "MMDEMO_MAX_EVAL_ITEMS": "50"}.items():
        monkeypatch.setenv(name, value)


def test_cli_writes_the_files_and_prints_the_table(cli_env, tmp_path, capsys):
    code = cli.main(["--task", "sentiment", "--models", "vader", str(presets.EVAL_SETS / "sentiment"),
                     "--out", str(tmp_path / "out"), "--limit", "4", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].split() == ["model", "accuracy", "macro-F1", "items", "errors"]
    assert "vader" in out.splitlines()[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "report.html", "results.csv",
                                                                  "results.jsonl"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["items"] == 4


@pytest.mark.parametrize("argv, message", [
    (["--task", "speech", "--models", "nobody/model", "DATA"], "error: Unknown model 'nobody/model' for Speech"),
    (["--task", "nope", "--models", "x", "DATA"], "error: argument --task: invalid choice"),
    (["--task", "zero_shot", "--models", CLIP, "MISSING"], "does not exist"),
    (["--task", "zero_shot", "--models", CLIP, "DATA", "--limit", "51"], "The limit must be between 1 and 50"),
    (["--task", "zero_shot", "--models", ",".join([CLIP] * 1 + [SIGLIP, "a/b", "c/d", "e/f"]), "DATA"],
     "5 models chosen; the limit is 4"),
])
def test_cli_bad_input_exits_2_with_one_line(cli_env, tmp_path, capsys, argv, message):
    data = image_set(tmp_path, 1)
    argv = [str(data) if a == "DATA" else str(tmp_path / "missing.zip") if a == "MISSING" else a for a in argv]
    assert run_cli([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def run_cli(argv: list[str]) -> int:
    """cli.main's exit code, also where argparse exits by itself."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code)


def test_cli_process_exit_codes(tiny_model_dir, tmp_path):
    env = {**os.environ, "MMDEMO_MODEL_DIR": str(tiny_model_dir), "MMDEMO_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    bad = subprocess.run([sys.executable, "-m", "mmdemo.evaluate", "--task", "vqa", "--models", CLIP,
                          str(tmp_path), "--out", str(tmp_path / "o")], env=env, capture_output=True, text=True,
                         cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith("error: Unknown model 'openai/clip-vit-base-patch32' for Visual question")
    good = subprocess.run([sys.executable, "-m", "mmdemo.evaluate", "--task", "sentiment", "--models", "vader",
                           str(presets.EVAL_SETS / "sentiment"), "--out", str(tmp_path / "o"), "--quiet"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    assert good.returncode == 0, good.stderr
    assert "accuracy" in good.stdout and (tmp_path / "o" / "report.html").is_file()


def test_the_tab_and_the_cli_write_the_same_metrics_json(tiny_model_dir, cli_env, tmp_path, capsys):
    from gradio_client import handle_file
    from test_bad_inputs import serve

    labels = "cat|dog|bird"
    manifest = "file,label,labels\n" + "".join(f"img{i}.png,{['cat', 'dog'][i % 2]},{labels}\n" for i in range(5))
    data = image_set(tmp_path, 5, manifest)
    settings = Settings(model_dir=tiny_model_dir, device="cpu", memory_budget=4 * 1024**3, quantize="none")
    with serve(settings) as (client, _):
        result, files = client.predict("zero_shot", "", handle_file(str(data)), None, [CLIP, SIGLIP], "", None,
                                       api_name="/evaluate")
    by_name = {Path(path).name: Path(path) for path in files}
    assert sorted(by_name) == ["metrics.json", "report.html", "results.csv", "results.jsonl"]
    assert run_cli(["--task", "zero_shot", "--models", f"{CLIP},{SIGLIP}", str(data), "--out", str(tmp_path / "cli"),
                    "--quiet"]) == 0
    assert (tmp_path / "cli" / "metrics.json").read_bytes() == by_name["metrics.json"].read_bytes()
    assert {k: v for k, v in result.items() if k != "rows"} == json.loads(by_name["metrics.json"].read_text())
    assert len(result["rows"]) == 10


def test_limit_runs_the_first_items_and_a_row_reopens_as_the_same_request(runtime, tmp_path):
    run = evaluate(runtime, "zero_shot", [CLIP], image_set(tmp_path, 5),
                   options=EvalOptions(labels="cat, dog, bird", limit=2, keep_media=True), out_dir=tmp_path / "out")
    assert [row["file"] for row in run.rows] == ["img0.png", "img1.png"]
    from mmdemo.evaluate.engine import compare_request

    for row in run.rows:
        task, raw, model = compare_request(row, "zero_shot")
        assert Path(raw["image"]).is_file() and Path(raw["image"]).is_relative_to(tmp_path / "out")
        again = runtime.run(task, {**raw, "model": model})
        assert again["labels"][0]["label"] == row["prediction"]
        assert [entry["label"] for entry in again["labels"]] == row["ranking"]


def test_a_flag_export_round_trips_through_evaluation(runtime, tmp_path):
    """The Review tab's export (issue 22) is a test set as it stands: a 👍 takes the model's own answer as right, so
    the same model scores 100 % on it; a correction is the reference."""
    from mmdemo.flags import FlagStore
    from mmdemo.flags.export import export

    store = FlagStore(tmp_path / "store", 10**8)
    images = [picture(tmp_path / f"f{i}.png", i) for i in range(3)]
    labels = "cat, dog, a bird"
    for image in images:
        result = runtime.run("zero_shot", {"image": str(image), "labels": labels, "model": CLIP})
        store.add(task="zero_shot", mode="single", rating="up", inputs={"labels": labels}, media={"image": image},
                  results=[{"model": CLIP, "result": result, "ms": 1.0}])
    run = evaluate(runtime, "zero_shot", [CLIP], export(store, store.find(), tmp_path / "flags.zip"))
    assert len(run.rows) == 3 and not any(row["error"] for row in run.rows)
    assert run.metrics["per_model"][CLIP]["top1"] == 1.0

    vilt = "dandelin/vilt-b32-finetuned-vqa"
    answer = runtime.run("vqa", {"image": str(images[0]), "question": "What is it?", "model": vilt})
    store.add(task="vqa", mode="single", rating="down", correction="Two.", inputs={"question": "What is it?"},
              media={"image": images[0]}, results=[{"model": vilt, "result": answer, "ms": 1.0}])
    run = evaluate(runtime, "vqa", [vilt], export(store, store.find(task="vqa"), tmp_path / "vqa.zip"))
    (row,) = run.rows
    assert row["reference"] == "Two." and row["question"] == "What is it?"
    assert row["vqa_accuracy"] == float(normalize_answer(row["prediction"]) == "2")
