#!/usr/bin/env bash
# Fetch the wheels bench/gpu_check.sh needs on a GPU machine without network (WHEELS=.whl):
# what tui_ft needs beyond an image with CUDA torch, numpy, pyarrow, rich, psutil, tokenizers,
# safetensors, huggingface_hub and accelerate (Python 3.12, x86-64, about 57 MB).
#
#   bash bench/gpu_wheels.sh [DIR] [PYTHON_VERSION]      (default: .whl 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
version=${2:-3.12}
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
done
# The versions the suite passed with (pyproject.toml's bounds), and what they need that such an
# image lacks (datasets for TRL; textual's markdown plugins).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" -d "$dir" \
    transformers==5.24.0 peft==0.21.2 bitsandbytes==0.50.0 trl==1.16.0 datasets==5.2.0 dill==0.4.0 \
    multiprocess==0.70.18 orjson==3.13.0 gguf==0.19.0 textual==8.2.8 textual-plotext==1.0.1 plotext==5.3.2 \
    mdit-py-plugins platformdirs linkify-it-py uc-micro-py
du -sh "$dir"
