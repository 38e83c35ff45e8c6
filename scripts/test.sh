#!/usr/bin/env bash
# Set up the environment (if needed) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev,peers
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
