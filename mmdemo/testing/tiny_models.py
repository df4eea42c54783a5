"""Tiny random-weight checkpoints of the app's curated models, built offline.

The Hugging Face hub cannot be reached where the tests run, so the tests build small checkpoints (hidden size
32-64, 2 layers, own small vocabularies) from the *real* transformers architecture classes, seeded and
deterministic, and save them with ``save_pretrained`` -- config, weights, generation config, tokenizer and
processor files -- into ``<root>/<org>/<name>`` directories named after the real hub ids.  Pointing the app's
local model directory (``MMDEMO_MODEL_DIR``) at ``root`` makes it load them by their real ids.

Public API: ``TINY_MODEL_IDS``, ``build_tiny_model(model_id, root)``, ``ensure_tiny_models(root, ids)``.

Random weights give degenerate outputs (constant scores, empty or looping text), so a few weights are set on
purpose.  Classifiers and the vision towers get wider init ranges.  The generative decoders (BLIP, GIT, ViT-GPT2,
Whisper) walk fixed chains of ``_CHAIN_WORDS``: the context (image, question, audio) picks the first word, each
word has one successor or end-of-text, so greedy ``generate()`` says 1-5 real words and stops by itself, e.g.
"man bed field white".  Whisper on noise always says the same words (the audio barely changes the encoder).
Vocabularies are written by hand (BPE merges and the sentencepiece model are derived deterministically from a
fixed word list), never trained.  Building all of them takes seconds and about 25 MB.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["TINY_MODEL_IDS", "build_tiny_model", "ensure_tiny_models"]

MARKER_FILE = ".tiny_model_builder"

_Bpe = tuple[dict[str, int], list[tuple[str, str]]]  # vocabulary, merges

# Words every tiny vocabulary knows as whole tokens: caption / question / answer / sentiment / speech words.
_WORDS: tuple[str, ...] = (
    "a", "an", "the", "of", "on", "in", "with", "and", "is", "are", "at", "to", "it", "this", "that", "there",
    "what", "how", "many", "which", "who", "where", "color", "colour", "does", "do", "can", "you", "see",
    "picture", "photo", "image", "yes", "no", "not", "one", "two", "three", "four", "some", "cat", "cats",
    "dog", "dogs", "kitten", "man", "woman", "person", "people", "child", "horse", "bird", "eagle", "giraffe",
    "cup", "coffee", "mug", "table", "plate", "couch", "bed", "chair", "grass", "field", "tree", "sky",
    "water", "street", "car", "rocket", "camera", "astronaut", "city", "lion", "statue", "red", "blue",
    "green", "yellow", "black", "white", "brown", "orange", "gray", "small", "large", "big", "little",
    "sitting", "lying", "standing", "running", "flying", "holding", "looking", "eating", "sleeping", "playing",
    "next", "front", "top", "near", "close", "up", "down", "view", "day", "night", "i", "we", "they", "he",
    "she", "my", "your", "love", "like", "hate", "good", "great", "bad", "terrible", "awful", "happy", "sad",
    "angry", "movie", "film", "food", "service", "really", "very", "so", "but", "was", "be", "have", "had",
    "hello", "world", "thank", "thanks", "today", "weather", "music", "speech", "sound", "noise", "voice",
    "ask", "country", "for", "your", "fellow", "americans", "my", "friends",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
)

_SENTENCE_PUNCT = (".", ",", "?", "!", "'", "-", ":", ";", '"')

# ViLT's answer classifier: a small, plain answer vocabulary.
_VILT_ANSWERS: tuple[str, ...] = (
    "yes", "no", "1", "2", "3", "cat", "dog", "red", "blue", "white", "black", "coffee",
)


# ---------------------------------------------------------------------------------------------------------------
# vocabularies (deterministic, no trainer)
# ---------------------------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (the alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _learn_merges(vocab: dict[str, int], words: Iterable[str], suffix: str = "") -> list[tuple[str, str]]:
    """Add merges (in place into ``vocab``) until every word is one token, reproducing the BPE model's own merge order.

    Each new merge gets the lowest priority, so earlier words keep their tokenization; the real ``tokenizers`` BPE
    model decides how a word splits under the merges so far, so the result holds for the saved tokenizer too.
    """
    from tokenizers.models import BPE

    merges: list[tuple[str, str]] = []
    options = {"end_of_word_suffix": suffix} if suffix else {}
    for word in words:
        while True:
            model = BPE(vocab=dict(vocab), merges=list(merges), **options)
            pieces = [t.value for t in model.tokenize(word)]
            if len(pieces) <= 1:
                break
            pair = (pieces[0], pieces[1])
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
    return merges


def _byte_level_bpe(specials_first: Iterable[str] = (), *, space_prefix: str = "Ġ") -> _Bpe:
    """GPT-2 style byte-level BPE: specials_first, the 256 byte symbols, then the hand-derived word merges."""
    vocab, merges = _byte_level_bpe_cached(tuple(specials_first), space_prefix)
    return dict(vocab), list(merges)


@functools.cache
def _byte_level_bpe_cached(specials_first: tuple[str, ...], space_prefix: str) -> _Bpe:
    vocab: dict[str, int] = {}
    for tok in specials_first:
        vocab[tok] = len(vocab)
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    forms: list[str] = []
    for w in _WORDS:
        for form in (space_prefix + w, w, space_prefix + w.capitalize(), w.capitalize()):
            if form not in forms:
                forms.append(form)
    merges = _learn_merges(vocab, forms)
    return vocab, merges


def _clip_bpe() -> _Bpe:
    """CLIP's BPE: lower-cased words, byte symbols plus their '</w>' end-of-word variants."""
    vocab: dict[str, int] = {}
    byte_chars = list(_bytes_to_unicode().values())
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    for ch in byte_chars:
        vocab[ch + "</w>"] = len(vocab)
    merges = _learn_merges(vocab, list(dict.fromkeys(_WORDS)), suffix="</w>")
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def _wordpiece_vocab(extra_specials: Iterable[str] = ()) -> dict[str, int]:
    """BERT WordPiece vocabulary: specials, single characters and their '##' continuations, then whole words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra_specials]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(_SENTENCE_PUNCT)
    chars += ["(", ")", "/", "&", "#", "@", "$", "%", "*", "+", "=", "<", ">", "[", "]", "_"]
    tokens += chars + ["##" + c for c in chars if c.isalnum()]
    tokens += [w for w in dict.fromkeys(_WORDS) if w not in tokens]
    return {tok: i for i, tok in enumerate(tokens)}


def _sentencepiece_model(path: Path) -> None:
    """Write a unigram sentencepiece model by hand (SigLIP layout: 0 <pad>, 1 </s>, 2 <unk>)."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto()
    proto.trainer_spec.model_type = sp_pb2.TrainerSpec.UNIGRAM
    proto.trainer_spec.vocab_size = 0  # filled below
    proto.trainer_spec.pad_id = 0
    proto.trainer_spec.eos_id = 1
    proto.trainer_spec.unk_id = 2
    proto.trainer_spec.bos_id = -1
    proto.trainer_spec.pad_piece = "<pad>"
    proto.trainer_spec.eos_piece = "</s>"
    proto.trainer_spec.unk_piece = "<unk>"
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    proto.normalizer_spec.escape_whitespaces = True

    def add(piece: str, score: float, kind: int) -> None:
        p = proto.pieces.add()
        p.piece, p.score, p.type = piece, score, kind

    add("<pad>", 0.0, sp_pb2.ModelProto.SentencePiece.CONTROL)
    add("</s>", 0.0, sp_pb2.ModelProto.SentencePiece.CONTROL)
    add("<unk>", 0.0, sp_pb2.ModelProto.SentencePiece.UNKNOWN)
    seen = {"<pad>", "</s>", "<unk>"}
    normal = sp_pb2.ModelProto.SentencePiece.NORMAL
    for w in dict.fromkeys(_WORDS):
        for piece in ("▁" + w,):
            if piece not in seen:
                seen.add(piece)
                add(piece, -5.0 - 0.01 * len(seen), normal)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(_SENTENCE_PUNCT)
    for piece in ["▁", *chars, *("▁" + c for c in chars)]:
        if piece not in seen:
            seen.add(piece)
            add(piece, -12.0 - 0.01 * len(seen), normal)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    path.write_bytes(proto.SerializeToString())


