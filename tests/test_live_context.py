"""A live step's cheaper decoding: the encoder over part of a window (mmdemo.tasks.speech.greedy.encode_prefix), the
timestamps that context allows, how much context a step takes, the loop guard, and one thread per step while several
run. Tiny random checkpoints; tests/test_live_real.py measures the real tiny.en."""

from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path

import pytest
import torch

from mmdemo.models.loading import load_bundle
from mmdemo.tasks.speech import step_threads
from mmdemo.tasks.speech.greedy import GreedyWhisper
from mmdemo.tasks.speech.live_step import context_seconds, max_tokens, repeats_itself

WHISPER = frozenset({"WhisperForConditionalGeneration"})


@pytest.fixture(scope="module")
def greedy(tiny_model_dir) -> GreedyWhisper:
    path = tiny_model_dir / "distil-whisper/distil-small.en"
    return GreedyWhisper(load_bundle(path, device="cpu", dtype=torch.float32, allowed=WHISPER).model)


def features(greedy: GreedyWhisper, frames: int) -> torch.Tensor:
    mels = greedy.model.config.num_mel_bins
    return torch.randn(1, mels, frames, generator=torch.Generator().manual_seed(0))


def test_a_full_window_encodes_as_the_model_does_and_a_prefix_as_the_same_layers(greedy):
    window = features(greedy, greedy.window_frames)
    assert torch.equal(greedy.encode_prefix(window, greedy.window_frames), greedy.encode(window))
    # The layer-by-layer path (taken for any shorter context) run over a whole window gives the model's own output.
    full = greedy.window_frames
    greedy.window_frames = 2 * full
    try:
        assert torch.allclose(greedy.encode_prefix(window, full), greedy.encode(window), atol=1e-5)
    finally:
        greedy.window_frames = full
    short = greedy.encode_prefix(window, 999)  # rounded up to the convolutions' stride
    assert short.shape[1] == 500 and short.shape[2] == greedy.model.config.d_model


def test_a_shorter_context_allows_no_timestamp_after_its_end(greedy):
    begin = greedy.timestamp_begin
    logits = torch.zeros(greedy.model.config.vocab_size)
    greedy._timestamp_rules(logits, [], last_timestamp=begin + 500)
    assert torch.isinf(logits[begin + 501:]).all() and torch.isfinite(logits[begin:begin + 51]).all()
    hidden = greedy.encode_prefix(features(greedy, 1000), 1000)  # 10 s
    tokens = greedy.decode(hidden, greedy.prompt(None, "transcribe", True), timestamps=True)
    assert all(token <= begin + 500 for token in tokens)


def test_the_token_ceiling_stops_a_decode(greedy):
    hidden = greedy.encode_prefix(features(greedy, 1000), 1000)
    tokens, probabilities = greedy.decode_with_probabilities(hidden, greedy.prompt(None, "transcribe", True),
                                                             timestamps=True, max_tokens=3)
    assert len(tokens) <= 3 and len(probabilities) == len(tokens)


def test_a_step_encodes_its_audio_and_a_margin_in_whole_five_seconds_at_least_ten():
    assert [context_seconds(s) for s in (0.5, 7.0, 7.1, 12.0, 19.9, 27.0, 30.0)] == [10, 10, 15, 15, 25, 30, 30]
    assert max_tokens(2.0) == 30


class Letters:
    """A stand-in tokenizer: token i is the letter chr(97 + i % 26)."""

    @staticmethod
    def decode(tokens: list[int]) -> str:
        return "".join(chr(97 + token % 26) for token in tokens)


def test_a_looping_hypothesis_is_told_by_its_length_or_its_compressibility():
    varied = [(7 * i) % 26 + (i // 26) for i in range(40)]
    assert not repeats_itself(Letters(), varied, limit=100, first_special=1000)
    looping = list(range(8)) * 6
    text = Letters.decode(looping).encode()
    assert len(text) / len(zlib.compress(text)) > 2.4 and repeats_itself(Letters(), looping, 100, 1000)
    assert repeats_itself(Letters(), varied[:10], limit=10, first_special=1000)  # ran into the ceiling


@pytest.mark.skipif(not torch.backends.openmp.is_available() or not Path("/proc/self/maps").exists(),
                    reason="torch does not run on OpenMP here, or this is not Linux")
def test_torch_s_openmp_runtime_is_found_beside_another_wheel_s_copy():
    pytest.importorskip("sentencepiece")  # its wheel brings a libgomp of its own; transformers loads it in the app
    assert sum("/libgomp" in line for line in Path("/proc/self/maps").read_text().splitlines()) > 0
    step_threads._libgomp.cache_clear()
    library = step_threads._libgomp()
    torch_root = Path(torch.__file__).resolve().parent
    assert library is not None and Path(library._name).parent in {torch_root / "lib", torch_root.parent / "torch.libs"}


needs_libgomp = pytest.mark.skipif(step_threads._libgomp() is None, reason="torch does not run on libgomp here")


def in_thread(fn):
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


@needs_libgomp
def test_a_thread_can_use_one_thread_without_changing_any_other():
    if torch.get_num_threads() < 2:
        pytest.skip("one CPU thread here already")

    def inside() -> tuple[int, int, int]:
        with step_threads.this_thread_uses(1):
            during = torch.get_num_threads(), in_thread(torch.get_num_threads)
        return *during, torch.get_num_threads()

    before = torch.get_num_threads()
    during, other_thread, after = in_thread(inside)
    assert (during, other_thread, after) == (1, before, before) and torch.get_num_threads() == before


@needs_libgomp
def test_a_live_step_takes_one_thread_while_another_runs():
    if torch.get_num_threads() < 2:
        pytest.skip("one CPU thread here already")
    cpu = torch.device("cpu")
    first_in, release = threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        with step_threads.live_step_threads(cpu):
            seen["alone"] = torch.get_num_threads()
            first_in.set()
            release.wait(10)

    def second() -> None:
        with step_threads.live_step_threads(cpu):
            seen["beside"] = torch.get_num_threads()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    in_thread(second)
    release.set()
    thread.join()
    assert seen == {"alone": torch.get_num_threads(), "beside": 1}


def test_a_live_step_that_asks_again_at_once_waits_behind_those_already_waiting():
    """A stream whose step just ended and who asks straight away for the next may not take its slot back ahead of
    the streams waiting (a plain semaphore lets it), and no more steps run than there are slots."""
    slots = step_threads.FairSlots()
    order, inside, most = [], [0], [0]
    lock = threading.Lock()
    holding = threading.Event()

    def step(name: str) -> None:
        with slots.hold(2):
            with lock:
                order.append(name)
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            with lock:
                inside[0] -= 1

    def greedy_stream() -> None:
        with slots.hold(2), slots.hold(2):  # both slots
            holding.set()
            while len(slots._waiting) < 3:
                time.sleep(0.001)
        step("again")  # asks again the moment it let go

    first = threading.Thread(target=greedy_stream)
    first.start()
    holding.wait(10)
    others = [threading.Thread(target=step, args=(name,)) for name in "abc"]
    for thread in others:
        thread.start()
        while len(slots._waiting) < others.index(thread) + 1:
            time.sleep(0.001)
    for thread in [first, *others]:
        thread.join(10)
    assert sorted(order) == ["a", "again", "b", "c"] and "again" not in order[:2], order
    assert most[0] <= 2 and slots.held == 0
