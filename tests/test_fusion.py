"""Late fusion math on hand-computed cases: mmdemo.tasks.sentiment.fusion."""

from __future__ import annotations

import math
import random

import pytest

from mmdemo.errors import InputError
from mmdemo.tasks.sentiment import fusion

TEXT = (0.7, 0.2, 0.1)
IMAGE = (0.2, 0.3, 0.5)
UNIFORM = (1 / 3, 1 / 3, 1 / 3)
ALL_THREE = {"text": TEXT, "image": IMAGE, "speech": UNIFORM}


def close(a, b, tol=1e-6) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b))


def test_certainty_is_one_for_one_hot_and_zero_for_uniform():
    assert fusion.certainty((0.0, 1.0, 0.0)) == pytest.approx(1.0)
    assert fusion.certainty(UNIFORM) == pytest.approx(0.0, abs=1e-12)
    # H(0.7, 0.2, 0.1) = 0.80182 nats; / ln 3 = 0.72985
    assert fusion.certainty(TEXT) == pytest.approx(1 - 0.80182 / math.log(3), abs=1e-5)


@pytest.mark.parametrize("method", fusion.METHODS)
def test_one_modality_is_returned_as_is(method):
    result = fusion.fuse(method, {"image": IMAGE}, {"image": 2.5})
    assert close(result.probabilities, IMAGE, tol=1e-5)
    assert list(result.weights) == ["image"]


def test_weighted_average_by_hand():
    # (2·0.7 + 0.2 + 1/3) / 4 = 0.48333; (2·0.2 + 0.3 + 1/3) / 4 = 0.25833; (2·0.1 + 0.5 + 1/3) / 4 = 0.25833
    result = fusion.weighted_average(ALL_THREE, {"text": 2, "image": 1, "speech": 1})
    assert close(result.probabilities, (0.483333, 0.258333, 0.258333), tol=1e-5)
    assert result.weights == pytest.approx({"text": 0.5, "image": 0.25, "speech": 0.25})


def test_weighted_average_missing_weight_counts_one_and_absent_modalities_are_ignored():
    result = fusion.weighted_average({"text": TEXT, "image": IMAGE}, {"text": 1, "speech": 0})
    assert close(result.probabilities, (0.45, 0.25, 0.3))
    assert set(result.weights) == {"text", "image"}


def test_weight_zero_removes_a_modality():
    result = fusion.weighted_average(ALL_THREE, {"text": 0, "image": 1, "speech": 0})
    assert close(result.probabilities, IMAGE)
    assert result.weights == {"text": 0.0, "image": 1.0, "speech": 0.0}


def test_all_weights_zero_is_a_clear_error():
    with pytest.raises(InputError, match=r"All weights of the given modalities \(text, image\) are 0"):
        fusion.weighted_average({"text": TEXT, "image": IMAGE}, {"text": 0, "image": 0, "speech": 3})


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_bad_weights_are_refused(weight):
    with pytest.raises(InputError, match="text weight"):
        fusion.weighted_average({"text": TEXT}, {"text": weight})


def test_confidence_gated_by_hand():
    # certainty(text) = 1 − 0.80182 / ln 3 = 0.270153; certainty(image) = 1 − 1.029653 / ln 3 = 0.062769;
    # certainty(speech) = 0. Weights 0.811459, 0.188541, 0:
    # negative 0.811459·0.7 + 0.188541·0.2 = 0.605730, neutral 0.218854, positive 0.175416.
    result = fusion.confidence_gated(ALL_THREE)
    assert result.weights == pytest.approx({"text": 0.811459, "image": 0.188541, "speech": 0.0}, abs=1e-5)
    assert close(result.probabilities, (0.605730, 0.218854, 0.175416), tol=1e-5)


def test_confidence_gating_gives_a_uniform_modality_weight_zero():
    with_uniform = fusion.confidence_gated({"text": TEXT, "speech": UNIFORM})
    assert with_uniform.weights["speech"] == pytest.approx(0.0, abs=1e-12)
    assert close(with_uniform.probabilities, TEXT)


def test_confidence_gated_all_uniform_stays_uniform():
    result = fusion.confidence_gated({"text": UNIFORM, "image": UNIFORM})
    assert close(result.probabilities, UNIFORM)
    assert result.weights == pytest.approx({"text": 0.5, "image": 0.5})


def test_product_of_experts_by_hand():
    # 0.7·0.2 = 0.14, 0.2·0.3 = 0.06, 0.1·0.5 = 0.05 (the uniform factor cancels); / 0.25
    result = fusion.product_of_experts(ALL_THREE)
    assert close(result.probabilities, (0.56, 0.24, 0.20))
    assert result.weights == {"text": 1.0, "image": 1.0, "speech": 1.0}


