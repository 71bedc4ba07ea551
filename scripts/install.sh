#!/usr/bin/env bash
# Install everything sparkmm needs on a fresh Debian machine (Python 3.11+):
# Java 17 for Spark (Debian's OpenJDK), the system tools the tests use, and a virtual
# environment .venv with sparkmm[dev,bench].
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=()
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ] \
   && ! ls /usr/lib/jvm/java-17-openjdk*/bin/java /usr/lib/jvm/java-21-openjdk*/bin/java >/dev/null 2>&1; then
  APT_PACKAGES+=(openjdk-17-jre-headless)
fi

if ((${#APT_PACKAGES[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${APT_PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null \
      || { echo "error: apt-get could not install ${APT_PACKAGES[*]}" >&2; exit 1; }
  else
    echo "error: ${APT_PACKAGES[*]} missing and apt-get is not usable here (not root or no apt):" \
         "install Java 17 and set JAVA_HOME" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.sparkmm-installed
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,bench]"
  echo "$want" > "$stamp"
fi

echo "sparkmm installed in .venv ($(.venv/bin/python -c 'import pyspark; print("pyspark", pyspark.__version__)'))"
