#!/usr/bin/env bash
# Build HypoInverse 1.40 (Klein, USGS) from its Fortran source with gfortran.
#
# Usage: bash scripts/build_hypoinverse.sh [VENV]   (default .venv)
#
# The source ships inside the `hypoinvpy` sdist on the Python package index
# (hypoinvpy-0.7.0/hyp1.40/source). This script
#   1. downloads that sdist with pip (no other network access) into VENV/src-cache,
#   2. compiles the objects listed by the program's own makefile (target hyp1.40)
#      with gfortran -std=legacy into VENV/bin/hyp1.40 (the makefile's
#      `cp hyp1.40 ~/bin` step is not used),
#   3. copies the program's test case hyp1.40/testone to VENV/share/hypoinverse/testone.
# It is idempotent: when VENV/bin/hyp1.40 exists and was built from the same source
# (sha256 of the sdist recorded in VENV/share/hypoinverse/build.sha256), it does nothing.
set -euo pipefail

VENV="${1:-.venv}"
VERSION="0.7.0"
SDIST="hypoinvpy-${VERSION}.tar.gz"
CACHE="$VENV/src-cache"
SHARE="$VENV/share/hypoinverse"
BIN="$VENV/bin/hyp1.40"
STAMP="$SHARE/build.sha256"
FC="${FC:-gfortran}"
FFLAGS="${FFLAGS:--std=legacy -O2 -w}"

PIP=("$VENV/bin/python" -m pip)
[ -x "$VENV/bin/python" ] || PIP=(python3 -m pip)
command -v "$FC" >/dev/null 2>&1 || {
    echo "build_hypoinverse: $FC not found; install gfortran (apt-get install gfortran)" >&2
    exit 1
}

mkdir -p "$CACHE" "$SHARE" "$VENV/bin"
if [ ! -f "$CACHE/$SDIST" ]; then
    echo "build_hypoinverse: downloading the hypoinvpy==$VERSION sdist"
    "${PIP[@]}" download -q --no-deps --no-binary :all: "hypoinvpy==$VERSION" -d "$CACHE"
fi
want="$(sha256sum "$CACHE/$SDIST" | cut -d' ' -f1)"
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "build_hypoinverse: $BIN is up to date"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$CACHE/$SDIST" -C "$work"
top="$work/hypoinvpy-$VERSION/hyp1.40"
src="$top/source"

# Object files of the `hyp1.40` target, read from the program's own makefile.
# (the dependency line of that target and its backslash continuations).
objects="$(awk '/^hyp1\.40 *:/ {on = 1} on {print; if ($0 !~ /\\$/) exit}' "$src/makefile" \
    | sed -e 's/^hyp1\.40 *://' | grep -o '[A-Za-z0-9_]*\.o')"
[ -n "$objects" ] || { echo "build_hypoinverse: no objects found in $src/makefile" >&2; exit 1; }

echo "build_hypoinverse: compiling $(echo "$objects" | wc -l) Fortran units with $FC $FFLAGS"
(
    cd "$src"
    for obj in $objects; do
        base="${obj%.o}"
        if [ -f "$base.for" ]; then unit="$base.for"; else unit="$base.f"; fi
        # shellcheck disable=SC2086
        "$FC" $FFLAGS -c "$unit" -o "$obj"
    done
    # shellcheck disable=SC2086
    "$FC" $FFLAGS -o hyp1.40 $objects
)
install -m 0755 "$src/hyp1.40" "$BIN"
rm -rf "$SHARE/testone"
cp -r "$top/testone" "$SHARE/testone"
echo "$want" > "$STAMP"
echo "build_hypoinverse: built $BIN"
