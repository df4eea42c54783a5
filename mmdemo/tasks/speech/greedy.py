"""Greedy Whisper transcription without `generate()`: the same tokens, several times faster per token on a CPU.

For a small Whisper, transformers' `generate()` spends most of each decoding step outside the model: attention masks
and cache objects built per token, output dataclasses, and logits processors that rebuild vocabulary-sized masks for
every token (`torch.isin` over the whole vocabulary). This module runs the checkpoint's own modules
(int8 or not, on any device) with a preallocated self-attention cache, suppression masks built once, and Whisper's
timestamp rules on plain lists. It reproduces `WhisperForConditionalGeneration.generate`'s greedy decoding token
for token, long-form seeking included (tests/test_whisper_greedy.py holds them side by side); beam search, sampling
and temperature fallback stay with `generate()` (see `supports`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

TIME_PRECISION = 0.02  # seconds per timestamp token
FRAME_SECONDS = 0.01  # seconds per log-mel frame


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    tokens: list[int] = field(default_factory=list)  # text and timestamp tokens
    # Each token's probability when it was chosen: the softmax of the step's logits after suppression and the
    # timestamp rules (what generate(output_scores=True) scores), so a word's confidence costs no second pass.
    probabilities: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    language: str | None  # the given or detected code; None for an English-only model
    segments: list[Segment]


def supports(model: torch.nn.Module) -> bool:
    """Whether the checkpoint's generation config asks for plain greedy decoding, which this module reproduces."""
    generation = model.generation_config
    return ((generation.num_beams or 1) == 1 and not generation.do_sample
            and getattr(generation, "temperature", None) in (None, 0.0, 1.0)
            and getattr(generation, "no_timestamps_token_id", None) is not None)


