"""The flag store, its export as a test set, the /flag, /flags and /flags_export endpoints, and who may use them."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import mmdemo.tasks  # noqa: F401  (registers the tasks)
from mmdemo.config import Settings, flagging_enabled, model_admin_enabled, settings_from_env
from mmdemo.errors import InputError
from mmdemo.flags import FlagStore, FlagStoreError
from mmdemo.flags.export import export
from mmdemo.ui import build_demo

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT, COFFEE, JFK = ASSETS / "skimage_chelsea.png", ASSETS / "skimage_coffee.png", ASSETS / "jfk.flac"
VILT = "dandelin/vilt-b32-finetuned-vqa"


def vqa_result(answer: str, model: str = VILT) -> dict[str, Any]:
    return {"question": "What is it?", "answer": answer, "answers": [{"answer": answer, "score": 0.9}],
            "provenance": {"models": {"model": model}, "ms": 12.0}}


def add(store: FlagStore, **overrides: Any) -> dict[str, Any]:
    fields = {"task": "vqa", "mode": "single", "rating": "down", "note": "", "inputs": {"question": "What is it?"},
              "media": {"image": CAT}, "results": [{"model": VILT, "result": vqa_result("dog"), "ms": 12.0}]}
    return store.add(**(fields | overrides))


# ---------------------------------------------------------------- the store


def test_a_flag_keeps_its_inputs_results_and_media_once(tmp_path):
    store = FlagStore(tmp_path, 10**8)
    first = add(store, note="says dog, it is a cat", correction="cat")
    second = add(store, rating="up", inputs={"question": "Which animal?"})
    assert first["media"]["image"] == second["media"]["image"]  # the same file, stored once
    stored = list((tmp_path / "media").rglob("*.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == CAT.read_bytes()
    assert stored[0].name == f"{first['media']['image']['sha256']}.png"
    assert [r["id"] for r in store.find()] == [second["id"], first["id"]]  # newest first
    got = store.get(first["id"])
    assert got["note"] == "says dog, it is a cat" and got["correction"] == "cat"
    assert got["results"][0]["result"]["answer"] == "dog" and got["models"] == [VILT]
    assert got["inputs"] == {"question": "What is it?"} and got["time"].endswith("+00:00")


def test_filters(tmp_path):
    store = FlagStore(tmp_path, 10**8)
    down = add(store)
    up = add(store, rating="up", task="captioning", inputs={}, results=[
        {"model": "Salesforce/blip-image-captioning-base", "result": {"caption": "a cat", "captions": ["a cat"]},
         "ms": 5.0}])
    assert [r["id"] for r in store.find(rating="down")] == [down["id"]]
    assert [r["id"] for r in store.find(task="captioning")] == [up["id"]]
    assert [r["id"] for r in store.find(model=VILT)] == [down["id"]]
    today = down["time"][:10]
    assert len(store.find(since=today, until=today)) == 2 and store.find(until="2000-01-01") == []
    with pytest.raises(InputError, match=r"^Since must be a date as YYYY-MM-DD, got 'yesterday'$"):
        store.find(since="yesterday")
    with pytest.raises(InputError, match="Rating must be one of up, down"):
        store.find(rating="meh")


def test_refusals_are_one_line(tmp_path):
    store = FlagStore(tmp_path, 10**8)
    with pytest.raises(InputError, match=r"^Note is 1000000 characters long; the limit is 2000: shorten it$"):
        add(store, note="x" * 1_000_000)
    with pytest.raises(InputError, match="Rating must be one of up, down"):
        add(store, rating="5 stars")
    with pytest.raises(InputError, match="There is no result to flag yet"):
        add(store, results=[])
    with pytest.raises(InputError, match="The best model 'org/other' is not one of the compared models"):
        add(store, best="org/other")
    with pytest.raises(InputError, match=r"is not a flag id"):
        store.get("../../etc/passwd")
    assert store.records() == []


def test_the_size_cap_stops_new_flags(tmp_path):
    store = FlagStore(tmp_path, CAT.stat().st_size + 3_000)
    add(store)
    add(store)  # the image is kept already: only a line more
    with pytest.raises(FlagStoreError, match=r"^The flag store is full .*MMDEMO_FLAG_MAX_BYTES"):
        add(store, media={"image": COFFEE})
    assert len(store.records()) == 2 and not list(tmp_path.rglob("*.part"))


def test_a_store_that_cannot_be_written_says_so(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(FlagStoreError, match=r"^The flag store cannot be written .*MMDEMO_FLAG_DIR"):
        add(FlagStore(blocker / "flags", 10**8))
    full = FlagStore(tmp_path / "full", 10**8)
    full.root.mkdir()
    (full.root / "flags.jsonl").symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    with pytest.raises(FlagStoreError, match=r"cannot be written \(No space left on device\)"):
        add(full)


def test_a_line_cut_short_is_skipped(tmp_path):
    store = FlagStore(tmp_path, 10**8)
    kept = add(store)
    with open(store.journal, "a") as f:
        f.write('{"id": "0123456789abcdef", "task": "vq')  # a crash mid-write
    assert [r["id"] for r in store.records()] == [kept["id"]]
    after = add(store)  # starts on a line of its own, not glued to the broken one
    assert [r["id"] for r in store.records()] == [kept["id"], after["id"]]


def test_threads_flagging_at_once_lose_nothing(tmp_path):
    store = FlagStore(tmp_path, 10**8)
    notes = [f"note {i} " + "x" * 1900 for i in range(32)]  # long lines: an interleaved write would show
    threads = [threading.Thread(target=add, args=(store,), kwargs={"note": n}) for n in notes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = store.journal.read_text().splitlines()
    assert len(lines) == 32 and sorted(json.loads(line)["note"] for line in lines) == sorted(notes)


# ---------------------------------------------------------------- export


def read_zip(path: Path) -> tuple[list[dict[str, str]], dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        return manifest, {name: archive.read(name) for name in archive.namelist() if name != "manifest.csv"}


def test_export_writes_the_manifest_the_evaluator_reads(tmp_path):
    store = FlagStore(tmp_path / "store", 10**8)
    corrected = add(store, note="wrong", correction="cat")
    liked = add(store, rating="up", inputs={"question": "What colour?"}, media={"image": COFFEE},
                results=[{"model": VILT, "result": vqa_result("white"), "ms": 3.0}])
    unknown = add(store, inputs={"question": "How many?"})
    rows, media = read_zip(export(store, store.find(), tmp_path / "out" / "flags.zip"))
    by_question = {row["question"]: row for row in rows}
    assert list(rows[0]) == ["file", "question", "answers"]
    assert by_question["What is it?"]["answers"] == "cat"  # the correction
    assert by_question["What colour?"]["answers"] == "white"  # a 👍: the model's answer was right
    assert by_question["How many?"]["answers"] == ""  # a 👎 with no correction: unscored
    assert {row["file"] for row in rows} == set(media)
    assert media[by_question["What colour?"]["file"]] == COFFEE.read_bytes()
    assert len(media) == 2 and corrected and liked and unknown


def test_export_of_speech_and_zero_shot_rows(tmp_path):
    store = FlagStore(tmp_path, 10**8)
    add(store, task="speech", rating="up", inputs={"language": "auto", "task": "transcribe"}, media={"audio": JFK},
        results=[{"model": "openai/whisper-base", "ms": 1.0, "result": {
            "text": "And so my fellow Americans", "language": "en", "segments": []}}])
    rows, media = read_zip(export(store, store.find(task="speech"), tmp_path / "s.zip"))
    assert rows == [{"file": next(iter(media)), "reference": "And so my fellow Americans", "language": "en"}]
    add(store, task="zero_shot", inputs={"labels": "cat, dog, a bird"}, correction="cat", results=[
        {"model": "openai/clip-vit-base-patch32", "ms": 1.0, "result": {"labels": [{"label": "dog", "score": .6}]}}])
    rows, _ = read_zip(export(store, store.find(task="zero_shot"), tmp_path / "z.zip"))
    assert rows[0]["labels"] == "cat|dog|a bird" and rows[0]["label"] == "cat"


def test_export_refusals(tmp_path):
    store = FlagStore(tmp_path / "store", 10**8)
    with pytest.raises(InputError, match=r"^No flags to export"):
        export(store, [], tmp_path / "none.zip")
    add(store)
    add(store, task="captioning", inputs={}, results=[{"model": "m/c", "ms": 1.0, "result": {"caption": "x"}}])
    with pytest.raises(InputError, match=r"^Export one task at a time \(the selection has captioning, vqa\)"):
        export(store, store.find(), tmp_path / "mixed.zip")
    tampered = dict(store.find(task="vqa")[0])
    tampered["media"] = {"image": {"file": "media/../../../etc/passwd"}}
    with pytest.raises(InputError, match=r"names a file outside the store"):
        export(store, [tampered], tmp_path / "evil.zip")
    assert not (tmp_path / "evil.zip").exists()


# ---------------------------------------------------------------- who may flag and review


def test_flagging_is_opt_in_on_a_space():
    space = {"SPACE_ID": "someone/mmdemo"}
    assert flagging_enabled(Settings(), {}) is True
    assert flagging_enabled(Settings(), space) is False
    assert flagging_enabled(settings_from_env({"MMDEMO_FLAGGING": "1"}), space) is True
    assert flagging_enabled(settings_from_env({"MMDEMO_FLAGGING": "0"}), {}) is False
    with pytest.raises(ValueError, match="MMDEMO_FLAGGING"):
        settings_from_env({"MMDEMO_FLAGGING": "sometimes"})
    assert model_admin_enabled(Settings(), space) is False  # the Review tab follows it


def endpoints(demo) -> set[str]:
    return {dep.api_name for dep in demo.fns.values() if dep.api_name}


def test_flag_rows_and_review_follow_the_settings(tiny_runtime, tmp_path):
    on = build_demo(tiny_runtime(flagging="on", model_admin="on", flag_dir=tmp_path))
    off = build_demo(tiny_runtime(flagging="off", model_admin="on", flag_dir=tmp_path))
    no_admin = build_demo(tiny_runtime(flagging="on", model_admin="off", flag_dir=tmp_path))

    def elem_ids(demo) -> set[str]:
        return {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}

    assert {"vqa-single-flag-down", "speech-compare-flag-up", "review-tab"} <= elem_ids(on)
    assert not {i for i in elem_ids(off) if "flag" in i or i == "review-tab"}
    assert "review-tab" not in elem_ids(no_admin) and "vqa-single-flag-down" in elem_ids(no_admin)


# ---------------------------------------------------------------- the endpoints


@pytest.fixture(scope="module")
def app(tiny_runtime, launched, tmp_path_factory) -> tuple[Client, FlagStore]:
    folder = tmp_path_factory.mktemp("flags")
    runtime = tiny_runtime(flagging="on", model_admin="on", flag_dir=folder)
    return Client(launched(build_demo(runtime)), verbose=False), FlagStore(folder, 10**9)


def test_flag_a_compare_then_list_and_export_it(app, tmp_path):
    client, store = app
    compared = client.predict("vqa", [VILT, "Salesforce/blip-vqa-base"], {"question": "What is in the cup?"},
                              handle_file(COFFEE), None, api_name="/compare")
    made = client.predict("vqa", "down", "<script>alert(1)</script> both wrong", "coffee", VILT, compared,
                          {"question": "What is in the cup?"}, handle_file(COFFEE), None, api_name="/flag")
    listed = client.predict("vqa", VILT, "down", "", "", api_name="/flags")["flags"]
    record = next(r for r in listed if r["id"] == made["id"])
    assert record["mode"] == "compare" and record["best"] == VILT and record["correction"] == "coffee"
    assert record["note"] == "<script>alert(1)</script> both wrong"  # kept as text; the UI never renders it as HTML
    assert [r["model"] for r in record["results"]] == [VILT, "Salesforce/blip-vqa-base"]
    assert "downloads" not in json.dumps(record)
    zipped = client.predict("vqa", VILT, "down", "", "", api_name="/flags_export")
    rows, media = read_zip(Path(zipped))
    row = next(r for r in rows if r["question"] == "What is in the cup?")
    assert row["answers"] == "coffee" and media[row["file"]] == COFFEE.read_bytes()


def test_sixteen_visitors_flag_at_once(app):
    client, store = app
    result = client.predict(handle_file(CAT), "What is it?", VILT, api_name="/vqa")
    before = len(store.records())
    errors: list[BaseException] = []

    def visitor(number: int) -> None:
        try:
            Client(client.src, verbose=False).predict(
                "vqa", "up" if number % 2 else "down", f"visitor {number}", "", "", result,
                {"question": "What is it?", "model": VILT}, handle_file(CAT), None, api_name="/flag")
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    records = store.records()[before:]
    assert sorted(r["note"] for r in records) == sorted(f"visitor {n}" for n in range(16))
    assert all(r["mode"] == "single" and r["models"] == [VILT] for r in records)
    assert len(list((store.root / "media").rglob("*.png"))) == len({r["media"]["image"]["sha256"]
                                                                    for r in store.records()})


def test_flag_refusals_through_the_api(app):
    client, store = app
    result = client.predict(handle_file(CAT), "What is it?", VILT, api_name="/vqa")
    with pytest.raises(AppError, match=r"^Note is 1000000 characters long; the limit is 2000: shorten it$"):
        client.predict("vqa", "down", "n" * 1_000_000, "", "", result, {"question": "q"}, handle_file(CAT), None,
                       api_name="/flag")
    with pytest.raises(AppError, match=r"^Results must be what /compare or a task's endpoint returned$"):
        client.predict("vqa", "down", "", "", "", {"answer": "forged"}, {}, None, None, api_name="/flag")
    with pytest.raises(AppError, match=r"^No flags to export"):
        client.predict("speech", "", "", "", "", api_name="/flags_export")
    add(store, task="captioning", inputs={}, results=[{"model": "m/c", "ms": 1.0, "result": {"caption": "x"}}])
    with pytest.raises(AppError, match=r"^Export one task at a time \(the selection has captioning, vqa\)"):
        client.predict("", "", "", "", "", api_name="/flags_export")


def test_flag_and_export_at_the_same_time(app):
    client, store = app
    result = client.predict(handle_file(CAT), "What is it?", VILT, api_name="/vqa")
    outcome: dict[str, Any] = {}

    def flagging() -> None:
        outcome["flags"] = [Client(client.src, verbose=False).predict(
            "vqa", "down", f"during export {n}", "", "", result, {"question": "What is it?"}, handle_file(CAT),
            None, api_name="/flag")["id"] for n in range(4)]

    def exporting() -> None:
        outcome["zip"] = Client(client.src, verbose=False).predict("vqa", "", "", "", "", api_name="/flags_export")

    threads = [threading.Thread(target=flagging), threading.Thread(target=exporting)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows, media = read_zip(Path(outcome["zip"]))  # a whole ZIP: every row's file is in it
    assert rows and all(row["file"] in media for row in rows)
    assert set(outcome["flags"]) <= {r["id"] for r in store.records()}


def test_flagging_off_answers_in_one_line(tiny_runtime, launched, tmp_path):
    client = Client(launched(build_demo(tiny_runtime(flagging="off", flag_dir=tmp_path))), verbose=False)
    with pytest.raises(AppError, match=r"^Flagging is off on this app \(MMDEMO_FLAGGING\)$"):
        client.predict("vqa", "", "", "", "", api_name="/flags")
    assert not os.listdir(tmp_path)
    admin_off = Client(launched(build_demo(tiny_runtime(flagging="on", model_admin="off", flag_dir=tmp_path))),
                       verbose=False)
    with pytest.raises(AppError, match=r"^Listing and exporting flags is off on this app \(MMDEMO_MODEL_ADMIN\)$"):
        admin_off.predict("vqa", "", "", "", "", api_name="/flags")

