"""Tiny vision-language checkpoints: BLIP VQA and captioning, ViLT, GIT, ViT-GPT2, CLIP and SigLIP.

Each builder writes a complete checkpoint (config, weights, generation config, tokenizer and processor files) into
``out``, an empty directory; ``seed`` makes it deterministic.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mmdemo.testing.tiny_vocab import bert_tokenizer, byte_level_bpe, clip_bpe, write_sentencepiece_model
from mmdemo.testing.tiny_weights import (
    CHAIN_WORDS,
    CROSS_STD,
    TINY_64,
    TINY_TEXT,
    TINY_VISION,
    chain_embeddings_,
    fill_random_,
    head_inputs,
    seed_torch,
    spread_vision_,
    wire_chain_head_,
)

# ViLT's answer classifier: a small, plain answer vocabulary.
_VILT_ANSWERS: tuple[str, ...] = (
    "yes", "no", "1", "2", "3", "cat", "dog", "red", "blue", "white", "black", "coffee",
)


def _build_blip(out: Path, seed: int, *, vqa: bool) -> None:
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipForQuestionAnswering,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    tokenizer = bert_tokenizer(bos_token="[DEC]", extra_specials=["[DEC]", "[ENC]"])
    vocab = tokenizer.get_vocab()
    image_size = 32
    config = BlipConfig(
        vision_config=dict(**TINY_64, image_size=image_size, patch_size=8),
        text_config=dict(
            **TINY_64,
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
    seed_torch(seed)
    model = (BlipForQuestionAnswering if vqa else BlipForConditionalGeneration)(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    spread_vision_(model.vision_model, seed + 2)
    decoder = model.text_decoder
    chain_ids = [vocab[w] for w in CHAIN_WORDS]
    start_ids = [vocab["[DEC]"]]
    chain_embeddings_(decoder.bert.embeddings.word_embeddings.weight, chain_ids, start_ids, seed + 3)
    cross_layers = list(decoder.bert.encoder.layer) + (list(model.text_encoder.encoder.layer) if vqa else [])
    for layer in cross_layers:
        fill_random_(layer.crossattention.self.value.weight, CROSS_STD, g)
        fill_random_(layer.crossattention.output.dense.weight, CROSS_STD, g)
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
        return head_inputs(head, lambda: decoder(input_ids=ids, encoder_hidden_states=context))

    wire_chain_head_(decoder.cls.predictions.decoder, probe, chain_ids, start_ids, vocab["[SEP]"], seed + 4)
    with torch.no_grad():
        decoder.cls.predictions.bias.copy_(decoder.cls.predictions.decoder.bias)
    model.generation_config.max_length = 32
    model.generation_config._from_model_config = False
    model.save_pretrained(out)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_blip_vqa(out: Path, seed: int) -> None:
    _build_blip(out, seed, vqa=True)


def build_blip_caption(out: Path, seed: int) -> None:
    _build_blip(out, seed, vqa=False)


def build_vilt(out: Path, seed: int) -> None:
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessorPil, ViltProcessor

    tokenizer = bert_tokenizer(model_max_length=40)
    id2label = dict(enumerate(_VILT_ANSWERS))
    config = ViltConfig(
        **TINY_TEXT,
        vocab_size=len(tokenizer.get_vocab()),
        max_position_embeddings=40,
        image_size=64,
        patch_size=32,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        initializer_range=0.2,
    )
    seed_torch(seed)
    model = ViltForQuestionAnswering(config).eval()
    model.save_pretrained(out)
    image_processor = ViltImageProcessorPil(size={"shortest_edge": 64}, size_divisor=32)
    ViltProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_git(out: Path, seed: int) -> None:
    import torch
    from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = bert_tokenizer()
    vocab = tokenizer.get_vocab()
    image_size = 32
    config = GitConfig(
        vision_config=dict(**TINY_VISION, image_size=image_size, patch_size=8),
        **TINY_64,
        vocab_size=len(vocab),
        max_position_embeddings=1024,
        bos_token_id=vocab["[CLS]"],
        eos_token_id=vocab["[SEP]"],
        pad_token_id=vocab["[PAD]"],
    )
    seed_torch(seed)
    model = GitForCausalLM(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    spread_vision_(model.git.image_encoder, seed + 2)
    chain_ids = [vocab[w] for w in CHAIN_WORDS]
    start_ids = [vocab["[CLS]"]]
    chain_embeddings_(model.git.embeddings.word_embeddings.weight, chain_ids, start_ids, seed + 3)
    for layer in model.git.encoder.layer:
        fill_random_(layer.attention.self.value.weight, CROSS_STD, g)
        fill_random_(layer.attention.output.dense.weight, CROSS_STD, g)
    pixel_values = torch.zeros(1, 3, image_size, image_size)
    start = vocab["[CLS]"]

    def probe(prev_ids):
        ids = torch.stack([torch.full_like(prev_ids, start), prev_ids], dim=1)
        pixels = pixel_values.expand(len(prev_ids), -1, -1, -1)
        return head_inputs(model.output, lambda: model(input_ids=ids, pixel_values=pixels))

    wire_chain_head_(model.output, probe, chain_ids, start_ids, vocab["[SEP]"], seed + 4)
    model.generation_config.max_length = 32
    model.generation_config._from_model_config = False
    model.save_pretrained(out)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_vit_gpt2(out: Path, seed: int) -> None:
    import torch
    from transformers import (
        GPT2Config,
        GPT2Tokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    vocab, merges = byte_level_bpe()
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)
    eos = vocab["<|endoftext|>"]
    image_size = 32
    encoder = ViTConfig(**TINY_64, image_size=image_size, patch_size=8)
    decoder = GPT2Config(
        vocab_size=len(vocab), n_embd=64, n_layer=2, n_head=4, n_positions=1024,
        bos_token_id=eos, eos_token_id=eos, add_cross_attention=True, is_decoder=True, tie_word_embeddings=False,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = eos
    config.pad_token_id = eos
    config.eos_token_id = eos
    seed_torch(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    spread_vision_(model.encoder, seed + 2)
    gpt2 = model.decoder
    chain_ids = [vocab["Ġ" + w] for w in CHAIN_WORDS]
    chain_embeddings_(gpt2.transformer.wte.weight, chain_ids, [eos], seed + 3, scale=8.0)
    for block in gpt2.transformer.h:
        fill_random_(block.crossattention.c_proj.weight, CROSS_STD, g)
        # in GPT-2's cross-attention c_attn is the key/value projection
        fill_random_(block.crossattention.c_attn.weight, CROSS_STD, g)
    pixel_values = torch.zeros(1, 3, image_size, image_size)

    def probe(prev_ids):
        ids = torch.stack([torch.full_like(prev_ids, eos), prev_ids], dim=1)
        pixels = pixel_values.expand(len(prev_ids), -1, -1, -1)
        return head_inputs(gpt2.lm_head, lambda: model(pixel_values=pixels, decoder_input_ids=ids))

    wire_chain_head_(gpt2.lm_head, probe, chain_ids, [eos], eos, seed + 4, const_norm=gpt2.transformer.ln_f)
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


def build_clip(out: Path, seed: int) -> None:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    config = CLIPConfig(
        text_config=dict(
            **TINY_TEXT, vocab_size=len(vocab), max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(**TINY_VISION, image_size=32, patch_size=8),
        projection_dim=32,
    )
    seed_torch(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(out)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_siglip(out: Path, seed: int) -> None:
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor, SiglipTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        spm_path = Path(tmp) / "spiece.model"
        write_sentencepiece_model(spm_path)
        tokenizer = SiglipTokenizer(vocab_file=str(spm_path), model_max_length=64)
        config = SiglipConfig(
            text_config=dict(**TINY_TEXT, vocab_size=tokenizer.vocab_size, max_position_embeddings=64,
                             pad_token_id=1, eos_token_id=1, bos_token_id=1),
            vision_config=dict(**TINY_VISION, image_size=32, patch_size=8),
        )
        seed_torch(seed)
        model = SiglipModel(config).eval()
        model.save_pretrained(out)
        image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
        SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)

