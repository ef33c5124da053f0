#!/usr/bin/env bash
# Time the default workflow (`make run`: --cores 8 --resources gpu=1) from an empty results folder (install excluded), then show how the
# tiny ByT5 compares with the majority-path baseline. Usage: bench/default_run.sh [RESULTS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-/tmp/prodcat-default-run}
rm -rf "$results"
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
snakemake --cores 8 --resources gpu=1 --config results="$results" > "$results.log" 2>&1
end=$(date +%s)
echo "default run: $((end - start)) s wall (log: $results.log)"
grep -E "^\| (majority|byt5|mmbyt5|flant5|charngram|ensemble|ensemble_ngram|ensemble_stack|ensemble_ngram_stack) " "$results/report/metrics.md"
sed -n '/^## Ensembles/,$p' "$results/report/metrics.md"