# ---------------------------------------------------------------------------------------------------------------
# weight shaping: random weights alone give constant, empty or looping outputs
# ---------------------------------------------------------------------------------------------------------------

# Generative decoders walk short chains of these words: each word has one fixed successor or end-of-text, so the
# greedy output is a few real words and then stops.  The input (image, question, audio) picks the first word.
_CHAIN_WORDS: tuple[str, ...] = (
    "a", "cat", "dog", "man", "woman", "sitting", "on", "the", "couch", "cup", "of", "coffee", "table", "red",
    "blue", "white", "black", "small", "large", "bird", "flying", "in", "sky", "with", "two", "people",
    "standing", "next", "to", "car", "street", "horse", "field", "grass", "lying", "bed", "holding", "plate",
    "food", "green", "tree", "yes", "no", "2",
)
_CHAIN_GAIN = 12.0


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _random_(tensor, std: float, generator) -> None:
    import torch

    with torch.no_grad():
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)


def _chain_successors(chain_ids: list[int], eos_id: int, seed: int) -> dict[int, int]:
    """Shuffle the chain words into runs of 3-5 words; each word points to the next one, a run's last to eos."""
    import torch

    g = torch.Generator().manual_seed(seed)
    order = [chain_ids[i] for i in torch.randperm(len(chain_ids), generator=g).tolist()]
    successors: dict[int, int] = {}
    start = 0
    while start < len(order):
        run = order[start : start + 3 + int(torch.randint(0, 3, (1,), generator=g))]
        start += len(run)
        for here, there in zip(run, run[1:]):
            successors[here] = there
        successors[run[-1]] = eos_id
    return successors


