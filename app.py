"""mmdemo: `python app.py --help` lists the flags; every flag also has an MMDEMO_* environment variable."""

import logging

from mmdemo.config import settings_from_args
from mmdemo.ui import launch

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    launch(settings_from_args())
