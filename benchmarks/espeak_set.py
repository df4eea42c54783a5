"""A held-out English speech set for word error rates: sentences written for it, spoken by espeak-ng.

Every sentence is said by four voices, two at each of two rates, so a sentence is heard at both speeds and every
voice speaks at both across the set. espeak-ng writes each at its own rate (22.05 kHz), sox makes it 16 kHz mono
16-bit WAV (repeatable mode, no dither), and `manifest.json` beside the files holds each clip's reference text.
The set is built once per version: the version is a hash of the sentences, voices, rates and the espeak-ng and sox
versions, so the same version means the same files (their sha256 are in the manifest and checked on a rebuild).

    python -m benchmarks.espeak_set [--out DIR]   # default ~/.cache/mmdemo-bench/espeak-set

Public API: `ensure_espeak_set(out) -> Path` (the manifest), `load_espeak_set(out) -> list[dict]`.
Needs espeak-ng and sox on PATH (`apt-get install -y espeak-ng sox`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_OUT = Path(os.environ.get("MMDEMO_BENCH_CACHE", Path.home() / ".cache" / "mmdemo-bench")) / "espeak-set"
SAMPLE_RATE = 16_000
# espeak-ng voices: American and British male, Received Pronunciation, and an American female variant.
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-us+f3")
RATES = (150, 195)  # words per minute: a little under and over espeak-ng's default of 175

# Written for this set (not taken from any corpus): numbers, names, dates, questions, short and long.
SENTENCES = (
    "The train to Manchester leaves at a quarter past seven every weekday morning.",
    "Could you please send me the report before Friday afternoon?",
    "My grandmother was born on the fourth of July, nineteen forty two.",
    "There are twenty three apples and eleven oranges in the basket.",
    "Doctor Patel asked the patient to breathe slowly and count to ten.",
    "Why did the museum close three hours earlier than usual yesterday?",
    "The bridge is about two hundred meters long and very narrow.",
    "Oliver and Margaret painted the kitchen a pale shade of green.",
    "Turn left at the bakery, then walk straight for five minutes.",
    "Rain is expected tonight, so bring an umbrella and a warm coat.",
    "How many students passed the final exam in December?",
    "The company hired forty new engineers in the first quarter.",
    "She keeps her bicycle in the garage next to the old piano.",
    "On Tuesday the committee voted eight to three against the proposal.",
    "A small black dog followed us all the way back to the hotel.",
    "Is it true that the library will open on Sundays from next month?",
    "The recipe needs two cups of flour, one egg and a pinch of salt.",
    "Professor Nakamura will give a lecture about volcanoes in Japan.",
    "We drove six hundred kilometers across the desert in a single day.",
    "Please remember to switch off the lights when you leave the office.",
    "The concert starts at half past eight, but the doors open at seven.",
    "Where did you put the keys to the blue car?",
    "In nineteen ninety nine the village had fewer than a thousand people.",
    "The children built a sandcastle with towers, walls and a deep moat.",
    "Thomas forgot his passport at home and missed the morning flight.",
    "Our neighbors grow tomatoes, beans and sunflowers in their garden.",
    "The meeting has been moved from Monday to Wednesday at noon.",
    "What time does the last bus leave for the airport?",
    "The river flooded the lower fields after three days of heavy rain.",
    "Every winter the lake freezes and people skate across it.",
    "Maria plays the violin in an orchestra that tours South America.",
    "The price of coffee went up by fifteen percent this year.",
    "Can you tell me the way to the nearest railway station?",
    "A strong wind knocked down two trees near the school on Saturday.",
    "He wrote his first novel when he was only nineteen years old.",
    "The hospital opened a new wing for children in October.",
    "Bring a pencil, an eraser and a ruler to the test tomorrow.",
    "The old lighthouse has guided ships along this coast for a century.",
    "Would you like tea or coffee with your breakfast?",
    "The scientists counted more than five thousand birds on the island.",
    "Samuel repaired the fence, cleaned the windows and fed the horses.",
    "The film was long, but the ending surprised almost everyone.",
)


def _tool_version(command: list[str]) -> str:
    """The first line a tool prints about its version (part of the set's version)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"{command[0]} is needed to build the espeak set: apt-get install -y espeak-ng sox") from e
    return (done.stdout or done.stderr).strip().splitlines()[0]


def set_version() -> str:
    """A hash of everything that decides the files: sentences, voices, rates, rate of the WAVs, tool versions."""
    recipe = {
        "sentences": SENTENCES, "voices": VOICES, "rates": RATES, "sample_rate": SAMPLE_RATE,
        "espeak": _tool_version(["espeak-ng", "--version"]), "sox": _tool_version(["sox", "--version"]),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def renditions() -> list[tuple[int, str, int]]:
    """(sentence index, voice, rate) for every clip: each sentence in every voice, two voices at each rate."""
    return [(i, voice, RATES[(i + j) % len(RATES)]) for i in range(len(SENTENCES)) for j, voice in enumerate(VOICES)]


def _speak(text: str, voice: str, rate: int, out: Path, scratch: Path) -> None:
    """espeak-ng -> sox: `text` as a 16 kHz mono 16-bit WAV at `out`."""
    raw = scratch / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), "--", text], check=True,
                   capture_output=True)
    # -R: repeatable (fixed seeds, no time stamps); -D: no dither; rate -v: sox's very high quality resampler.
    subprocess.run(["sox", "-R", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out),
                    "rate", "-v"], check=True, capture_output=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_espeak_set(out: Path = DEFAULT_OUT, progress=print) -> Path:
    """Build the set under `out` unless this version is there already; the manifest's path.

    Args:
        out: the folder of the set (its WAVs and manifest.json).
        progress: told what is being built.
    Returns:
        `out / "manifest.json"`.
    """
    out = Path(out)
    manifest_path = out / "manifest.json"
    version = set_version()
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("version") == version and all((out / c["file"]).is_file() for c in manifest["clips"]):
            return manifest_path
    progress(f"building the espeak set {version} ({len(renditions())} clips) in {out} ...")
    previous = _previous_hashes(manifest_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".espeak-set-", dir=out.parent))
    try:
        clips = []
        for index, voice, rate in renditions():
            name = f"s{index:02d}_{voice.replace('+', '_')}_{rate}.wav"
            _speak(SENTENCES[index], voice, rate, tmp / name, tmp)
            clips.append({"file": name, "sentence": index, "voice": voice, "rate": rate,
                          "text": SENTENCES[index], "sha256": _sha256(tmp / name)})
        (tmp / "espeak.wav").unlink(missing_ok=True)
        changed = [c["file"] for c in clips if previous.get(c["file"], c["sha256"]) != c["sha256"]]
        if changed and _previous_version(manifest_path) == version:
            raise RuntimeError(f"espeak set {version} is not repeatable here: {len(changed)} files changed "
                               f"(first {changed[0]})")
        words = sum(len(c["text"].split()) for c in clips)
        manifest = {"version": version, "voices": VOICES, "rates": RATES, "sample_rate": SAMPLE_RATE,
                    "sentences": len(SENTENCES), "words": words, "clips": clips}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"  {len(clips)} clips, {words} words")
    return manifest_path