def _chain_embeddings_(weight, chain_ids: list[int], start_ids: Iterable[int], seed: int, *, scale: float = 1.0,
                       other_std: float = 0.02) -> None:
    """Chain word k gets the one-hot input embedding ``scale * e_k``, the prompt tokens ``start_ids`` share the next
    one-hot, every other token lives in the remaining free dimensions.

    One-hot rows stay nearly orthogonal through layer norms and element-wise activations, so the decoder's last
    hidden state still tells which word came before; after a prompt token only the context (image, question,
    audio) is left to choose the first word.
    """
    import torch

    vocab_size, dim = weight.shape
    n = len(chain_ids)
    assert n <= dim - 4, "the chain needs a few free dimensions"
    g = torch.Generator().manual_seed(seed)
    new = torch.zeros(vocab_size, dim)
    new[:, n + 1 :] = torch.randn(vocab_size, dim - n - 1, generator=g) * other_std
    for k, token in enumerate(chain_ids):
        new[token] = 0.0
        new[token, k] = scale
    for token in start_ids:
        new[token] = 0.0
        new[token, n] = scale
    with torch.no_grad():
        weight.copy_(new)


def _head_inputs(head, run: Callable[[], object]):
    """Run ``run()`` and return what ``head`` (the LM head Linear) received at the last position."""
    import torch

    captured = []
    hook = head.register_forward_hook(lambda module, args, output: captured.append(args[0][:, -1, :].detach().clone()))
    try:
        with torch.no_grad():
            run()
    finally:
        hook.remove()
    return captured[-1]


