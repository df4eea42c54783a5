"""A model whose files are corrupt or missing: that request fails with a clear line, the cache keeps nothing
half-loaded, the other tabs keep working, and once the files are put right the next request loads the model."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from test_bad_inputs import CAT, CLIP, VILT, one_torch_thread, serve  # noqa: F401  (autouse)

from mmdemo.config import Settings

BROKEN = CLIP  # the model whose files each case damages; its tab is zero-shot


def truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def scramble_weights_header(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:72] = b"#" * 64  # the JSON header that says where each tensor is
    weights.write_bytes(bytes(data))


def empty_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"")


def delete_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def delete_processor_config(folder: Path) -> None:
    (folder / "processor_config.json").unlink()


def delete_tokenizer(folder: Path) -> None:
    for path in folder.glob("tokenizer*"):
        path.unlink()


def garble_config(folder: Path) -> None:
    (folder / "config.json").write_text('{"architectures": ["CLIPModel"], ')


# (damage, what the one-line message must say, marks)
DAMAGE: dict[str, tuple[Callable[[Path], None], str, tuple]] = {
    "weights cut in half": (truncate_weights, r"clip-vit-base-patch32.*(corrupt|incomplete)", ()),
    "weights header scrambled": (scramble_weights_header, r"clip-vit-base-patch32.*(corrupt|incomplete)",
                                 ()),
    "weights file empty": (empty_weights, r"clip-vit-base-patch32.*(corrupt|incomplete)", ()),
    "weights file missing": (delete_weights, r"^openai/clip-vit-base-patch32 is not available offline .*: put the "
                                             r"checkpoint in \S+clip-vit-base-patch32", ()),
    "processor config missing": (delete_processor_config,
                                 r"clip-vit-base-patch32 failed \(\w+\): its files look incomplete or corrupt", ()),
    "tokenizer missing": (delete_tokenizer, r"clip-vit-base-patch32.*(corrupt|incomplete|tokenizer)", ()),
    "config.json unreadable": (garble_config, r"clip-vit-base-patch32 has no readable config\.json", ()),
}


@pytest.fixture(scope="module")
def model_root(tiny_model_dir, tmp_path_factory) -> Path:
    """A model directory whose BROKEN model is a real copy (to damage) and every other model a link."""
    root = tmp_path_factory.mktemp("models")
    for checkpoint in tiny_model_dir.glob("*/*"):
        target = root / checkpoint.relative_to(tiny_model_dir)
        target.parent.mkdir(exist_ok=True)
        if f"{checkpoint.parent.name}/{checkpoint.name}" == BROKEN:
            shutil.copytree(checkpoint, target)
        else:
            target.symlink_to(checkpoint, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def app(model_root):
    with serve(Settings(model_dir=model_root, memory_budget=4 * 1024**3, device="cpu")) as (client, runtime):
        yield client, runtime


def classify(client) -> dict:
    return client.predict(handle_file(str(CAT)), "cat, dog, bird", CLIP, "a photo of a {}.", False,
                          api_name="/zero_shot")


@pytest.mark.parametrize("damage", [pytest.param(name, marks=marks) for name, (_, _, marks) in DAMAGE.items()])
def test_damaged_model_fails_alone_and_recovers_once_repaired(app, model_root, tiny_model_dir, damage):
    client, runtime = app
    damage_files, message, _ = DAMAGE[damage]
    folder = model_root / BROKEN
    runtime.unload(BROKEN)  # a resident copy would hide the damage
    damage_files(folder)
    try:
        # Three visitors at once: every one of them gets the clear line, and none waits forever on the others.
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(lambda _: _error_of(lambda: classify(client)), range(3)))
        for outcome in outcomes:
            assert outcome is not None, "the damaged model answered"
            assert re.search(message, outcome) and "\n" not in outcome, outcome
        assert BROKEN not in [entry["model"] for entry in runtime.cache_report()["entries"]]
        # Another tab is untouched.
        answer = client.predict(handle_file(str(CAT)), "What animal is this?", VILT, api_name="/vqa")
        assert answer["answers"]
    finally:
        shutil.rmtree(folder)
        shutil.copytree(tiny_model_dir / BROKEN, folder)
    # Repaired: the next request loads it, no restart needed.
    result = classify(client)
    assert sorted(x["label"] for x in result["labels"]) == ["bird", "cat", "dog"]
    assert BROKEN in [entry["model"] for entry in runtime.cache_report()["entries"]]


def _error_of(call: Callable[[], object]) -> str | None:
    try:
        call()
    except AppError as e:
        return str(e)
    return None
