"""Live transcription policy: LocalAgreement-2 over a bounded audio buffer, gated by voice activity.

Plain Python and numpy, no Gradio: the live tab, the simulator (`python -m benchmarks.live`) and the tests drive this
same code. Each decoding step is a callable (`Step`), in the app a Runtime.run of the `speech_live` task.

How a step works (after Macháček et al., 2023, "Turning Whisper into Real-Time Transcription System"):
- Audio arrives in chunks of any length and goes into a buffer; the voice activity detector scores it.
- While the buffer holds no speech, nothing is decoded (this is also what keeps Whisper from hallucinating
  "Thank you." on silence), and the silence is dropped but for a little padding.
- Once at least `min_step_seconds` of new audio arrived, the buffer is decoded with the committed text before it as
  Whisper's prompt (and the words committed from it already as the transcript's start, which the step forces while
  other steps share the CPU). The words that two consecutive hypotheses agree on, beyond what is already committed, are
  committed (LocalAgreement-2); a word Whisper is unsure of (under `sure_probability`) needs three, and the last
  word of a hypothesis waits for the next (the buffer's end may have cut it). The rest is the tentative tail.
  Committed words are never rewritten.
- After a pause of `pause_seconds` the speech before it is decoded once more and committed whole: a segment ends.
  The detector notes every pause as the audio comes, so a pause that came while a slow step ran still ends one.
- The buffer is cut at the end of a finished segment whose words are all committed, and never grows much past
  `max_buffer_seconds`: beyond it, a stretch of talk with no pause is ended at its longest shorter silence (or, with
  none, its finished segments are committed as they are), so every step decodes a bounded buffer however long the
  person talks.
"""

from __future__ import annotations

import difflib
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmdemo.tasks.speech.vad import FRAME_SECONDS, SAMPLE_RATE, SpeechDetector
from mmdemo.tasks.speech.words import normal_word

REPEAT_WORDS = 4  # a hypothesis that says this many words or more twice in a row is cut (`unrepeated`)
ECHO_WORDS = 6  # ... and one that says this many words again anywhere later
MIN_GAP_SECONDS = 0.09  # the shortest silence between speech (three VAD frames) the policy may cut a long stretch at

# (16 kHz mono float32 samples, prompt text, forced start of the transcript, language code or None) -> the
# speech_live task's result: {"language": code, "segments": [{"start", "end" (None: unfinished),
# "words": [{"text", "probability"}]}]}, the forced start included.
Step = Callable[[np.ndarray, str, str, str | None], dict[str, Any]]


@dataclass(frozen=True)
class LiveOptions:
    min_step_seconds: float = 0.5  # new audio that makes a decoding step due
    max_buffer_seconds: float = 20.0  # the buffer's ceiling (a step decodes at most this much audio)
    pause_seconds: float = 0.6  # silence after speech that ends a segment
    speech_threshold: float = 0.5  # a VAD frame with a higher speech probability is speech
    padding_seconds: float = 0.3  # audio kept before speech, so a word's onset is not cut
    prompt_chars: int = 200  # committed text given as Whisper's prompt (as whisper_streaming does)
    forced_start: bool = True  # offer the committed words in the buffer as each step's forced start (see _decode)
    # A word two hypotheses agree on is committed if it is this sure in the latest; a less sure one needs three.
    sure_probability: float = 0.5
    display_words: int = 400  # committed words the state keeps (the full transcript goes to `on_commit`)


@dataclass(frozen=True)
class Word:
    text: str
    probability: float
    start: float  # seconds from the stream's start: its segment's start
    end: float  # its segment's end (the buffer's end while the segment is unfinished)


@dataclass
class LiveUpdate:
    """What one call changed: words committed now, and the tentative tail after all committed words."""

    committed: list[Word] = field(default_factory=list)
    tentative: list[Word] = field(default_factory=list)
    decoded: bool = False  # whether a decoding step ran


@dataclass(frozen=True)
class _Hypothesis:
    words: list[Word]
    closed_ends: list[tuple[int, float]]  # (number of words through a finished segment, its end in seconds)


