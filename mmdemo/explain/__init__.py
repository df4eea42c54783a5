"""Explain maps: where a model looked for its answer, computed inside a task's predict when a request asks.

- `relevance`: Chefer et al.'s gradient-weighted attention relevance (ICCV 2021) on CLIP's and SigLIP's vision
  transformers (zero-shot) and on ViLT's single-stream transformer (VQA).
- `gradcam`: gradients of an answer's or a word's score on the text's attention to the image, BLIP's and GIT's
  (LAVIS's GradCAM).
- `attributions`: word attributions for the sentiment text models (gradient × input; occlusion as the reference)
  and VADER's own lexicon scores.
- `grads`: what every method shares: gradients switched on for one call only, the input of a layer captured during
  the plain forward pass, maps scaled to 0-1.
- `overlay`: a map drawn over its image (the UI's; plain Pillow and numpy).

Every method leaves the prediction as the plain call makes it (the maps come from a second, partial pass;
sentiment's forward pass with autograd gives the same probabilities as the plain one) and keeps no gradient after
the call: `torch.autograd.grad` on attention maps, never `.backward()` into the parameters.
"""
