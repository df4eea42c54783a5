"""The in-process variants of a case: (b) `Runtime.run`, (c) the bare transformers call with the task's settings,
and (d) the peers a user would pick instead (`transformers.pipeline`, faster-whisper)."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.cases import IMAGE, LABELS, QUESTION, SENTIMENT_TEXT, TEMPLATE, Case, result_output
from benchmarks.harness import Measurement, repeat


class InProcess:
    """(b) Runtime.run, (c) the bare transformers call, (d) the peers; models loaded once per model."""

    def __init__(self, model_dir: Path, repeats: int, fw_compute_type: str) -> None:
        import mmdemo.tasks  # noqa: F401  (registers the tasks)
        from mmdemo.backends import local_runtime
        from mmdemo.config import settings_from_env

        self.model_dir = model_dir
        self.repeats = repeats
        self.fw_compute_type = fw_compute_type
        self.runtime = local_runtime(replace(settings_from_env(), model_dir=model_dir))
        self.predictor = self.runtime.predictor  # the local one: its cache's bundles are reachable
        self.device, self.dtype = self.predictor.device, self.predictor.dtype

    # (b)
    def runtime_run(self, case: Case) -> Measurement:
        m = repeat("runtime", lambda: self.runtime.run(case.task, case.raw), self.repeats,
                   output=lambda r: result_output(case, r))
        report = self.runtime.cache_report()
        for entry in report["entries"]:
            if entry["model"] == case.model:
                m.extra["model_load_s"] = entry["load_seconds"]
        return m

    def runtime_new_labels(self, case: Case) -> Measurement:
        """(b) for zero-shot as if every call brought labels the model had not seen: the text tower runs each time."""
        from mmdemo import registry

        task = registry.get(case.task)
        spec = task.model_spec(case.model)

        def call():
            with self.predictor.bundles(task, {"model": spec}) as bundles:
                bundles["model"].memo.clear()
            return self.runtime.run(case.task, case.raw)

        return repeat("(b) runtime, new labels", call, self.repeats, output=lambda r: result_output(case, r))

    def runtime_quantization(self, case: Case) -> str | None:
        """The runtime's CPU format for `case`'s model, if any: quantized Linear layers ("int8", "fp16") or a bf16
        model on a CPU in fp32 ("bf16"). The bare call gets the same."""
        import torch

        from mmdemo import registry

        task = registry.get(case.task)
        spec = task.model_spec(case.model)
        with self.predictor.bundles(task, {"model": spec}) as bundles:
            model = bundles["model"].model
        if bundles["model"].dtype == torch.bfloat16 and self.dtype == torch.float32:
            return "bf16"
        for module in model.modules():
            packed = getattr(module, "_packed_params", None)
            if packed is not None:
                return "fp16" if packed.dtype == torch.float16 else "int8"
        return None

    def release(self) -> None:
        for entry in self.runtime.cache_report()["entries"]:
            self.runtime.unload(entry["model"])
        gc.collect()

    # (c) and (d)
    def path(self, model_id: str) -> Path:
        return self.model_dir / model_id

    def load_model(self, model_id: str, quantize: str | None):
        import torch
        import transformers

        from mmdemo.models.loading import quantize_linear

        config = json.loads((self.path(model_id) / "config.json").read_text())
        cls = getattr(transformers, config["architectures"][0])
        dtype = torch.bfloat16 if quantize == "bf16" else self.dtype
        model = cls.from_pretrained(self.path(model_id), dtype=dtype).to(self.device).eval()
        if quantize in ("int8", "fp16"):
            model = quantize_linear(model, quantize)
        if model_id.startswith(("cardiffnlp/",)):
            processor = transformers.AutoTokenizer.from_pretrained(self.path(model_id))
        else:
            processor = transformers.AutoProcessor.from_pretrained(self.path(model_id))
        return model, processor

    def bare(self, case: Case, quantize: str | None) -> Measurement:
        """(c): processor + forward/generate with the task's settings, on already-decoded inputs."""
        import torch

        holder: dict[str, Any] = {}

        def load():
            holder["model"], holder["processor"] = self.load_model(case.model, quantize)

        inputs = self.decoded_inputs(case)

        def call():
            with torch.inference_mode():
                return bare_call(case)(holder["model"], holder["processor"], inputs, case, self)

        label = {None: "bare", "bf16": "bare (bf16)"}.get(quantize, f"bare ({quantize} linear)")
        m = repeat(label, call, self.repeats, load=load, output=lambda r: r["output"])
        if m.error is None:
            last = call()
            m.extra.update({k: v for k, v in last.items() if k != "output"})
        holder.clear()
        gc.collect()
        return m

    def decoded_inputs(self, case: Case) -> dict[str, Any]:
        from mmdemo.media import load_audio, load_image

        if case.audio is not None:
            return {"samples": load_audio(str(case.audio), max_seconds=3600, target_rate=16_000).samples}
        return {"image": load_image(str(IMAGE), max_pixels=40_000_000)}

    def peers(self, case: Case) -> list[Measurement]:
        """(d): the transformers pipeline for this task (and faster-whisper for speech)."""
        if case.task == "zero_shot":
            return [self._pipeline(case, "zero-shot-image-classification", "pipeline",
                                   lambda p, x: p(x["image"], candidate_labels=list(LABELS),
                                                  hypothesis_template=TEMPLATE),
                                   lambda r: [item["label"] for item in r][:3])]
        if case.task == "sentiment":
            return [self._pipeline(case, "text-classification", "pipeline",
                                   lambda p, x: p(SENTIMENT_TEXT, top_k=None), lambda r: r[0]["label"])]
        if case.task != "speech":
            return []
        multilingual = not case.model.endswith(".en")
        long_form = len(self.decoded_inputs(case)["samples"]) > 30 * 16_000
        greedy = {"num_beams": 1, **({"language": "en", "task": "transcribe"} if multilingual else {})}
        timestamps = {"return_timestamps": True} if long_form else {}
        found = [
            self._pipeline(case, "automatic-speech-recognition", "pipeline greedy",
                           lambda p, x: p(x["samples"].copy(), generate_kwargs=greedy, **timestamps),
                           lambda r: r["text"].strip()),
            self._pipeline(case, "automatic-speech-recognition", "pipeline defaults",
                           lambda p, x: p(x["samples"].copy(), **timestamps), lambda r: r["text"].strip()),
        ]
        found += self._faster_whisper(case)
        return found

    def _pipeline(self, case: Case, task: str, label: str, call: Callable, output: Callable) -> Measurement:
        from transformers import pipeline

        holder: dict[str, Any] = {}
        inputs = self.decoded_inputs(case)

        def load():
            holder["pipe"] = pipeline(task, model=str(self.path(case.model)), device=self.device, dtype=self.dtype)

        m = repeat(label, lambda: call(holder["pipe"], inputs), self.repeats, load=load, output=output)
        holder.clear()
        gc.collect()
        return m

    def _faster_whisper(self, case: Case) -> list[Measurement]:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            return [Measurement("faster-whisper", error="not installed: pip install -r benchmarks/requirements.txt")]
        from benchmarks.bench_models import ensure_ct2_whisper

        samples = self.decoded_inputs(case)["samples"]
        language = None if case.model.endswith(".en") else "en"
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        holder: dict[str, Any] = {}

        def load():
            holder["model"] = WhisperModel(str(ensure_ct2_whisper(case.model)), device=device,
                                           compute_type=self.fw_compute_type)

        def transcribe(**options):
            segments, _info = holder["model"].transcribe(samples, language=language, **options)
            return " ".join(s.text.strip() for s in segments)  # the generator decodes: consume it

        found = []
        for label, options in ((f"faster-whisper {self.fw_compute_type} greedy", {"beam_size": 1}),
                               (f"faster-whisper {self.fw_compute_type} defaults", {})):
            found.append(repeat(label, lambda options=options: transcribe(**options), self.repeats,
                                load=load if not holder else None))
        holder.clear()
        return found


