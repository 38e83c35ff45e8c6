#!/usr/bin/env bash
# Set up the environment (if needed) and run unetlab's main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev,peers
exec .venv/bin/unetlab demo "$@"
