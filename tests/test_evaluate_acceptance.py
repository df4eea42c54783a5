"""The offline Whisper pack through the Evaluate tab on the shared English clips: the same corpus WER as
`tests/test_acceptance_speech.py` computes (its clips, references and normaliser), and the same metrics.json from
the CLI. Skipped, with the reason, where ../shared/media or the pack is missing. Run alone with `pytest -m acceptance`.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import handle_file
from test_bad_inputs import serve
from test_evaluate import run_cli

import mmdemo.tasks  # noqa: F401
from mmdemo.backends import local_runtime
from mmdemo.config import Settings, default_model_dir
from mmdemo.offline.packs import PACKS, install_state
from mmdemo.testing.wer import corpus_wer

pytestmark = pytest.mark.acceptance

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
MODEL_DIR = default_model_dir()
TINY_EN = "openai/whisper-tiny.en"

if not (MEDIA / "MANIFEST.json").is_file():
    pytest.skip(f"real test media not found at {MEDIA}", allow_module_level=True)
if install_state(MODEL_DIR, PACKS[TINY_EN]) != "installed":
    pytest.skip(f"offline Whisper pack not installed in {MODEL_DIR}: run `python -m mmdemo.models install-offline`",
                allow_module_level=True)

MANIFEST = {item["path"]: item for item in json.loads((MEDIA / "MANIFEST.json").read_text())["audio"]}
# The acceptance test's clips: English, with one reference transcript.
ENGLISH = sorted(path for path, item in MANIFEST.items() if item.get("language") == "en" and "transcript" in item)


@pytest.fixture(scope="module")
def english_set(tmp_path_factory) -> Path:
    """The English clips and a manifest.csv of their references, zipped as a tester would."""
    folder = tmp_path_factory.mktemp("english")
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["file", "reference"])
        writer.writerows([Path(clip).name, MANIFEST[clip]["transcript"]] for clip in ENGLISH)
    path = folder / "english.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(folder / "manifest.csv", "manifest.csv")
        for clip in ENGLISH:
            zf.write(MEDIA / clip, Path(clip).name)
    return path


def test_tab_wer_equals_the_acceptance_tests_and_the_cli_writes_the_same_metrics(english_set, tmp_path, monkeypatch):
    settings = Settings(model_dir=MODEL_DIR, device="cpu", memory_budget=4 * 1024**3, quantize="auto")
    # What tests/test_acceptance_speech.py prints: corpus_wer over Runtime.run's transcripts of the same clips.
    runtime = local_runtime(settings)
    pairs = [(MANIFEST[clip]["transcript"], runtime.run("speech", {"audio": str(MEDIA / clip), "model": TINY_EN,
                                                                   "timestamps": "none"})["text"])
             for clip in ENGLISH]
    expected = corpus_wer(pairs)
    with serve(settings) as (client, _):
        result, files = client.predict("speech", "", handle_file(str(english_set)), None, [TINY_EN], "", None,
                                       api_name="/evaluate")
    summary = result["per_model"][TINY_EN]
    print(f"{TINY_EN}: Evaluate tab corpus WER {summary['wer']:.4f}; acceptance computation {expected:.4f}")
    assert summary["errors"] == 0 and summary["scored"] == len(ENGLISH)
    assert summary["wer"] == pytest.approx(expected, abs=1e-9)
    assert summary["wer"] <= 0.08  # the acceptance test's ceiling for tiny.en
    tab_metrics = next(Path(path) for path in files if Path(path).name == "metrics.json").read_bytes()

    for name, value in {"MMDEMO_MODEL_DIR": str(MODEL_DIR), "MMDEMO_DEVICE": "cpu", "MMDEMO_QUANTIZE": "auto",
                        "MMDEMO_MEMORY_BUDGET": "4GiB"}.items():
        monkeypatch.setenv(name, value)
    assert run_cli(["--task", "speech", "--models", TINY_EN, str(english_set), "--out", str(tmp_path / "cli"),
                    "--quiet"]) == 0
    assert (tmp_path / "cli" / "metrics.json").read_bytes() == tab_metrics
