"""Writers of CTranslate2 Whisper models, for test fixtures: `model.bin`, whole directories, tiny random ones.

The app only reads these files (`mmdemo.offline.ct2_whisper`); tests write them to check the reader and the
conversion against a model whose weights they know. `make_ct2_whisper_dir` gives a complete CTranslate2 Whisper
directory for a tiny random model, with a tokenizer.json in Whisper's special-token layout.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from mmdemo.offline.ct2_whisper import (
    DTYPE_BY_ITEM_SIZE,
    DTYPES,
    MODEL_BIN_VERSIONS,
    WHISPER_SPEC,
    WHISPER_SPEC_REVISION,
    Ct2Model,
    fused_names,
    plain_names,
)

DTYPE_CODES = {torch_dtype: code for code, (torch_dtype, _) in DTYPES.items()}  # torch dtype -> CTranslate2 code

# --------------------------------------------------------------------------- model.bin


def write_model_bin(path: Path, model: Ct2Model, version: int = 6) -> None:
    """Write `model` as a CTranslate2 `model.bin` of the given binary version (1 to 6)."""
    if version not in MODEL_BIN_VERSIONS:
        raise ValueError(f"Cannot write binary version {version}; valid versions: {list(MODEL_BIN_VERSIONS)}")
    if version < 3 and model.aliases:
        raise ValueError(f"Binary version {version} cannot store aliases; use version 3 or later")

    def string(text: str) -> bytes:
        raw = text.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    chunks = [struct.pack("<I", version)]
    if version >= 2:
        chunks += [string(model.spec), struct.pack("<I", model.revision)]
    chunks.append(struct.pack("<I", len(model.variables)))
    for name, tensor in model.variables.items():
        if tensor.dtype not in DTYPE_CODES:
            raise ValueError(f"Variable {name!r} has dtype {tensor.dtype}; valid dtypes: {list(DTYPE_CODES)}")
        code = DTYPE_CODES[tensor.dtype]
        raw_tensor = tensor.contiguous().view(torch.int16) if tensor.dtype is torch.bfloat16 else tensor.contiguous()
        raw = raw_tensor.numpy().astype(DTYPES[code][1], copy=False).tobytes()
        chunks += [string(name), struct.pack(f"<B{tensor.dim()}I", tensor.dim(), *tensor.shape)]
        if version >= 4:
            chunks.append(struct.pack("<BI", code, len(raw)))
        else:
            item_size = tensor.element_size()
            if DTYPE_BY_ITEM_SIZE.get(item_size) != code:
                raise ValueError(
                    f"Binary version {version} cannot store {tensor.dtype} ({name!r}); use version 4 or later"
                )
            chunks.append(struct.pack("<BI", item_size, tensor.numel()))
        chunks.append(raw)
    if version >= 3:
        chunks.append(struct.pack("<I", len(model.aliases)))
        for alias, target in model.aliases.items():
            chunks += [string(alias), string(target)]
    Path(path).write_bytes(b"".join(chunks))


# --------------------------------------------------------------------------- Whisper models and directories


def whisper_to_ct2(model, dtype: torch.dtype = torch.float16, alignment_heads: int = 1) -> Ct2Model:
    """A `WhisperForConditionalGeneration` in CTranslate2's WhisperSpec layout, as its converter writes it.

    Weights are cast to `dtype`; q/k/v (and cross-attention k/v) are fused, missing k biases are zeros,
    the output projection is an alias of the embeddings.
    """
    config = model.config
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    variables: dict[str, torch.Tensor] = {}
    for ct2, hf in plain_names(config.encoder_layers, config.decoder_layers):
        variables[ct2] = state[hf].to(dtype)
    for ct2, parts in fused_names(config.encoder_layers, config.decoder_layers):
        variables[f"{ct2}/weight"] = torch.cat([state[f"{p}.weight"] for p in parts]).to(dtype)
        biases = [state.get(f"{p}.bias", torch.zeros(state[f"{p}.weight"].shape[0])) for p in parts]
        variables[f"{ct2}/bias"] = torch.cat(biases).to(dtype)
    scalars = {
        "decoder/activation": torch.tensor(3, dtype=torch.int8),  # CTranslate2's Activation.GELU
        "decoder/alibi": torch.tensor(0, dtype=torch.int8),
        "decoder/alignment_heads": torch.tensor(alignment_heads, dtype=torch.int16),
        "decoder/alignment_layer": torch.tensor(-1, dtype=torch.int16),
        "decoder/num_heads": torch.tensor(config.decoder_attention_heads, dtype=torch.int16),
        "decoder/pre_norm": torch.tensor(1, dtype=torch.int8),
        "decoder/scale_embeddings": torch.tensor(0, dtype=torch.int8),
        "decoder/start_from_zero_embedding": torch.tensor(0, dtype=torch.int8),
        "encoder/num_heads": torch.tensor(config.encoder_attention_heads, dtype=torch.int16),
    }
    variables.update(scalars)
    ordered = dict(sorted(variables.items()))  # CTranslate2 writes variables in name order
    return Ct2Model(
        spec=WHISPER_SPEC,
        revision=WHISPER_SPEC_REVISION,
        variables=ordered,
        aliases={"decoder/projection/weight": "decoder/embeddings/weight"},
    )


def save_ct2_whisper(model, dst_dir: Path, tokenizer_json: Path, ct2_config: dict,
                     dtype: torch.dtype = torch.float16) -> Path:
    """Write a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json) for `model`."""
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    write_model_bin(dst_dir / "model.bin", whisper_to_ct2(model, dtype))
    (dst_dir / "config.json").write_text(json.dumps(ct2_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (dst_dir / "tokenizer.json").write_bytes(Path(tokenizer_json).read_bytes())
    return dst_dir


# --------------------------------------------------------------------------- tiny random Whisper models

SPECIALS_BEFORE_LANGUAGES = ["<|endoftext|>", "<|startoftranscript|>"]
SPECIALS_AFTER_LANGUAGES = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                            "<|nocaptions|>", "<|notimestamps|>"]
WORD_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("Ġ", "c"), ("o", "u"), ("Ġc", "ou")]


def language_tokens() -> list[str]:
    """The 99 language tokens of Whisper v1/v2, in token-id order."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in list(LANGUAGES)[:99]]


