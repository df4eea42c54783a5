"""Tiny text classifiers: RoBERTa (3-way sentiment) and DistilBERT (SST-2), with wide initial weights so that
different sentences get clearly different scores."""

from __future__ import annotations

from pathlib import Path

from mmdemo.testing.tiny_vocab import bert_tokenizer, byte_level_bpe
from mmdemo.testing.tiny_weights import TINY_TEXT, seed_torch


def build_roberta_sentiment(out: Path, seed: int) -> None:
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    vocab, merges = byte_level_bpe(specials_first=["<s>", "<pad>", "</s>", "<unk>"])
    vocab["<mask>"] = len(vocab)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)
    id2label = {0: "negative", 1: "neutral", 2: "positive"}
    config = RobertaConfig(
        **TINY_TEXT,
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
    seed_torch(seed)
    model = RobertaForSequenceClassification(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_distilbert_sst2(out: Path, seed: int) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizer

    tokenizer = bert_tokenizer(cls=DistilBertTokenizer)
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
    seed_torch(seed)
    model = DistilBertForSequenceClassification(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
