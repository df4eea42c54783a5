"""CTranslate2 Whisper models: read `model.bin`, convert a model directory to a transformers checkpoint.

CTranslate2 ("faster-whisper") directories hold `model.bin` (the weights, often float16), CTranslate2's
`config.json` (suppressed tokens, language ids, alignment heads) and the Hugging Face `tokenizer.json`.
`convert_ct2_whisper` turns one into a directory that `WhisperForConditionalGeneration.from_pretrained` and
`WhisperProcessor.from_pretrained` load: float32 safetensors, processor files and a generation config.
The writing side (`model.bin` and whole directories, for test fixtures) is `mmdemo.testing.ct2_writer`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

MODEL_BIN_VERSIONS = range(1, 7)  # binary versions this reader knows; CTranslate2 writes 6 today
WHISPER_SPEC = "WhisperSpec"
WHISPER_SPEC_REVISION = 3

# dtype code (the DataType enum of CTranslate2) -> (torch dtype, numpy dtype of the raw little-endian bytes)
DTYPES: dict[int, tuple[torch.dtype, str]] = {
    0: (torch.float32, "<f4"),
    1: (torch.int8, "i1"),
    2: (torch.int16, "<i2"),
    3: (torch.int32, "<i4"),
    4: (torch.float16, "<f2"),
    5: (torch.bfloat16, "<u2"),  # numpy has no bfloat16: read the bits, then view them in torch
}
# Before version 4 only the item size was stored, and CTranslate2 read it with this (lossy) rule.
DTYPE_BY_ITEM_SIZE = {4: 0, 2: 2, 1: 1}


class Ct2FormatError(ValueError):
    """A model.bin or model directory that cannot be read or converted; the message says what is wrong."""


@dataclass(frozen=True)
class Ct2Model:
    """The content of a CTranslate2 `model.bin`."""

    spec: str  # model specification name, e.g. "WhisperSpec" ("" in version 1 files)
    revision: int  # specification revision
    variables: dict[str, torch.Tensor]  # name -> tensor in its stored dtype; scalars have shape ()
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> name of the variable it shares

    def get(self, name: str) -> torch.Tensor:
        """The variable `name`, following an alias."""
        target = self.aliases.get(name, name)
        try:
            return self.variables[target]
        except KeyError as e:
            raise Ct2FormatError(f"model.bin has no variable {name!r} (spec {self.spec!r})") from e

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables


# --------------------------------------------------------------------------- model.bin reading


class _Reader:
    """Little-endian cursor over the bytes of one model.bin, with errors that name the file and offset."""

    def __init__(self, data: bytes | bytearray, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int, what: str) -> int:
        start = self.pos
        if start + size > len(self.data):
            raise Ct2FormatError(
                f"{self.path} is truncated: {what} needs bytes {start}..{start + size} "
                f"but the file has {len(self.data)}"
            )
        self.pos += size
        return start

    def unpack(self, fmt: str, what: str):
        start = self.take(struct.calcsize("<" + fmt), what)
        return struct.unpack_from("<" + fmt, self.data, start)

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", what)
        start = self.take(length, what)
        raw = bytes(self.data[start : start + length])
        return raw.split(b"\0", 1)[0].decode("utf-8")  # the stored length counts a trailing NUL


def read_model_bin(path: Path) -> Ct2Model:
    """Read a CTranslate2 `model.bin` (binary versions 1 to 6).

    Args:
        path: the file.
    Returns:
        Its spec name, revision, variables (torch tensors in the stored dtype) and aliases.
    Raises:
        Ct2FormatError: unknown version or dtype, or a truncated file.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    reader = _Reader(data, path)
    (version,) = reader.unpack("I", "the binary version")
    if version not in MODEL_BIN_VERSIONS:
        raise Ct2FormatError(
            f"{path} has binary version {version}; this reader knows versions "
            f"{MODEL_BIN_VERSIONS.start}-{MODEL_BIN_VERSIONS.stop - 1}"
        )
    spec, revision = "", 1
    if version >= 2:
        spec = reader.string("the spec name")
        (revision,) = reader.unpack("I", "the spec revision")
    (count,) = reader.unpack("I", "the variable count")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(count):
        name = reader.string("a variable name")
        (rank,) = reader.unpack("B", f"the rank of {name!r}")
        shape = reader.unpack(f"{rank}I", f"the shape of {name!r}") if rank else ()
        if version >= 4:
            code, num_bytes = reader.unpack("BI", f"the dtype of {name!r}")
        else:
            item_size, num_items = reader.unpack("BI", f"the item size of {name!r}")
            if item_size not in DTYPE_BY_ITEM_SIZE:
                raise Ct2FormatError(f"{path}: variable {name!r} has item size {item_size}; valid sizes: 1, 2, 4")
            code, num_bytes = DTYPE_BY_ITEM_SIZE[item_size], item_size * num_items
        if code not in DTYPES:
            raise Ct2FormatError(f"{path}: variable {name!r} has dtype code {code}; valid codes: {sorted(DTYPES)}")
        torch_dtype, np_dtype = DTYPES[code]
        start = reader.take(num_bytes, f"variable {name!r}")
        item = np.dtype(np_dtype).itemsize
        if num_bytes != item * int(np.prod(shape, dtype=np.int64)):
            raise Ct2FormatError(f"{path}: variable {name!r} has {num_bytes} bytes, which does not fit shape {shape}")
        array = np.frombuffer(data, dtype=np_dtype, count=num_bytes // item, offset=start).copy()
        tensor = torch.from_numpy(array)
        if torch_dtype is torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        variables[name] = tensor.reshape(shape)
    aliases: dict[str, str] = {}
    if version >= 3:
        (num_aliases,) = reader.unpack("I", "the alias count")
        for _ in range(num_aliases):
            alias = reader.string("an alias name")
            aliases[alias] = reader.string(f"the target of alias {alias!r}")
    if reader.pos != len(data):
        raise Ct2FormatError(f"{path} has {len(data) - reader.pos} unexpected bytes after the last record")
    return Ct2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


# --------------------------------------------------------------------------- Whisper weights


def _float_weight(model: Ct2Model, name: str) -> torch.Tensor:
    """A weight as float32, dequantizing int8/int16 weights with their stored `<name>_scale`."""
    tensor = model.get(name)
    if tensor.is_floating_point():
        return tensor.to(torch.float32)
    scale_name = f"{name}_scale"
    if not model.has(scale_name):
        raise Ct2FormatError(f"Quantized variable {name!r} ({tensor.dtype}) has no {scale_name!r} to dequantize it")
    scale = model.get(scale_name).to(torch.float32)
    if scale.dim() == 1:  # int8: one scale per output row
        scale = scale.unsqueeze(1)
    return tensor.to(torch.float32) / scale


def _count_layers(model: Ct2Model, prefix: str) -> int:
    count = 0
    while model.has(f"{prefix}/layer_{count}/ffn/linear_0/bias"):
        count += 1
    return count


def _scalar(model: Ct2Model, name: str) -> int:
    return int(model.get(name).item())


def whisper_config_from_ct2(model: Ct2Model, **token_ids: int | list[int] | None):
    """A `WhisperConfig` whose dimensions are read from the weight shapes (and the stored head counts).

    Args:
        model: a read `model.bin` with spec WhisperSpec.
        token_ids: extra config fields (bos/eos/pad/decoder_start token ids, suppress_tokens, ...).
    """
    from transformers import WhisperConfig

    if model.spec != WHISPER_SPEC:
        raise Ct2FormatError(f"model.bin holds a {model.spec!r} model, not {WHISPER_SPEC!r}")
    embeddings = model.get("decoder/embeddings/weight")
    conv1 = model.get("encoder/conv1/weight")
    return WhisperConfig(
        vocab_size=embeddings.shape[0],
        d_model=embeddings.shape[1],
        num_mel_bins=conv1.shape[1],
        encoder_layers=_count_layers(model, "encoder"),
        decoder_layers=_count_layers(model, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=model.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=model.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=model.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=model.get("decoder/position_encodings/encodings").shape[0],
        **token_ids,
    )


_EMBEDDINGS = [
    ("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
    ("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
    ("decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
]


def _layer_pairs(ct2: str, hf: str) -> list[tuple[str, str]]:
    """(CTranslate2 name, transformers name) for a linear layer's weight and bias or a LayerNorm's gamma and beta."""
    if ct2.endswith("layer_norm"):
        return [(f"{ct2}/gamma", f"{hf}.weight"), (f"{ct2}/beta", f"{hf}.bias")]
    return [(f"{ct2}/weight", f"{hf}.weight"), (f"{ct2}/bias", f"{hf}.bias")]


def plain_names(encoder_layers: int, decoder_layers: int) -> list[tuple[str, str]]:
    """(CTranslate2 name, transformers name) of every variable that maps one to one (no fused projections)."""
    pairs = [
        ("encoder/conv1", "model.encoder.conv1"),
        ("encoder/conv2", "model.encoder.conv2"),
        ("encoder/layer_norm", "model.encoder.layer_norm"),
        ("decoder/layer_norm", "model.decoder.layer_norm"),
    ]
    for side, count in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        for i in range(count):
            ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            pairs += [
                (f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
                (f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
                (f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
                (f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
                (f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
            ]
            if side == "decoder":
                pairs += [
                    (f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj"),
                    (f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj"),
                    (f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm"),
                ]
    return _EMBEDDINGS + [pair for ct2, hf in pairs for pair in _layer_pairs(ct2, hf)]


def fused_names(encoder_layers: int, decoder_layers: int) -> list[tuple[str, list[str]]]:
    """CTranslate2 linear layers that fuse projections along the output dimension, with the parts in order."""
    fused = []
    for side, count in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        for i in range(count):
            hf = f"model.{side}.layers.{i}"
            fused.append((f"{side}/layer_{i}/self_attention/linear_0", [f"{hf}.self_attn.{p}_proj" for p in "qkv"]))
            if side == "decoder":
                fused.append((f"{side}/layer_{i}/attention/linear_1", [f"{hf}.encoder_attn.{p}_proj" for p in "kv"]))
    return fused


def whisper_state_dict_from_ct2(model: Ct2Model) -> dict[str, torch.Tensor]:
    """The transformers `WhisperForConditionalGeneration` state dict (float32) of a CTranslate2 Whisper model."""
    encoder_layers, decoder_layers = _count_layers(model, "encoder"), _count_layers(model, "decoder")
    state: dict[str, torch.Tensor] = {}
    for ct2, hf in plain_names(encoder_layers, decoder_layers):
        state[hf] = _float_weight(model, ct2)
    for ct2, parts in fused_names(encoder_layers, decoder_layers):
        weights = _float_weight(model, f"{ct2}/weight").chunk(len(parts), dim=0)
        biases = _float_weight(model, f"{ct2}/bias").chunk(len(parts), dim=0)
        for part, weight, bias in zip(parts, weights, biases):
            state[f"{part}.weight"] = weight.contiguous()
            # transformers' k projections have no bias (CTranslate2 stores zeros): a key bias adds the same
            # q.b to every score of a query, which softmax cancels
            if not part.endswith("k_proj"):
                state[f"{part}.bias"] = bias.contiguous()
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]  # tied, as in the original model
    return state


# --------------------------------------------------------------------------- tokenizer, processor, generation config

TIMESTAMP_TOKENS = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))  # <|0.00|> ... <|30.00|>
MULTILINGUAL_VOCAB_SIZE = 51865  # English-only checkpoints have 51864 tokens
_REQUIRED_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                      "<|startofprev|>", "<|notimestamps|>")


def build_tokenizer(tokenizer_json: Path, spelling_map_file: Path | None = None):
    """A `WhisperTokenizer` from a Hugging Face `tokenizer.json`, with the 1501 timestamp tokens appended.

    The special tokens keep their order and end with `<|notimestamps|>`, which transformers relies on:
    timestamps are taken to start right after the last special token.
    """
    from transformers import WhisperTokenizer

    try:
        data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
        vocab, merges = data["model"]["vocab"], data["model"]["merges"]
        added = sorted(data.get("added_tokens", []), key=lambda token: token["id"])
    except (OSError, ValueError, KeyError) as e:
        raise Ct2FormatError(f"{tokenizer_json} is not a readable Hugging Face BPE tokenizer.json: {e}") from e
    specials = [token["content"] for token in added if token.get("special")]
    missing = [token for token in _REQUIRED_SPECIALS if token not in specials]
    if missing:
        raise Ct2FormatError(f"{tokenizer_json} lacks Whisper special tokens {missing}")
    if specials[-1] != "<|notimestamps|>":
        raise Ct2FormatError(f"{tokenizer_json}: the last special token is {specials[-1]!r}, not '<|notimestamps|>'")
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=merges,
        normalizer_file=str(spelling_map_file) if spelling_map_file else None,
        pad_token="<|endoftext|>",
        extra_special_tokens=specials,
        model_max_length=1024,
        errors="replace",
    )
    for token in added:  # the ids must be the ones the model was trained with
        if tokenizer.convert_tokens_to_ids(token["content"]) != token["id"]:
            raise Ct2FormatError(f"{tokenizer_json}: {token['content']!r} does not get its id {token['id']}")
    known = tokenizer.get_vocab()
    tokenizer.add_tokens([token for token in TIMESTAMP_TOKENS if token not in known])
    return tokenizer


def build_generation_config(tokenizer, ct2_config: dict, vocab_size: int):
    """The generation config of a Whisper checkpoint, from its tokenizer and CTranslate2's config.json."""
    from transformers import GenerationConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _REQUIRED_SPECIALS}
    multilingual = vocab_size >= MULTILINGUAL_VOCAB_SIZE
    fields: dict = dict(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=multilingual,
        max_length=448,
        max_initial_timestamp_index=50,
        return_timestamps=False,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
    )
    if ct2_config.get("alignment_heads"):
        fields["alignment_heads"] = [list(pair) for pair in ct2_config["alignment_heads"]]
    if multilingual:
        fields["forced_decoder_ids"] = [[1, None], [2, ids["<|transcribe|>"]]]
        fields["lang_to_id"] = {tokenizer.convert_ids_to_tokens(i): i for i in ct2_config.get("lang_ids", [])}
        fields["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
        if not fields["lang_to_id"]:
            raise Ct2FormatError("CTranslate2 config.json has no lang_ids for a multilingual model")
    else:
        fields["forced_decoder_ids"] = [[1, ids["<|notimestamps|>"]]]
    return GenerationConfig(**fields)


# --------------------------------------------------------------------------- whole directories


def convert_ct2_whisper(src_dir: Path, dst_dir: Path, spelling_map: dict[str, str] | None = None) -> Path:
    """Convert a CTranslate2 Whisper directory into a transformers checkpoint directory.

    Args:
        src_dir: holds model.bin, config.json (CTranslate2's) and tokenizer.json; vocabulary.txt is not needed.
        dst_dir: created (or filled) with model.safetensors, config.json, generation_config.json,
            processor and tokenizer files and normalizer.json.
        spelling_map: the English text normalizer's British->American spelling map; {} if unavailable
            (then `tokenizer.normalize()` only lower-cases and strips, without respelling).
    Returns:
        dst_dir.
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    missing = [name for name in ("model.bin", "config.json", "tokenizer.json") if not (src_dir / name).is_file()]
    if missing:
        raise Ct2FormatError(f"{src_dir} is not a CTranslate2 Whisper directory: missing {', '.join(missing)}")
    ct2 = read_model_bin(src_dir / "model.bin")
    ct2_config = json.loads((src_dir / "config.json").read_text(encoding="utf-8"))
    dst_dir.mkdir(parents=True, exist_ok=True)
    normalizer_file = dst_dir / "normalizer.json"
    normalizer_file.write_text(json.dumps(spelling_map or {}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tokenizer = build_tokenizer(src_dir / "tokenizer.json", normalizer_file)
    vocab_size = ct2.get("decoder/embeddings/weight").shape[0]
    if len(tokenizer) != vocab_size:
        raise Ct2FormatError(
            f"{src_dir}: tokenizer.json gives {len(tokenizer)} tokens with timestamps, the model has {vocab_size}"
        )
    generation_config = build_generation_config(tokenizer, ct2_config, vocab_size)
    config = whisper_config_from_ct2(
        ct2,
        bos_token_id=generation_config.bos_token_id,
        eos_token_id=generation_config.eos_token_id,
        pad_token_id=generation_config.pad_token_id,
        decoder_start_token_id=generation_config.decoder_start_token_id,
        suppress_tokens=None,  # generation settings live in generation_config.json only: transformers
        begin_suppress_tokens=None,  # warns when the model config repeats them
    )
    state = whisper_state_dict_from_ct2(ct2)
    del ct2
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise Ct2FormatError(f"{src_dir}/model.bin does not fit a Whisper model of this shape: {e}") from e
    model.tie_weights()
    model.generation_config = generation_config
    model.save_pretrained(dst_dir)
    feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(dst_dir)
    return dst_dir
