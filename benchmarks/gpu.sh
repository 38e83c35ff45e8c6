#!/usr/bin/env bash
# The one prepared device run (issue 30): full-size SD-1.5 and SDXL speed tables, eager and compiled, float16; or
# training the wide mini-sd. See docs/gpu.md for how to prepare it (scripts/gpu_wheels.sh) and the device call.
#
#   bash benchmarks/gpu.sh [--dry-run] [bench|train|all]        (default: all; writes under $OUT, default ./gpu-out)
#
# bench: `unetlab bench --arch ... --random-weights --scale 1 --dtype float16`, one image per call, 2 rounds, in this
#   order (each part writes $OUT/bench/<part>/bench.{json,md} when it ends; a part that would start with less than
#   30 s of the bench's 470 s left is skipped, one still running then is stopped; $OUT/summary.txt says which):
#     sd15-ddim50-eager     SD-1.5, 64x64 latent, DDIM-50, every accelerator at its defaults, the peers, presets
#     sd15-dpm25-eager      the same rows against DPM-Solver++ 25
#     sdxl-ddim50-eager     SDXL, 128x128 latent, DDIM-50, a shorter list
#     sd15-ddim50-compiled  torch.compile (inductor): baseline, branch cache, DeepCache, tomesd
#     sdxl-ddim50-compiled  torch.compile (inductor): baseline, branch cache
#   Estimate on one H100 (not measured: no device has been lent yet): an eager SD-1.5 DDIM-50 call with guidance
#   ~1.4 s, SDXL ~4 s; a row costs ~4 calls (a FLOP-counted sample, a warm-up, 2 rounds), the fewer-steps rows
#   about half that: ~110 s, ~60 s and ~150 s eager; inductor compiles ~60 s (SD-1.5) / ~100 s (SDXL) per graph
#   set, each accelerator stack traces its own: the compiled parts may not all fit, hence the 470 s deadline.
#   Setup (wheels, imports, random init on the GPU) ~30 s. The whole bench stays under 8 minutes.
# train: `accelerate launch -m unetlab.cli train t2i --data scenes ... --block-channels 64,128,256,256
#   --batch-size 256` (docs/models.md, "GPU configuration"), 2,000 steps, a checkpoint every 250, stopped at 540 s
#   if slower; then the latest checkpoint's EMA pipeline as float16 safetensors shards of at most 16 MiB under
#   $OUT/mini-sd-gpu/. Estimate (not measured): the GPU part of a step (34 M-parameter UNet, 16x16 latents, batch
#   256) is ~50 ms on one H100, but the scenes are rendered on the host in the main process, ~80 ms per scene on
#   one loaded core here: with 16 threads maybe 0.2-0.5 s per batch of 256, so 2,000 steps take 7-17 minutes;
#   the 540 s stop keeps the latest checkpoint (every 250 steps). The docs' 6,000 steps need rendering on the GPU.
# --dry-run: the same code paths on the CPU at channels / 10, 8x8 latents, float32, 4 steps, the `eager` compile
#   backend (dynamo traces, nothing is compiled), a few rows, SDXL eager only, and a tiny UNet trained 2 steps;
#   under 2 minutes on 2 cores (CI runs it: tests/bench/test_gpu_dry_run.py).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
WHAT=${1:-all}
case "$WHAT" in bench | train | all) ;; *)
    echo "gpu.sh: error: expected bench, train or all, got '$WHAT' (usage: gpu.sh [--dry-run] [bench|train|all])" >&2
    exit 2
    ;;
esac
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# Setup: the wheels the device image lacks (prepared here by scripts/gpu_wheels.sh, carried as .whl/).
MODULES="diffusers DeepCache tomesd tgate"
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))" \
    $MODULES && [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'EOF' | tee "$OUT/environment.txt"
from importlib.metadata import version
import torch
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"torch {torch.__version__}, diffusers {version('diffusers')}, {dev}")
EOF
: >"$OUT/summary.txt"