def _previous_hashes(manifest_path: Path) -> dict[str, str]:
    if not manifest_path.is_file():
        return {}
    return {c["file"]: c["sha256"] for c in json.loads(manifest_path.read_text()).get("clips", [])}


def _previous_version(manifest_path: Path) -> str | None:
    return json.loads(manifest_path.read_text()).get("version") if manifest_path.is_file() else None


def load_espeak_set(out: Path = DEFAULT_OUT) -> list[dict]:
    """The set's clips (built if missing), each with an absolute `path`, its `text` and how it was spoken."""
    manifest_path = ensure_espeak_set(out)
    clips = json.loads(manifest_path.read_text())["clips"]
    return [{**clip, "path": str(manifest_path.parent / clip["file"])} for clip in clips]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the set goes (default {DEFAULT_OUT})")
    parser.add_argument("--verify", action="store_true", help="rebuild in a scratch folder and compare every file's "
                        "sha256 with the set's manifest (is the build repeatable here?)")
    args = parser.parse_args(argv)
    manifest_path = ensure_espeak_set(args.out)
    manifest = json.loads(manifest_path.read_text())
    print(f"{manifest_path}: version {manifest['version']}, {len(manifest['clips'])} clips, "
          f"{manifest['sentences']} sentences, {manifest['words']} words")
    if args.verify:
        with tempfile.TemporaryDirectory() as scratch:
            again = json.loads(ensure_espeak_set(Path(scratch) / "set", progress=lambda _: None).read_text())
        same = [a["sha256"] == b["sha256"] for a, b in zip(manifest["clips"], again["clips"], strict=True)]
        print(f"rebuilt: {sum(same)}/{len(same)} files identical")


if __name__ == "__main__":
    main()
