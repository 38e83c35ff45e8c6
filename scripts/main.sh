#!/usr/bin/env bash
# Set up the environment (if needed) and run unetlab's main job: `unetlab bench` on the shipped models — mini-sd
# (SD-1.5's UNet topology, judged by its scene judge) first, then digits and shapes — with settings sized to finish
# within 15 minutes on 2 CPU cores. Report in bench-out/ (bench.md opens with the fastest row at the baseline's
# quality per model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev,peers
exec .venv/bin/unetlab bench --quick --num-images 4 --timing-images 1 --repeats 2 --out bench-out "$@"
