"""Running a request: `Runtime` (validate -> predict -> format) over a `Predictor`.

`LocalPredictor` runs the models in this process (model cache, batching, model threads); the Ray Serve backend's
predictor lives in `mmdemo.serving`. `mmdemo.backends` picks one where the app is assembled.
"""

from mmdemo.runtime.core import ModelChoice, OnLoad, Prediction, Predictor, Runtime

__all__ = ["ModelChoice", "OnLoad", "Prediction", "Predictor", "Runtime"]