class GreedyWhisper:
    """Greedy decoding over a loaded `WhisperForConditionalGeneration` (its modules are used as they are)."""

    def __init__(self, model: torch.nn.Module) -> None:
        config, generation = model.config, model.generation_config
        self.model = model
        self.decoder = model.get_decoder()
        encoder = model.get_encoder()
        self.heads = config.decoder_attention_heads
        self.head_dim = config.d_model // self.heads
        self.max_positions = config.max_target_positions
        self.input_stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.window_frames = self.input_stride * config.max_source_positions  # 3000 mel frames: 30 s
        self.generation = generation
        self.eos = generation.eos_token_id
        self.no_timestamps = generation.no_timestamps_token_id
        self.timestamp_begin = self.no_timestamps + 1
        self.max_initial_timestamp = getattr(generation, "max_initial_timestamp_index", None)
        self.multilingual = bool(getattr(generation, "is_multilingual", False))
        suppress = list(generation.suppress_tokens or [])
        self.suppress = self._mask(config.vocab_size, suppress)
        # The first generated token also may not be a blank or end of text.
        self.suppress_first = self._mask(config.vocab_size, suppress + list(generation.begin_suppress_tokens or []))

    @staticmethod
    def _mask(size: int, tokens: Sequence[int]) -> torch.Tensor:
        mask = torch.zeros(size)
        mask[list(tokens)] = float("-inf")
        return mask

    # --- the public steps -------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def transcribe(self, features: torch.Tensor, *, language: str | None = None, task: str = "transcribe",
                   timestamps: bool = True) -> Transcript:
        """Transcribe log-mel `features` [1, mels, frames] of any length; None `language` detects it.

        Without `timestamps` a clip of one window decodes in one pass into one segment (ending at the window's
        end); longer clips always decode with timestamps, which is how Whisper knows where to continue.
        """
        total = features.shape[-1]
        timestamps = timestamps or total > self.window_frames
        if not self.multilingual:
            language = None
        seek, segments = 0, []
        while seek < total:
            frames = min(total - seek, self.window_frames)
            hidden = self.encode(F.pad(features[..., seek:seek + frames], (0, self.window_frames - frames)))
            if self.multilingual and language is None:
                language = self.detect_language(hidden)  # once, from the first window
            tokens, probabilities = self.decode_with_probabilities(
                hidden, self.prompt(language, task, timestamps), timestamps=timestamps)
            offset = seek * FRAME_SECONDS
            if not timestamps:
                return Transcript(language, [Segment(offset, offset + frames * FRAME_SECONDS, tokens, probabilities)])
            found, advance = self.segments(tokens, offset, frames, probabilities)
            segments += found
            seek += max(advance, 1)  # never loop on one spot (a window that ends on the pair <|0.00|><|0.00|>)
        return Transcript(language if self.multilingual else None, segments)

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """The encoder's hidden states for one 30 s window of features."""
        encoder = self.model.get_encoder()
        return encoder(input_features=window.to(encoder.conv1.weight.dtype)).last_hidden_state

    @torch.inference_mode()
    def encode_prefix(self, features: torch.Tensor, frames: int) -> torch.Tensor:
        """The encoder's hidden states for the first `frames` mel frames of a window only (whisper.cpp's
        `audio_ctx`): the same layers over fewer positions, with the positional embeddings cut to match.

        Attention costs the square of the length, so a 10 s context encodes several times faster than 30 s. Whisper
        was trained on full windows only, so very short contexts read less accurately: callers keep a margin.
        `frames` is rounded up to a multiple of `input_stride`; a full window gives `encode`'s result.
        """
        frames = min(self.window_frames, -(-frames // self.input_stride) * self.input_stride)
        if frames == self.window_frames:
            return self.encode(features[..., :frames])
        encoder = self.model.get_encoder()
        x = features[..., :frames].to(encoder.conv1.weight.dtype)
        x = F.gelu(encoder.conv2(F.gelu(encoder.conv1(x)))).permute(0, 2, 1)
        x = x + encoder.embed_positions.weight[:x.shape[1]]
        for layer in encoder.layers:  # as WhisperEncoder.forward, which insists on 3000 frames
            x = layer(x, None)
        return encoder.layer_norm(x)

    def prompt(self, language: str | None, task: str, timestamps: bool, previous: Sequence[int] = ()) -> list[int]:
        """Start of transcript, then language and task (multilingual checkpoints), then no-timestamps if asked.

        `previous`: text tokens of what was said before (Whisper's `<|startofprev|>` prompt, as generate's
        `prompt_ids`), at most half the decoder's positions as transformers allows.
        """
        tokens = []
        if previous:
            keep = self.max_positions // 2 - 1
            tokens = [self.generation.prev_sot_token_id, *list(previous)[-keep:]]
        tokens.append(self.generation.decoder_start_token_id)
        if self.multilingual:
            tokens += [self.generation.lang_to_id[f"<|{language}|>"], self.generation.task_to_id[task]]
        if not timestamps:
            tokens.append(self.no_timestamps)
        return tokens

    @torch.inference_mode()
    def detect_language(self, hidden: torch.Tensor) -> str:
        """The most likely language token after start of transcript, as a code ("en")."""
        cache, cross = self._caches(hidden)
        start = torch.tensor([[self.generation.decoder_start_token_id]], device=hidden.device)
        logits = self.model.proj_out(self._step(start, 0, cache, cross))[0, -1].float()
        by_id = {token_id: token for token, token_id in self.generation.lang_to_id.items()}
        languages_only = torch.full_like(logits, float("-inf"))
        languages_only[list(by_id)] = logits[list(by_id)]
        return by_id[int(languages_only.argmax())].strip("<|>")  # ties go to the lowest id, as in transformers

    def decode(self, hidden: torch.Tensor, prompt: Sequence[int], *, timestamps: bool) -> list[int]:
        """Greedy tokens after `prompt` until end of text (not included) or the decoder's last position."""
        return self.decode_with_probabilities(hidden, prompt, timestamps=timestamps)[0]

    @torch.inference_mode()
    def decode_with_probabilities(self, hidden: torch.Tensor, prompt: Sequence[int], *, timestamps: bool,
                                  max_tokens: int | None = None,
                                  forced: Sequence[int] = ()) -> tuple[list[int], list[float]]:
        """`decode`'s tokens, and each one's probability under the step's processed logits (see Segment); at most
        `max_tokens` of them if given (live steps bound a repetition loop that way).

        `forced`: text tokens that open the transcript whatever the logits say (after the opening timestamp, which
        is still chosen, when `timestamps`), run through the decoder in one call, not one by one: a live step gives
        the words it committed already and decodes only what follows them. They are in the result, each with
        probability 1 (given, not chosen).
        """
        cache, cross = self._caches(hidden)
        suppress, suppress_first = self.suppress.to(hidden.device), self.suppress_first.to(hidden.device)
        # A context shorter than a window (encode_prefix) ends sooner than <|30.00|>: no timestamp after its end.
        last_timestamp = None
        if hidden.shape[1] < self.window_frames // self.input_stride:
            last_timestamp = self.timestamp_begin + round(
                hidden.shape[1] * self.input_stride * FRAME_SECONDS / TIME_PRECISION)
        forced = list(forced)
        if len(prompt) + len(forced) + 2 >= self.max_positions:
            forced = []  # no room left to decode after them: decode everything instead
        step_input = torch.tensor([list(prompt)], device=hidden.device)
        position, generated, probabilities = 0, [], []
        if forced and not timestamps:
            step_input = torch.tensor([[*prompt, *forced]], device=hidden.device)
            generated, probabilities, forced = list(forced), [1.0] * len(forced), []
        while True:
            state = self._step(step_input, position, cache, cross)
            position += step_input.shape[1]
            logits = self.model.proj_out(state)[0, -1].float() + (suppress if generated else suppress_first)
            if timestamps:
                self._timestamp_rules(logits, generated, last_timestamp)
            token = int(logits.argmax())
            if token == self.eos:
                return generated, probabilities
            generated.append(token)
            # exp(logit - logsumexp): one reduction over the vocabulary, small beside the decoder step.
            probabilities.append(float(torch.exp(logits[token] - logits.logsumexp(-1))))
            if position + 1 >= self.max_positions:  # the sequence fills the decoder's positions
                return generated, probabilities
            if max_tokens is not None and len(generated) >= max_tokens:
                return generated, probabilities
            step_input = torch.tensor([[token, *forced]], device=hidden.device)
            generated += forced
            probabilities += [1.0] * len(forced)
            forced = []

    def segments(self, tokens: list[int], offset: float, frames: int,
                 probabilities: Sequence[float] = ()) -> tuple[list[Segment], int]:
        """Split one window's tokens (and their probabilities, if given) at timestamp pairs; also how many frames to
        advance (transformers' rules)."""
        begin = self.timestamp_begin
        probabilities = list(probabilities)
        is_timestamp = [token >= begin for token in tokens]
        single_ending = is_timestamp[-2:] == [False, True]
        cuts = [i + 1 for i in range(len(tokens) - 1) if is_timestamp[i] and is_timestamp[i + 1]]
        if not cuts:  # one segment: to the last timestamp, else to the window's end
            stamps = [token for token in tokens if token >= begin]
            end_position = (stamps[-1] - begin if stamps and stamps[-1] != begin
                            else int(frames * FRAME_SECONDS / TIME_PRECISION))
            return [Segment(offset, offset + end_position * TIME_PRECISION, tokens, probabilities)], frames
        if single_ending:
            cuts.append(len(tokens))
        else:
            cuts[-1] += 1  # keep the last pair's closing timestamp in the last complete segment
        segments, last = [], 0
        for i, cut in enumerate(cuts):
            piece = tokens[last:cut]
            end_index = -2 if i == len(cuts) - 1 and not single_ending else -1
            segments.append(Segment(offset + (piece[0] - begin) * TIME_PRECISION,
                                    offset + (piece[end_index] - begin) * TIME_PRECISION, piece,
                                    probabilities[last:cut]))
            last = cut
        if single_ending:  # no speech after the last timestamp: the next window starts after this one
            return segments, frames
        # The window ended mid-sentence: drop the unfinished words and continue from the last timestamp.
        return segments, (tokens[last - 2] - begin) * self.input_stride

    # --- one decoder step -------------------------------------------------------------------------------------------

    def _caches(self, hidden: torch.Tensor) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        """An empty self-attention cache per layer, and every layer's cross-attention keys and values.

        The keys and values are made contiguous once, as transformers keeps them: every step reads all of them, and
        reading strided views is slower (`python -m benchmarks.whisper_decoding`).
        """
        dtype, device = hidden.dtype, hidden.device
        cache = [torch.zeros(2, 1, self.heads, self.max_positions, self.head_dim, dtype=dtype, device=device)
                 for _ in self.decoder.layers]
        cross = [(self._heads(layer.encoder_attn.k_proj(hidden)).contiguous(),
                  self._heads(layer.encoder_attn.v_proj(hidden)).contiguous())
                 for layer in self.decoder.layers]
        return cache, cross

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        """[1, length, model dim] -> [1, heads, length, head dim]."""
        return states.view(1, -1, self.heads, self.head_dim).transpose(1, 2)

    def _step(self, tokens: torch.Tensor, position: int, cache: list[torch.Tensor],
              cross: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Run `tokens` [1, n] at positions position.. through the decoder: final states [1, n, model dim].

        The same operations in the same order as transformers' WhisperDecoder, so the same numbers. All n states
        are returned because an int8 layer quantizes its input per call: the output projection must see the rows
        generate() gives it to produce the same logits.
        """
        n = tokens.shape[1]
        end = position + n
        # Several tokens after earlier ones (a forced prefix) each see the cache and the tokens before them only.
        mask = torch.ones(n, end, dtype=torch.bool, device=tokens.device).tril(position) if n > 1 and position else None
        decoder = self.decoder
        x = decoder.embed_tokens(tokens) * decoder.embed_scale + decoder.embed_positions.weight[position:end]
        for layer, layer_cache, (cross_keys, cross_values) in zip(decoder.layers, cache, cross):
            attention = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            query = self._heads(attention.q_proj(h) * attention.scaling)
            layer_cache[0, :, :, position:end] = self._heads(attention.k_proj(h))
            layer_cache[1, :, :, position:end] = self._heads(attention.v_proj(h))
            out = F.scaled_dot_product_attention(query, layer_cache[0, :, :, :end], layer_cache[1, :, :, :end],
                                                 attn_mask=mask, is_causal=n > 1 and position == 0, scale=1.0)
            x = x + attention.out_proj(out.transpose(1, 2).reshape(1, n, -1))
            attention = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            query = self._heads(attention.q_proj(h) * attention.scaling)
            out = F.scaled_dot_product_attention(query, cross_keys, cross_values, scale=1.0)
            x = x + attention.out_proj(out.transpose(1, 2).reshape(1, n, -1))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return decoder.layer_norm(x)

    def _timestamp_rules(self, logits: torch.Tensor, generated: list[int], last_timestamp: int | None = None) -> None:
        """Whisper's timestamp constraints, in place (as transformers' WhisperTimeStampLogitsProcessor); no
        timestamp after `last_timestamp` (a token id: the end of a context shorter than 30 s)."""
        begin, inf = self.timestamp_begin, float("-inf")
        logits[self.no_timestamps] = inf
        if last_timestamp is not None:
            logits[last_timestamp + 1:] = inf
        last_was_timestamp = len(generated) >= 1 and generated[-1] >= begin
        penultimate_was_timestamp = len(generated) < 2 or generated[-2] >= begin
        if last_was_timestamp:
            if penultimate_was_timestamp:  # a pair just closed: text next
                logits[begin:] = inf
            else:  # an opening timestamp: its closing one (or end of text) next
                logits[:self.eos] = inf
        stamps = [token for token in generated if token >= begin]
        lowest = begin
        if stamps:  # timestamps never decrease, and <|0.00|> is not repeated
            lowest = stamps[-1] if last_was_timestamp and not penultimate_was_timestamp else stamps[-1] + 1
        logits[begin:lowest] = inf
        if not generated:  # a window starts with a timestamp, not too late
            logits[:begin] = inf
            if self.max_initial_timestamp is not None:
                logits[begin + self.max_initial_timestamp + 1:] = inf
        logprobs = F.log_softmax(logits, dim=-1)
        if logprobs[begin:].logsumexp(-1) > logprobs[:begin].max():  # timestamps together outweigh any word
            logits[:begin] = inf
