#!/usr/bin/env bash
# The real CUDA path at the paper's shapes, for a lent GPU machine (the device tool):
#   bash bench/gpu_check.sh        # writes $OUT/gpu_check.json (or results/gpu_check/); ends with
#   the measured efficiencies beside bench/paper_plan.py's constants (40 % of peak, 70 % of bandwidth)
# Test it first on a CPU: .venv/bin/python bench/gpu_check.py --out /tmp/gpu-check --smoke
#
# Uses .venv when there is one, else the machine's python3 with this checkout's src/ on the path.
# The device machine's image has torch, transformers, peft, accelerate, pandas and pyarrow but not
# trl, bitsandbytes or rapidfuzz, and cannot download: carry their wheels (see the device tool's
# README: pip download --no-deps ... -d .whl) and install them to /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu_check}
py=.venv/bin/python
[ -x "$py" ] || py=python3
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$py" bench/gpu_check.py --out "$out" "$@"