def _wire_chain_head_(head, probe: Callable[[object], object], chain_ids: list[int], start_ids: list[int],
                      eos_id: int, seed: int, *, const_norm=None, extra_bias=None) -> None:
    """Set the LM head so that after chain word i the successor wins, after a run's last word eos wins.

    ``probe(prev_ids)`` returns the head inputs after ``[start, prev_id]`` for each id.  Row ``successor(i)`` of the
    head becomes the centred, normalised head input after i; every other token gets a negative bias.  Heads without
    a bias (Whisper, GPT-2) get one through ``const_norm``, the final LayerNorm, whose last feature is made constant 1.
    End-of-text is pushed away from the head inputs after the prompt tokens ``start_ids``, so the text is never empty.
    """
    import torch

    vocab_size, dim = head.weight.shape
    with torch.no_grad():
        if const_norm is not None:
            const_norm.weight[dim - 1] = 0.0
            const_norm.bias[dim - 1] = 1.0
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
        feats = probe(torch.tensor(chain_ids + start_ids))
        feats = feats - feats[: len(chain_ids)].mean(dim=0, keepdim=True)
        feats = feats / feats.norm(dim=1, keepdim=True)
        start_feats = feats[len(chain_ids) :]
        weight = torch.zeros(vocab_size, dim)
        bias = torch.full((vocab_size,), -_CHAIN_GAIN)
        successors = _chain_successors(chain_ids, eos_id, seed)
        for k, token in enumerate(chain_ids):
            weight[successors[token]] += _CHAIN_GAIN * feats[k]
            bias[token] = 0.0
        bias[eos_id] = -0.5 * _CHAIN_GAIN
        weight[eos_id] -= _CHAIN_GAIN * start_feats.mean(dim=0)
        if extra_bias:
            for token, value in extra_bias.items():
                bias[token] = value
        if head.bias is not None:
            head.bias.copy_(bias)
        else:
            assert const_norm is not None
            weight[:, dim - 1] = bias
        head.weight.copy_(weight)


# ---------------------------------------------------------------------------------------------------------------
# builders: each writes a complete checkpoint into ``out`` (an empty directory)
# ---------------------------------------------------------------------------------------------------------------

_TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
_TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
# generative decoders need room for the one-hot chain embeddings
_TINY_64 = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
_VISION_STD = 0.2  # larger than the usual 0.02, so different images give clearly different features
_CROSS_STD = 0.1  # how strongly the decoder listens to the image / question / audio


def _bert_tokenizer(extra_specials: Iterable[str] = (), *, model_max_length: int = 512, cls=None, **kwargs):
    from transformers import BertTokenizer

    cls = cls or BertTokenizer
    return cls(vocab=_wordpiece_vocab(extra_specials), do_lower_case=True, model_max_length=model_max_length, **kwargs)


