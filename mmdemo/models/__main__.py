"""`python -m mmdemo.models install-offline | list-offline`: see mmdemo.offline.cli."""

import sys

from mmdemo.offline.cli import main

sys.exit(main())
