"""The live policy (mmdemo.tasks.speech.live) on scripted hypotheses: LocalAgreement-2, buffer trimming and its
ceiling, the prompt, pauses, silence, bounded state over a long stream, microphone chunk conversion, stream slots.

A fake detector calls any frame with energy speech, so these tests need no model; tests/test_live_real.py streams
real speech through real Whisper and the real VAD.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mmdemo.errors import InputError
from mmdemo.tasks.speech.live import LiveOptions, LiveTranscriber, Word, unrepeated
from mmdemo.tasks.speech.live_input import ChunkConverter, StreamSlots
from mmdemo.tasks.speech.vad import FRAME, SpeechDetector

RATE = 16_000


class EnergyDetector:
    """Speech wherever a 32 ms frame is not silent."""

    def __init__(self) -> None:
        self.pending = np.zeros(0, dtype=np.float32)

    def add(self, samples: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self.pending, samples])
        frames = len(audio) // FRAME
        self.pending = audio[frames * FRAME:]
        return np.array([float(np.abs(audio[i * FRAME:(i + 1) * FRAME]).max() > 0.01) for i in range(frames)])


def speech(seconds: float) -> np.ndarray:
    return (0.3 * np.sin(np.arange(int(seconds * RATE)) * 0.05)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def segment(start: float, end: float | None, text: str) -> dict:
    return {"start": start, "end": end, "words": [{"text": w, "probability": 0.9} for w in text.split()]}


class Script:
    """A step returning scripted hypotheses in turn (the last one repeats), recording what it was asked."""

    def __init__(self, *hypotheses: list[dict]) -> None:
        self.hypotheses = list(hypotheses)
        self.calls: list[tuple[float, str]] = []  # (buffer seconds, prompt)
        self.prefixes: list[str] = []  # the forced start of each call's transcript

    def __call__(self, samples: np.ndarray, prompt: str, prefix: str, language: str | None) -> dict:
        self.calls.append((len(samples) / RATE, prompt))
        self.prefixes.append(prefix)
        index = min(len(self.calls), len(self.hypotheses)) - 1
        return {"language": "en", "segments": self.hypotheses[index]}


def live(step, **options) -> LiveTranscriber:
    return LiveTranscriber(step, LiveOptions(**options), detector=EnergyDetector())


def feed(transcriber: LiveTranscriber, samples: np.ndarray, chunk: float = 1.0) -> list:
    """Feed in chunks, processing after each as the app does; the updates."""
    updates = []
    step = int(chunk * RATE)
    for start in range(0, len(samples), step):
        transcriber.insert(samples[start:start + step])
        updates.append(transcriber.process())
    return updates


def test_local_agreement_commits_what_two_consecutive_hypotheses_share():
    script = Script([segment(0, None, "the quick")], [segment(0, None, "the quick brown fax")],
                    [segment(0, None, "the quick brown fox jumps")],
                    [segment(0, None, "the quick brown fox jumps over")])
    t = live(script)
    updates = feed(t, speech(4.0))
    assert [[w.text for w in u.committed] for u in updates] == [[], ["the", "quick"], ["brown"], ["fox", "jumps"]]
    assert [w.text for w in updates[-1].tentative] == ["over"]
    assert t.committed_text() == "the quick brown fox jumps"


def test_committed_words_are_never_rewritten_when_whisper_changes_its_mind():
    script = Script([segment(0, None, "I scream")], [segment(0, None, "I scream for")],
                    [segment(0, None, "ice cream for you")], [segment(0, None, "ice cream for you all")])
    t = live(script)
    feed(t, speech(4.0))
    # "I scream" was agreed twice and committed; the later reading may not replace it, nor duplicate "for".
    assert t.committed_text().startswith("I scream for")
    assert t.committed_text().count("for") == 1


def test_the_buffer_is_cut_at_a_finished_committed_segment_and_the_prompt_carries_it():
    first = segment(0.0, 1.5, "Hello there.")
    script = Script([first, segment(1.5, None, "how")], [first, segment(1.5, None, "how are")],
                    [segment(0.0, None, "how are you today")], [segment(0.0, None, "how are you today")])
    t = live(script)
    feed(t, speech(2.0))
    assert t.committed_text() == "Hello there. how"
    assert t.buffer_start == pytest.approx(1.5)  # cut at the end of "Hello there."
    feed(t, speech(2.0))
    # The text before the buffer is the prompt, without its full stop (the speaker may only have paused there).
    assert script.calls[-1] == (pytest.approx(2.5), "Hello there")
    # The words committed from the buffer already are the transcript's forced start, not part of the prompt.
    assert script.prefixes == ["", "", "how", "how are"]
    assert t.committed_text() == "Hello there. how are you"  # "today", the last word, may still grow: it waits
    t.finish()
    assert t.committed_text() == "Hello there. how are you today"


def test_the_last_word_waits_for_the_next_one_as_the_buffer_end_may_have_cut_it():
    script = Script([segment(0, None, "when you read these hastily")],
                    [segment(0, None, "when you read these hastily")],
                    [segment(0, None, "when you read these hastily-scrawled pages")],
                    [segment(0, None, "when you read these hastily-scrawled pages you")])
    t = live(script)
    feed(t, speech(4.0))
    assert t.committed_text() == "when you read these hastily-scrawled pages"


def test_committed_words_a_later_hypothesis_splits_differently_cover_only_their_own_letters():
    script = Script([segment(0, None, "these hastily scrawled")], [segment(0, None, "these hastily scrawled pages")],
                    [segment(0, None, "these hastily-scrawled pages you")])
    t = live(script)
    feed(t, speech(3.0))
    assert t.committed_text() == "these hastily scrawled pages"  # not "pages" taken for part of "hastily-scrawled"


def test_a_word_committed_in_part_is_finished_not_repeated_when_a_hyphen_joins_it_to_the_next():
    script = Script([segment(0, None, "when you read these hastily now")],
                    [segment(0, None, "when you read these hastily then")],
                    [segment(0, None, "when you read these hastily-scrawled pages you")])
    t = live(script)
    feed(t, speech(2.0))
    assert t.committed_text() == "when you read these hastily"
    feed(t, speech(2.0))
    assert t.committed_text() == "when you read these hastily scrawled pages"  # not "hastily hastily-scrawled"


def test_a_hypothesis_that_says_four_words_twice_in_a_row_is_cut_before_the_repetition():
    looping = segment(0, None, "the birch canoe my father has revealed the name my father has revealed the name")
    script = Script([looping], [looping])
    t = live(script)
    feed(t, speech(2.0))
    t.finish()
    assert t.committed_text() == "the birch canoe my father has revealed the name"
    words = [Word(w, 0.9, 0.0, 1.0) for w in "ask not what you can do ask what you can do".split()]
    assert unrepeated(words) == len(words)  # a phrase said again later is no loop
    # The buffer said again into the padding after it, the two copies split differently at the start:
    echo = "I'm writing this under an appreciable strain. I am writing this under an appreciable strain."
    words = [Word(w, 0.9, 0.0, 1.0) for w in echo.split()]
    assert " ".join(w.text for w in words[:unrepeated(words)]) == "I'm writing this under an appreciable strain."


def test_an_unsure_word_needs_three_hypotheses_a_sure_one_two():
    def hypothesis(*words: tuple[str, float]) -> list[dict]:
        return [{"start": 0.0, "end": None, "words": [{"text": w, "probability": p} for w, p in words]}]

    script = Script(hypothesis(("she", 0.9), ("had", 0.9), ("your", 0.9), ("dog", 0.3)),
                    hypothesis(("she", 0.9), ("had", 0.9), ("your", 0.9), ("dog", 0.3), ("sue", 0.3)),
                    hypothesis(("she", 0.9), ("had", 0.9), ("your", 0.9), ("dog", 0.4), ("suit", 0.5), ("in", 0.9)))
    t = live(script)
    updates = feed(t, speech(3.0))
    assert [[w.text for w in u.committed] for u in updates] == [[], ["she", "had", "your"], ["dog"]]


def test_a_pause_that_came_while_a_step_ran_still_ends_a_segment():
    """A slow step means one large chunk next: the pause inside it ends the segment there, not at the chunk's end."""
    script = Script([segment(0, 2.0, "good morning")], [segment(0, None, "how are")])
    t = live(script, pause_seconds=0.6, padding_seconds=0.3)
    t.insert(np.concatenate([speech(2.0), silence(1.0), speech(2.0)]))
    update = t.process()
    assert [w.text for w in update.committed] == ["good", "morning"]
    assert script.calls[0][0] == pytest.approx(2.3, abs=0.05)  # decoded to the pause (and its padding) only
    assert t.buffer_start == pytest.approx(2.3, abs=0.05) and t.due()  # the speech after it is decoded next
    t.process()
    assert script.calls[1][0] == pytest.approx(2.7, abs=0.05)


