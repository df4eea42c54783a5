"""Transcript downloads: plain text, SubRip (.srt) and WebVTT (.vtt) from timed segments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FORMATS = ("txt", "srt", "vtt")


def _clock(seconds: float, separator: str) -> str:
    milliseconds = max(0, round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(segments: Sequence[dict[str, Any]]) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, blank line between cues."""
    cues = [
        f"{index}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text'].strip()}\n"
        for index, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[dict[str, Any]]) -> str:
    """WebVTT: a header, then `HH:MM:SS.mmm --> HH:MM:SS.mmm` cues."""
    cues = [f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text'].strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def render(fmt: str, text: str, segments: Sequence[dict[str, Any]]) -> str:
    """The transcript in one of FORMATS; timed formats need segments (one spanning cue otherwise)."""
    if fmt == "txt":
        return text.strip() + "\n"
    if fmt == "srt":
        return to_srt(segments)
    if fmt == "vtt":
        return to_vtt(segments)
    raise ValueError(f"Unknown transcript format {fmt!r}: choose one of {', '.join(FORMATS)}")