def _to(bench: InProcess, batch: Any, model: Any) -> dict[str, Any]:
    """A processor's tensors on the device, floats in the model's dtype (what ModelBundle.prepare does)."""
    dtype = next(model.parameters()).dtype
    return {k: v.to(bench.device, dtype=dtype) if v.is_floating_point() else v.to(bench.device)
            for k, v in batch.items()}


def _bare_vqa_blip(model, processor, x, case, bench) -> dict[str, Any]:
    from mmdemo.tasks.vqa import MAX_ANSWER_TOKENS

    batch = _to(bench, processor(images=x["image"], text=QUESTION, return_tensors="pt"), model)
    ids = model.generate(**batch, max_new_tokens=MAX_ANSWER_TOKENS)
    return {"output": processor.decode(ids[0], skip_special_tokens=True).strip(), "new_tokens": ids.shape[1] - 1}


def _bare_vqa_vilt(model, processor, x, case, bench) -> dict[str, Any]:
    batch = _to(bench, processor(images=x["image"], text=QUESTION, return_tensors="pt"), model)
    scores, indices = model(**batch).logits[0].float().sigmoid().topk(5)
    return {"output": model.config.id2label[int(indices[0])]}


def _bare_captioning(model, processor, x, case, bench) -> dict[str, Any]:
    batch = _to(bench, processor(images=x["image"], return_tensors="pt"), model)
    beams = case.raw["num_beams"]
    ids = model.generate(**batch, num_beams=beams, num_return_sequences=beams, do_sample=False,
                         max_new_tokens=case.raw["max_new_tokens"])
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    return {"output": texts[0], "new_tokens": ids.shape[1] - 1, "sequences": ids.shape[0]}


