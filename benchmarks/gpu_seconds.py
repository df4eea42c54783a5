"""Worst-case GPU seconds of mmdemo's heaviest predict calls: real-size configs, random weights, forced lengths."""
# ruff: noqa: F821  (each model is deleted after its timed lambdas ran, to free GPU memory)
import json
import os
import sys
import time

import torch
import transformers as T
from transformers.generation.utils import GenerationMixin

TINY = "--tiny" in sys.argv  # CPU smoke test of this script
dev = "cpu" if TINY else "cuda"
dtype = torch.float32 if TINY else torch.bfloat16
torch.manual_seed(0)
results = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if not TINY else "cpu"}

def shrink(**kw):
    return dict(kw, num_hidden_layers=1) if TINY else kw

def build(cls, config):
    with torch.device(dev):
        model = cls(config)
    return model.to(dtype).eval()

def timed(name, fn, repeat=2):
    if dev == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        with torch.inference_mode():
            fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(round(time.perf_counter() - t, 3))
    results[name] = times
    print(name, times, flush=True)

t0 = time.perf_counter()
timed("cuda_init_first_matmul",
      lambda: (torch.randn(64, 64, device=dev) @ torch.randn(64, 64, device=dev)).sum().item(), 1)

# Captioning: BLIP large, 8 beams x 100 new tokens (the slider maxima), and the defaults (3 beams x 30).
vision_large = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=2 if TINY else 24,
                    num_attention_heads=16, image_size=384, patch_size=16)
text = dict(vocab_size=30524, encoder_hidden_size=1024, num_hidden_layers=1 if TINY else 12)
blip_l = build(T.BlipForConditionalGeneration, T.BlipConfig(text_config=text, vision_config=vision_large))
pixels = torch.randn(1, 3, 384, 384, device=dev, dtype=dtype)
steps = 10 if TINY else 100
timed("blip_large_caption_8beams_100tok", lambda: blip_l.generate(
    pixel_values=pixels, num_beams=8, num_return_sequences=8, max_new_tokens=steps, min_new_tokens=steps))
timed("blip_large_caption_3beams_30tok", lambda: blip_l.generate(
    pixel_values=pixels, num_beams=3, num_return_sequences=3, max_new_tokens=30, min_new_tokens=30))
timed("blip_large_caption_sample10_100tok", lambda: blip_l.generate(
    pixel_values=pixels, do_sample=True, top_p=0.9, top_k=0, num_return_sequences=10, max_new_tokens=steps,
    min_new_tokens=steps))
del blip_l

# VQA: BLIP base (the default), 20 answer tokens.
vqa = build(T.BlipForQuestionAnswering, T.BlipConfig(
    text_config=dict(vocab_size=30524, num_hidden_layers=1 if TINY else 12),
    vision_config=dict(num_hidden_layers=1 if TINY else 12, image_size=384)))
question = torch.randint(1000, 2000, (1, 12), device=dev)
timed("blip_vqa_base_20tok", lambda: vqa.generate(pixel_values=pixels, input_ids=question, max_new_tokens=20,
                                                    min_new_tokens=20))
del vqa

# Zero-shot: CLIP L/14, 50 labels x 8 templates = 400 prompts of 16 tokens, one image.
clip = build(T.CLIPModel, T.CLIPConfig(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                     num_hidden_layers=1 if TINY else 12),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                       num_hidden_layers=1 if TINY else 24, patch_size=14, image_size=224), projection_dim=768))
ids = torch.randint(1000, 40000, (400, 16), device=dev)
img = torch.randn(1, 3, 224, 224, device=dev, dtype=dtype)
timed("clip_large_400_prompts",
      lambda: (clip.get_text_features(input_ids=ids), clip.get_image_features(pixel_values=img)))
del clip

# Speech: one 30 s window decoded to the full 448-token context (worst case, e.g. a hallucination loop).
def whisper(d, layers, heads, ffn):
    return build(T.WhisperForConditionalGeneration, T.WhisperConfig(
        d_model=d, encoder_layers=1 if TINY else layers, decoder_layers=1 if TINY else layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        vocab_size=51865, num_mel_bins=80))
features = torch.randn(1, 80, 3000, device=dev, dtype=dtype)
prompt = torch.tensor([[50258, 50259, 50359, 50363]], device=dev)
n = 20 if TINY else 440
for name, model in (("whisper_small", whisper(768, 12, 12, 3072)), ("whisper_base", whisper(512, 6, 8, 2048))):
    timed(f"{name}_window_{n}tok", lambda m=model: GenerationMixin.generate(
        m, input_features=features, decoder_input_ids=prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False))
    timed(f"{name}_window_100tok", lambda m=model: GenerationMixin.generate(
        m, input_features=features, decoder_input_ids=prompt, max_new_tokens=100, min_new_tokens=100, do_sample=False))
    del model

# Sentiment text: RoBERTa base, 512 tokens.
rob = build(T.RobertaForSequenceClassification, T.RobertaConfig(num_labels=3, max_position_embeddings=514,
                                                              type_vocab_size=1, num_hidden_layers=1 if TINY else 12))
timed("roberta_512tok", lambda: rob(input_ids=torch.randint(5, 1000, (1, 512), device=dev)))
results["total_s"] = round(time.perf_counter() - t0, 1)
out = os.environ.get("OUT", "/tmp")
json.dump(results, open(os.path.join(out, "gpu_seconds.json"), "w"), indent=1)
print(json.dumps(results))