def test_past_its_ceiling_the_buffer_is_cut_at_the_longest_silence_between_words():
    script = Script([segment(0, None, "a long stretch")])
    t = live(script, max_buffer_seconds=8.0, pause_seconds=0.6, padding_seconds=0.3, min_step_seconds=100.0)
    t.insert(np.concatenate([speech(3.0), silence(0.2), speech(3.0), silence(0.4), speech(1.2)]))
    assert not t.due()  # 7.8 s, no pause of 0.6 s: nothing ends a segment yet
    t.insert(speech(0.5))
    t.process()
    # Cut in the middle of the 0.4 s silence (6.2 to 6.6 s), not inside a word, and what was before it committed.
    assert script.calls == [(pytest.approx(6.4, abs=0.07), "")]
    assert t.buffer_start == pytest.approx(6.4, abs=0.07) and t.committed_text() == "a long stretch"


def test_words_committed_after_the_silence_the_ceiling_cuts_at_stay_committed_once():
    script = Script([segment(0, None, "alpha beta gamma delta")], [segment(0, None, "alpha beta gamma delta epsilon")],
                    [segment(0, None, "alpha beta")], [segment(0, None, "gamma delta epsilon zeta eta")])
    t = live(script, max_buffer_seconds=8.0, min_step_seconds=1.0, pause_seconds=0.6)
    t.insert(np.concatenate([speech(3.0), silence(0.4), speech(2.0)]))
    t.process()
    t.insert(speech(1.0))
    t.process()
    assert t.committed_text() == "alpha beta gamma delta"  # "gamma delta" lie after the 0.4 s silence
    t.insert(speech(3.0))
    t.process()  # 9.4 s: past the ceiling, cut in that silence; what lies after it was committed already
    assert script.calls[-1][0] == pytest.approx(3.2, abs=0.07) and t.buffer_start == pytest.approx(3.2, abs=0.07)
    t.process()
    assert script.calls[-1][1] == "alpha beta"  # the prompt: the committed text before the buffer only
    t.finish()
    assert t.committed_text() == "alpha beta gamma delta epsilon zeta eta"


