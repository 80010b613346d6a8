#!/usr/bin/env bash
# The GPU check (issue 18): one command on a CUDA machine, about 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh                # installs tui_ft[gpu,test,bench] into this Python with pip
#   WHEELS=.whl bash bench/gpu_check.sh    # offline: the wheels in .whl (bench/gpu_wheels.sh fetches them)
#
# 1. the tests marked gpu (tests/gpu: LoRA bf16, QLoRA, full, freeze, DPO, chat, eval on CUDA,
#    DDP when there are two GPUs, the memory plan's accuracy);
# 2. LoRA bf16 of a ~1.1B Llama at length 1024: tokens/s and MFU beside TRL's SFTTrainer
#    (bench/gpu_train.py; targets MFU >= 35 %, >= 1.3x TRL);
# 3. the memory plan against the measured peak on the 1.1B model (bench/memory_plan.py).
# Every log is kept in $CHECK_DIR (default /tmp/tui_ft_gpu_check). Nothing is downloaded but the
# packages: the models are built from a config with random weights.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
out=${CHECK_DIR:-/tmp/tui_ft_gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

section() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

section "machine"
date -u +%Y-%m-%d
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no nvidia-smi: not a CUDA machine"; exit 1; }

section "install"
if [[ -n ${WHEELS:-} ]]; then
    # Into a folder of our own, first on the path: the machine's packages stay as they were.
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tui_ft_site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$PWD:/tmp/tui_ft_site${PYTHONPATH:+:$PYTHONPATH}"
else
    $PY -m pip install -q -e '.[gpu,test,bench]' || exit 1
fi
$PY - <<'EOF' || exit 1
import importlib, torch
names = ["transformers", "peft", "trl", "bitsandbytes", "accelerate"]
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count(), torch.cuda.get_device_name())
print(", ".join(f"{n} {getattr(importlib.import_module(n), '__version__', '?')}" for n in names))
EOF

section "tests marked gpu"
timeout 300 $PY -m pytest -q -m gpu -rs -p no:cacheprovider tests/gpu 2>&1 | tee "$out/gpu_tests.log" | tail -30

section "LoRA bf16 of a 1.1B Llama: tokens/s and MFU beside TRL"
timeout 240 $PY bench/gpu_train.py --steps 30 --warmup 5 2>&1 | tee "$out/gpu_train.log" \
    | grep -v -E "it/s\]|s/it\]|^\{'|Warning|warn" | tail -12

section "memory plan against the measured peak (1.1B Llama, length 1024)"
timeout 200 $PY bench/memory_plan.py --models big --lengths 1024 --methods lora,qlora,full,freeze \
    --json "$out/memory_plan.json" 2>&1 | tee "$out/memory_plan.log" | tail -14

section "done"
echo "logs: $out"
