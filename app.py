"""mmdemo: `python app.py --help` lists the flags; every flag also has an MMDEMO_* environment variable.

Also the entry point of a Hugging Face Space (README front matter `app_file: app.py`).
"""

from mmdemo import collector  # noqa: I001  (the standard library only)

if __name__ == "__main__":
    collector.pause()  # through the heavy imports below and start-up; resumed once the page is served

import mmdemo.models.devices  # noqa: F401, E402, I001  (next: on ZeroGPU it imports `spaces` before anything touches CUDA)

import logging
import os
from collections.abc import Mapping

from mmdemo.config import Settings, on_space, settings_from_args
from mmdemo.ui import launch


def app_settings(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags and MMDEMO_* variables; on a Space (SPACE_ID set) serve on 0.0.0.0 unless MMDEMO_HOST or
    --host says otherwise, since the Space's proxy reaches the app from outside its container."""
    env = dict(os.environ if environ is None else environ)
    if on_space(env) and not env.get("MMDEMO_HOST", "").strip():
        env["MMDEMO_HOST"] = "0.0.0.0"
    return settings_from_args(argv, env)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    launch(app_settings())
