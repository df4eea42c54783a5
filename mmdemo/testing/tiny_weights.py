"""Weight shaping for the tiny checkpoints: random weights alone give constant, empty or looping outputs.

The generative decoders walk short chains of `CHAIN_WORDS`: one-hot input embeddings for the chain words, and an LM
head wired so that each word has one fixed successor or end-of-text. Also the tiny sizes the builders share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Generative decoders walk short chains of these words: each word has one fixed successor or end-of-text, so the
# greedy output is a few real words and then stops.  The input (image, question, audio) picks the first word.
CHAIN_WORDS: tuple[str, ...] = (
    "a", "cat", "dog", "man", "woman", "sitting", "on", "the", "couch", "cup", "of", "coffee", "table", "red",
    "blue", "white", "black", "small", "large", "bird", "flying", "in", "sky", "with", "two", "people",
    "standing", "next", "to", "car", "street", "horse", "field", "grass", "lying", "bed", "holding", "plate",
    "food", "green", "tree", "yes", "no", "2",
)
CHAIN_GAIN = 12.0


def seed_torch(seed: int) -> None:
    """Seed torch's global generator, which a model's constructor draws its initial weights from."""
    import torch

    torch.manual_seed(seed)


def fill_random_(tensor, std: float, generator) -> None:
    """Overwrite ``tensor`` with normal noise of standard deviation ``std`` drawn from ``generator``."""
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


def chain_embeddings_(weight, chain_ids: list[int], start_ids: Iterable[int], seed: int, *, scale: float = 1.0,
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


def head_inputs(head, run: Callable[[], object]):
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


def wire_chain_head_(head, probe: Callable[[object], object], chain_ids: list[int], start_ids: list[int],
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
        bias = torch.full((vocab_size,), -CHAIN_GAIN)
        successors = _chain_successors(chain_ids, eos_id, seed)
        for k, token in enumerate(chain_ids):
            weight[successors[token]] += CHAIN_GAIN * feats[k]
            bias[token] = 0.0
        bias[eos_id] = -0.5 * CHAIN_GAIN
        weight[eos_id] -= CHAIN_GAIN * start_feats.mean(dim=0)
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
# the tiny sizes and initial-weight spreads the builders share
# ---------------------------------------------------------------------------------------------------------------

TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
# generative decoders need room for the one-hot chain embeddings
TINY_64 = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
VISION_STD = 0.2  # larger than the usual 0.02, so different images give clearly different features
CROSS_STD = 0.1  # how strongly the decoder listens to the image / question / audio


def spread_vision_(module, seed: int) -> None:
    """Redraw every weight matrix of a vision tower with `VISION_STD`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        if name.endswith("weight") and param.dim() >= 2:
            fill_random_(param, VISION_STD, g)
