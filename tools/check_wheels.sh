#!/usr/bin/env bash
# Does every runtime dependency have a binary wheel for a Raspberry Pi?  (README: "On a Raspberry Pi")
# Usage: tools/check_wheels.sh [python-version]   e.g. 3.11 (Pi OS bookworm) or 3.13 (trixie)
set -u
PYV=${1:-3.11}
PIP=${PIP:-python3 -m pip}
for arch in aarch64 armv7l; do
  echo "== $arch (Python $PYV)"
  for p in numpy onnxruntime pyzmq soundfile soxr sounddevice; do
    d=$(mktemp -d)
    if $PIP download -q --no-deps --only-binary=:all: --python-version "$PYV" \
         --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" --platform "manylinux_2_31_$arch" \
         -d "$d" "$p" >/dev/null 2>&1; then
      echo "  $p: $(ls "$d")"
    else
      echo "  $p: no wheel on PyPI"
    fi
    rm -rf "$d"
  done
done
