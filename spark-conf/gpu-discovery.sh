#!/usr/bin/env bash
# Spark GPU discovery: prints {"name": "gpu", "addresses": ["0", "1", ...]} for this node's GPUs.
# Honours CUDA_VISIBLE_DEVICES (containers pinned to some GPUs); no GPU -> an empty list.
set -euo pipefail
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  ids=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | awk 'NF' | awk '{print NR-1}')
elif command -v nvidia-smi >/dev/null 2>&1; then
  ids=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
else
  ids=""
fi
addresses=$(echo "$ids" | awk 'NF {printf "%s\"%s\"", (n++ ? ", " : ""), $1}')
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
