"""`python -m mmdemo.evaluate`: see `mmdemo.evaluate.cli`."""

import sys

from mmdemo.evaluate.cli import main

sys.exit(main())