def _spread_vision_(module, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        if name.endswith("weight") and param.dim() >= 2:
            _random_(param, _VISION_STD, g)


def _build_blip(out: Path, seed: int, *, vqa: bool) -> None:
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipForQuestionAnswering,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    tokenizer = _bert_tokenizer(bos_token="[DEC]", extra_specials=["[DEC]", "[ENC]"])
    vocab = tokenizer.get_vocab()
    image_size = 32
    config = BlipConfig(
        vision_config=dict(**_TINY_64, image_size=image_size, patch_size=8),
        text_config=dict(
            **_TINY_64,
            vocab_size=len(vocab),
            max_position_embeddings=512,
            bos_token_id=vocab["[DEC]"],
            pad_token_id=vocab["[PAD]"],
            sep_token_id=vocab["[SEP]"],
            eos_token_id=vocab["[SEP]"],
            tie_word_embeddings=False,
        ),
        projection_dim=64,
        image_text_hidden_size=64,
        tie_word_embeddings=False,
    )
    _seed(seed)
    model = (BlipForQuestionAnswering if vqa else BlipForConditionalGeneration)(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    _spread_vision_(model.vision_model, seed + 2)
    decoder = model.text_decoder
    chain_ids = [vocab[w] for w in _CHAIN_WORDS]
    start_ids = [vocab["[DEC]"]]
    _chain_embeddings_(decoder.bert.embeddings.word_embeddings.weight, chain_ids, start_ids, seed + 3)
    cross_layers = list(decoder.bert.encoder.layer) + (list(model.text_encoder.encoder.layer) if vqa else [])
    for layer in cross_layers:
        _random_(layer.crossattention.self.value.weight, _CROSS_STD, g)
        _random_(layer.crossattention.output.dense.weight, _CROSS_STD, g)
    transform = decoder.cls.predictions.transform
    with torch.no_grad():
        transform.dense.weight.copy_(torch.eye(transform.dense.weight.shape[0]))
        transform.dense.bias.zero_()

    pixel_values = torch.zeros(1, 3, image_size, image_size)
    start = vocab["[DEC]"]

    def probe(prev_ids):
        with torch.no_grad():
            context = model.vision_model(pixel_values=pixel_values)[0]
            if vqa:
                question = tokenizer("what is in the picture?", return_tensors="pt")
                context = model.text_encoder(
                    input_ids=question.input_ids, attention_mask=question.attention_mask, encoder_hidden_states=context
                )[0]
        ids = torch.stack([torch.full_like(prev_ids, start), prev_ids], dim=1)
        context = context.expand(len(prev_ids), -1, -1)
        head = decoder.cls.predictions.decoder
        return _head_inputs(head, lambda: decoder(input_ids=ids, encoder_hidden_states=context))

    _wire_chain_head_(decoder.cls.predictions.decoder, probe, chain_ids, start_ids, vocab["[SEP]"], seed + 4)
    with torch.no_grad():
        decoder.cls.predictions.bias.copy_(decoder.cls.predictions.decoder.bias)
    model.generation_config.max_length = 32
    model.generation_config._from_model_config = False
    model.save_pretrained(out)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def _build_blip_vqa(out: Path, seed: int) -> None:
    _build_blip(out, seed, vqa=True)


def _build_blip_caption(out: Path, seed: int) -> None:
    _build_blip(out, seed, vqa=False)


def _build_vilt(out: Path, seed: int) -> None:
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessorPil, ViltProcessor

    tokenizer = _bert_tokenizer(model_max_length=40)
    id2label = dict(enumerate(_VILT_ANSWERS))
    config = ViltConfig(
        **_TINY_TEXT,
        vocab_size=len(tokenizer.get_vocab()),
        max_position_embeddings=40,
        image_size=64,
        patch_size=32,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        initializer_range=0.2,
    )
    _seed(seed)
    model = ViltForQuestionAnswering(config).eval()
    model.save_pretrained(out)
    image_processor = ViltImageProcessorPil(size={"shortest_edge": 64}, size_divisor=32)
    ViltProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def _build_git(out: Path, seed: int) -> None:
    import torch
    from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = _bert_tokenizer()
    vocab = tokenizer.get_vocab()
    image_size = 32
    config = GitConfig(
        vision_config=dict(**_TINY_VISION, image_size=image_size, patch_size=8),
        **_TINY_64,
        vocab_size=len(vocab),
        max_position_embeddings=1024,
        bos_token_id=vocab["[CLS]"],
        eos_token_id=vocab["[SEP]"],
        pad_token_id=vocab["[PAD]"],
    )
    _seed(seed)
    model = GitForCausalLM(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    _spread_vision_(model.git.image_encoder, seed + 2)
    chain_ids = [vocab[w] for w in _CHAIN_WORDS]
    start_ids = [vocab["[CLS]"]]
    _chain_embeddings_(model.git.embeddings.word_embeddings.weight, chain_ids, start_ids, seed + 3)
    for layer in model.git.encoder.layer:
        _random_(layer.attention.self.value.weight, _CROSS_STD, g)
        _random_(layer.attention.output.dense.weight, _CROSS_STD, g)
    pixel_values = torch.zeros(1, 3, image_size, image_size)
    start = vocab["[CLS]"]

    def probe(prev_ids):
        ids = torch.stack([torch.full_like(prev_ids, start), prev_ids], dim=1)
        pixels = pixel_values.expand(len(prev_ids), -1, -1, -1)
        return _head_inputs(model.output, lambda: model(input_ids=ids, pixel_values=pixels))

    _wire_chain_head_(model.output, probe, chain_ids, start_ids, vocab["[SEP]"], seed + 4)
    model.generation_config.max_length = 32
    model.generation_config._from_model_config = False
    model.save_pretrained(out)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def _build_vit_gpt2(out: Path, seed: int) -> None:
    import torch
    from transformers import (
        GPT2Config,
        GPT2Tokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    vocab, merges = _byte_level_bpe()
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)
    eos = vocab["<|endoftext|>"]
    image_size = 32
    encoder = ViTConfig(**_TINY_64, image_size=image_size, patch_size=8)
    decoder = GPT2Config(
        vocab_size=len(vocab), n_embd=64, n_layer=2, n_head=4, n_positions=1024,
        bos_token_id=eos, eos_token_id=eos, add_cross_attention=True, is_decoder=True, tie_word_embeddings=False,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = eos
    config.pad_token_id = eos
    config.eos_token_id = eos
    _seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    _spread_vision_(model.encoder, seed + 2)
    gpt2 = model.decoder
    chain_ids = [vocab["Ġ" + w] for w in _CHAIN_WORDS]
    _chain_embeddings_(gpt2.transformer.wte.weight, chain_ids, [eos], seed + 3, scale=8.0)
    for block in gpt2.transformer.h:
        _random_(block.crossattention.c_proj.weight, _CROSS_STD, g)
        # in GPT-2's cross-attention c_attn is the key/value projection
        _random_(block.crossattention.c_attn.weight, _CROSS_STD, g)
    pixel_values = torch.zeros(1, 3, image_size, image_size)

    def probe(prev_ids):
        ids = torch.stack([torch.full_like(prev_ids, eos), prev_ids], dim=1)
        pixels = pixel_values.expand(len(prev_ids), -1, -1, -1)
        return _head_inputs(gpt2.lm_head, lambda: model(pixel_values=pixels, decoder_input_ids=ids))

    _wire_chain_head_(gpt2.lm_head, probe, chain_ids, [eos], eos, seed + 4, const_norm=gpt2.transformer.ln_f)
    gen = model.generation_config
    gen.decoder_start_token_id = eos
    gen.bos_token_id = eos
    gen.pad_token_id = eos
    gen.eos_token_id = eos
    gen.max_length = 32
    gen._from_model_config = False
    model.save_pretrained(out)
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_clip(out: Path, seed: int) -> None:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = _clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    config = CLIPConfig(
        text_config=dict(
            **_TINY_TEXT, vocab_size=len(vocab), max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(**_TINY_VISION, image_size=32, patch_size=8),
        projection_dim=32,
    )
    _seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(out)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def _build_siglip(out: Path, seed: int) -> None:
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor, SiglipTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        spm_path = Path(tmp) / "spiece.model"
        _sentencepiece_model(spm_path)
        tokenizer = SiglipTokenizer(vocab_file=str(spm_path), model_max_length=64)
        config = SiglipConfig(
            text_config=dict(**_TINY_TEXT, vocab_size=tokenizer.vocab_size, max_position_embeddings=64,
                             pad_token_id=1, eos_token_id=1, bos_token_id=1),
            vision_config=dict(**_TINY_VISION, image_size=32, patch_size=8),
        )
        _seed(seed)
        model = SiglipModel(config).eval()
        model.save_pretrained(out)
        image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
        SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


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

    vocab, merges = _byte_level_bpe()
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
    _seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    decoder = model.model.decoder
    chain_ids = [vocab["Ġ" + w] for w in _CHAIN_WORDS]
    # every token that can end the decoder prompt, and the timestamps (a segment starts after one)
    start_ids = [sot, no_ts, vocab["<|transcribe|>"], vocab["<|translate|>"]]
    start_ids += [vocab[f"<|{code}|>"] for code in LANGUAGES] + [vocab[t] for t in timestamps]
    _chain_embeddings_(decoder.embed_tokens.weight, chain_ids, start_ids, seed + 3, scale=8.0)
    for layer in decoder.layers:
        _random_(layer.encoder_attn.v_proj.weight, _CROSS_STD, g)
        _random_(layer.encoder_attn.out_proj.weight, _CROSS_STD, g)
    features = torch.zeros(1, 80, 3000)
    prompt = [sot, vocab["<|en|>"], vocab["<|transcribe|>"], no_ts]

    def probe(prev_ids):
        with torch.no_grad():
            encoded = model.model.encoder(features)[0].expand(len(prev_ids), -1, -1)
        ids = torch.cat([torch.tensor(prompt).expand(len(prev_ids), -1), prev_ids[:, None]], dim=1)
        return _head_inputs(model.proj_out, lambda: model(encoder_outputs=(encoded,), decoder_input_ids=ids))

    # timestamps get a mild negative logit: with return_timestamps=True the timestamp rules place the first one,
    # and their summed probability stays below a chain step's, so they do not interrupt the words
    _wire_chain_head_(model.proj_out, probe, chain_ids, start_ids[:4], eot, seed + 4, const_norm=decoder.layer_norm,
                      extra_bias={vocab[t]: -0.5 * _CHAIN_GAIN for t in timestamps})

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


def _build_whisper_multilingual(out: Path, seed: int) -> None:
    _build_whisper(out, seed, multilingual=True)


def _build_whisper_english(out: Path, seed: int) -> None:
    _build_whisper(out, seed, multilingual=False)


def _build_roberta_sentiment(out: Path, seed: int) -> None:
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    vocab, merges = _byte_level_bpe(specials_first=["<s>", "<pad>", "</s>", "<unk>"])
    vocab["<mask>"] = len(vocab)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)
    id2label = {0: "negative", 1: "neutral", 2: "positive"}
    config = RobertaConfig(
        **_TINY_TEXT,
        vocab_size=len(vocab),
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        initializer_range=0.3,
    )
    _seed(seed)
    model = RobertaForSequenceClassification(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_distilbert_sst2(out: Path, seed: int) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizer

    tokenizer = _bert_tokenizer(cls=DistilBertTokenizer)
    id2label = {0: "NEGATIVE", 1: "POSITIVE"}
    config = DistilBertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        dim=32,
        hidden_dim=64,
        n_layers=2,
        n_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        initializer_range=0.3,
    )
    _seed(seed)
    model = DistilBertForSequenceClassification(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


_BUILDERS: dict[str, tuple[Callable[[Path, int], None], int]] = {
    "Salesforce/blip-vqa-base": (_build_blip_vqa, 101),
    "Salesforce/blip-vqa-capfilt-large": (_build_blip_vqa, 102),
    "dandelin/vilt-b32-finetuned-vqa": (_build_vilt, 103),
    "Salesforce/blip-image-captioning-base": (_build_blip_caption, 104),
    "Salesforce/blip-image-captioning-large": (_build_blip_caption, 105),
    "microsoft/git-base-coco": (_build_git, 106),
    "nlpconnect/vit-gpt2-image-captioning": (_build_vit_gpt2, 107),
    "openai/clip-vit-base-patch32": (_build_clip, 108),
    "openai/clip-vit-large-patch14": (_build_clip, 109),
    "google/siglip-base-patch16-224": (_build_siglip, 110),
    "openai/whisper-base": (_build_whisper_multilingual, 111),
    "openai/whisper-tiny": (_build_whisper_multilingual, 112),
    "openai/whisper-small": (_build_whisper_multilingual, 113),
    "distil-whisper/distil-small.en": (_build_whisper_english, 114),
    "cardiffnlp/twitter-roberta-base-sentiment-latest": (_build_roberta_sentiment, 115),
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english": (_build_distilbert_sst2, 116),
}

TINY_MODEL_IDS: tuple[str, ...] = tuple(_BUILDERS)


# ---------------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------------


def _builder_version() -> str:
    """Hash of this module's source and of the transformers version: a change of either rebuilds the checkpoints."""
    import transformers

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(transformers.__version__.encode())
    return digest.hexdigest()


def _is_current(target: Path, version: str) -> bool:
    marker = target / MARKER_FILE
    try:
        return marker.read_text(encoding="utf-8").strip() == version
    except OSError:
        return False


def build_tiny_model(model_id: str, root: Path) -> Path:
    """Build the tiny checkpoint for ``model_id`` into ``root/<org>/<name>`` (replacing what is there); return it.

    The checkpoint is written into a temporary directory next to the target and renamed into place at the end, so
    a half-written model never appears under its real id.
    """
    if model_id not in _BUILDERS:
        raise KeyError(f"no tiny builder for {model_id!r}; known: {', '.join(TINY_MODEL_IDS)}")
    builder, seed = _BUILDERS[model_id]
    root = Path(root)
    target = root.joinpath(*model_id.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    version = _builder_version()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        builder(tmp, seed)
        (tmp / MARKER_FILE).write_text(version + "\n", encoding="utf-8")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "model")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process renamed a fresh build into place first: keep theirs when it is current
            if not _is_current(target, version):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def ensure_tiny_models(root: Path, ids: Iterable[str] = TINY_MODEL_IDS) -> Path:
    """Build every model of ``ids`` that is missing under ``root`` or was built by another builder version."""
    root = Path(root)
    version = _builder_version()
    for model_id in ids:
        target = root.joinpath(*model_id.split("/"))
        if not _is_current(target, version):
            build_tiny_model(model_id, root)
    return root
