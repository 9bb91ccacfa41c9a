#!/usr/bin/env bash
# Set up everything docloop needs on this machine: Debian packages (when root) and the .venv.
# Called by `make install` (and so by `make demo` and `make test`); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
DEBIAN_PACKAGES=(tesseract-ocr poppler-utils postgresql)

missing=()
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
command -v pdftoppm >/dev/null && command -v pdftotext >/dev/null || missing+=(poppler-utils)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run this once, then run make again:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${DEBIAN_PACKAGES[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# torch first and alone: the CPU wheel; a bare `torch` requirement would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU)"
  "${pip[@]}" install torch==2.13.0
fi
echo "setup: installing docloop and its pinned dependencies (requirements.lock)"
"${pip[@]}" install -c requirements.lock -e '.[dev]'
touch "$VENV/.docloop-installed"
echo "setup: ready ($("$VENV/bin/python" --version), $(tesseract --version | head -1))"