def unrepeated(words: Sequence[Word], shortest: int = REPEAT_WORDS, echo: int = ECHO_WORDS) -> int:
    """How many of `words` come before Whisper starts repeating itself: a run of at least `shortest` words said
    again straight after itself, or a run of `echo` words said again anywhere later.

    Whisper, tiny.en above all, sometimes says the end of a buffer twice ("my father has revealed the culprit's name
    my father has revealed the culprit's name"), or the whole buffer again into the padding after it ("I'm writing
    this ... no more. I am writing this ... no more."); two hypotheses can agree on that, so it is cut before the
    policy sees it. A speaker who repeats four words in a row, or six anywhere within one buffer, loses the repeat.
    """
    text = [normal_word(w.text) for w in words]
    cut = len(text)
    for end in range(2 * shortest, len(text) + 1):
        size = next((size for size in range(shortest, end // 2 + 1)
                     if text[end - 2 * size:end - size] == text[end - size:end]), None)
        if size is not None:
            cut = end - size
            break
    first: dict[tuple[str, ...], int] = {}  # each run of `echo` words -> where it was first said
    for start in range(min(cut, len(text) - echo + 1)):
        earlier = first.setdefault(tuple(text[start:start + echo]), start)
        if earlier != start:
            # An echo restarts its sentence: cut after the sentence its first run ended in, where there is one.
            ends = [i + 1 for i in range(earlier + echo - 1, start) if words[i].text.endswith((".", "!", "?"))]
            return ends[-1] if ends else start
    return cut


class LiveTranscriber:
    """One live stream's state: bounded buffer, VAD, committed and tentative words.

    Args:
        step: decodes a buffer (see `Step`).
        options: the policy's knobs.
        language: a language code, or None to keep the one Whisper detects first.
        on_commit: told every committed word, in order (e.g. to write the full transcript to a file).
        detector: the voice activity detector (default: a SpeechDetector of its own).
    """

    def __init__(self, step: Step, options: LiveOptions = LiveOptions(), *, language: str | None = None,
                 on_commit: Callable[[list[Word]], None] | None = None, detector: Any = None) -> None:
        self.step = step
        self.options = options
        self.language = language
        self.on_commit = on_commit
        self.detector = detector or SpeechDetector()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # seconds from the stream's start
        self.received = 0.0  # seconds of audio received
        self.last_speech_end = -1.0  # end of the last speech frame, in seconds
        # The silences between speech in the buffer, oldest first, as (end of the speech before, seconds of silence):
        # a step that took long finds the pauses in the audio that arrived meanwhile, and each still ends a segment.
        self._gaps: deque[tuple[float, float]] = deque()
        self.decoded_until = 0.0  # audio time of the last decoding step
        self.committed: deque[Word] = deque(maxlen=options.display_words)
        self.committed_count = 0
        self.tentative: list[Word] = []
        # The committed words that lie in the buffer, normalised: they are matched to each hypothesis (which may
        # split them differently: "I am" as "I'm") and left out of the prompt.
        self._in_buffer: list[str] = []
        self._history: list[list[Word]] = []  # the last two hypotheses' words, in order, the latest last
        self._frames_scored = 0  # VAD frames scored so far

    # --- feeding -------------------------------------------------------------------------------------------------

    def insert(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 samples."""
        samples = np.asarray(samples, dtype=np.float32)
        probabilities = self.detector.add(samples)
        speech = np.flatnonzero(probabilities >= self.options.speech_threshold)
        if speech.size:
            ends = (self._frames_scored + speech + 1) * FRAME_SECONDS
            before = np.concatenate([[self.last_speech_end], ends[:-1]])  # the speech end before each speech frame
            gaps = ends - FRAME_SECONDS - before
            kept = (gaps >= MIN_GAP_SECONDS) & (before >= 0)
            self._gaps.extend(zip(before[kept].tolist(), gaps[kept].tolist(), strict=True))
            self.last_speech_end = float(ends[-1])
        self._frames_scored += len(probabilities)
        self.buffer = np.concatenate([self.buffer, samples])
        self.received += len(samples) / SAMPLE_RATE

    def has_speech(self) -> bool:
        """Whether the buffer holds speech not yet finished with."""
        return self.last_speech_end > self.buffer_start

    def due(self) -> bool:
        """Whether `process` would decode now."""
        return self.has_speech() and (self._segment_end() is not None or self.received - self.decoded_until
                                      >= self.options.min_step_seconds)

    # --- the policy ----------------------------------------------------------------------------------------------

    def process(self) -> LiveUpdate:
        """Decode if due, commit what two hypotheses agree on, trim the buffer; see the module's docstring."""
        if not self.has_speech():
            self._drop_audio(keep=self.options.padding_seconds)
            self.tentative, self._history = [], []
            return LiveUpdate()
        if not self.due():
            return LiveUpdate(tentative=list(self.tentative))
        speech_end = self._segment_end()
        if speech_end is not None:  # the speech ended: decode up to it and commit it whole
            hypothesis = self._decode(until=speech_end)
            covered, matched = self._match_committed(hypothesis.words)
            # Words committed from the audio after the segment's end (hypotheses ran past an earlier pause, or the
            # buffer's ceiling cut it at an earlier silence) stay committed: they lie in the buffer that is left.
            beyond = self._in_buffer[matched:]
            update = self._commit(hypothesis.words[covered:], hypothesis, final=True)
            self._drop_audio(keep=max(0.0, self.received - speech_end))
            self._in_buffer = beyond
            self.decoded_until = min(self.received, speech_end)  # the speech after the pause is not decoded yet
            return update
        hypothesis = self._decode()
        words = hypothesis.words[self._skip_committed(hypothesis.words):]
        tail = [normal_word(w.text) for w in words]
        earlier = [[normal_word(w.text) for w in old[self._skip_committed(old):]] for old in reversed(self._history)]
        previous, before = [*earlier, [], []][:2]
        # The last word is held back: the buffer's end may have cut it ("hastily" for "hastily-scrawled").
        agreed = 0
        while agreed < min(len(tail) - 1, len(previous)) and tail[agreed] == previous[agreed] and (
                words[agreed].probability >= self.options.sure_probability
                or (agreed < len(before) and before[agreed] == tail[agreed])):
            agreed += 1
        return self._commit(words[:agreed], hypothesis, final=False)

    def finish(self) -> LiveUpdate:
        """The stream ended: decode what is left and commit it whole."""
        if not self.has_speech():
            self.tentative = []
            return LiveUpdate()
        hypothesis = self._decode()
        update = self._commit(hypothesis.words[self._skip_committed(hypothesis.words):], hypothesis, final=True)
        self._drop_audio(keep=0.0)
        return update

    # --- helpers -------------------------------------------------------------------------------------------------

    def _segment_end(self) -> float | None:
        """Where a segment of the buffer's speech ends, padding included (None: nowhere yet): at the earliest pause
        of `pause_seconds`; past the buffer's ceiling, at its longest shorter silence (so a long stretch of talk is
        cut between words, not inside one)."""
        while self._gaps and self._gaps[0][0] <= self.buffer_start:
            self._gaps.popleft()  # its speech was dropped already
        pause = self.options.pause_seconds - 1e-9
        gap = next(((end, seconds) for end, seconds in self._gaps if seconds >= pause), None)
        if gap is None and self.received - self.last_speech_end >= pause:
            gap = (self.last_speech_end, self.received - self.last_speech_end)
        if gap is None and self._gaps and self._buffer_seconds() > self.options.max_buffer_seconds:
            gap = max(self._gaps, key=lambda g: (g[1], g[0]))
        if gap is None:
            return None
        end, seconds = gap
        return end + min(self.options.padding_seconds, seconds / 2)  # the padding never reaches the next word

    def prompt(self) -> str:
        """The committed text before the buffer, its last `prompt_chars` characters on word boundaries.

        Its final full stop (or ! or ?) is left out: a segment that a pause ended gets one where the speaker may only
        have paused, and after it Whisper starts the next buffer as a new sentence ("I shall cast" for "and shall
        cast" in vosk_dagon).
        """
        words = list(self.committed)
        if self._in_buffer:
            words = words[:max(0, len(words) - len(self._in_buffer))]
        text = ""
        for word in reversed(words):
            if len(text) + len(word.text) + 1 > self.options.prompt_chars:
                break
            text = f"{word.text} {text}" if text else word.text
        return text.rstrip(".!?")

    def prefix(self) -> str:
        """The committed words in the buffer, as text: offered to each step as its transcript's forced start."""
        words = list(self.committed)[len(self.committed) - len(self._in_buffer):] if self._in_buffer else []
        return "".join(w.text + ("" if w.text.endswith("-") else " ") for w in words).strip()

    def _decode(self, until: float | None = None) -> _Hypothesis:
        samples = self.buffer
        if until is not None:
            samples = samples[:max(1, int((until - self.buffer_start) * SAMPLE_RATE))]
        prompt = self.prompt()
        # The committed words are offered as the transcript's start (the step forces them while the CPU is shared,
        # instead of decoding them again); not where the audio is cut before the buffer's last speech, since they may
        # lie after the cut (a segment ended at an earlier silence).
        forced = self.options.forced_start and (until is None or until >= self.last_speech_end)
        prefix = self.prefix() if forced else ""
        hypothesis = self._read(self.step(samples, prompt, prefix, self.language), len(samples) / SAMPLE_RATE)
        if prompt and self._in_buffer and hypothesis.words and self._last_match(hypothesis.words)[:2] == (0, 0):
            # Not one committed word of the buffer in it: the prompt made Whisper leave out the buffer's first words
            # ("for your country." for "ask what you can do for your country."). Read the buffer again without it.
            hypothesis = self._read(self.step(samples, "", "", self.language), len(samples) / SAMPLE_RATE)
        self.decoded_until = self.received
        return hypothesis

    def _read(self, result: dict[str, Any], duration: float) -> _Hypothesis:
        """A step's result as a hypothesis: its words in stream time, where its segments close, loops cut."""
        self.language = self.language or result.get("language")
        words: list[Word] = []
        closed: list[tuple[int, float]] = []
        for segment in result["segments"]:
            start = self.buffer_start + float(segment["start"])
            end = self.buffer_start + float(duration if segment["end"] is None else segment["end"])
            words += [Word(w["text"], float(w["probability"]), start, end) for w in segment["words"]]
            if segment["end"] is not None:
                closed.append((len(words), end))
        self._split_where_committed_ends(words, closed)
        keep = unrepeated(words)
        return _Hypothesis(words[:keep], [(count, end) for count, end in closed if count <= keep])

    def _skip_committed(self, words: Sequence[Word]) -> int:
        """How many of `words` (a hypothesis from the buffer's start) the committed words in the buffer cover."""
        return self._match_committed(words)[0]

    def _match_committed(self, words: Sequence[Word]) -> tuple[int, int]:
        """(how many of `words` the committed words in the buffer cover, how many of those committed words they
        cover): a hypothesis of audio that ends before the committed words do covers only some of them.

        Consecutive hypotheses may spell and split committed words differently; the committed words are matched to
        the hypothesis' first words in order. After the last match, the committed words left over cover as many
        hypothesis words as come closest to their length in letters ("hastily scrawled" covers "hastily-scrawled",
        "am I" covers "my", not "my fellow").
        """
        done = self._in_buffer
        if not done or not words:
            return 0, 0
        matched_done, matched_head, head = self._last_match(words)
        left = list(itertools.accumulate((len(word) for word in done[matched_done:]), initial=0))
        covered = list(itertools.accumulate((len(word) for word in head[matched_head:]), initial=0))
        k = min(range(len(covered)), key=lambda k: abs(covered[k] - left[-1]))
        j = min(range(len(left)), key=lambda j: abs(left[j] - covered[k]))
        return min(len(words), matched_head + k), matched_done + j

    def _last_match(self, words: Sequence[Word]) -> tuple[int, int, list[str]]:
        """(committed words in the buffer through the last one matched in `words`, hypothesis words through it, the
        hypothesis' first words normalised)."""
        done = self._in_buffer
        head = [normal_word(w.text) for w in words[:len(done) + 5]]
        blocks = [b for b in difflib.SequenceMatcher(None, done, head, autojunk=False).get_matching_blocks()
                  if b.size]
        if not blocks:
            return 0, 0, head
        return blocks[-1].a + blocks[-1].size, blocks[-1].b + blocks[-1].size, head

    def _split_where_committed_ends(self, words: list[Word], closed: list[tuple[int, float]]) -> None:
        """Where the committed words end inside a hyphenated word of a hypothesis ("hastily" was committed, the
        hypothesis now says "hastily-scrawled"), split it at that hyphen, in place, so that only the rest of it
        ("scrawled") is new. Otherwise the whole word would be committed after its first part."""
        if not self._in_buffer or not words:
            return
        matched_done, matched_head, head = self._last_match(words)
        left = sum(len(word) for word in self._in_buffer[matched_done:])
        letters = 0
        for index in range(matched_head, len(head)):
            if letters + len(head[index]) > left:
                break
            letters += len(head[index])
        else:
            return
        if letters == left:
            return
        word, parts = words[index], words[index].text.split("-")
        for cut in range(1, len(parts)):
            if letters + len(normal_word("".join(parts[:cut]))) == left:
                words[index:index + 1] = [Word("-".join(parts[:cut]) + "-", word.probability, word.start, word.end),
                                          Word("-".join(parts[cut:]), word.probability, word.start, word.end)]
                closed[:] = [(count + (count > index), end) for count, end in closed]
                return
    def _commit(self, new: list[Word], hypothesis: _Hypothesis, *, final: bool) -> LiveUpdate:
        """Commit `new` (the words after the committed ones in `hypothesis`), then trim the buffer."""
        words = hypothesis.words
        through = self._skip_committed(words) + len(new)  # hypothesis words now committed
        if final:
            through = len(words)
        elif self._buffer_seconds() > self.options.max_buffer_seconds:
            # Too long without an agreed segment end: take the finished segments as they are.
            forced = max((count for count, _ in hypothesis.closed_ends if count > through), default=None)
            if forced is None:
                forced = len(words)
            new = new + words[through:forced]
            through = forced
        if new:
            self.committed.extend(new)
            self.committed_count += len(new)
            if self.on_commit:
                self.on_commit(list(new))
        self._in_buffer += [normal_word(w.text) for w in new]  # what is committed now lies in the buffer too
        self._history = [*self._history[-1:], list(words)]
        if final:
            self._in_buffer, self._history, self.tentative = [], [], []
            return LiveUpdate(committed=list(new), decoded=True)
        # Cut the buffer at the end of the last finished segment whose words are all committed.
        cut = max(((count, end) for count, end in hypothesis.closed_ends if count <= through and count < len(words)),
                  default=None)
        if cut is None and through == len(words) and self._buffer_seconds() > self.options.max_buffer_seconds:
            cut = (len(words), self.buffer_start + self._buffer_seconds())
        if cut is not None:
            count, end = cut
            self._cut_buffer(end)
            self._in_buffer = self._in_buffer[self._match_committed(words[:count])[1]:]
            self._history = [old[count:] for old in self._history]
        self.tentative = words[through:]
        return LiveUpdate(committed=list(new), tentative=list(self.tentative), decoded=True)

    def _buffer_seconds(self) -> float:
        return len(self.buffer) / SAMPLE_RATE

    def _cut_buffer(self, at: float) -> None:
        """Drop the buffer's audio before `at` seconds (from the stream's start)."""
        drop = min(len(self.buffer), max(0, int(round((at - self.buffer_start) * SAMPLE_RATE))))
        self.buffer = self.buffer[drop:].copy()
        self.buffer_start += drop / SAMPLE_RATE

    def _drop_audio(self, keep: float) -> None:
        """Keep only the last `keep` seconds of the buffer; nothing committed lies in the dropped part."""
        self._cut_buffer(self.buffer_start + self._buffer_seconds() - keep)
        self._in_buffer, self._history = [], []

    def close(self) -> None:
        """Free the audio and the detector (the stream is over or abandoned)."""
        self.buffer = np.zeros(0, dtype=np.float32)
        self.detector = None
        self.tentative, self._history, self._in_buffer = [], [], []

    # --- views ---------------------------------------------------------------------------------------------------

    def committed_text(self) -> str:
        return " ".join(w.text for w in self.committed)
