#!/usr/bin/env bash
# Install everything, then run the main job (image cleaning + preprocessing) on local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/sparkmm demo "$@"