def write_whisper_tokenizer_json(path: Path, multilingual: bool) -> dict[str, int]:
    """A byte-level BPE tokenizer.json with Whisper's special-token layout (as CTranslate2 directories carry it).

    The multilingual one is padded with unused tokens to the real multilingual size (51865 with timestamps),
    so its special ids are the real ones. Returns the special tokens' ids.
    """
    from tokenizers import pre_tokenizers

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for left, right in WORD_MERGES:
        vocab[left + right] = len(vocab)
    if multilingual:
        while len(vocab) < 50257:
            vocab[f"unused{len(vocab)}"] = len(vocab)
    specials = SPECIALS_BEFORE_LANGUAGES + language_tokens() + SPECIALS_AFTER_LANGUAGES
    ids = {token: len(vocab) + i for i, token in enumerate(specials)}
    added = [
        {"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for token, i in ids.items()
    ]
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab,
                  "merges": [f"{left} {right}" for left, right in WORD_MERGES]},
    }
    Path(path).write_text(json.dumps(data), encoding="utf-8")
    return ids


def make_tiny_whisper(vocab_size: int, end_id: int, start_id: int, seed: int = 0):
    """A random-weight WhisperForConditionalGeneration: d_model 32, 2 layers each side."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=vocab_size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        init_std=1.0,  # large random weights: generate() then gives varied tokens, not one token repeated
        max_source_positions=1500, max_target_positions=448, bos_token_id=end_id, eos_token_id=end_id,
        pad_token_id=end_id, decoder_start_token_id=start_id, suppress_tokens=None, begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # CTranslate2 stores non-zero biases: make sure every bias is really carried over
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.02)
    return model


def make_ct2_whisper_dir(root: Path, multilingual: bool, dtype: torch.dtype, seed: int = 0):
    """A CTranslate2 Whisper directory ``root/ct2`` for a tiny random model, its weights stored in ``dtype``.

    Returns:
        (the directory, the transformers model it holds, the special tokens' ids).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tokenizer_json = root / "source-tokenizer.json"
    ids = write_whisper_tokenizer_json(tokenizer_json, multilingual)
    vocab_size = ids["<|notimestamps|>"] + 1 + 1501
    model = make_tiny_whisper(vocab_size, ids["<|endoftext|>"], ids["<|startoftranscript|>"], seed)
    with torch.no_grad():  # random weights pick timestamps often, and each one makes generate() loop again
        model.get_output_embeddings().weight[ids["<|notimestamps|>"] + 1 :] = 0
    ct2_config = {
        "alignment_heads": [[1, 0], [1, 3]],
        "lang_ids": [ids[token] for token in language_tokens()],
        "suppress_ids": [1, 2, ids["<|startofprev|>"]],
        "suppress_ids_begin": [ids["<|endoftext|>"]],
    }
    directory = save_ct2_whisper(model, root / "ct2", tokenizer_json, ct2_config, dtype=dtype)
    return directory, model, ids