def test_product_of_experts_floors_zeros():
    # A 0 counts as 1e-6: (1e-6·0.5, 0.5·0.5, 0.5·1e-6) / sum -> neutral 1 − 4e-6
    result = fusion.product_of_experts({"text": (0.0, 0.5, 0.5), "image": (0.5, 0.5, 0.0)})
    assert result.probabilities[1] == pytest.approx(1.0, abs=1e-5)
    assert all(p > 0 for p in result.probabilities)


def test_uniform_modality_changes_no_product_but_dilutes_an_average():
    alone = {"text": TEXT, "image": IMAGE}
    assert close(fusion.product_of_experts(ALL_THREE).probabilities, fusion.product_of_experts(alone).probabilities)
    averaged = fusion.weighted_average(ALL_THREE, {}).probabilities
    assert averaged[0] == pytest.approx((0.7 + 0.2 + 1 / 3) / 3)


def _random_distribution(rng: random.Random, k: int = 3) -> tuple[float, ...]:
    values = [rng.random() ** 3 for _ in range(k)]
    if rng.random() < 0.2:
        values[rng.randrange(k)] = 0.0  # some exact zeros
    if sum(values) == 0:
        values[0] = 1.0
    return tuple(v / sum(values) for v in values)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("method", fusion.METHODS)
def test_fused_probabilities_always_sum_to_one(method, seed):
    rng = random.Random(seed)
    names = rng.sample(["text", "image", "speech"], rng.randint(1, 3))
    probs = {name: _random_distribution(rng) for name in names}
    weights = {name: rng.choice([0.0, 0.5, 1.0, 3.0]) for name in names}
    weights[names[0]] = 1.0  # at least one positive weight
    result = fusion.fuse(method, probs, weights)
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-12)
    assert all(0 <= p <= 1 for p in result.probabilities)
    if method != fusion.PRODUCT_OF_EXPERTS:
        assert sum(result.weights.values()) == pytest.approx(1.0)


def test_leave_one_out_fuses_the_others():
    weights = {"text": 2, "image": 1, "speech": 1}
    ablation = fusion.leave_one_out(fusion.WEIGHTED_AVERAGE, ALL_THREE, weights)
    assert list(ablation) == ["text", "image", "speech"]
    # without the speech: (2·TEXT + IMAGE) / 3
    assert close(ablation["speech"].probabilities, tuple((2 * t + i) / 3 for t, i in zip(TEXT, IMAGE)))
    without_text = fusion.leave_one_out(fusion.PRODUCT_OF_EXPERTS, ALL_THREE)["text"]
    assert close(without_text.probabilities, IMAGE)


def test_leave_one_out_with_one_modality_is_empty_and_zero_weights_give_none():
    assert fusion.leave_one_out(fusion.WEIGHTED_AVERAGE, {"text": TEXT}) == {}
    ablation = fusion.leave_one_out(fusion.WEIGHTED_AVERAGE, {"text": TEXT, "image": IMAGE}, {"image": 0})
    assert ablation["text"] is None
    assert close(ablation["image"].probabilities, TEXT)


@pytest.mark.parametrize("method", [fusion.WEIGHTED_AVERAGE, fusion.CONFIDENCE_GATED])
def test_linear_contributions_add_up_to_the_fused_probabilities(method):
    fused = fusion.fuse(method, ALL_THREE, {"text": 3, "image": 1, "speech": 1})
    parts = fusion.contributions(fused, ALL_THREE)
    for k in range(3):
        assert sum(part[k] for part in parts.values()) == pytest.approx(fused.probabilities[k])


def test_product_contributions_add_up_to_the_centred_fused_log_probabilities():
    fused = fusion.product_of_experts(ALL_THREE)
    parts = fusion.contributions(fused, ALL_THREE)
    logs = [math.log(p) for p in fused.probabilities]
    centred = [x - sum(logs) / 3 for x in logs]
    assert parts["speech"] == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)  # a uniform expert adds no evidence
    for k in range(3):
        assert sum(part[k] for part in parts.values()) == pytest.approx(centred[k])


def test_refuses_what_is_not_a_distribution_and_unknown_methods():
    with pytest.raises(ValueError, match="not a distribution"):
        fusion.fuse(fusion.WEIGHTED_AVERAGE, {"text": (0.5, 0.6, 0.1)})
    with pytest.raises(ValueError, match="same classes"):
        fusion.fuse(fusion.WEIGHTED_AVERAGE, {"text": TEXT, "image": (0.5, 0.5)})
    with pytest.raises(ValueError, match="Nothing to fuse"):
        fusion.fuse(fusion.PRODUCT_OF_EXPERTS, {})
    with pytest.raises(ValueError, match="choose one of weighted_average, confidence_gated, product_of_experts"):
        fusion.fuse("majority_vote", {"text": TEXT})
