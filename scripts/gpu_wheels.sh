#!/usr/bin/env bash
# Download, into the ignored folder .whl/, the wheels a lent GPU machine lacks for benchmarks/gpu.sh
# (its image has torch, accelerate, transformers, torchmetrics and matplotlib, but not diffusers or the peers).
# Run here, in the repository root, before the device call; the call names `.whl` in `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
PY=${PYTHON:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
  diffusers==0.42.1 DeepCache==0.1.1 tomesd==0.1.3 tgate==1.0.0 importlib_metadata==10.2.0 lazy-importer
ls .whl
