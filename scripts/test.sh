#!/usr/bin/env bash
# Install everything (if needed), then run the whole test suite on local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
