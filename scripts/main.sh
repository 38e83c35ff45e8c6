#!/usr/bin/env bash
# Set up the environment (if needed) and run unetlab's main job: `unetlab bench` on the shipped models
# (digits, shapes), with settings sized to finish in about ten minutes on 2 CPU cores. Report in bench-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev,peers
exec .venv/bin/unetlab bench --quick --num-images 8 --timing-images 4 --repeats 2 --out bench-out "$@"
