"""Tiny Whisper checkpoints, multilingual and English-only, with the real special-token and timestamp layout."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mmdemo.testing.tiny_vocab import byte_level_bpe
from mmdemo.testing.tiny_weights import (
    CHAIN_GAIN,
    CHAIN_WORDS,
    CROSS_STD,
    chain_embeddings_,
    fill_random_,
    head_inputs,
    seed_torch,
    wire_chain_head_,
)


def _whisper_specials() -> list[str]:
    """Whisper's special tokens in the real order: they must end with <|notimestamps|> (timestamps follow it)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    specials = ["<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in LANGUAGES]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    specials += ["<|notimestamps|>"]
    return specials


# the "english spelling" map of normalizer.json; a few real entries are enough
_WHISPER_SPELLING = {"colour": "color", "favourite": "favorite", "grey": "gray", "mum": "mom", "theatre": "theater"}


def _build_whisper(out: Path, seed: int, *, multilingual: bool) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab, merges = byte_level_bpe()
    eot = len(vocab)
    vocab["<|endoftext|>"] = eot
    specials = _whisper_specials()
    timestamps = ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
    for token in specials + timestamps:
        vocab[token] = len(vocab)
    normalizer_json = json.dumps(_WHISPER_SPELLING, indent=2, sort_keys=True) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        normalizer_file = Path(tmp) / "normalizer.json"
        normalizer_file.write_text(normalizer_json, encoding="utf-8")
        tokenizer = WhisperTokenizer(
            vocab=vocab,
            merges=merges,
            normalizer_file=str(normalizer_file),
            extra_special_tokens=specials,
            model_max_length=448,
            pad_token="<|endoftext|>",
        )
    sot = vocab["<|startoftranscript|>"]
    no_ts = vocab["<|notimestamps|>"]
    begin_suppress = [vocab["Ġ"], eot]
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=begin_suppress,
        suppress_tokens=[],
        tie_word_embeddings=False,
    )
    seed_torch(seed)
    model = WhisperForConditionalGeneration(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    decoder = model.model.decoder
    chain_ids = [vocab["Ġ" + w] for w in CHAIN_WORDS]
    # every token that can end the decoder prompt, and the timestamps (a segment starts after one)
    start_ids = [sot, no_ts, vocab["<|transcribe|>"], vocab["<|translate|>"]]
    start_ids += [vocab[f"<|{code}|>"] for code in LANGUAGES] + [vocab[t] for t in timestamps]
    chain_embeddings_(decoder.embed_tokens.weight, chain_ids, start_ids, seed + 3, scale=8.0)
    for layer in decoder.layers:
        fill_random_(layer.encoder_attn.v_proj.weight, CROSS_STD, g)
        fill_random_(layer.encoder_attn.out_proj.weight, CROSS_STD, g)
    features = torch.zeros(1, 80, 3000)
    prompt = [sot, vocab["<|en|>"], vocab["<|transcribe|>"], no_ts]

    def probe(prev_ids):
        with torch.no_grad():
            encoded = model.model.encoder(features)[0].expand(len(prev_ids), -1, -1)
        ids = torch.cat([torch.tensor(prompt).expand(len(prev_ids), -1), prev_ids[:, None]], dim=1)
        return head_inputs(model.proj_out, lambda: model(encoder_outputs=(encoded,), decoder_input_ids=ids))

    # timestamps get a mild negative logit: with return_timestamps=True the timestamp rules place the first one,
    # and their summed probability stays below a chain step's, so they do not interrupt the words
    wire_chain_head_(model.proj_out, probe, chain_ids, start_ids[:4], eot, seed + 4, const_norm=decoder.layer_norm,
                      extra_bias={vocab[t]: -0.5 * CHAIN_GAIN for t in timestamps})

    gen = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=begin_suppress,
        suppress_tokens=[],
    )
    gen.no_timestamps_token_id = no_ts
    gen.prev_sot_token_id = vocab["<|startofprev|>"]
    gen.max_initial_timestamp_index = 50
    gen.alignment_heads = [[1, 0], [1, 1], [1, 2], [1, 3]]
    gen.return_timestamps = False
    gen.is_multilingual = multilingual
    if multilingual:
        gen.lang_to_id = {f"<|{code}|>": vocab[f"<|{code}|>"] for code in LANGUAGES}
        gen.task_to_id = {"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]}
        gen.forced_decoder_ids = [[1, None], [2, vocab["<|transcribe|>"]]]
    else:
        gen.forced_decoder_ids = [[1, no_ts]]
    model.generation_config = gen
    model.save_pretrained(out)
    feature_extractor = WhisperFeatureExtractor(feature_size=80)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out)
    # WhisperTokenizer.save_pretrained no longer writes normalizer.json, and tokenizer.normalize() needs it
    (out / "normalizer.json").write_text(normalizer_json, encoding="utf-8")


def build_whisper_multilingual(out: Path, seed: int) -> None:
    _build_whisper(out, seed, multilingual=True)


def build_whisper_english(out: Path, seed: int) -> None:
    _build_whisper(out, seed, multilingual=False)