START=$SECONDS
# part NAME SECONDS_BUDGET CAP COMMAND...: run COMMAND with its log in $OUT/NAME.log, stopped at the budget's end.
part() {
    local name=$1 budget=$2 cap=$3 t0=$SECONDS
    shift 3
    local left=$((budget - (SECONDS - START)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 30 ]; then
        echo "$name: skipped (the ${budget} s budget is spent)" | tee -a "$OUT/summary.txt"
        return
    fi
    timeout -k 15 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local state="done"
    [ $rc -ne 0 ] && state="failed (exit $rc$([ $rc -eq 124 ] && echo ", stopped at $limit s"))"
    echo "$name: $state in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

if [ $DRY -eq 1 ]; then
    SHAPE=(--scale 10 --latent-size 8 --dtype float32)
    SDXL_SHAPE=(--scale 10 --latent-size 8 --dtype float32)
    COMPILE=(--compile eager)
    DDIM=(--steps 4) DPM=(--baseline dpm++:4) BUDGET=600
    EAGER_ROWS=(--method "branch cache N=2 B=0")
    DDIM_ROWS=(--method "T-GATE pkg gate=2") DPM_ROWS=()
    SDXL_ROWS=(--method DDIM-4) # the baseline alone: SDXL's 70 transformer blocks are slow on 2 cores
    COMPILED_ROWS=(--method "tomesd ratio=0.5") # refused under compile: one row, the baseline, is traced
else
    SHAPE=(--scale 1 --dtype float16)
    SDXL_SHAPE=(--scale 1 --dtype float16)
    COMPILE=(--compile)
    DDIM=(--steps 50) DPM=(--baseline dpm++:25) BUDGET=470
    EAGER_ROWS=(
        --method "EP paper keys, parallel" --method "branch cache N=2 B=0" --method "clockwork clock=2"
        --method "guidance reuse N=2" --method "DeepCache pkg N=3 B=0" --method "tomesd ratio=0.5"
        --method "PAB (diffusers) spatial 2 cross 4" --method "TaylorSeer (diffusers) N=5 order 1"
        --method "tuned: fast" --method "tuned: balanced"
    )
    DDIM_ROWS=(--method "T-GATE pkg gate=20") DPM_ROWS=(--method "T-GATE pkg gate=10") # gate at 0.4 of the steps
    SDXL_ROWS=(
        --method "EP paper keys, parallel" --method "branch cache N=2 B=0" --method "DeepCache pkg N=3 B=0"
        --method "tomesd ratio=0.5" --method "tuned: fast"
    )
    COMPILED_ROWS=(--method "branch cache N=2 B=0" --method "DeepCache pkg N=3 B=0" --method "tomesd ratio=0.5")
    SDXL_COMPILED_ROWS=(--method "branch cache N=2 B=0")
fi
COMMON=(--random-weights --num-images 1 --timing-images 1 --repeats 2 --quick)

bench_part() { # NAME BUDGET_CAP ARGS...
    local name=$1 cap=$2
    shift 2
    [ $DRY -eq 1 ] && cap=300 # a safety net only: CPU speed varies with the machine's load
    part "$name" "$BUDGET" "$cap" "$PY" -m unetlab.cli bench "${COMMON[@]}" --out "$OUT/bench/$name" "$@"
}

train_and_export() {
    local run=$OUT/train-run
    if [ $DRY -eq 1 ]; then
        local train=(--block-channels 16,16,32,32 --batch-size 4 --steps 2 --checkpoint-every 2 --sample-steps 2)
        local launch=("$PY" -m unetlab.cli) budget=600
    else
        local train=(--block-channels 64,128,256,256 --batch-size 256 --steps 2000 --checkpoint-every 250
            --sample-steps 25 --threads 16)
        local launch=("$PY" -m accelerate.commands.launch --num_processes 1 -m unetlab.cli) budget=540
    fi
    START=$SECONDS
    part train "$budget" "$budget" "${launch[@]}" train t2i --data scenes \
        --vae src/unetlab/models/weights/mini-sd/vae --out "$run" --no-progress "${train[@]}"
    START=$SECONDS
    part export 120 120 "$PY" - "$run" "$OUT/mini-sd-gpu" <<'EOF'
"""The run's latest EMA pipeline as float16 safetensors shards of at most 16 MiB, with its state and samples."""
import shutil
import sys
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from unetlab.checkpoint import latest
from unetlab.models.clip_vocab import write_bpe_files

run, out = Path(sys.argv[1]), Path(sys.argv[2])
checkpoint = latest(run)
pipe = StableDiffusionPipeline.from_pretrained(checkpoint / "pipeline")
pipe.to(torch.float16).save_pretrained(out, max_shard_size=16 * 2**20, safe_serialization=True)
write_bpe_files(pipe.tokenizer, out / "tokenizer")  # as the run saved it (scripts/ship_mini_sd.py does the same)
for name in ("state.json", "samples.png"):
    if (checkpoint / name).is_file():
        shutil.copy(checkpoint / name, out / name)
print(f"exported {checkpoint} to {out}")
EOF
}

TRAINING=
if [ "$WHAT" != bench ] && [ $DRY -eq 1 ]; then # on the CPU, training takes the second core while the bench runs
    train_and_export &
    TRAINING=$!
fi
if [ "$WHAT" != train ]; then
    START=$SECONDS
    bench_part sd15-ddim50-eager 200 --arch sd15 "${SHAPE[@]}" "${DDIM[@]}" "${EAGER_ROWS[@]}" "${DDIM_ROWS[@]}"
    bench_part sd15-dpm25-eager 120 --arch sd15 "${SHAPE[@]}" "${DPM[@]}" "${EAGER_ROWS[@]}" "${DPM_ROWS[@]}"
    bench_part sdxl-ddim50-eager 200 --arch sdxl "${SDXL_SHAPE[@]}" "${DDIM[@]}" "${SDXL_ROWS[@]}"
    bench_part sd15-ddim50-compiled 200 --arch sd15 "${SHAPE[@]}" "${DDIM[@]}" "${COMPILE[@]}" "${COMPILED_ROWS[@]}"
    if [ $DRY -eq 1 ]; then # the same path as sd15's; dynamo takes minutes over SDXL's 70 transformer blocks here
        echo "sdxl-ddim50-compiled: skipped in the dry run" | tee -a "$OUT/summary.txt"
    else
        bench_part sdxl-ddim50-compiled 200 --arch sdxl "${SDXL_SHAPE[@]}" "${DDIM[@]}" "${COMPILE[@]}" \
            "${SDXL_COMPILED_ROWS[@]}"
    fi
fi
if [ -n "$TRAINING" ]; then
    wait "$TRAINING"
elif [ "$WHAT" != bench ]; then
    train_and_export
fi
cat "$OUT/summary.txt"
