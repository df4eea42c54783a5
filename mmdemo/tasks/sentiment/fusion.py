"""Late fusion: combine per-modality class probabilities into one distribution, and say who counted how much.

Pure math on plain floats, no torch, no Gradio. Every function takes `probs`, a mapping from modality name
("text", "image", ...) to that modality's probabilities over the same K classes. A modality that was not given
is simply absent from the mapping (never a row of zeros), so it neither counts nor dilutes the others.

Notation below: p_m is modality m's distribution, p_m,k its probability of class k, w_m a weight, M the
modalities present, K the number of classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mmdemo.errors import InputError
from mmdemo.i18n import Message, has

Probs = Mapping[str, Sequence[float]]

WEIGHTED_AVERAGE = "weighted_average"
CONFIDENCE_GATED = "confidence_gated"
PRODUCT_OF_EXPERTS = "product_of_experts"
METHODS = (WEIGHTED_AVERAGE, CONFIDENCE_GATED, PRODUCT_OF_EXPERTS)
POE_FLOOR = 1e-6  # probabilities below this count as this in the product: one 0 would otherwise veto a class


def modality_name(modality: str) -> Message | str:
    """A modality's name for a visitor's message, in their language ("text" -> 文本); unknown names as they are."""
    key = f"error.sentiment.modality.{modality}"
    return Message(key) if has(key) else modality


@dataclass(frozen=True)
class Fusion:
    """A fused distribution and the weight each modality actually got."""

    probabilities: tuple[float, ...]  # over the K classes, sums to 1
    weights: dict[str, float]  # linear pools: normalized to sum 1; product of experts: the exponent (1 each)
    method: str


def _check(probs: Probs) -> int:
    """The number of classes; refuses an empty mapping, ragged rows and values that are not probabilities."""
    if not probs:
        raise ValueError("Nothing to fuse: give at least one modality's probabilities")
    sizes = {len(p) for p in probs.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"Every modality needs probabilities over the same classes, got sizes {sorted(sizes)}")
    for name, p in probs.items():
        if any(not math.isfinite(x) or x < 0 for x in p) or not math.isclose(sum(p), 1.0, abs_tol=1e-4):
            raise ValueError(f"{name}'s probabilities {list(p)} are not a distribution")
    return sizes.pop()


def normalized_entropy(p: Sequence[float]) -> float:
    """H(p) / log K, in [0, 1]: 0 for a one-hot distribution, 1 for the uniform one.

    H(p) = -Σ_k p_k log p_k (0 log 0 = 0). K = 1 has no uncertainty: 0.
    """
    if len(p) < 2:
        return 0.0
    entropy = -sum(x * math.log(x) for x in p if x > 0)
    return min(1.0, max(0.0, entropy / math.log(len(p))))


def certainty(p: Sequence[float]) -> float:
    """1 − H(p) / log K: 1 for a one-hot distribution, 0 for the uniform one."""
    return 1.0 - normalized_entropy(p)


def _linear_pool(probs: Probs, weights: Mapping[str, float], method: str) -> Fusion:
    """Σ_m w_m p_m / Σ_m w_m for weights already checked to have a positive sum."""
    k = _check(probs)
    total = sum(weights[name] for name in probs)
    used = {name: weights[name] / total for name in probs}
    fused = [sum(used[name] * probs[name][j] for name in probs) for j in range(k)]
    return Fusion(_renormalized(fused), used, method)


def weighted_average(probs: Probs, weights: Mapping[str, float]) -> Fusion:
    """Linear opinion pool: p_k = Σ_m w_m p_m,k / Σ_m w_m.

    Args:
        probs: modality -> probabilities over the same classes.
        weights: modality -> weight >= 0; a modality without an entry gets 1. Weights of absent
            modalities do not count (but must still be valid).
    Returns:
        The fused distribution; `weights` normalized over the present modalities (they sum to 1).
    Raises:
        InputError: a weight is negative or not a number, or every present modality's weight is 0.
    """
    _check(probs)
    return _linear_pool(probs, check_weights(weights, probs), WEIGHTED_AVERAGE)


def check_weights(weights: Mapping[str, float], modalities: Iterable[str]) -> dict[str, float]:
    """The weights of `modalities` (1 where missing), once every weight given is a number of 0 or more.

    Raises:
        InputError: any weight in `weights` is negative or not a number, or every one of `modalities` weighs 0.
    """
    for name, w in weights.items():
        if not math.isfinite(w) or w < 0:
            raise InputError("error.sentiment.negative_weight", modality=modality_name(name), weight=w)
    used = {name: float(weights.get(name, 1.0)) for name in modalities}
    if sum(used.values()) <= 0:
        raise InputError("error.sentiment.all_weights_zero", modalities=", ".join(used))
    return used


def confidence_gated(probs: Probs) -> Fusion:
    """Linear pool weighted by each modality's own certainty: w_m = 1 − H(p_m) / log K.

    p_k = Σ_m w_m p_m,k / Σ_m w_m, so an unsure modality counts less and a uniform one not at all.
    If every modality is uniform (all w_m = 0) the weights fall back to equal, which returns the uniform
    distribution they all agree on.
    """
    _check(probs)
    gates = {name: certainty(p) for name, p in probs.items()}
    if sum(gates.values()) <= 0:
        gates = {name: 1.0 for name in probs}
    return _linear_pool(probs, gates, CONFIDENCE_GATED)


def product_of_experts(probs: Probs, floor: float = POE_FLOOR) -> Fusion:
    """Normalized product: p_k = Π_m max(p_m,k, ε) / Σ_j Π_m max(p_m,j, ε), ε = `floor`.

    Computed as a softmax of Σ_m log max(p_m,k, ε). Every modality is a factor with exponent 1 (its
    reported weight); a uniform modality multiplies every class alike and so changes nothing.
    """
    k = _check(probs)
    scores = [sum(math.log(max(p[j], floor)) for p in probs.values()) for j in range(k)]
    return Fusion(_softmax(scores), {name: 1.0 for name in probs}, PRODUCT_OF_EXPERTS)


def fuse(method: str, probs: Probs, weights: Mapping[str, float] | None = None) -> Fusion:
    """Fuse with the method called `method` (one of METHODS); `weights` are used by the weighted average only."""
    if method == WEIGHTED_AVERAGE:
        return weighted_average(probs, weights or {})
    if method == CONFIDENCE_GATED:
        return confidence_gated(probs)
    if method == PRODUCT_OF_EXPERTS:
        return product_of_experts(probs)
    raise ValueError(f"Unknown fusion method {method!r}: choose one of {', '.join(METHODS)}")


def leave_one_out(method: str, probs: Probs, weights: Mapping[str, float] | None = None) -> dict[str, Fusion | None]:
    """Modality ablation: for each modality m, the fusion of all the others (same method, same weights).

    Empty when only one modality is present (nothing would be left). None for m when the others
    cannot be fused on their own (the weighted average with all their weights 0).
    """
    if len(probs) < 2:
        return {}
    result: dict[str, Fusion | None] = {}
    for name in probs:
        rest = {other: p for other, p in probs.items() if other != name}
        try:
            result[name] = fuse(method, rest, weights)
        except InputError:
            result[name] = None
    return result


def contributions(fusion: Fusion, probs: Probs) -> dict[str, tuple[float, ...]]:
    """What each modality added to each class, in the fusion's own currency.

    Linear pools: c_m,k = w_m p_m,k, so Σ_m c_m,k is the fused p_k.
    Product of experts: c_m,k = log p̃_m,k − (1/K) Σ_j log p̃_m,j with p̃ = max(p, ε), the evidence (in nats)
    the modality adds for k relative to its average class; Σ_m c_m,k is the fused log p_k up to a constant.
    """
    k = _check(probs)
    if fusion.method == PRODUCT_OF_EXPERTS:
        result = {}
        for name, p in probs.items():
            logs = [math.log(max(x, POE_FLOOR)) for x in p]
            mean = sum(logs) / k
            result[name] = tuple(x - mean for x in logs)
        return result
    return {name: tuple(fusion.weights[name] * x for x in p) for name, p in probs.items()}


def argmax(p: Sequence[float]) -> int:
    """Index of the largest value (the first on ties)."""
    return max(range(len(p)), key=lambda j: (p[j], -j))


def _softmax(scores: Sequence[float]) -> tuple[float, ...]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return _renormalized(exps)


def _renormalized(values: Sequence[float]) -> tuple[float, ...]:
    """Divide by the sum, so rounding never leaves a fused distribution off 1."""
    total = sum(values)
    return tuple(v / total for v in values)

