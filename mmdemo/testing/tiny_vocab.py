"""The tiny checkpoints' vocabularies and tokenizers, written by hand: never trained, so every build is the same.

BPE merges (GPT-2 byte-level and CLIP) are derived deterministically from a fixed word list, BERT's WordPiece
vocabulary is listed, and SigLIP's unigram sentencepiece model is written as a protobuf.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

Bpe = tuple[dict[str, int], list[tuple[str, str]]]  # vocabulary, merges

# Words every tiny vocabulary knows as whole tokens: caption / question / answer / sentiment / speech words.
WORDS: tuple[str, ...] = (
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

SENTENCE_PUNCT = (".", ",", "?", "!", "'", "-", ":", ";", '"')


def bytes_to_unicode() -> dict[int, str]:
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


def learn_merges(vocab: dict[str, int], words: Iterable[str], suffix: str = "") -> list[tuple[str, str]]:
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


def byte_level_bpe(specials_first: Iterable[str] = (), *, space_prefix: str = "Ġ") -> Bpe:
    """GPT-2 style byte-level BPE: specials_first, the 256 byte symbols, then the hand-derived word merges."""
    vocab, merges = _byte_level_bpe_cached(tuple(specials_first), space_prefix)
    return dict(vocab), list(merges)


@functools.cache
def _byte_level_bpe_cached(specials_first: tuple[str, ...], space_prefix: str) -> Bpe:
    vocab: dict[str, int] = {}
    for tok in specials_first:
        vocab[tok] = len(vocab)
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    forms: list[str] = []
    for w in WORDS:
        for form in (space_prefix + w, w, space_prefix + w.capitalize(), w.capitalize()):
            if form not in forms:
                forms.append(form)
    merges = learn_merges(vocab, forms)
    return vocab, merges


def clip_bpe() -> Bpe:
    """CLIP's BPE: lower-cased words, byte symbols plus their '</w>' end-of-word variants."""
    vocab: dict[str, int] = {}
    byte_chars = list(bytes_to_unicode().values())
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    for ch in byte_chars:
        vocab[ch + "</w>"] = len(vocab)
    merges = learn_merges(vocab, list(dict.fromkeys(WORDS)), suffix="</w>")
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def wordpiece_vocab(extra_specials: Iterable[str] = ()) -> dict[str, int]:
    """BERT WordPiece vocabulary: specials, single characters and their '##' continuations, then whole words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra_specials]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(SENTENCE_PUNCT)
    chars += ["(", ")", "/", "&", "#", "@", "$", "%", "*", "+", "=", "<", ">", "[", "]", "_"]
    tokens += chars + ["##" + c for c in chars if c.isalnum()]
    tokens += [w for w in dict.fromkeys(WORDS) if w not in tokens]
    return {tok: i for i, tok in enumerate(tokens)}


def write_sentencepiece_model(path: Path) -> None:
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
    for w in dict.fromkeys(WORDS):
        for piece in ("▁" + w,):
            if piece not in seen:
                seen.add(piece)
                add(piece, -5.0 - 0.01 * len(seen), normal)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(SENTENCE_PUNCT)
    for piece in ["▁", *chars, *("▁" + c for c in chars)]:
        if piece not in seen:
            seen.add(piece)
            add(piece, -12.0 - 0.01 * len(seen), normal)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    path.write_bytes(proto.SerializeToString())


def bert_tokenizer(extra_specials: Iterable[str] = (), *, model_max_length: int = 512, cls=None, **kwargs):
    """A lower-casing WordPiece tokenizer (``cls``, default ``BertTokenizer``) over `wordpiece_vocab`."""
    from transformers import BertTokenizer

    cls = cls or BertTokenizer
    return cls(vocab=wordpiece_vocab(extra_specials), do_lower_case=True, model_max_length=model_max_length, **kwargs)