def _bare_zero_shot(model, processor, x, case, bench) -> dict[str, Any]:
    siglip = "siglip" in case.model
    prompts = [TEMPLATE.format(label) for label in LABELS]
    batch = _to(bench, processor(text=prompts, images=x["image"], padding="max_length" if siglip else True,
                                 return_tensors="pt"), model)
    logits = model(**batch).logits_per_image.float()
    scores = logits.sigmoid()[0] if siglip else logits.softmax(dim=-1)[0]
    order = scores.argsort(descending=True).tolist()
    return {"output": [LABELS[i] for i in order][:3]}


def _bare_speech(model, processor, x, case, bench) -> dict[str, Any]:
    samples = x["samples"]
    long_form = len(samples) > 30 * 16_000
    kwargs: dict[str, Any] = {"sampling_rate": 16_000, "return_tensors": "pt", "return_attention_mask": True}
    if long_form:
        kwargs.update(truncation=False, padding="longest")
    features = processor.feature_extractor(samples, **kwargs)
    batch = {"input_features": features.input_features.to(bench.device, next(model.parameters()).dtype),
             "attention_mask": features.attention_mask.to(bench.device)}
    options = {} if case.model.endswith(".en") else {"language": "en", "task": "transcribe"}
    if long_form:
        options["return_timestamps"] = True
    ids = model.generate(**batch, **options)
    return {"output": processor.batch_decode(ids, skip_special_tokens=True)[0].strip(), "new_tokens": ids.shape[1]}


def _bare_sentiment(model, tokenizer, x, case, bench) -> dict[str, Any]:
    batch = _to(bench, tokenizer(SENTIMENT_TEXT, truncation=True, max_length=512, return_tensors="pt"), model)
    probs = model(**batch).logits.float().softmax(dim=-1)[0]
    return {"output": model.config.id2label[int(probs.argmax())]}


_BARE: dict[str, Callable[..., dict[str, Any]]] = {
    "vqa/blip": _bare_vqa_blip, "vqa/vilt": _bare_vqa_vilt, "captioning": _bare_captioning,
    "zero_shot": _bare_zero_shot, "speech": _bare_speech, "sentiment": _bare_sentiment,
}


def bare_call(case: Case) -> Callable[..., dict[str, Any]]:
    """(c) for `case`: called as f(model, processor, decoded inputs, case, InProcess)."""
    return _BARE[case.key.split("/")[0] if case.task != "vqa" else case.key]
