#!/usr/bin/env bash
# Perigee's CPU training step against the PyTorch eager anchor, same shapes, same threads, one run.
# Needs `pip install torch` (not part of CI). Output: out/bench_train_step.json,
# out/torch_train_step.json and a ratio table.
#   bench/run_train_step_vs_torch.sh [build dir] [models] [batches] [iters]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}" MODELS="${2:-small,gpt2}" BATCHES="${3:-1,2,4}" ITERS="${4:-3}"
THREADS="${THREADS:-$(nproc)}"
mkdir -p "$ROOT/out"
"$BUILD/bench/bench_train_step" --models "$MODELS" --batches "$BATCHES" --iters "$ITERS" --threads "$THREADS" \
  --json "$ROOT/out/bench_train_step.json"
python3 "$ROOT/bench/torch_train_step.py" --models "$MODELS" --batches "$BATCHES" --iters "$ITERS" \
  --threads "$THREADS" --json "$ROOT/out/torch_train_step.json"
python3 "$ROOT/bench/compare_train_step.py" "$ROOT/out/bench_train_step.json" "$ROOT/out/torch_train_step.json"