def test_the_buffer_never_outgrows_its_ceiling_even_without_agreement():
    hypotheses = [[segment(0, None, f"word{i} other{i}")] for i in range(60)]  # never agree twice
    script = Script(*hypotheses)
    t = live(script, max_buffer_seconds=8.0)
    feed(t, speech(40.0))
    assert max(seconds for seconds, _ in script.calls) <= 8.0 + 1.0 + 1e-6
    assert len(t.buffer) / RATE <= 9.0
    assert t.committed_count > 0  # the ceiling commits what it cuts


def test_a_pause_ends_the_segment_and_commits_it_whole():
    script = Script([segment(0, None, "good")], [segment(0, 2.0, "good morning everyone")])
    t = live(script, pause_seconds=0.6)
    feed(t, np.concatenate([speech(2.0), silence(1.5)]), chunk=0.5)
    assert t.committed_text() == "good morning everyone"
    assert t.tentative == []
    calls = len(script.calls)
    feed(t, silence(5.0), chunk=0.5)
    assert len(script.calls) == calls  # no decoding during the silence
    assert len(t.buffer) / RATE <= 0.3 + 0.5 + 1e-6  # the silence was dropped but for the padding and a chunk


def test_silence_is_never_decoded_so_nothing_is_hallucinated():
    script = Script([segment(0, None, "Thank you.")])
    t = live(script)
    feed(t, silence(30.0))
    t.finish()
    assert script.calls == [] and t.committed_count == 0


@pytest.mark.parametrize("kind", ["silence", "white noise", "hum"])
def test_the_real_vad_finds_no_speech_in_silence_or_noise(kind):
    rng = np.random.default_rng(0)
    n = 10 * RATE
    audio = {"silence": np.zeros(n), "white noise": 0.05 * rng.standard_normal(n),
             "hum": 0.2 * np.sin(2 * np.pi * 50 * np.arange(n) / RATE)}[kind].astype(np.float32)
    script = Script([segment(0, None, "Thank you.")])
    t = LiveTranscriber(script, LiveOptions())
    feed(t, audio, chunk=0.5)
    t.finish()
    assert script.calls == [] and t.committed_count == 0


