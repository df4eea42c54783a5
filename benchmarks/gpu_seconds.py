"""Worst-case GPU seconds of mmdemo's heaviest predict calls: real-size configs, random weights, forced lengths.

What the tasks' `gpu_seconds` estimates (the duration a ZeroGPU Space asks for) must cover: each call is built at the
sizes the app allows at most (the sliders' maxima, the largest curated model of a family), generation forced to its
full length, timed twice on the GPU in bf16. Each family's model is freed before the next is built.

    python -m benchmarks.gpu_seconds [--out DIR]   # on a GPU: -> DIR/gpu_seconds.json (default: $OUT, else /tmp)
    python -m benchmarks.gpu_seconds --tiny        # a CPU smoke run of this script: one layer per tower
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class GpuTimer:
    """Builds models on the device in the benchmark's dtype and times calls on them, the GPU synchronized."""

    def __init__(self, tiny: bool) -> None:
        import torch

        self.tiny = tiny
        self.device = "cpu" if tiny else "cuda"
        self.dtype = torch.float32 if tiny else torch.bfloat16
        self.results: dict[str, Any] = {"torch": torch.__version__,
                                        "gpu": "cpu" if tiny else torch.cuda.get_device_name(0)}

    def layers(self, real: int) -> int:
        """`real` layers, or one in a tiny run."""
        return 1 if self.tiny else real

    def build(self, cls: type, config: Any) -> Any:
        import torch

        with torch.device(self.device):
            model = cls(config)
        return model.to(self.dtype).eval()

    def timed(self, name: str, fn: Callable[[], Any], repeat: int = 2) -> None:
        import torch

        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            with torch.inference_mode():
                fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(round(time.perf_counter() - started, 3))
        self.results[name] = times
        print(name, times, flush=True)


def captioning(t: GpuTimer) -> None:
    """BLIP large, 8 beams x 100 new tokens (the slider maxima), sampling 10 x 100, and the defaults (3 beams x 30)."""
    import torch
    import transformers as T

    vision_large = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=2 if t.tiny else 24,
                        num_attention_heads=16, image_size=384, patch_size=16)
    text = dict(vocab_size=30524, encoder_hidden_size=1024, num_hidden_layers=t.layers(12))
    model = t.build(T.BlipForConditionalGeneration, T.BlipConfig(text_config=text, vision_config=vision_large))
    pixels = torch.randn(1, 3, 384, 384, device=t.device, dtype=t.dtype)
    steps = 10 if t.tiny else 100
    t.timed("blip_large_caption_8beams_100tok", lambda: model.generate(
        pixel_values=pixels, num_beams=8, num_return_sequences=8, max_new_tokens=steps, min_new_tokens=steps))
    t.timed("blip_large_caption_3beams_30tok", lambda: model.generate(
        pixel_values=pixels, num_beams=3, num_return_sequences=3, max_new_tokens=30, min_new_tokens=30))
    t.timed("blip_large_caption_sample10_100tok", lambda: model.generate(
        pixel_values=pixels, do_sample=True, top_p=0.9, top_k=0, num_return_sequences=10, max_new_tokens=steps,
        min_new_tokens=steps))


def vqa(t: GpuTimer) -> None:
    """BLIP base (the default), 20 answer tokens."""
    import torch
    import transformers as T

    model = t.build(T.BlipForQuestionAnswering, T.BlipConfig(
        text_config=dict(vocab_size=30524, num_hidden_layers=t.layers(12)),
        vision_config=dict(num_hidden_layers=t.layers(12), image_size=384)))
    pixels = torch.randn(1, 3, 384, 384, device=t.device, dtype=t.dtype)
    question = torch.randint(1000, 2000, (1, 12), device=t.device)
    t.timed("blip_vqa_base_20tok", lambda: model.generate(pixel_values=pixels, input_ids=question, max_new_tokens=20,
                                                            min_new_tokens=20))


def zero_shot(t: GpuTimer) -> None:
    """CLIP L/14, 50 labels x 8 templates = 400 prompts of 16 tokens, one image."""
    import torch
    import transformers as T

    model = t.build(T.CLIPModel, T.CLIPConfig(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                         num_hidden_layers=t.layers(12)),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                           num_hidden_layers=t.layers(24), patch_size=14, image_size=224), projection_dim=768))
    ids = torch.randint(1000, 40000, (400, 16), device=t.device)
    image = torch.randn(1, 3, 224, 224, device=t.device, dtype=t.dtype)
    t.timed("clip_large_400_prompts",
            lambda: (model.get_text_features(input_ids=ids), model.get_image_features(pixel_values=image)))


def speech(t: GpuTimer) -> None:
    """One 30 s window decoded to the full 448-token context (worst case, e.g. a hallucination loop), and to 100."""
    import torch
    import transformers as T
    from transformers.generation.utils import GenerationMixin

    def whisper(d: int, layers: int, heads: int, ffn: int) -> Any:
        return t.build(T.WhisperForConditionalGeneration, T.WhisperConfig(
            d_model=d, encoder_layers=t.layers(layers), decoder_layers=t.layers(layers),
            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
            vocab_size=51865, num_mel_bins=80))

    features = torch.randn(1, 80, 3000, device=t.device, dtype=t.dtype)
    prompt = torch.tensor([[50258, 50259, 50359, 50363]], device=t.device)
    n = 20 if t.tiny else 440
    def window(model: Any, tokens: int) -> Callable[[], Any]:
        # GenerationMixin's plain decoding loop, without WhisperForConditionalGeneration.generate() on top.
        return lambda: GenerationMixin.generate(model, input_features=features, decoder_input_ids=prompt,
                                                max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)

    for name, size in (("whisper_small", (768, 12, 12, 3072)), ("whisper_base", (512, 6, 8, 2048))):
        model = whisper(*size)
        t.timed(f"{name}_window_{n}tok", window(model, n))
        t.timed(f"{name}_window_100tok", window(model, 100))
        del model  # freed before the next is built


def sentiment(t: GpuTimer) -> None:
    """RoBERTa base, 512 tokens."""
    import torch
    import transformers as T

    model = t.build(T.RobertaForSequenceClassification, T.RobertaConfig(
        num_labels=3, max_position_embeddings=514, type_vocab_size=1, num_hidden_layers=t.layers(12)))
    t.timed("roberta_512tok", lambda: model(input_ids=torch.randint(5, 1000, (1, 512), device=t.device)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a CPU smoke run of this script: one layer per tower")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")),
                        help="folder for gpu_seconds.json (default: $OUT, else /tmp)")
    args = parser.parse_args(argv)
    import torch

    torch.manual_seed(0)
    t = GpuTimer(args.tiny)
    started = time.perf_counter()
    t.timed("cuda_init_first_matmul", lambda: (torch.randn(64, 64, device=t.device)
                                              @ torch.randn(64, 64, device=t.device)).sum().item(), 1)
    for family in (captioning, vqa, zero_shot, speech, sentiment):
        family(t)  # each family's model is freed when its function returns
    t.results["total_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_seconds.json").write_text(json.dumps(t.results, indent=1))
    print(json.dumps(t.results))


if __name__ == "__main__":
    main()
