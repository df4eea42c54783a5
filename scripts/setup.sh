#!/usr/bin/env bash
# Create .venv and install mmdemo's dependencies: `scripts/setup.sh` for the app, `scripts/setup.sh ray` for the app
# with the Ray Serve backend, `scripts/setup.sh dev` for the tests too (Ray included).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# Keep a torch that is already there (e.g. a CUDA build); otherwise take the pinned CPU build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==${MMDEMO_TORCH_VERSION:-2.13.0}"
if [ "${1:-}" = "dev" ]; then
  "${pip[@]}" -r requirements-dev.txt
elif [ "${1:-}" = "ray" ]; then
  "${pip[@]}" -r requirements.txt -r requirements-ray.txt
else
  "${pip[@]}" -r requirements.txt
fi
# mmdemo itself, editable: `python -m mmdemo...` works from any folder, and code changes need no reinstall.
.venv/bin/python -m pip show -qq mmdemo >/dev/null 2>&1 || "${pip[@]}" --no-deps -e .
