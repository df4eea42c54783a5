"""CTranslate2 model.bin reading/writing and the Whisper conversion, on hand-made files and tiny random models."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from mmdemo.offline.ct2_whisper import (
    Ct2FormatError,
    Ct2Model,
    convert_ct2_whisper,
    read_model_bin,
    whisper_state_dict_from_ct2,
)
from mmdemo.testing.ct2_writer import make_ct2_whisper_dir, make_tiny_whisper, whisper_to_ct2, write_model_bin

# --------------------------------------------------------------------------- hand-made model.bin files


def _string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _shape(shape: tuple[int, ...]) -> bytes:
    return struct.pack(f"<B{len(shape)}I", len(shape), *shape)


def _variable_v4(name: str, shape: tuple[int, ...], code: int, raw: bytes) -> bytes:
    return _string(name) + _shape(shape) + struct.pack("<BI", code, len(raw)) + raw


def _variable_v3(name: str, shape: tuple[int, ...], item_size: int, raw: bytes) -> bytes:
    return _string(name) + _shape(shape) + struct.pack("<BI", item_size, len(raw) // item_size) + raw


def test_reader_handles_every_dtype_code_strings_and_aliases(tmp_path):
    variables = [
        _variable_v4("a/f32", (2,), 0, struct.pack("<2f", 1.5, -2.0)),
        _variable_v4("a/i8", (), 1, struct.pack("<b", -3)),
        _variable_v4("a/i16", (3,), 2, struct.pack("<3h", -1, 0, 30000)),
        _variable_v4("a/i32", (2, 2), 3, struct.pack("<4i", 1, -2, 3, 2_000_000_000)),
        _variable_v4("a/f16", (2,), 4, struct.pack("<2e", 0.5, 65504.0)),
        _variable_v4("a/bf16", (1,), 5, struct.pack("<H", 0x3F80)),  # bfloat16 bits of 1.0
        _variable_v4("ünïcode/näme", (), 0, struct.pack("<f", 7.25)),
    ]
    aliases = [("b/alias", "a/f32"), ("decoder/projection/weight", "a/i32")]
    data = struct.pack("<I", 6) + _string("TestSpec") + struct.pack("<II", 2, len(variables)) + b"".join(variables)
    data += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases)
    path = tmp_path / "model.bin"
    path.write_bytes(data)

    model = read_model_bin(path)

    assert (model.spec, model.revision) == ("TestSpec", 2)
    assert model.get("a/f32").tolist() == [1.5, -2.0] and model.get("a/f32").dtype == torch.float32
    assert model.get("a/i8").shape == () and model.get("a/i8").item() == -3 and model.get("a/i8").dtype == torch.int8
    assert model.get("a/i16").tolist() == [-1, 0, 30000] and model.get("a/i16").dtype == torch.int16
    assert model.get("a/i32").tolist() == [[1, -2], [3, 2_000_000_000]] and model.get("a/i32").dtype == torch.int32
    assert model.get("a/f16").tolist() == [0.5, 65504.0] and model.get("a/f16").dtype == torch.float16
    assert model.get("a/bf16").dtype == torch.bfloat16 and model.get("a/bf16").item() == 1.0
    assert model.get("ünïcode/näme").item() == 7.25
    assert model.aliases == dict(aliases)
    assert torch.equal(model.get("b/alias"), model.get("a/f32"))
    with pytest.raises(Ct2FormatError, match="no variable 'missing'"):
        model.get("missing")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_reader_handles_old_versions_with_item_sizes(tmp_path, version):
    variables = [
        _variable_v3("x/float", (2,), 4, struct.pack("<2f", 0.25, 4.0)),
        _variable_v3("x/short", (2,), 2, struct.pack("<2h", -7, 9)),
        _variable_v3("x/byte", (), 1, struct.pack("<b", 5)),
    ]
    data = struct.pack("<I", version)
    if version >= 2:
        data += _string("OldSpec") + struct.pack("<I", 4)
    data += struct.pack("<I", len(variables)) + b"".join(variables)
    if version >= 3:
        data += struct.pack("<I", 1) + _string("x/alias") + _string("x/float")
    (tmp_path / "model.bin").write_bytes(data)

    model = read_model_bin(tmp_path / "model.bin")

    assert model.spec == ("OldSpec" if version >= 2 else "")
    assert model.revision == (4 if version >= 2 else 1)
    assert model.get("x/float").tolist() == [0.25, 4.0]
    assert model.get("x/short").dtype == torch.int16 and model.get("x/short").tolist() == [-7, 9]
    assert model.get("x/byte").item() == 5
    assert model.aliases == ({"x/alias": "x/float"} if version >= 3 else {})


def test_reader_rejects_truncated_files_unknown_versions_and_dtypes(tmp_path):
    good = struct.pack("<I", 6) + _string("S") + struct.pack("<II", 1, 1)
    good += _variable_v4("w", (4,), 0, struct.pack("<4f", 1, 2, 3, 4)) + struct.pack("<I", 0)
    path = tmp_path / "model.bin"

    path.write_bytes(good[:-10])
    with pytest.raises(Ct2FormatError, match=r"truncated: variable 'w' needs bytes"):
        read_model_bin(path)

    path.write_bytes(struct.pack("<I", 7) + good[4:])
    with pytest.raises(Ct2FormatError, match="binary version 7; this reader knows versions 1-6"):
        read_model_bin(path)

    bad_dtype = struct.pack("<I", 6) + _string("S") + struct.pack("<II", 1, 1)
    bad_dtype += _variable_v4("w", (1,), 9, b"\0\0\0\0") + struct.pack("<I", 0)
    path.write_bytes(bad_dtype)
    with pytest.raises(Ct2FormatError, match=r"dtype code 9; valid codes: \[0, 1, 2, 3, 4, 5\]"):
        read_model_bin(path)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_writer_and_reader_round_trip(tmp_path, version):
    variables = {
        "f32": torch.randn(3, 2),
        "i16": torch.tensor([1, -2], dtype=torch.int16),
        "i8": torch.tensor(4, dtype=torch.int8),
    }
    if version >= 4:
        variables |= {
            "f16": torch.randn(5).half(),
            "bf16": torch.randn(2, 2).bfloat16(),
            "i32": torch.tensor([7, -8], dtype=torch.int32),
        }
    aliases = {"alias": "f32"} if version >= 3 else {}
    path = tmp_path / "model.bin"
    write_model_bin(path, Ct2Model("RoundTrip", 3, variables, aliases), version=version)

    model = read_model_bin(path)

    assert model.variables.keys() == variables.keys()
    for name, tensor in variables.items():
        assert model.variables[name].dtype == tensor.dtype and torch.equal(model.variables[name], tensor), name
    assert model.aliases == aliases


def test_writer_refuses_what_an_old_version_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="cannot store torch.float16"):
        write_model_bin(tmp_path / "m.bin", Ct2Model("S", 1, {"h": torch.zeros(2).half()}), version=3)
    with pytest.raises(ValueError, match="cannot store aliases"):
        write_model_bin(tmp_path / "m.bin", Ct2Model("S", 1, {"x": torch.zeros(1)}, {"y": "x"}), version=2)


# --------------------------------------------------------------------------- tiny random Whisper models


def _features(seed: int = 1) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    audio = np.random.default_rng(seed).normal(0, 0.1, 16000 * 3).astype(np.float32)
    return WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt").input_features


@pytest.mark.parametrize(
    ("dtype", "multilingual"),
    [(torch.float32, False), (torch.float16, False), (torch.bfloat16, False), (torch.float16, True)],
    ids=["fp32-english", "fp16-english", "bf16-english", "fp16-multilingual"],
)
def test_round_trip_gives_the_same_weights_and_generate_output(tmp_path, dtype, multilingual):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    source, original, ids = make_ct2_whisper_dir(tmp_path, multilingual, dtype)
    ct2_vars = read_model_bin(source / "model.bin").variables
    assert ct2_vars["encoder/layer_0/self_attention/linear_0/weight"].shape == (96, 32)  # q, k, v fused
    assert ct2_vars["decoder/layer_1/attention/linear_1/weight"].shape == (64, 32)  # cross-attention k, v fused
    assert ct2_vars["decoder/embeddings/weight"].dtype == dtype

    out = convert_ct2_whisper(source, tmp_path / "hf", spelling_map={"colour": "color"})
    converted = WhisperForConditionalGeneration.from_pretrained(out).eval()
    processor = WhisperProcessor.from_pretrained(out)

    # weights: exactly the original's, rounded through the stored dtype
    expected = {name: tensor.to(dtype).to(torch.float32) for name, tensor in original.state_dict().items()}
    got = converted.state_dict()
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == torch.float32 and torch.equal(got[name], tensor), name
    assert converted.config.vocab_size == len(processor.tokenizer) == original.config.vocab_size
    assert converted.config.d_model == 32 and converted.config.decoder_layers == 2
    assert converted.config.encoder_attention_heads == 4

    # generate: the same tokens as the original model with the same (rounded) weights and generation config
    original.load_state_dict(expected)
    original.generation_config = converted.generation_config
    features = _features()
    with torch.inference_mode():
        want = original.generate(features, max_new_tokens=12)
        have = converted.generate(features, max_new_tokens=12)
    assert len(set(have[0].tolist())) >= 4  # a varied sequence, so the comparison means something
    assert torch.equal(have, want)

    # tokenizer: special ids kept, timestamps right after <|notimestamps|>, the spelling map in normalizer.json
    tokenizer = processor.tokenizer
    for token, token_id in ids.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert tokenizer.all_special_ids[-1] == ids["<|notimestamps|>"]
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == ids["<|notimestamps|>"] + 1
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == len(tokenizer) - 1
    assert tokenizer.decode(tokenizer(" the cat").input_ids, skip_special_tokens=True) == " the cat"
    assert tokenizer.normalize("The Colour!") == "the color"
    assert processor.feature_extractor.feature_size == 80


def test_generation_config_for_english_only_and_multilingual(tmp_path):
    from transformers import WhisperForConditionalGeneration

    features = _features()
    for multilingual in (False, True):
        source, _, ids = make_ct2_whisper_dir(tmp_path / str(multilingual), multilingual, torch.float16)
        model = WhisperForConditionalGeneration.from_pretrained(convert_ct2_whisper(source, source.parent / "hf"))
        config = model.generation_config
        assert config.decoder_start_token_id == ids["<|startoftranscript|>"]
        assert config.eos_token_id == config.pad_token_id == ids["<|endoftext|>"]
        assert config.no_timestamps_token_id == ids["<|notimestamps|>"]
        assert config.suppress_tokens == [1, 2, ids["<|startofprev|>"]]
        assert config.begin_suppress_tokens == [ids["<|endoftext|>"]]
        assert config.alignment_heads == [[1, 0], [1, 3]]
        assert config.max_length == 448
        assert config.is_multilingual is multilingual
        if not multilingual:
            assert config.forced_decoder_ids == [[1, ids["<|notimestamps|>"]]]
            assert getattr(config, "lang_to_id", None) is None
            with pytest.raises(ValueError, match="English-only"):
                model.generate(features, language="en", max_new_tokens=2)
            continue
        assert config.forced_decoder_ids == [[1, None], [2, ids["<|transcribe|>"]]]
        assert len(config.lang_to_id) == 99 and config.lang_to_id["<|ru|>"] == ids["<|ru|>"]
        assert config.task_to_id == {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
        with torch.inference_mode():
            russian = model.generate(features, language="ru", max_new_tokens=2, return_dict_in_generate=True)
            translated = model.generate(features, task="translate", max_new_tokens=2, return_dict_in_generate=True)
        assert russian.sequences[0, :3].tolist() == [ids["<|startoftranscript|>"], ids["<|ru|>"], ids["<|transcribe|>"]]
        assert translated.sequences[0, 2].item() == ids["<|translate|>"]


def test_int8_weights_are_dequantized_with_their_scale():
    model = make_tiny_whisper(vocab_size=1800, end_id=263, start_id=264)
    ct2 = whisper_to_ct2(model, torch.float32)
    name = "decoder/layer_0/ffn/linear_0/weight"
    weight = ct2.variables[name]
    scale = 127.0 / weight.abs().amax(dim=1)  # CTranslate2's int8 scheme: one scale per output row
    variables = dict(ct2.variables)
    variables[name] = torch.round(weight * scale.unsqueeze(1)).to(torch.int8)
    variables[f"{name}_scale"] = scale
    state = whisper_state_dict_from_ct2(Ct2Model(ct2.spec, ct2.revision, variables, ct2.aliases))

    restored = state["model.decoder.layers.0.fc1.weight"]
    assert restored.dtype == torch.float32
    assert torch.allclose(restored, weight, atol=float((0.5 / scale).max()) + 1e-7)


def test_convert_names_what_is_missing(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(Ct2FormatError, match="missing config.json, tokenizer.json"):
        convert_ct2_whisper(tmp_path, tmp_path / "out")