def test_ten_minutes_of_talk_keep_the_state_bounded():
    """Speech with short pauses for ten minutes: the buffer, the kept words and traced memory stay flat."""
    counter = iter(range(10**6))

    def step(samples, prompt, prefix, language):
        n = next(counter)
        seconds = len(samples) / RATE
        return {"language": "en", "segments": [segment(0.0, seconds / 2, f"a{n} b{n}"),
                                               segment(seconds / 2, None, f"c{n}")]}

    t = live(step, display_words=100)
    committed = []
    t.on_commit = committed.extend
    pattern = np.concatenate([speech(4.0), silence(0.8)])
    tracemalloc.start()
    sizes = []
    for _ in range(10):
        for _utterance in range(int(60 / 4.8)):
            feed(t, pattern, chunk=0.7)
        sizes.append(tracemalloc.get_traced_memory()[0])
        assert len(t.buffer) / RATE <= t.options.max_buffer_seconds + 1.0
    tracemalloc.stop()
    assert len(t.committed) == 100 and t.committed_count == len(committed) > 300
    assert sizes[-1] - sizes[1] < 200_000, sizes  # bytes: no growth with the stream's length


def test_microphone_chunks_at_8_and_48_khz_stereo_become_16_khz_mono():
    narrow = ChunkConverter()
    out = np.concatenate([narrow.convert((8_000, (np.ones(800) * 1000).astype(np.int16))) for _ in range(10)])
    # The resampler holds back a few milliseconds (its filter's delay) until more audio comes.
    assert out.dtype == np.float32 and RATE - 1600 <= len(out) <= RATE
    assert np.allclose(out[200:-200], 1000 / 32768, atol=0.01)
    wide = ChunkConverter()
    stereo = np.stack([np.full(4800, 0.5), np.full(4800, -0.1)], axis=1).astype(np.float32)
    out = np.concatenate([wide.convert((48_000, stereo)) for _ in range(10)])
    assert RATE - 1600 <= len(out) <= RATE and np.allclose(out[400:-200], 0.2, atol=0.01)
    assert len(wide.convert(None)) == 0
    with pytest.raises(InputError, match="changed its rate"):
        wide.convert((44_100, stereo))
    with pytest.raises(InputError, match="not supported"):
        ChunkConverter().convert((100, stereo))


def test_slots_refuse_extras_and_reclaim_streams_whose_visitor_left():
    class Holder:
        closed = False

        def close(self):
            self.closed = True

    slots = StreamSlots(capacity=4, idle_seconds=30)
    holders = [Holder() for _ in range(20)]
    admitted = [slots.acquire(h, now=0.0) for h in holders]
    assert admitted.count(True) == 4 and admitted[:4] == [True] * 4
    assert slots.acquire(holders[0], now=10.0)  # a running stream keeps its slot
    slots.release(holders[1])
    assert slots.acquire(holders[5], now=10.0) and not slots.acquire(holders[6], now=10.0)
    # holders[2] and [3] stopped sending at 0 s: at 45 s their slots go to others, and they are closed.
    assert slots.acquire(holders[0], now=40.0) and slots.acquire(holders[5], now=40.0)
    assert slots.acquire(holders[6], now=45.0) and holders[2].closed and holders[3].closed
    assert not holders[0].closed and len(slots) == 3


def test_speech_detector_scores_whole_frames_across_chunks():
    detector = SpeechDetector()
    assert len(detector.add(np.zeros(700, dtype=np.float32))) == 1
    assert len(detector.add(np.zeros(400, dtype=np.float32))) == 1  # 188 + 400 = 588: one more frame


def test_a_hypothesis_that_leaves_out_the_committed_words_is_read_again_without_the_prompt():
    """A segment that ends at a silence before the buffer's last speech is decoded without the committed words as
    its forced start (they may lie after the silence). Given the text before the buffer as its prompt, Whisper may
    then skip the buffer's first words, which are committed already; the words after them would be taken for
    committed ones and lost."""
    replies = iter([[segment(0, 2.0, "hello there.")], [segment(0, None, "ask what you")],
                    [segment(0, None, "ask what you can")], [segment(0, None, "for your country")],
                    [segment(0, None, "ask what you can do for your country")], [segment(0, None, "and more")]])
    asked = []

    def step(samples: np.ndarray, prompt: str, prefix: str, language: str | None) -> dict:
        asked.append((prompt, prefix))
        return {"language": "en", "segments": next(replies)}

    t = live(step, pause_seconds=0.6, min_step_seconds=1.0)
    t.insert(np.concatenate([speech(2.0), silence(1.0)]))
    t.process()
    for _ in range(2):
        t.insert(speech(1.0))
        t.process()
    assert t.committed_text() == "hello there. ask what you"
    t.insert(np.concatenate([speech(0.5), silence(0.7), speech(0.5)]))  # a pause, and speech after it
    t.process()
    # "for your country" holds no committed word: read again with neither the prompt nor the forced start.
    assert asked[3:] == [("hello there", ""), ("", "")]
    t.finish()
    assert t.committed_text() == "hello there. ask what you can do for your country and more"
