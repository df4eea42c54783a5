"""Visual question answering: an image and a question in, an answer out.

BLIP generates a free-text answer; ViLT classifies over a fixed answer vocabulary, so it also
returns its top answers with scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from mmdemo.config import Settings
from mmdemo.explain.grads import explain_flag
from mmdemo.i18n import Message
from mmdemo.media import load_image
from mmdemo.media.pixels import reduce_for
from mmdemo.models.loading import ModelBundle
from mmdemo.tasks.base import GPU_SETUP_SECONDS, Comparable, ModelSpec, Task, clean_text

TOP_K = 5
MAX_ANSWER_TOKENS = 20
GPU_SECONDS = 5.0  # one image and question: many times a BLIP answer's GPU time (`python -m benchmarks.gpu_seconds`)
EXPLAIN_GPU_SECONDS = 3.0  # the explain pass: the text side again with a backward pass (ViLT: its whole tower)


@dataclass(frozen=True)
class VqaInputs:
    model: ModelSpec
    image: Image.Image
    question: str
    explain: bool = False  # also compute the map of the image regions behind the answer


class VqaTask(Task[VqaInputs]):
    name = "vqa"
    title = "Visual question answering"
    description = "Ask a question about an image."
    models = (
        ModelSpec("Salesforce/blip-vqa-base", note="BLIP base, generates a free-text answer"),
        ModelSpec("Salesforce/blip-vqa-capfilt-large", note="BLIP large (CapFilt), more accurate, slower"),
        ModelSpec("dandelin/vilt-b32-finetuned-vqa", note="ViLT, picks from 3,129 answers with scores; fast"),
    )
    architectures = frozenset({"BlipForQuestionAnswering", "ViltForQuestionAnswering"})
    serve_family = "vision_language"

    def validate(self, raw: Mapping[str, Any], settings: Settings) -> VqaInputs:
        return VqaInputs(
            model=self.model_spec(raw.get("model"), allow_custom=settings.allow_custom_models),
            image=load_image(raw.get("image"), max_pixels=settings.max_image_pixels),
            question=clean_text(raw.get("question"), what=Message("error.field.question"),
                                max_chars=settings.max_text_chars),
            explain=explain_flag(raw.get("explain")),
        )

    def predict(self, bundles: Mapping[str, ModelBundle], inputs: VqaInputs) -> list[tuple[str, float | None]]:
        bundle = bundles["model"]
        image = reduce_for(bundle.processor, inputs.image)
        batch = bundle.prepare(bundle.processor(images=image, text=inputs.question, return_tensors="pt"))
        if inputs.explain:
            return explained_answers(bundle, batch)
        if bundle.architecture == "ViltForQuestionAnswering":
            probabilities = bundle.model(**batch).logits[0].float().sigmoid()  # ViLT is trained with BCE
            scores, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
            labels = bundle.model.config.id2label
            return [(labels[int(i)], float(s)) for s, i in zip(scores, indices)]
        from mmdemo.models.generation import cache_kwargs  # imports transformers: not at start-up

        generated = bundle.model.generate(**batch, max_new_tokens=MAX_ANSWER_TOKENS,
                                          **cache_kwargs(bundle.architecture))
        return [(bundle.processor.decode(generated[0], skip_special_tokens=True).strip(), None)]

    def format(self, output: list[tuple[str, float | None]] | dict[str, Any], inputs: VqaInputs) -> dict[str, Any]:
        explanation = output.get("explanation") if isinstance(output, dict) else None
        answers = output["answers"] if isinstance(output, dict) else output
        result = {
            "question": inputs.question,
            "answer": answers[0][0],
            "answers": [{"answer": answer, "score": score} for answer, score in answers],
        }
        if explanation is not None:
            result["explanation"] = explanation
        return result

    def compare_view(self, result: Mapping[str, Any]) -> Comparable:
        scored = tuple((a["answer"], a["score"]) for a in result["answers"] if a["score"] is not None)
        return Comparable(result["answer"], ranking=scored)

    def gpu_seconds(self, inputs: VqaInputs) -> float:
        return GPU_SETUP_SECONDS + GPU_SECONDS + (EXPLAIN_GPU_SECONDS if inputs.explain else 0.0)



def explained_answers(bundle: ModelBundle, batch: dict[str, Any]) -> dict[str, Any]:
    """The answers as `VqaTask.predict` gives them, plus the map of the image patches behind the top one: Chefer's
    relevance for ViLT, GradCAM on BLIP's question-to-image cross-attention (mmdemo.explain)."""
    from mmdemo.explain import gradcam, relevance

    if bundle.architecture == "ViltForQuestionAnswering":
        logits, grid = relevance.vilt_answer_map(bundle, batch)
        probabilities = logits.sigmoid()
        scores, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
        labels = bundle.model.config.id2label
        answers = [(labels[int(i)], float(s)) for s, i in zip(scores, indices)]
        method, note = "chefer-relevance", "Relevance (Chefer et al. 2021) of each image patch to the top answer"
    else:
        from mmdemo.models.generation import cache_kwargs

        capture = gradcam.capture_image_embeds(bundle.model.text_encoder)
        with capture.during():
            generated = bundle.model.generate(**batch, max_new_tokens=MAX_ANSWER_TOKENS,
                                              **cache_kwargs(bundle.architecture))
        answers = [(bundle.processor.decode(generated[0], skip_special_tokens=True).strip(), None)]
        grid = gradcam.blip_vqa_map(bundle, capture.value, batch, generated[:1])
        method, note = "gradcam", "GradCAM on the question's cross-attention to the image, for the whole answer"
    return {"answers": answers,
            "explanation": {"method": method, "note": note, "maps": [{"label": answers[0][0], "grid": grid}]}}
