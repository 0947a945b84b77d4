#!/usr/bin/env bash
# The whole test suite, from a clean clone: system packages, a virtualenv, then pytest.
# Usage: tools/test.sh [pytest args...]     (README: "Quick start"; .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: PortAudio, a user-space PulseAudio with ALSA's pulse plugin
# (real microphone capture tests), systemd-analyze (unit verification).
tools/apt-install.sh libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins systemd \
  python3-venv

PY=${PYTHON:-python3}
# a .venv without pip (left by an interrupted or failed python3 -m venv) is made again
if ! { [[ -x .venv/bin/python ]] && .venv/bin/python -m pip --version >/dev/null 2>&1; }; then
  "$PY" -m venv --clear .venv
fi
# reinstall only when the checkout's installed files changed (tools/source-fingerprint.sh),
# so a re-run works offline
STAMP=.venv/.aerd-source
SOURCE=$(tools/source-fingerprint.sh)
if [[ -f $STAMP && $(<"$STAMP") == "$SOURCE" ]]; then
  echo "tools/test.sh: .venv is up to date with this checkout"
else
  rm -f "$STAMP"
  # a stale build/ can carry modules that no longer exist into the install; either one left
  # by a `sudo pip install .` (the service install) makes pip fail
  for d in build aerd.egg-info; do
    rm -rf "$d" 2>/dev/null || {
      echo "tools/test.sh: cannot remove $PWD/$d (left by a pip install as root?): sudo rm -rf it" >&2
      exit 1; }
  done
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q ".[test]"
  printf '%s\n' "$SOURCE" >"$STAMP"
fi

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
